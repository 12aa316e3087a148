//! A domain's guest-physical map as the hypervisor changes it: which
//! entries may be replaced, hypervisor pages placed in it, fresh zeroed RAM,
//! and access to it as guest memory (`DomainMemory`).

use crate::arch::x86_64::hvm::npt::{GPA_BITS, Npt, P2mType};
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
        // Device registers are the guest's to touch, never the
        // hypervisor's on its behalf (a read could have side effects).
        if t.is_mmio() {
            return Err(unmapped);
        }
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

/// The hardware domain's RAM (`memory::identity`): `pages` frames,
/// the boot island `[island.0, island.1)` backed by any frames, all the
/// others mapped at their own machine address, never inside the island
/// or `hole`. Returns the RAM runs (first frame, frames), merged.
pub fn populate_identity(
    p2m: &mut Npt,
    island: (u64, u64),
    hole: (u64, u64),
    pages: u64,
) -> Result<Vec<(u64, u64)>, OutOfMemory> {
    use crate::memory::identity::{identity_ok, merge_runs, order_for};
    let island_pages = island.1 - island.0;
    if island_pages > pages {
        return Err(OutOfMemory);
    }
    // The island in one block: one allocation, one zeroing, one mapping
    // (a page at a time would cost a walk of the allocator each).
    let phys = crate::mm::phys::alloc_contiguous(island_pages).ok_or(OutOfMemory)?;
    if zero_frames(Mfn::of_phys(phys), island_pages).is_err()
        || p2m.map(Gfn(island.0), Mfn::of_phys(phys), island_pages, P2mType::Ram).is_err()
    {
        let _ = free_frames(phys, island_pages);
        return Err(OutOfMemory);
    }
    let mut runs = alloc::vec![(island.0, island_pages)];
    // Blocks that cannot be identity-mapped, given back at the end.
    let mut aside: Vec<(u64, u64)> = Vec::new();
    let mut left = pages - island_pages;
    let mut result = Ok(());
    while left > 0 {
        let order = order_for(left, crate::mm::frame::MAX_ORDER);
        let Some((phys, n)) = (0..=order).rev().find_map(|o| alloc_frames(o).map(|p| (p, 1u64 << o))) else {
            result = Err(OutOfMemory);
            break;
        };
        let mfn = phys >> 12;
        if !identity_ok(mfn, n, island, hole) {
            aside.push((phys, n));
            continue;
        }
        if zero_frames(Mfn(mfn), n).is_err() || p2m.map(Gfn(mfn), Mfn(mfn), n, P2mType::Ram).is_err() {
            let _ = free_frames(phys, n);
            result = Err(OutOfMemory);
            break;
        }
        runs.push((mfn, n));
        left -= n;
    }
    for (phys, n) in aside {
        let _ = free_frames(phys, n);
    }
    result.map(|()| merge_runs(runs))
}

/// The hardware domain's device memory in its p2m, for
/// `passthrough::config`: each range mapped at its own address, a page
/// at a time where the domain has nothing else (its own RAM or special
/// pages keep their place; those pages are counted as skipped).
pub struct DeviceMemory<'a> {
    pub dom: &'a Domain,
    /// Whether any mapping changed (the domain's TLBs need a flush).
    pub changed: bool,
    pub skipped: u64,
}

impl<'a> DeviceMemory<'a> {
    pub fn new(dom: &'a Domain) -> DeviceMemory<'a> {
        DeviceMemory { dom, changed: false, skipped: 0 }
    }
}

/// The guest frames a device range covers (whole pages).
fn device_frames(r: &crate::passthrough::vpci::MmioRange) -> core::ops::Range<u64> {
    let end = r.base.saturating_add(r.size).saturating_add(0xfff) >> 12;
    (r.base >> 12)..end.min(1 << (GPA_BITS - 12))
}

impl crate::passthrough::config::MmioMapper for DeviceMemory<'_> {
    fn map(&mut self, r: &crate::passthrough::vpci::MmioRange) {
        let t = if r.prefetchable { P2mType::MmioPrefetchable } else { P2mType::Mmio };
        let mut i = self.dom.inner.lock();
        let Some(p2m) = i.p2m.as_mut() else { return };
        let frames = device_frames(r);
        let mut changed = false;
        if frames.clone().all(|g| p2m.lookup(Gfn(g)).is_none()) {
            // All free: one mapping, large pages where aligned.
            let n = frames.end - frames.start;
            changed = p2m.map(Gfn(frames.start), Mfn(frames.start), n, t).is_ok();
            if !changed {
                self.skipped += n;
            }
        } else {
            for g in frames {
                match p2m.lookup(Gfn(g)) {
                    None => match p2m.set(Gfn(g), Mfn(g), t) {
                        Ok(_) => changed = true,
                        Err(_) => self.skipped += 1,
                    },
                    Some((m, old)) if old.is_mmio() && m.0 == g => {}
                    Some(_) => self.skipped += 1,
                }
            }
        }
        if changed {
            i.p2m_gen += 1;
            self.changed = true;
        }
    }

    fn unmap(&mut self, r: &crate::passthrough::vpci::MmioRange) {
        let mut i = self.dom.inner.lock();
        let Some(p2m) = i.p2m.as_mut() else { return };
        let mut changed = false;
        for g in device_frames(r) {
            if p2m.lookup(Gfn(g)).is_some_and(|(m, t)| t.is_mmio() && m.0 == g) {
                changed |= p2m.clear(Gfn(g)).is_ok();
            }
        }
        if changed {
            i.p2m_gen += 1;
            self.changed = true;
        }
    }
}
