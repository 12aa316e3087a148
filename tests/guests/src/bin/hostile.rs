//! A domU that attacks the hypervisor the way a review of its guest-facing
//! code found it could be hurt (issue "Hostile guests"), and checks it is
//! refused with Xen's answer and nothing else changes. Start it with
//! memory=8 vcpus=8. `attack=` picks some (comma-separated), default all:
//!
//! - `reservation`: decrease/populate extents at frames near 2^64, whose
//!   end wrapped past the address-space bound (a panic in a debug build;
//!   in a release build the page count fell while nothing was freed, and
//!   populate took frames recorded nowhere).
//! - `timers`: fifty thousand far deadlines through every timer
//!   interface (each used to add a queue entry that stayed until due: the
//!   hypervisor heap grew, which the machine's end-of-run memory check
//!   reports), then a singleshot timer at u64::MAX while blocked alone on
//!   a CPU (the ns-to-TSC conversion overflowed).
//! - `vcpu_info`: misaligned offsets (undefined behaviour for the atomics
//!   on it), and two vCPUs registering one vCPU's vcpu_info at once (both
//!   used to succeed, leaking a frame reference: memory never returned).
//! - `grants`: two vCPUs unmap one grant handle while one of them maps
//!   the grant again at the same place (the unmap looked the handle up,
//!   checked the p2m and removed the handle in separate lock sections: the
//!   late one cleared the new mapping and removed another handle).
//! - `p2m`: spends the domain's p2m table budget, then gives back a frame
//!   inside a 2 MiB mapping (which needs a table to split): it must not be
//!   counted as given back while it stays mapped.
//! - `console`: floods the console through console_io and port 0xe9
//!   (REP OUTSB): no more than the rate limit allows is printed (the test
//!   counts the lines against the time the flood took), and the
//!   hypervisor's own messages still come through.
//! - `down` (alone, with vcpus=2): the two vCPUs take each other down with
//!   VCPUOP_down at the same moment. Both passed the "last vCPU" check
//!   before, leaving no vCPU up and the domain never shut down (its
//!   memory never freed); the last vCPU going down must power it off.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use test_guests::xen::{self, Args};
use test_guests::*;
use xen_abi::DOMID_SELF;
use xen_abi::errno::*;
use xen_abi::hypercall as nr;
use xen_abi::memory::*;
use xen_abi::vcpu::*;

const SELF: u16 = DOMID_SELF;
const SHARED_INFO_GFN: u64 = 0x3f0;
const MS: u64 = 1_000_000;

fn wants(args: &Args, name: &str) -> bool {
    args.get("attack").is_none_or(|list| list.split(',').any(|a| a == name))
}

#[unsafe(no_mangle)]
extern "C" fn pvh_main(si_paddr: u64) -> ! {
    let args = Args::from_start_info(si_paddr);
    let mut c = Checks::new();
    if args.get("attack") == Some("down") {
        down_race(&mut c);
    }
    let timer = xen::start(&mut c, xen::Upcall::Callback);
    println!("hostile: domain {}", xen::domid());
    if wants(&args, "reservation") {
        reservation(&mut c);
    }
    if wants(&args, "timers") {
        timers(&mut c, timer);
    }
    if wants(&args, "vcpu_info") {
        vcpu_info(&mut c);
    }
    if wants(&args, "grants") {
        grant_race(&mut c);
    }
    if wants(&args, "p2m") {
        p2m_budget(&mut c);
    }
    if wants(&args, "console") {
        console(&mut c);
    }
    c.finish()
}

static DOWN_READY: AtomicU32 = AtomicU32::new(0);

extern "C" fn down_partner(_: u32) -> ! {
    DOWN_READY.fetch_add(1, Ordering::SeqCst);
    while DOWN_READY.load(Ordering::SeqCst) < 2 {
        core::hint::spin_loop();
    }
    x86::vcpu_op(VCPUOP_DOWN, 0, 0);
    // Still up (the other's call came too late): the last one down.
    x86::vcpu_op(VCPUOP_DOWN, 1, 0);
    loop {
        core::hint::spin_loop();
    }
}

