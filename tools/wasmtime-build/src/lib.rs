//! Re-exports Wasmtime's C API so that this crate links into libwasmtime.so.
pub use wasmtime_c_api::*;
