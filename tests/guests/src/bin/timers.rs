//! Xen time for a PVH guest: the pvclock in vcpu_info (consistent, in step
//! with the TSC rate Xen's CPUID leaf states, never going backwards), the
//! wall clock, singleshot and periodic timers waking SCHEDOP_block,
//! set_timer_op, SCHEDOP_poll with a timeout, runstate accounting, moving
//! vcpu_info, and the local APIC timer interrupting the guest.
//!
//! Timer lateness is bounded by LATE_MS: generous, because the machine
//! may be an emulator sharing the host with other tests.

#![no_std]
#![no_main]

use test_guests::x86::{self, vcpu_op};
use test_guests::*;
use xen_abi::errno::*;
use xen_abi::vcpu::*;

const MS: u64 = 1_000_000;
/// How late a timer may fire and still pass.
const LATE_MS: u64 = 50;
const VCPU_INFO_PAGE: u64 = 0x3e0_000;
const APIC_TIMER_VECTOR: u8 = 0xec;

fn timed_block(c: &mut Checks, name: &str, deadline: u64) -> u64 {
    c.eq(name, x86::block(), 0);
    let woke = x86::now_ns_of(0);
    c.check("it did not wake before its deadline", woke >= deadline);
    let late = woke.saturating_sub(deadline);
    println!("  {name}: {} us after the deadline", late / 1000);
    c.check("it woke within the bound", late <= LATE_MS * MS);
    woke
}

