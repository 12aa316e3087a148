//! Memory reservation on real domains: one extent of
//! increase_reservation, decrease_reservation or populate_physmap.

use crate::arch::x86_64::hvm::npt::{GPA_BITS, P2mType};
use crate::domain::{Deferred, Domain};
use crate::memory::physmap::replaceable;
use crate::mm::phys::{alloc_frames, free_frames, phys_to_virt};
use alloc::vec::Vec;

/// One extent of a reservation operation on `d`; false stops the
/// operation.
pub fn extent(d: &Domain, op: crate::hypercall::Extent, gfn: u64, order: u32, deferred: &mut Vec<Deferred>) -> bool {
    use crate::hypercall::Extent;
    let n = 1u64 << order;
    if op != Extent::Increase && (gfn & (n - 1) != 0 || (gfn + n) >> (GPA_BITS - 12) != 0) {
        return false;
    }
    let mut i = d.inner.lock();
    match op {
        Extent::Decrease => {
            let Some(p2m) = i.p2m.as_mut() else { return false };
            for g in gfn..gfn + n {
                match p2m.lookup(g) {
                    Some((_, t)) if t.owned() => {}
                    _ => return false,
                }
            }
            for g in gfn..gfn + n {
                if let Ok(Some((mfn, _))) = p2m.clear(g) {
                    deferred.push(Deferred::Release(mfn));
                }
            }
            i.ram_pages -= n;
            i.p2m_gen += 1;
            true
        }
        Extent::Increase | Extent::Populate => {
            if i.ram_pages + n > i.max_pages {
                return false;
            }
            let Some(phys) = alloc_frames(order as usize) else { return false };
            let Some(va) = phys_to_virt(phys) else {
                let _ = free_frames(phys, n);
                return false;
            };
            // SAFETY: freshly allocated frames, not yet visible to a guest.
            unsafe { core::ptr::write_bytes(va as *mut u8, 0, (n << 12) as usize) };
            let mfn = phys >> 12;
            if op == Extent::Increase {
                // Owned but placed nowhere (a translated guest's increase,
                // as in Xen); freed with the domain.
                i.unplaced.push((mfn, n));
                i.ram_pages += n;
                return true;
            }
            let Some(p2m) = i.p2m.as_mut() else {
                let _ = free_frames(phys, n);
                return false;
            };
            if !(gfn..gfn + n).all(|g| replaceable(p2m.lookup(g))) {
                let _ = free_frames(phys, n);
                return false;
            }
            let mut replaced = 0;
            for (k, g) in (gfn..gfn + n).enumerate() {
                match p2m.set(g, mfn + k as u64, P2mType::Ram) {
                    Ok(Some((old, t))) if t.owned() => {
                        deferred.push(Deferred::Release(old));
                        replaced += 1;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        // Out of p2m table budget: undo this extent.
                        for g2 in gfn..g {
                            let _ = p2m.clear(g2);
                        }
                        let _ = free_frames(phys, n);
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
    }
}
