//! Python objects ⇄ core values. Writing goes through `Value` (checked before anything is
//! appended); reading builds Python objects straight from the decoded buffers.

use crate::blob::PyBlob;
use crate::errors::to_py;
use numpy::{Element, PyArray, PyArrayMethods, PyUntypedArrayMethods};
use pixmo_stream_core::chunk::ChunkBytes;
use pixmo_stream_core::decode::{bit, num_value, Node, VarKind};
use pixmo_stream_core::pages::PageCheck;
use pixmo_stream_core::schema::{DataType, Field, NumType};
use pixmo_stream_core::value::SharedBytes;
use pixmo_stream_core::{Error, Value};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};
use pyo3::IntoPyObjectExt;
use std::sync::Arc;

/// Python helpers the conversions call (looked up once).
pub struct Helpers {
    /// `pixmo_stream._convert.to_array(obj, dtype, shape) -> (rows, bytes)`
    pub to_array: Py<PyAny>,
    /// `msgpack.packb` / `msgpack.unpackb`
    pub packb: Py<PyAny>,
    pub unpackb: Py<PyAny>,
    /// Struct member names as interned Python strings, made once each.
    keys: std::sync::Mutex<std::collections::HashMap<String, Py<PyString>>>,
}

impl Helpers {
    pub fn load(py: Python<'_>) -> PyResult<Self> {
        let conv = py.import("pixmo_stream._convert")?;
        Ok(Helpers {
            to_array: conv.getattr("to_array")?.unbind(),
            packb: conv.getattr("pack_any")?.unbind(),
            unpackb: conv.getattr("unpack_any")?.unbind(),
            keys: Default::default(),
        })
    }

    /// `name` as an interned `str` (the same object every time).
    fn key<'py>(&self, py: Python<'py>, name: &str) -> Bound<'py, PyString> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = keys.get(name) {
            return k.bind(py).clone();
        }
        let k = PyString::intern(py, name);
        keys.insert(name.to_string(), k.clone().unbind());
        k
    }
}

/// A `bytes` object of at least this many bytes is written by reference, not copied.
const SHARE_MIN: usize = 4096;

