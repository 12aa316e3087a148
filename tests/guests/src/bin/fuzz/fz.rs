//! One fuzzing vCPU: its random stream, its scratch pages, what it has
//! made (ports, grant mappings) so later calls can aim at real objects,
//! and the generators of structure-aware arguments: pointers and frames
//! of every kind the hypervisor must tell apart.

use crate::rnd::Rng;
use crate::stats::Stats;
use crate::world::*;
use test_guests::println;
use xen_abi::Pod;

/// Addresses the hypervisor must refuse to read or write through.
const NON_CANONICAL: [u64; 5] =
    [0x8000_0000_0000_0000, 0x0000_8000_0000_0000, 0x7fff_ffff_ffff_f000, 0xffff_7fff_ffff_fffc, 0x1234_5678_9abc_def0];
/// Kernel-half addresses (canonical, not mapped by the guest).
const KERNEL_HALF: [u64; 3] = [0xffff_8000_0000_0000, 0xffff_ffff_8000_0000, 0xffff_ffff_ffff_f000];
/// The hypervisor's special pages in every PVH domain: the console ring,
/// the local APIC, the ACPI tables, the reserved range.
pub const SPECIAL_GFNS: [u64; 5] = [0xfefff, 0xfee00, 0xfc000, 0xfeff8, 0xfeffe];

/// A small ring of things made (ports, handles), newest last.
pub struct Ring<T: Copy, const N: usize> {
    items: [T; N],
    len: usize,
    next: usize,
}

impl<T: Copy, const N: usize> Ring<T, N> {
    pub const fn new(zero: T) -> Self {
        Ring { items: [zero; N], len: 0, next: 0 }
    }

    pub fn push(&mut self, t: T) {
        self.items[self.next] = t;
        self.next = (self.next + 1) % N;
        self.len = (self.len + 1).min(N);
    }

    pub fn pick(&self, rng: &mut Rng) -> Option<T> {
        (self.len > 0).then(|| self.items[rng.below(self.len as u64) as usize])
    }

    /// Takes a random item out.
    pub fn take(&mut self, rng: &mut Rng) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let i = rng.below(self.len as u64) as usize;
        let t = self.items[i];
        // Keep the live ones in 0..len: move the last live one here.
        let last = (self.next + N - 1) % N;
        if self.len == N {
            self.items[i] = self.items[last];
            self.next = last;
        } else {
            self.items[i] = self.items[self.len - 1];
            self.next = self.len - 1;
        }
        self.len -= 1;
        Some(t)
    }
}

pub struct Fz {
    pub v: u32,
    pub rng: Rng,
    pub stats: &'static mut Stats,
    pub scratch: u64,
    pub ports: Ring<u32, 16>,
    /// (handle, host address) of grant mappings made.
    pub maps: Ring<(u32, u64), 16>,
    /// Calls made by this vCPU (its trace index).
    pub n: u64,
    /// Whether calls are counted (not in the final race, when vCPU 0
    /// reads the counts).
    pub counting: bool,
}

pub fn hypercall(nr: u64, a: [u64; 5]) -> i64 {
    // SAFETY: every pointer among the arguments is one the fuzzer chose
    // to be its scratch or zone memory (which the hypervisor may write),
    // read-only input anywhere, or an address the hypervisor must refuse;
    // frames named to change are zone frames, holes or nonsense. The
    // image, stacks and page tables are never named as a place to write.
    unsafe { test_guests::hypercall(nr, a[0], a[1], a[2], a[3], a[4]) }
}

impl Fz {
    pub fn new(v: u32, stats: &'static mut Stats) -> Fz {
        Fz {
            v,
            rng: Rng::new(lay().seed, v as u64),
            stats,
            scratch: scratch_of(v),
            ports: Ring::new(0),
            maps: Ring::new((0, 0)),
            n: 0,
            counting: true,
        }
    }

    /// Makes hypercall `nr` as sub-operation `code` of family `f`, and
    /// counts it.
    pub fn call(&mut self, f: usize, code: u64, nr: u64, a: [u64; 5]) -> i64 {
        self.n += 1;
        if self.n >= lay().trace_from {
            println!(
                "fuzz: trace v{} #{}: hypercall {nr} ({:#x}, {:#x}, {:#x}, {:#x}, {:#x})",
                self.v, self.n, a[0], a[1], a[2], a[3], a[4]
            );
        }
        let rc = hypercall(nr, a);
        if self.counting {
            self.stats.rec(f, code, rc);
        }
        rc
    }

    pub fn status(&mut self, f: usize, code: u64, st: i16) {
        if self.counting {
            self.stats.status(f, code, st);
        }
    }

    // --- scratch -------------------------------------------------------------

