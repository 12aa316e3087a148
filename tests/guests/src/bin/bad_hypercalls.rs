//! Hypercalls with bad pointers, unknown numbers and garbage arguments:
//! each must come back with Xen's error, and the guest goes on.

#![no_std]
#![no_main]

use test_guests::*;
use xen_abi::errno::*;
use xen_abi::hypercall as nr;
use xen_abi::memory::AddToPhysmap;

fn hc(n: u64, a: [u64; 5]) -> i64 {
    // SAFETY: deliberately bad arguments; the hypervisor must cope.
    unsafe { hypercall(n, a[0], a[1], a[2], a[3], a[4]) }
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);
static mut SCRATCH: Page = Page([0; 4096]);

#[unsafe(no_mangle)]
extern "C" fn pvh_main(si_paddr: u64) -> ! {
    let mut c = Checks::new();
    let si = start_info(si_paddr);
    let ram_end = memmap(si)[0].size;
    // SAFETY: single-threaded guest.
    let buf = (&raw mut SCRATCH) as u64;

    // Pointers the hypervisor must refuse: non-canonical, outside the
    // guest's memory, straddling its end.
    for (name, p) in [
        ("non-canonical", 0x8000_0000_0000_0000u64),
        ("unmapped", 0xd000_0000),
        ("null-ish page", 0xffff_ffff_ffff_f000),
    ] {
        c.eq(name, hc(nr::CONSOLE_IO, [0, 32, p, 0, 0]), -EFAULT);
    }
    c.eq("buffer running off the end of RAM", hc(nr::CONSOLE_IO, [0, 64, ram_end - 16, 0, 0]), -EFAULT);
    c.eq("xen_version into unmapped memory", hc(nr::XEN_VERSION, [1, 0xd000_0000, 0, 0, 0]), -EFAULT);
    c.eq("get_features from unmapped memory", hc(nr::XEN_VERSION, [6, 0xd000_0000, 0, 0, 0]), -EFAULT);
    c.eq("hvm_op get_param from unmapped memory", hc(nr::HVM_OP, [1, 0xd000_0000, 0, 0, 0]), -EFAULT);
    c.eq("memory_map from unmapped memory", hc(nr::MEMORY_OP, [9, 0xd000_0000, 0, 0, 0]), -EFAULT);
    c.eq("shutdown reason from unmapped memory", hc(nr::SCHED_OP, [2, 0xd000_0000, 0, 0, 0]), -EFAULT);

    // Numbers nobody implements.
    for n in [11u64, 43, 47, 48, 55, 64, 1000, 0xffff_ffff, u64::MAX] {
        c.eq("unknown hypercall", hc(n, [1, 2, 3, 4, 5]), -ENOSYS);
    }
    // Sub-operations Xen has but this hypervisor does not (yet).
    c.eq("grant_table_op unknown command", hc(nr::GRANT_TABLE_OP, [99, 0, 1, 0, 0]), -ENOSYS);

    // Garbage sub-commands and arguments.
    c.eq("xen_version garbage", hc(nr::XEN_VERSION, [0xdead_beef, buf, 0, 0, 0]), -ENOSYS);
    c.eq("sched_op garbage", hc(nr::SCHED_OP, [99, 0, 0, 0, 0]), -ENOSYS);
    c.eq("memory_op garbage", hc(nr::MEMORY_OP, [0x3f, buf, 0, 0, 0]), -ENOSYS);
    c.eq("hvm_op garbage", hc(nr::HVM_OP, [0xffff, buf, 0, 0, 0]), -ENOSYS);
    c.eq("console_io garbage", hc(nr::CONSOLE_IO, [7, 1, buf, 0, 0]), -ENOSYS);
    c.eq("pagesize with an argument", hc(nr::XEN_VERSION, [7, buf, 0, 0, 0]), -EINVAL);
    let atp = |space, idx, gpfn| AddToPhysmap { domid: xen_abi::DOMID_SELF, size: 0, space, idx, gpfn };
    // SAFETY: single-threaded guest.
    unsafe { (buf as *mut AddToPhysmap).write(atp(42, 0, 0x400)) };
    c.eq("add_to_physmap unknown space", hc(nr::MEMORY_OP, [7, buf, 0, 0, 0]), -EINVAL);
    // SAFETY: as above.
    unsafe { (buf as *mut AddToPhysmap).write(atp(0, 5, 0x400)) };
    c.eq("add_to_physmap shared_info idx 5", hc(nr::MEMORY_OP, [7, buf, 0, 0, 0]), -EINVAL);
    // SAFETY: as above.
    unsafe { (buf as *mut AddToPhysmap).write(atp(0, 0, 1 << 40)) };
    c.eq("add_to_physmap beyond guest-physical space", hc(nr::MEMORY_OP, [7, buf, 0, 0, 0]), -EINVAL);
    // SAFETY: as above.
    unsafe { (buf as *mut AddToPhysmap).write(AddToPhysmap { domid: 777, size: 0, space: 0, idx: 0, gpfn: 0x400 }) };
    c.eq("add_to_physmap for a missing domain", hc(nr::MEMORY_OP, [7, buf, 0, 0, 0]), -ESRCH);
    // SAFETY: as above.
    unsafe { (buf as *mut [u32; 2]).write([0, 3]) };
    c.eq("upcall vector below 0x10", hc(nr::HVM_OP, [23, buf, 0, 0, 0]), -EINVAL);
    // SAFETY: as above.
    unsafe { (buf as *mut [u32; 2]).write([77, 0xf3]) };
    c.eq("upcall vector for a missing vCPU", hc(nr::HVM_OP, [23, buf, 0, 0, 0]), -ENOENT);
    // Moving shared_info across the whole guest-physical space makes the
    // hypervisor build p2m tables; a domain may only have so many.
    let mut refused_at = None;
    for i in 1..200u64 {
        // SAFETY: as above.
        unsafe { (buf as *mut AddToPhysmap).write(atp(0, 0, i << 18)) };
        let r = hc(nr::MEMORY_OP, [7, buf, 0, 0, 0]);
        if r != 0 {
            refused_at = Some((i, r));
            break;
        }
    }
    c.eq("p2m growth is bounded (-ENOMEM)", refused_at.map_or(0, |(_, r)| r), -ENOMEM);
    c.check("the bound still allows many remaps", refused_at.is_some_and(|(i, _)| i > 10));
    // Where tables exist already, remapping still works.
    // SAFETY: as above.
    unsafe { (buf as *mut AddToPhysmap).write(atp(0, 0, 1 << 18)) };
    c.eq("shared_info can still move where tables exist", hc(nr::MEMORY_OP, [7, buf, 0, 0, 0]), 0);

    // A long console write that needs continuations.
    // SAFETY: as above.
    unsafe { core::ptr::write_bytes(buf as *mut u8, b'.', 4096) };
    // SAFETY: as above.
    unsafe { *((buf + 4095) as *mut u8) = b'\n' };
    c.eq("4 KiB console write", hc(nr::CONSOLE_IO, [0, 4096, buf, 0, 0]), 0);

    println!("the hypervisor survived every bad hypercall");
    c.finish()
}