/// A Python `bytes` object the writer keeps alive until its bytes are written. `bytes` are
/// immutable, and the reference keeps the memory where it is, so the bytes may be read
/// without the GIL; the reference is dropped through PyO3's deferred reference pool when the
/// writer's thread lets go of it.
struct PyBytesRef {
    _owner: Py<PyBytes>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the pointed-to bytes are immutable and live as long as `_owner`, which is `Send`.
unsafe impl Send for PyBytesRef {}
unsafe impl Sync for PyBytesRef {}

impl AsRef<[u8]> for PyBytesRef {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see the type's comment.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

fn schema_err(path: &str, reason: impl Into<String>) -> Error {
    Error::schema(path, reason)
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Converts a record (a dict) into values in schema order.
pub fn record_to_values(
    h: &Helpers,
    fields: &[Field],
    record: &Bound<'_, PyAny>,
) -> Result<Vec<Value>, Error> {
    let dict = record.downcast::<PyDict>().map_err(|_| {
        schema_err(
            "",
            format!("a record must be a dict, got {}", type_name(record)),
        )
    })?;
    struct_members(h, fields, dict, "")
}

fn struct_members(
    h: &Helpers,
    fields: &[Field],
    dict: &Bound<'_, PyDict>,
    path: &str,
) -> Result<Vec<Value>, Error> {
    let join = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    let mut out = Vec::with_capacity(fields.len());
    let mut found = 0usize;
    for f in fields {
        let p = join(&f.name);
        match dict
            .get_item(&f.name)
            .map_err(|e| schema_err(&p, e.to_string()))?
        {
            Some(v) => {
                found += 1;
                out.push(to_value(h, &f.dtype, f.nullable, &v, &p)?);
            }
            None if f.nullable => out.push(Value::Null),
            None => return Err(schema_err(&p, "missing (the field is not nullable)")),
        }
    }
    if found != dict.len() {
        for k in dict.keys() {
            let name = k.str().map(|s| s.to_string()).unwrap_or_default();
            if !fields.iter().any(|f| f.name == name) || !k.is_instance_of::<PyString>() {
                return Err(schema_err(&join(&name), "not in the schema"));
            }
        }
    }
    Ok(out)
}

fn to_value(
    h: &Helpers,
    dtype: &DataType,
    nullable: bool,
    obj: &Bound<'_, PyAny>,
    path: &str,
) -> Result<Value, Error> {
    // In a non-nullable `any` field, None is a value (msgpack nil), not a null.
    if obj.is_none() && (nullable || !matches!(dtype, DataType::Any)) {
        return if nullable {
            Ok(Value::Null)
        } else {
            Err(schema_err(path, "None in a non-nullable field"))
        };
    }
    let wrong = || {
        schema_err(
            path,
            format!("expected {}, got {}", dtype.display(), type_name(obj)),
        )
    };
    Ok(match dtype {
        DataType::Bool => Value::Bool(obj.downcast::<PyBool>().map_err(|_| wrong())?.is_true()),
        DataType::String => {
            let s = obj.downcast::<PyString>().map_err(|_| wrong())?;
            Value::Str(
                s.to_str()
                    .map_err(|e| schema_err(path, e.to_string()))?
                    .to_string(),
            )
        }
        DataType::Binary => {
            if let Ok(b) = obj.downcast_exact::<PyBytes>() {
                let data = b.as_bytes();
                if data.len() >= SHARE_MIN {
                    Value::Shared(SharedBytes::new(PyBytesRef {
                        ptr: data.as_ptr(),
                        len: data.len(),
                        _owner: b.clone().unbind(),
                    }))
                } else {
                    Value::Bytes(data.to_vec())
                }
            } else if let Ok(b) = obj.downcast::<PyBytes>() {
                Value::Bytes(b.as_bytes().to_vec())
            } else if let Ok(b) = obj.downcast::<PyByteArray>() {
                Value::Bytes(b.to_vec())
            } else if let Ok(buf) = pyo3::buffer::PyBuffer::<u8>::get(obj) {
                Value::Bytes(
                    buf.to_vec(obj.py())
                        .map_err(|e| schema_err(path, e.to_string()))?,
                )
            } else {
                return Err(wrong());
            }
        }
        DataType::Any => {
            let packed = h
                .packb
                .bind(obj.py())
                .call1((obj,))
                .map_err(|e| schema_err(path, e.to_string()))?;
            Value::Any(
                packed
                    .downcast::<PyBytes>()
                    .map_err(|_| wrong())?
                    .as_bytes()
                    .to_vec(),
            )
        }
        DataType::Array { dtype: t, shape } => {
            let res = h
                .to_array
                .bind(obj.py())
                .call1((obj, t.name(), shape.clone()))
                .map_err(|e| schema_err(path, e.to_string()))?;
            let (rows, data): (u64, Bound<'_, PyBytes>) =
                res.extract().map_err(|e| schema_err(path, e.to_string()))?;
            Value::Array {
                rows,
                data: data.as_bytes().to_vec(),
            }
        }
        DataType::List {
            item,
            item_nullable,
        } => {
            let items: Vec<Bound<'_, PyAny>> = if let Ok(l) = obj.downcast::<PyList>() {
                l.iter().collect()
            } else if let Ok(t) = obj.downcast::<PyTuple>() {
                t.iter().collect()
            } else {
                return Err(wrong());
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, x) in items.iter().enumerate() {
                out.push(to_value(
                    h,
                    item,
                    *item_nullable,
                    x,
                    &format!("{path}[{i}]"),
                )?);
            }
            Value::List(out)
        }
        DataType::Struct { fields } => {
            let d = obj.downcast::<PyDict>().map_err(|_| wrong())?;
            Value::Struct(struct_members(h, fields, d, path)?)
        }
        t => {
            let nt = t.num_type().expect("numeric kind");
            if obj.is_instance_of::<PyBool>() && !matches!(nt, NumType::Uint8 | NumType::Int8) {
                // bool is an int subclass; accepting it silently hides mistakes.
                return Err(wrong());
            }
            if nt.is_float() {
                Value::Float(obj.extract::<f64>().map_err(|_| wrong())?)
            } else if obj.is_instance_of::<PyFloat>() {
                return Err(wrong());
            } else if let Ok(i) = obj.extract::<i64>() {
                Value::Int(i)
            } else if let Ok(u) = obj.extract::<u64>() {
                Value::UInt(u)
            } else if !obj.is_instance_of::<PyInt>() {
                return Err(wrong());
            } else {
                return Err(schema_err(
                    path,
                    format!(
                        "{} does not fit {}",
                        obj.repr().map(|r| r.to_string()).unwrap_or_default(),
                        nt.name()
                    ),
                ));
            }
        }
    })
}

/// Builds a numpy array of `rows × shape` elements from little-endian bytes.
fn new_array<'py, T: Element>(py: Python<'py>, dims: &[usize], bytes: &[u8]) -> Bound<'py, PyAny> {
    // SAFETY: the array is created uninitialised with exactly `prod(dims)` elements of T, and
    // `bytes` holds exactly that many bytes (checked when the chunk was parsed); it is filled
    // completely before any Python code can see it.
    unsafe {
        let arr = PyArray::<T, _>::new(py, numpy::IxDyn(dims), false);
        debug_assert_eq!(arr.len() * std::mem::size_of::<T>(), bytes.len());
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), arr.data() as *mut u8, bytes.len());
        arr.into_any()
    }
}

