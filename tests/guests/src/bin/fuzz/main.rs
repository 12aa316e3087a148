//! A hypercall fuzzer: a domU that makes a seeded, reproducible stream of
//! structure-aware hypercalls on several vCPUs at once, races them, and
//! then races its own destruction. The hypervisor must answer every call
//! without a panic or an error line, and give back every frame when the
//! domain is gone (its end-of-run memory check).
//!
//! Command line (`cmdline="..."` on the module line):
//!
//! - `seed=N`: the random seed (default: from the TSC; printed either way,
//!   so every run can be repeated);
//! - `calls=N`: hypercalls in all (default 10000), split over the fuzzing
//!   vCPUs: 85% of each vCPU's share at random over every family, then
//!   the rest racing on shared grant references, frames and ports;
//! - `fuzzers=N`: fuzzing vCPUs (default: the domain's vCPUs less one,
//!   which is the spare that VCPUOP_initialise/up/down are aimed at; at
//!   most 4);
//! - `peer=D`: the other fuzzer domain, for grants and channels between
//!   domains; `port=P`: a static channel to it;
//! - `end=poweroff|crash|down`: how the domain ends (default: by seed):
//!   SCHEDOP_shutdown or every vCPU taking itself and the others down,
//!   while the other vCPUs keep racing;
//! - `only=NAME,...`: only these families (names as in the coverage
//!   lines, or their first word: `memory_op`, `grant_table_op`, `other`),
//!   or sub-operations (`memory_op.populate_physmap`);
//! - `skip=NAME,...`: not these families or sub-operations;
//! - `grant_frames=N`: how far the fuzzer grows its grant table (default
//!   Xen's limit, 64);
//! - `trace=N`: print each call from each vCPU's call N on (to find the
//!   call that hurt the hypervisor, with the same seed).
//!
//! Interrupts stay off (events, timers and upcall vectors are fuzzed, not
//! taken); NMIs, which VCPUOP_send_nmi raises, are counted and returned
//! from. A guest exception is reported as a fuzzer bug (the fuzzer never
//! points the hypervisor at its own image), a canary check at the end
//! shows writes the hypervisor made where it was not asked to.

#![no_std]
#![no_main]

mod fz;
mod ops_mem;
mod ops_misc;
mod race;
mod rnd;
mod spare;
mod stats;
mod world;

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use fz::{Fz, hypercall};
use stats::{F_SCHED, F_VCPU, Stats, TOTAL};
use test_guests::xen::Args;
use test_guests::*;
use world::*;
use xen_abi::hypercall as nr;
use xen_abi::memory::{self as mem, AddToPhysmap, MemoryReservation};
use xen_abi::{DOMID_SELF, sched, vcpu as xv};

static mut STATS: [Stats; MAX_FUZZERS] = [const { Stats::new() }; MAX_FUZZERS];

fn stats_of(v: u32) -> &'static mut Stats {
    // SAFETY: each fuzzing vCPU takes its own entry once; vCPU 0 reads the
    // others' only after they stopped counting (barrier 4).
    unsafe { &mut (*(&raw mut STATS))[v as usize] }
}

/// Start and end of the fuzzing, system time.
static STARTED: AtomicU64 = AtomicU64::new(0);
static ENDED: AtomicU64 = AtomicU64::new(0);
/// Barriers that timed out.
static LATE: AtomicU32 = AtomicU32::new(0);
/// The end has begun: every vCPU takes itself down (end=down).
static ALL_DOWN: AtomicBool = AtomicBool::new(false);

const END_NAMES: [&str; 3] = ["poweroff", "crash", "every vCPU down"];

