//! memory_op and grant_table_op, and the grant entries the guest writes.
//!
//! Everything the hypervisor reads that names a frame to change (extent
//! lists, physmap targets, grant map addresses, copy destinations) is
//! written here in full, in scratch, and reads running past it reach only
//! a guard page (a hole): no stale scratch bytes become frame numbers.

use crate::fz::Fz;
use crate::stats::*;
use crate::world::*;
use core::sync::atomic::{AtomicU16, AtomicU32, Ordering, fence};
use xen_abi::grant_table::{self as gt, CopyPtr, MapGrantRef, UnmapGrantRef};
use xen_abi::hypercall as nr;
use xen_abi::memory::{self as mem, AddToPhysmap, MemoryMap, MemoryReservation};
use xen_abi::{DOMID_SELF, Pod};

/// Where extent lists and grant op arrays go: the second half of scratch,
/// ending at the guard page; their structure goes in the first half.
const HALF: u64 = SCRATCH / 2;

impl Fz {
    /// Writes `items` so that they end exactly at the guard page (or, 1 in
    /// 4, start somewhere in the second half); returns the address and how
    /// many more the hypervisor may be told there are (only past the end
    /// into the guard, and only if the guard is a hole).
    fn put_list<T: Pod>(&mut self, items: &[T]) -> (u64, u64) {
        let size = core::mem::size_of::<T>() as u64;
        let len = size * items.len() as u64;
        let at_end = self.rng.chance(3, 4) || len > HALF;
        let off = if at_end { SCRATCH - len } else { HALF + self.rng.below((HALF - len) / size + 1) * size };
        for (i, t) in items.iter().enumerate() {
            self.put(off + i as u64 * size, *t);
        }
        // Entries past the list that a count may name: only as many as
        // the guard page after scratch holds, where every read faults.
        // Past it lies the next vCPU's scratch (or the image), whose bytes
        // read as frame numbers would name the image or stacks.
        let extra =
            if at_end && GUARDS.load(Ordering::Relaxed) != 0 { 1 + self.rng.edge64() % (PAGE / size) } else { 0 };
        (self.scratch + off, extra)
    }

    /// An argument structure in the first half of scratch (or a pointer
    /// that must be refused).
    fn front<T: Pod>(&mut self, t: T) -> u64 {
        if self.rng.chance(1, 16) {
            return self.bad_ptr();
        }
        let len = core::mem::size_of::<T>() as u64;
        let off = match self.rng.below(8) {
            0 => PAGE - self.rng.range(1, len - 1),
            1 => self.rng.below(HALF - len),
            _ => self.rng.below((HALF - len) / 8) * 8,
        };
        self.put(off, t)
    }

    pub fn memory_op(&mut self) {
        let f = F_MEMORY;
        let code = self.pick_code(f);
        match code {
            mem::XENMEM_INCREASE_RESERVATION | mem::XENMEM_DECREASE_RESERVATION | mem::XENMEM_POPULATE_PHYSMAP => {
                self.reservation(code)
            }
            mem::XENMEM_CURRENT_RESERVATION | mem::XENMEM_MAXIMUM_RESERVATION | mem::XENMEM_MAXIMUM_GPFN => {
                let d = self.domid();
                let p = self.arg(d);
                let cmd = if self.rng.chance(1, 8) { code | self.rng.edge64() << 6 } else { code };
                self.call(f, code, nr::MEMORY_OP, [cmd, p, 0, 0, 0]);
            }
            mem::XENMEM_MAXIMUM_RAM_PAGE => {
                let cmd = if self.rng.chance(1, 4) { code | self.rng.edge64() << 6 } else { code };
                let p = self.out_ptr(8);
                self.call(f, code, nr::MEMORY_OP, [cmd, p, 0, 0, 0]);
            }
            mem::XENMEM_MEMORY_MAP => {
                let m = MemoryMap { nr_entries: self.rng.count(8) as u32, _pad: 0, buffer: self.out_ptr(160) };
                let p = self.front(m);
                self.call(f, code, nr::MEMORY_OP, [code, p, 0, 0, 0]);
            }
            c if c >= ADD_TO_PHYSMAP_SPACE => self.add_to_physmap(),
            _ => {
                // Sub-operations Xen has and this hypervisor does not:
                // output room, or nothing.
                let p = self.out_ptr(256);
                let cmd = if self.rng.chance(1, 8) { code | self.rng.edge64() << 6 } else { code };
                let a3 = self.rng.edge64();
                self.call(f, code, nr::MEMORY_OP, [cmd, p, a3, 0, 0]);
            }
        }
    }

