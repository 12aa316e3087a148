//! Event channels between two domains and within one, as Xen 4.17 gives
//! them: a pair of these guests (`role=ping` and `role=pong`, two vCPUs
//! each) joined at boot by two static interdomain channels (`port=`, the
//! ping-pong channel, and `ctl=`, the control channel) and a statically
//! granted mailbox page (ping's frame, `gref=`), from ping's module line:
//!
//! ```text
//! domu name=ping vcpus=2 evtchn=10:pong:10,11:pong:11 grant=0:pong:0x500
//!      cmdline="role=ping peer=2 port=10 ctl=11 gref=0 rounds=1000 upcall=vector"
//! domu name=pong vcpus=2 cmdline="role=pong peer=1 port=10 ctl=11 gref=0 rounds=1000"
//! ```
//!
//! Ping-pong with upcalls (`upcall=vector`: per-vCPU local APIC vector,
//! else the callback vector); a channel made with alloc_unbound and
//! bind_interdomain, used, and closed by ping, leaving pong's end unbound;
//! SCHEDOP_poll on a masked port ended by the peer's send, and
//! EVTCHNOP_unmask delivering it; Xen's refusals of the other domain's
//! ports, reservation and params; then on each side alone VIRQ_TIMER,
//! IPIs, a loopback channel moved between vCPUs with bind_vcpu, bad ports
//! and arguments, and EVTCHNOP_reset. Every expected value is Xen's.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};
use test_guests::pair::{Link, MAILBOX_AT, MAILBOX_GFN, NOT_RAM, WAIT_MS};
use test_guests::xen::{self, Args, MS, NO_DOMAIN, PortStatus, UNMAPPED, Upcall};
use test_guests::*;
use xen_abi::errno::*;
use xen_abi::event_channel::*;
use xen_abi::grant_table::{GNTST_BAD_DOMAIN, GNTST_PERMISSION_DENIED};
use xen_abi::{DOMID_SELF, hvm, memory as mem};

const SELF: u16 = DOMID_SELF;
/// A port no test guest allocates but below the first 64, which Xen
/// creates with every domain (one bucket): free, but valid.
const FREE_PORT: u32 = 50;
/// A port beyond every port a domain of these tests has: not valid.
const INVALID_PORT: u32 = 4095;

// Mailbox slots.
const HELLO: usize = 1;
/// Ping: the port it allocated unbound for pong.
const DYN_PORT: usize = 2;
/// Ping: a port it allocated unbound for itself (pong may not bind it).
const NOT_FOR_PONG: usize = 3;
/// Pong: its end of the dynamic channel.
const DYN_LOCAL: usize = 4;
/// Ping: it closed its end.
const CLOSED: usize = 5;
/// Ping: it masked the ping-pong port and is about to poll it.
const POLLING: usize = 6;

/// Steps both sides reach together.
const STEP_CHANNEL_USED: u32 = 1;
const STEP_CROSS_CHECKED: u32 = 2;
const STEP_DONE: u32 = 3;

static AP_ALIVE: AtomicU32 = AtomicU32::new(0);
/// This side's end of the channel made at run time.
static DYNAMIC: AtomicU32 = AtomicU32::new(0);

struct Env {
    link: Link,
    port: u32,
    rounds: u32,
    me: u16,
}

/// One check: EVTCHNOP_status said what Xen says (the return code, then
/// every field).
fn eq_status(c: &mut Checks, what: &str, got: PortStatus, want: PortStatus) {
    if got.rc != want.rc {
        c.eq(what, got.rc, want.rc);
        return;
    }
    c.check(what, got == want);
    if got != want {
        println!("  got {got:?}");
        println!("  want {want:?}");
    }
}

fn closed() -> PortStatus {
    PortStatus { status: EVTCHNSTAT_CLOSED, ..Default::default() }
}

fn unbound(dom: u16) -> PortStatus {
    PortStatus { status: EVTCHNSTAT_UNBOUND, dom, virq: dom as u32, ..Default::default() }
}

fn interdomain(dom: u16, port: u32, vcpu: u32) -> PortStatus {
    PortStatus { status: EVTCHNSTAT_INTERDOMAIN, dom, port, virq: dom as u32, vcpu, ..Default::default() }
}

