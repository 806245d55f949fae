//! The Python module `mlyexport._core`: the mlyexport engine for Python
//! (the pure-Python package `mlyexport` wraps it). Every long call runs the
//! Rust work on the shared tokio runtime with the GIL released, and polls
//! for Ctrl-C from the calling thread (see [`runner`]).

mod client;
mod commands;
mod convert;
mod errors;
mod runner;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<client::PyClient>()?;
    m.add_function(wrap_pyfunction!(commands::fetch, m)?)?;
    m.add_function(wrap_pyfunction!(commands::layers, m)?)?;
    m.add_function(wrap_pyfunction!(commands::read_records, m)?)?;
    Ok(())
}