/// Ends the domain: the verdict first, then vCPUs 0 and 1 take each other
/// down (and then themselves, if still up); the test expects the domain
/// to power off.
fn down_race(c: &mut Checks) -> ! {
    let (init, up) = x86::start_vcpu(1, down_partner);
    c.eq("start vCPU 1", init | up, 0);
    c.eq("two vCPUs are up", x86::vcpu_op(VCPUOP_IS_UP, 1, 0), 1);
    println!("{} checks, {} failed; racing VCPUOP_down", 2, 0);
    println!("VERDICT: PASS");
    DOWN_READY.fetch_add(1, Ordering::SeqCst);
    while DOWN_READY.load(Ordering::SeqCst) < 2 {
        core::hint::spin_loop();
    }
    x86::vcpu_op(VCPUOP_DOWN, 1, 0);
    x86::vcpu_op(VCPUOP_DOWN, 0, 0);
    loop {
        core::hint::spin_loop();
    }
}

fn reservation(c: &mut Checks) {
    let before = xen::current_reservation(SELF);
    let top = u64::MAX;
    let top9 = u64::MAX - 511;
    for (name, gfn, order) in [("u64::MAX", top, 0), ("2^64 - 512 at order 9", top9, 9), ("2^52", 1 << 52, 0)] {
        let mut l = [gfn];
        let dec = xen::reservation(XENMEM_DECREASE_RESERVATION, SELF, &mut l, order, 0);
        let pop = xen::reservation(XENMEM_POPULATE_PHYSMAP, SELF, &mut l, order, 0);
        println!("  extent at {name}: decrease {dec}, populate {pop}");
        c.eq("decrease_reservation of an extent past the address space: none done", dec, 0);
        c.eq("populate_physmap of an extent past the address space: none done", pop, 0);
    }
    // What leaked a GiB per thousand rounds before.
    let mut odd = 0;
    for _ in 0..1000 {
        let mut l = [top9];
        odd += xen::reservation(XENMEM_DECREASE_RESERVATION, SELF, &mut l, 9, 0);
        odd += xen::reservation(XENMEM_POPULATE_PHYSMAP, SELF, &mut l, 9, 0);
    }
    c.eq("a thousand rounds of both: nothing done", odd, 0);
    c.eq("the reservation is unchanged", xen::current_reservation(SELF), before);
}

/// vCPU 1's work in `timers`: arm a singleshot timer at u64::MAX and block
/// (the CPU it is on has no earlier deadline of this domain), until vCPU
/// 0's IPI event wakes it.
static IPI_PORT: AtomicU32 = AtomicU32::new(0);
static WOKEN: AtomicU32 = AtomicU32::new(0);
static BLOCKED_AT: AtomicU64 = AtomicU64::new(0);

extern "C" fn blocker(vcpu: u32) -> ! {
    x86::install_idt();
    x86::x2apic_enable();
    x86::sti();
    let rc = x86::set_singleshot(u64::MAX, 0);
    BLOCKED_AT.store(xen::now().max(1), Ordering::SeqCst);
    let b = x86::block();
    WOKEN.store(if rc == 0 && b == 0 { 1 } else { 2 }, Ordering::SeqCst);
    x86::set_singleshot(u64::MAX, 0);
    let _ = vcpu;
    loop {
        x86::block();
    }
}