/// What reading needs besides the node: the Python helpers, and the chunk's bytes, which
/// zero-copy blobs keep alive.
pub struct ReadCtx<'a> {
    pub helpers: &'a Helpers,
    pub bytes: &'a ChunkBytes,
    /// Set when the chunk's values are verified page by page as they are read.
    pub pages: Option<&'a Arc<PageCheck>>,
    pub zero_copy: bool,
}

/// Reads value `i` of `node` (of type `dtype`) as a Python object.
pub fn node_to_py<'py>(
    py: Python<'py>,
    ctx: &ReadCtx<'_>,
    dtype: &DataType,
    node: &Node,
    raw: &[u8],
    i: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let h = ctx.helpers;
    if node.is_null(raw, i) {
        return Ok(py.None().into_bound(py));
    }
    Ok(match node {
        Node::Bool { bits, .. } => PyBool::new(py, bit(raw, bits, i)).to_owned().into_any(),
        Node::Num { t, values, .. } => {
            match num_value(*t, Node::fixed(raw, values, t.width(), i)) {
                Value::Int(x) => x.into_bound_py_any(py)?,
                Value::UInt(x) => x.into_bound_py_any(py)?,
                Value::Float(x) => x.into_bound_py_any(py)?,
                _ => unreachable!(),
            }
        }
        Node::Var {
            kind,
            offsets,
            data,
            ..
        } => {
            let r = Node::var_range(raw, offsets, data, i);
            let s = &raw[r.clone()];
            match kind {
                // SAFETY: the whole data buffer was checked to be UTF-8 with every value
                // starting on a character boundary when the chunk was parsed.
                VarKind::String => {
                    PyString::new(py, unsafe { std::str::from_utf8_unchecked(s) }).into_any()
                }
                // A blob verifies its pages when its bytes are first read; a copy now.
                VarKind::Binary if ctx.zero_copy => Bound::new(
                    py,
                    PyBlob::new(ctx.bytes.clone(), r.start, r.len(), ctx.pages.cloned()),
                )?
                .into_any(),
                VarKind::Binary => {
                    if let Some(p) = ctx.pages {
                        p.check(r).map_err(to_py)?;
                    }
                    PyBytes::new(py, s).into_any()
                }
                // Decoded here; the Python decoder only for what this one leaves to it.
                VarKind::Any => match msgpack_to_py(py, s) {
                    Some(obj) => obj,
                    None => h.unpackb.bind(py).call1((PyBytes::new(py, s),))?,
                },
            }
        }
        Node::Array {
            t,
            shape,
            row_bytes,
            offsets,
            data,
            ..
        } => {
            let (rows, r) = Node::array_range(raw, offsets, data, *row_bytes, i);
            let bytes = &raw[r];
            let mut dims = Vec::with_capacity(shape.len() + 1);
            dims.push(rows);
            dims.extend_from_slice(shape);
            match t {
                NumType::Int8 => new_array::<i8>(py, &dims, bytes),
                NumType::Int16 => new_array::<i16>(py, &dims, bytes),
                NumType::Int32 => new_array::<i32>(py, &dims, bytes),
                NumType::Int64 => new_array::<i64>(py, &dims, bytes),
                NumType::Uint8 => new_array::<u8>(py, &dims, bytes),
                NumType::Uint16 => new_array::<u16>(py, &dims, bytes),
                NumType::Uint32 => new_array::<u32>(py, &dims, bytes),
                NumType::Uint64 => new_array::<u64>(py, &dims, bytes),
                NumType::Float32 => new_array::<f32>(py, &dims, bytes),
                NumType::Float64 => new_array::<f64>(py, &dims, bytes),
            }
        }
        Node::List { offsets, child, .. } => {
            let DataType::List { item, .. } = dtype else {
                unreachable!()
            };
            let (a, b) = Node::span(raw, offsets, i);
            let items = (a..b)
                .map(|j| node_to_py(py, ctx, item, child, raw, j))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Node::Struct { children, .. } => {
            let DataType::Struct { fields } = dtype else {
                unreachable!()
            };
            let d = PyDict::new(py);
            for (f, c) in fields.iter().zip(children) {
                d.set_item(
                    h.key(py, &f.name),
                    node_to_py(py, ctx, &f.dtype, c, raw, i)?,
                )?;
            }
            d.into_any()
        }
    })
}

