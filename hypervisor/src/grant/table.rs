//! Grant tables, version 1: each domain's shared grant frames (the guest
//! writes entries there), the hypervisor's record of which entries are
//! pinned by mappings and copies (Xen's active entries), and the maptrack
//! handles a mapping domain holds.
//!
//! The logic only: frames are given to the table by the caller (who owns
//! the memory), guest frames are translated by the caller, and an
//! operation that involves two domains calls into both tables in turn
//! without holding both locks. The shared entries are changed with atomic
//! compare-and-exchange on the 32-bit (flags, domid) pair, as Xen does,
//! since the granting guest writes them concurrently.

use crate::mm::addr::{Gfn, Mfn};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use xen_abi::grant_table::*;

/// Xen's defaults (`gnttab_max_frames`, `gnttab_max_maptrack_frames`).
pub const DEFAULT_MAX_FRAMES: u32 = 64;
pub const DEFAULT_MAX_MAPTRACK: u32 = 1024 * (4096 / 16);
/// Retries of a compare-and-exchange the guest keeps spoiling before the
/// operation fails (Xen allows a few).
const CMPXCHG_RETRIES: u32 = 4;

/// A grant frame: its host frame number and where the hypervisor reaches
/// it (a direct-map address of a 4 KiB page the table owns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub mfn: Mfn,
    pub va: usize,
}

/// Pins on one grant entry by the domain it grants to. All-zero bytes
/// are the default (nothing pinned), so a zeroed page holds
/// [`ACTIVE_PER_PAGE`] of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Active {
    /// Read-only and writable pins (mappings and copies in progress).
    pub readers: u32,
    pub writers: u32,
    /// The domain that pinned it.
    pub domid: u16,
    /// The granted guest frame and its host frame while pinned.
    pub gfn: Gfn,
    pub mfn: Mfn,
}

/// Active entries per 4 KiB page, and pages per grant frame's entries.
const ACTIVE_PER_PAGE: u32 = 4096 / core::mem::size_of::<Active>() as u32;
const ACTIVE_PAGES_PER_FRAME: u32 = ENTRIES_PER_FRAME_V1 / ACTIVE_PER_PAGE;
const _: () =
    assert!(4096 % core::mem::size_of::<Active>() == 0 && ENTRIES_PER_FRAME_V1.is_multiple_of(ACTIVE_PER_PAGE));

impl Active {
    pub fn pinned(&self) -> bool {
        self.readers + self.writers != 0
    }
}

/// A mapping the mapping domain holds (a maptrack entry). Zero bytes are
/// a valid value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Mapping {
    pub granter: u16,
    /// The granter's `Domain::serial`: domain ids are reused, and the pin
    /// must be dropped on the domain that granted it, not a newer one.
    pub granter_serial: u64,
    pub gref: u32,
    pub readonly: bool,
    /// Where it is mapped in the mapping domain (guest frame).
    pub gfn: Gfn,
    pub mfn: Mfn,
}

/// A maptrack slot: in use, or free and linked to the next free one.
/// A zeroed slot has never been used.
#[derive(Clone, Copy)]
#[repr(C)]
struct MapSlot {
    used: u32,
    /// The next free handle + 1 (0: none) while free.
    next_free: u32,
    m: Mapping,
}

const MAPS_PER_PAGE: u32 = 4096 / core::mem::size_of::<MapSlot>() as u32;

/// What a first pin must be completed with: the granted guest frame,
/// which the caller translates and passes to [`Grants::set_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    /// Already pinned: the host frame is known.
    Frame(Mfn),
    /// First pin of the entry: translate this guest frame.
    Translate(Gfn),
}

pub struct Grants {
    frames: Vec<Frame>,
    /// Where each frame is mapped in the domain (XENMAPSPACE_grant_table).
    frame_gfns: Vec<Option<Gfn>>,
    max_frames: u32,
    /// The active entries, in pages from the same source as the frames
    /// (not the hypervisor heap, which keeps what it grew by: a table
    /// grown to 64 frames would leave a MiB there after its domain).
    active_pages: Vec<Frame>,
    /// Zeroed pages taken by a `grow` that ran out of memory before it
    /// had all a frame needs.
    spare: Vec<Frame>,
    /// The maptrack, in pages from the caller as well (a domain may make
    /// 262,144 mappings: 12 MiB the heap would keep after it).
    map_pages: Vec<Frame>,
    /// Handles handed out so far (the high-water mark).
    map_slots: u32,
    /// The first free handle below `map_slots` + 1 (0: none).
    free_head: u32,
    max_maps: u32,
}

