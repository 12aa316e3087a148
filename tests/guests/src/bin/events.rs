//! Two domains, `role=a` and `role=b`, joined by a static event channel
//! (port 10 on both sides) and a static grant (b's frame 0x500, reference
//! 0, to a), exercise Xen's event channels, grant tables and memory
//! operations against each other: ping-pong with upcalls, a channel made
//! with alloc_unbound / bind_interdomain and closed, grants mapped,
//! written, unmapped and copied both ways with GTF_reading / GTF_writing
//! watched by the granter, VIRQ_TIMER, IPIs, polls on masked ports, the
//! reservation operations, the console ring, and every error Xen gives
//! for bad ports, domains, references, handles and pointers.
//!
//! The shared page (b's frame 0x500, mapped by a at 0x1000) carries the
//! steps: word 0 is a's step, word 1 b's, then ports and references.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};
use test_guests::events::{self as e, arg, arg_num};
use test_guests::*;
use xen_abi::errno::*;
use xen_abi::event_channel::*;
use xen_abi::grant_table::*;
use xen_abi::memory as xm;

const STATIC_PORT: u32 = 10;
/// b's frame that b grants statically, and where a maps it.
const B_SHARED_GFN: u64 = 0x500;
const A_SHARED_MAP: u64 = 0x1000;
/// a's grant frame 0, and the pages a grants dynamically.
const A_GRANT_FRAME_AT: u64 = 0x1100;
const A_RW_PAGE: u64 = 0x600;
const A_RO_PAGE: u64 = 0x601;
/// Where b maps a's grants, and b's own scratch page.
const B_MAP_AT: u64 = 0x1200;
const B_SCRATCH: u64 = 0x700;
const SELF: u16 = xen_abi::DOMID_SELF;
const WAIT_MS: u64 = 20_000;

fn word(page: u64, i: usize) -> &'static AtomicU32 {
    // SAFETY: `page` is mapped (identity) guest memory shared with the peer;
    // words are changed by both sides, hence atomics.
    unsafe { AtomicU32::from_ptr(((page << 12) + 4 * i as u64) as *mut u32) }
}

fn fill(page: u64, byte: u8) {
    // SAFETY: the page is this guest's RAM or a mapped grant (identity).
    unsafe { core::ptr::write_bytes((page << 12) as *mut u8, byte, 4096) };
}

fn bytes(page: u64) -> &'static [u8] {
    // SAFETY: as for fill.
    unsafe { core::slice::from_raw_parts((page << 12) as *const u8, 4096) }
}

/// Moves this side's step on and tells the peer.
fn step(shared: u64, me: usize, n: u32) {
    word(shared, me).store(n, Ordering::SeqCst);
    e::send(STATIC_PORT);
}

fn await_step(c: &mut Checks, shared: u64, peer: usize, n: u32) {
    let ok = e::wait_until(WAIT_MS, || word(shared, peer).load(Ordering::SeqCst) >= n);
    c.check(if peer == 0 { "a reached the next step" } else { "b reached the next step" }, ok);
    if !ok {
        c.finish();
    }
}

#[unsafe(no_mangle)]
extern "C" fn pvh_main(si_paddr: u64) -> ! {
    let cmdline = c_str(start_info(si_paddr).cmdline_paddr);
    let peer = arg_num(cmdline, "peer").unwrap_or(0) as u16;
    let rounds = arg_num(cmdline, "rounds").unwrap_or(100) as u32;
    let mut c = Checks::new();
    x86::install_idt();
    c.eq("map shared_info", x86::map_shared_info(0x3f0), 0);
    c.eq("HVM_PARAM_CALLBACK_IRQ (vector)", e::use_callback_vector(), 0);
    let bench = arg(cmdline, "mode") == Some("bench");
    match arg(cmdline, "role") {
        Some("a") if bench => bench_a(&mut c, peer, rounds),
        Some("b") if bench => bench_b(&mut c, rounds),
        Some("a") => role_a(&mut c, peer, rounds),
        Some("b") => role_b(&mut c, peer, arg_num(cmdline, "me").unwrap_or(0) as u16, rounds),
        _ => println!("role=a or role=b, please"),
    }
    c.finish()
}