    fn reservation(&mut self, code: u64) {
        let order = match self.rng.below(8) {
            0..=3 => 0,
            4 => self.rng.range(1, 9) as u32,
            5 => 9,
            6 => self.rng.pick(&[10, 12, 13, 31, 32, 63, 64, 0xffff_ffff]),
            _ => self.rng.edge32(),
        };
        let n = self.rng.range(1, 16) as usize;
        let mut list = [0u64; 16];
        for g in list.iter_mut().take(n) {
            *g = self.gfn_mut(order);
        }
        let listed = !self.rng.chance(1, 16);
        let (start, extra) = if listed { self.put_list(&list[..n]) } else { (self.bad_ptr(), 1 << 20) };
        let nr_extents = match self.rng.below(8) {
            0 if extra > 0 => n as u64 + self.rng.below(extra) + 1,
            1 => self.rng.below(n as u64 + 1),
            _ => n as u64,
        };
        let mem_flags = match self.rng.below(8) {
            0 => self.rng.edge32(),
            1 => self.rng.pick(&[mem::XENMEMF_POPULATE_ON_DEMAND, 12, 13, 32, 52, 64, mem::XENMEMF_VNODE]),
            _ => 0,
        };
        let domid = if self.rng.chance(3, 4) { DOMID_SELF } else { self.domid() };
        let r =
            MemoryReservation { extent_start: start, nr_extents, extent_order: order, mem_flags, domid, _pad: [0; 3] };
        let p = self.front(r);
        // A continuation's start extent in the command's upper bits: in
        // the list or just past it (where reading goes on into the guard
        // page), or at or past nr_extents. A start between would have the
        // hypervisor read extents from beyond the guard page, where the
        // fuzzer's own frames could be named.
        let start_extent = match self.rng.below(16) {
            0 if listed => self.rng.below(n as u64 + 2),
            0 => self.rng.below(2),
            1 => self.rng.edge64() & (u64::MAX >> mem::MEMOP_EXTENT_SHIFT),
            _ => 0,
        };
        let safe_up_to = if listed { n as u64 + 1 } else { 1 };
        let start_extent =
            if start_extent > safe_up_to && start_extent < nr_extents { nr_extents } else { start_extent };
        let cmd = code | start_extent << mem::MEMOP_EXTENT_SHIFT;
        self.call(F_MEMORY, code, nr::MEMORY_OP, [cmd, p, 0, 0, 0]);
    }

    fn add_to_physmap(&mut self) {
        let mut space = 0;
        for _ in 0..100 {
            space = match self.rng.below(16) {
                0..=5 => mem::XENMAPSPACE_SHARED_INFO,
                6..=11 => mem::XENMAPSPACE_GRANT_TABLE,
                12 => self.rng.range(2, 5) as u32,
                13 => 6,
                _ => self.rng.edge32(),
            };
            let code = ADD_TO_PHYSMAP_SPACE + space.min(0xff) as u64;
            let name =
                FAMILIES[F_MEMORY].ops.iter().find(|o| o.0 == code).map_or("add_to_physmap(unknown space)", |o| o.1);
            if crate::ops_misc::allowed(F_MEMORY, name) {
                break;
            }
        }
        let idx = match space {
            mem::XENMAPSPACE_SHARED_INFO if self.rng.chance(3, 4) => 0,
            mem::XENMAPSPACE_GRANT_TABLE if self.rng.chance(3, 4) => self.grant_frame_idx(),
            mem::XENMAPSPACE_GRANT_TABLE if self.rng.chance(1, 2) => {
                mem::XENMAPIDX_GRANT_TABLE_STATUS | self.rng.below(4)
            }
            // gmfn spaces name a frame of the caller to move.
            mem::XENMAPSPACE_GMFN | mem::XENMAPSPACE_GMFN_RANGE => self.gfn_mut(0),
            _ => self.rng.edge64(),
        };
        // The table grows to `grant_frames=` at most (the low 32 bits are
        // the frame index).
        let idx = match space {
            mem::XENMAPSPACE_GRANT_TABLE if (lay().grant_frames as u64..64).contains(&(idx & 0xffff_ffff)) => 64,
            _ => idx,
        };
        let domid = if self.rng.chance(7, 8) { DOMID_SELF } else { self.domid() };
        let size = if self.rng.chance(7, 8) { 0 } else { self.rng.edge16() };
        let code = ADD_TO_PHYSMAP_SPACE + space.min(0xff) as u64;
        let code = if space > mem::XENMAPSPACE_DEV_MMIO { ADD_TO_PHYSMAP_SPACE + 0xff } else { code };
        let gpfn = self.gfn_mut(0);
        let x = AddToPhysmap { domid, size, space, idx, gpfn };
        if space == mem::XENMAPSPACE_GRANT_TABLE && idx < NG as u64 && (domid == DOMID_SELF || domid == lay().me) {
            // A frame the guest writes entries in: move it, then put it
            // back before anyone writes again.
            let _g = GRANTS.lock();
            let p = self.front(x);
            let rc = self.call(F_MEMORY, code, nr::MEMORY_OP, [mem::XENMEM_ADD_TO_PHYSMAP, p, 0, 0, 0]);
            if rc == 0 {
                self.restore_grant_frame(idx);
            }
            return;
        }
        let p = self.front(x);
        self.call(F_MEMORY, code, nr::MEMORY_OP, [mem::XENMEM_ADD_TO_PHYSMAP, p, 0, 0, 0]);
    }

