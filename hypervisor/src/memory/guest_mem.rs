//! Reaching guest memory: the only way the hypervisor reads or writes it.
//!
//! A guest address is never trusted. Guest-physical accesses go page by
//! page through the domain's p2m ([`GuestPhysical`]), which refuses frames
//! the domain does not own (and writes to frames it may only read).
//! Guest-virtual addresses (hypercall arguments are guest-virtual, as in
//! Xen) are first translated by walking the guest's own page tables, with
//! the checks the CPU would make, and with the accessed/dirty bits set as
//! the CPU would set them.

use crate::mm::addr::{Gfn, Gpa, Gva};
use core::fmt;
use core::ptr::NonNull;
use xen_abi::Pod;

pub const PAGE: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemFault {
    /// No guest memory the access may use at this guest-physical address.
    Unmapped {
        gpa: Gpa,
    },
    /// The guest-physical page may only be read.
    ReadOnly {
        gpa: Gpa,
    },
    /// The guest's page tables do not allow the access: what the CPU would
    /// report as a page fault with this error code.
    PageFault {
        gva: Gva,
        error_code: u32,
    },
    NonCanonical {
        gva: Gva,
    },
    /// A guest paging mode the walker does not handle.
    UnsupportedPaging,
}

impl fmt::Display for MemFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MemFault::Unmapped { gpa } => write!(f, "guest-physical {gpa:#x} is not the domain's memory"),
            MemFault::ReadOnly { gpa } => write!(f, "guest-physical {gpa:#x} is read-only"),
            MemFault::PageFault { gva, error_code } => {
                write!(f, "guest page tables refuse {gva:#x} (page-fault code {error_code:#x})")
            }
            MemFault::NonCanonical { gva } => write!(f, "{gva:#x} is not canonical"),
            MemFault::UnsupportedPaging => f.write_str("unsupported guest paging mode"),
        }
    }
}

/// A domain's guest-physical memory as the p2m allows it to be used.
pub trait GuestPhysical {
    /// The host address of the start of guest frame `gfn`, if the domain may
    /// read it (and write it, when `write`).
    fn frame(&self, gfn: Gfn, write: bool) -> Result<NonNull<u8>, MemFault>;
}

/// Copies `buf.len()` bytes from guest-physical `gpa`.
pub fn read_phys(g: &impl GuestPhysical, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemFault> {
    let mut done = 0usize;
    while done < buf.len() {
        let a = Gpa(gpa.0.checked_add(done as u64).ok_or(MemFault::Unmapped { gpa })?);
        let off = a.page_offset() as usize;
        let n = (PAGE as usize - off).min(buf.len() - done);
        let p = g.frame(a.gfn(), false)?;
        // SAFETY: `frame` returned a mapped, domain-owned 4 KiB page;
        // off + n <= 4096.
        unsafe { core::ptr::copy_nonoverlapping(p.as_ptr().add(off), buf[done..].as_mut_ptr(), n) };
        done += n;
    }
    Ok(())
}

/// Copies `buf` to guest-physical `gpa`. Nothing is written unless every
/// page is writable.
pub fn write_phys(g: &impl GuestPhysical, gpa: Gpa, buf: &[u8]) -> Result<(), MemFault> {
    let end = gpa.0.checked_add(buf.len() as u64).ok_or(MemFault::Unmapped { gpa })?;
    let mut a = gpa.0 & !(PAGE - 1);
    while a < end {
        g.frame(Gpa(a).gfn(), true)?;
        a += PAGE;
    }
    let mut done = 0usize;
    while done < buf.len() {
        let a = Gpa(gpa.0 + done as u64);
        let off = a.page_offset() as usize;
        let n = (PAGE as usize - off).min(buf.len() - done);
        let p = g.frame(a.gfn(), true)?;
        // SAFETY: as in read_phys, for writing.
        unsafe { core::ptr::copy_nonoverlapping(buf[done..].as_ptr(), p.as_ptr().add(off), n) };
        done += n;
    }
    Ok(())
}

pub fn read_phys_pod<T: Pod>(g: &impl GuestPhysical, gpa: Gpa) -> Result<T, MemFault> {
    let mut v = T::zeroed();
    read_phys(g, gpa, v.as_bytes_mut())?;
    Ok(v)
}

pub fn zero_phys(g: &impl GuestPhysical, gpa: Gpa, len: u64) -> Result<(), MemFault> {
    let zeros = [0u8; 512];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(512) as usize;
        write_phys(g, Gpa(gpa.0 + done), &zeros[..n])?;
        done += n as u64;
    }
    Ok(())
}