#[unsafe(no_mangle)]
extern "C" fn pvh_main(si_paddr: u64) -> ! {
    let args = Args::from_start_info(si_paddr);
    let mut c = Checks::new();
    let role = args.get("role").unwrap_or("?");
    let peer = args.required("peer") as u16;
    let port = args.num_or("port", 10) as u32;
    let ctl = args.num_or("ctl", 11) as u32;
    let gref = args.num_or("gref", 0) as u32;
    let rounds = args.num_or("rounds", 1000) as u32;
    let mode = if args.get("upcall") == Some("vector") { Upcall::ApicVector } else { Upcall::Callback };
    println!("evtchn: {role}, domain {}, peer {peer}, {rounds} rounds, upcalls by {mode:?}", xen::domid());

    let timer = xen::start(&mut c, mode);

    // The static channels, as ping's module line made them.
    eq_status(
        &mut c,
        "static channel: interdomain to the peer's port",
        xen::status(SELF, port),
        interdomain(peer, port, 0),
    );
    eq_status(
        &mut c,
        "control channel: interdomain to the peer's port",
        xen::status(SELF, ctl),
        interdomain(peer, ctl, 0),
    );

    let link = match role {
        "ping" => Link::owner(MAILBOX_GFN, ctl, peer),
        "pong" => match Link::peer(&mut c, peer, gref, MAILBOX_AT, ctl) {
            Some(l) => l,
            None => c.finish(),
        },
        _ => panic!("role= must be ping or pong"),
    };
    let env = Env { link, port, rounds, me: xen::domid() };
    if role == "ping" {
        if link.wait(&mut c, HELLO, "pong mapped the mailbox").is_none() {
            c.finish();
        }
        ping(&mut c, &env);
    } else {
        link.put(HELLO, 1);
        pong(&mut c, &env);
    }
    cross_domain(&mut c, &env);
    if !link.step(&mut c, STEP_CROSS_CHECKED) {
        c.finish();
    }
    if role == "ping" {
        ping_close_and_poll(&mut c, &env);
    } else {
        pong_close_and_poll(&mut c, &env);
    }
    alone(&mut c, &env, timer, mode);
    if !link.step(&mut c, STEP_DONE) {
        c.finish();
    }
    // Both are done with each other: reset closes every port, the static
    // ones and the console's included, so the next one is the lowest.
    let (_, console) = xen::get_param(hvm::PARAM_CONSOLE_EVTCHN);
    c.eq("EVTCHNOP_reset of this domain", xen::reset(SELF), 0);
    eq_status(&mut c, "after reset: the static channel is closed", xen::status(SELF, port), closed());
    eq_status(&mut c, "after reset: VIRQ_TIMER's port is closed", xen::status(SELF, timer), closed());
    eq_status(&mut c, "after reset: the console's port is closed", xen::status(SELF, console as u32), closed());
    let (rc, again) = xen::bind_virq(VIRQ_TIMER, 0);
    c.eq("after reset VIRQ_TIMER can be bound again", rc, 0);
    c.eq("on the lowest port", again as i64, 1);
    c.finish()
}

/// Round trips on `send_port`: sends, waits for the event on `recv_port`
/// (`base` events there already). Returns round trips completed.
fn ping_pong_lead(send_port: u32, recv_port: u32, base: u32, rounds: u32) -> (u32, u64) {
    let t0 = rdtsc();
    for i in 0..rounds {
        if xen::send(send_port) != 0 || !xen::wait_until(xen::after_ms(WAIT_MS), || xen::events(recv_port) > base + i) {
            return (i, 0);
        }
    }
    (rounds, (rdtsc() - t0) / rounds.max(1) as u64)
}

/// The other end: waits for each event, answers it.
fn ping_pong_follow(send_port: u32, recv_port: u32, base: u32, rounds: u32) -> u32 {
    for i in 0..rounds {
        if !xen::wait_until(xen::after_ms(WAIT_MS), || xen::events(recv_port) > base + i) || xen::send(send_port) != 0 {
            return i;
        }
    }
    rounds
}

