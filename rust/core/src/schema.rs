//! The type system: `Schema`, `Field`, `DataType`. Serialised as in FORMAT.md "Schema".

use crate::error::{Error, Result};
pub use crate::format::MAX_ARRAY_ROW_BYTES;
use crate::format::MAX_NESTING_DEPTH;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// Numeric element types (scalars and array elements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumType {
    Int8,
    Int16,
    Int32,
    Int64,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Float32,
    Float64,
}

impl NumType {
    pub fn width(self) -> usize {
        match self {
            NumType::Int8 | NumType::Uint8 => 1,
            NumType::Int16 | NumType::Uint16 => 2,
            NumType::Int32 | NumType::Uint32 | NumType::Float32 => 4,
            NumType::Int64 | NumType::Uint64 | NumType::Float64 => 8,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, NumType::Float32 | NumType::Float64)
    }
    pub fn is_signed(self) -> bool {
        matches!(
            self,
            NumType::Int8 | NumType::Int16 | NumType::Int32 | NumType::Int64
        )
    }
    pub fn name(self) -> &'static str {
        match self {
            NumType::Int8 => "int8",
            NumType::Int16 => "int16",
            NumType::Int32 => "int32",
            NumType::Int64 => "int64",
            NumType::Uint8 => "uint8",
            NumType::Uint16 => "uint16",
            NumType::Uint32 => "uint32",
            NumType::Uint64 => "uint64",
            NumType::Float32 => "float32",
            NumType::Float64 => "float64",
        }
    }
    /// The inclusive integer range of an integer type, as i128.
    pub fn int_range(self) -> (i128, i128) {
        match self {
            NumType::Int8 => (i8::MIN as i128, i8::MAX as i128),
            NumType::Int16 => (i16::MIN as i128, i16::MAX as i128),
            NumType::Int32 => (i32::MIN as i128, i32::MAX as i128),
            NumType::Int64 => (i64::MIN as i128, i64::MAX as i128),
            NumType::Uint8 => (0, u8::MAX as i128),
            NumType::Uint16 => (0, u16::MAX as i128),
            NumType::Uint32 => (0, u32::MAX as i128),
            NumType::Uint64 => (0, u64::MAX as i128),
            NumType::Float32 | NumType::Float64 => (i128::MIN, i128::MAX),
        }
    }
}

/// A column or struct member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub dtype: DataType,
    pub nullable: bool,
}

