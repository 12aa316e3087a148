//! Never yields: the hypervisor must preempt it so other domains run.

#![no_std]
#![no_main]

use test_guests::*;

#[unsafe(no_mangle)]
extern "C" fn pvh_main(_: u64) -> ! {
    println!("spinning forever");
    let mut n: u64 = 0;
    loop {
        n = n.wrapping_add(1);
        core::hint::black_box(n);
    }
}