fn ping(c: &mut Checks, e: &Env) {
    let peer = e.link.peer;
    let (done, ticks) = ping_pong_lead(e.port, e.port, 0, e.rounds);
    c.eq("every round trip came back", done as i64, e.rounds as i64);
    c.eq("one event per round trip", xen::events(e.port) as i64, e.rounds as i64);
    println!("  {} round trips, {ticks} TSC ticks each", e.rounds);

    // A channel made at run time: unbound for pong, which binds it.
    let (rc, p) = xen::alloc_unbound(SELF, peer);
    c.eq("alloc_unbound for the peer", rc, 0);
    c.check("a fresh port", p != 0 && p != e.port && p != e.link.ctl);
    eq_status(c, "status: unbound, for the peer", xen::status(SELF, p), unbound(peer));
    let (rc, mine) = xen::alloc_unbound(SELF, SELF);
    c.eq("alloc_unbound for this domain itself", rc, 0);
    eq_status(c, "status: unbound, for this domain (DOMID_SELF resolved)", xen::status(SELF, mine), unbound(e.me));
    e.link.put(NOT_FOR_PONG, mine);
    e.link.put(DYN_PORT, p);
    let Some(q) = e.link.wait(c, DYN_LOCAL, "pong bound the port") else { return };
    eq_status(c, "status: interdomain to pong's new port", xen::status(SELF, p), interdomain(peer, q, 0));
    c.eq("binding raised no event on this end", xen::events(p) as i64, 0);
    let n = e.rounds.min(100);
    let (done, _) = ping_pong_lead(p, p, 0, n);
    c.eq("round trips on the new channel", done as i64, n as i64);
    c.eq("close the port for this domain itself", xen::close(mine), 0);
    DYNAMIC.store(p, Ordering::SeqCst);
    e.link.step(c, STEP_CHANNEL_USED);
}

fn pong(c: &mut Checks, e: &Env) {
    let peer = e.link.peer;
    let done = ping_pong_follow(e.port, e.port, 0, e.rounds);
    c.eq("every ping arrived and was answered", done as i64, e.rounds as i64);
    c.eq("one event per ping", xen::events(e.port) as i64, e.rounds as i64);

    let Some(mine) = e.link.wait(c, NOT_FOR_PONG, "ping made a port for itself") else { return };
    c.eq("binding a port unbound for another domain", xen::bind_interdomain(peer, mine).0, -EINVAL);
    let Some(p) = e.link.wait(c, DYN_PORT, "ping made a port for this domain") else { return };
    let (rc, q) = xen::bind_interdomain(peer, p);
    c.eq("bind_interdomain to ping's unbound port", rc, 0);
    // Xen marks the binder's new port pending in case the other end sent
    // while it was unbound.
    let pending = xen::wait_until(xen::after_ms(WAIT_MS), || xen::events(q) >= 1);
    c.check("the new port starts pending (Xen)", pending);
    eq_status(c, "status: interdomain to ping's port", xen::status(SELF, q), interdomain(peer, p, 0));
    c.eq("binding it again", xen::bind_interdomain(peer, p).0, -EINVAL);
    e.link.put(DYN_LOCAL, q);
    let n = e.rounds.min(100);
    let done = ping_pong_follow(q, q, 1, n);
    c.eq("answers on the new channel", done as i64, n as i64);
    e.link.step(c, STEP_CHANNEL_USED);
    DYNAMIC.store(q, Ordering::SeqCst);
}

