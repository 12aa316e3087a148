//! Nested page tables as a domain's p2m (guest frame -> host frame): AMD's
//! NPT and Intel's EPT.
//!
//! The nested table is the p2m itself, as in Xen: each leaf keeps the
//! page's p2m type in bits 9-11, which both formats ignore (EPT with
//! accessed/dirty flags and mode-based execution off). The two formats
//! share the table layout; they differ in the leaf bits: NPT is the x86-64
//! page-table format (every level carries the user bit: nested walks are
//! user accesses), EPT has read/write/execute bits in the same places as
//! present/write/user and a memory type in bits 3-5.

use crate::arch::x86_64::page_table::{ADDR_MASK, MapError, PageSize, PageTable, PteFlags, TableMemory};
use crate::mm::addr::{Gfn, Mfn};
use crate::mm::phys::{FrameTables, free_frames, phys_to_virt};

/// Which nested page-table format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum P2mFormat {
    Npt,
    Ept,
}

/// EPT leaf memory type write-back (bits 3-5 = 6).
const EPT_WB: u64 = 6 << 3;
/// EPT leaf memory type uncached (0), with "ignore PAT" (bit 6).
const EPT_UC_IGNORE_PAT: u64 = 1 << 6;

/// What a guest frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum P2mType {
    /// The domain's own RAM, writable.
    Ram,
    /// The domain's own RAM, read-only to it.
    RamReadOnly,
    /// A page the hypervisor owns and lets the domain use (shared_info,
    /// grant frames, the console ring).
    Special,
    /// Another domain's page mapped through a grant, writable.
    GrantRw,
    /// Another domain's page mapped through a read-only grant.
    GrantRo,
    /// A device's registers (a BAR of the hardware domain's), mapped at
    /// its own address: uncached whatever the guest's PAT says.
    Mmio,
    /// A prefetchable BAR: the guest's PAT decides (write-combining where
    /// it asks for it, uncached where it maps it so).
    MmioPrefetchable,
}

impl P2mType {
    fn bits(self) -> u64 {
        match self {
            P2mType::Ram => 1 << 9,
            P2mType::RamReadOnly => 2 << 9,
            P2mType::Special => 3 << 9,
            P2mType::GrantRw => 4 << 9,
            P2mType::GrantRo => 5 << 9,
            P2mType::Mmio => 6 << 9,
            P2mType::MmioPrefetchable => 7 << 9,
        }
    }

    fn from_entry(e: u64) -> Option<P2mType> {
        match (e >> 9) & 7 {
            1 => Some(P2mType::Ram),
            2 => Some(P2mType::RamReadOnly),
            3 => Some(P2mType::Special),
            4 => Some(P2mType::GrantRw),
            5 => Some(P2mType::GrantRo),
            6 => Some(P2mType::Mmio),
            7 => Some(P2mType::MmioPrefetchable),
            _ => None,
        }
    }

    /// Leaf bits: NPT present|user(|write); EPT read|execute(|write) with
    /// write-back memory type (the guest's PAT still applies). Device
    /// registers are uncached on both: NPT's PCD|PWT (the host PAT's UC
    /// entry, which wins over any guest type), EPT's UC type with the
    /// guest's PAT ignored.
    fn flags(self, format: P2mFormat) -> PteFlags {
        let rw = match self {
            P2mType::RamReadOnly | P2mType::GrantRo => PteFlags::empty(),
            _ => PteFlags::WRITABLE,
        };
        let memtype = match (format, self) {
            (P2mFormat::Npt, P2mType::Mmio) => (PteFlags::CACHE_DISABLE | PteFlags::WRITE_THROUGH).bits(),
            (P2mFormat::Npt, _) => 0,
            (P2mFormat::Ept, P2mType::Mmio) => EPT_UC_IGNORE_PAT,
            (P2mFormat::Ept, _) => EPT_WB,
        };
        PteFlags::USER | rw | PteFlags::from_bits_retain(self.bits() | memtype)
    }

    pub fn writable(self) -> bool {
        !matches!(self, P2mType::RamReadOnly | P2mType::GrantRo)
    }

    pub fn is_grant(self) -> bool {
        matches!(self, P2mType::GrantRw | P2mType::GrantRo)
    }

    /// A device's registers (never reached through the hypervisor's
    /// direct map, never freed).
    pub fn is_mmio(self) -> bool {
        matches!(self, P2mType::Mmio | P2mType::MmioPrefetchable)
    }

    /// Frames the domain owns (freed with it).
    pub fn owned(self) -> bool {
        matches!(self, P2mType::Ram | P2mType::RamReadOnly)
    }
}

/// Guest-physical address bits the p2m covers (4-level tables).
pub const GPA_BITS: u32 = 48;

pub struct Npt {
    root: u64,
    largest: PageSize,
    format: P2mFormat,
    /// Table pages in use, and how many the domain may have: table pages
    /// come from the host, so a guest remapping pages all over its
    /// guest-physical space must not be able to take them without bound
    /// (Xen's per-domain p2m pool).
    tables: u64,
    budget: u64,
}

const TABLE_FLAGS: PteFlags = PteFlags::WRITABLE.union(PteFlags::USER);

