//! The fuzzer's picture of its own memory, and what its vCPUs share.
//!
//! Guest-physical layout (identity-mapped; RAM is 0..`ram_pages`):
//!
//! - the low zone, frames 0..0x100, and the high zone, the upper half of
//!   RAM: frames the guest never reads or writes itself, so any hypercall
//!   may change them (give them up, populate them, map grants, shared_info
//!   or grant frames over them, register areas there, write output);
//! - the image at 1 MiB (code, data, stacks, page tables), the start info
//!   after it, and `NG` grant-table frames the guest writes entries in, at
//!   `g_base`: no hypercall argument ever names a frame here as a frame to
//!   change or a place for the hypervisor to write, so the guest cannot
//!   kill itself; a crash is a fuzzer bug or a hypervisor that wrote where
//!   it was not asked to;
//! - per fuzzing vCPU, 8 scratch pages in the image for its arguments and
//!   output buffers, each followed by a guard page given up at start (a
//!   hole: arrays running past the scratch fault there).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use test_guests::println;
use xen_abi::shared::VcpuTimeInfo;

pub const PAGE: u64 = 4096;
/// Fuzzing vCPUs at most (and the spare one beyond them).
pub const MAX_FUZZERS: usize = 4;
pub const SCRATCH_PAGES: usize = 8;
pub const SCRATCH: u64 = SCRATCH_PAGES as u64 * PAGE;
/// Grant-table frames whose entries the guest writes.
pub const NG: u32 = 2;
/// The low zone's end (frames below the image).
pub const LOW_ZONE_END: u64 = 0x100;
/// A domain id nobody has.
pub const NO_DOMAIN: u16 = 0x7fe0;

/// Set by vCPU 0 before any other starts; read-only after.
pub struct Layout {
    pub seed: u64,
    pub calls: u64,
    pub me: u16,
    /// The other fuzzer domain (NO_DOMAIN if none).
    pub peer: u16,
    /// A static inter-domain channel's port (0 if none).
    pub port: u32,
    pub fuzzers: u32,
    /// vCPUs the domain has (the ones past `fuzzers` are spares).
    pub vcpus: u32,
    pub ram_pages: u64,
    /// The high zone: [zone_lo, ram_pages).
    pub zone_lo: u64,
    pub g_base: u64,
    /// First frame past the image and start info.
    pub image_end: u64,
    /// Call index from which every call is printed (u64::MAX: none).
    pub trace_from: u64,
    /// How the domain ends: 0 poweroff, 1 crash, 2 all vCPUs down.
    pub end: u32,
    /// Families fuzzed (bit per `stats::FAMILIES` index).
    pub only: u32,
    /// Grant-table frames the fuzzer grows its table to at most.
    pub grant_frames: u32,
    /// The `only=` and `skip=` lists as given.
    pub only_list: Option<&'static str>,
    pub skip_list: Option<&'static str>,
}

static mut LAYOUT: Layout = Layout {
    seed: 0,
    calls: 0,
    me: 0,
    peer: NO_DOMAIN,
    port: 0,
    fuzzers: 1,
    vcpus: 1,
    ram_pages: 0,
    zone_lo: 0,
    g_base: 0,
    image_end: 0,
    trace_from: u64::MAX,
    end: 0,
    only: u32::MAX,
    only_list: None,
    skip_list: None,
    grant_frames: 64,
};

pub fn lay() -> &'static Layout {
    // SAFETY: written only by `set_layout` on vCPU 0 before the other
    // vCPUs start; read-only afterwards.
    unsafe { &*(&raw const LAYOUT) }
}

pub fn set_layout(l: Layout) {
    // SAFETY: vCPU 0 alone, before any other vCPU runs.
    unsafe { *(&raw mut LAYOUT) = l };
}

#[repr(C, align(4096))]
struct Region([[u8; 4096]; 2 + MAX_FUZZERS * (SCRATCH_PAGES + 1)]);

/// A canary page, each fuzzer's scratch pages and guard page, a canary
/// page.
static mut REGION: Region = Region([[0; 4096]; 2 + MAX_FUZZERS * (SCRATCH_PAGES + 1)]);

fn region() -> u64 {
    (&raw const REGION) as u64
}

pub fn scratch_of(v: u32) -> u64 {
    region() + PAGE + v as u64 * (SCRATCH + PAGE)
}

pub fn guard_of(v: u32) -> u64 {
    scratch_of(v) + SCRATCH
}