/// What a domU may not do to the other domain, and domains that do not
/// exist (both sides, while both are alive).
fn cross_domain(c: &mut Checks, e: &Env) {
    let peer = e.link.peer;
    c.eq("bind_interdomain to the peer's bound port", xen::bind_interdomain(peer, e.port).0, -EINVAL);
    c.eq("bind_interdomain to a free port of the peer", xen::bind_interdomain(peer, FREE_PORT).0, -EINVAL);
    c.eq("bind_interdomain to an invalid port of the peer", xen::bind_interdomain(peer, INVALID_PORT).0, -EINVAL);
    c.eq("bind_interdomain to a domain that does not exist", xen::bind_interdomain(NO_DOMAIN, 1).0, -ESRCH);
    c.eq("alloc_unbound in the peer's table", xen::alloc_unbound(peer, SELF).0, -EPERM);
    c.eq("alloc_unbound in a domain that does not exist", xen::alloc_unbound(NO_DOMAIN, SELF).0, -ESRCH);
    c.eq("status of the peer's port", xen::status(peer, e.port).rc, -EPERM);
    c.eq("status of an invalid port of the peer (checked first)", xen::status(peer, INVALID_PORT).rc, -EINVAL);
    c.eq("status in a domain that does not exist", xen::status(NO_DOMAIN, 1).rc, -ESRCH);
    c.eq("EVTCHNOP_reset of the peer", xen::reset(peer), -EPERM);
    c.eq("EVTCHNOP_reset of a domain that does not exist", xen::reset(NO_DOMAIN), -ESRCH);

    // Memory: queries refused, reservation changes do nothing (Xen returns
    // the extents done, none).
    c.eq("current_reservation of the peer", xen::current_reservation(peer), -EPERM);
    c.eq("maximum_reservation of the peer", xen::maximum_reservation(peer), -EPERM);
    c.eq("current_reservation of no domain", xen::current_reservation(NO_DOMAIN), -ESRCH);
    let mut l = [MAILBOX_GFN];
    c.eq("decrease_reservation of the peer", xen::reservation(mem::XENMEM_DECREASE_RESERVATION, peer, &mut l, 0, 0), 0);
    let mut l = [NOT_RAM];
    c.eq("populate_physmap in the peer", xen::reservation(mem::XENMEM_POPULATE_PHYSMAP, peer, &mut l, 0, 0), 0);
    c.eq("increase_reservation of the peer", xen::reservation(mem::XENMEM_INCREASE_RESERVATION, peer, &mut l, 0, 0), 0);
    c.eq("add_to_physmap in the peer", xen::add_to_physmap_of(peer, mem::XENMAPSPACE_GRANT_TABLE, 0, NOT_RAM), -EPERM);

    // Grant tables and HVM params of the peer.
    let (rc, status, _, _) = xen::query_size(peer);
    c.eq("query_size of the peer", rc, 0);
    c.eq("query_size of the peer: status", status as i64, GNTST_PERMISSION_DENIED as i64);
    let (rc, status, _, _) = xen::query_size(NO_DOMAIN);
    c.eq("query_size of no domain", rc, 0);
    c.eq("query_size of no domain: status", status as i64, GNTST_BAD_DOMAIN as i64);
    let mut frames = [0u64; 1];
    let (rc, status) = xen::setup_table(peer, &mut frames);
    c.eq("setup_table of the peer", rc, 0);
    c.eq("setup_table of the peer: status", status as i64, GNTST_PERMISSION_DENIED as i64);
    c.eq("get_version of the peer", xen::get_version(peer).0, -EPERM);
    c.eq("get_version of no domain", xen::get_version(NO_DOMAIN).0, -ESRCH);
    c.eq("HVMOP_set_param on the peer", xen::set_param_of(peer, hvm::PARAM_CALLBACK_IRQ, 0), -EPERM);
    c.eq("HVMOP_set_param on no domain", xen::set_param_of(NO_DOMAIN, hvm::PARAM_CALLBACK_IRQ, 0), -ESRCH);
}

fn ping_close_and_poll(c: &mut Checks, e: &Env) {
    let p = DYNAMIC.load(Ordering::SeqCst);
    c.eq("close the dynamic channel", xen::close(p), 0);
    eq_status(c, "status: closed", xen::status(SELF, p), closed());
    c.eq("send on the closed port", xen::send(p), -EINVAL);
    c.eq("close it again", xen::close(p), -EINVAL);
    e.link.put(CLOSED, 1);

    // A masked port: the peer's send marks it pending without an upcall,
    // and ends a poll on it. Anything raising this vCPU's upcall ends a
    // poll too (Xen kicks the vCPU), so the timer is stopped first and
    // the poll repeated until the port is pending, as guests do.
    let before = xen::events(e.port);
    c.eq("stop the singleshot timer", xen::stop_timer(), 0);
    xen::mask(e.port);
    e.link.put(POLLING, 1);
    x86::cli();
    let t0 = xen::now();
    let (mut polls, mut bad) = (0, 0);
    while !xen::is_pending(e.port) && xen::now() < t0 + 20_000 * MS {
        if xen::poll(&[e.port], t0 + 20_000 * MS) != 0 {
            bad += 1;
        }
        polls += 1;
    }
    let took = xen::now() - t0;
    x86::sti();
    c.eq("SCHEDOP_poll on the masked port", bad, 0);
    c.check("the peer's send ended it, before its timeout", xen::is_pending(e.port) && took < 20_000 * MS);
    println!("  {polls} polls took {} us", took / 1000);
    // Give a wrongly raised upcall time to arrive.
    xen::spin_until(xen::after_ms(20), || false);
    c.eq("a masked port raises no upcall", xen::events(e.port) as i64, before as i64);
    c.eq("EVTCHNOP_unmask of the pending port", xen::unmask(e.port), 0);
    let ok = xen::wait_until(xen::after_ms(WAIT_MS), || xen::events(e.port) > before);
    c.check("unmasking a pending port delivers it", ok);
    c.check("and leaves it unmasked", !xen::is_masked(e.port));
}