/// `rounds` round trips on `port`, which has seen `base` events before
/// (fixed by the protocol: counting them here could race with the peer).
fn ping_pong(c: &mut Checks, port: u32, base: u32, rounds: u32, first: bool) -> u64 {
    let t0 = rdtsc();
    for i in 0..rounds {
        if first {
            e::send(port);
            if !e::wait_for(port, base + i, WAIT_MS) {
                break;
            }
        } else {
            if !e::wait_for(port, base + i, WAIT_MS) {
                break;
            }
            e::send(port);
        }
    }
    let took = rdtsc() - t0;
    c.eq("every round trip came back", (e::events(port) - base) as i64, rounds as i64);
    took / rounds.max(1) as u64
}

fn role_a(c: &mut Checks, peer: u16, rounds: u32) {
    let per = ping_pong(c, STATIC_PORT, 0, rounds, true);
    println!("BENCH evtchn_round_trip {per} per round trip ({rounds} rounds, upcalls both ways)");
    let (rc, frames, max) = e::query_size(SELF);
    c.eq("query_size", rc, 0);
    c.check("one grant frame of at most 64", frames == 1 && max == 64);

    // The static grant: b's page, mapped here.
    let (rc, h) = e::map(peer, 0, A_SHARED_MAP, GNTMAP_HOST_MAP);
    c.eq("map b's static grant", rc, GNTST_OKAY as i64);
    let sp = A_SHARED_MAP;
    let (rc, h2) = e::map(peer, 0, A_SHARED_MAP + 1, GNTMAP_HOST_MAP);
    c.eq("the same grant mapped twice", rc, GNTST_OKAY as i64);

    // A channel made at run time: a allocates, b binds.
    let (rc, p) = e::alloc_unbound(SELF, peer);
    c.eq("alloc_unbound for the peer", rc, 0);
    let s = e::status(SELF, p);
    c.check("it is unbound, waiting for the peer", s.0 == 0 && s.1 == EVTCHNSTAT_UNBOUND && s.3 == peer);
    word(sp, 2).store(p, Ordering::SeqCst);
    step(sp, 0, 1);
    await_step(c, sp, 1, 1);
    let q = word(sp, 3).load(Ordering::SeqCst);
    c.check("b's first send on the new channel arrived", e::wait_for(p, 0, WAIT_MS));
    let s = e::status(SELF, p);
    c.check("status: interdomain to b's port", s == (0, EVTCHNSTAT_INTERDOMAIN, 0, peer, q));
    let per = ping_pong(c, p, 1, 10, true);
    println!("  dynamic channel round trip {per}");
    step(sp, 0, 2);
    await_step(c, sp, 1, 2);
    // b closed its end: a's end waits for b again, sends are dropped.
    let s = e::status(SELF, p);
    c.check("after b's close a's end is unbound, waiting for b", s.0 == 0 && s.1 == EVTCHNSTAT_UNBOUND && s.3 == peer);
    c.eq("send on an unbound port is dropped", e::send(p), 0);
    c.eq("close", e::close(p), 0);
    c.eq("close again", e::close(p), -EINVAL);
    c.eq("send on a closed port", e::send(p), -EINVAL);

    // Grants made at run time, watched while b uses them.
    c.eq("map grant frame 0 (XENMAPSPACE_grant_table)", e::map_grant_frame(0, A_GRANT_FRAME_AT), 0);
    c.eq("grant frame 64 is beyond the table", e::map_grant_frame(64, A_GRANT_FRAME_AT + 1), -EINVAL);
    let table = A_GRANT_FRAME_AT << 12;
    fill(A_RW_PAGE, b'A');
    fill(A_RO_PAGE, b'R');
    e::grant_access(table, 5, peer, A_RW_PAGE as u32, false);
    e::grant_access(table, 6, peer, A_RO_PAGE as u32, true);
    // A grant of a frame a does not have.
    e::grant_access(table, 8, peer, 0xf_0000, false);
    word(sp, 4).store(5, Ordering::SeqCst);
    word(sp, 5).store(6, Ordering::SeqCst);
    step(sp, 0, 3);
    await_step(c, sp, 1, 3);
    let f = e::grant_flags(table, 5);
    c.eq(
        "mapped writable: GTF_reading and GTF_writing set",
        (f & (GTF_READING | GTF_WRITING)) as i64,
        (GTF_READING | GTF_WRITING) as i64,
    );
    c.check("access cannot end while it is mapped", !e::end_access(table, 5));
    c.check("b's writes are here", bytes(A_RW_PAGE)[..4096].iter().all(|&x| x == b'B'));
    step(sp, 0, 4);
    await_step(c, sp, 1, 4);
    c.eq("unmapped and copied: the flags are back", e::grant_flags(table, 5) as i64, GTF_PERMIT_ACCESS as i64);
    c.eq("the read-only grant's flags too", e::grant_flags(table, 6) as i64, (GTF_PERMIT_ACCESS | GTF_READONLY) as i64);
    let page = bytes(A_RW_PAGE);
    c.check("b's grant copy into this page landed at its offset", page[200..250].iter().all(|&x| x == b'C'));
    c.check("and nothing else changed", page[..200].iter().chain(&page[250..]).all(|&x| x == b'B'));
    c.check("now access ends", e::end_access(table, 5));

    // VIRQ_TIMER and an IPI to this vCPU.
    let (rc, t) = e::bind_virq(VIRQ_TIMER, 0);
    c.eq("bind_virq VIRQ_TIMER", rc, 0);
    c.eq("bind it again", e::bind_virq(VIRQ_TIMER, 0).0, -EEXIST);
    x86::set_singleshot(x86::now_ns() + 2_000_000, 0);
    c.check("the singleshot timer raised VIRQ_TIMER", e::wait_for(t, 0, WAIT_MS));
    let s = e::status(SELF, t);
    c.check("status: VIRQ 0 on vCPU 0", s == (0, EVTCHNSTAT_VIRQ, 0, 0, 0));
    c.eq("bind_vcpu on a per-vCPU VIRQ", e::bind_vcpu(t, 0), -EINVAL);
    let (rc, i) = e::bind_ipi(0);
    c.eq("bind_ipi", rc, 0);
    c.eq("send to ourselves", e::send(i), 0);
    c.check("the IPI's upcall arrived", e::wait_for(i, 0, WAIT_MS));

    // A masked port: the peer's send ends a poll but raises no upcall
    // until it is unmasked.
    // No timer may end the poll (it would raise VIRQ_TIMER, an upcall).
    c.eq("stop the singleshot timer", x86::vcpu_op(xen_abi::vcpu::VCPUOP_STOP_SINGLESHOT_TIMER, 0, 0), 0);
    e::mask(STATIC_PORT);
    let before = e::events(STATIC_PORT);
    step(sp, 0, 5);
    let r = e::poll(STATIC_PORT, x86::now_ns() + WAIT_MS * 1_000_000);
    c.eq("SCHEDOP_poll on the masked port", r, 0);
    c.check("it returned because the port is pending", e::is_pending(STATIC_PORT));
    c.eq("no upcall while masked", e::events(STATIC_PORT) as i64, before as i64);
    c.eq("unmask", e::unmask(STATIC_PORT), 0);
    c.check("unmasking a pending port delivers it", e::wait_for(STATIC_PORT, before, WAIT_MS));
    await_step(c, sp, 1, 5);

    // Arguments need no alignment (Xen copies them byte-wise).
    let mut buf = [0u8; 32];
    let at = buf.as_mut_ptr() as u64 | 1;
    let st = xen_abi::event_channel::Status { dom: SELF, port: i, ..Default::default() };
    // SAFETY: 24 bytes at an odd address inside `buf`.
    unsafe { core::ptr::copy_nonoverlapping(xen_abi::Pod::as_bytes(&st).as_ptr(), at as *mut u8, 24) };
    c.eq("status from an unaligned argument", e::raw_op(EVTCHNOP_STATUS, at), 0);
    // SAFETY: as above.
    c.eq("and its answer", unsafe { core::ptr::read_unaligned((at + 8) as *const u32) } as i64, EVTCHNSTAT_IPI as i64);

    // Errors, as Xen gives them.
    for (name, got, want) in [
        ("send on port 4096", e::send(4096), -EINVAL),
        ("send on port 0", e::send(0), -EINVAL),
        ("send on a VIRQ port", e::send(t), -EINVAL),
        ("close port 0", e::close(0), -EINVAL),
        ("close a port never allocated", e::close(3000), -EINVAL),
        ("unmask a port never allocated", e::unmask(3000), -EINVAL),
        ("bind_interdomain to a bound port", e::bind_interdomain(peer, STATIC_PORT).0, -EINVAL),
        ("bind_interdomain to a missing domain", e::bind_interdomain(99, 1).0, -ESRCH),
        ("bind_interdomain to a port that does not exist", e::bind_interdomain(peer, 4000).0, -EINVAL),
        ("bind_virq 24", e::bind_virq(24, 0).0, -EINVAL),
        ("bind_virq on a missing vCPU", e::bind_virq(VIRQ_TIMER, 5).0, -ENOENT),
        ("bind_virq of a global VIRQ on vCPU 1", e::bind_virq(VIRQ_CONSOLE, 1).0, -EINVAL),
        ("bind_ipi on a missing vCPU", e::bind_ipi(3).0, -ENOENT),
        ("bind_vcpu to a missing vCPU", e::bind_vcpu(i, 1), -ENOENT),
        ("alloc_unbound in another domain", e::alloc_unbound(peer, SELF).0, -EPERM),
        ("alloc_unbound in a missing domain", e::alloc_unbound(99, SELF).0, -ESRCH),
        ("status of another domain's port", e::status(peer, STATIC_PORT).0, -EPERM),
        ("status of a port another domain does not have", e::status(peer, 4000).0, -EINVAL),
        ("status in a missing domain", e::status(99, 1).0, -ESRCH),
        ("reset another domain", e::reset(peer), -EPERM),
        ("init_control (no FIFO ABI)", e::raw_op(EVTCHNOP_INIT_CONTROL, 0x100), -ENOSYS),
        ("send with an unmapped argument", e::raw_op(EVTCHNOP_SEND, 0xdead_0000), -EFAULT),
        ("status with an unmapped argument", e::raw_op(EVTCHNOP_STATUS, 0xdead_0000), -EFAULT),
        ("query_size of another domain", e::query_size(peer).0, GNTST_PERMISSION_DENIED as i64),
        ("query_size of a missing domain", e::query_size(99).0, GNTST_BAD_DOMAIN as i64),
        ("map_grant_ref with an unmapped argument", e::raw_gnt(GNTTABOP_MAP_GRANT_REF, 0xdead_0000, 1), -EFAULT),
        ("copy with an unmapped argument", e::raw_gnt(GNTTABOP_COPY, 0xdead_0000, 1), -EFAULT),
        ("unmap a handle never given", e::unmap(A_SHARED_MAP + 2, 77), GNTST_BAD_HANDLE as i64),
        ("unmap at the wrong address", e::unmap(A_SHARED_MAP + 5, h), GNTST_GENERAL_ERROR as i64),
    ] {
        c.eq(name, got, want);
    }

    memory(c, peer);
    // b may finish now.
    step(sp, 0, 6);
    c.eq("unmap b's static grant", e::unmap(A_SHARED_MAP, h), 0);
    c.eq("and the second mapping", e::unmap(A_SHARED_MAP + 1, h2), 0);
}