#[unsafe(no_mangle)]
extern "C" fn pvh_main(si_paddr: u64) -> ! {
    x86::install_idt();
    let args = Args::from_start_info(si_paddr);
    let si = start_info(si_paddr);
    let seed = args.num("seed").unwrap_or_else(|| rdtsc() ^ 0x5eed_0000_0000);
    // The domain's vCPUs: is_up answers -ENOENT past the last.
    let vcpus = (1..128u32).find(|&v| x86::vcpu_op(xv::VCPUOP_IS_UP, v, 0) < 0).unwrap_or(128);
    let fuzzers = args.num("fuzzers").unwrap_or(vcpus.saturating_sub(1).max(1) as u64).clamp(1, MAX_FUZZERS as u64);
    let fuzzers = fuzzers.min(vcpus as u64) as u32;
    let ram_pages = memmap(si).first().map_or(0, |m| m.size / PAGE);
    let cmdline_end = si.cmdline_paddr + c_str(si.cmdline_paddr).len() as u64 + 1;
    let image_end = cmdline_end.div_ceil(PAGE) + 1;
    let zone_lo = ((ram_pages / 2).max(image_end + 32)).next_multiple_of(512);
    let end = match args.get("end") {
        Some("poweroff") => 0,
        Some("crash") => 1,
        Some("down") => 2,
        _ => rnd::Rng::new(seed, 99).below(3) as u32,
    };
    set_layout(Layout {
        seed,
        calls: args.num_or("calls", 10_000),
        me: xen::domid(),
        peer: args.num("peer").map_or(NO_DOMAIN, |p| p as u16),
        port: args.num_or("port", 0) as u32,
        fuzzers,
        vcpus,
        ram_pages,
        zone_lo,
        g_base: zone_lo - 16,
        image_end,
        trace_from: args.num_or("trace", u64::MAX),
        only: args.get("only").map_or(u32::MAX, |list| {
            list.split(',')
                .filter_map(|w| {
                    let fam = w.split('.').next();
                    stats::FAMILIES.iter().position(|f| f.name.split(' ').next() == fam)
                })
                .fold(0, |m, f| m | 1 << f)
        }),
        only_list: args.get("only"),
        skip_list: args.get("skip"),
        grant_frames: args.num_or("grant_frames", 64).clamp(NG as u64, 64) as u32,
        end,
    });
    let l = lay();
    println!(
        "fuzz: seed {:#x}, {} calls on {} vCPUs{}, domain {}, peer {}, {} MiB (zone {:#x}-{:#x}), end {}",
        l.seed,
        l.calls,
        l.fuzzers,
        if l.vcpus > l.fuzzers { " and a spare" } else { "" },
        l.me,
        l.peer,
        ram_pages / 256,
        l.zone_lo,
        ram_pages,
        END_NAMES[end as usize]
    );
    if ram_pages < zone_lo + 512 || l.g_base < image_end || scratch_of(MAX_FUZZERS as u32) >= l.g_base * PAGE {
        println!("fuzz: FUZZER BUG: {} MiB is too little room (image ends at frame {image_end:#x})", ram_pages / 256);
        Checks::new().skip("the domain's memory is too small for the fuzzer's layout");
    }
    setup();
    let mut fz = Fz::new(0, stats_of(0));
    ops_mem::initial_grants(&mut fz);
    if fz.rng.chance(1, 2) {
        spare::park(&mut fz);
    }
    for v in 1..l.fuzzers {
        let (init, up) = x86::start_vcpu(v, ap_main);
        if init != 0 || up != 0 {
            println!("fuzz: FUZZER BUG: vCPU {v} did not start: {init} {up}");
        }
    }
    run(fz)
}

/// Clock, canaries, guard pages and grant frames, before any vCPU fuzzes.
fn setup() {
    let l = lay();
    // shared_info at the zone's first frame, for the clock only.
    let si_gfn = l.zone_lo;
    let x = AddToPhysmap { domid: DOMID_SELF, size: 0, space: mem::XENMAPSPACE_SHARED_INFO, idx: 0, gpfn: si_gfn };
    let rc = hypercall(nr::MEMORY_OP, [mem::XENMEM_ADD_TO_PHYSMAP, &x as *const _ as u64, 0, 0, 0]);
    for _ in 0..10 {
        let t = x86::read_time_info(si_gfn * PAGE + 32);
        if rc == 0 && t.tsc_to_system_mul != 0 {
            set_clock(&t);
            break;
        }
        xen::yield_cpu();
    }
    fill_canaries();
    // The guard pages after each scratch area become holes.
    let mut guards = [0u64; MAX_FUZZERS];
    for (v, g) in guards.iter_mut().enumerate() {
        *g = guard_of(v as u32) / PAGE;
    }
    let r = MemoryReservation {
        extent_start: guards.as_mut_ptr() as u64,
        nr_extents: MAX_FUZZERS as u64,
        extent_order: 0,
        mem_flags: 0,
        domid: DOMID_SELF,
        _pad: [0; 3],
    };
    let done = hypercall(nr::MEMORY_OP, [mem::XENMEM_DECREASE_RESERVATION, &r as *const _ as u64, 0, 0, 0]);
    GUARDS.store((done == MAX_FUZZERS as i64) as u32, Ordering::SeqCst);
    let mut ok = true;
    for idx in 0..NG as u64 {
        let x =
            AddToPhysmap { domid: DOMID_SELF, size: 0, space: mem::XENMAPSPACE_GRANT_TABLE, idx, gpfn: l.g_base + idx };
        ok &= hypercall(nr::MEMORY_OP, [mem::XENMEM_ADD_TO_PHYSMAP, &x as *const _ as u64, 0, 0, 0]) == 0;
    }
    GRANT_FRAMES_OK.store(ok, Ordering::SeqCst);
    println!(
        "fuzz: clock {}, guard pages {}, grant frames {}",
        if now() > 0 { "from shared_info" } else { "MISSING" },
        if done == MAX_FUZZERS as i64 { "given up" } else { "kept" },
        if ok { "mapped" } else { "NOT mapped" }
    );
}

extern "C" fn ap_main(v: u32) -> ! {
    x86::install_idt();
    run(Fz::new(v, stats_of(v)))
}