fn timers(c: &mut Checks, timer: u32) {
    let far = xen::now() + (1 << 49);
    let mut bad = 0;
    for i in 0..10_000u64 {
        // set_timer_op, both singleshot forms, periodic at its longest,
        // and a poll with a far timeout on a port already pending.
        bad += (xen::raw(nr::SET_TIMER_OP, far + i, 0, 0) != 0) as u32;
        bad += (x86::set_singleshot(far + 2 * i, 0) != 0) as u32;
        bad += (x86::set_singleshot(u64::MAX - i, 0) != 0) as u32;
        let p = SetPeriodicTimer { period_ns: (1 << 50) - i };
        bad += (x86::vcpu_op(VCPUOP_SET_PERIODIC_TIMER, 0, &p as *const _ as u64) != 0) as u32;
    }
    c.eq("40,000 far timers set", bad as i64, 0);
    let (rc, port) = xen::bind_ipi(0);
    c.eq("bind an IPI port", rc, 0);
    // Masked, so that no upcall takes the event before the poll sees it.
    xen::mask(port);
    let mut polls = 0;
    for i in 0..10_000u64 {
        xen::send(port);
        polls += (xen::poll(&[port], far + i) == 0) as u32;
        xen::clear_pending(port);
    }
    c.eq("10,000 polls with far timeouts return at once", polls as i64, 10_000);
    // Unmasked again: the mask stays with the port number (Xen's 2-level
    // ABI), and the next bind may get the same one.
    xen::clear_mask(port);
    xen::close(port);
    x86::vcpu_op(VCPUOP_STOP_PERIODIC_TIMER, 0, 0);
    x86::vcpu_op(VCPUOP_STOP_SINGLESHOT_TIMER, 0, 0);
    // The timer VIRQ still works after all that.
    let before = xen::events(timer);
    let deadline = xen::after_ms(20);
    c.eq("arm a near singleshot timer", xen::arm_timer(deadline), 0);
    c.check("it fires", xen::wait_until(xen::after_ms(2000), || xen::events(timer) > before));

    // Blocked with only a u64::MAX deadline.
    let (rc, ipi) = xen::bind_ipi(1);
    c.eq("bind an IPI port to vCPU 1", rc, 0);
    IPI_PORT.store(ipi, Ordering::SeqCst);
    let (init, up) = x86::start_vcpu(1, blocker);
    c.eq("start vCPU 1", init | up, 0);
    c.check("vCPU 1 blocks", xen::spin_until(xen::after_ms(5000), || BLOCKED_AT.load(Ordering::SeqCst) != 0));
    xen::spin_until(xen::after_ms(100), || false);
    c.eq("wake it with an event", xen::send(ipi), 0);
    c.check("vCPU 1 woke", xen::spin_until(xen::after_ms(5000), || WOKEN.load(Ordering::SeqCst) != 0));
    c.eq("its u64::MAX singleshot timer and block succeeded", WOKEN.load(Ordering::SeqCst) as i64, 1);
}

/// vcpu_info registrations racing for one vCPU: (vCPU, result) per racer.
static RACE_GO: AtomicU32 = AtomicU32::new(0);
static RACE_READY: AtomicU32 = AtomicU32::new(0);
static RACE_RESULT: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
const VCPU_INFO_GFN: u64 = 0x3e0;

fn register(vcpu: u32, gfn: u64, offset: u32) -> i64 {
    let r = RegisterVcpuInfo { mfn: gfn, offset, rsvd: 0 };
    x86::vcpu_op(VCPUOP_REGISTER_VCPU_INFO, vcpu, &r as *const _ as u64)
}

extern "C" fn racer(vcpu: u32) -> ! {
    x86::install_idt();
    for target in 3..8u32 {
        RACE_READY.fetch_add(1, Ordering::SeqCst);
        while RACE_GO.load(Ordering::SeqCst) < target {
            core::hint::spin_loop();
        }
        let r = register(target, VCPU_INFO_GFN, 64 * target);
        RACE_RESULT[target as usize].store((r as u64) << 1 | 1, Ordering::SeqCst);
    }
    let _ = vcpu;
    loop {
        x86::block();
    }
}

