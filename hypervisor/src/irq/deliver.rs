//! Device interrupts on their way to the hardware domain: host vectors
//! handed out with pirqs, the interrupt handler (which only notes the
//! vector and acknowledges the local APIC), and the softirq work that
//! raises the bound event channel, outside interrupt context.

use super::pirq::{Pirq, Source};
use super::vectors::VectorPool;
use super::{msi, msix};
use crate::arch::x86_64::{lapic, traps};
use crate::domain::Domain;
use crate::domain::registry;
use crate::passthrough::pci::Bdf;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;
use xen_abi::errno::*;

static POOL: Mutex<VectorPool> = Mutex::new(VectorPool::new());

/// Who each host vector is for: valid bit, domain serial (low 31 bits),
/// domain id, pirq.
static OWNERS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
/// Vectors that fired and wait for the softirq.
static PENDING: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

const VALID: u64 = 1 << 63;

fn pack(dom: &Domain, pirq: u32) -> u64 {
    VALID | (dom.serial & 0x7fff_ffff) << 32 | (dom.id as u64) << 16 | (pirq as u64 & 0xffff)
}

/// Sets up softirq delivery; called once at boot.
pub fn init() {
    crate::sched::set_device_work(deliver_pending);
}

/// The interrupt handler of every device vector.
fn device_interrupt(frame: &mut traps::TrapFrame) {
    let v = frame.vector as usize & 0xff;
    PENDING[v / 64].fetch_or(1 << (v % 64), Ordering::AcqRel);
    lapic::eoi();
    crate::sched::device_work_due();
}

/// Raises the events of the vectors that fired (softirq context).
fn deliver_pending() {
    for (w, word) in PENDING.iter().enumerate() {
        let mut bits = word.swap(0, Ordering::AcqRel);
        while bits != 0 {
            let b = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let owner = OWNERS[w * 64 + b].load(Ordering::Acquire);
            if owner & VALID == 0 {
                continue;
            }
            let (serial, id, pirq) = ((owner >> 32) & 0x7fff_ffff, (owner >> 16) as u16, owner as u32 & 0xffff);
            let Some(dom) = registry::find(id) else { continue };
            if dom.serial & 0x7fff_ffff != serial {
                continue;
            }
            let port = dom.pirqs.lock().fired(pirq);
            if port != 0 {
                dom.raise(port);
            }
        }
    }
}

/// PHYSDEVOP_map_pirq of an MSI: a host vector and a pirq for function
/// `bdf`'s MSI, programmed (still off) to reach the boot CPU. -ENODEV if
/// no function is there, -ENXIO if it has no MSI, -ENOSPC when vectors
/// run out.
pub fn map_msi(dom: &Domain, bdf: u16, want: Option<u32>) -> Result<u32, i64> {
    let b = Bdf(bdf);
    if crate::passthrough::pci::read(b, 0, 2) == 0xffff {
        return Err(-ENODEV);
    }
    let (cap, control) = msi::find(b).ok_or(-ENXIO)?;
    let (pirq, vector) = install(dom, Source::Msi { bdf }, want, |vector| {
        msi::program(b, cap, control, vector, boot_apic_id());
        true
    })?;
    log::info!("d{}: pirq {pirq}: MSI of PCI {b} on vector {vector:#x}", dom.id);
    Ok(pirq)
}

/// A pirq for `source` on a vector of its own, `program` pointing the
/// device at that vector (false: it could not, nothing is kept). The
/// source's existing pirq if it has one (Xen hands that back). The pirq
/// and its vector.
fn install(
    dom: &Domain,
    source: Source,
    want: Option<u32>,
    program: impl FnOnce(u8) -> bool,
) -> Result<(u32, u8), i64> {
    let mut pirqs = dom.pirqs.lock();
    if let Some(p) = pirqs.find(source) {
        let vector = pirqs.get(p).map_or(0, |x| x.vector);
        return if want.is_none_or(|w| w == p) { Ok((p, vector)) } else { Err(-EEXIST) };
    }
    let vector = POOL.lock().alloc().ok_or(-ENOSPC)?;
    let pirq = match pirqs.map(source, vector, want) {
        Ok(p) => p,
        Err(e) => {
            POOL.lock().free(vector);
            return Err(e);
        }
    };
    if !program(vector) {
        let _ = pirqs.unmap(pirq);
        POOL.lock().free(vector);
        return Err(-ENOMEM);
    }
    OWNERS[vector as usize].store(pack(dom, pirq), Ordering::Release);
    traps::register_irq(vector, device_interrupt);
    Ok((pirq, vector))
}