fn canaries() -> [u64; 2] {
    [region(), region() + PAGE * (1 + MAX_FUZZERS as u64 * (SCRATCH_PAGES as u64 + 1))]
}

fn canary_byte(page: usize, i: usize) -> u8 {
    (i as u8).wrapping_mul(31) ^ (page as u8 * 0x5a) ^ 0xc3
}

pub fn fill_canaries() {
    for (k, c) in canaries().into_iter().enumerate() {
        for i in 0..4096 {
            // SAFETY: the canary pages are this guest's own image memory.
            unsafe { core::ptr::write_volatile((c + i as u64) as *mut u8, canary_byte(k, i)) };
        }
    }
}

/// Whether the canary pages around the scratch area are as written: the
/// hypervisor wrote nothing the fuzzer did not point it at.
pub fn canaries_intact() -> bool {
    canaries().into_iter().enumerate().all(|(k, c)| {
        // SAFETY: as above.
        (0..4096).all(|i| unsafe { core::ptr::read_volatile((c + i as u64) as *const u8) } == canary_byte(k, i))
    })
}

// --- the clock ---------------------------------------------------------------

/// vCPU 0's pvclock parameters at start; with an invariant, synchronised
/// TSC (the hypervisor's assumption) they give system time on every vCPU,
/// without reading shared_info again (the fuzzer moves it around).
static CLOCK: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

pub fn set_clock(t: &VcpuTimeInfo) {
    CLOCK[0].store(t.tsc_timestamp, Ordering::SeqCst);
    CLOCK[1].store(t.system_time, Ordering::SeqCst);
    CLOCK[2].store(t.tsc_to_system_mul as u64, Ordering::SeqCst);
    CLOCK[3].store(t.tsc_shift as u8 as u64, Ordering::SeqCst);
}

/// Xen system time now (ns).
pub fn now() -> u64 {
    let t = VcpuTimeInfo {
        tsc_timestamp: CLOCK[0].load(Ordering::Relaxed),
        system_time: CLOCK[1].load(Ordering::Relaxed),
        tsc_to_system_mul: CLOCK[2].load(Ordering::Relaxed) as u32,
        tsc_shift: CLOCK[3].load(Ordering::Relaxed) as u8 as i8,
        ..VcpuTimeInfo::default()
    };
    test_guests::x86::pvclock_ns(&t, test_guests::rdtsc())
}

pub const MS: u64 = 1_000_000;

// --- what the vCPUs share --------------------------------------------------------

/// Guards the grant entries the guest writes and the frames they are in
/// (a fuzzed move of one of those frames puts it back before unlocking).
pub struct SpinLock(AtomicBool);

impl SpinLock {
    pub const fn new() -> SpinLock {
        SpinLock(AtomicBool::new(false))
    }

    pub fn lock(&self) -> Guard<'_> {
        while self.0.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        Guard(self)
    }
}

pub struct Guard<'a>(&'a SpinLock);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.0.store(false, Ordering::Release);
    }
}

pub static GRANTS: SpinLock = SpinLock::new();
/// The grant frames are at `g_base` (false once a fuzzed move could not
/// be undone: the guest then writes no entry).
pub static GRANT_FRAMES_OK: AtomicBool = AtomicBool::new(false);
/// Held around VCPUOP_down + VCPUOP_up of another fuzzing vCPU, so two
/// vCPUs never take each other down.
pub static DOWN_UP: SpinLock = SpinLock::new();
/// The spare vCPU was started on the park loop by the fuzzer (so it may
/// be brought up again), and has its IDT (so it may take an NMI).
pub static SPARE_PARKED: AtomicBool = AtomicBool::new(false);
pub static SPARE_READY: AtomicBool = AtomicBool::new(false);
/// Guard pages given up at start.
pub static GUARDS: AtomicU32 = AtomicU32::new(0);

/// vCPUs arrived at barriers so far.
static ARRIVED: AtomicU32 = AtomicU32::new(0);

/// Waits until all `n` fuzzing vCPUs have arrived at barrier `round`
/// (1, 2, ...), or two minutes of system time: false then.
pub fn barrier(round: u32, n: u32) -> bool {
    ARRIVED.fetch_add(1, Ordering::SeqCst);
    let deadline = now() + 120_000 * MS;
    while ARRIVED.load(Ordering::SeqCst) < round * n {
        if now() > deadline {
            println!(
                "fuzz: FUZZER BUG: barrier {round} timed out ({} of {} arrived)",
                ARRIVED.load(Ordering::SeqCst),
                round * n
            );
            return false;
        }
        core::hint::spin_loop();
    }
    true
}