/// One random call from any family (of those `only=` allows), or a
/// guest-side grant step.
fn fuzz_one(fz: &mut Fz) {
    let pick = loop {
        let p = fz.rng.below(84);
        let family = match p {
            0..=11 => stats::F_MEMORY,
            12..=23 | 76.. => stats::F_GRANT,
            24..=37 => stats::F_EVTCHN,
            38..=42 => stats::F_SCHED,
            43..=52 => stats::F_VCPU,
            53..=60 => stats::F_HVM,
            61..=64 => stats::F_VERSION,
            65 | 66 => stats::F_TIMER,
            67 | 68 => stats::F_CONSOLE,
            69..=71 => stats::F_CONTROL,
            _ => stats::F_OTHER,
        };
        if lay().only & 1 << family != 0 {
            break p;
        }
    };
    match pick {
        0..=11 => fz.memory_op(),
        12..=23 => fz.grant_table_op(),
        24..=37 => fz.event_channel_op(),
        38..=42 => fz.sched_op(),
        43..=52 => fz.vcpu_op(),
        53..=60 => fz.hvm_op(),
        61..=64 => fz.xen_version(),
        65 | 66 => fz.set_timer_op(),
        67 | 68 => fz.console_io(),
        69..=71 => fz.control(),
        72..=75 => fz.other(),
        _ => ops_mem::grant_entry_step(fz, None),
    }
}

fn wait_all(round: u32) {
    if !barrier(round, lay().fuzzers) {
        LATE.fetch_add(1, Ordering::SeqCst);
    }
}

fn run(mut fz: Fz) -> ! {
    let l = lay();
    wait_all(1);
    if fz.v == 0 {
        STARTED.store(now(), Ordering::SeqCst);
    }
    let share = l.calls / l.fuzzers as u64 + if fz.v == 0 { l.calls % l.fuzzers as u64 } else { 0 };
    // With `only=`, no racing phase (it mixes families).
    let random = if l.only == u32::MAX { share * 85 / 100 } else { share };
    let tenth = (share / 10).max(1);
    let mut shown = 0;
    while fz.stats.calls < random {
        fuzz_one(&mut fz);
        if fz.v == 0 && fz.stats.calls / tenth > shown {
            shown = fz.stats.calls / tenth;
            println!("fuzz: vCPU 0: {} calls", fz.stats.calls);
        }
    }
    wait_all(2);
    if fz.v == 0 {
        println!("fuzz: racing on shared grants, frames and ports");
    }
    while fz.stats.calls < share {
        fz.race();
    }
    wait_all(3);
    if fz.v == 0 {
        ENDED.store(now(), Ordering::SeqCst);
    }
    fz.counting = false;
    wait_all(4);
    if fz.v == 0 {
        finish(fz)
    }
    // Race on while vCPU 0 reports and ends the domain.
    loop {
        if ALL_DOWN.load(Ordering::SeqCst) {
            let me = fz.v as u64;
            fz.call(F_VCPU, xv::VCPUOP_DOWN, nr::VCPU_OP, [xv::VCPUOP_DOWN, me, 0, 0, 0]);
        }
        fz.race();
    }
}

/// vCPU 0 at the end: the counts, the verdict, then the domain's end
/// while the others race.
fn finish(mut fz: Fz) -> ! {
    let l = lay();
    let mut all = Stats::new();
    for v in 0..l.fuzzers {
        all.merge(stats_of(v));
    }
    all.print();
    let ms = (ENDED.load(Ordering::SeqCst) - STARTED.load(Ordering::SeqCst)) / MS;
    let (called, answered, ok) = all.totals();
    println!(
        "fuzz: summary: seed {:#x}: {} calls on {} vCPUs in {} ms: {} calls/s; coverage: {} of {} sub-operations \
         answered (not -ENOSYS), {} called, {} succeeded",
        l.seed,
        all.calls,
        l.fuzzers,
        ms,
        all.calls * 1000 / ms.max(1),
        answered,
        TOTAL,
        called,
        ok
    );
    let mut c = Checks::new();
    c.eq("every fuzzing vCPU made its calls and met the others", LATE.load(Ordering::SeqCst) as i64, 0);
    c.check("the calls made add up", all.calls >= l.calls);
    c.check("the canary pages around the scratch pages are intact", canaries_intact());
    println!(
        "fuzz: the hypervisor survived; ending the domain: {} while the other vCPUs race",
        END_NAMES[l.end as usize]
    );
    c.verdict();
    let reason = if l.end == 1 { SHUTDOWN_CRASH } else { SHUTDOWN_POWEROFF };
    let code = fz.put(0, reason);
    fz.call(F_SCHED, sched::SCHEDOP_SHUTDOWN_CODE, nr::SCHED_OP, [sched::SCHEDOP_SHUTDOWN_CODE, code, 0, 0, 0]);
    for _ in 0..50 {
        fz.race();
    }
    if l.end == 2 {
        ALL_DOWN.store(true, Ordering::SeqCst);
        for v in (0..l.vcpus as u64).rev() {
            fz.call(F_VCPU, xv::VCPUOP_DOWN, nr::VCPU_OP, [xv::VCPUOP_DOWN, v, 0, 0, 0]);
        }
    }
    shutdown(reason)
}