/// The guest's paging controls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Paging {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

const CR0_PG: u64 = 1 << 31;
const CR0_WP: u64 = 1 << 16;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;

const P: u64 = 1;
const RW: u64 = 1 << 1;
const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Paging off: linear = physical (32-bit).
    Off,
    /// 32-bit, two levels, 4 KiB or 4 MiB pages.
    Legacy,
    /// 32-bit PAE, three levels.
    Pae,
    /// Long mode, four levels.
    Long4,
    /// Long mode, five levels.
    Long5,
}

impl Paging {
    pub fn mode(&self) -> Mode {
        if self.cr0 & CR0_PG == 0 {
            Mode::Off
        } else if self.efer & EFER_LMA != 0 {
            if self.cr4 & CR4_LA57 != 0 { Mode::Long5 } else { Mode::Long4 }
        } else if self.cr4 & CR4_PAE != 0 {
            Mode::Pae
        } else {
            Mode::Legacy
        }
    }
}

/// What an access is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    pub write: bool,
    pub fetch: bool,
}

impl Access {
    pub const READ: Access = Access { write: false, fetch: false };
    pub const WRITE: Access = Access { write: true, fetch: false };
    pub const FETCH: Access = Access { write: false, fetch: true };
}

/// A page-table entry in guest memory. The guest's other vCPUs may change
/// it while the hypervisor walks, so it is read with one load and updated
/// only by compare-and-exchange, as the CPU's own walker does: a plain
/// read-modify-write could put back an entry the guest had just changed.
fn entry_at(g: &impl GuestPhysical, gpa: Gpa, wide: bool, write: bool) -> Result<*mut u8, MemFault> {
    let size = if wide { 8 } else { 4 };
    // Entries are naturally aligned (a table is page-aligned).
    if !gpa.0.is_multiple_of(size) {
        return Err(MemFault::Unmapped { gpa });
    }
    let p = g.frame(gpa.gfn(), write)?;
    // SAFETY: `frame` returned a mapped 4 KiB page; the offset is inside it.
    Ok(unsafe { p.as_ptr().add(gpa.page_offset() as usize) })
}

fn read_entry(g: &impl GuestPhysical, gpa: Gpa, wide: bool) -> Result<u64, MemFault> {
    use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    let p = entry_at(g, gpa, wide, false)?;
    // SAFETY: an aligned entry inside a mapped guest page (entry_at); the
    // guest may change it concurrently, which atomics allow.
    Ok(unsafe {
        if wide {
            AtomicU64::from_ptr(p as *mut u64).load(Ordering::Acquire)
        } else {
            AtomicU32::from_ptr(p as *mut u32).load(Ordering::Acquire) as u64
        }
    })
}

/// Sets the entry to `new` if it still holds `old`; false if the guest
/// changed it meanwhile.
fn update_entry(g: &impl GuestPhysical, gpa: Gpa, wide: bool, old: u64, new: u64) -> Result<bool, MemFault> {
    use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    let p = entry_at(g, gpa, wide, true)?;
    // SAFETY: as in read_entry, and the page is writable (entry_at).
    Ok(unsafe {
        if wide {
            AtomicU64::from_ptr(p as *mut u64).compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire).is_ok()
        } else {
            AtomicU32::from_ptr(p as *mut u32)
                .compare_exchange(old as u32, new as u32, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        }
    })
}

/// How often a walk starts again because the guest changed an entry
/// under it before giving up on setting accessed/dirty bits.
const WALK_RETRIES: u32 = 8;

