//! GNTTABOP_copy between real domains: each side a grant or the caller's
//! own frame, pinned and referenced only for the copy.

use super::map::{acquire, owned_frame, release};
use crate::domain::Domain;
use crate::domain::registry as domain;
use crate::memory::frame_ref::frame_put;
use crate::mm::addr::{Gfn, Mfn};
use crate::mm::phys::phys_to_virt;
use alloc::sync::Arc;
use xen_abi::grant_table::{self as gt, *};

/// One side of a copy, acquired: host frame, and the grant to release.
struct CopySide {
    mfn: Mfn,
    grant: Option<(Arc<Domain>, u32)>,
    readonly: bool,
}

/// One side: a frame of `me`'s own, or a grant of domain `dom`.
fn copy_side(me: &Arc<Domain>, p: &CopyPtr, dom: u16, is_gref: bool, readonly: bool) -> Result<CopySide, i16> {
    if !is_gref {
        let mfn = owned_frame(me, Gfn(p.u), readonly).ok_or(GNTST_BAD_PAGE)?;
        return Ok(CopySide { mfn, grant: None, readonly });
    }
    let d = domain::get(me, dom).ok_or(GNTST_BAD_DOMAIN)?;
    let gref = p.u as u32;
    let mfn = acquire(&d, gref, me.id, readonly, true)?;
    Ok(CopySide { mfn, grant: Some((d, gref)), readonly })
}

fn drop_side(s: CopySide) {
    match s.grant {
        Some((d, gref)) => release(Some(&d), gref, s.readonly, s.mfn),
        None => frame_put(s.mfn),
    }
}

/// GNTTABOP_copy by `me` whose sides are domains `source` and `dest` (the
/// hypercall has checked and resolved them): source, destination, then
/// the bounds, in Xen's order.
pub fn grant_copy(me: &Arc<Domain>, op: &gt::Copy, source: u16, dest: u16) -> i16 {
    let src_gref = op.flags & GNTCOPY_SOURCE_GREF != 0;
    let dst_gref = op.flags & GNTCOPY_DEST_GREF != 0;
    let src = match copy_side(me, &op.source, source, src_gref, true) {
        Ok(s) => s,
        Err(st) => return st,
    };
    let dst = match copy_side(me, &op.dest, dest, dst_gref, false) {
        Ok(s) => s,
        Err(st) => {
            drop_side(src);
            return st;
        }
    };
    let (so, doff, len) = (op.source.offset as u64, op.dest.offset as u64, op.len as u64);
    let st = if so + len > 4096 || doff + len > 4096 {
        GNTST_BAD_COPY_ARG
    } else {
        match (phys_to_virt(src.mfn.phys() + so), phys_to_virt(dst.mfn.phys() + doff)) {
            (Some(s), Some(d)) => {
                // SAFETY: both ranges lie inside 4 KiB frames referenced for
                // the copy (they cannot be freed meanwhile); `copy` allows
                // the same frame on both sides.
                unsafe { core::ptr::copy(s as *const u8, d as *mut u8, len as usize) };
                GNTST_OKAY
            }
            _ => GNTST_GENERAL_ERROR,
        }
    };
    drop_side(src);
    drop_side(dst);
    st
}
