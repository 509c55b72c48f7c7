//! `detectors.native`: Warden's hot loops compiled, each behind the Python API it replaces.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::prelude::*;

mod crawler;
mod events;
mod key_sharing;
mod patterns;
mod records;
mod seasonal;
mod sketches;
mod state;
mod telemetry;
mod traffic;

/// The system allocator, counting the bytes it holds for this module: state kept here is outside Python's
/// allocator, so `tracemalloc` cannot see it, and the state benchmark adds this count.
struct CountingAllocator;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only the count is added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let block = System.alloc(layout);
        if !block.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let block = System.alloc_zeroed(layout);
        if !block.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        System.dealloc(block, layout);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = System.realloc(block, layout, new_size);
        if !moved.is_null() {
            ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
            ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        moved
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Bytes this module has allocated and not freed (its own heap, not the Python objects that wrap it).
#[pyfunction]
fn allocated_bytes() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}

#[pymodule]
fn native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<seasonal::LaneLearner>()?;
    module.add_function(wrap_pyfunction!(seasonal::seasonal_layout, module)?)?;
    module.add_class::<sketches::SlidingDistinct>()?;
    module.add_class::<key_sharing::UsageProfile>()?;
    module.add_class::<key_sharing::SharingWindow>()?;
    module.add_class::<traffic::TrafficSubject>()?;
    module.add_class::<traffic::TrafficWindow>()?;
    module.add_class::<telemetry::EventDecoder>()?;
    module.add_class::<records::RecordBatchReader>()?;
    module.add_class::<state::SubjectStore>()?;
    module.add_class::<crawler::KeyActivity>()?;
    module.add_class::<crawler::CrawlerWindow>()?;
    module.add_function(wrap_pyfunction!(crawler::ascii_trailing_number, module)?)?;
    module.add_function(wrap_pyfunction!(allocated_bytes, module)?)?;
    module.add_class::<patterns::Pattern>()?;
    module.add_class::<patterns::PatternSet>()?;
    module.add(
        "PatternLimitError",
        module.py().get_type::<patterns::PatternLimitError>(),
    )?;
    Ok(())
}