/// Translates guest-virtual (linear) `gva` to guest-physical for `access`
/// by a supervisor-mode access, as the guest's CPU would.
pub fn translate(g: &impl GuestPhysical, p: &Paging, gva: Gva, access: Access) -> Result<Gpa, MemFault> {
    for attempt in 0..=WALK_RETRIES {
        match walk(g, p, gva, access, attempt < WALK_RETRIES) {
            Walk::Done(r) => return r,
            Walk::Changed => continue,
        }
    }
    Err(MemFault::PageFault { gva, error_code: 0 })
}

/// Like [`translate`], but changes nothing in the guest's tables (for
/// reports about a guest, not for accesses on its behalf).
pub fn probe(g: &impl GuestPhysical, p: &Paging, gva: Gva, access: Access) -> Result<Gpa, MemFault> {
    match walk(g, p, gva, access, false) {
        Walk::Done(r) => r,
        Walk::Changed => Err(MemFault::PageFault { gva, error_code: 0 }),
    }
}

enum Walk {
    Done(Result<Gpa, MemFault>),
    /// The guest changed an entry the walk was about to mark accessed.
    Changed,
}

fn walk(g: &impl GuestPhysical, p: &Paging, gva: Gva, access: Access, set_bits: bool) -> Walk {
    match walk_once(g, p, gva, access, set_bits) {
        Ok(Some(gpa)) => Walk::Done(Ok(gpa)),
        Ok(None) => Walk::Changed,
        Err(e) => Walk::Done(Err(e)),
    }
}

/// One walk; Ok(None) when an entry changed under it (walk again).
fn walk_once(
    g: &impl GuestPhysical,
    p: &Paging,
    gva: Gva,
    access: Access,
    set_bits: bool,
) -> Result<Option<Gpa>, MemFault> {
    let gva = gva.0;
    let mode = p.mode();
    let nxe = p.efer & EFER_NXE != 0;
    let wp = p.cr0 & CR0_WP != 0;
    let fault = |present: bool| {
        let mut code = if present { 1 } else { 0 };
        if access.write {
            code |= 2;
        }
        if access.fetch && nxe {
            code |= 16;
        }
        MemFault::PageFault { gva: Gva(gva), error_code: code }
    };
    let (levels, wide, top_shift) = match mode {
        Mode::Off => return Ok(Some(Gpa(gva & 0xffff_ffff))),
        Mode::Legacy => (2, false, 22),
        Mode::Pae => (3, true, 30),
        Mode::Long4 => (4, true, 39),
        Mode::Long5 => (5, true, 48),
    };
    let gva = match mode {
        Mode::Legacy | Mode::Pae => gva & 0xffff_ffff,
        Mode::Long4 => {
            let top = gva >> 47;
            if top != 0 && top != 0x1ffff {
                return Err(MemFault::NonCanonical { gva: Gva(gva) });
            }
            gva
        }
        _ => {
            let top = gva >> 56;
            if top != 0 && top != 0xff {
                return Err(MemFault::NonCanonical { gva: Gva(gva) });
            }
            gva
        }
    };
    let addr_mask: u64 = if wide { 0x000f_ffff_ffff_f000 } else { 0xffff_f000 };
    let mut table = if mode == Mode::Pae { p.cr3 & 0xffff_ffe0 } else { p.cr3 & addr_mask };
    let mut writable = true;
    let mut shift = top_shift;
    for level in (1..=levels).rev() {
        let (idx_bits, entry_size) = if wide { (9, 8) } else { (10, 4) };
        let idx =
            if mode == Mode::Pae && level == 3 { (gva >> 30) & 3 } else { (gva >> shift) & ((1 << idx_bits) - 1) };
        let slot = Gpa(table + idx * entry_size);
        let mut e = read_entry(g, slot, wide)?;
        if e & P == 0 {
            return Err(fault(false));
        }
        // PAE PDPTEs have no RW/NX/A bits: they only point down.
        let pae_top = mode == Mode::Pae && level == 3;
        if !pae_top {
            writable &= e & RW != 0;
            if access.fetch && nxe && e & NX != 0 {
                return Err(fault(true));
            }
        }
        let large = match level {
            2 => e & PS != 0 && (wide || p.cr4 & CR4_PSE != 0),
            3 => e & PS != 0 && wide && !pae_top,
            _ => false,
        };
        let leaf = level == 1 || large;
        if leaf && access.write && !writable && wp {
            return Err(fault(true));
        }
        // Set the accessed bit (and the dirty bit on a written leaf) the way
        // the CPU does: atomically, and walk again if the guest changed the
        // entry meanwhile.
        if !pae_top && set_bits {
            let mut want = e | ACCESSED;
            if leaf && access.write {
                want |= DIRTY;
            }
            if want != e {
                if !update_entry(g, slot, wide, e, want)? {
                    return Ok(None);
                }
                e = want;
            }
        }
        if leaf {
            let page_size: u64 = 1 << shift;
            let base = if !wide && large {
                // 4 MiB page: bits 31:22 and, with PSE-36, bits 20:13 as 39:32.
                (e & 0xffc0_0000) | ((e >> 13) & 0xff) << 32
            } else {
                e & addr_mask & !(page_size - 1)
            };
            return Ok(Some(Gpa(base | (gva & (page_size - 1)))));
        }
        table = e & addr_mask;
        shift -= if wide { 9 } else { 10 };
    }
    Err(fault(false))
}