fn pong_close_and_poll(c: &mut Checks, e: &Env) {
    let peer = e.link.peer;
    let q = DYNAMIC.load(Ordering::SeqCst);
    if e.link.wait(c, CLOSED, "ping closed its end").is_none() {
        return;
    }
    eq_status(c, "status: unbound again, for the domain that closed", xen::status(SELF, q), unbound(peer));
    c.eq("send on an unbound port is dropped silently", xen::send(q), 0);
    c.eq("close this end", xen::close(q), 0);
    eq_status(c, "status: closed", xen::status(SELF, q), closed());

    if e.link.wait(c, POLLING, "ping polls").is_none() {
        return;
    }
    // Let ping block in its poll first.
    xen::spin_until(xen::after_ms(20), || false);
    c.eq("send to the poller", xen::send(e.port), 0);
}

extern "C" fn ap_main(vcpu: u32) -> ! {
    x86::install_idt();
    x86::x2apic_enable();
    AP_ALIVE.store(vcpu, Ordering::SeqCst);
    loop {
        x86::wait_for_interrupt();
    }
}

/// What each domain checks on its own: VIRQs, IPIs, a loopback channel
/// moved between vCPUs, bad ports and arguments.
fn alone(c: &mut Checks, e: &Env, timer: u32, mode: Upcall) {
    let me = e.me;
    let deadline = || xen::after_ms(WAIT_MS);

    // VIRQ_TIMER on vCPU 0.
    eq_status(
        c,
        "status: VIRQ_TIMER on vCPU 0",
        xen::status(SELF, timer),
        PortStatus { status: EVTCHNSTAT_VIRQ, virq: VIRQ_TIMER, ..Default::default() },
    );
    let before = xen::events(timer);
    c.eq("arm the singleshot timer", xen::arm_timer(xen::now() + 2 * MS), 0);
    c.check("the singleshot timer raised VIRQ_TIMER", xen::spin_until(deadline(), || xen::events(timer) > before));
    c.eq("bind VIRQ_TIMER twice", xen::bind_virq(VIRQ_TIMER, 0).0, -EEXIST);
    c.eq("bind a VIRQ beyond NR_VIRQS", xen::bind_virq(NR_VIRQS, 0).0, -EINVAL);
    c.eq("bind VIRQ -1", xen::bind_virq(u32::MAX, 0).0, -EINVAL);
    c.eq("bind a global VIRQ on vCPU 1", xen::bind_virq(VIRQ_CONSOLE, 1).0, -EINVAL);
    c.eq("bind VIRQ_TIMER on a vCPU that does not exist", xen::bind_virq(VIRQ_TIMER, 5).0, -ENOENT);
    c.eq("send on a VIRQ port", xen::send(timer), -EINVAL);
    c.eq("move a per-vCPU VIRQ to another vCPU", xen::bind_vcpu(timer, 1), -EINVAL);

    // vCPU 1, for IPIs and bind_vcpu.
    if mode == Upcall::ApicVector {
        c.eq("upcall vector for vCPU 1", xen::set_upcall_vector(1, xen::UPCALL_VECTOR), 0);
    }
    c.eq("upcall vector below 0x10", xen::set_upcall_vector(0, 0x0f), -EINVAL);
    c.eq("upcall vector for a vCPU that does not exist", xen::set_upcall_vector(9, xen::UPCALL_VECTOR), -ENOENT);
    let (init, up) = x86::start_vcpu(1, ap_main);
    c.eq("start vCPU 1", init | up, 0);
    c.check("vCPU 1 runs", xen::spin_until(deadline(), || AP_ALIVE.load(Ordering::SeqCst) == 1));

    let (rc, t1) = xen::bind_virq(VIRQ_TIMER, 1);
    c.eq("bind VIRQ_TIMER on vCPU 1", rc, 0);
    eq_status(
        c,
        "status: VIRQ_TIMER on vCPU 1",
        xen::status(SELF, t1),
        PortStatus { status: EVTCHNSTAT_VIRQ, virq: VIRQ_TIMER, vcpu: 1, ..Default::default() },
    );
    c.eq("close it", xen::close(t1), 0);

    // IPIs. Port numbers are reused after a close, so events are counted
    // from the bind on.
    let (rc, i0) = xen::bind_ipi(0);
    c.eq("bind_ipi to vCPU 0", rc, 0);
    let seen = xen::events_on(0, i0);
    eq_status(
        c,
        "status: IPI to vCPU 0",
        xen::status(SELF, i0),
        PortStatus { status: EVTCHNSTAT_IPI, ..Default::default() },
    );
    c.eq("send the IPI", xen::send(i0), 0);
    c.check("it arrives on vCPU 0", xen::wait_until(deadline(), || xen::events_on(0, i0) == seen + 1));
    let (rc, i1) = xen::bind_ipi(1);
    c.eq("bind_ipi to vCPU 1", rc, 0);
    let seen = (xen::events_on(0, i1), xen::events_on(1, i1));
    eq_status(
        c,
        "status: IPI to vCPU 1",
        xen::status(SELF, i1),
        PortStatus { status: EVTCHNSTAT_IPI, vcpu: 1, ..Default::default() },
    );
    c.eq("send to vCPU 1", xen::send(i1), 0);
    c.check("it arrives on vCPU 1", xen::spin_until(deadline(), || xen::events_on(1, i1) == seen.1 + 1));
    c.eq("and not on vCPU 0", xen::events_on(0, i1) as i64, seen.0 as i64);
    c.eq("move an IPI port to another vCPU", xen::bind_vcpu(i0, 1), -EINVAL);
    c.eq("bind_ipi to a vCPU that does not exist", xen::bind_ipi(5).0, -ENOENT);
    c.eq("close the IPI ports", xen::close(i0) | xen::close(i1), 0);

    // A loopback channel: this domain's own unbound port, bound by itself.
    // (Bound with interrupts off: the new end is pending at once.)
    let (rc, r) = xen::alloc_unbound(SELF, SELF);
    c.eq("alloc_unbound for this domain", rc, 0);
    x86::cli();
    let (rc, l) = xen::bind_interdomain(SELF, r);
    let seen = (xen::events_on(0, l), xen::events_on(1, l));
    x86::sti();
    c.eq("bind_interdomain to it (loopback)", rc, 0);
    c.check("the bound end starts pending", xen::wait_until(deadline(), || xen::events_on(0, l) == seen.0 + 1));
    eq_status(c, "status: interdomain to this domain", xen::status(SELF, r), interdomain(me, l, 0));
    c.eq("bind_vcpu to vCPU 1", xen::bind_vcpu(l, 1), 0);
    c.eq("status says vCPU 1", xen::status(SELF, l).vcpu as i64, 1);
    c.eq("send through the loopback", xen::send(r), 0);
    c.check("the event arrives on vCPU 1", xen::spin_until(deadline(), || xen::events_on(1, l) == seen.1 + 1));
    c.eq("bind_vcpu back to vCPU 0", xen::bind_vcpu(l, 0), 0);
    c.eq("send again", xen::send(r), 0);
    c.check("the event arrives on vCPU 0", xen::wait_until(deadline(), || xen::events_on(0, l) == seen.0 + 2));
    c.eq("bind_vcpu to a vCPU that does not exist", xen::bind_vcpu(l, 7), -ENOENT);
    c.eq("bind_vcpu of an invalid port", xen::bind_vcpu(INVALID_PORT, 1), -EINVAL);
    c.eq("bind_vcpu of port 0", xen::bind_vcpu(0, 0), -EINVAL);
    c.eq("close one end", xen::close(l), 0);
    eq_status(c, "the other end is unbound, for this domain", xen::status(SELF, r), unbound(me));
    c.eq("close the other", xen::close(r), 0);

    // Ports that are reserved, free or beyond the table.
    eq_status(c, "status of port 0 (reserved)", xen::status(SELF, 0), closed());
    eq_status(c, "status of a free port", xen::status(SELF, FREE_PORT), closed());
    c.eq("status of an invalid port", xen::status(SELF, INVALID_PORT).rc, -EINVAL);
    c.eq("status of port 4096", xen::status(SELF, EVTCHN_2L_NR_CHANNELS).rc, -EINVAL);
    c.eq("send on port 0", xen::send(0), -EINVAL);
    c.eq("send on a free port", xen::send(FREE_PORT), -EINVAL);
    c.eq("send on port 4096", xen::send(EVTCHN_2L_NR_CHANNELS), -EINVAL);
    c.eq("close port 0", xen::close(0), -EINVAL);
    c.eq("close a free port", xen::close(FREE_PORT), -EINVAL);
    c.eq("close port 4096", xen::close(EVTCHN_2L_NR_CHANNELS), -EINVAL);
    c.eq("unmask port 0 (valid, nothing to do)", xen::unmask(0), 0);
    c.eq("unmask port 4096", xen::unmask(EVTCHN_2L_NR_CHANNELS), -EINVAL);
    c.eq("SCHEDOP_poll on a free port", poll_cli(&[FREE_PORT]), -EINVAL);
    c.eq("SCHEDOP_poll on port 4096", poll_cli(&[EVTCHN_2L_NR_CHANNELS]), -EINVAL);
    c.eq("SCHEDOP_poll on 129 ports", poll_cli(&[e.port; 129]), -EINVAL);
    let mut p = xen_abi::sched::SchedPoll { ports: UNMAPPED, nr_ports: 1, _pad: 0, timeout: xen::now() + 100 * MS };
    x86::cli();
    let r = xen::raw(xen_abi::hypercall::SCHED_OP, xen_abi::sched::SCHEDOP_POLL, &mut p as *mut _ as u64, 0);
    x86::sti();
    c.eq("SCHEDOP_poll with its ports in unmapped memory", r, -EFAULT);

    // Operations and arguments Xen refuses.
    let ev = xen_abi::hypercall::EVENT_CHANNEL_OP;
    c.eq("event_channel_op with its argument in unmapped memory", xen::raw(ev, EVTCHNOP_SEND, UNMAPPED, 0), -EFAULT);
    c.eq("alloc_unbound into unmapped memory", xen::raw(ev, EVTCHNOP_ALLOC_UNBOUND, UNMAPPED, 0), -EFAULT);
    // This guest stays with the 2-level ABI: a refused init_control
    // leaves it there (the `evtchn-fifo` guest switches).
    let mut ic = InitControl { vcpu: 5, ..Default::default() };
    c.eq(
        "EVTCHNOP_init_control for a vCPU that does not exist",
        xen::evtchn_op(EVTCHNOP_INIT_CONTROL, &mut ic),
        -ENOENT,
    );
    let mut gfn = NOT_RAM;
    c.eq("EVTCHNOP_expand_array without FIFO", xen::evtchn_op(EVTCHNOP_EXPAND_ARRAY, &mut gfn), -EOPNOTSUPP);
    // struct evtchn_set_priority: the port, then the priority.
    let mut sp = e.port as u64 | 7 << 32;
    c.eq("EVTCHNOP_set_priority (2-level has none)", xen::evtchn_op(EVTCHNOP_SET_PRIORITY, &mut sp), -ENOSYS);
    let mut sp = EVTCHN_2L_NR_CHANNELS as u64;
    c.eq("EVTCHNOP_set_priority of port 4096", xen::evtchn_op(EVTCHNOP_SET_PRIORITY, &mut sp), -EINVAL);
    let mut x = 0u64;
    c.eq("an unknown event-channel operation", xen::evtchn_op(99, &mut x), -ENOSYS);
}

/// SCHEDOP_poll with interrupts off (so no upcall is due) and a short
/// timeout (so a hypervisor that blocks where Xen refuses returns).
fn poll_cli(ports: &[u32]) -> i64 {
    x86::cli();
    let r = xen::poll(ports, xen::now() + 100 * MS);
    x86::sti();
    r
}
