//! `seamline._core`: the PyO3 face of seamline-core. Arrow comes in through the PyCapsule stream
//! interface (anything with `__arrow_c_stream__`), work runs with the GIL released, and core errors
//! become the `SeamlineError` hierarchy.

mod errors;
mod handles;
mod kafka_reader;
mod os_reader;
mod pg_reader;
mod spec;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<handles::PySideSpec>()?;
    m.add_class::<handles::PyCancelToken>()?;
    m.add_class::<handles::PyRowCounter>()?;
    m.add_class::<handles::PyPartitioner>()?;
    m.add_class::<handles::PyLeafSet>()?;
    m.add_class::<handles::PyCollected>()?;
    m.add_class::<handles::PyRowLeaves>()?;
    m.add_class::<handles::PyRetainedBatches>()?;
    m.add_function(wrap_pyfunction!(handles::hash_pass, m)?)?;
    m.add_function(wrap_pyfunction!(handles::collect_pass, m)?)?;
    m.add_function(wrap_pyfunction!(handles::classify, m)?)?;
    m.add_function(wrap_pyfunction!(handles::sorted_unique_rows, m)?)?;
    m.add_function(wrap_pyfunction!(handles::coalesce_ranges, m)?)?;
    m.add_function(wrap_pyfunction!(handles::merkle_roots, m)?)?;
    m.add_function(wrap_pyfunction!(handles::available_cores, m)?)?;
    m.add_function(wrap_pyfunction!(pg_reader::pg_copy_stream, m)?)?;
    m.add_class::<pg_reader::PyPgSession>()?;
    m.add_function(wrap_pyfunction!(os_reader::os_search_stream, m)?)?;
    m.add_class::<os_reader::OsHttp>()?;
    m.add_function(wrap_pyfunction!(kafka_reader::kafka_fetch_stream, m)?)?;
    m.add_function(wrap_pyfunction!(kafka_reader::kafka_fold, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