fn memory(c: &mut Checks, peer: u16) {
    let cur = e::reservation_query(xm::XENMEM_CURRENT_RESERVATION, SELF);
    let max = e::reservation_query(xm::XENMEM_MAXIMUM_RESERVATION, SELF);
    c.check("current reservation is at most the maximum", cur > 0 && cur <= max);
    // Two pages out, as a balloon driver gives them back.
    fill(0x702, 0x55);
    c.eq(
        "decrease_reservation of two pages",
        e::reservation(xm::XENMEM_DECREASE_RESERVATION, &[0x702, 0x703], 0, SELF),
        2,
    );
    c.eq("the reservation dropped by two", e::reservation_query(xm::XENMEM_CURRENT_RESERVATION, SELF), cur - 2);
    c.eq(
        "a page already given back stops the operation",
        e::reservation(xm::XENMEM_DECREASE_RESERVATION, &[0x702], 0, SELF),
        0,
    );
    c.eq("populate_physmap brings them back", e::reservation(xm::XENMEM_POPULATE_PHYSMAP, &[0x702, 0x703], 0, SELF), 2);
    c.check("zeroed", bytes(0x702).iter().all(|&x| x == 0));
    c.eq("back where it was", e::reservation_query(xm::XENMEM_CURRENT_RESERVATION, SELF), cur);
    c.eq(
        "the grant mapping is not RAM to give back",
        e::reservation(xm::XENMEM_DECREASE_RESERVATION, &[A_SHARED_MAP], 0, SELF),
        0,
    );
    c.eq("nor is shared_info", e::reservation(xm::XENMEM_DECREASE_RESERVATION, &[0x3f0], 0, SELF), 0);
    c.eq("an order above 9 does nothing", e::reservation(xm::XENMEM_POPULATE_PHYSMAP, &[0], 10, SELF), 0);
    c.eq("an unaligned extent does nothing", e::reservation(xm::XENMEM_DECREASE_RESERVATION, &[0x701], 1, SELF), 0);
    c.eq("another domain's memory: nothing", e::reservation(xm::XENMEM_DECREASE_RESERVATION, &[0x700], 0, peer), 0);
    // Up to the maximum and not past it.
    let room = max - cur;
    let list = [0u64; 4];
    let want = room.min(4);
    c.eq(
        "increase_reservation up to the maximum",
        e::reservation(xm::XENMEM_INCREASE_RESERVATION, &list, 0, SELF),
        want,
    );
    c.eq("at the maximum now", e::reservation_query(xm::XENMEM_CURRENT_RESERVATION, SELF), cur + want);
    c.eq("populate at the maximum does nothing", e::reservation(xm::XENMEM_POPULATE_PHYSMAP, &[0x704], 0, SELF), 0);
    c.eq("one page out", e::reservation(xm::XENMEM_DECREASE_RESERVATION, &[0x704], 0, SELF), 1);
    c.eq(
        "one page in, the next would pass the maximum",
        e::reservation(xm::XENMEM_POPULATE_PHYSMAP, &[0x704, 0x705], 0, SELF),
        1,
    );
    c.eq("another domain's reservation", e::reservation_query(xm::XENMEM_CURRENT_RESERVATION, peer), -EPERM);
    c.eq("a missing domain's", e::reservation_query(xm::XENMEM_CURRENT_RESERVATION, 99), -ESRCH);
}

