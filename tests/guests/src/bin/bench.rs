//! Times hypercall and CPUID round trips with RDTSC. Under QEMU's
//! `-icount shift=0`, the TSC counts instructions, so the figures are
//! instructions per round trip (guest and hypervisor together).

#![no_std]
#![no_main]

use test_guests::*;
use xen_abi::hypercall as nr;

const ROUNDS: u64 = 20_000;

#[unsafe(no_mangle)]
extern "C" fn pvh_main(_: u64) -> ! {
    println!("bench: started");
    // Warm up (the first exits fill caches and the fetch cache).
    for _ in 0..100 {
        // SAFETY: xen_version(XENVER_version) takes no pointer.
        unsafe { hypercall(nr::XEN_VERSION, 0, 0, 0, 0, 0) };
    }
    let t0 = rdtsc();
    for _ in 0..ROUNDS {
        // SAFETY: as above.
        core::hint::black_box(unsafe { hypercall(nr::XEN_VERSION, 0, 0, 0, 0, 0) });
    }
    let t1 = rdtsc();
    for _ in 0..ROUNDS {
        core::hint::black_box(cpuid(0, 0));
    }
    let t2 = rdtsc();
    let empty0 = rdtsc();
    for i in 0..ROUNDS {
        core::hint::black_box(i);
    }
    let empty1 = rdtsc();
    let lp = (empty1 - empty0) / ROUNDS;
    println!("BENCH null_hypercall_round_trip {} per call ({} rounds, loop overhead {lp})", (t1 - t0) / ROUNDS, ROUNDS);
    println!("BENCH cpuid_round_trip {} per call ({} rounds)", (t2 - t1) / ROUNDS, ROUNDS);
    shutdown(SHUTDOWN_POWEROFF)
}