/// Table pages for one p2m, counted against its budget.
struct Budgeted<'a> {
    used: &'a mut u64,
    limit: u64,
}

impl TableMemory for Budgeted<'_> {
    fn alloc_table(&mut self) -> Option<u64> {
        if *self.used >= self.limit {
            return None;
        }
        let t = FrameTables.alloc_table()?;
        *self.used += 1;
        Some(t)
    }

    fn table(&mut self, phys: u64) -> &mut [u64; 512] {
        let v = phys_to_virt(phys).expect("p2m table page outside the direct map");
        // SAFETY: p2m table pages are direct-mapped RAM owned by this p2m,
        // touched only under the domain's lock.
        unsafe { &mut *(v as *mut [u64; 512]) }
    }
}

impl Npt {
    pub fn new(format: P2mFormat, largest: PageSize) -> Result<Npt, MapError> {
        let mut tables = 0;
        let mut m = Budgeted { used: &mut tables, limit: u64::MAX };
        let pt = PageTable::new(&mut m, TABLE_FLAGS, PteFlags::all())?;
        let root = pt.root();
        Ok(Npt { root, largest, format, tables, budget: u64::MAX })
    }

    /// From now on the p2m may grow by at most `headroom` table pages.
    pub fn limit_growth(&mut self, headroom: u64) {
        self.budget = self.tables + headroom;
    }

    /// The table format.
    pub fn format(&self) -> P2mFormat {
        self.format
    }

    /// Table pages in use.
    pub fn table_pages(&self) -> u64 {
        self.tables
    }

    /// The table root, for the VMCB's N_CR3.
    pub fn root(&self) -> u64 {
        self.root
    }

    fn with<R>(&mut self, f: impl FnOnce(&mut PageTable<'_, Budgeted<'_>>) -> R) -> R {
        let mut m = Budgeted { used: &mut self.tables, limit: self.budget };
        let mut pt = PageTable::from_root(self.root, &mut m, TABLE_FLAGS, PteFlags::all());
        f(&mut pt)
    }

    /// Maps `count` frames from `gfn` to `mfn` (both runs contiguous), with
    /// large pages where alignment allows.
    pub fn map(&mut self, gfn: Gfn, mfn: Mfn, count: u64, t: P2mType) -> Result<(), MapError> {
        let (largest, f) = (self.largest, t.flags(self.format));
        self.with(|pt| pt.map(gfn.gpa().0, mfn.phys(), count << 12, f, largest))
    }

    /// Points `gfn` at `mfn`, returning what it pointed to before.
    pub fn set(&mut self, gfn: Gfn, mfn: Mfn, t: P2mType) -> Result<Option<(Mfn, P2mType)>, MapError> {
        let f = t.flags(self.format);
        let old = self.with(|pt| pt.remap_4k(gfn.gpa().0, mfn.phys(), f))?;
        Ok(decode(old))
    }

    /// Removes `gfn`, returning what it pointed to.
    pub fn clear(&mut self, gfn: Gfn) -> Result<Option<(Mfn, P2mType)>, MapError> {
        let old = self.with(|pt| pt.set_4k_entry(gfn.gpa().0, 0))?;
        Ok(decode(old))
    }

    /// The host frame and type of `gfn`, by walking the table (read only).
    pub fn lookup(&self, gfn: Gfn) -> Option<(Mfn, P2mType)> {
        if gfn.0 >> (GPA_BITS - 12) != 0 {
            return None;
        }
        let gpa = gfn.gpa().0;
        let mut table = self.root;
        for level in (1..=4u32).rev() {
            let idx = (gpa >> (12 + 9 * (level - 1))) & 0x1ff;
            let v = phys_to_virt(table + idx * 8)?;
            // SAFETY: table pages are direct-mapped RAM owned by this p2m.
            let e = unsafe { core::ptr::read_volatile(v as *const u64) };
            if e & PteFlags::PRESENT.bits() == 0 {
                return None;
            }
            if level == 1 || (level <= 3 && e & PteFlags::HUGE.bits() != 0) {
                let size_frames = 1u64 << (9 * (level - 1));
                let base = (e & ADDR_MASK) >> 12 & !(size_frames - 1);
                return Some((Mfn(base + (gfn.0 & (size_frames - 1))), P2mType::from_entry(e)?));
            }
            table = e & ADDR_MASK;
        }
        None
    }

    /// Frees the table pages, handing every owned frame to `free_owned`
    /// (frame, count) first.
    pub fn destroy(mut self, free_owned: &mut dyn FnMut(Mfn, u64)) {
        self.with(|pt| {
            pt.for_each_leaf(&mut |_, e, size| {
                if P2mType::from_entry(e).is_some_and(P2mType::owned) {
                    let frames = size.bytes() >> 12;
                    let base = (e & ADDR_MASK & !(size.bytes() - 1)) >> 12;
                    free_owned(Mfn(base), frames);
                }
            });
            pt.free_tables(&mut |t| {
                let _ = free_frames(t, 1);
            });
        });
    }
}

fn decode(e: u64) -> Option<(Mfn, P2mType)> {
    if e & PteFlags::PRESENT.bits() == 0 {
        return None;
    }
    Some((Mfn::of_phys(e & ADDR_MASK), P2mType::from_entry(e)?))
}