    /// Writes `t` at scratch offset `off` (unaligned allowed); its address.
    pub fn put<T: Pod>(&self, off: u64, t: T) -> u64 {
        let size = core::mem::size_of::<T>() as u64;
        assert!(off + size <= SCRATCH, "scratch overflow");
        let at = self.scratch + off;
        // SAFETY: inside this vCPU's scratch pages, which only it uses.
        unsafe { core::ptr::write_unaligned(at as *mut T, t) };
        at
    }

    /// Reads a `T` back from scratch offset `off`.
    pub fn get<T: Pod>(&self, off: u64) -> T {
        let size = core::mem::size_of::<T>() as u64;
        assert!(off + size <= SCRATCH, "scratch overflow");
        // SAFETY: as for put; Pod types take any bytes.
        unsafe { core::ptr::read_unaligned((self.scratch + off) as *const T) }
    }

    /// Where one argument structure of `len` bytes goes in scratch: mostly
    /// aligned, sometimes unaligned, across a page end, or ending right
    /// at the guard page (reads past it fault).
    pub fn arg_off(&mut self, len: u64) -> u64 {
        let len = len.min(SCRATCH);
        match self.rng.below(16) {
            0 => {
                // Across a page end inside scratch.
                let page = self.rng.range(1, SCRATCH_PAGES as u64 - 1) * PAGE;
                page - self.rng.range(1, len.max(2) - 1).min(page)
            }
            1 => SCRATCH - len,
            2 => self.rng.below(SCRATCH - len + 1),
            _ => self.rng.below((SCRATCH - len) / 64 + 1) * 64,
        }
    }

    /// A pointer to `t` written somewhere in scratch, or (1 in 12) a
    /// pointer the hypervisor must refuse.
    pub fn arg<T: Pod>(&mut self, t: T) -> u64 {
        if self.rng.chance(1, 12) {
            return self.bad_ptr();
        }
        let off = self.arg_off(core::mem::size_of::<T>() as u64);
        self.put(off, t)
    }

    // --- pointers --------------------------------------------------------------

    /// A virtual address nothing can be read or written at: non-canonical,
    /// the kernel half, above the 4 GiB the guest maps, or a guard page
    /// (never to be used as a guest-physical place to map something).
    pub fn bad_ptr(&mut self) -> u64 {
        let off = self.rng.below(PAGE);
        match self.rng.below(5) {
            0 => self.rng.pick(&NON_CANONICAL),
            1 => self.rng.pick(&KERNEL_HALF) + (off & !7).min(0xff8),
            2 => (1 << 32) + self.rng.below(1 << 40) * 8,
            3 => guard_of(self.rng.below(lay().fuzzers as u64) as u32) + off,
            _ => (u64::MAX - off) & !3,
        }
    }

    /// An address in the high zone (any alignment).
    pub fn zone_ptr(&mut self) -> u64 {
        let l = lay();
        self.rng.range(l.zone_lo * PAGE, l.ram_pages * PAGE - 1)
    }

    /// An address in the low zone (any alignment) with `len` bytes after
    /// it that stay there: the image begins where the low zone ends, and
    /// a runstate area registered across that end had the hypervisor
    /// write the fuzzer's code page at every context switch.
    pub fn low_ptr(&mut self, len: u64) -> u64 {
        self.rng.below(LOW_ZONE_END * PAGE - len.max(1) + 1)
    }

    /// An address near the end of RAM, so that `len` bytes run past it.
    pub fn ram_end_ptr(&mut self, len: u64) -> u64 {
        lay().ram_pages * PAGE - self.rng.range(1, len.max(2))
    }

    /// A special page or a hole past RAM (which the fuzzer may populate).
    pub fn special_ptr(&mut self) -> u64 {
        let off = self.rng.below(PAGE);
        match self.rng.below(3) {
            0 => self.rng.pick(&SPECIAL_GFNS) * PAGE + off,
            1 => (lay().ram_pages + self.rng.below(64)) * PAGE + off,
            _ => self.rng.range(0x1000_0000, 0xfbff_ffff),
        }
    }

    /// Where the hypervisor may write `len` bytes of output: this vCPU's
    /// scratch, the zones, across the end of RAM, special pages, nowhere.
    pub fn out_ptr(&mut self, len: u64) -> u64 {
        match self.rng.below(20) {
            0..=9 => {
                let off = self.arg_off(len);
                self.scratch + off
            }
            10..=12 => self.zone_ptr(),
            13 => self.ram_end_ptr(len),
            14 => self.low_ptr(len),
            15 | 16 => self.special_ptr(),
            _ => self.bad_ptr(),
        }
    }