impl Grants {
    pub const fn new(max_frames: u32, max_maps: u32) -> Grants {
        Grants {
            frames: Vec::new(),
            frame_gfns: Vec::new(),
            max_frames,
            active_pages: Vec::new(),
            spare: Vec::new(),
            map_pages: Vec::new(),
            map_slots: 0,
            free_head: 0,
            max_maps,
        }
    }

    pub fn nr_frames(&self) -> u32 {
        self.frames.len() as u32
    }

    pub fn max_frames(&self) -> u32 {
        self.max_frames
    }

    pub fn nr_entries(&self) -> u32 {
        self.nr_frames() * ENTRIES_PER_FRAME_V1
    }

    pub fn frame(&self, idx: u32) -> Option<Frame> {
        self.frames.get(idx as usize).copied()
    }

    pub fn frame_gfn(&self, idx: u32) -> Option<Gfn> {
        self.frame_gfns.get(idx as usize).copied().flatten()
    }

    pub fn set_frame_gfn(&mut self, idx: u32, gfn: Option<Gfn>) {
        if let Some(g) = self.frame_gfns.get_mut(idx as usize) {
            *g = gfn;
        }
    }

    /// Grows the table to `n` frames with zeroed pages from `alloc`
    /// (false if `n` is over the limit or memory ran out; frames added
    /// before that stay).
    pub fn grow(&mut self, n: u32, alloc: &mut dyn FnMut() -> Option<Frame>) -> bool {
        if n > self.max_frames {
            return false;
        }
        while self.nr_frames() < n {
            // A frame comes with the pages of its active entries; pages
            // taken before memory ran out wait in `spare` for next time.
            let per_frame = ACTIVE_PAGES_PER_FRAME as usize;
            while self.spare.len() < per_frame + 1 {
                let Some(p) = alloc() else { return false };
                self.spare.push(p);
            }
            let Some(f) = self.spare.pop() else { return false };
            self.active_pages.extend(self.spare.drain(..per_frame));
            self.frames.push(f);
            self.frame_gfns.push(None);
        }
        true
    }

    /// Every page the table took (its frames, then the pages of its
    /// active entries), for the owner to free once nothing refers to
    /// them.
    pub fn take_frames(&mut self) -> Vec<Frame> {
        self.frame_gfns.clear();
        let mut all = core::mem::take(&mut self.frames);
        all.append(&mut self.active_pages);
        all.append(&mut self.spare);
        self.map_slots = 0;
        self.free_head = 0;
        all.append(&mut self.map_pages);
        all
    }

    /// Entry `gref`'s pins.
    pub fn active(&self, gref: u32) -> Option<&Active> {
        if gref >= self.nr_entries() {
            return None;
        }
        let page = self.active_pages[(gref / ACTIVE_PER_PAGE) as usize];
        // SAFETY: the page is a zeroed 4 KiB page this table owns (from
        // `grow`), holding ACTIVE_PER_PAGE entries for which zero bytes
        // are valid; `&self` keeps it from being taken meanwhile.
        Some(unsafe { &*(page.va as *const Active).add((gref % ACTIVE_PER_PAGE) as usize) })
    }

    fn active_mut(&mut self, gref: u32) -> Option<&mut Active> {
        if gref >= self.nr_entries() {
            return None;
        }
        let page = self.active_pages[(gref / ACTIVE_PER_PAGE) as usize];
        // SAFETY: as in `active`; `&mut self` makes this the only
        // reference into the page.
        Some(unsafe { &mut *(page.va as *mut Active).add((gref % ACTIVE_PER_PAGE) as usize) })
    }

    /// The (flags, domid) word and the frame word of entry `gref`.
    fn words(&self, gref: u32) -> Option<(&AtomicU32, &AtomicU32)> {
        let f = self.frames.get((gref / ENTRIES_PER_FRAME_V1) as usize)?;
        let at = f.va + (gref % ENTRIES_PER_FRAME_V1) as usize * 8;
        // SAFETY: `va` is a 4 KiB page this table owns for its lifetime and
        // the entry lies inside it, 8-byte aligned; the guest changes it
        // concurrently, hence atomics.
        unsafe { Some((AtomicU32::from_ptr(at as *mut u32), AtomicU32::from_ptr((at + 4) as *mut u32))) }
    }