#[unsafe(no_mangle)]
extern "C" fn pvh_main(_: u64) -> ! {
    let mut c = Checks::new();
    c.eq("map shared_info", x86::map_shared_info(0x3f0), 0);

    // pvclock: valid at once, the TSC rate it implies is the one Xen's
    // CPUID leaf 0x40000003 states, and it only moves forward.
    let t = x86::time_info();
    c.check("vcpu_time_info is consistent (even version)", t.version % 2 == 0 && t.version > 0);
    c.check("it has a multiplier", t.tsc_to_system_mul != 0);
    let mut khz = (1_000_000u128 << 32) / t.tsc_to_system_mul as u128;
    if t.tsc_shift < 0 {
        khz <<= -t.tsc_shift;
    } else {
        khz >>= t.tsc_shift;
    }
    let stated = cpuid(0x4000_0003, 0).ecx as u128;
    println!("  pvclock TSC {} kHz, CPUID says {} kHz", khz, stated);
    c.check("pvclock's TSC rate matches CPUID's", khz.abs_diff(stated) * 1000 <= stated);
    let mut last = x86::now_ns_of(0);
    let mut backwards = 0;
    for _ in 0..20_000 {
        let n = x86::now_ns_of(0);
        if n < last {
            backwards += 1;
        }
        last = n;
    }
    c.eq("pvclock never goes backwards", backwards, 0);
    let s0 = x86::now_ns_of(0);
    let r0 = rdtsc();
    for _ in 0..2_000_000 {
        core::hint::spin_loop();
    }
    let ns = x86::now_ns_of(0) - s0;
    let by_tsc = ((rdtsc() - r0) as u128 * 1_000_000 / stated.max(1)) as u64;
    c.check("pvclock and TSC agree over a stretch", ns.abs_diff(by_tsc) <= by_tsc / 100 + 1000);

    // Wall clock: set, consistent, this century.
    let si = x86::shared_info();
    // SAFETY: shared_info is mapped there (identity-mapped memory).
    let (wc_version, wc_sec) = unsafe {
        (core::ptr::read_volatile((si + 0xc00) as *const u32), core::ptr::read_volatile((si + 0xc04) as *const u32))
    };
    c.check("wall clock consistent", wc_version % 2 == 0);
    println!("  wall clock at boot: {wc_sec} s since 1970");
    c.check("wall clock is after 2024", wc_sec > 1_704_067_200);

    // Singleshot timers wake SCHEDOP_block, not before their deadline.
    let d = x86::now_ns_of(0) + 5 * MS;
    c.eq("VCPUOP_set_singleshot_timer", x86::set_singleshot(d, 0), 0);
    timed_block(&mut c, "block until the singleshot timer", d);
    let d = x86::now_ns_of(0) + 3 * MS;
    // SAFETY: set_timer_op takes a time, no pointer.
    c.eq("set_timer_op", unsafe { hypercall(xen_abi::hypercall::SET_TIMER_OP, d, 0, 0, 0, 0) }, 0);
    timed_block(&mut c, "block until set_timer_op's timer", d);
    // A deadline already past: the event comes at once; with the "future"
    // flag it is refused.
    c.eq("a past deadline with VCPU_SSHOTTMR_future", x86::set_singleshot(1, SSHOTTMR_FUTURE), -ETIME);
    c.eq("a past deadline without it", x86::set_singleshot(1, 0), 0);
    let before = x86::now_ns_of(0);
    c.eq("block returns at once", x86::block(), 0);
    c.check("at once", x86::now_ns_of(0) - before < LATE_MS * MS);

    // Periodic: ten periods of 4 ms take at least 40 ms.
    let p = SetPeriodicTimer { period_ns: 4 * MS };
    c.eq("VCPUOP_set_periodic_timer", vcpu_op(VCPUOP_SET_PERIODIC_TIMER, 0, &p as *const _ as u64), 0);
    let start = x86::now_ns_of(0);
    for _ in 0..10 {
        x86::block();
    }
    let took = x86::now_ns_of(0) - start;
    println!("  ten 4 ms periods took {} us", took / 1000);
    c.check("periodic timer: not too early", took >= 36 * MS);
    c.check("periodic timer: not too late", took <= 40 * MS + 10 * LATE_MS * MS);
    c.eq("VCPUOP_stop_periodic_timer", vcpu_op(VCPUOP_STOP_PERIODIC_TIMER, 0, 0), 0);

    // SCHEDOP_poll with no ports and a timeout.
    let d = x86::now_ns_of(0) + 4 * MS;
    let poll = xen_abi::sched::SchedPoll { ports: 0, nr_ports: 0, _pad: 0, timeout: d };
    // SAFETY: `poll` is a valid sched_poll.
    let r = unsafe {
        hypercall(xen_abi::hypercall::SCHED_OP, xen_abi::sched::SCHEDOP_POLL, &poll as *const _ as u64, 0, 0, 0)
    };
    c.eq("SCHEDOP_poll with a timeout", r, 0);
    let woke = x86::now_ns_of(0);
    c.check("poll waited for its timeout", woke >= d && woke - d <= LATE_MS * MS);

    // Runstate: time running and blocked both counted.
    let mut rs = RunstateInfo::default();
    c.eq("VCPUOP_get_runstate_info", vcpu_op(VCPUOP_GET_RUNSTATE_INFO, 0, &mut rs as *mut _ as u64), 0);
    c.eq("the caller is running", rs.state as i64, RUNSTATE_RUNNING as i64);
    c.check("time running counted", rs.time[RUNSTATE_RUNNING as usize] > 0);
    c.check("time blocked counted", rs.time[RUNSTATE_BLOCKED as usize] >= 20 * MS);
    let mut area = RunstateInfo::default();
    let reg = RegisterArea { addr: &mut area as *mut _ as u64 };
    c.eq("register a runstate area", vcpu_op(VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, &reg as *const _ as u64), 0);
    // SAFETY: the hypervisor wrote it (volatile: not this code).
    c.check("the area is filled in", unsafe { core::ptr::read_volatile(&area) }.time[0] > 0);

    // vcpu_info moves to a page of the guest's choosing, time included.
    let info = RegisterVcpuInfo { mfn: VCPU_INFO_PAGE >> 12, offset: 128, rsvd: 0 };
    c.eq("VCPUOP_register_vcpu_info", vcpu_op(VCPUOP_REGISTER_VCPU_INFO, 0, &info as *const _ as u64), 0);
    c.eq("registering twice is refused", vcpu_op(VCPUOP_REGISTER_VCPU_INFO, 0, &info as *const _ as u64), -EINVAL);
    x86::use_vcpu_info_at(VCPU_INFO_PAGE + 128);
    let moved = x86::read_time_info(VCPU_INFO_PAGE + 128 + 32);
    c.check("time info is at the new place", moved.tsc_to_system_mul != 0 && moved.version % 2 == 0);
    let a = x86::now_ns_of(0);
    c.check("and keeps time from there", a >= last);
    let bad = RegisterVcpuInfo { mfn: 0x3e1, offset: 4090, rsvd: 0 };
    c.eq(
        "a vcpu_info across a page end is refused (-ENXIO, before the already-registered check, as Xen)",
        vcpu_op(VCPUOP_REGISTER_VCPU_INFO, 0, &bad as *const _ as u64),
        -ENXIO,
    );

    // The local APIC timer (one-shot, x2APIC) interrupts the guest.
    x86::install_idt();
    x86::x2apic_enable();
    x86::wrmsr(0x83e, 0xb); // divide by 1: 1 GHz
    x86::wrmsr(0x832, APIC_TIMER_VECTOR as u64); // one-shot
    let start = x86::now_ns_of(0);
    x86::wrmsr(0x838, 2_000_000); // 2 ms
    while x86::interrupts(0, APIC_TIMER_VECTOR) == 0 && x86::now_ns_of(0) - start < 1000 * MS {
        x86::wait_for_interrupt();
    }
    x86::cli();
    c.eq("the APIC timer interrupt arrived", x86::interrupts(0, APIC_TIMER_VECTOR) as i64, 1);
    let at = x86::last_interrupt_ns(0);
    c.check("not before 2 ms", at >= start + 2 * MS);
    c.check("within the bound", at <= start + 2 * MS + LATE_MS * MS);
    // Periodic, 1 ms: five interrupts come (halting in between), none
    // sooner than its period after the one before. (How many arrive in a
    // fixed time would depend on how busy the emulator's host is.)
    let before = x86::interrupts(0, APIC_TIMER_VECTOR);
    x86::wrmsr(0x832, (1 << 17) | APIC_TIMER_VECTOR as u64);
    let start = x86::now_ns_of(0);
    x86::wrmsr(0x838, 1_000_000);
    while x86::interrupts(0, APIC_TIMER_VECTOR) - before < 5 && x86::now_ns_of(0) - start < 1000 * MS {
        x86::wait_for_interrupt();
    }
    x86::cli();
    x86::wrmsr(0x838, 0);
    let n = x86::interrupts(0, APIC_TIMER_VECTOR) - before;
    let took = x86::last_interrupt_ns(0) - start;
    println!("  periodic APIC timer: {n} interrupts, the last after {} us", took / 1000);
    c.check("periodic APIC timer fires repeatedly", n >= 5);
    c.check("and never before its period", took >= n as u64 * MS);
    c.finish()
}