    /// Maps grant frame `idx` back at its place (GRANTS held).
    fn restore_grant_frame(&mut self, idx: u64) {
        let back = AddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space: mem::XENMAPSPACE_GRANT_TABLE,
            idx,
            gpfn: lay().g_base + idx,
        };
        for _ in 0..4 {
            let p = self.put(0, back);
            let code = ADD_TO_PHYSMAP_SPACE + mem::XENMAPSPACE_GRANT_TABLE as u64;
            if self.call(F_MEMORY, code, nr::MEMORY_OP, [mem::XENMEM_ADD_TO_PHYSMAP, p, 0, 0, 0]) == 0 {
                return;
            }
        }
        test_guests::println!("fuzz: grant frame {idx} could not be put back; no more grant entries are written");
        GRANT_FRAMES_OK.store(false, Ordering::SeqCst);
    }

    // --- grant_table_op ---------------------------------------------------------

    pub fn grant_table_op(&mut self) {
        let f = F_GRANT;
        let code = self.pick_code(f);
        match code {
            gt::GNTTABOP_MAP_GRANT_REF => self.map_grants(),
            gt::GNTTABOP_UNMAP_GRANT_REF => self.unmap_grants(),
            gt::GNTTABOP_COPY => self.copy_grants(),
            gt::GNTTABOP_SETUP_TABLE => {
                let nr_frames = match self.rng.below(4) {
                    0 => self.rng.edge32(),
                    1 => lay().grant_frames,
                    _ => self.rng.below(5) as u32,
                };
                // Past `grant_frames=` only where Xen's limit refuses it.
                let nr_frames = if nr_frames > lay().grant_frames && nr_frames <= 64 { 65 } else { nr_frames };
                let s = gt::SetupTable {
                    dom: self.domid(),
                    _pad: 0,
                    nr_frames,
                    status: 0x55,
                    _pad2: [0; 3],
                    frame_list: self.out_ptr(8 * 64),
                };
                let p = self.front(s);
                let count = self.count_arg();
                self.call(f, code, nr::GRANT_TABLE_OP, [code, p, count, 0, 0]);
            }
            gt::GNTTABOP_QUERY_SIZE => {
                let q = gt::QuerySize { dom: self.domid(), ..Default::default() };
                let p = self.front(q);
                let count = self.count_arg();
                self.call(f, code, nr::GRANT_TABLE_OP, [code, p, count, 0, 0]);
            }
            gt::GNTTABOP_SET_VERSION => {
                let v = gt::SetVersion {
                    version: if self.rng.chance(3, 4) { self.rng.below(4) as u32 } else { self.rng.edge32() },
                };
                let p = self.front(v);
                let count = self.count_arg();
                self.call(f, code, nr::GRANT_TABLE_OP, [code, p, count, 0, 0]);
            }
            gt::GNTTABOP_GET_VERSION => {
                let g = gt::GetVersion { dom: self.domid(), ..Default::default() };
                let p = self.front(g);
                let count = self.count_arg();
                self.call(f, code, nr::GRANT_TABLE_OP, [code, p, count, 0, 0]);
            }
            _ => {
                let p = self.out_ptr(256);
                let count = self.rng.count(4);
                self.call(f, code, nr::GRANT_TABLE_OP, [code, p, count, 0, 0]);
            }
        }
    }

    /// A grant frame index for add_to_physmap: one the table may grow to
    /// (up to `grant_frames=`), or one past Xen's 64.
    fn grant_frame_idx(&mut self) -> u64 {
        match self.rng.below(16) {
            0 => self.rng.pick(&[64, 65, 0xffff, 1 << 31, u32::MAX as u64, u64::MAX]),
            _ => self.rng.below(lay().grant_frames as u64),
        }
    }

    /// The count of a single-structure grant operation (1, or not).
    fn count_arg(&mut self) -> u64 {
        if self.rng.chance(7, 8) { 1 } else { self.rng.edge64() }
    }

    /// A grant map's target address: a zone frame (the RAM there is given
    /// up), a hole, a special page, nonsense, and sometimes not page
    /// aligned.
    fn host_addr(&mut self) -> u64 {
        match self.rng.below(16) {
            0 => 0,
            // Not bad_ptr(): its guard pages are holes a grant could be
            // mapped into (a guest-physical address, not a virtual one).
            1 => self.rng.pick(&[1 << 52, u64::MAX & !0xfff, 0x8000_0000_0000_0000, (1 << 48) - 4096]),
            2 => (self.gfn_mut(0) << 12) | self.rng.below(PAGE),
            _ => self.gfn_mut(0) << 12,
        }
    }

    fn map_op(&mut self) -> MapGrantRef {
        let flags = match self.rng.below(16) {
            0..=7 => gt::GNTMAP_HOST_MAP,
            8..=11 => gt::GNTMAP_HOST_MAP | gt::GNTMAP_READONLY,
            12 => self.rng.below(32) as u32,
            _ => self.rng.edge32(),
        };
        let dom = match self.rng.below(8) {
            0..=3 => lay().peer,
            4 | 5 => DOMID_SELF,
            6 => lay().me,
            _ => self.domid(),
        };
        MapGrantRef {
            host_addr: self.host_addr(),
            flags,
            gref: self.gref(),
            dom,
            status: 0x55,
            handle: 0,
            dev_bus_addr: 0,
        }
    }

    fn map_grants(&mut self) {
        let n = if self.rng.chance(3, 4) { 1 } else { self.rng.range(2, 8) as usize };
        let mut ops = [MapGrantRef::default(); 8];
        for op in ops.iter_mut().take(n) {
            *op = self.map_op();
        }
        self.map_batch(&ops[..n]);
    }

    /// Maps `ops` in one call; remembers what was mapped.
    pub fn map_batch(&mut self, ops: &[MapGrantRef]) {
        let code = gt::GNTTABOP_MAP_GRANT_REF;
        let (p, extra) = self.put_list(ops);
        let count = if extra > 0 && self.rng.chance(1, 8) { ops.len() as u64 + extra } else { ops.len() as u64 };
        let count = if self.rng.chance(1, 32) { self.rng.edge64() & 0xffff_ffff } else { count };
        let (p, count) = if self.rng.chance(1, 32) { (self.bad_ptr(), count) } else { (p, count) };
        self.call(F_GRANT, code, nr::GRANT_TABLE_OP, [code, p, count, 0, 0]);
        if p < self.scratch || p >= self.scratch + SCRATCH {
            return;
        }
        let size = core::mem::size_of::<MapGrantRef>() as u64;
        for (i, op) in ops.iter().enumerate() {
            let done: MapGrantRef = self.get(p - self.scratch + i as u64 * size);
            self.status(F_GRANT, code, done.status);
            if done.status == gt::GNTST_OKAY {
                self.maps.push((done.handle, op.host_addr));
            }
        }
    }

    fn unmap_grants(&mut self) {
        let n = if self.rng.chance(3, 4) { 1 } else { self.rng.range(2, 8) as usize };
        let mut ops = [UnmapGrantRef::default(); 8];
        for op in ops.iter_mut().take(n) {
            let (handle, host_addr) = match self.rng.below(8) {
                0..=4 => match self.maps.take(&mut self.rng) {
                    Some(m) => m,
                    None => (self.rng.below(8) as u32, self.host_addr()),
                },
                // A mapping's handle at another address, or again.
                5 => match self.maps.pick(&mut self.rng) {
                    Some((h, _)) => (h, self.host_addr()),
                    None => (0, 0),
                },
                6 => (self.rng.below(64) as u32, self.host_addr()),
                _ => (self.rng.edge32(), self.host_addr()),
            };
            let dev_bus_addr = if self.rng.chance(1, 8) { self.rng.edge64() } else { 0 };
            *op = UnmapGrantRef { host_addr, dev_bus_addr, handle, status: 0x55, _pad: 0 };
        }
        let code = gt::GNTTABOP_UNMAP_GRANT_REF;
        let (p, extra) = self.put_list(&ops[..n]);
        let count = if extra > 0 && self.rng.chance(1, 8) { n as u64 + extra } else { n as u64 };
        self.call(F_GRANT, code, nr::GRANT_TABLE_OP, [code, p, count, 0, 0]);
        let size = core::mem::size_of::<UnmapGrantRef>() as u64;
        for i in 0..n {
            let done: UnmapGrantRef = self.get(p - self.scratch + i as u64 * size);
            self.status(F_GRANT, code, done.status);
        }
    }

    /// One side of a copy: a grant reference, or a frame of mine (a zone
    /// frame where the copy writes; any frame where it reads).
    fn copy_side(&mut self, gref: bool, dest: bool) -> CopyPtr {
        let offset = match self.rng.below(4) {
            0 => self.rng.pick(&[0, 1, 4095, 4096, 0xffff]),
            _ => self.rng.below(PAGE) as u16,
        };
        if gref {
            let domid = match self.rng.below(4) {
                0 | 1 => lay().peer,
                2 => DOMID_SELF,
                _ => self.domid(),
            };
            CopyPtr { u: self.gref() as u64, domid, offset, _pad: 0 }
        } else {
            let domid = if self.rng.chance(7, 8) { DOMID_SELF } else { self.domid() };
            let gfn = if dest { self.gfn_mut(0) } else { self.gfn_any() };
            CopyPtr { u: gfn, domid, offset, _pad: 0 }
        }
    }

    fn copy_grants(&mut self) {
        let n = if self.rng.chance(3, 4) { 1 } else { self.rng.range(2, 8) as usize };
        let mut ops = [gt::Copy::default(); 8];
        for op in ops.iter_mut().take(n) {
            let flags = match self.rng.below(8) {
                0..=5 => self.rng.below(4) as u16,
                _ => self.rng.edge16(),
            };
            let len = match self.rng.below(4) {
                0 => self.rng.pick(&[0, 1, 4095, 4096, 4097, 0xffff]),
                _ => self.rng.below(PAGE + 1) as u16,
            };
            let source = self.copy_side(flags & gt::GNTCOPY_SOURCE_GREF != 0, false);
            let dest = self.copy_side(flags & gt::GNTCOPY_DEST_GREF != 0, true);
            *op = gt::Copy { source, dest, len, flags, status: 0x55, _pad: 0 };
        }
        let code = gt::GNTTABOP_COPY;
        let (p, extra) = self.put_list(&ops[..n]);
        let count = if extra > 0 && self.rng.chance(1, 8) { n as u64 + extra } else { n as u64 };
        self.call(F_GRANT, code, nr::GRANT_TABLE_OP, [code, p, count, 0, 0]);
        let size = core::mem::size_of::<gt::Copy>() as u64;
        for i in 0..n {
            let done: gt::Copy = self.get(p - self.scratch + i as u64 * size);
            self.status(F_GRANT, code, done.status);
        }
    }
}