    /// A pointer the hypervisor only reads from: anything out_ptr gives,
    /// or the image itself.
    pub fn in_ptr(&mut self, len: u64) -> u64 {
        if self.rng.chance(1, 6) {
            let l = lay();
            return self.rng.range(0x100 * PAGE, l.image_end * PAGE - 1);
        }
        self.out_ptr(len)
    }

    /// Where the hypervisor may keep writing for good (a registered area):
    /// the zones, special pages, nowhere; never scratch, which holds the
    /// next call's arguments.
    pub fn persist_ptr(&mut self, len: u64) -> u64 {
        match self.rng.below(10) {
            0..=4 => self.zone_ptr(),
            5 => self.ram_end_ptr(len),
            6 => self.low_ptr(len),
            7 => self.special_ptr(),
            _ => self.bad_ptr(),
        }
    }

    // --- frames ------------------------------------------------------------------

    /// A frame in the high zone where an extent of `1 << order` frames
    /// stays inside it (aligned or not).
    pub fn zone_gfn(&mut self, order: u32) -> u64 {
        let l = lay();
        let n = 1u64 << order.min(9);
        let span = l.ram_pages - l.zone_lo;
        let g = l.zone_lo + self.rng.below(span - n + 1);
        if self.rng.chance(3, 4) { g & !(n - 1) } else { g }
    }

    /// A frame a hypercall may change (give up, populate, map over): the
    /// zones, holes past RAM, special pages, frames far away (each needs
    /// p2m tables), nonsense.
    pub fn gfn_mut(&mut self, order: u32) -> u64 {
        let l = lay();
        match self.rng.below(32) {
            0..=19 => self.zone_gfn(order),
            // The low zone holds extents of up to 2^8 frames.
            20 | 21 if order <= 8 => self.rng.below(LOW_ZONE_END >> order) << order,
            20 | 21 => self.zone_gfn(order),
            22..=24 => l.ram_pages + self.rng.below(1024),
            25 | 26 => self.rng.pick(&SPECIAL_GFNS),
            27 => self.rng.below(1 << 36),
            _ => self.rng.pick(&[
                u64::MAX,
                u64::MAX - 511,
                u64::MAX >> 12,
                1 << 52,
                (1 << 52) - 1,
                (1 << 40) - 512,
                1 << 36,
                0xf_ffff,
                0x10_0000,
                l.ram_pages,
                l.ram_pages - 1,
            ]),
        }
    }

    /// Any frame, for reading only (grant copy sources, read-only grants):
    /// also the image and scratch.
    pub fn gfn_any(&mut self) -> u64 {
        if self.rng.chance(1, 4) {
            return self.rng.range(0x100, lay().image_end - 1);
        }
        self.gfn_mut(0)
    }

    // --- ids -----------------------------------------------------------------------

    /// A domain id: myself in both spellings, the peer, dom0, nobody,
    /// the reserved ids, anything.
    pub fn domid(&mut self) -> u16 {
        let l = lay();
        match self.rng.below(12) {
            0..=3 => xen_abi::DOMID_SELF,
            4 | 5 => l.me,
            6 | 7 => l.peer,
            8 => 0,
            9 => NO_DOMAIN,
            _ => self.rng.edge16(),
        }
    }

    /// A vCPU id: the fuzzing ones, the spare, one past the end, nonsense.
    pub fn vcpu(&mut self) -> u32 {
        let l = lay();
        match self.rng.below(8) {
            0..=4 => self.rng.below(l.vcpus as u64) as u32,
            5 => l.vcpus,
            6 => self.rng.pick(&[127, 128, 0x7fff_ffff, u32::MAX]),
            _ => self.rng.edge32(),
        }
    }

    /// An event-channel port: one made, the static channel, small ones,
    /// the limits of both ABIs, nonsense.
    pub fn port(&mut self) -> u32 {
        if self.rng.chance(1, 2)
            && let Some(p) = self.ports.pick(&mut self.rng)
        {
            return p;
        }
        match self.rng.below(8) {
            0 => lay().port,
            1..=3 => self.rng.below(72) as u32,
            4 => self.rng.pick(&[63, 64, 65, 127, 128, 4095, 4096, 4097, (1 << 17) - 1, 1 << 17]),
            _ => self.rng.edge32(),
        }
    }

    /// A grant reference of domain `dom` (mine or the peer's: the
    /// conventions of `grants::write_entry`), or a boundary value.
    pub fn gref(&mut self) -> u32 {
        match self.rng.below(8) {
            0..=4 => self.rng.range(8, 127) as u32,
            5 => self.rng.below(NG as u64 * 512) as u32,
            6 => self.rng.pick(&[0, 511, 512, NG * 512 - 1, NG * 512, 64 * 512 - 1, 64 * 512, u32::MAX]),
            _ => self.rng.edge32(),
        }
    }
}
