//! GNTTABOP_copy between real domains: each side a grant or the caller's
//! own frame, pinned and referenced only for the copy.

use super::map::{acquire, owned_frame, release};
use crate::domain::Domain;
use crate::domain::registry::domain_or_self;
use crate::memory::frame_ref::frame_put;
use crate::mm::phys::phys_to_virt;
use alloc::sync::Arc;
use xen_abi::DOMID_SELF;
use xen_abi::grant_table::{self as gt, *};

/// One side of a copy, acquired: host frame, and the grant to release.
struct CopySide {
    mfn: u64,
    grant: Option<(Arc<Domain>, u32)>,
    readonly: bool,
}

fn copy_side(me: &Arc<Domain>, p: &CopyPtr, is_gref: bool, readonly: bool) -> Result<CopySide, i16> {
    if !is_gref {
        // Only DOMID_SELF may name a frame (Xen).
        if p.domid != DOMID_SELF {
            return Err(GNTST_PERMISSION_DENIED);
        }
        let mfn = owned_frame(me, p.u, readonly).ok_or(GNTST_BAD_PAGE)?;
        return Ok(CopySide { mfn, grant: None, readonly });
    }
    let d = domain_or_self(me, p.domid).ok_or(GNTST_BAD_DOMAIN)?;
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

/// GNTTABOP_copy: checks in Xen's order (domains, source, destination,
/// then the bounds).
pub fn grant_copy(me: &Arc<Domain>, op: &gt::Copy) -> i16 {
    let src_gref = op.flags & GNTCOPY_SOURCE_GREF != 0;
    let dst_gref = op.flags & GNTCOPY_DEST_GREF != 0;
    for (p, is_gref) in [(&op.source, src_gref), (&op.dest, dst_gref)] {
        if !is_gref && p.domid != DOMID_SELF {
            return GNTST_PERMISSION_DENIED;
        }
        if is_gref && domain_or_self(me, p.domid).is_none() {
            return GNTST_BAD_DOMAIN;
        }
    }
    let src = match copy_side(me, &op.source, src_gref, true) {
        Ok(s) => s,
        Err(st) => return st,
    };
    let dst = match copy_side(me, &op.dest, dst_gref, false) {
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
        match (phys_to_virt((src.mfn << 12) + so), phys_to_virt((dst.mfn << 12) + doff)) {
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