impl Field {
    pub fn new(name: impl Into<String>, dtype: DataType, nullable: bool) -> Self {
        Field {
            name: name.into(),
            dtype,
            nullable,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DataType {
    Bool,
    Int8,
    Int16,
    Int32,
    Int64,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Float32,
    Float64,
    String,
    Binary,
    Any,
    /// Variable outer dimension, fixed inner `shape`: a point list is `dtype=float32, shape=[2]`.
    Array {
        dtype: NumType,
        shape: Vec<u64>,
    },
    List {
        item: Box<DataType>,
        item_nullable: bool,
    },
    Struct {
        fields: Vec<Field>,
    },
}

impl DataType {
    /// The numeric type of a numeric scalar kind.
    pub fn num_type(&self) -> Option<NumType> {
        Some(match self {
            DataType::Int8 => NumType::Int8,
            DataType::Int16 => NumType::Int16,
            DataType::Int32 => NumType::Int32,
            DataType::Int64 => NumType::Int64,
            DataType::Uint8 => NumType::Uint8,
            DataType::Uint16 => NumType::Uint16,
            DataType::Uint32 => NumType::Uint32,
            DataType::Uint64 => NumType::Uint64,
            DataType::Float32 => NumType::Float32,
            DataType::Float64 => NumType::Float64,
            _ => return None,
        })
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::String => "string",
            DataType::Binary => "binary",
            DataType::Any => "any",
            DataType::Array { .. } => "array",
            DataType::List { .. } => "list",
            DataType::Struct { .. } => "struct",
            other => other.num_type().map(NumType::name).unwrap_or("?"),
        }
    }

    /// A short human-readable form, e.g. `list<struct<question: string, answer: string>>`.
    pub fn display(&self) -> String {
        match self {
            DataType::Array { dtype, shape } => {
                let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
                format!("array<{}, (N, {})>", dtype.name(), dims.join(", ")).replace(", )", ")")
            }
            DataType::List {
                item,
                item_nullable,
            } => {
                format!(
                    "list<{}{}>",
                    item.display(),
                    if *item_nullable { "?" } else { "" }
                )
            }
            DataType::Struct { fields } => {
                let inner: Vec<String> = fields
                    .iter()
                    .map(|f| {
                        format!(
                            "{}: {}{}",
                            f.name,
                            f.dtype.display(),
                            if f.nullable { "?" } else { "" }
                        )
                    })
                    .collect();
                format!("struct<{}>", inner.join(", "))
            }
            other => other.kind_name().to_string(),
        }
    }

    fn validate(&self, path: &str, depth: usize) -> Result<()> {
        if depth > MAX_NESTING_DEPTH {
            return Err(Error::schema(
                path,
                format!("nesting deeper than {MAX_NESTING_DEPTH} levels"),
            ));
        }
        match self {
            DataType::Array { dtype, shape } => {
                if shape.contains(&0) {
                    return Err(Error::schema(path, "array inner dimensions must be >= 1"));
                }
                if shape.len() > 16 {
                    return Err(Error::schema(
                        path,
                        "array has more than 16 inner dimensions",
                    ));
                }
                let row_bytes = shape
                    .iter()
                    .try_fold(dtype.width() as u64, |acc, &d| acc.checked_mul(d));
                if row_bytes.is_none_or(|b| b > MAX_ARRAY_ROW_BYTES) {
                    return Err(Error::schema(
                        path,
                        format!(
                            "array inner shape {shape:?} exceeds {MAX_ARRAY_ROW_BYTES} bytes a row"
                        ),
                    ));
                }
                Ok(())
            }
            DataType::List { item, .. } => item.validate(&format!("{path}[]"), depth + 1),
            DataType::Struct { fields } => {
                if fields.is_empty() {
                    return Err(Error::schema(path, "a struct needs at least one field"));
                }
                validate_fields(fields, path, depth + 1)
            }
            _ => Ok(()),
        }
    }
}

fn validate_fields(fields: &[Field], parent: &str, depth: usize) -> Result<()> {
    let mut seen = HashSet::new();
    for f in fields {
        let path = if parent.is_empty() {
            f.name.clone()
        } else {
            format!("{parent}.{}", f.name)
        };
        if f.name.is_empty() {
            return Err(Error::schema(parent, "field names must not be empty"));
        }
        if !seen.insert(f.name.as_str()) {
            return Err(Error::schema(path, "duplicate field name"));
        }
        f.dtype.validate(&path, depth)?;
    }
    Ok(())
}

/// The top-level fields of a dataset; each is one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub fields: Vec<Field>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl Schema {
    pub fn new(fields: Vec<Field>) -> Result<Self> {
        let s = Schema {
            fields,
            metadata: BTreeMap::new(),
        };
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<()> {
        if self.fields.is_empty() {
            return Err(Error::schema("", "a schema needs at least one field"));
        }
        validate_fields(&self.fields, "", 1)
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.fields.iter().map(|f| f.name.as_str()).collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a schema always serialises")
    }

    pub fn from_json(s: &str) -> Result<Self> {
        let schema: Schema = serde_json::from_str(s)
            .map_err(|e| Error::schema("", format!("invalid schema description: {e}")))?;
        schema.validate()?;
        Ok(schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_shape() {
        let s = Schema::new(vec![
            Field::new(
                "points",
                DataType::Array {
                    dtype: NumType::Float32,
                    shape: vec![2],
                },
                false,
            ),
            Field::new(
                "qa",
                DataType::List {
                    item: Box::new(DataType::Struct {
                        fields: vec![Field::new("q", DataType::String, false)],
                    }),
                    item_nullable: false,
                },
                true,
            ),
        ])
        .unwrap();
        let j = s.to_json();
        assert!(
            j.contains(r#""kind":"array","dtype":"float32","shape":[2]"#),
            "{j}"
        );
        assert_eq!(Schema::from_json(&j).unwrap(), s);
    }

    #[test]
    fn rejects_duplicates_and_empty_structs() {
        let dup = Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("a", DataType::Int64, false),
        ]);
        assert!(matches!(dup, Err(Error::Schema { .. })));
        let empty = Schema::new(vec![Field::new(
            "s",
            DataType::Struct { fields: vec![] },
            false,
        )]);
        assert!(empty.is_err());
    }
}
