//! Granted pages on real domains: a domain's grant frames, pins that hold
//! a reference on the granted frame, and mappings into the mapper's p2m
//! (GNTTABOP_map_grant_ref / unmap_grant_ref, XENMAPSPACE_grant_table).
//!
//! Lock order: a domain's `grants` lock before its `inner` lock, never
//! after; two `grants` locks are never held at once (a map pins the
//! granter's entry, lets go, then updates the mapper).

use crate::arch::x86_64::hvm::npt::{GPA_BITS, P2mType};
use crate::domain::Domain;
use crate::domain::registry as domain;
use crate::domain::unit::Unit;
use crate::grant::table::{Frame, Mapping, Pinned};
use crate::memory::frame_ref::Deferred;
use crate::memory::frame_ref::{frame_get, frame_put};
use crate::memory::physmap::replaceable;
use crate::mm::addr::{Gfn, Gpa, Mfn};
use crate::mm::phys::{alloc_zeroed_frame, free_frames, phys_to_virt};
use alloc::sync::Arc;
use alloc::vec::Vec;
use xen_abi::errno::*;
use xen_abi::grant_table::*;

/// A zeroed frame for a grant table.
fn grant_frame() -> Option<Frame> {
    let phys = alloc_zeroed_frame()?;
    let va = phys_to_virt(phys)? as usize;
    Some(Frame { mfn: Mfn::of_phys(phys), va })
}

/// Frees a grant table's frames (when its domain is gone for good).
pub fn free_grant_frames(frames: Vec<Frame>) {
    for f in frames {
        let _ = free_frames(f.mfn.phys(), 1);
    }
}

/// Takes a reference on the frame behind `gfn` of `owner` if it is the
/// owner's RAM (writable RAM unless `readonly`).
pub(super) fn owned_frame(owner: &Domain, gfn: Gfn, readonly: bool) -> Option<Mfn> {
    let i = owner.inner.lock();
    let (mfn, t) = i.p2m.as_ref()?.lookup(gfn)?;
    let ok = match t {
        P2mType::Ram => true,
        P2mType::RamReadOnly => readonly,
        _ => false,
    };
    if !ok {
        return None;
    }
    frame_get(mfn);
    Some(mfn)
}

/// Pins grant `gref` of `granter` for `me` and takes a reference on its
/// frame: the host frame, or a GNTST_* status.
pub(super) fn acquire(granter: &Domain, gref: u32, me: u16, readonly: bool, for_copy: bool) -> Result<Mfn, i16> {
    let mut g = granter.grants.lock();
    match g.pin(gref, me, readonly, for_copy)? {
        Pinned::Frame(mfn) => {
            frame_get(mfn);
            Ok(mfn)
        }
        Pinned::Translate(gfn) => match owned_frame(granter, gfn, readonly) {
            Some(mfn) => {
                g.set_frame(gref, mfn);
                Ok(mfn)
            }
            None => {
                // Its frame cannot be used: the first pin is undone.
                g.unpin(gref, readonly);
                Err(GNTST_BAD_PAGE)
            }
        },
    }
}

/// Undoes [`acquire`].
pub(super) fn release(granter: Option<&Domain>, gref: u32, readonly: bool, mfn: Mfn) {
    if let Some(g) = granter {
        g.grants.lock().unpin(gref, readonly);
    }
    frame_put(mfn);
}

/// GNTTABOP_map_grant_ref by `me` (a PVH domain: host_addr is where in
/// its guest-physical space) of grant `op.gref` of `granter`; the
/// hypercall has checked the flags and resolved the granter.
pub fn grant_map(me: &Arc<Domain>, op: &MapGrantRef, granter: u16, deferred: &mut Vec<Deferred>) -> (i16, u32, u64) {
    // It may have gone since it was looked up.
    let Some(granter) = domain::get(me, granter) else { return (GNTST_BAD_DOMAIN, 0, 0) };
    let readonly = op.flags & GNTMAP_READONLY != 0;
    let gfn = Gpa(op.host_addr).gfn();
    // A handle first (Xen: GNTST_no_space before the reference is looked at).
    let placeholder =
        Mapping { granter: granter.id, granter_serial: granter.serial, gref: op.gref, readonly, gfn, mfn: Mfn(0) };
    let Some(handle) = me.grants.lock().add_mapping(placeholder, &mut grant_frame) else {
        return (GNTST_NO_SPACE, 0, 0);
    };
    let mfn = match acquire(&granter, op.gref, me.id, readonly, false) {
        Ok(mfn) => mfn,
        Err(st) => {
            me.grants.lock().remove_mapping(handle);
            return (st, 0, 0);
        }
    };
    // Into the mapper's p2m: over nothing or its own RAM (which it gives
    // up, as Xen's physmap replacement does), never over another mapping
    // or a hypervisor page. The mapping is placed and recorded under the
    // mapper's grants lock, so an unmap sees both or neither.
    let placed = {
        let mut g = me.grants.lock();
        let mut i = me.inner.lock();
        let t = if readonly { P2mType::GrantRo } else { P2mType::GrantRw };
        let placed = match i.p2m.as_mut() {
            Some(p2m) if gfn.0 >> (GPA_BITS - 12) == 0 && replaceable(p2m.lookup(gfn)) => match p2m.set(gfn, mfn, t) {
                Ok(old) => {
                    if let Some((old_mfn, ot)) = old
                        && ot.owned()
                    {
                        deferred.push(Deferred::Release(old_mfn));
                        i.ram_pages -= 1;
                    }
                    i.p2m_gen += 1;
                    true
                }
                Err(_) => false,
            },
            _ => false,
        };
        if placed {
            g.set_mapping(
                handle,
                Mapping { granter: granter.id, granter_serial: granter.serial, gref: op.gref, readonly, gfn, mfn },
            );
        } else {
            g.remove_mapping(handle);
        }
        placed
    };
    if !placed {
        release(Some(&granter), op.gref, readonly, mfn);
        return (GNTST_GENERAL_ERROR, 0, 0);
    }
    // The machine address, as Xen reports it to every mapper: a backend
    // in the 1:1-mapped hardware domain hands it to its device.
    (GNTST_OKAY, handle, mfn.phys())
}

