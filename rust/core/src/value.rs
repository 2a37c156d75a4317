//! `Value`: one record's field as the core sees it, and the check that it fits a `DataType`.

use crate::error::{Error, Result};
use crate::schema::{DataType, NumType};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// Bytes of a `binary` field that the writer keeps by reference until they are written,
    /// instead of copying them (an image held by the caller, such as a Python `bytes`).
    Shared(SharedBytes),
    /// A numeric array: `rows` along the outer dimension, `data` the little-endian elements in
    /// C order, already of the field's dtype (the schema gives dtype and inner shape).
    Array {
        rows: u64,
        data: Vec<u8>,
    },
    List(Vec<Value>),
    /// Members in the struct's field order.
    Struct(Vec<Value>),
    /// One msgpack-encoded object.
    Any(Vec<u8>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::UInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) | Value::Shared(_) => "bytes",
            Value::Array { .. } => "array",
            Value::List(_) => "list",
            Value::Struct(_) => "struct",
            Value::Any(_) => "any",
        }
    }
}

/// Immutable bytes owned elsewhere and kept alive by this handle (cheap to clone). The owner
/// must never change them while any handle exists.
#[derive(Clone)]
pub struct SharedBytes(Arc<dyn AsRef<[u8]> + Send + Sync>);

impl SharedBytes {
    pub fn new(owner: impl AsRef<[u8]> + Send + Sync + 'static) -> Self {
        SharedBytes(Arc::new(owner))
    }

    pub fn as_slice(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

impl std::fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedBytes({} bytes)", self.as_slice().len())
    }
}

impl PartialEq for SharedBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

fn mismatch(path: &str, dtype: &DataType, v: &Value) -> Error {
    Error::schema(
        path,
        format!("expected {}, got {}", dtype.display(), v.type_name()),
    )
}

fn check_int(path: &str, t: NumType, v: &Value) -> Result<()> {
    let x: i128 = match v {
        Value::Int(i) => *i as i128,
        Value::UInt(u) => *u as i128,
        Value::Bool(b) => *b as i128,
        _ => return Err(mismatch(path, &scalar(t), v)),
    };
    let (lo, hi) = t.int_range();
    if x < lo || x > hi {
        return Err(Error::schema(
            path,
            format!("{x} is out of range for {}", t.name()),
        ));
    }
    Ok(())
}

fn scalar(t: NumType) -> DataType {
    match t {
        NumType::Int8 => DataType::Int8,
        NumType::Int16 => DataType::Int16,
        NumType::Int32 => DataType::Int32,
        NumType::Int64 => DataType::Int64,
        NumType::Uint8 => DataType::Uint8,
        NumType::Uint16 => DataType::Uint16,
        NumType::Uint32 => DataType::Uint32,
        NumType::Uint64 => DataType::Uint64,
        NumType::Float32 => DataType::Float32,
        NumType::Float64 => DataType::Float64,
    }
}

/// Checks that `v` fits `dtype` (with `nullable`), so that appending it cannot fail half-way.
/// `path` names the field in errors (`qa[3].answer`).
pub fn check_value(dtype: &DataType, nullable: bool, v: &Value, path: &str) -> Result<()> {
    if let Value::Null = v {
        return if nullable {
            Ok(())
        } else {
            Err(Error::schema(path, "null in a non-nullable field"))
        };
    }
    match (dtype, v) {
        (DataType::Bool, Value::Bool(_)) => Ok(()),
        (DataType::Float32, Value::Float(f)) if f.is_finite() && (*f as f32).is_infinite() => Err(
            Error::schema(path, format!("value {f:e} is out of range for float32")),
        ),
        (
            DataType::Float32 | DataType::Float64,
            Value::Float(_) | Value::Int(_) | Value::UInt(_),
        ) => Ok(()),
        (t, v) if t.num_type().is_some() => check_int(path, t.num_type().unwrap(), v),
        (DataType::String, Value::Str(_)) => Ok(()),
        (DataType::Binary, Value::Bytes(_) | Value::Shared(_)) => Ok(()),
        // The reader's checks, so that nothing is written that cannot be read back.
        (DataType::Any, Value::Any(b)) => crate::msgpack::check_msgpack(b)
            .map_err(|e| Error::schema(path, format!("cannot be stored as msgpack: {e}"))),
        (DataType::Array { dtype: et, shape }, Value::Array { rows, data }) => {
            let inner: u64 = shape.iter().product();
            let want = rows
                .checked_mul(inner)
                .and_then(|n| n.checked_mul(et.width() as u64))
                .ok_or_else(|| Error::schema(path, "array too large"))?;
            if want != data.len() as u64 {
                return Err(Error::schema(
                    path,
                    format!(
                        "array data is {} bytes, expected {want} for {rows} rows",
                        data.len()
                    ),
                ));
            }
            Ok(())
        }
        (
            DataType::List {
                item,
                item_nullable,
            },
            Value::List(items),
        ) => {
            for (i, x) in items.iter().enumerate() {
                check_value(item, *item_nullable, x, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (DataType::Struct { fields }, Value::Struct(members)) => {
            if members.len() != fields.len() {
                return Err(Error::schema(
                    path,
                    format!(
                        "struct has {} members, expected {}",
                        members.len(),
                        fields.len()
                    ),
                ));
            }
            for (f, x) in fields.iter().zip(members) {
                let p = if path.is_empty() {
                    f.name.clone()
                } else {
                    format!("{path}.{}", f.name)
                };
                check_value(&f.dtype, f.nullable, x, &p)?;
            }
            Ok(())
        }
        (t, v) => Err(mismatch(path, t, v)),
    }
}
