//! Probes what a PVH guest sees: the Xen CPUID leaves, xen_version, HVM
//! params, the memory map and shared_info placement. Each check prints
//! PASS or FAIL; the test reads the verdict.

#![no_std]
#![no_main]

use test_guests::*;
use xen_abi::errno::*;
use xen_abi::hvm::HvmParam;
use xen_abi::memory::{AddToPhysmap, E820Entry, MemoryMap};
use xen_abi::{DOMID_SELF, hypercall as nr};

fn hc(n: u64, a1: u64, a2: u64) -> i64 {
    // SAFETY: arguments point at this guest's own buffers (or are numbers).
    unsafe { hypercall(n, a1, a2, 0, 0, 0) }
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);
static mut SCRATCH: Page = Page([0; 4096]);

#[unsafe(no_mangle)]
extern "C" fn pvh_main(si_paddr: u64) -> ! {
    let mut c = Checks::new();
    let si = start_info(si_paddr);

    let l0 = cpuid(0x4000_0000, 0);
    let mut sig = [0u8; 12];
    sig[..4].copy_from_slice(&l0.ebx.to_le_bytes());
    sig[4..8].copy_from_slice(&l0.ecx.to_le_bytes());
    sig[8..].copy_from_slice(&l0.edx.to_le_bytes());
    c.check("cpuid signature XenVMMXenVMM", &sig == b"XenVMMXenVMM");
    c.eq("cpuid max hypervisor leaf", l0.eax as i64, 0x4000_0005);
    c.eq("cpuid version leaf", cpuid(0x4000_0001, 0).eax as i64, 0x40011);
    c.eq("cpuid hypercall MSR", cpuid(0x4000_0002, 0).ebx as i64, 0x4000_0000);
    let l4 = cpuid(0x4000_0004, 0);
    c.eq("cpuid leaf 4 features", l4.eax as i64, 0x5c);
    c.eq("cpuid leaf 4 vcpu id", l4.ebx as i64, 0);
    println!("my domain id is {}", l4.ecx);
    c.check("cpuid hypervisor bit", cpuid(1, 0).ecx & (1 << 31) != 0);
    c.check("cpuid hides SVM", cpuid(0x8000_0001, 0).ecx & (1 << 2) == 0);
    c.check("cpuid hides VMX", cpuid(1, 0).ecx & (1 << 5) == 0);

    // SAFETY: SCRATCH is used by this single-threaded guest only.
    let buf = (&raw mut SCRATCH) as u64;
    let bytes = |n: usize| -> &'static [u8] {
        // SAFETY: as above.
        unsafe { core::slice::from_raw_parts(buf as *const u8, n) }
    };
    c.eq("xen_version", hc(nr::XEN_VERSION, 0, 0), 0x40011);
    c.eq("xen_version extraversion", hc(nr::XEN_VERSION, 1, buf), 0);
    c.check("extraversion is .0", &bytes(3) == b".0\0");
    c.eq("xen_version capabilities", hc(nr::XEN_VERSION, 3, buf), 0);
    c.check("capabilities list hvm-3.0-x86_64", bytes(1024).windows(14).any(|w| w == b"hvm-3.0-x86_64"));
    // SAFETY: as above.
    unsafe { (buf as *mut u64).write(0xffff_ffff_0000_0000) };
    c.eq("xen_version get_features", hc(nr::XEN_VERSION, 6, buf), 0);
    c.eq("features submap 0", u32::from_le_bytes(bytes(8)[4..8].try_into().unwrap()) as i64, 0x12305);
    c.eq("xen_version pagesize", hc(nr::XEN_VERSION, 7, 0), 4096);
    c.eq("xen_version platform parameters", hc(nr::XEN_VERSION, 5, buf), 0);
    c.eq("virt_start", u64::from_le_bytes(bytes(8).try_into().unwrap()) as i64, 0xffff_8000_0000_0000u64 as i64);
    c.eq("xen_version commandline", hc(nr::XEN_VERSION, 9, buf), 0);
    c.check("a domU is denied the command line", bytes(9) == b"<denied>\0");
    c.eq("xen_version build_id", hc(nr::XEN_VERSION, 10, buf), -EPERM);
    c.eq("console_io read", hc(nr::CONSOLE_IO, 1, 16), -EPERM);
    c.eq("sched_op yield", hc(nr::SCHED_OP, 0, 0), 0);

    let param = |index: u32, value: u64| HvmParam { domid: DOMID_SELF, _pad: 0, index, value };
    // SAFETY: as above.
    unsafe { (buf as *mut HvmParam).write(param(1, 0)) };
    c.eq("get STORE_PFN", hc(nr::HVM_OP, 1, buf), 0);
    // SAFETY: as above.
    unsafe { (buf as *mut HvmParam).write(param(1, 5)) };
    c.eq("set STORE_PFN is refused", hc(nr::HVM_OP, 0, buf), -EPERM);
    // SAFETY: as above.
    unsafe { (buf as *mut HvmParam).write(param(0, 2 << 56 | 0xf3)) };
    c.eq("set CALLBACK_IRQ", hc(nr::HVM_OP, 0, buf), 0);
    // SAFETY: as above.
    unsafe { (buf as *mut HvmParam).write(param(0, 0)) };
    c.eq("get CALLBACK_IRQ", hc(nr::HVM_OP, 1, buf), 0);
    // SAFETY: as above.
    c.eq("CALLBACK_IRQ reads back", unsafe { (*(buf as *const HvmParam)).value } as i64, (2u64 << 56 | 0xf3) as i64);
    // SAFETY: as above.
    unsafe { (buf as *mut HvmParam).write(param(39, 0)) };
    c.eq("param index 39", hc(nr::HVM_OP, 1, buf), -EINVAL);

    // The memory map: RAM from 0, then Xen's special pages.
    let map = buf + 64;
    // SAFETY: as above.
    unsafe { (buf as *mut MemoryMap).write(MemoryMap { nr_entries: 8, _pad: 0, buffer: map }) };
    c.eq("memory_map", hc(nr::MEMORY_OP, 9, buf), 0);
    // SAFETY: as above.
    let n = unsafe { (*(buf as *const MemoryMap)).nr_entries };
    c.eq("memory_map entries", n as i64, memmap(si).len() as i64);
    // SAFETY: the buffer holds n packed entries.
    let first: E820Entry = unsafe { core::ptr::read_unaligned(map as *const E820Entry) };
    c.eq("memory_map starts with RAM at 0", (first.addr | (first.kind as u64) << 60) as i64, 1 << 60);
    c.eq("start info memmap agrees", memmap(si)[0].size as i64, first.size as i64);

    // shared_info over a RAM page: the page's old contents disappear.
    let gpfn = 0x300u64;
    // SAFETY: page 0x300000 is guest RAM this guest does not otherwise use.
    unsafe { core::ptr::write_volatile((gpfn << 12) as *mut u64, 0x5151_5151) };
    // SAFETY: as above.
    unsafe { (buf as *mut AddToPhysmap).write(AddToPhysmap { domid: DOMID_SELF, size: 0, space: 0, idx: 0, gpfn }) };
    c.eq("add_to_physmap shared_info", hc(nr::MEMORY_OP, 7, buf), 0);
    // SAFETY: the shared_info page is now mapped there.
    let now = unsafe { core::ptr::read_volatile((gpfn << 12) as *const u64) };
    c.eq("shared_info replaced the RAM page", now as i64, 0);
    c.finish()
}
