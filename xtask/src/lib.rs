//! Build, package and check wskecho.sys (`cargo xtask driver`), as a library so the
//! checks are unit-testable. Why the .sys is linked this way: docs/architecture.md,
//! "Kernel FFI: how wskecho.sys is built".
//!
//! Modules: [`build`] the cross-build and packaging step, [`inf`] the INF reader and the
//! primitive-driver rules the package is held to, [`mingw`] mingw-w64's kernel export lists
//! (the import check's reference), [`pe_check`] the driver image check.

pub mod build;
pub mod inf;
pub mod mingw;
pub mod pe_check;
