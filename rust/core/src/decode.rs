//! Decoding a raw chunk: `ColumnChunk` checks every buffer once, then reads values by row.

use crate::chunk::{buffer_ranges, ChunkBytes};
use crate::error::Result;
use crate::msgpack::check_msgpack;
use crate::pages::PageCheck;
use crate::schema::{DataType, NumType};
use crate::value::Value;
use std::ops::Range;
use std::sync::Arc;

/// A validated column of a row group, ready for random access by row.
#[derive(Debug, Clone)]
pub struct ColumnChunk {
    pub bytes: ChunkBytes,
    pub root: Node,
    pub len: usize,
    /// Set when the chunk's values are verified page by page as they are read (a blob chunk
    /// with page checksums); `None` when the whole chunk was verified before decoding.
    pub pages: Option<Arc<PageCheck>>,
}

#[derive(Debug, Clone)]
pub enum VarKind {
    String,
    Binary,
    Any,
}

/// A decoded node of the type tree; ranges index the raw chunk.
#[derive(Debug, Clone)]
pub enum Node {
    Bool {
        validity: Option<Range<usize>>,
        bits: Range<usize>,
    },
    Num {
        validity: Option<Range<usize>>,
        t: NumType,
        values: Range<usize>,
    },
    Var {
        validity: Option<Range<usize>>,
        kind: VarKind,
        offsets: Range<usize>,
        data: Range<usize>,
    },
    Array {
        validity: Option<Range<usize>>,
        t: NumType,
        shape: Vec<usize>,
        row_bytes: usize,
        offsets: Range<usize>,
        data: Range<usize>,
    },
    List {
        validity: Option<Range<usize>>,
        offsets: Range<usize>,
        child: Box<Node>,
    },
    Struct {
        validity: Option<Range<usize>>,
        children: Vec<Node>,
    },
}

#[inline]
pub fn read_u64(raw: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(raw[at..at + 8].try_into().unwrap())
}

#[inline]
pub fn bit(raw: &[u8], r: &Range<usize>, i: usize) -> bool {
    raw[r.start + i / 8] >> (i % 8) & 1 == 1
}

impl ColumnChunk {
    /// Parses and checks a raw chunk of `len` rows of `dtype`.
    pub fn parse(
        bytes: ChunkBytes,
        dtype: &DataType,
        nullable: bool,
        len: usize,
    ) -> Result<Self, String> {
        let raw = bytes.as_slice();
        let ranges = buffer_ranges(raw)?;
        let mut it = ranges.into_iter();
        let root = Node::parse(raw, dtype, nullable, len, &mut it, 0)?;
        if it.next().is_some() {
            return Err("chunk has more buffers than its type needs".into());
        }
        Ok(ColumnChunk {
            bytes,
            root,
            len,
            pages: None,
        })
    }

