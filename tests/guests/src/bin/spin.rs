//! Never yields, with interrupts disabled: the hypervisor must still
//! preempt it (host interrupts do not depend on the guest's IF) so other
//! domains run.

#![no_std]
#![no_main]

use test_guests::*;

#[unsafe(no_mangle)]
extern "C" fn pvh_main(_: u64) -> ! {
    println!("spinning forever");
    // SAFETY: only this guest's own interrupt flag.
    unsafe { core::arch::asm!("cli") };
    // Report progress now and then (a console write is not a yield), so a
    // test can see this guest get the CPU again and again.
    let mut n: u64 = 0;
    loop {
        n = n.wrapping_add(1);
        if core::hint::black_box(n) % (1 << 20) == 0 {
            println!("spin {}", n >> 20);
        }
    }
}
