//! Each domain's console ring (Xen's `xencons_interface`, at libxl's
//! console page), which the hypervisor serves until a backend domain binds
//! its port: output is printed with the domain's prefix, serial input goes
//! into the input ring.

use crate::domain::Domain;
use crate::event::table::Consumer;
use crate::mm::addr::Gfn;
use core::sync::atomic::{AtomicU32, Ordering};
use xen_abi::console as xc;

/// Where the console ring page is in every domain (libxl's special page
/// for the console: the last of the 8 at 0xfeff8000).
pub const CONSOLE_GFN: Gfn = Gfn(0xfefff);

fn ring_u32(va: u64, off: usize) -> &'static AtomicU32 {
    // SAFETY: `va` is the domain's console page (hypervisor-owned, alive as
    // long as the domain) and `off` one of its 4-byte-aligned indices.
    unsafe { AtomicU32::from_ptr((va + off as u64) as *mut u32) }
}

/// Whether no backend domain has taken the console ring over.
fn hypervisor_serves_console(d: &Domain) -> bool {
    let port = d.console_port.load(Ordering::Acquire);
    port != 0 && d.evtchn.lock().get(port).is_some_and(|c| c.consumer == Consumer::HvConsole)
}

/// Prints what the domain wrote to its console ring, with its prefix,
/// and tells it the ring has room again.
pub fn drain_console(d: &Domain) {
    let va = d.console_va;
    if va == 0 || !hypervisor_serves_console(d) {
        return;
    }
    let cons = ring_u32(va, xc::OUT_CONS).load(Ordering::Acquire);
    let prod = ring_u32(va, xc::OUT_PROD).load(Ordering::Acquire);
    let mut n = prod.wrapping_sub(cons);
    if n > xc::OUT_SIZE {
        log::warn!(
            "domain {} ({}): console ring indices are corrupt ({cons:#x}, {prod:#x}); output dropped",
            d.id,
            d.name
        );
        ring_u32(va, xc::OUT_CONS).store(prod, Ordering::Release);
        return;
    }
    let mut c = cons;
    while n > 0 {
        let at = xc::OUT_OFFSET as u64 + (c % xc::OUT_SIZE) as u64;
        // SAFETY: inside the console page (offset below OUT_OFFSET + OUT_SIZE).
        let b = unsafe { core::ptr::read_volatile((va + at) as *const u8) };
        d.console_put(b);
        c = c.wrapping_add(1);
        n -= 1;
    }
    ring_u32(va, xc::OUT_CONS).store(c, Ordering::Release);
    let port = d.console_port.load(Ordering::Acquire);
    if port != 0 {
        d.raise(port, 0);
    }
}

/// Serial input for domain `d`'s console: what fits in its input ring.
pub fn console_input(d: &Domain, bytes: &[u8]) {
    let va = d.console_va;
    if va == 0 || !hypervisor_serves_console(d) {
        return;
    }
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
    let port = d.console_port.load(Ordering::Acquire);
    if port != 0 {
        d.raise(port, 0);
    }
}
