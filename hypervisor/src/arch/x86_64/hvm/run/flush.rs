//! Making a p2m change stick: every vCPU of the domain drops its
//! translations before it runs again, then what the change let go of is
//! freed. Used after hypercalls and after the hardware domain's BAR moves.

use crate::arch::x86_64::hvm::vendor::VendorVcpu;
use crate::domain::{Domain, Vcpu, vflags};
use crate::memory::frame_ref::{Deferred, release_frames};
use crate::sched;

/// After a hypercall that changed the p2m: every vCPU of the domain drops
/// its translations before it runs again (those on other CPUs leave their
/// guests now, so a page the p2m no longer maps is not used through a
/// stale entry); only then are the frames it unmapped freed.
#[cold]
#[inline(never)]
pub(super) fn flush_then_free(dom: &Domain, v: &mut Vcpu, flush_tlb: bool, deferred: alloc::vec::Vec<Deferred>) {
    if flush_tlb {
        v.arch.flush_tlb();
        v.fetch_cache.clear();
        let mut running = crate::util::cpumask::CpuMask::empty();
        for o in dom.vcpus.iter().filter(|o| o.id != v.id) {
            o.set_flag(vflags::FLUSH);
            let on = o.running_on.load(core::sync::atomic::Ordering::Acquire);
            if on != 0 {
                running.set(on as usize - 1);
            }
        }
        sched::kick_and_wait(&running);
    }
    for d in deferred {
        match d {
            Deferred::Release(mfn) => release_frames(mfn, 1),
            Deferred::Unpin { granter, serial, gref, readonly, mfn } => {
                crate::grant::map::unpin_after_flush(granter, serial, gref, readonly, mfn)
            }
        }
    }
}
