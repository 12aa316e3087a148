//! Memory reservation on real domains: one extent of
//! increase_reservation, decrease_reservation or populate_physmap. Each
//! answers whether the extent was done; the first that is not ends the
//! hypercall (`hypercall::memory_op` counts them).

use crate::arch::x86_64::hvm::npt::{GPA_BITS, P2mType};
use crate::domain::Domain;
use crate::memory::frame_ref::Deferred;
use crate::memory::physmap::replaceable;
use crate::mm::addr::{Gfn, Mfn};
use crate::mm::phys::{alloc_frame_at, alloc_frames, free_frames, phys_to_virt};
use alloc::vec::Vec;

/// Whether an extent of 2^order frames at `gfn` is aligned and inside the
/// guest-physical address space.
fn extent_fits(gfn: Gfn, order: u32) -> bool {
    let Some(n) = 1u64.checked_shl(order) else { return false };
    // The end is checked, not computed with `+`: a guest's gfn near 2^64
    // would wrap past the bound.
    gfn.0 & (n - 1) == 0 && gfn.0.checked_add(n).is_some_and(|end| end >> (GPA_BITS - 12) == 0)
}

/// The 2^order guest frames of an extent.
fn frames(gfn: Gfn, order: u32) -> impl Iterator<Item = Gfn> {
    (0..1u64 << order).map(move |k| gfn.add(k))
}

/// 2^order zeroed frames for the domain, within its maximum: the first
/// host frame.
fn fresh_frames(ram_pages: u64, max_pages: u64, order: u32) -> Option<Mfn> {
    let n = 1u64 << order;
    if ram_pages + n > max_pages {
        return None;
    }
    let phys = alloc_frames(order as usize)?;
    let Some(va) = phys_to_virt(phys) else {
        let _ = free_frames(phys, n);
        return None;
    };
    // SAFETY: freshly allocated frames, not yet visible to a guest.
    unsafe { core::ptr::write_bytes(va as *mut u8, 0, (n << 12) as usize) };
    Some(Mfn::of_phys(phys))
}

/// The machine frames `[gfn, gfn + 2^order)` themselves, zeroed, within
/// the domain's maximum: for the hardware domain, whose RAM stays 1:1
/// (`memory::identity`). None if any of them is not free.
fn fresh_frames_at(ram_pages: u64, max_pages: u64, gfn: Gfn, order: u32) -> Option<Mfn> {
    let n = 1u64 << order;
    if ram_pages + n > max_pages {
        return None;
    }
    for k in 0..n {
        if !alloc_frame_at(gfn.0 + k) {
            if k > 0 {
                let _ = free_frames(gfn.0 << 12, k);
            }
            return None;
        }
    }
    let Some(va) = phys_to_virt(gfn.0 << 12) else {
        let _ = free_frames(gfn.0 << 12, n);
        return None;
    };
    // SAFETY: frames just taken from the allocator, not yet visible to a
    // guest.
    unsafe { core::ptr::write_bytes(va as *mut u8, 0, (n << 12) as usize) };
    Some(Mfn(gfn.0))
}

/// increase_reservation: 2^order frames the domain owns but that are placed
/// nowhere (a translated guest's increase, as in Xen); freed with the
/// domain.
pub fn increase(d: &Domain, order: u32) -> bool {
    let mut i = d.inner.lock();
    let Some(mfn) = fresh_frames(i.ram_pages, i.max_pages, order) else { return false };
    let n = 1u64 << order;
    i.unplaced.push((mfn, n));
    i.ram_pages += n;
    true
}

/// decrease_reservation: the domain gives up its RAM at the extent; the
/// frames are released once no vCPU can reach them (`deferred`).
pub fn decrease(d: &Domain, gfn: Gfn, order: u32, deferred: &mut Vec<Deferred>) -> bool {
    if !extent_fits(gfn, order) {
        return false;
    }
    let n = 1u64 << order;
    let mut i = d.inner.lock();
    let Some(p2m) = i.p2m.as_mut() else { return false };
    for g in frames(gfn, order) {
        match p2m.lookup(g) {
            Some((_, t)) if t.owned() => {}
            _ => return false,
        }
    }
    // Only frames whose p2m entry is really gone leave the domain's count:
    // a clear can fail (a 2 MiB leaf that cannot be split once the p2m's
    // table budget is spent), and counting it would let the guest lower
    // its page count while keeping the memory mapped.
    let mut released = 0;
    let mut whole = true;
    for g in frames(gfn, order) {
        match p2m.clear(g) {
            Ok(Some((mfn, _))) => {
                deferred.push(Deferred::Release(mfn));
                released += 1;
            }
            Ok(None) => {}
            Err(_) => {
                whole = false;
                break;
            }
        }
    }
    i.ram_pages -= released;
    i.p2m_gen += 1;
    whole && released == n
}

/// populate_physmap: new zeroed RAM at the extent, over nothing or the
/// domain's own RAM (released once no vCPU can reach it). The hardware
/// domain gets the machine frames of the extent itself, so its RAM stays
/// 1:1 (the extent fails where they are not free).
pub fn populate(d: &Domain, gfn: Gfn, order: u32, deferred: &mut Vec<Deferred>) -> bool {
    if !extent_fits(gfn, order) {
        return false;
    }
    let n = 1u64 << order;
    let mut i = d.inner.lock();
    let fresh = if d.privileged {
        fresh_frames_at(i.ram_pages, i.max_pages, gfn, order)
    } else {
        fresh_frames(i.ram_pages, i.max_pages, order)
    };
    let Some(mfn) = fresh else { return false };
    let Some(p2m) = i.p2m.as_mut() else {
        let _ = free_frames(mfn.phys(), n);
        return false;
    };
    if !frames(gfn, order).all(|g| replaceable(p2m.lookup(g))) {
        let _ = free_frames(mfn.phys(), n);
        return false;
    }
    let mut replaced = 0;
    for (k, g) in frames(gfn, order).enumerate() {
        match p2m.set(g, mfn.add(k as u64), P2mType::Ram) {
            Ok(Some((old, t))) if t.owned() => {
                deferred.push(Deferred::Release(old));
                replaced += 1;
            }
            Ok(_) => {}
            Err(_) => {
                // Out of p2m table budget: undo this extent. The frames
                // already mapped may be in other vCPUs' TLBs: they go
                // after the flush, like any the domain gives up; the rest
                // were never visible and go now.
                for (j, g2) in frames(gfn, order).take(k).enumerate() {
                    let _ = p2m.clear(g2);
                    deferred.push(Deferred::Release(mfn.add(j as u64)));
                }
                let _ = free_frames(mfn.add(k as u64).phys(), n - k as u64);
                i.ram_pages -= replaced;
                i.p2m_gen += 1;
                return false;
            }
        }
    }
    i.ram_pages = i.ram_pages - replaced + n;
    i.p2m_gen += 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_near_the_top_of_the_frame_space_do_not_fit() {
        assert!(extent_fits(Gfn(0x200), 9));
        assert!(!extent_fits(Gfn(0x201), 9));
        let top = 1u64 << (GPA_BITS - 12);
        assert!(extent_fits(Gfn(top - 512), 9));
        assert!(!extent_fits(Gfn(top), 0));
        // These wrapped past the bound before: u64::MAX + 1 and
        // 2^64 - 512 + 512 are 0.
        assert!(!extent_fits(Gfn(u64::MAX), 0));
        assert!(!extent_fits(Gfn(u64::MAX - 511), 9));
        assert!(!extent_fits(Gfn(0), 64));
    }
}
