//! Each domain's console ring (Xen's `xencons_interface`, at libxl's
//! console page), which the hypervisor serves until a backend domain binds
//! its port: output is printed with the domain's prefix, serial input goes
//! into the input ring.

use crate::arch::x86_64::hvm::npt::P2mType;
use crate::domain::unit::{Unit, nothing_to_destroy};
use crate::domain::{ConsoleRing, Domain};
use crate::event::table::Consumer;
use crate::mm::addr::{Gfn, Mfn};
use crate::mm::phys::{alloc_zeroed_frame, free_frames, phys_to_virt};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use xen_abi::{console as xc, hvm};

/// Where the console ring page is in every domain (libxl's special page
/// for the console: the last of the 8 at 0xfeff8000).
pub const CONSOLE_GFN: Gfn = Gfn(0xfefff);

/// Every domain gets a console ring; its page goes with the domain's last
/// reference (`Domain`'s drop), as other CPUs may drain it until then.
pub const UNIT: Unit<Domain> = Unit { name: "console ring", create: set_up_ring, destroy: nothing_to_destroy };

/// The ring page at CONSOLE_GFN and a port waiting for dom0's backend; until
/// one binds it, the hypervisor serves the ring.
fn set_up_ring(d: &Domain) -> Result<(), &'static str> {
    let phys = alloc_zeroed_frame().ok_or("no memory for the ring page")?;
    let mfn = Mfn::of_phys(phys);
    let placed = d.inner.lock().p2m.as_mut().is_some_and(|p2m| p2m.set(CONSOLE_GFN, mfn, P2mType::Special).is_ok());
    if !placed {
        let _ = free_frames(phys, 1);
        return Err("no room in the p2m for the ring page");
    }
    let port = d.evtchn.lock().alloc_console(0).unwrap_or(0);
    d.console.call_once(|| ConsoleRing { mfn, va: phys_to_virt(phys).unwrap_or(0), port });
    if port != 0 {
        let mut i = d.inner.lock();
        i.params[hvm::PARAM_CONSOLE_PFN as usize] = CONSOLE_GFN.0;
        i.params[hvm::PARAM_CONSOLE_EVTCHN as usize] = port as u64;
    }
    Ok(())
}

/// The domain's ring while the hypervisor serves it (no backend domain has
/// taken it over).
fn served_ring(d: &Domain) -> Option<ConsoleRing> {
    let ring = *d.console.get()?;
    let served = ring.va != 0
        && ring.port != 0
        && d.evtchn.lock().get(ring.port).is_some_and(|c| c.consumer == Consumer::HvConsole);
    served.then_some(ring)
}

fn ring_u32(va: u64, off: usize) -> &'static AtomicU32 {
    // SAFETY: `va` is the domain's console page (hypervisor-owned, alive as
    // long as the domain) and `off` one of its 4-byte-aligned indices.
    unsafe { AtomicU32::from_ptr((va + off as u64) as *mut u32) }
}

/// Prints what the domain wrote to its console ring, with its prefix,
/// and tells it the ring has room again.
pub fn drain_console(d: &Domain) {
    drain(d, true);
}

/// The same for a domain shutting down: all it wrote (at most a ring's
/// worth), whatever its allowance, so that its last words are seen.
pub fn drain_console_final(d: &Domain) {
    drain(d, false);
}

fn drain(d: &Domain, limited: bool) {
    let Some(ring) = served_ring(d) else { return };
    let va = ring.va;
    let cons = ring_u32(va, xc::OUT_CONS).load(Ordering::Acquire);
    let prod = ring_u32(va, xc::OUT_PROD).load(Ordering::Acquire);
    let n = prod.wrapping_sub(cons);
    if n > xc::OUT_SIZE {
        log::warn!(
            "domain {} ({}): console ring indices are corrupt ({cons:#x}, {prod:#x}); output dropped",
            d.id,
            d.name
        );
        ring_u32(va, xc::OUT_CONS).store(prod, Ordering::Release);
        return;
    }
    // The domain that holds the serial line is being typed at: its output
    // goes out as it comes, unprefixed, as Xen's vpl011 does for the
    // console-input domain. The others' is line-buffered with a prefix.
    let interactive = super::focus::get() == Some(d.id);
    if interactive {
        d.console_flush_unfinished();
    }
    // No more than the domain's allowance and the room on the serial
    // line: the rest stays in its ring (the domain waits for room, as it
    // would for a slow console daemon) until the backlog service drains
    // it.
    let allowed = if limited { d.console_allowance(n as u64) as u32 } else { n };
    if allowed < n {
        BACKLOG.store(true, Ordering::Release);
    }
    let mut n = allowed;
    let mut raw = [0u8; 64];
    let mut held = 0;
    let mut c = cons;
    while n > 0 {
        let at = xc::OUT_OFFSET as u64 + (c % xc::OUT_SIZE) as u64;
        // SAFETY: inside the console page (offset below OUT_OFFSET + OUT_SIZE).
        let b = unsafe { core::ptr::read_volatile((va + at) as *const u8) };
        if interactive {
            raw[held] = b;
            held += 1;
            if held == raw.len() {
                crate::console::serial::write_bytes(&raw);
                held = 0;
            }
        } else {
            d.console_put_paid(b);
        }
        c = c.wrapping_add(1);
        n -= 1;
    }
    if held > 0 {
        crate::console::serial::write_bytes(&raw[..held]);
    }
    ring_u32(va, xc::OUT_CONS).store(c, Ordering::Release);
    d.raise(ring.port);
}

/// Some ring was left with output beyond its domain's allowance.
static BACKLOG: AtomicBool = AtomicBool::new(false);

/// How often the backlog service runs (it also sends what the serial
/// transmit ring holds).
pub const SERVICE_NS: u64 = 2_000_000;

/// The console service, every SERVICE_NS: sends what the serial line
/// takes, and drains rings left with output.
pub fn service() {
    crate::console::serial::pump();
    if BACKLOG.swap(false, Ordering::AcqRel) {
        for d in crate::domain::registry::all() {
            drain_console(&d);
        }
    }
}

/// Serial input for domain `d`'s console: what fits in its input ring.
pub fn console_input(d: &Domain, bytes: &[u8]) {
    let Some(ring) = served_ring(d) else { return };
    let va = ring.va;
    let cons = ring_u32(va, xc::IN_CONS).load(Ordering::Acquire);
    let mut prod = ring_u32(va, xc::IN_PROD).load(Ordering::Acquire);
    for &b in bytes {
        if prod.wrapping_sub(cons) >= xc::IN_SIZE {
            break;
        }
        let at = xc::IN_OFFSET as u64 + (prod % xc::IN_SIZE) as u64;
        // SAFETY: inside the console page.
        unsafe { core::ptr::write_volatile((va + at) as *mut u8, b) };
        prod = prod.wrapping_add(1);
    }
    ring_u32(va, xc::IN_PROD).store(prod, Ordering::Release);
    d.raise(ring.port);
}