    pub fn raw(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// Verifies the bytes `range` of the raw chunk where the chunk is verified page by page.
    #[inline]
    pub fn check(&self, range: Range<usize>) -> Result<()> {
        match &self.pages {
            Some(p) => p.check(range),
            None => Ok(()),
        }
    }

    /// Verifies the bytes of value `row` (see `check`).
    pub fn check_value(&self, row: usize) -> Result<()> {
        if self.pages.is_none() {
            return Ok(());
        }
        match &self.root {
            Node::Var { offsets, data, .. } => {
                self.check(Node::var_range(self.raw(), offsets, data, row))
            }
            _ => self.check(0..self.raw().len()),
        }
    }

    /// Where the bytes of value `row` of a variable-length column (binary, string) lie in the
    /// raw chunk.
    pub fn var_value_range(&self, row: usize) -> Option<Range<usize>> {
        match &self.root {
            Node::Var { offsets, data, .. } => {
                Some(Node::var_range(self.raw(), offsets, data, row))
            }
            _ => None,
        }
    }

    /// Value `row`, its bytes verified.
    pub fn value(&self, row: usize) -> Result<Value> {
        self.check_value(row)?;
        Ok(self.root.value(self.raw(), row))
    }
}

fn check_bitmap(raw: &[u8], r: &Range<usize>, n: usize, what: &str) -> Result<(), String> {
    if r.len() != n.div_ceil(8) {
        return Err(format!(
            "{what} has {} bytes, expected {}",
            r.len(),
            n.div_ceil(8)
        ));
    }
    if !n.is_multiple_of(8) && raw[r.end - 1] >> (n % 8) != 0 {
        return Err(format!("{what} has bits set past the last row"));
    }
    Ok(())
}

/// Checks an offsets buffer of `n + 1` u64 and returns its last value.
fn check_offsets(raw: &[u8], r: &Range<usize>, n: usize) -> Result<u64, String> {
    if r.len() != (n + 1) * 8 {
        return Err(format!(
            "offsets buffer has {} bytes, expected {}",
            r.len(),
            (n + 1) * 8
        ));
    }
    let mut prev = read_u64(raw, r.start);
    if prev != 0 {
        return Err("first offset is not zero".into());
    }
    for i in 1..=n {
        let x = read_u64(raw, r.start + 8 * i);
        if x < prev {
            return Err(format!("offsets decrease at row {i}"));
        }
        prev = x;
    }
    Ok(prev)
}

impl Node {
    fn parse(
        raw: &[u8],
        dtype: &DataType,
        nullable: bool,
        n: usize,
        bufs: &mut impl Iterator<Item = Range<usize>>,
        depth: usize,
    ) -> Result<Node, String> {
        if depth > crate::format::MAX_NESTING_DEPTH {
            return Err("type nests too deeply".into());
        }
        // Every type spends at least one bit per row, so a row count beyond 8 × the chunk's
        // size is damage; bounding it first keeps every size computed below from overflowing.
        if n as u128 > raw.len() as u128 * 8 + 8 {
            return Err(format!(
                "{n} rows cannot fit in a chunk of {} bytes",
                raw.len()
            ));
        }
        let mut next = |what: &str| bufs.next().ok_or_else(|| format!("missing {what} buffer"));
        let validity = if nullable {
            let r = next("validity")?;
            check_bitmap(raw, &r, n, "validity bitmap")?;
            Some(r)
        } else {
            None
        };
        Ok(match dtype {
            DataType::Bool => {
                let bits = next("bool")?;
                check_bitmap(raw, &bits, n, "bool bitmap")?;
                Node::Bool { validity, bits }
            }
            DataType::String | DataType::Binary | DataType::Any => {
                let offsets = next("offsets")?;
                let data = next("data")?;
                let last = check_offsets(raw, &offsets, n)?;
                if last != data.len() as u64 {
                    return Err(format!("last offset {last} != data length {}", data.len()));
                }
                let kind = match dtype {
                    DataType::String => {
                        let s = std::str::from_utf8(&raw[data.clone()])
                            .map_err(|e| format!("invalid UTF-8 in string data: {e}"))?;
                        for i in 1..n {
                            let o = read_u64(raw, offsets.start + 8 * i) as usize;
                            if !s.is_char_boundary(o) {
                                return Err(format!("string {i} starts inside a UTF-8 character"));
                            }
                        }
                        VarKind::String
                    }
                    DataType::Binary => VarKind::Binary,
                    _ => {
                        for i in 0..n {
                            let (a, b) = Node::span(raw, &offsets, i);
                            let v = &raw[data.start + a..data.start + b];
                            // Empty values are the placeholders of null slots.
                            if !v.is_empty() {
                                check_msgpack(v)
                                    .map_err(|e| format!("value {i} of an 'any' column: {e}"))?;
                            }
                        }
                        VarKind::Any
                    }
                };
                Node::Var {
                    validity,
                    kind,
                    offsets,
                    data,
                }
            }
            DataType::Array { dtype: t, shape } => {
                let offsets = next("offsets")?;
                let data = next("data")?;
                let last = check_offsets(raw, &offsets, n)?;
                let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
                let row_bytes = shape
                    .iter()
                    .try_fold(t.width(), |acc, &d| acc.checked_mul(d))
                    .filter(|&b| b as u64 <= crate::format::MAX_ARRAY_ROW_BYTES)
                    .ok_or("array inner shape is too large")?;
                if (last as u128) * (row_bytes as u128) != data.len() as u128 {
                    return Err(format!(
                        "array data is {} bytes, expected {last} rows of {row_bytes} bytes",
                        data.len()
                    ));
                }
                Node::Array {
                    validity,
                    t: *t,
                    shape,
                    row_bytes,
                    offsets,
                    data,
                }
            }
            DataType::List {
                item,
                item_nullable,
            } => {
                let offsets = next("offsets")?;
                let count = check_offsets(raw, &offsets, n)?;
                if count > raw.len() as u64 * 8 + 8 {
                    return Err(format!(
                        "list claims {count} items, more than the chunk can hold"
                    ));
                }
                let child =
                    Node::parse(raw, item, *item_nullable, count as usize, bufs, depth + 1)?;
                Node::List {
                    validity,
                    offsets,
                    child: Box::new(child),
                }
            }
            DataType::Struct { fields } => {
                let mut children = Vec::with_capacity(fields.len());
                for f in fields {
                    children.push(Node::parse(raw, &f.dtype, f.nullable, n, bufs, depth + 1)?);
                }
                Node::Struct { validity, children }
            }
            other => {
                let t = other.num_type().expect("numeric kind");
                let values = next("values")?;
                if values.len() != n * t.width() {
                    return Err(format!(
                        "values buffer has {} bytes, expected {}",
                        values.len(),
                        n * t.width()
                    ));
                }
                Node::Num {
                    validity,
                    t,
                    values,
                }
            }
        })
    }