/// Copies from guest-virtual memory, page by page.
pub fn read_virt(g: &impl GuestPhysical, p: &Paging, gva: Gva, buf: &mut [u8]) -> Result<(), MemFault> {
    let mut done = 0usize;
    while done < buf.len() {
        let a = Gva(gva.0.wrapping_add(done as u64));
        let n = ((PAGE - a.page_offset()) as usize).min(buf.len() - done);
        let gpa = translate(g, p, a, Access::READ)?;
        read_phys(g, gpa, &mut buf[done..done + n])?;
        done += n;
    }
    Ok(())
}

/// Copies to guest-virtual memory. Every page is translated and checked
/// before the first byte is written.
pub fn write_virt(g: &impl GuestPhysical, p: &Paging, gva: Gva, buf: &[u8]) -> Result<(), MemFault> {
    // The first pages' translations are kept from the checking pass for
    // the writing pass (hypercall results are a page or two).
    let mut kept = [Gpa(0); 4];
    for pass in 0..2 {
        let mut done = 0usize;
        let mut page = 0;
        while done < buf.len() {
            let a = Gva(gva.0.wrapping_add(done as u64));
            let n = ((PAGE - a.page_offset()) as usize).min(buf.len() - done);
            let gpa = match kept.get(page) {
                Some(&k) if pass == 1 => k,
                _ => translate(g, p, a, Access::WRITE)?,
            };
            if pass == 0 {
                g.frame(gpa.gfn(), true)?;
                if let Some(k) = kept.get_mut(page) {
                    *k = gpa;
                }
            } else {
                write_phys(g, gpa, &buf[done..done + n])?;
            }
            done += n;
            page += 1;
        }
    }
    Ok(())
}

pub fn read_virt_pod<T: Pod>(g: &impl GuestPhysical, p: &Paging, gva: Gva) -> Result<T, MemFault> {
    let mut v = T::zeroed();
    read_virt(g, p, gva, v.as_bytes_mut())?;
    Ok(v)
}