    /// Reads entry `gref` as the guest last wrote it.
    pub fn entry(&self, gref: u32) -> Option<GrantEntryV1> {
        let (head, frame) = self.words(gref)?;
        let h = head.load(Ordering::Acquire);
        Some(GrantEntryV1 { flags: h as u16, domid: (h >> 16) as u16, frame: frame.load(Ordering::Acquire) })
    }

    /// Writes entry `gref` (static grants at boot): frame first, flags last.
    pub fn write_entry(&self, gref: u32, e: GrantEntryV1) -> bool {
        let Some((head, frame)) = self.words(gref) else { return false };
        frame.store(e.frame, Ordering::Release);
        head.store(e.flags as u32 | (e.domid as u32) << 16, Ordering::Release);
        true
    }

    /// Pins entry `gref` for domain `by` (a map or a copy), setting
    /// GTF_reading, and GTF_writing unless `readonly`, in the shared entry
    /// (Xen's `_set_status_v1`). `sub_page_ok`: copies may use sub-page
    /// grants, mappings may not.
    pub fn pin(&mut self, gref: u32, by: u16, readonly: bool, sub_page_ok: bool) -> Result<Pinned, i16> {
        if gref >= self.nr_entries() {
            return Err(GNTST_BAD_GNTREF);
        }
        let act = *self.active(gref).ok_or(GNTST_BAD_GNTREF)?;
        if act.pinned() && act.domid != by {
            return Err(GNTST_GENERAL_ERROR);
        }
        // Writable pins on an entry only read so far need the flags
        // checked again; so does every first pin.
        if !act.pinned() || (!readonly && act.writers == 0) {
            self.set_status(gref, by, readonly, act.pinned(), sub_page_ok)?;
        }
        // A first pin reads the granted frame after setting the flags, as
        // Xen does.
        let first = !act.pinned();
        let gfn = if first { Gfn(self.entry(gref).map_or(0, |e| e.frame as u64)) } else { act.gfn };
        let a = self.active_mut(gref).ok_or(GNTST_BAD_GNTREF)?;
        if readonly {
            a.readers += 1;
        } else {
            a.writers += 1;
        }
        if first {
            a.domid = by;
            a.gfn = gfn;
            return Ok(Pinned::Translate(gfn));
        }
        Ok(Pinned::Frame(a.mfn))
    }

    /// Completes a first pin with the granted frame's host frame.
    pub fn set_frame(&mut self, gref: u32, mfn: Mfn) {
        if let Some(a) = self.active_mut(gref) {
            a.mfn = mfn;
        }
    }

