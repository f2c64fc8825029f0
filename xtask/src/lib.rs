//! Build, package and check wskecho.sys (`cargo xtask driver`), as a library so the
//! checks are unit-testable. See ../shared/DESIGN.md, "Kernel FFI: how the .sys is linked".

pub mod build;
pub mod inf;
pub mod mingw;
pub mod pe_check;