/// GNTTABOP_unmap_grant_ref: the mapping goes at once; the pin and the
/// frame reference after every vCPU of `me` has dropped its translations.
pub fn grant_unmap(me: &Domain, op: &UnmapGrantRef, deferred: &mut Vec<Deferred>) -> i16 {
    // One lock section from the handle's lookup to its removal: two vCPUs
    // unmapping one handle (while a third maps the same grant at the same
    // place again) must not both clear an entry and both queue an unpin.
    let mut g = me.grants.lock();
    let Some(m) = g.mapping(op.handle) else { return GNTST_BAD_HANDLE };
    // No address: Xen unmaps nothing and says it is fine (the mapping and
    // its handle stay).
    if op.host_addr == 0 {
        return GNTST_OKAY;
    }
    if Gpa(op.host_addr).gfn() != m.gfn {
        return GNTST_GENERAL_ERROR;
    }
    {
        let mut i = me.inner.lock();
        let Some(p2m) = i.p2m.as_mut() else { return GNTST_GENERAL_ERROR };
        match p2m.lookup(m.gfn) {
            Some((mfn, t)) if t.is_grant() && mfn == m.mfn => {}
            _ => return GNTST_GENERAL_ERROR,
        }
        if p2m.clear(m.gfn).is_err() {
            return GNTST_GENERAL_ERROR;
        }
        i.p2m_gen += 1;
    }
    if g.remove_mapping(op.handle).is_some() {
        deferred.push(Deferred::Unpin {
            granter: m.granter,
            serial: m.granter_serial,
            gref: m.gref,
            readonly: m.readonly,
            mfn: m.mfn,
        });
    }
    GNTST_OKAY
}

/// Work left for after the TLB flush that an unmap needs.
pub fn unpin_after_flush(granter: u16, serial: u64, gref: u32, readonly: bool, mfn: Mfn) {
    // A granter that is gone (its id perhaps given to a new domain) has no
    // pin left to drop; the frame reference goes either way.
    let g = domain::find(granter).filter(|g| g.serial == serial);
    release(g.as_deref(), gref, readonly, mfn);
}

/// A dying domain's mappings of other domains' grants: removed from its
/// p2m (which is being torn down) and their pins dropped.
pub fn release_mappings(me: &Domain) {
    let maps = me.grants.lock().take_mappings();
    for m in maps {
        unpin_after_flush(m.granter, m.granter_serial, m.gref, m.readonly, m.mfn);
    }
}

/// A domain's grant table starts with one frame and grows on demand (a
/// domain left without the first may still ask for it); a dead domain's
/// mappings of other domains' grants are released and its frames freed.
pub const UNIT: Unit<Domain> = Unit { name: "grant table", create: first_frame, destroy: release_table };

fn first_frame(d: &Domain) -> Result<(), &'static str> {
    grant_grow(d, 1);
    Ok(())
}

fn release_table(d: &Domain) {
    release_mappings(d);
    let frames = d.grants.lock().take_frames();
    free_grant_frames(frames);
}

/// Grows `d`'s grant table to `n` frames.
pub fn grant_grow(d: &Domain, n: u32) -> bool {
    d.grants.lock().grow(n, &mut grant_frame)
}

/// XENMAPSPACE_grant_table: grant frame `idx` of `me` at `gpfn`.
pub fn map_grant_frame(me: &Domain, idx: u32, gpfn: Gfn, deferred: &mut Vec<Deferred>) -> Result<bool, i64> {
    let mut g = me.grants.lock();
    if idx >= g.max_frames() || !g.grow(idx + 1, &mut grant_frame) {
        return Err(-EINVAL);
    }
    let Some(frame) = g.frame(idx) else { return Err(-EINVAL) };
    let placed = me.inner.lock().place_hypervisor_page(gpfn, frame.mfn, g.frame_gfn(idx), deferred)?;
    if placed {
        g.set_frame_gfn(idx, Some(gpfn));
    }
    Ok(placed)
}