/// One `any` value as Python objects, as `msgpack.unpackb(data, raw=False,
/// strict_map_key=False)` gives them (str for str, bytes for bin, lists, dicts). The chunk
/// parser has already checked every value (well-formed, UTF-8, no extension types, bounded
/// depth); `None` leaves the value to the Python decoder: a map key Python cannot hash, a
/// trailing byte, or anything this decoder does not expect.
fn msgpack_to_py<'py>(py: Python<'py>, v: &[u8]) -> Option<Bound<'py, PyAny>> {
    let mut pos = 0;
    let obj = msgpack_item(py, v, &mut pos, false)?;
    (pos == v.len()).then_some(obj)
}

/// One msgpack object at `pos`. An array that is a map key (or inside one) becomes a tuple,
/// so that it can be a dict key: what a Python tuple key was written as.
fn msgpack_item<'py>(
    py: Python<'py>,
    v: &[u8],
    pos: &mut usize,
    in_key: bool,
) -> Option<Bound<'py, PyAny>> {
    fn take<'a>(v: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
        let s = v.get(*pos..pos.checked_add(n)?)?;
        *pos += n;
        Some(s)
    }
    fn be(v: &[u8], pos: &mut usize, n: usize) -> Option<u64> {
        Some(
            take(v, pos, n)?
                .iter()
                .fold(0u64, |a, &b| (a << 8) | b as u64),
        )
    }
    let m = *take(v, pos, 1)?.first()?;
    let str_of = |pos: &mut usize, n: usize| -> Option<Bound<'py, PyAny>> {
        let s = std::str::from_utf8(take(v, pos, n)?).ok()?;
        Some(PyString::new(py, s).into_any())
    };
    let list_of = |pos: &mut usize, n: usize| -> Option<Bound<'py, PyAny>> {
        let out = PyList::empty(py);
        for _ in 0..n {
            out.append(msgpack_item(py, v, pos, in_key)?).ok()?;
        }
        if in_key {
            return Some(out.to_tuple().into_any());
        }
        Some(out.into_any())
    };
    let map_of = |pos: &mut usize, n: usize| -> Option<Bound<'py, PyAny>> {
        let out = PyDict::new(py);
        for _ in 0..n {
            let k = msgpack_item(py, v, pos, true)?;
            let x = msgpack_item(py, v, pos, in_key)?;
            out.set_item(k, x).ok()?; // an unhashable key: the Python decoder decides
        }
        Some(out.into_any())
    };
    let int = |x: i64| x.into_bound_py_any(py).ok();
    match m {
        0x00..=0x7f => int(m as i64),
        0xe0..=0xff => int(m as i8 as i64),
        0xc0 => Some(py.None().into_bound(py)),
        0xc2 => Some(PyBool::new(py, false).to_owned().into_any()),
        0xc3 => Some(PyBool::new(py, true).to_owned().into_any()),
        0x80..=0x8f => map_of(pos, (m & 0x0f) as usize),
        0x90..=0x9f => list_of(pos, (m & 0x0f) as usize),
        0xa0..=0xbf => str_of(pos, (m & 0x1f) as usize),
        0xd9 => {
            let n = be(v, pos, 1)? as usize;
            str_of(pos, n)
        }
        0xda => {
            let n = be(v, pos, 2)? as usize;
            str_of(pos, n)
        }
        0xdb => {
            let n = be(v, pos, 4)? as usize;
            str_of(pos, n)
        }
        0xc4..=0xc6 => {
            let n = be(v, pos, 1 << (m - 0xc4))? as usize;
            Some(PyBytes::new(py, take(v, pos, n)?).into_any())
        }
        0xca => {
            let b = take(v, pos, 4)?;
            (f32::from_be_bytes(b.try_into().ok()?) as f64)
                .into_bound_py_any(py)
                .ok()
        }
        0xcb => f64::from_be_bytes(take(v, pos, 8)?.try_into().ok()?)
            .into_bound_py_any(py)
            .ok(),
        0xcc..=0xcf => be(v, pos, 1 << (m - 0xcc))?.into_bound_py_any(py).ok(),
        0xd0 => int(take(v, pos, 1)?[0] as i8 as i64),
        0xd1 => int(i16::from_be_bytes(take(v, pos, 2)?.try_into().ok()?) as i64),
        0xd2 => int(i32::from_be_bytes(take(v, pos, 4)?.try_into().ok()?) as i64),
        0xd3 => int(i64::from_be_bytes(take(v, pos, 8)?.try_into().ok()?)),
        0xdc | 0xdd => {
            let n = be(v, pos, if m == 0xdc { 2 } else { 4 })? as usize;
            list_of(pos, n)
        }
        0xde | 0xdf => {
            let n = be(v, pos, if m == 0xde { 2 } else { 4 })? as usize;
            map_of(pos, n)
        }
        _ => None, // 0xc1 and extension types: the parser refused them already
    }
}
