//! Frame references: host frames something besides their owner's p2m
//! refers to (a grant mapping or copy, a registered vcpu_info). An owner
//! giving such a frame up (ballooning it out, dying) leaves it allocated
//! until the last reference goes.

use crate::mm::addr::Mfn;
use crate::mm::phys::{frame_get_ref, frame_put_ref, release_frames_referenced};

// The counts live in the frame table (`mm::frame`): one more and one less
// are a lock and an add, whatever the number of referenced frames, and a
// domain's references cost no memory of their own.

/// Takes a reference on `mfn` (the caller holds the owner's lock, so the
/// frame cannot be released under it).
pub fn frame_get(mfn: Mfn) {
    if let Err(e) = frame_get_ref(mfn.0) {
        log::error!("frame reference: {e}");
    }
}

/// Drops a reference on `mfn`, freeing it if its owner let go of it.
pub fn frame_put(mfn: Mfn) {
    if let Err(e) = frame_put_ref(mfn.0) {
        log::error!("frame reference: {e}");
    }
}

/// An owner gives `n` frames from `mfn` back: those nobody refers to are
/// freed now, the others with their last reference.
pub fn release_frames(mfn: Mfn, n: u64) {
    if let Err(e) = release_frames_referenced(mfn.0, n) {
        log::error!("frames given back: {e}");
    }
}

/// Work left for after every vCPU of a domain has dropped its cached
/// translations of a page (the caller runs it: a released frame through
/// [`release_frames`], a grant pin through `grant::map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferred {
    /// A frame the domain gave up (freed unless something refers to it).
    Release(Mfn),
    /// A grant mapping's pin and frame reference.
    Unpin { granter: u16, serial: u64, gref: u32, readonly: bool, mfn: Mfn },
}
