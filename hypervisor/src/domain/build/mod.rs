//! The domain builder: a PVH kernel's image and start info (`pvh`), its
//! ACPI tables (`acpi`), and the options of a domain's module line
//! (`config`).

pub mod acpi;
pub mod config;
pub mod pvh;
