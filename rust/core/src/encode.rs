//! Column builders: append checked `Value`s, then emit the buffers of FORMAT.md "Raw chunk"
//! in depth-first order.

use crate::chunk::Buffer;
use crate::schema::{DataType, NumType};
use crate::value::Value;

/// A growable bitmap, least significant bit first.
#[derive(Debug, Default, Clone)]
pub struct Bitmap {
    bytes: Vec<u8>,
    len: usize,
}

impl Bitmap {
    pub fn push(&mut self, bit: bool) {
        if self.len.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if bit {
            self.bytes[self.len / 8] |= 1 << (self.len % 8);
        }
        self.len += 1;
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[derive(Debug)]
enum Kind {
    Bool(Bitmap),
    Num {
        t: NumType,
        data: Vec<u8>,
    },
    Var {
        offsets: Vec<u64>,
        data: Buffer,
    },
    Array {
        row_bytes: usize,
        offsets: Vec<u64>,
        data: Vec<u8>,
    },
    List {
        offsets: Vec<u64>,
        child: Box<ColumnBuilder>,
    },
    Struct(Vec<ColumnBuilder>),
}

/// Builds one column (or a nested child) of a row group.
#[derive(Debug)]
pub struct ColumnBuilder {
    validity: Option<Bitmap>,
    kind: Kind,
    len: usize,
    bytes: usize,
}

impl ColumnBuilder {
    pub fn new(dtype: &DataType, nullable: bool) -> Self {
        let kind = match dtype {
            DataType::Bool => Kind::Bool(Bitmap::default()),
            DataType::String | DataType::Binary | DataType::Any => Kind::Var {
                offsets: vec![0],
                data: Buffer::default(),
            },
            DataType::Array { dtype: t, shape } => Kind::Array {
                row_bytes: shape.iter().product::<u64>() as usize * t.width(),
                offsets: vec![0],
                data: Vec::new(),
            },
            DataType::List {
                item,
                item_nullable,
            } => Kind::List {
                offsets: vec![0],
                child: Box::new(ColumnBuilder::new(item, *item_nullable)),
            },
            DataType::Struct { fields } => Kind::Struct(
                fields
                    .iter()
                    .map(|f| ColumnBuilder::new(&f.dtype, f.nullable))
                    .collect(),
            ),
            other => Kind::Num {
                t: other.num_type().expect("numeric kind"),
                data: Vec::new(),
            },
        };
        ColumnBuilder {
            validity: nullable.then(Bitmap::default),
            kind,
            len: 0,
            bytes: 0,
        }
    }

    /// Reserves the buffer sizes `like` holds now (the previous row group of this column), so
    /// that filling a row group of the same shape never grows a buffer by copying it.
    pub fn reserve_like(&mut self, like: &ColumnBuilder) {
        if let (Some(v), Some(l)) = (&mut self.validity, &like.validity) {
            v.bytes.reserve(l.bytes.len());
        }
        match (&mut self.kind, &like.kind) {
            (Kind::Bool(b), Kind::Bool(l)) => b.bytes.reserve(l.bytes.len()),
            (Kind::Num { data, .. }, Kind::Num { data: l, .. }) => data.reserve(l.len()),
            (
                Kind::Var { offsets, data },
                Kind::Var {
                    offsets: lo,
                    data: ld,
                },
            ) => {
                offsets.reserve(lo.len());
                data.reserve(ld.owned_len());
            }
            (
                Kind::Array { offsets, data, .. },
                Kind::Array {
                    offsets: lo,
                    data: ld,
                    ..
                },
            ) => {
                offsets.reserve(lo.len());
                data.reserve(ld.len());
            }
            (
                Kind::List { offsets, child },
                Kind::List {
                    offsets: lo,
                    child: lc,
                },
            ) => {
                offsets.reserve(lo.len());
                child.reserve_like(lc);
            }
            (Kind::Struct(children), Kind::Struct(lc)) => {
                for (c, l) in children.iter_mut().zip(lc) {
                    c.reserve_like(l);
                }
            }
            _ => {}
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Approximate bytes buffered so far (drives row-group sizing).
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Appends a value that `check_value` accepted for this builder's type.
    pub fn append(&mut self, v: &Value) {
        let present = !matches!(v, Value::Null);
        if let Some(bm) = &mut self.validity {
            bm.push(present);
        }
        self.len += 1;
        let before = self.size_hint();
        match (&mut self.kind, v) {
            (Kind::Bool(bm), Value::Bool(b)) => bm.push(*b),
            (Kind::Bool(bm), _) => bm.push(false),
            (Kind::Num { t, data }, v) => push_num(*t, data, v),
            (Kind::Var { offsets, data }, v) => {
                match v {
                    Value::Str(s) => data.extend_from_slice(s.as_bytes()),
                    Value::Bytes(b) | Value::Any(b) => data.extend_from_slice(b),
                    Value::Shared(b) => data.push_shared(b.clone()),
                    _ => {}
                }
                offsets.push(data.len() as u64);
            }
            (
                Kind::Array {
                    row_bytes,
                    offsets,
                    data,
                },
                v,
            ) => {
                if let Value::Array { data: d, .. } = v {
                    data.extend_from_slice(d);
                }
                offsets.push((data.len() / (*row_bytes).max(1)) as u64);
            }
            (Kind::List { offsets, child }, v) => {
                if let Value::List(items) = v {
                    for x in items {
                        child.append(x);
                    }
                }
                offsets.push(child.len() as u64);
            }
            (Kind::Struct(children), v) => match v {
                Value::Struct(members) => {
                    for (c, x) in children.iter_mut().zip(members) {
                        c.append(x);
                    }
                }
                _ => {
                    for c in children.iter_mut() {
                        c.append_placeholder();
                    }
                }
            },
        }
        self.bytes += self.size_hint() - before + 1;
    }

    /// The slot of a null parent: null if nullable, else a zero/empty value.
    fn append_placeholder(&mut self) {
        if self.validity.is_some() {
            self.append(&Value::Null);
            return;
        }
        self.len += 1;
        match &mut self.kind {
            Kind::Bool(bm) => bm.push(false),
            Kind::Num { t, data } => data.resize(data.len() + t.width(), 0),
            Kind::Var { offsets, data } => offsets.push(data.len() as u64),
            Kind::Array { offsets, .. } => offsets.push(*offsets.last().unwrap()),
            Kind::List { offsets, child } => offsets.push(child.len() as u64),
            Kind::Struct(children) => children.iter_mut().for_each(|c| c.append_placeholder()),
        }
    }

    fn size_hint(&self) -> usize {
        match &self.kind {
            Kind::Bool(_) => 0,
            Kind::Num { data, .. } => data.len(),
            Kind::Var { offsets, data } => data.len() + offsets.len() * 8,
            Kind::Array { offsets, data, .. } => data.len() + offsets.len() * 8,
            Kind::List { offsets, child } => offsets.len() * 8 + child.bytes,
            Kind::Struct(children) => children.iter().map(|c| c.bytes).sum(),
        }
    }

    /// Emits the buffers in FORMAT.md order and resets nothing (the builder is consumed).
    pub fn finish(self, out: &mut Vec<Buffer>) {
        if let Some(bm) = self.validity {
            out.push(bm.into_bytes().into());
        }
        match self.kind {
            Kind::Bool(bm) => out.push(bm.into_bytes().into()),
            Kind::Num { data, .. } => out.push(data.into()),
            Kind::Var { offsets, data } => {
                out.push(u64s_to_bytes(&offsets).into());
                out.push(data);
            }
            Kind::Array { offsets, data, .. } => {
                out.push(u64s_to_bytes(&offsets).into());
                out.push(data.into());
            }
            Kind::List { offsets, child } => {
                out.push(u64s_to_bytes(&offsets).into());
                child.finish(out);
            }
            Kind::Struct(children) => children.into_iter().for_each(|c| c.finish(out)),
        }
    }
}

fn u64s_to_bytes(v: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 8);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn push_num(t: NumType, data: &mut Vec<u8>, v: &Value) {
    let (i, u, f) = match v {
        Value::Int(i) => (*i, *i as u64, *i as f64),
        Value::UInt(u) => (*u as i64, *u, *u as f64),
        Value::Float(f) => (*f as i64, *f as u64, *f),
        Value::Bool(b) => (*b as i64, *b as u64, *b as u8 as f64),
        _ => (0, 0, 0.0),
    };
    match t {
        NumType::Int8 => data.extend_from_slice(&(i as i8).to_le_bytes()),
        NumType::Int16 => data.extend_from_slice(&(i as i16).to_le_bytes()),
        NumType::Int32 => data.extend_from_slice(&(i as i32).to_le_bytes()),
        NumType::Int64 => data.extend_from_slice(&i.to_le_bytes()),
        NumType::Uint8 => data.extend_from_slice(&(u as u8).to_le_bytes()),
        NumType::Uint16 => data.extend_from_slice(&(u as u16).to_le_bytes()),
        NumType::Uint32 => data.extend_from_slice(&(u as u32).to_le_bytes()),
        NumType::Uint64 => data.extend_from_slice(&u.to_le_bytes()),
        NumType::Float32 => data.extend_from_slice(&(f as f32).to_le_bytes()),
        NumType::Float64 => data.extend_from_slice(&f.to_le_bytes()),
    }
}
