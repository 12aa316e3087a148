//! Panics and fatal errors: say where and why, walk the stack, then halt or
//! reboot as `panic=` says.

use crate::arch::x86_64::{cpu, gdt, percpu, power};
use crate::cmdline::PanicAction;
use crate::console::serial::LockedWriter;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static ACTION: AtomicU8 = AtomicU8::new(0);
static STOPPING: AtomicBool = AtomicBool::new(false);

pub fn set_action(a: PanicAction) {
    ACTION.store(a as u8, Ordering::Relaxed);
}

fn action() -> PanicAction {
    if ACTION.load(Ordering::Relaxed) == PanicAction::Reboot as u8 { PanicAction::Reboot } else { PanicAction::Halt }
}

/// Stops the machine after a fatal error, as `panic=` says.
pub fn fatal_stop(why: fmt::Arguments<'_>) -> ! {
    if STOPPING.swap(true, Ordering::SeqCst) {
        // A second fatal error while stopping: just stop this CPU.
        cpu::halt_forever();
    }
    crate::arch::x86_64::power::stop_others();
    crate::console::serial::go_sync();
    {
        let mut w = LockedWriter::new();
        let _ = writeln!(w, "*** {why}");
    }
    match action() {
        PanicAction::Halt => {
            crate::console::serial::write_str("*** System halted (panic=halt). Reset or power-cycle the machine.\n");
            power::halt()
        }
        PanicAction::Reboot => {
            crate::console::serial::write_str("*** Rebooting (panic=reboot).\n");
            power::reboot()
        }
    }
}

/// Is `[addr, addr+16)` inside a stack the hypervisor knows?
fn on_known_stack(addr: u64) -> bool {
    let (bs, be) = crate::mm::setup::Image::boot_stack();
    let (is, ie) = gdt::ist_stack_bounds();
    let (cs, ce) =
        percpu::this_cpu().map_or((0, 0), |p| (p.stack.0.load(Ordering::Relaxed), p.stack.1.load(Ordering::Relaxed)));
    (addr >= bs && addr + 16 <= be) || (addr >= is && addr + 16 <= ie) || (addr >= cs && addr + 16 <= ce)
}

/// Prints return addresses found by following frame pointers from `rbp`.
/// Only addresses inside the known stacks are read, so a corrupt chain
/// ends the walk instead of faulting.
pub fn write_backtrace(out: &mut impl Write, mut rbp: u64) {
    let _ = write!(out, "    call trace:");
    let mut n = 0;
    while n < 24 && rbp.is_multiple_of(8) && on_known_stack(rbp) {
        // SAFETY: rbp lies on a mapped hypervisor stack (checked above).
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        let _ = write!(out, " {ret:#x}");
        n += 1;
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    if n == 0 {
        let _ = write!(out, " (none)");
    }
    let _ = writeln!(out);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::console::serial::go_sync();
    {
        let mut w = LockedWriter::new();
        let _ = write!(w, "\n*** PANIC on CPU{}: {}", percpu::cpu_index(), info.message());
        if let Some(l) = info.location() {
            let _ = write!(w, "\n    at {}:{}:{}", l.file(), l.line(), l.column());
        }
        let _ = writeln!(w);
        let rbp: u64;
        // SAFETY: reads the frame pointer register.
        unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack)) };
        write_backtrace(&mut w, rbp);
    }
    fatal_stop(format_args!("hypervisor panic"))
}
