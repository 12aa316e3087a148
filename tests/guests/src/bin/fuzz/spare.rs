//! VCPUOP_initialise, up and down without the domain losing a fuzzing
//! vCPU: the last vCPU (past the fuzzing ones) is the spare, which the
//! fuzzer initialises with contexts of every kind but only brings up if
//! it was started on the park loop; fuzzing vCPUs are only taken down by
//! another one that brings them straight up again, one pair at a time.

use crate::fz::Fz;
use crate::stats::F_VCPU;
use crate::world::*;
use core::sync::atomic::Ordering;
use test_guests::x86;
use xen_abi::hypercall as nr;
use xen_abi::vcpu::*;

static mut SPARE_STACK: [u8; 16384] = [0; 16384];

/// The spare's life once started: an IDT (so an NMI finds a handler),
/// then HLT with interrupts off, which takes it down until the next
/// VCPUOP_up.
extern "C" fn fuzz_park(_vcpu: u32) -> ! {
    x86::install_idt();
    SPARE_READY.store(true, Ordering::SeqCst);
    loop {
        x86::cli();
        // SAFETY: halting with interrupts off parks this vCPU.
        unsafe { core::arch::asm!("hlt", options(nomem, nostack)) };
    }
}

/// A context that starts a vCPU on the park loop, as vCPU 0 runs now.
fn park_context() -> VcpuHvmContext {
    // The spare alone uses this stack.
    let top = (&raw mut SPARE_STACK) as u64 + 16384 - 8;
    x86::ap_context(lay().fuzzers, top, fuzz_park)
}

/// Starts the spare on the park loop: initialise, and only if that took,
/// up.
pub fn park(fz: &mut Fz) {
    let l = lay();
    if l.vcpus <= l.fuzzers {
        return;
    }
    let ctx = park_context();
    let spare = l.fuzzers as u64;
    let p = fz.put(0, ctx);
    let rc = fz.call(F_VCPU, VCPUOP_INITIALISE, nr::VCPU_OP, [VCPUOP_INITIALISE, spare, p, 0, 0]);
    if rc == 0 {
        SPARE_PARKED.store(true, Ordering::SeqCst);
        fz.call(F_VCPU, VCPUOP_UP, nr::VCPU_OP, [VCPUOP_UP, spare, 0, 0, 0]);
    }
}

/// VCPUOP_initialise: the park context, one field of it spoilt, garbage,
/// or a fuzzing vCPU (already initialised) or one that does not exist.
pub fn initialise(fz: &mut Fz) {
    let l = lay();
    let code = VCPUOP_INITIALISE;
    let has_spare = l.vcpus > l.fuzzers;
    let target = match fz.rng.below(8) {
        0 => fz.rng.below(l.fuzzers as u64),
        1 => l.vcpus as u64 + fz.rng.below(2),
        2 => fz.rng.edge64(),
        _ if has_spare => l.fuzzers as u64,
        _ => fz.rng.below(l.fuzzers as u64),
    };
    if target == l.fuzzers as u64 && has_spare && fz.rng.chance(1, 16) {
        park(fz);
        return;
    }
    let mut ctx = park_context();
    match fz.rng.below(4) {
        0 => {
            for b in ctx.regs.iter_mut() {
                *b = fz.rng.next() as u8;
            }
            ctx.mode = fz.rng.below(3) as u32;
        }
        1 => ctx.mode = fz.rng.edge32(),
        _ => {
            // One field (a u64 of the 64-bit layout, or a u32 of the
            // 32-bit one) set to a boundary value.
            let at = fz.rng.below(112 / 4) as usize * 4;
            let v = fz.rng.edge64();
            let n = if fz.rng.chance(1, 2) { 8 } else { 4 };
            let at = at.min(120 - n);
            ctx.regs[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
            if fz.rng.chance(1, 4) {
                ctx.mode = VCPU_HVM_MODE_32B;
            }
        }
    }
    let p = if fz.rng.chance(1, 8) { fz.in_ptr(128) } else { fz.arg(ctx) };
    fz.call(F_VCPU, code, nr::VCPU_OP, [code, target, p, 0, 0]);
}

/// VCPUOP_down: a vCPU that does not exist, the spare, or another fuzzing
/// vCPU (brought up again at once, under DOWN_UP).
pub fn down_up(fz: &mut Fz) {
    let l = lay();
    let down = |fz: &mut Fz, v: u64| fz.call(F_VCPU, VCPUOP_DOWN, nr::VCPU_OP, [VCPUOP_DOWN, v, 0, 0, 0]);
    let up = |fz: &mut Fz, v: u64| fz.call(F_VCPU, VCPUOP_UP, nr::VCPU_OP, [VCPUOP_UP, v, 0, 0, 0]);
    match fz.rng.below(4) {
        0 => {
            let v = l.vcpus as u64 + fz.rng.below(4);
            down(fz, v);
        }
        1 if l.vcpus > l.fuzzers => {
            down(fz, l.fuzzers as u64);
            if SPARE_PARKED.load(Ordering::SeqCst) && fz.rng.chance(1, 2) {
                up(fz, l.fuzzers as u64);
            }
        }
        _ if l.fuzzers > 1 => {
            let other = (fz.v as u64 + fz.rng.range(1, l.fuzzers as u64 - 1)) % l.fuzzers as u64;
            let _g = DOWN_UP.lock();
            down(fz, other);
            if fz.rng.chance(1, 2) {
                core::hint::spin_loop();
                fz.call(F_VCPU, VCPUOP_IS_UP, nr::VCPU_OP, [VCPUOP_IS_UP, other, 0, 0, 0]);
            }
            up(fz, other);
        }
        _ => {
            let v = l.vcpus as u64;
            down(fz, v);
        }
    }
}