fn role_b(c: &mut Checks, peer: u16, me_id: u16, rounds: u32) {
    ping_pong(c, STATIC_PORT, 0, rounds, false);
    let sp = B_SHARED_GFN;
    await_step(c, sp, 0, 1);
    let p = word(sp, 2).load(Ordering::SeqCst);
    let (rc, q) = e::bind_interdomain(peer, p);
    c.eq("bind_interdomain to a's unbound port", rc, 0);
    c.check("the new port starts pending (Xen)", e::wait_for(q, 0, WAIT_MS));
    word(sp, 3).store(q, Ordering::SeqCst);
    c.eq("send on the new channel", e::send(q), 0);
    step(sp, 1, 1);
    ping_pong(c, q, 1, 10, false);
    let s = e::status(SELF, q);
    c.check("status: interdomain to a's port", s == (0, EVTCHNSTAT_INTERDOMAIN, 0, peer, p));
    c.eq("bind_vcpu of an interdomain port", e::bind_vcpu(q, 0), 0);
    await_step(c, sp, 0, 2);
    c.eq("close the new channel", e::close(q), 0);
    step(sp, 1, 2);

    await_step(c, sp, 0, 3);
    let (rw, ro) = (word(sp, 4).load(Ordering::SeqCst), word(sp, 5).load(Ordering::SeqCst));
    let (rc, h) = e::map(peer, rw, B_MAP_AT, GNTMAP_HOST_MAP);
    c.eq("map a's grant writable", rc, GNTST_OKAY as i64);
    c.check("a's data is there", bytes(B_MAP_AT).iter().all(|&x| x == b'A'));
    fill(B_MAP_AT, b'B');
    step(sp, 1, 3);
    await_step(c, sp, 0, 4);
    c.eq("unmap", e::unmap(B_MAP_AT, h), GNTST_OKAY as i64);
    c.eq("unmap again", e::unmap(B_MAP_AT, h), GNTST_BAD_HANDLE as i64);
    c.eq(
        "a read-only grant mapped writable",
        e::map(peer, ro, B_MAP_AT, GNTMAP_HOST_MAP).0,
        GNTST_GENERAL_ERROR as i64,
    );
    let (rc, h) = e::map(peer, ro, B_MAP_AT, GNTMAP_HOST_MAP | GNTMAP_READONLY);
    c.eq("mapped read-only", rc, GNTST_OKAY as i64);
    c.check("its data is there", bytes(B_MAP_AT).iter().all(|&x| x == b'R'));
    c.eq("unmap it", e::unmap(B_MAP_AT, h), GNTST_OKAY as i64);
    // Copies, both ways and in part.
    let me = SELF;
    c.eq(
        "copy from a's grant to a frame of ours",
        e::copy((rw as u64, peer, 0), (B_SCRATCH, me, 0), 4096, GNTCOPY_SOURCE_GREF),
        0,
    );
    c.check("the copy has a's page (written by us through the mapping)", bytes(B_SCRATCH).iter().all(|&x| x == b'B'));
    fill(B_SCRATCH, b'C');
    c.eq(
        "copy 50 bytes of ours into a's grant at offset 200",
        e::copy((B_SCRATCH, me, 100), (rw as u64, peer, 200), 50, GNTCOPY_DEST_GREF),
        0,
    );
    for (name, got, want) in [
        (
            "copy into a read-only grant",
            e::copy((B_SCRATCH, me, 0), (ro as u64, peer, 0), 8, GNTCOPY_DEST_GREF),
            GNTST_GENERAL_ERROR as i64,
        ),
        (
            "copy past the end of the page",
            e::copy((rw as u64, peer, 4000), (B_SCRATCH, me, 0), 200, GNTCOPY_SOURCE_GREF),
            GNTST_BAD_COPY_ARG as i64,
        ),
        (
            "copy from a frame we do not have",
            e::copy((0x12345, me, 0), (B_SCRATCH, me, 0), 8, 0),
            GNTST_BAD_PAGE as i64,
        ),
        (
            "a frame named by domain id, not DOMID_SELF",
            e::copy((B_SCRATCH, peer, 0), (B_SCRATCH, me, 0), 8, 0),
            GNTST_PERMISSION_DENIED as i64,
        ),
        (
            "copy from a grant of a missing domain",
            e::copy((rw as u64, 99, 0), (B_SCRATCH, me, 0), 8, GNTCOPY_SOURCE_GREF),
            GNTST_BAD_DOMAIN as i64,
        ),
        ("map a reference beyond the table", e::map(peer, 600, B_MAP_AT, GNTMAP_HOST_MAP).0, GNTST_BAD_GNTREF as i64),
        ("map from a missing domain", e::map(99, 0, B_MAP_AT, GNTMAP_HOST_MAP).0, GNTST_BAD_DOMAIN as i64),
        ("map without GNTMAP_host_map", e::map(peer, rw, B_MAP_AT, 0).0, GNTST_BAD_GNTREF as i64),
        (
            "map for a device (not for a PVH domain)",
            e::map(peer, rw, B_MAP_AT, GNTMAP_HOST_MAP | GNTMAP_DEVICE_MAP).0,
            GNTST_GENERAL_ERROR as i64,
        ),
        (
            "map our own grant that was made to a",
            e::map(me_id, 0, B_MAP_AT, GNTMAP_HOST_MAP).0,
            GNTST_GENERAL_ERROR as i64,
        ),
        ("map a reference a never filled in", e::map(peer, 7, B_MAP_AT, GNTMAP_HOST_MAP).0, GNTST_GENERAL_ERROR as i64),
        ("map a grant of a frame a does not have", e::map(peer, 8, B_MAP_AT, GNTMAP_HOST_MAP).0, GNTST_BAD_PAGE as i64),
    ] {
        c.eq(name, got, want);
    }
    step(sp, 1, 4);

    // a polls its masked end of the static channel: send once it waits.
    await_step(c, sp, 0, 5);
    let spin_until = x86::now_ns() + 2_000_000;
    while x86::now_ns() < spin_until {
        core::hint::spin_loop();
    }
    e::send(STATIC_PORT);
    step(sp, 1, 5);

    // The console ring.
    let (rc, pfn) = e::get_param(xen_abi::hvm::PARAM_CONSOLE_PFN);
    let (rc2, port) = e::get_param(xen_abi::hvm::PARAM_CONSOLE_EVTCHN);
    c.check("the console ring's frame and port are params", rc == 0 && rc2 == 0 && pfn == 0xfefff && port != 0);
    c.eq("console ring write and notify", e::console_ring_write(pfn, port as u32, b"written to the console ring\n"), 0);
    // a still needs this domain for its checks.
    await_step(c, sp, 0, 6);
}

