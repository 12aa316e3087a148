//! The hypervisor: a Rust type-1 hypervisor with Xen's architecture and
//! Xen's public ABI for PVH guests.
//!
//! The crate builds for two targets. On the host (`cargo test`) only the
//! logic that needs no hardware is compiled, with its unit tests: parsers,
//! allocators, page-table builders. On `x86_64-unknown-none` the bare-metal
//! modules join it and `main.rs` links everything into the image GRUB loads.
//! See docs/architecture.md for the map.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

/// The first line every boot prints; tests look for it.
pub const BANNER: &str = concat!("hypervisor ", env!("CARGO_PKG_VERSION"), " (Xen PVH ABI, x86-64) starting");

pub mod acpi;
pub mod arch;
pub mod boot;
pub mod cmdline;
pub mod common;
pub mod elf;
pub mod mm;
pub mod time;

#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod logger;
#[cfg(target_os = "none")]
pub mod panic;