// --- grant entries ------------------------------------------------------------------

/// The conventions both fuzzer domains follow, so each knows which of the
/// other's references may be granted to it: 8..=11 are granted to itself
/// (the racing phase maps them), 12..=63 to the peer, 64..=127 to itself,
/// the rest of the guest's frames to anyone.
pub fn entry_domid(fz: &mut Fz, gref: u32) -> u16 {
    let l = lay();
    match gref {
        8..=11 => l.me,
        64..=127 => {
            if fz.rng.chance(1, 2) {
                l.me
            } else {
                DOMID_SELF
            }
        }
        12..=63 => l.peer,
        _ => fz.domid(),
    }
}

/// Whether entry `gref` may name frames of the image. Such entries carry
/// GTF_READONLY in every value the guest stores, ended ones included:
/// the hypervisor keeps the frame it pinned first for as long as the
/// entry stays pinned and checks only the flags for a later writable pin
/// (as Xen does), so an entry that once named a stack page and was
/// rewritten writable would have had that stack page written.
fn may_name_image(gref: u32) -> bool {
    gref % 4 == 3
}

/// What an ended entry holds (no GTF_permit_access).
fn ended(gref: u32) -> u16 {
    if may_name_image(gref) { gt::GTF_READONLY } else { 0 }
}

