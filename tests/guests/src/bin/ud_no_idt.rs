//! Executes an undefined instruction with no IDT of its own (the PVH entry
//! state has none): #UD cannot be delivered, so the guest triple-faults.

#![no_std]
#![no_main]

use test_guests::*;

#[unsafe(no_mangle)]
extern "C" fn pvh_main(_: u64) -> ! {
    println!("about to execute ud2 without an IDT");
    // SAFETY: deliberately breaks this guest.
    unsafe { core::arch::asm!("ud2") };
    println!("still alive after ud2?!");
    shutdown(SHUTDOWN_POWEROFF)
}