fn boot_apic_id() -> u32 {
    crate::arch::x86_64::percpu::get(0).map_or(0, |p| p.apic_id)
}

/// PHYSDEVOP_unmap_pirq: the device's MSI off, its vector given back.
pub fn unmap(dom: &Domain, pirq: u32) -> Result<(), i64> {
    let p = dom.pirqs.lock().unmap(pirq)?;
    log::info!("d{}: pirq {pirq} unmapped after {} interrupts", dom.id, p.count);
    release(dom, p);
    Ok(())
}

/// Turns the interrupt of `p` on (bound) or off at the device.
fn set_source(p: &Pirq, on: bool) {
    match p.source {
        Source::Msi { bdf } => {
            if let Some((cap, _)) = msi::find(Bdf(bdf)) {
                msi::set_enabled(Bdf(bdf), cap, on);
            }
        }
        Source::MsiX { entry, table, .. } => msix::set_masked(table, entry, !on),
    }
}

/// `p`, just unmapped from `dom`: off at the device, its vector back; a
/// function's MSI-X goes off with its last mapped entry.
fn release(dom: &Domain, p: Pirq) {
    set_source(&p, false);
    if let Source::MsiX { bdf, .. } = p.source
        && !dom.pirqs.lock().msix_in_use(bdf)
        && let Some(m) = msix::find(Bdf(bdf))
    {
        msix::set_enabled(Bdf(bdf), m.cap, false);
    }
    OWNERS[p.vector as usize].store(0, Ordering::Release);
    POOL.lock().free(p.vector);
}

/// PHYSDEVOP_map_pirq of an MSI-X entry: `table_base` must be where the
/// table's BAR decodes (what dom0 read from it), the entry inside the
/// table, and the table device memory. The entry is programmed masked
/// and the function's MSI-X turned on (entries stay masked until bound).
pub fn map_msix(dom: &Domain, bdf: u16, entry: u32, table_base: u64, want: Option<u32>) -> Result<u32, i64> {
    let b = Bdf(bdf);
    if crate::passthrough::pci::read(b, 0, 2) == 0xffff {
        return Err(-ENODEV);
    }
    let m = msix::find(b).ok_or(-ENXIO)?;
    if entry >= m.entries as u32 {
        return Err(-EINVAL);
    }
    let bar = msix::bar_base(b, m.bir).ok_or(-EINVAL)?;
    if bar != table_base {
        return Err(-EINVAL);
    }
    let table = bar.checked_add(m.offset as u64).ok_or(-EINVAL)?;
    let end = table + 16 * m.entries as u64;
    if crate::mm::phys::overlaps_host_memory(crate::mm::ranges::Range::new(table, end)) {
        return Err(-EINVAL);
    }
    let source = Source::MsiX { bdf, entry: entry as u16, table };
    let (pirq, vector) =
        install(dom, source, want, |vector| msix::program(table, entry as u16, vector, boot_apic_id()))?;
    msix::set_enabled(b, m.cap, true);
    log::info!("d{}: pirq {pirq}: MSI-X entry {entry} of PCI {b} on vector {vector:#x}", dom.id);
    Ok(pirq)
}

/// EVTCHNOP_bind_pirq: a port for `pirq`, and the device's MSI on.
pub fn bind_pirq(dom: &Domain, pirq: u32) -> Result<u32, i64> {
    match dom.pirqs.lock().get(pirq) {
        None => return Err(-EINVAL),
        Some(p) if p.port != 0 => return Err(-EBUSY),
        Some(_) => {}
    }
    let port = dom.evtchn.lock().bind_pirq(pirq)?;
    match dom.pirqs.lock().bind(pirq, port) {
        Ok(p) => {
            set_source(&p, true);
            Ok(port)
        }
        Err(e) => {
            // Never bound: closed here, not through the port's close path.
            let _ = dom.evtchn.lock().close(&crate::event::deliver::Words(dom), port);
            Err(e)
        }
    }
}

/// The port bound to `pirq` was closed: the device's MSI off.
pub fn unbind_pirq(dom: &Domain, pirq: u32) {
    let p = dom.pirqs.lock().unbind(pirq);
    if let Some(p) = p {
        set_source(&p, false);
    }
}

/// A domain's pirqs: none at its creation; at its end every MSI off and
/// every vector back.
pub const UNIT: crate::domain::unit::Unit<Domain> = crate::domain::unit::Unit {
    name: "device interrupts",
    create: crate::domain::unit::nothing_to_create,
    destroy: release_all,
};

fn release_all(dom: &Domain) {
    let all = dom.pirqs.lock().take_all();
    for (_, p) in all {
        release(dom, p);
    }
}
