//! Column specs from Python dicts: {"name": "price", "type": "decimal", "scale": 2, ...}.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use seamline_core::{ColumnSpec, LogicalType, SideSpec, StringOptions, TimePrecision};

use crate::errors::InvalidInputError;

fn get<'py, T>(d: &Bound<'py, PyDict>, key: &str, default: T) -> PyResult<T>
where
    T: for<'a> FromPyObject<'a, 'py>,
    for<'a> <T as FromPyObject<'a, 'py>>::Error: Into<PyErr>,
{
    match d.get_item(key)? {
        Some(v) if !v.is_none() => v.extract::<T>().map_err(|e| {
            let e: PyErr = e.into();
            InvalidInputError::new_err(format!("column spec field '{key}': {e}"))
        }),
        _ => Ok(default),
    }
}

pub fn column_spec(d: &Bound<'_, PyDict>) -> PyResult<ColumnSpec> {
    let name: String = get(d, "name", String::new())?;
    let ty: String = get(d, "type", String::new())?;
    let logical = match ty.as_str() {
        "integer" => LogicalType::Integer,
        "decimal" => LogicalType::Decimal { scale: get(d, "scale", 0i8)? },
        "float" => LogicalType::Float { digits: get(d, "digits", 15u8)? },
        "boolean" => LogicalType::Boolean,
        "string" => LogicalType::String(StringOptions {
            nfc: get(d, "nfc", false)?,
            trim: get(d, "trim", false)?,
            casefold: get(d, "casefold", false)?,
            empty_as_null: get(d, "empty_as_null", false)?,
        }),
        "timestamp" => {
            let p: String = get(d, "precision", "us".to_string())?;
            let precision = TimePrecision::parse(&p).ok_or_else(|| {
                InvalidInputError::new_err(format!(
                    "column '{name}': timestamp precision {p:?} is not s, ms, us or ns"
                ))
            })?;
            LogicalType::Timestamp { precision }
        }
        "date" => LogicalType::Date,
        "json" => LogicalType::Json,
        "binary" => LogicalType::Binary,
        "uuid" => LogicalType::Uuid,
        "vector" => LogicalType::Vector { digits: get(d, "digits", 6u8)? },
        other => {
            return Err(InvalidInputError::new_err(format!(
                "column '{name}': unknown logical type {other:?}"
            )))
        }
    };
    Ok(ColumnSpec { name, logical })
}

fn columns(list: &Bound<'_, PyList>) -> PyResult<Vec<ColumnSpec>> {
    list.iter().map(|item| column_spec(item.cast::<PyDict>()?)).collect()
}

/// A side spec from (side name, key column dicts, value column dicts).
pub fn side_spec(side: String, key: &Bound<'_, PyList>, values: &Bound<'_, PyList>) -> PyResult<SideSpec> {
    Ok(SideSpec { side, key: columns(key)?, values: columns(values)? })
}