    pub fn validity(&self) -> Option<&Range<usize>> {
        match self {
            Node::Bool { validity, .. }
            | Node::Num { validity, .. }
            | Node::Var { validity, .. }
            | Node::Array { validity, .. }
            | Node::List { validity, .. }
            | Node::Struct { validity, .. } => validity.as_ref(),
        }
    }

    #[inline]
    pub fn is_null(&self, raw: &[u8], i: usize) -> bool {
        self.validity().is_some_and(|v| !bit(raw, v, i))
    }

    /// `offsets[i]..offsets[i+1]` of an offsets buffer starting at `start`.
    #[inline]
    pub fn span(raw: &[u8], offsets: &Range<usize>, i: usize) -> (usize, usize) {
        (
            read_u64(raw, offsets.start + 8 * i) as usize,
            read_u64(raw, offsets.start + 8 * i + 8) as usize,
        )
    }

    /// The bytes of value `i` of a fixed-width values buffer.
    #[inline]
    pub fn fixed<'a>(raw: &'a [u8], values: &Range<usize>, width: usize, i: usize) -> &'a [u8] {
        &raw[values.start + i * width..values.start + (i + 1) * width]
    }

    /// Where value `i` of a `Var` node lies in the raw chunk.
    #[inline]
    pub fn var_range(
        raw: &[u8],
        offsets: &Range<usize>,
        data: &Range<usize>,
        i: usize,
    ) -> Range<usize> {
        let (a, b) = Node::span(raw, offsets, i);
        data.start + a..data.start + b
    }

    /// The outer rows of value `i` of an `Array` node, and where its elements lie in the raw
    /// chunk.
    #[inline]
    pub fn array_range(
        raw: &[u8],
        offsets: &Range<usize>,
        data: &Range<usize>,
        row_bytes: usize,
        i: usize,
    ) -> (usize, Range<usize>) {
        let (a, b) = Node::span(raw, offsets, i);
        (
            b - a,
            data.start + a * row_bytes..data.start + b * row_bytes,
        )
    }

    /// Reads value `i` as a core `Value` (the bindings build Python objects directly instead).
    pub fn value(&self, raw: &[u8], i: usize) -> Value {
        if self.is_null(raw, i) {
            return Value::Null;
        }
        match self {
            Node::Bool { bits, .. } => Value::Bool(bit(raw, bits, i)),
            Node::Num { t, values, .. } => num_value(*t, Node::fixed(raw, values, t.width(), i)),
            Node::Var {
                kind,
                offsets,
                data,
                ..
            } => {
                let s = &raw[Node::var_range(raw, offsets, data, i)];
                match kind {
                    VarKind::String => Value::Str(String::from_utf8_lossy(s).into_owned()),
                    VarKind::Binary => Value::Bytes(s.to_vec()),
                    VarKind::Any => Value::Any(s.to_vec()),
                }
            }
            Node::Array {
                row_bytes,
                offsets,
                data,
                ..
            } => {
                let (rows, r) = Node::array_range(raw, offsets, data, *row_bytes, i);
                Value::Array {
                    rows: rows as u64,
                    data: raw[r].to_vec(),
                }
            }
            Node::List { offsets, child, .. } => {
                let (a, b) = Node::span(raw, offsets, i);
                Value::List((a..b).map(|j| child.value(raw, j)).collect())
            }
            Node::Struct { children, .. } => {
                Value::Struct(children.iter().map(|c| c.value(raw, i)).collect())
            }
        }
    }
}

pub fn num_value(t: NumType, b: &[u8]) -> Value {
    match t {
        NumType::Int8 => Value::Int(i8::from_le_bytes(b.try_into().unwrap()) as i64),
        NumType::Int16 => Value::Int(i16::from_le_bytes(b.try_into().unwrap()) as i64),
        NumType::Int32 => Value::Int(i32::from_le_bytes(b.try_into().unwrap()) as i64),
        NumType::Int64 => Value::Int(i64::from_le_bytes(b.try_into().unwrap())),
        NumType::Uint8 => Value::UInt(b[0] as u64),
        NumType::Uint16 => Value::UInt(u16::from_le_bytes(b.try_into().unwrap()) as u64),
        NumType::Uint32 => Value::UInt(u32::from_le_bytes(b.try_into().unwrap()) as u64),
        NumType::Uint64 => Value::UInt(u64::from_le_bytes(b.try_into().unwrap())),
        NumType::Float32 => Value::Float(f32::from_le_bytes(b.try_into().unwrap()) as f64),
        NumType::Float64 => Value::Float(f64::from_le_bytes(b.try_into().unwrap())),
    }
}
