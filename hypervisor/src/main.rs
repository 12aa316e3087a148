//! The hypervisor image: the Multiboot2 header and 32-bit entry from boot/,
//! linked with the library by linker.ld. Execution continues in
//! `hypervisor::boot::start::hv_start`.

#![no_std]
#![no_main]

// The library provides hv_start (called from the assembly), the panic
// handler and the global allocator.
use hypervisor as _;

core::arch::global_asm!(include_str!("../../boot/entry.S"));
