//! ACPI: what the firmware tables say about CPUs, interrupt controllers and
//! power control. Tables are read with the `acpi` crate on bare metal; the
//! two pieces of parsing it does not cover (the `\_S5` package and the early
//! walk that keeps tables out of the free pool) are plain functions with
//! host tests.

pub mod aml;
pub mod walk;

#[cfg(target_os = "none")]
mod platform;
#[cfg(target_os = "none")]
pub use platform::*;