fn vcpu_info(c: &mut Checks) {
    for (offset, why) in [(1, "1"), (4, "4"), (4096 - 64 + 8, "past the page end")] {
        let r = register(2, VCPU_INFO_GFN, offset);
        println!("  vcpu_info at offset {why}: {r}");
        c.eq("register_vcpu_info at a misaligned or too-high offset: -ENXIO", r, -ENXIO);
    }
    // vCPU 0 and vCPU 2 race to register vCPUs 3..7's vcpu_info.
    let (init, up) = x86::start_vcpu(2, racer);
    c.eq("start vCPU 2", init | up, 0);
    let mut both = 0;
    for target in 3..8u32 {
        while RACE_READY.load(Ordering::SeqCst) < target - 2 {
            core::hint::spin_loop();
        }
        RACE_GO.store(target, Ordering::SeqCst);
        let mine = register(target, VCPU_INFO_GFN, 64 * target);
        while RACE_RESULT[target as usize].load(Ordering::SeqCst) == 0 {
            core::hint::spin_loop();
        }
        let theirs = (RACE_RESULT[target as usize].load(Ordering::SeqCst) as i64) >> 1;
        if mine == 0 && theirs == 0 {
            both += 1;
        }
        c.check("exactly one of two racing registrations wins", (mine == 0) != (theirs == 0));
        c.eq("the other gets -EINVAL", mine.min(theirs), -EINVAL);
    }
    println!("  racing registrations that both succeeded: {both}");
}

const GRANT_FRAME_GFN: u64 = 0x3d0;
const GRANTED: u64 = 0x6f0;
const MAP_A: u64 = 0x5000;
const MAP_B: u64 = 0x5001;
const GREF: u32 = 8;
const GRANT_ROUNDS: u32 = 2000;
static G_ROUND: AtomicU32 = AtomicU32::new(0);
static G_HANDLE: AtomicU32 = AtomicU32::new(0);
/// (round << 16 | status + 0x100) of the racer's unmap.
static G_RESULT: AtomicU32 = AtomicU32::new(0);

extern "C" fn unmapper(_: u32) -> ! {
    x86::install_idt();
    for r in 1..=GRANT_ROUNDS {
        while G_ROUND.load(Ordering::SeqCst) < r {
            core::hint::spin_loop();
        }
        let (_, st) = xen::unmap_grant(MAP_A, G_HANDLE.load(Ordering::SeqCst));
        G_RESULT.store(r << 16 | (st as i32 + 0x100) as u32, Ordering::SeqCst);
    }
    loop {
        x86::block();
    }
}

fn grant_race(c: &mut Checks) {
    use xen_abi::grant_table::*;
    let me = xen::domid();
    let (rc, frame) = xen::GrantFrame::map(0, GRANT_FRAME_GFN);
    c.eq("map grant frame 0", rc, 0);
    frame.grant(GREF, me, GRANTED as u32, false);
    let (init, up) = x86::start_vcpu(3, unmapper);
    c.eq("start vCPU 3", init | up, 0);
    let (mut one_won, mut kept_b, mut kept_a) = (0, 0, 0);
    for r in 1..=GRANT_ROUNDS {
        let (_, st, h) = xen::map_grant(me, GREF, MAP_A, false);
        if st != GNTST_OKAY {
            c.eq("map the grant", st as i64, 0);
            break;
        }
        G_HANDLE.store(h, Ordering::SeqCst);
        G_ROUND.store(r, Ordering::SeqCst);
        let (_, u0) = xen::unmap_grant(MAP_A, h);
        // Another mapping takes the freed handle; then the grant again at
        // the same place.
        let (_, sb, hb) = xen::map_grant(me, GREF, MAP_B, false);
        let (_, sa, ha) = xen::map_grant(me, GREF, MAP_A, false);
        while G_RESULT.load(Ordering::SeqCst) >> 16 != r {
            core::hint::spin_loop();
        }
        let u3 = (G_RESULT.load(Ordering::SeqCst) & 0xffff) as i32 - 0x100;
        one_won += ((u0 == GNTST_OKAY) != (u3 as i16 == GNTST_OKAY)) as u32;
        if sb == GNTST_OKAY {
            kept_b += (xen::unmap_grant(MAP_B, hb).1 == GNTST_OKAY) as u32;
        }
        if sa == GNTST_OKAY {
            kept_a += (xen::unmap_grant(MAP_A, ha).1 == GNTST_OKAY) as u32;
        }
    }
    println!(
        "  {GRANT_ROUNDS} rounds: one unmap won {one_won}, other mapping kept {kept_b}, new mapping kept {kept_a}"
    );
    c.eq("exactly one of two racing unmaps of a handle succeeds", one_won as i64, GRANT_ROUNDS as i64);
    c.eq("a mapping made meanwhile keeps its handle", kept_b as i64, GRANT_ROUNDS as i64);
    c.eq("the grant mapped again meanwhile stays mapped", kept_a as i64, GRANT_ROUNDS as i64);
    c.eq("no pin is left on the grant", (frame.flags(GREF) & (GTF_READING | GTF_WRITING)) as i64, 0);
    c.check("end access to the grant", frame.end_access(GREF));
}

