//! Uses the hypercall page (CPUID leaf 0x40000002 names the MSR), as Linux
//! before 6.1.121 did, instead of issuing vmcall/vmmcall directly.

#![no_std]
#![no_main]

use test_guests::*;

#[repr(C, align(4096))]
struct Page([u8; 4096]);
static mut HYPERCALL_PAGE: Page = Page([0; 4096]);

/// Calls slot `nr` of the page with two arguments.
fn page_call(page: u64, nr: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: i64;
    // SAFETY: the slot is `mov eax, nr; vmcall/vmmcall; ret`, written by the
    // hypervisor; the arguments are valid for the call.
    unsafe {
        core::arch::asm!("call {f}", f = in(reg) page + nr * 32, out("rax") ret,
            inlateout("rdi") a1 => _, inlateout("rsi") a2 => _, inlateout("rdx") a3 => _,
            out("r10") _, out("r8") _);
    }
    ret
}

#[unsafe(no_mangle)]
extern "C" fn pvh_main(_: u64) -> ! {
    let mut c = Checks::new();
    let msr = cpuid(0x4000_0002, 0).ebx;
    // SAFETY: single-threaded guest; the page is its own RAM.
    let page = (&raw mut HYPERCALL_PAGE) as u64;
    // SAFETY: asks the hypervisor to fill the page.
    unsafe { core::arch::asm!("wrmsr", in("ecx") msr, in("eax") page as u32, in("edx") (page >> 32) as u32) };
    // SAFETY: the page was just written by the hypervisor.
    let bytes = unsafe { &(*(page as *const Page)).0 };
    c.eq("slot 17 starts with mov eax, 17", (bytes[17 * 32] as i64) << 8 | bytes[17 * 32 + 1] as i64, 0xb811);
    c.check("slot 23 (iret) is ud2", bytes[23 * 32..23 * 32 + 2] == [0x0f, 0x0b]);
    c.eq("xen_version through the page", page_call(page, 17, 0, 0, 0), 0x40011);
    let msg = b"written through the hypercall page\n";
    c.eq("console_io through the page", page_call(page, 18, 0, msg.len() as u64, msg.as_ptr() as u64), 0);
    c.finish()
}
