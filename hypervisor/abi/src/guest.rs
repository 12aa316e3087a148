//! The guest side of the ABI, for our own PVH kernels (dom0-kernel-shim and
//! the test guests): the 32-bit PVH entry into long mode, hypercall
//! instructions and a console writer.
//!
//! A kernel using this module links with `pvh-guest.ld` (next to this
//! crate's Cargo.toml) and defines
//! `#[unsafe(no_mangle)] extern "C" fn pvh_main(start_info_paddr: u64) -> !`.

use core::sync::atomic::{AtomicU8, Ordering};

// The PVH entry: 32-bit protected mode, paging off, EBX = start info.
// Identity-maps the first 4 GiB with 2 MiB pages, enters long mode and calls
// pvh_main on a 64 KiB stack. The Xen note names the entry point.
core::arch::global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .balign 4
    .long 4, 4, 18              /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long pvh_start32
    .balign 4
    .long 4, 8, 5               /* XEN_ELFNOTE_XEN_VERSION */
    .asciz "Xen"
    .balign 4
    .asciz "xen-3.0"
    .balign 4

    .section .text.pvh_start, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov esi, ebx
    mov esp, offset pvh_stack_top
    mov edi, offset pvh_page_tables
    mov ecx, 6 * 1024
    xor eax, eax
    rep stosd
    mov eax, offset pvh_pdpt
    or eax, 3
    mov [pvh_pml4], eax
    xor ecx, ecx
2:  mov eax, ecx
    shl eax, 12
    add eax, offset pvh_pd
    or eax, 3
    mov [pvh_pdpt + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jb 2b
    xor ecx, ecx
3:  mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov [pvh_pd + ecx * 8], eax
    mov eax, ecx
    shr eax, 11
    mov [pvh_pd + ecx * 8 + 4], eax
    inc ecx
    cmp ecx, 2048
    jb 3b
    mov eax, cr4
    or eax, 1 << 5
    mov cr4, eax
    mov eax, offset pvh_pml4
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 1 << 8
    wrmsr
    mov eax, cr0
    or eax, 0x80000001
    mov cr0, eax
    lgdt [pvh_gdt_ptr]
    mov eax, offset pvh_start64
    push 0x08
    push eax
    retf
    .code64
pvh_start64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov rsp, offset pvh_stack_top
    mov edi, esi
    xor ebp, ebp
    call pvh_main
4:  cli
    hlt
    jmp 4b

    .section .rodata.pvh_gdt, "a"
    .balign 8
pvh_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
pvh_gdt_ptr:
    .short 23
    .long pvh_gdt

    .section .bss.pvh, "aw", @nobits
    .balign 4096
pvh_page_tables:
pvh_pml4: .skip 4096
pvh_pdpt: .skip 4096
pvh_pd:   .skip 4096 * 4
pvh_stack: .skip 65536
pvh_stack_top:
"#
);

const UNKNOWN: u8 = 0;
const VMCALL: u8 = 1;
const VMMCALL: u8 = 2;
static INSTRUCTION: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Which instruction makes a hypercall on this CPU: `vmmcall` on AMD and
/// Hygon, `vmcall` elsewhere (what Linux does since 6.1.121).
fn instruction() -> u8 {
    match INSTRUCTION.load(Ordering::Relaxed) {
        UNKNOWN => {
            let r = core::arch::x86_64::__cpuid(0);
            let amd = (r.ebx, r.edx, r.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163)
                || (r.ebx, r.edx, r.ecx) == (0x6f67_7948, 0x6e65_476e, 0x656e_6975);
            let i = if amd { VMMCALL } else { VMCALL };
            INSTRUCTION.store(i, Ordering::Relaxed);
            i
        }
        i => i,
    }
}

/// Issues hypercall `nr` with up to five arguments (rdi, rsi, rdx, r10, r8)
/// and returns rax (negative: -errno).
///
/// # Safety
/// The arguments must be valid for the hypercall: pointers in them refer to
/// memory the hypervisor may read or write.
#[inline(never)]
pub unsafe fn hypercall(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let ret: i64;
    // SAFETY: per the function contract; the hypervisor preserves every
    // register except rax and the argument registers.
    unsafe {
        if instruction() == VMMCALL {
            core::arch::asm!("vmmcall", inlateout("rax") nr as i64 => ret, inlateout("rdi") a1 => _,
                inlateout("rsi") a2 => _, inlateout("rdx") a3 => _, inlateout("r10") a4 => _,
                inlateout("r8") a5 => _, options(nostack));
        } else {
            core::arch::asm!("vmcall", inlateout("rax") nr as i64 => ret, inlateout("rdi") a1 => _,
                inlateout("rsi") a2 => _, inlateout("rdx") a3 => _, inlateout("r10") a4 => _,
                inlateout("r8") a5 => _, options(nostack));
        }
    }
    ret
}

/// Writes text to the hypervisor console (`console_io(CONSOLEIO_write)`).
pub fn console_write(s: &[u8]) -> i64 {
    // SAFETY: the buffer is valid for reads of its length.
    unsafe {
        hypercall(
            crate::hypercall::CONSOLE_IO,
            crate::console::CONSOLEIO_WRITE,
            s.len() as u64,
            s.as_ptr() as u64,
            0,
            0,
        )
    }
}

/// A `core::fmt::Write` sink on the hypervisor console.
pub struct Console;

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if console_write(s.as_bytes()) < 0 { Err(core::fmt::Error) } else { Ok(()) }
    }
}

/// Shuts this domain down with `reason` (`sched_op(SCHEDOP_shutdown)`).
pub fn shutdown(reason: u32) -> ! {
    let arg = crate::sched::SchedShutdown { reason };
    loop {
        // SAFETY: `arg` is a valid sched_shutdown structure.
        unsafe {
            hypercall(crate::hypercall::SCHED_OP, crate::sched::SCHEDOP_SHUTDOWN, &arg as *const _ as u64, 0, 0, 0)
        };
    }
}
