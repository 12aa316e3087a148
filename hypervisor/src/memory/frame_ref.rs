//! Frame references: host frames something besides their owner's p2m
//! refers to (a grant mapping or copy, a registered vcpu_info). An owner
//! giving such a frame up (ballooning it out, dying) leaves it allocated
//! until the last reference goes.

use crate::mm::addr::Mfn;
use crate::mm::phys::free_frames;
use alloc::collections::BTreeMap;
use spin::Mutex;

/// A referenced frame: how many references, and whether its owner let go
/// of it (it is freed with the last reference then).
#[derive(Debug, Clone, Copy)]
struct FrameRef {
    count: u32,
    released: bool,
}

/// Every referenced frame, by frame. A tree: a domain can hold as many
/// references as it may have grant mappings (hundreds of thousands), and
/// each change must stay cheap for everyone else, which a sorted vector's
/// inserts and removals (a move of everything after the place) are not.
static FRAME_REFS: Mutex<BTreeMap<Mfn, FrameRef>> = Mutex::new(BTreeMap::new());

/// A key no frame has, kept in the tree for good: the tree's first node
/// then never goes, so a grant copy's reference taken and dropped again
/// on an otherwise empty tree costs no allocation.
const KEEP: Mfn = Mfn(u64::MAX);

/// Takes a reference on `mfn` (the caller holds the owner's lock, so the
/// frame cannot be released under it).
pub fn frame_get(mfn: Mfn) {
    let mut refs = FRAME_REFS.lock();
    if refs.is_empty() {
        refs.insert(KEEP, FrameRef { count: 1, released: false });
    }
    refs.entry(mfn).or_insert(FrameRef { count: 0, released: false }).count += 1;
}

/// Drops a reference on `mfn`, freeing it if its owner let go of it.
pub fn frame_put(mfn: Mfn) {
    let mut refs = FRAME_REFS.lock();
    let Some(r) = refs.get_mut(&mfn) else { return };
    r.count -= 1;
    if r.count == 0 {
        let released = r.released;
        refs.remove(&mfn);
        if released {
            let _ = free_frames(mfn.phys(), 1);
        }
    }
}

/// An owner gives `n` frames from `mfn` back: those nobody refers to are
/// freed now, the others with their last reference.
pub fn release_frames(mfn: Mfn, n: u64) {
    let mut refs = FRAME_REFS.lock();
    let end = mfn.add(n);
    if refs.range(mfn..end).next().is_none() {
        let _ = free_frames(mfn.phys(), n);
        return;
    }
    for f in (0..n).map(|k| mfn.add(k)) {
        match refs.get_mut(&f) {
            Some(r) => r.released = true,
            None => {
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
    Unpin { granter: u16, serial: u64, gref: u32, readonly: bool, mfn: Mfn },
}
