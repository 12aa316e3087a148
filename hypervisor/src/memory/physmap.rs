//! A domain's guest-physical map as the hypervisor changes it: which
//! entries may be replaced, hypervisor pages placed in it, fresh zeroed RAM,
//! and access to it as guest memory (`DomainMemory`).

use crate::arch::x86_64::hvm::npt::{Npt, P2mType};
use crate::domain::Domain;
use crate::domain::DomainInner;
use crate::domain::unit::{Unit, nothing_to_create};
use crate::memory::frame_ref::Deferred;
use crate::memory::frame_ref::release_frames;
use crate::memory::guest_mem::{GuestPhysical, MemFault};
use crate::mm::addr::{Gfn, Mfn};
use crate::mm::phys::{alloc_frames, free_frames, phys_to_virt};
use alloc::vec::Vec;
use core::ptr::NonNull;

/// Whether a guest frame holding `entry` may be given a new page: it is
/// empty or the domain's own RAM (which it then gives up); hypervisor
/// pages and grant mappings are never replaced.
pub fn replaceable(entry: Option<(Mfn, P2mType)>) -> bool {
    entry.is_none_or(|(_, t)| t.owned())
}

impl DomainInner {
    /// Puts the hypervisor page `mfn` at guest frame `gpfn`, taking it
    /// away from `prev` if it was mapped there: over nothing, or over the
    /// domain's own RAM, which the domain gives up (Xen frees it too) once
    /// no vCPU can reach it. Over another hypervisor page or a grant
    /// mapping -EBUSY, rather than lose track of it. Returns whether
    /// anything changed.
    pub fn place_hypervisor_page(
        &mut self,
        gpfn: Gfn,
        mfn: Mfn,
        prev: Option<Gfn>,
        deferred: &mut Vec<Deferred>,
    ) -> Result<bool, i64> {
        use xen_abi::errno::*;
        if gpfn.0 >> (crate::arch::x86_64::hvm::npt::GPA_BITS - 12) != 0 {
            return Err(-EINVAL);
        }
        if prev == Some(gpfn) {
            return Ok(false);
        }
        let p2m = self.p2m.as_mut().ok_or(-EINVAL)?;
        if !replaceable(p2m.lookup(gpfn)) {
            return Err(-EBUSY);
        }
        if let Some((old, t)) = p2m.set(gpfn, mfn, P2mType::Special).map_err(|_| -ENOMEM)?
            && t.owned()
        {
            deferred.push(Deferred::Release(old));
            self.ram_pages -= 1;
        }
        if let Some(prev) = prev {
            let _ = p2m.clear(prev);
        }
        self.p2m_gen += 1;
        Ok(true)
    }
}

/// A domain's guest-physical memory as its p2m allows it to be used.
pub struct DomainMemory<'a> {
    pub p2m: &'a Npt,
}

impl GuestPhysical for DomainMemory<'_> {
    fn frame(&self, gfn: Gfn, write: bool) -> Result<NonNull<u8>, MemFault> {
        let unmapped = MemFault::Unmapped { gpa: gfn.gpa() };
        let (mfn, t) = self.p2m.lookup(gfn).ok_or(unmapped)?;
        if write && !t.writable() {
            return Err(MemFault::ReadOnly { gpa: gfn.gpa() });
        }
        let v = phys_to_virt(mfn.phys()).ok_or(unmapped)?;
        NonNull::new(v as *mut u8).ok_or(unmapped)
    }
}

/// A domain's RAM comes from the domain builder (`populate`); a dead
/// domain's is given back, but frames another domain still maps or refers
/// to stay until it lets go.
pub const UNIT: Unit<Domain> = Unit { name: "guest memory", create: nothing_to_create, destroy: release_memory };

fn release_memory(d: &Domain) {
    let mut i = d.inner.lock();
    if let Some(p2m) = i.p2m.take() {
        p2m.destroy(&mut |mfn, n| release_frames(mfn, n));
    }
    for (mfn, n) in core::mem::take(&mut i.unplaced) {
        release_frames(mfn, n);
    }
    i.ram_pages = 0;
}

/// No host memory (or p2m table budget) was left for the guest's RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

fn zero_frames(mfn: Mfn, count: u64) -> Result<(), OutOfMemory> {
    let v = phys_to_virt(mfn.phys()).ok_or(OutOfMemory)?;
    // SAFETY: freshly allocated frames, direct-mapped, not yet visible to
    // any guest.
    unsafe { core::ptr::write_bytes(v as *mut u8, 0, (count << 12) as usize) };
    Ok(())
}

/// Gives the domain `count` zeroed frames at `gfn`, in 2 MiB blocks where
/// the guest address is aligned for them.
pub fn populate(p2m: &mut Npt, gfn: Gfn, count: u64) -> Result<(), OutOfMemory> {
    let end = gfn.add(count);
    let mut g = gfn;
    while g < end {
        if g.0.is_multiple_of(512)
            && end.0 - g.0 >= 512
            && let Some(phys) = alloc_frames(9)
        {
            zero_frames(Mfn::of_phys(phys), 512)?;
            if p2m.map(g, Mfn::of_phys(phys), 512, P2mType::Ram).is_err() {
                let _ = free_frames(phys, 512);
                return Err(OutOfMemory);
            }
            g = g.add(512);
            continue;
        }
        let phys = alloc_frames(0).ok_or(OutOfMemory)?;
        zero_frames(Mfn::of_phys(phys), 1)?;
        if p2m.map(g, Mfn::of_phys(phys), 1, P2mType::Ram).is_err() {
            let _ = free_frames(phys, 1);
            return Err(OutOfMemory);
        }
        g = g.add(1);
    }
    Ok(())
}