/// Writes grant entry `gref` (in the guest's own frames): a zone frame,
/// writable or not, or (read-only, in the entries that may) any frame of
/// the guest, with flags that are mostly valid. GRANTS must be held and
/// the frames in place.
fn write_entry(fz: &mut Fz, gref: u32, rude: bool) {
    let base = lay().g_base * PAGE + gref as u64 * 8;
    // SAFETY: the entry lies in one of the NG grant frames mapped at
    // g_base (GRANTS held and GRANT_FRAMES_OK checked by the caller); the
    // hypervisor changes the flags concurrently, hence atomics.
    let (flags, domid, frame) = unsafe {
        (
            AtomicU16::from_ptr(base as *mut u16),
            AtomicU16::from_ptr((base + 2) as *mut u16),
            AtomicU32::from_ptr((base + 4) as *mut u32),
        )
    };
    // End the old grant first unless it is in use (Linux's order), or not.
    let cur = flags.load(Ordering::SeqCst);
    if !rude && cur & (gt::GTF_READING | gt::GTF_WRITING) != 0 {
        return;
    }
    if !rude && flags.compare_exchange(cur, ended(gref), Ordering::SeqCst, Ordering::SeqCst).is_err() {
        return;
    }
    // A rude rewrite may race the hypervisor pinning the old entry.
    let zone = !may_name_image(gref) || fz.rng.chance(3, 4);
    let gfn = if zone { fz.zone_gfn(0) } else { fz.gfn_any() } as u32;
    let mut f = match fz.rng.below(16) {
        0..=9 => gt::GTF_PERMIT_ACCESS,
        10..=12 => gt::GTF_PERMIT_ACCESS | gt::GTF_READONLY,
        13 => fz.rng.pick(&[gt::GTF_ACCEPT_TRANSFER, gt::GTF_TRANSITIVE, gt::GTF_PERMIT_ACCESS | gt::GTF_SUB_PAGE]),
        14 => gt::GTF_PERMIT_ACCESS | gt::GTF_READING | gt::GTF_WRITING,
        _ => fz.rng.edge16(),
    };
    if may_name_image(gref) {
        f |= gt::GTF_READONLY;
    }
    let d = entry_domid(fz, gref);
    domid.store(d, Ordering::Relaxed);
    frame.store(gfn, Ordering::Relaxed);
    fence(Ordering::Release);
    flags.store(f, Ordering::SeqCst);
}