pub fn write_virt_pod<T: Pod>(g: &impl GuestPhysical, p: &Paging, gva: Gva, v: &T) -> Result<(), MemFault> {
    write_virt(g, p, gva, v.as_bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::arch::x86_64::page_table::{PageSize, PageTable, PteFlags, TableMemory};
    use std::cell::RefCell;
    use std::collections::{BTreeMap, BTreeSet};

    /// Guest memory for tests: frames by gfn, some of them read-only.
    #[derive(Default)]
    pub struct FakeGuest {
        pub frames: RefCell<BTreeMap<u64, Box<[u64; 512]>>>,
        pub read_only: BTreeSet<u64>,
        pub next_table_gfn: u64,
    }

    impl FakeGuest {
        pub fn with_ram(gfns: std::ops::Range<u64>) -> FakeGuest {
            let g = FakeGuest { next_table_gfn: 0x800, ..Default::default() };
            for gfn in gfns {
                g.frames.borrow_mut().insert(gfn, Box::new([0; 512]));
            }
            g
        }
    }

    impl GuestPhysical for FakeGuest {
        fn frame(&self, gfn: Gfn, write: bool) -> Result<NonNull<u8>, MemFault> {
            if write && self.read_only.contains(&gfn.0) {
                return Err(MemFault::ReadOnly { gpa: gfn.gpa() });
            }
            let mut f = self.frames.borrow_mut();
            let page = f.get_mut(&gfn.0).ok_or(MemFault::Unmapped { gpa: gfn.gpa() })?;
            Ok(NonNull::new(page.as_mut_ptr().cast::<u8>()).unwrap())
        }
    }

    /// Lets the hypervisor's page-table builder write guest page tables
    /// into fake guest memory (same format).
    impl TableMemory for FakeGuest {
        fn alloc_table(&mut self) -> Option<u64> {
            let gfn = self.next_table_gfn;
            self.next_table_gfn += 1;
            self.frames.borrow_mut().insert(gfn, Box::new([0; 512]));
            Some(gfn * PAGE)
        }
        fn table(&mut self, phys: u64) -> &mut [u64; 512] {
            self.frames.get_mut().get_mut(&(phys / PAGE)).unwrap()
        }
    }

    fn long_mode(cr3: u64) -> Paging {
        Paging { cr0: CR0_PG | CR0_WP | 1, cr3, cr4: CR4_PAE, efer: EFER_LMA | (1 << 8) | EFER_NXE }
    }

    /// A guest with 4 MiB of RAM and 4-level tables holding `maps`
    /// (virtual, physical, length, flags, page size); returns it and CR3.
    fn guest_with_tables(maps: &[(u64, u64, u64, PteFlags, PageSize)]) -> (FakeGuest, u64) {
        let mut g = FakeGuest::with_ram(0..0x400);
        let mut pt = PageTable::new(&mut g, PteFlags::WRITABLE, PteFlags::all()).unwrap();
        for &(va, pa, len, flags, size) in maps {
            pt.map(va, pa, len, flags, size).unwrap();
        }
        let root = pt.root();
        (g, root)
    }

    #[test]
    fn physical_copies_cross_pages_and_refuse_foreign_frames() {
        let g = FakeGuest::with_ram(0..4);
        write_phys(&g, Gpa(4090), b"hello world").unwrap();
        let mut b = [0u8; 11];
        read_phys(&g, Gpa(4090), &mut b).unwrap();
        assert_eq!(&b, b"hello world");
        assert_eq!(read_phys(&g, Gpa(4 * 4096 - 2), &mut b), Err(MemFault::Unmapped { gpa: Gpa(4 * 4096) }));
        assert!(matches!(read_phys(&g, Gpa(u64::MAX - 3), &mut b), Err(MemFault::Unmapped { .. })));
    }

    #[test]
    fn a_write_that_would_fault_halfway_writes_nothing() {
        let mut g = FakeGuest::with_ram(0..2);
        g.read_only.insert(1);
        assert_eq!(write_phys(&g, Gpa(4090), b"0123456789"), Err(MemFault::ReadOnly { gpa: Gpa(4096) }));
        let mut b = [1u8; 6];
        read_phys(&g, Gpa(4090), &mut b).unwrap();
        assert_eq!(b, [0; 6], "the first page was left alone");
    }

    #[test]
    fn paging_off_is_identity_truncated_to_32_bits() {
        let g = FakeGuest::with_ram(0..1);
        let p = Paging::default();
        assert_eq!(translate(&g, &p, Gva(0x1_0000_1234), Access::READ), Ok(Gpa(0x1234)));
    }

    #[test]
    fn four_level_walk_with_large_pages_permissions_and_ad_bits() {
        let (mut g, root) = guest_with_tables(&[
            (0xffff_8000_0000_0000, 0, 2 << 20, PteFlags::WRITABLE, PageSize::Size2M),
            (0x40_0000, 0x3000, 4096, PteFlags::empty(), PageSize::Size4K), // read-only
            (0x50_0000, 0x4000, 4096, PteFlags::WRITABLE | PteFlags::NO_EXECUTE, PageSize::Size4K),
        ]);
        let p = long_mode(root);
        assert_eq!(translate(&g, &p, Gva(0xffff_8000_0012_3456), Access::READ), Ok(Gpa(0x12_3456)));
        assert_eq!(translate(&g, &p, Gva(0x40_0123), Access::READ), Ok(Gpa(0x3123)));
        assert_eq!(
            translate(&g, &p, Gva(0x40_0123), Access::WRITE),
            Err(MemFault::PageFault { gva: Gva(0x40_0123), error_code: 3 })
        );
        // With CR0.WP clear, supervisor writes ignore read-only pages.
        let mut nowp = p;
        nowp.cr0 &= !CR0_WP;
        assert_eq!(translate(&g, &nowp, Gva(0x40_0123), Access::WRITE), Ok(Gpa(0x3123)));
        assert_eq!(
            translate(&g, &p, Gva(0x50_0000), Access::FETCH),
            Err(MemFault::PageFault { gva: Gva(0x50_0000), error_code: 0x11 })
        );
        assert_eq!(
            translate(&g, &p, Gva(0x60_0000), Access::READ),
            Err(MemFault::PageFault { gva: Gva(0x60_0000), error_code: 0 })
        );
        assert_eq!(
            translate(&g, &p, Gva(0x0000_8000_0000_0000), Access::READ),
            Err(MemFault::NonCanonical { gva: Gva(0x0000_8000_0000_0000) })
        );
        // The leaf the write went through is now accessed and dirty.
        translate(&g, &p, Gva(0x50_0008), Access::WRITE).unwrap();
        let mut found = false;
        let mut pt = PageTable::from_root(root, &mut g, PteFlags::WRITABLE, PteFlags::all());
        pt.for_each_leaf(&mut |v, e, _| {
            if v == 0x50_0000 {
                assert!(e & (ACCESSED | DIRTY) == ACCESSED | DIRTY);
                found = true;
            }
        });
        assert!(found);
    }

    /// Guest memory whose other vCPU rewrites one entry just before the
    /// walker's first attempt to update an entry.
    struct Racing<'a> {
        g: &'a FakeGuest,
        rewrite: std::cell::Cell<Option<(Gpa, u64)>>,
    }

    impl GuestPhysical for Racing<'_> {
        fn frame(&self, gfn: Gfn, write: bool) -> Result<NonNull<u8>, MemFault> {
            if write && let Some((at, value)) = self.rewrite.take() {
                write_phys(self.g, at, &value.to_le_bytes()).unwrap();
            }
            self.g.frame(gfn, write)
        }
    }

    /// Where the 4 KiB leaf entry of `va` is (4-level tables).
    fn leaf_slot(g: &FakeGuest, root: u64, va: u64) -> Gpa {
        let mut table = root;
        for shift in [39, 30, 21] {
            let e = read_entry(g, Gpa(table + ((va >> shift) & 511) * 8), true).unwrap();
            table = e & 0x000f_ffff_ffff_f000;
        }
        Gpa(table + ((va >> 12) & 511) * 8)
    }

    #[test]
    fn accessed_bits_never_overwrite_an_entry_the_guest_just_changed() {
        let (g, root) = guest_with_tables(&[(0x50_0000, 0x4000, 4096, PteFlags::WRITABLE, PageSize::Size4K)]);
        let slot = leaf_slot(&g, root, 0x50_0000);
        let old = read_entry(&g, slot, true).unwrap();
        assert_eq!(old & ACCESSED, 0);
        // The guest moves the page to frame 7 while the walk is under way:
        // the walk sees the change and answers with the new frame, and the
        // entry keeps it (a plain write-back would restore frame 4).
        let moved = (old & !0x000f_ffff_ffff_f000) | 0x7000;
        let r = Racing { g: &g, rewrite: std::cell::Cell::new(Some((slot, moved))) };
        assert_eq!(translate(&r, &long_mode(root), Gva(0x50_0010), Access::READ), Ok(Gpa(0x7010)));
        assert_eq!(read_entry(&g, slot, true).unwrap(), moved | ACCESSED);
        // The guest unmaps it instead: the walk faults, nothing is put back.
        let r = Racing { g: &g, rewrite: std::cell::Cell::new(Some((slot, 0))) };
        let p = long_mode(root);
        write_phys(&g, slot, &moved.to_le_bytes()).unwrap();
        assert_eq!(
            translate(&r, &p, Gva(0x50_0010), Access::WRITE),
            Err(MemFault::PageFault { gva: Gva(0x50_0010), error_code: 2 })
        );
        assert_eq!(read_entry(&g, slot, true).unwrap(), 0);
    }

    #[test]
    fn virtual_copies_straddle_pages_mapped_apart() {
        let (g, root) = guest_with_tables(&[
            (0x1000, 0x9000, 4096, PteFlags::WRITABLE, PageSize::Size4K),
            (0x2000, 0x5000, 4096, PteFlags::WRITABLE, PageSize::Size4K),
            (0x3000, 0x6000, 4096, PteFlags::empty(), PageSize::Size4K),
        ]);
        let p = long_mode(root);
        write_virt(&g, &p, Gva(0x1ffc), b"abcdefgh").unwrap();
        let mut b = [0u8; 4];
        read_phys(&g, Gpa(0x9ffc), &mut b).unwrap();
        assert_eq!(&b, b"abcd");
        read_phys(&g, Gpa(0x5000), &mut b).unwrap();
        assert_eq!(&b, b"efgh");
        let mut r = [0u8; 8];
        read_virt(&g, &p, Gva(0x1ffc), &mut r).unwrap();
        assert_eq!(&r, b"abcdefgh");
        // Into the read-only page: refused before anything is written.
        assert!(write_virt(&g, &p, Gva(0x2ffe), b"XYZW").is_err());
        read_phys(&g, Gpa(0x5ffe), &mut b[..2]).unwrap();
        assert_eq!(&b[..2], &[0, 0]);
    }

    #[test]
    fn pae_and_legacy_walks() {
        let g = FakeGuest::with_ram(0..0x20);
        // PAE: PDPT at 0x1000 (32-byte aligned), PD at 0x2000, a 2 MiB page.
        write_phys(&g, Gpa(0x1000 + 8), &(0x2000u64 | P).to_le_bytes()).unwrap(); // PDPTE 1 (1..2 GiB)
        write_phys(&g, Gpa(0x2000 + 3 * 8), &(0x0060_0000u64 | P | RW | PS).to_le_bytes()).unwrap();
        let p = Paging { cr0: CR0_PG | 1, cr3: 0x1000, cr4: CR4_PAE, efer: 0 };
        assert_eq!(p.mode(), Mode::Pae);
        assert_eq!(translate(&g, &p, Gva(0x4060_1234), Access::READ), Ok(Gpa(0x60_1234)));
        // Legacy two-level with a 4 MiB page (CR4.PSE) and a 4 KiB page.
        write_phys(&g, Gpa(0x3000 + 4), &(0x0040_0000u32 | 0x83).to_le_bytes()).unwrap(); // PDE 1: 4 MiB
        write_phys(&g, Gpa(0x3000 + 2 * 4), &(0x4000u32 | 3).to_le_bytes()).unwrap(); // PDE 2 -> PT
        write_phys(&g, Gpa(0x4000 + 5 * 4), &(0x7000u32 | 3).to_le_bytes()).unwrap();
        let l = Paging { cr0: CR0_PG | 1, cr3: 0x3000, cr4: CR4_PSE, efer: 0 };
        assert_eq!(l.mode(), Mode::Legacy);
        assert_eq!(translate(&g, &l, Gva(0x0041_2345), Access::READ), Ok(Gpa(0x41_2345)));
        assert_eq!(translate(&g, &l, Gva(0x0080_5678), Access::READ), Ok(Gpa(0x7678)));
    }

    #[test]
    fn page_tables_outside_guest_memory_are_a_clean_error() {
        let g = FakeGuest::with_ram(0..1);
        let p = long_mode(0x7777_0000);
        assert_eq!(translate(&g, &p, Gva(0x1000), Access::READ), Err(MemFault::Unmapped { gpa: Gpa(0x7777_0000) }));
    }
}
