//! JSON values and records to Python objects. Typed records turn
//! `captured_at` (epoch milliseconds) into a timezone-aware UTC `datetime`
//! and GeoJSON points into `(lon, lat)` float tuples.

use chrono::{DateTime, Utc};
use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use serde_json::{Map, Value};

/// A JSON value as the equivalent Python object.
pub fn json<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_bound_py_any(py)?,
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_bound_py_any(py)?
            } else if let Some(u) = n.as_u64() {
                u.into_bound_py_any(py)?
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_bound_py_any(py)?
            }
        }
        Value::String(s) => s.into_bound_py_any(py)?,
        Value::Array(a) => {
            let items = a
                .iter()
                .map(|x| json(py, x))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Value::Object(o) => object(py, o)?.into_any(),
    })
}

/// A JSON object as a dict, values unchanged.
pub fn object<'py>(py: Python<'py>, o: &Map<String, Value>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in o {
        d.set_item(k, json(py, v)?)?;
    }
    Ok(d)
}

/// An image object as a typed record: every field, with `captured_at` a
/// UTC `datetime` and `geometry`/`computed_geometry` `(lon, lat)` tuples.
pub fn record<'py>(py: Python<'py>, o: &Map<String, Value>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in o {
        let value = match k.as_str() {
            "captured_at" => v
                .as_i64()
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .map(|t| t.into_bound_py_any(py))
                .transpose()?,
            "geometry" | "computed_geometry" => point(v)
                .map(|(lon, lat)| PyTuple::new(py, [lon, lat]).map(Bound::into_any))
                .transpose()?,
            _ => None,
        };
        match value {
            Some(x) => d.set_item(k, x)?,
            None => d.set_item(k, json(py, v)?)?,
        }
    }
    Ok(d)
}

/// `(lon, lat)` of a GeoJSON point.
fn point(v: &Value) -> Option<(f64, f64)> {
    let c = v.get("coordinates")?.as_array()?;
    Some((c.first()?.as_f64()?, c.get(1)?.as_f64()?))
}

/// A serializable value as a Python object (through JSON).
pub fn serialized<'py>(py: Python<'py>, v: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let value = serde_json::to_value(v).map_err(|e| {
        crate::errors::raise(crate::errors::Kind::Error, format!("cannot convert: {e}"))
    })?;
    json(py, &value)
}
