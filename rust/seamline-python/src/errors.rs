//! The exception hierarchy, defined once here and re-exported by `seamline.exceptions`, and the
//! one conversion from the core's error enum into it.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyboardInterrupt};
use pyo3::prelude::*;
use std::any::Any;
use std::panic::AssertUnwindSafe;

use seamline_core::error::Cause;
use seamline_core::CoreError;

create_exception!(seamline._core, SeamlineError, PyException, "Base of every Seamline error.");
create_exception!(
    seamline._core,
    SchemaError,
    SeamlineError,
    "A column is unknown, missing, renamed or of an incompatible type."
);
create_exception!(
    seamline._core,
    ValueParseError,
    SeamlineError,
    "A value does not parse as its column's declared logical type."
);
create_exception!(
    seamline._core,
    InvalidInputError,
    SeamlineError,
    "An argument, file or serialised tree is malformed."
);
create_exception!(
    seamline._core,
    StoreUnavailableError,
    SeamlineError,
    "A store is down, unreachable or refuses the connection."
);
create_exception!(seamline._core, NotFoundError, SeamlineError, "A table, index or snapshot does not exist.");
create_exception!(seamline._core, ContractError, InvalidInputError, "A contract file is invalid.");
create_exception!(
    seamline._core,
    RepairRefusedError,
    SeamlineError,
    "A repair cannot be proven safe and was not applied."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SeamlineError", py.get_type::<SeamlineError>())?;
    m.add("SchemaError", py.get_type::<SchemaError>())?;
    m.add("ValueParseError", py.get_type::<ValueParseError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("StoreUnavailableError", py.get_type::<StoreUnavailableError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("ContractError", py.get_type::<ContractError>())?;
    m.add("RepairRefusedError", py.get_type::<RepairRefusedError>())?;
    Ok(())
}

/// The error at the boundary: a core error, or a Python error raised while talking to Python.
pub enum BoundaryError {
    Core(CoreError),
    Py(PyErr),
}

impl From<CoreError> for BoundaryError {
    fn from(e: CoreError) -> Self {
        BoundaryError::Core(e)
    }
}

impl From<PyErr> for BoundaryError {
    fn from(e: PyErr) -> Self {
        BoundaryError::Py(e)
    }
}

impl From<BoundaryError> for PyErr {
    fn from(e: BoundaryError) -> Self {
        match e {
            BoundaryError::Py(e) => e,
            BoundaryError::Core(e) => {
                let msg = e.to_string();
                match e.cause() {
                    Cause::Schema => SchemaError::new_err(msg),
                    Cause::Value => ValueParseError::new_err(msg),
                    Cause::Invalid => InvalidInputError::new_err(msg),
                    Cause::Cancelled => PyKeyboardInterrupt::new_err("interrupted"),
                    Cause::StoreUnavailable => StoreUnavailableError::new_err(msg),
                }
            }
        }
    }
}

pub type BResult<T> = Result<T, BoundaryError>;

/// A panic in native code as a `SeamlineError`: a bug to report, never a `PanicException` (which is
/// not an `Exception`) or a traceback. Causes are fixed where they are found; this is the last resort.
pub fn panic_error(payload: Box<dyn Any + Send>) -> BoundaryError {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    let first_line = what.lines().next().unwrap_or_default().to_string();
    BoundaryError::Py(SeamlineError::new_err(format!(
        "internal error in the Seamline core (a bug, please report it): {first_line}"
    )))
}

/// Run `f`, turning a panic anywhere under it (worker threads included: their panics surface
/// when they are joined) into a `SeamlineError`.
pub fn guarded<T>(f: impl FnOnce() -> BResult<T>) -> BResult<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(panic_error(payload)))
}