fn p2m_budget(c: &mut Checks) {
    let before = xen::current_reservation(SELF);
    let victim = 0x700;
    xen::fill(victim, |i| (i as u8) ^ 0x5a);
    // Move shared_info to a new GiB each time: each move needs new p2m
    // tables, until the domain's budget is spent.
    let mut moves = 0;
    let mut last = 0;
    for k in 1..4096u64 {
        last = xen::add_to_physmap(XENMAPSPACE_SHARED_INFO, 0, k << 18);
        if last != 0 {
            break;
        }
        moves += 1;
    }
    println!("  shared_info moved {moves} times, then {last}");
    c.check("the p2m table budget runs out", last == -ENOMEM);
    let mut l = [victim];
    let r = xen::reservation(XENMEM_DECREASE_RESERVATION, SELF, &mut l, 0, 0);
    println!("  decrease of a frame in a 2 MiB mapping with no table budget left: {r}");
    c.eq("a frame that cannot be unmapped is not given back", r, 0);
    c.eq("the reservation is unchanged", xen::current_reservation(SELF), before);
    c.check("the frame is still there", xen::holds(victim, 0..4096, |i| (i as u8) ^ 0x5a));
    c.eq("shared_info moves back", xen::add_to_physmap(XENMAPSPACE_SHARED_INFO, 0, SHARED_INFO_GFN), 0);
}

fn console(c: &mut Checks) {
    let line = [b'x'; 127];
    let start = xen::now();
    // 128 KiB through console_io, in lines of 128 bytes.
    let mut buf = [b'#'; 4096];
    for k in 0..32 {
        buf[k * 128..k * 128 + 127].copy_from_slice(&line);
        buf[k * 128 + 127] = b'\n';
    }
    let mut bad = 0;
    for _ in 0..32 {
        bad += (console_write(&buf) != 0) as u32;
    }
    // 64 KiB through port 0xe9 in one REP OUTSB.
    let mut e9 = [b'y'; 65536];
    for k in 0..512 {
        e9[k * 128 + 127] = b'\n';
    }
    // SAFETY: REP OUTSB from a buffer of 65536 bytes, port 0xe9.
    unsafe {
        core::arch::asm!("rep outsb", in("dx") 0xe9u16, inout("rsi") e9.as_ptr() => _, inout("rcx") 65536u64 => _,
            options(nostack, readonly));
    }
    let took = xen::now() - start;
    // Let the allowance come back before the results are printed (after
    // running dry, a quarter of the 64 KiB burst at 16 KiB/s: 1 s).
    xen::spin_until(xen::after_ms(1500), || false);
    println!("  console flood: 192 KiB in {} ms", took / MS);
    c.eq("console_io writes succeed", bad as i64, 0);
}