/// Ends access through `gref` if it is not in use.
fn end_entry(gref: u32) {
    let at = lay().g_base * PAGE + gref as u64 * 8;
    // SAFETY: as in write_entry.
    let flags = unsafe { AtomicU16::from_ptr(at as *mut u16) };
    let cur = flags.load(Ordering::SeqCst);
    if cur & (gt::GTF_READING | gt::GTF_WRITING) == 0 {
        let _ = flags.compare_exchange(cur, ended(gref), Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// A guest-side grant step (not a hypercall): write, end, or rudely
/// rewrite an entry.
pub fn grant_entry_step(fz: &mut Fz, gref: Option<u32>) {
    let _g = GRANTS.lock();
    if !GRANT_FRAMES_OK.load(Ordering::SeqCst) {
        return;
    }
    let gref = gref.unwrap_or_else(|| match fz.rng.below(4) {
        0..=2 => fz.rng.range(8, 127) as u32,
        _ => fz.rng.below(NG as u64 * 512) as u32,
    });
    match fz.rng.below(8) {
        0 => end_entry(gref),
        1 => write_entry(fz, gref, true),
        _ => write_entry(fz, gref, false),
    }
}

/// Fills every conventional entry once (at start).
pub fn initial_grants(fz: &mut Fz) {
    let _g = GRANTS.lock();
    for gref in 8..128 {
        write_entry(fz, gref, false);
    }
}
