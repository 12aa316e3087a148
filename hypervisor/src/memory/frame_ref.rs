//! Frame references: host frames something besides their owner's p2m
//! refers to (a grant mapping or copy, a registered vcpu_info). An owner
//! giving such a frame up (ballooning it out, dying) leaves it allocated
//! until the last reference goes.

use crate::mm::addr::Mfn;
use crate::mm::phys::free_frames;
use alloc::vec::Vec;
use spin::Mutex;

/// Host frames something besides their owner's p2m refers to (a grant
/// mapping or copy, a registered vcpu_info): an owner giving such a frame
/// up (ballooning it out, dying) leaves it allocated until the last
/// reference goes.
#[derive(Debug, Clone, Copy)]
struct FrameRef {
    mfn: Mfn,
    count: u32,
    /// The owner let go of it: free it with the last reference.
    released: bool,
}

/// Sorted by frame. A vector that keeps its capacity: references come and
/// go on every grant copy, and a search plus a short move is far cheaper
/// than a tree node allocated and freed each time.
static FRAME_REFS: Mutex<Vec<FrameRef>> = Mutex::new(Vec::new());

/// Takes a reference on `mfn` (the caller holds the owner's lock, so the
/// frame cannot be released under it).
pub fn frame_get(mfn: Mfn) {
    let mut refs = FRAME_REFS.lock();
    match refs.binary_search_by_key(&mfn, |r| r.mfn) {
        Ok(i) => refs[i].count += 1,
        Err(i) => refs.insert(i, FrameRef { mfn, count: 1, released: false }),
    }
}

/// Drops a reference on `mfn`, freeing it if its owner let go of it.
pub fn frame_put(mfn: Mfn) {
    let mut refs = FRAME_REFS.lock();
    let Ok(i) = refs.binary_search_by_key(&mfn, |r| r.mfn) else { return };
    refs[i].count -= 1;
    if refs[i].count == 0 {
        let r = refs.remove(i);
        if r.released {
            let _ = free_frames(mfn.phys(), 1);
        }
    }
}

/// An owner gives `n` frames from `mfn` back: those nobody refers to are
/// freed now, the others with their last reference.
pub fn release_frames(mfn: Mfn, n: u64) {
    let mut refs = FRAME_REFS.lock();
    let first = refs.partition_point(|r| r.mfn < mfn);
    if refs.get(first).is_none_or(|r| r.mfn >= mfn.add(n)) {
        let _ = free_frames(mfn.phys(), n);
        return;
    }
    for f in (0..n).map(|k| mfn.add(k)) {
        match refs.binary_search_by_key(&f, |r| r.mfn) {
            Ok(i) => refs[i].released = true,
            Err(_) => {
                let _ = free_frames(f.phys(), 1);
            }
        }
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
    Unpin { granter: u16, gref: u32, readonly: bool, mfn: Mfn },
}
