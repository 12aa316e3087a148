//! Event delivery on real domains: the 2-level bitmaps in shared_info and
//! vcpu_info, changed with atomic operations (the guest changes them
//! concurrently), or the FIFO ABI's pages, which the port table holds;
//! upcalls through a vCPU's local APIC vector or the domain's callback
//! vector; and polls waiting for a port.
//!
//! A port is raised with its domain's port table locked (the FIFO queues
//! change only under that lock, and a port cannot be closed and bound
//! again while it is raised).

use crate::domain::{Domain, vflags};
use crate::event::table::{EventWords, Table};
use crate::sched;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use xen_abi::errno::*;
use xen_abi::shared as xs;

/// `Some(ptr)` to a u64 of guest-visible memory, as an atomic.
fn atomic_u64(va: u64) -> &'static AtomicU64 {
    // SAFETY: callers pass 8-byte-aligned addresses inside the domain's
    // shared_info page or a registered (referenced) vcpu_info, which stay
    // allocated while the domain exists; the guest changes them
    // concurrently, hence atomics.
    unsafe { AtomicU64::from_ptr(va as *mut u64) }
}

fn atomic_u8(va: u64) -> &'static AtomicU8 {
    // SAFETY: as for atomic_u64.
    unsafe { AtomicU8::from_ptr(va as *mut u8) }
}

/// A domain's 2-level bitmaps.
pub(crate) struct Words<'a>(pub &'a Domain);

impl Words<'_> {
    fn word(&self, base: usize, port: u32) -> (&'static AtomicU64, u64) {
        (atomic_u64(self.0.shared_info_va + (base + (port as usize / 64) * 8) as u64), 1 << (port % 64))
    }
}

impl EventWords for Words<'_> {
    fn test_and_set_pending(&self, port: u32) -> bool {
        let (w, b) = self.word(xs::SHARED_EVTCHN_PENDING, port);
        w.fetch_or(b, Ordering::SeqCst) & b != 0
    }
    fn test_pending(&self, port: u32) -> bool {
        let (w, b) = self.word(xs::SHARED_EVTCHN_PENDING, port);
        w.load(Ordering::SeqCst) & b != 0
    }
    fn clear_pending(&self, port: u32) {
        let (w, b) = self.word(xs::SHARED_EVTCHN_PENDING, port);
        w.fetch_and(!b, Ordering::SeqCst);
    }
    fn test_mask(&self, port: u32) -> bool {
        let (w, b) = self.word(xs::SHARED_EVTCHN_MASK, port);
        w.load(Ordering::SeqCst) & b != 0
    }
    fn test_and_clear_mask(&self, port: u32) -> bool {
        let (w, b) = self.word(xs::SHARED_EVTCHN_MASK, port);
        w.fetch_and(!b, Ordering::SeqCst) & b != 0
    }
    fn test_and_set_selector(&self, vcpu: u32, word: u32) -> bool {
        let Some(va) = self.0.vcpu_info_va(vcpu) else { return true };
        let b = 1u64 << word;
        atomic_u64(va + xs::VCPU_INFO_PENDING_SEL as u64).fetch_or(b, Ordering::SeqCst) & b != 0
    }
    fn test_and_set_upcall(&self, vcpu: u32) -> bool {
        let Some(va) = self.0.vcpu_info_va(vcpu) else { return true };
        atomic_u8(va + xs::VCPU_INFO_UPCALL_PENDING as u64).swap(1, Ordering::SeqCst) != 0
    }
}

/// `vcpu_info.evtchn_upcall_pending` of `vcpu`.
pub fn upcall_pending(dom: &Domain, vcpu: u32) -> bool {
    dom.vcpu_info_va(vcpu).is_some_and(|va| atomic_u8(va).load(Ordering::SeqCst) != 0)
}

/// Poll registrations: a port plus one, or any port.
pub const POLL_NONE: u32 = 0;

pub const POLL_ANY: u32 = u32::MAX;

impl Domain {
    /// Raises `port` (its table `t`, locked) on the vCPU it notifies, in
    /// the domain's ABI, and kicks the vCPU if that raised its upcall;
    /// ends polls waiting for the port if it became pending (Xen's
    /// `evtchn_port_set_pending`).
    pub(crate) fn raise_in(&self, t: &mut Table, port: u32) {
        let r = t.raise(&Words(self), port);
        if let Some(v) = r.notify {
            self.kick_upcall(v);
        }
        if r.newly_pending {
            self.wake_pollers(port);
        }
    }

    /// [`Domain::raise_in`], locking the table.
    pub fn raise(&self, port: u32) {
        self.raise_in(&mut self.evtchn.lock(), port);
    }

    /// Ends the polls waiting for `port`.
    pub(crate) fn wake_pollers(&self, port: u32) {
        if self.pollers.load(Ordering::Acquire) != 0 {
            for v in &self.vcpus {
                let p = v.poll_port.load(Ordering::Acquire);
                if (p == POLL_ANY || p == port + 1)
                    && v.poll_port.compare_exchange(p, POLL_NONE, Ordering::AcqRel, Ordering::Acquire).is_ok()
                {
                    self.pollers.fetch_sub(1, Ordering::AcqRel);
                    v.set_flag(vflags::POLL_DONE);
                    sched::notify(v);
                }
            }
        }
    }

    /// The vCPU's upcall went up: through its local APIC vector if it has
    /// one (HVMOP_set_evtchn_upcall_vector), else the domain's callback
    /// vector, checked at every entry; a blocked vCPU wakes either way.
    pub(crate) fn kick_upcall(&self, vcpu: u32) {
        let Some(v) = self.vcpu(vcpu) else { return };
        let vector = v.upcall_vector.load(Ordering::Acquire);
        if vector != 0 {
            v.raise_irq(vector);
        } else {
            v.irq_hint.store(true, Ordering::SeqCst);
        }
        v.set_flag(vflags::EVENT);
        sched::notify(v);
    }

    /// After the callback vector or an upcall vector was set: a pending
    /// upcall is delivered now (Xen re-asserts it).
    pub fn reassert_upcalls(&self) {
        for v in &self.vcpus {
            if upcall_pending(self, v.id) {
                self.kick_upcall(v.id);
            }
        }
    }

    /// Raises VIRQ `virq` of `vcpu` if the domain bound it.
    pub fn send_virq(&self, vcpu: u32, virq: u32) {
        let mut t = self.evtchn.lock();
        if let Some((port, _)) = t.virq_port(vcpu, virq) {
            self.raise_in(&mut t, port);
        }
    }

    /// Whether `port` is pending (SCHEDOP_poll): -EINVAL for a port bound
    /// to nothing.
    pub fn port_pending(&self, port: u32) -> Result<bool, i64> {
        // Only a port bound to something can be polled (Xen's
        // evtchn_port_poll).
        let t = self.evtchn.lock();
        if !t.in_use(port) {
            return Err(-EINVAL);
        }
        Ok(t.is_pending(&Words(self), port))
    }
}
