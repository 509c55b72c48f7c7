//! `detectors.native`: Warden's hot loops compiled, each behind the Python API it replaces.

use pyo3::prelude::*;

mod seasonal;

#[pymodule]
fn native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<seasonal::LaneLearner>()?;
    module.add_function(wrap_pyfunction!(seasonal::seasonal_layout, module)?)?;
    Ok(())
}
