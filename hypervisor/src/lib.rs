//! The hypervisor: a Rust type-1 hypervisor with Xen's architecture and
//! Xen's public ABI for PVH guests.
//!
//! The crate builds for two targets. On the host (`cargo test`) only the
//! logic that needs no hardware is compiled, with its unit tests: parsers,
//! allocators, page-table builders, hypercall handlers against fakes. On
//! `x86_64-unknown-none` the bare-metal modules join it and `main.rs` links
//! everything into the image GRUB loads. See docs/architecture.md for the
//! map and the order of layers.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

/// The first line every boot prints; tests look for it.
pub const BANNER: &str = concat!("hypervisor ", env!("CARGO_PKG_VERSION"), " (Xen PVH ABI, x86-64) starting");

pub mod acpi;
pub mod arch;
pub mod boot;
pub mod cmdline;
pub mod console;
pub mod domain;
pub mod event;
pub mod grant;
pub mod hypercall;
pub mod irq;
pub mod memory;
pub mod mm;
pub mod passthrough;
pub mod sched;
pub mod time;
pub mod util;