/// `mode=bench`: figures for `cargo xtask bench` (under icount the TSC
/// counts instructions): the event round trip, a grant map + unmap pair,
/// and grant copy throughput.
fn bench_a(c: &mut Checks, peer: u16, rounds: u32) {
    // Warm up, then measure.
    ping_pong(c, STATIC_PORT, 0, 10, true);
    let per = ping_pong(c, STATIC_PORT, 10, rounds, true);
    println!("BENCH evtchn_round_trip {per} per round trip ({rounds} rounds, two domains, upcalls both ways)");
    let (rc, h) = e::map(peer, 0, A_SHARED_MAP, GNTMAP_HOST_MAP);
    c.eq("map b's static grant", rc, 0);
    c.eq("unmap it", e::unmap(A_SHARED_MAP, h), 0);
    let n = rounds.max(1) as u64;
    let t0 = rdtsc();
    let mut ok = 0;
    for _ in 0..n {
        let (rc, h) = e::map(peer, 0, A_SHARED_MAP, GNTMAP_HOST_MAP);
        if rc == 0 && e::unmap(A_SHARED_MAP, h) == 0 {
            ok += 1;
        }
    }
    let per = (rdtsc() - t0) / n;
    c.eq("every map and unmap succeeded", ok, n as i64);
    println!("BENCH grant_map_unmap {per} per map+unmap pair ({n} pairs)");
    let t0 = rdtsc();
    let mut ok = 0;
    for _ in 0..n {
        if e::copy((0, peer, 0), (B_SCRATCH, SELF, 0), 4096, GNTCOPY_SOURCE_GREF) == 0 {
            ok += 1;
        }
    }
    let took = (rdtsc() - t0).max(1);
    c.eq("every copy succeeded", ok, n as i64);
    println!(
        "BENCH grant_copy_4k {} per 4 KiB copy; {} bytes per 1000 instructions ({n} copies)",
        took / n,
        n * 4096 * 1000 / took
    );
    e::send(STATIC_PORT);
}

fn bench_b(c: &mut Checks, rounds: u32) {
    ping_pong(c, STATIC_PORT, 0, 10, false);
    ping_pong(c, STATIC_PORT, 10, rounds, false);
    // Stay until a is done with the grant.
    let done = e::wait_for(STATIC_PORT, 10 + rounds, 600_000);
    c.check("a finished", done);
}
