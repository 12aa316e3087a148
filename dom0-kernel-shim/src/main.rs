//! dom0: the privileged control domain, a small Rust kernel that the
//! hypervisor starts as a PVH guest.
//!
//! Today it is the PVH skeleton: the Xen ELF notes that make it loadable
//! and a 32-bit entry point that stops the vCPU. Its services (console,
//! xenstore, block and network backends, the toolstack) arrive with the
//! issues that need them.

#![no_std]
#![no_main]

core::arch::global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .balign 4
    /* XEN_ELFNOTE_GUEST_OS (6) = "dom0-kernel-shim" */
    .long 4, 17, 6
    .asciz "Xen"
    .balign 4
    .asciz "dom0-kernel-shim"
    .balign 4
    /* XEN_ELFNOTE_PHYS32_ENTRY (18): 32-bit entry, paging off, EBX = start info */
    .long 4, 4, 18
    .asciz "Xen"
    .balign 4
    .long pvh_start32
    .balign 4

    .section .text.pvh_start, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
1:  hlt
    jmp 1b
    .code64
"#
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