    fn set_status(&self, gref: u32, by: u16, readonly: bool, pinned: bool, sub_page_ok: bool) -> Result<(), i16> {
        let (head, _) = self.words(gref).ok_or(GNTST_BAD_GNTREF)?;
        let mask = if sub_page_ok { GTF_TYPE_MASK } else { GTF_TYPE_MASK | GTF_SUB_PAGE };
        let mut cur = head.load(Ordering::Acquire);
        for _ in 0..=CMPXCHG_RETRIES {
            let (flags, domid) = (cur as u16, (cur >> 16) as u16);
            if !pinned && (flags & mask != GTF_PERMIT_ACCESS || domid != by) {
                return Err(GNTST_GENERAL_ERROR);
            }
            let mut new = flags | GTF_READING;
            if !readonly {
                if flags & GTF_READONLY != 0 {
                    return Err(GNTST_GENERAL_ERROR);
                }
                new |= GTF_WRITING;
            }
            match head.compare_exchange(cur, new as u32 | (domid as u32) << 16, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
        // The guest keeps changing the entry under us.
        Err(GNTST_GENERAL_ERROR)
    }

    /// Drops one pin; the shared entry loses GTF_writing with the last
    /// writer and GTF_reading with the last pin. Returns the host frame if
    /// that was the last pin (the caller drops its reference on it).
    pub fn unpin(&mut self, gref: u32, readonly: bool) -> Option<Mfn> {
        let a = self.active_mut(gref)?;
        if readonly {
            a.readers = a.readers.checked_sub(1)?;
        } else {
            a.writers = a.writers.checked_sub(1)?;
        }
        let (writers, pinned, mfn) = (a.writers, a.pinned(), a.mfn);
        let mut clear = 0u16;
        if writers == 0 {
            clear |= GTF_WRITING;
        }
        if !pinned {
            clear |= GTF_READING;
            *a = Active::default();
        }
        if let Some((head, _)) = self.words(gref) {
            head.fetch_and(!(clear as u32), Ordering::AcqRel);
        }
        (!pinned).then_some(mfn)
    }

    fn slot(&self, handle: u32) -> Option<&MapSlot> {
        if handle >= self.map_slots {
            return None;
        }
        let page = self.map_pages[(handle / MAPS_PER_PAGE) as usize];
        // SAFETY: a zeroed 4 KiB page this table owns (from `add_mapping`)
        // holding MAPS_PER_PAGE slots, for which zero bytes are valid;
        // `&self` keeps it from being taken meanwhile.
        Some(unsafe { &*(page.va as *const MapSlot).add((handle % MAPS_PER_PAGE) as usize) })
    }

    fn slot_mut(&mut self, handle: u32) -> Option<&mut MapSlot> {
        if handle >= self.map_slots {
            return None;
        }
        let page = self.map_pages[(handle / MAPS_PER_PAGE) as usize];
        // SAFETY: as in `slot`; `&mut self` makes this the only reference
        // into the page.
        Some(unsafe { &mut *(page.va as *mut MapSlot).add((handle % MAPS_PER_PAGE) as usize) })
    }

    /// Records a mapping and returns its handle: None when the maptrack
    /// is full (GNTST_no_space) or `alloc` has no page for it.
    pub fn add_mapping(&mut self, m: Mapping, alloc: &mut dyn FnMut() -> Option<Frame>) -> Option<u32> {
        let handle = if self.free_head != 0 {
            let h = self.free_head - 1;
            self.free_head = self.slot(h)?.next_free;
            h
        } else {
            if self.map_slots >= self.max_maps {
                return None;
            }
            if self.map_slots == self.map_pages.len() as u32 * MAPS_PER_PAGE {
                let page = self.spare.pop().or_else(alloc)?;
                self.map_pages.push(page);
            }
            self.map_slots += 1;
            self.map_slots - 1
        };
        *self.slot_mut(handle)? = MapSlot { used: 1, next_free: 0, m };
        Some(handle)
    }

    /// Completes a mapping recorded with [`Grants::add_mapping`].
    pub fn set_mapping(&mut self, handle: u32, m: Mapping) {
        if let Some(s) = self.slot_mut(handle).filter(|s| s.used != 0) {
            s.m = m;
        }
    }

    pub fn mapping(&self, handle: u32) -> Option<Mapping> {
        self.slot(handle).filter(|s| s.used != 0).map(|s| s.m)
    }

    /// Forgets a mapping (its handle is free again).
    pub fn remove_mapping(&mut self, handle: u32) -> Option<Mapping> {
        let next_free = self.free_head;
        let s = self.slot_mut(handle).filter(|s| s.used != 0)?;
        let m = s.m;
        *s = MapSlot { used: 0, next_free, m: s.m };
        self.free_head = handle + 1;
        Some(m)
    }

    /// Every mapping still held (for releasing them when the domain
    /// dies); the maptrack is empty afterwards, its pages kept for
    /// [`Grants::take_frames`].
    pub fn take_mappings(&mut self) -> Vec<Mapping> {
        let held = (0..self.map_slots).filter_map(|h| self.mapping(h)).collect();
        for page in &self.map_pages {
            // SAFETY: a 4 KiB page this table owns; zeroed, its slots are
            // unused again.
            unsafe { core::ptr::write_bytes(page.va as *mut u8, 0, 4096) };
        }
        self.map_slots = 0;
        self.free_head = 0;
        held
    }

    /// How many mappings are held.
    pub fn mappings(&self) -> usize {
        (0..self.map_slots).filter(|&h| self.mapping(h).is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pages(Vec<Box<[u64; 512]>>);

    impl Pages {
        fn alloc(&mut self) -> Option<Frame> {
            let mut b = Box::new([0u64; 512]);
            let va = b.as_mut_ptr() as usize;
            self.0.push(b);
            Some(Frame { mfn: Mfn(0x1000 + self.0.len() as u64), va })
        }
    }

    fn table(frames: u32) -> (Grants, Pages) {
        let mut p = Pages(Vec::new());
        let mut g = Grants::new(4, 8);
        assert!(g.grow(frames, &mut || p.alloc()));
        (g, p)
    }

    fn grant(g: &Grants, gref: u32, to: u16, frame: u32, flags: u16) {
        assert!(g.write_entry(gref, GrantEntryV1 { flags, domid: to, frame }));
    }

    #[test]
    fn tables_grow_to_their_limit() {
        let (mut g, mut p) = table(1);
        assert_eq!((g.nr_frames(), g.nr_entries()), (1, 512));
        assert!(g.grow(3, &mut || p.alloc()));
        assert_eq!(g.nr_entries(), 1536);
        assert!(!g.grow(5, &mut || p.alloc()), "max 4 frames");
        assert_eq!(g.nr_frames(), 3);
        assert!(!g.grow(4, &mut || None), "out of memory");
        // Three frames and the four pages of each one's active entries.
        assert_eq!(g.take_frames().len(), 3 * 5);
    }

    #[test]
    fn active_entries_live_in_pages_taken_with_their_frame() {
        let (mut g, mut p) = table(1);
        // Memory runs out after three pages: no frame is added, and the
        // pages taken are used by the next grow, not taken again.
        let mut left = 3;
        let mut scarce = || {
            left -= 1;
            if left >= 0 { p.alloc() } else { None }
        };
        assert!(!g.grow(2, &mut scarce));
        assert_eq!(g.nr_entries(), 512);
        let before = p.0.len();
        assert!(g.grow(2, &mut || p.alloc()));
        assert_eq!(p.0.len() - before, 2, "5 pages for the frame, 3 of them from before");
        // An entry in the second frame's last active page.
        grant(&g, 1023, 3, 0x55, GTF_PERMIT_ACCESS);
        assert_eq!(g.pin(1023, 3, false, false), Ok(Pinned::Translate(Gfn(0x55))));
        assert_eq!(g.active(1023).map(|a| (a.writers, a.domid)), Some((1, 3)));
        assert_eq!(g.active(1022).map(|a| a.pinned()), Some(false));
        assert!(g.active(1024).is_none());
        assert_eq!(g.take_frames().len(), 2 * 5);
    }

    #[test]
    fn pins_check_the_entry_and_set_reading_and_writing() {
        let (mut g, _p) = table(1);
        assert_eq!(g.pin(512, 2, false, false), Err(GNTST_BAD_GNTREF));
        assert_eq!(g.pin(5, 2, true, false), Err(GNTST_GENERAL_ERROR), "no grant there");
        grant(&g, 5, 3, 0x77, GTF_PERMIT_ACCESS);
        assert_eq!(g.pin(5, 2, true, false), Err(GNTST_GENERAL_ERROR), "granted to someone else");
        grant(&g, 5, 2, 0x77, GTF_ACCEPT_TRANSFER);
        assert_eq!(g.pin(5, 2, true, false), Err(GNTST_GENERAL_ERROR), "not an access grant");
        grant(&g, 5, 2, 0x77, GTF_PERMIT_ACCESS | GTF_READONLY);
        assert_eq!(g.pin(5, 2, false, false), Err(GNTST_GENERAL_ERROR), "read-only grant pinned writable");
        assert_eq!(g.entry(5).unwrap().flags, GTF_PERMIT_ACCESS | GTF_READONLY, "a refused pin changes nothing");
        assert_eq!(g.pin(5, 2, true, false), Ok(Pinned::Translate(Gfn(0x77))));
        g.set_frame(5, Mfn(0x9000));
        assert_eq!(g.entry(5).unwrap().flags, GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING);
        assert_eq!(g.pin(5, 2, true, false), Ok(Pinned::Frame(Mfn(0x9000))));
        assert_eq!(g.pin(5, 4, true, false), Err(GNTST_GENERAL_ERROR), "pinned by another domain");
        assert_eq!(g.unpin(5, true), None);
        assert_eq!(g.unpin(5, true), Some(Mfn(0x9000)), "the last pin returns the frame");
        assert_eq!(g.entry(5).unwrap().flags, GTF_PERMIT_ACCESS | GTF_READONLY);
        assert_eq!(g.unpin(5, true), None, "nothing left to unpin");
        // Sub-page grants can be copied from but not mapped.
        grant(&g, 6, 2, 1, GTF_PERMIT_ACCESS | GTF_SUB_PAGE);
        assert_eq!(g.pin(6, 2, true, false), Err(GNTST_GENERAL_ERROR));
        assert_eq!(g.pin(6, 2, true, true), Ok(Pinned::Translate(Gfn(1))));
    }

    #[test]
    fn writing_is_cleared_with_the_last_writer_reading_with_the_last_pin() {
        let (mut g, _p) = table(1);
        grant(&g, 1, 2, 0x10, GTF_PERMIT_ACCESS);
        assert_eq!(g.pin(1, 2, true, false), Ok(Pinned::Translate(Gfn(0x10))));
        g.set_frame(1, Mfn(0x500));
        assert_eq!(g.pin(1, 2, false, false), Ok(Pinned::Frame(Mfn(0x500))));
        assert_eq!(g.entry(1).unwrap().flags, GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING);
        assert_eq!(g.unpin(1, false), None);
        assert_eq!(g.entry(1).unwrap().flags, GTF_PERMIT_ACCESS | GTF_READING);
        assert_eq!(g.unpin(1, true), Some(Mfn(0x500)));
        assert_eq!(g.entry(1).unwrap().flags, GTF_PERMIT_ACCESS);
        // Once pinned, the guest changing the entry does not unpin it: the
        // granting guest sees GTF_reading and must wait.
        assert_eq!(g.pin(1, 2, true, false), Ok(Pinned::Translate(Gfn(0x10))));
        grant(&g, 1, 2, 0x10, GTF_INVALID | GTF_READING);
        assert_eq!(g.pin(1, 2, true, false), Ok(Pinned::Frame(Mfn(0))));
    }

    #[test]
    fn maptrack_handles_are_reused_and_bounded() {
        let (mut g, mut p) = table(1);
        let m = Mapping { granter: 1, granter_serial: 1, gref: 3, readonly: false, gfn: Gfn(0x2000), mfn: Mfn(0x55) };
        let handles: Vec<u32> = (0..8).map(|_| g.add_mapping(m, &mut || p.alloc()).unwrap()).collect();
        assert_eq!(handles, (0..8).collect::<Vec<_>>());
        assert_eq!(g.add_mapping(m, &mut || p.alloc()), None, "maptrack full");
        assert_eq!(g.remove_mapping(3), Some(m));
        assert_eq!(g.remove_mapping(3), None, "double unmap");
        assert_eq!(g.mapping(3), None);
        assert_eq!(g.remove_mapping(99), None);
        assert_eq!(g.add_mapping(m, &mut || None), Some(3), "a free handle needs no page");
        assert_eq!(g.mappings(), 8);
        assert_eq!(g.take_mappings().len(), 8);
        assert_eq!(g.mappings(), 0);
        // One frame, its four active pages, one maptrack page.
        assert_eq!(g.take_frames().len(), 6);
    }

    #[test]
    fn the_maptrack_takes_a_page_per_page_of_handles_and_reuses_the_latest_freed() {
        let mut p = Pages(Vec::new());
        let mut g = Grants::new(1, 1000);
        let m = |gref| Mapping { granter: 1, granter_serial: 1, gref, readonly: true, gfn: Gfn(7), mfn: Mfn(9) };
        let per_page = MAPS_PER_PAGE;
        for h in 0..per_page + 1 {
            assert_eq!(g.add_mapping(m(h), &mut || p.alloc()), Some(h));
        }
        assert_eq!(p.0.len(), 2, "a second page for the handle past the first page");
        for h in per_page + 1..2 * per_page {
            assert_eq!(g.add_mapping(m(h), &mut || None), Some(h));
        }
        assert_eq!(g.add_mapping(m(0), &mut || None), None, "no page for the next one");
        assert_eq!(g.mapping(per_page).map(|x| x.gref), Some(per_page));
        assert_eq!(g.remove_mapping(5).map(|x| x.gref), Some(5));
        assert_eq!(g.remove_mapping(per_page).map(|x| x.gref), Some(per_page));
        assert_eq!(g.add_mapping(m(77), &mut || None), Some(per_page));
        assert_eq!(g.add_mapping(m(78), &mut || None), Some(5));
        assert_eq!(g.mapping(5).map(|x| x.gref), Some(78));
        assert_eq!(g.mappings(), 2 * per_page as usize);
        assert_eq!(g.take_frames().len(), 2);
    }
}
