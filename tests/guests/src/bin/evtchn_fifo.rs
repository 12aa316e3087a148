//! Xen's FIFO event-channel ABI, as Xen 4.17 gives it: one domain with two
//! vCPUs (`domu name=fifo vcpus=2`) starts with the 2-level ABI, sees
//! init_control's refusals leave it there, switches (control blocks for
//! both vCPUs, vCPU 1's while it is still down, as Linux does), gets a
//! port that was pending under the 2-level ABI raised once its event word
//! exists, and then checks delivery of IPIs, VIRQ_TIMER and a loopback
//! interdomain channel on both vCPUs; the order of queues by priority and
//! of events within one; masking in the event word and EVTCHNOP_unmask; a
//! port moved to another vCPU while its event is still queued on the
//! first; SCHEDOP_poll and close on FIFO ports; that a closed port still
//! on a queue is not handed out again; every refusal of init_control,
//! expand_array and set_priority; the array grown to its 128 pages; and
//! EVTCHNOP_reset going back to the 2-level ABI, after which it switches
//! again and leaves its pages to the hypervisor to let go of when it
//! dies. Every expected value is Xen's.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use test_guests::fifo::{self, BUSY, LINKED, MASKED, PENDING};
use test_guests::pair::{NOT_RAM, WAIT_MS};
use test_guests::xen::{self, MS, UNMAPPED, Upcall};
use test_guests::*;
use xen_abi::DOMID_SELF as SELF;
use xen_abi::errno::*;
use xen_abi::event_channel::*;

static AP_ALIVE: AtomicU32 = AtomicU32::new(0);
/// vCPU 1 holds its events back (interrupts off) while HOLD is set, and
/// says so in HELD.
static HOLD: AtomicBool = AtomicBool::new(false);
static HELD: AtomicBool = AtomicBool::new(false);

extern "C" fn ap_main(vcpu: u32) -> ! {
    x86::install_idt();
    x86::x2apic_enable();
    AP_ALIVE.store(vcpu, Ordering::SeqCst);
    loop {
        if HOLD.load(Ordering::SeqCst) {
            x86::cli();
            HELD.store(true, Ordering::SeqCst);
            while HOLD.load(Ordering::SeqCst) {
                core::hint::spin_loop();
            }
            HELD.store(false, Ordering::SeqCst);
        }
        x86::wait_for_interrupt();
    }
}

fn deadline() -> u64 {
    xen::after_ms(WAIT_MS)
}

/// Waits until vCPU `vcpu` consumed `n` events on `port` in all.
fn arrives(vcpu: u32, port: u32, n: u32) -> bool {
    if vcpu == 0 {
        xen::wait_until(deadline(), || xen::events_on(0, port) >= n)
    } else {
        xen::spin_until(deadline(), || xen::events_on(vcpu, port) >= n)
    }
}

/// Nothing more arrives on `port` within 20 ms (it had `n` events).
fn stays_quiet(port: u32, n: u32) -> bool {
    xen::spin_until(xen::after_ms(20), || false);
    xen::events(port) == n
}

/// A bound IPI to `vcpu`, unmasked, its events counted from 0: its port.
fn ipi(c: &mut Checks, vcpu: u32) -> u32 {
    let (rc, p) = xen::bind_ipi(vcpu);
    c.eq("bind_ipi", rc, 0);
    xen::forget_events(p);
    c.eq("unmask it", fifo::unmask(p), 0);
    p
}

/// A loopback channel of this domain, both ends' events counted from 0
/// (the second end starts pending, still masked): (first, second).
fn loopback(c: &mut Checks) -> (u32, u32) {
    let (rc, r) = xen::alloc_unbound(SELF, SELF);
    c.eq("alloc_unbound for this domain", rc, 0);
    xen::forget_events(r);
    c.eq("unmask it", fifo::unmask(r), 0);
    x86::cli();
    let (rc, l) = xen::bind_interdomain(SELF, r);
    xen::forget_events(l);
    x86::sti();
    c.eq("bind_interdomain to it", rc, 0);
    (r, l)
}

#[unsafe(no_mangle)]
extern "C" fn pvh_main(_si: u64) -> ! {
    let mut c = Checks::new();
    println!("evtchn-fifo: domain {}", xen::domid());
    let timer = xen::start(&mut c, Upcall::ApicVector);

    // Under the 2-level ABI: a port left pending while masked.
    let (rc, carried) = xen::bind_ipi(0);
    c.eq("bind_ipi under the 2-level ABI", rc, 0);
    xen::mask(carried);
    c.eq("send on it, masked", xen::send(carried), 0);
    c.check("pending in the 2-level bitmap", xen::is_pending(carried));

    refusals_before_the_switch(&mut c);

    // The switch: vCPU 0's block at an offset, vCPU 1's at the last
    // offset that fits, before vCPU 1 runs.
    let (rc, bits) = fifo::init_vcpu(0, 64);
    c.eq("init_control for vCPU 0", rc, 0);
    c.eq("link_bits", bits as i64, 17);
    if rc != 0 {
        c.finish();
    }
    fifo::activate(true);
    c.eq("init_control for vCPU 0 again", fifo::init_control(fifo::control_gfn(0), 0, 0).0, -EINVAL);
    c.eq("init_control for vCPU 1 at offset 4024, still down", fifo::init_vcpu(1, 4096 - 72).0, 0);
    c.eq("init_control for vCPU 1 again", fifo::init_control(fifo::control_gfn(1), 0, 1).0, -EINVAL);
    c.eq("set_priority is offered now", fifo::set_priority(timer, 7), 0);

    // No event array yet: events are kept until their word exists.
    c.eq("send on the carried port before the array exists", xen::send(carried), 0);
    c.eq("expand_array with a frame that is not RAM", fifo::expand_array(NOT_RAM), -EINVAL);
    c.eq("expand_array with an unmapped frame", fifo::expand_array(UNMAPPED >> 12), -EINVAL);
    c.eq("expand_array with frame 2^52", fifo::expand_array(1 << 52), -EINVAL);
    c.eq("expand_array with its argument in unmapped memory", ev_raw(EVTCHNOP_EXPAND_ARRAY, UNMAPPED), -EFAULT);
    c.eq("expand_array with the first page (all masked)", fifo::add_page(), 0);
    c.check(
        "the 2-level pending port is pending in its FIFO word, masked",
        fifo::bits(carried) & (PENDING | MASKED | LINKED) == PENDING | MASKED,
    );
    c.eq("unmask VIRQ_TIMER's port", fifo::unmask(timer), 0);
    let seen = xen::events(carried);
    c.eq("EVTCHNOP_unmask of the carried port", fifo::unmask(carried), 0);
    c.check("the event from before the switch arrives", arrives(0, carried, seen + 1));
    c.eq("close it", xen::close(carried), 0);

    delivery(&mut c, timer);
    priorities(&mut c);
    masking_poll_and_close(&mut c);
    vcpus_and_moves(&mut c);
    refusals_after_the_switch(&mut c, timer);
    reset_and_again(&mut c);
    c.finish()
}

fn ev_raw(cmd: u64, arg: u64) -> i64 {
    xen::raw(xen_abi::hypercall::EVENT_CHANNEL_OP, cmd, arg, 0)
}

fn refusals_before_the_switch(c: &mut Checks) {
    let gfn = fifo::control_gfn(0);
    c.eq("init_control for vCPU 2 (there are two)", fifo::init_control(gfn, 0, 2).0, -ENOENT);
    c.eq("init_control for vCPU 2^32-1", fifo::init_control(gfn, 4, u32::MAX).0, -ENOENT);
    c.eq("init_control at offset 4 (not 8-byte aligned)", fifo::init_control(gfn, 4, 0).0, -EINVAL);
    c.eq("init_control at offset 4032 (past the page end)", fifo::init_control(gfn, 4032, 0).0, -EINVAL);
    c.eq("init_control at offset 2^32-8", fifo::init_control(gfn, u32::MAX - 7, 0).0, -EINVAL);
    let (rc, bits) = fifo::init_control(NOT_RAM, 0, 0);
    c.eq("init_control on a frame that is not RAM", rc, -EINVAL);
    c.eq("nothing written back on failure", bits as i64, 0);
    c.eq("init_control on an unmapped frame", fifo::init_control(UNMAPPED >> 12, 0, 0).0, -EINVAL);
    c.eq("init_control with its argument in unmapped memory", ev_raw(EVTCHNOP_INIT_CONTROL, UNMAPPED), -EFAULT);
    // Still the 2-level ABI.
    c.eq("expand_array without the FIFO ABI", fifo::expand_array(fifo::array_gfn(0)), -EOPNOTSUPP);
    c.eq("set_priority without the FIFO ABI", fifo::set_priority(xen::timer_port(), 3), -ENOSYS);
    c.eq("set_priority of port 4096 without the FIFO ABI", fifo::set_priority(4096, 3), -EINVAL);
    let (rc, p) = xen::bind_ipi(0);
    c.eq("an IPI after the refusals", rc, 0);
    xen::forget_events(p);
    c.eq("send it", xen::send(p), 0);
    c.check("it arrives through the 2-level bitmaps", arrives(0, p, 1));
    c.eq("close it", xen::close(p), 0);
}

fn delivery(c: &mut Checks, timer: u32) {
    let before = xen::events(timer);
    c.eq("arm the singleshot timer", xen::arm_timer(xen::now() + 2 * MS), 0);
    c.check("VIRQ_TIMER arrives", xen::spin_until(deadline(), || xen::events(timer) > before));

    let p = ipi(c, 0);
    let seen = xen::events_on(0, p);
    c.eq("send an IPI to vCPU 0", xen::send(p), 0);
    c.check("it arrives on vCPU 0", arrives(0, p, seen + 1));
    c.check("its word is consumed", fifo::bits(p) & (PENDING | LINKED) == 0);

    // A loopback channel: interdomain ports of this domain.
    let (r, l) = loopback(c);
    let bits = fifo::bits(l);
    c.check("the bound end starts pending (its word still masked)", bits & (PENDING | MASKED) == PENDING | MASKED);
    c.eq("unmask it: EVTCHNOP_unmask", fifo::unmask(l), 0);
    c.check("its first event arrives", arrives(0, l, 1));
    c.eq("send from one end", xen::send(r), 0);
    c.check("it arrives at the other", arrives(0, l, 2));
    c.eq("send back", xen::send(l), 0);
    c.check("it arrives at the first", arrives(0, r, 1));
    c.eq("close both ends", xen::close(l) | xen::close(r), 0);
    c.eq("close the IPI", xen::close(p), 0);
}

/// Ports raised with interrupts off come out by queue, highest priority
/// (lowest number) first, and in raising order within one queue.
fn priorities(c: &mut Checks) {
    let ports = [ipi(c, 0), ipi(c, 0), ipi(c, 0), ipi(c, 0), ipi(c, 0)];
    let prio = [9, 3, 7, 3, 0];
    for (p, q) in ports.iter().zip(prio) {
        if q != 7 {
            c.eq("set_priority", fifo::set_priority(*p, q), 0);
        }
    }
    x86::cli();
    fifo::clear_log();
    for p in ports {
        xen::send(p);
    }
    let ready = fifo::ready(0);
    x86::sti();
    c.eq("ready bits of queues 0, 3, 7 and 9", ready as i64, (1 << 0 | 1 << 3 | 1 << 7 | 1 << 9) as i64);
    c.check("all five arrive", arrives(0, ports[0], 1) && ports.iter().all(|p| xen::events(*p) == 1));
    // (VIRQ_TIMER may come in between: only these ports count.)
    let mut log = [(0, 0); 16];
    let n = fifo::log(&mut log);
    let want = [ports[4], ports[1], ports[3], ports[2], ports[0]];
    let order_ok = log[..n].iter().map(|e| e.1).filter(|p| ports.contains(p)).eq(want.iter().copied());
    c.check("in the order priority 0, 3, 3 (raised first first), 7, 9", order_ok);
    if !order_ok {
        println!("  got {:?}, want {want:?}", &log[..n]);
    }
    // A priority change moves the next event, not a queued one.
    x86::cli();
    fifo::clear_log();
    xen::send(ports[0]);
    c.eq("set_priority of a queued port", fifo::set_priority(ports[0], 1), 0);
    xen::send(ports[2]);
    c.eq("ready: queues 7 and 9", fifo::ready(0) as i64, (1 << 7 | 1 << 9) as i64);
    x86::sti();
    c.check("both arrive", arrives(0, ports[0], 2) && arrives(0, ports[2], 2));
    x86::cli();
    xen::send(ports[0]);
    let ready = fifo::ready(0);
    x86::sti();
    c.check("the next event goes to queue 1", ready & 1 << 1 != 0 && ready & 1 << 9 == 0);
    c.check("it arrives", arrives(0, ports[0], 3));
    for p in ports {
        xen::close(p);
    }
}

fn masking_poll_and_close(c: &mut Checks) {
    let p = ipi(c, 0);
    let seen = xen::events(p);
    fifo::mask(p);
    c.eq("send on a port masked in its word", xen::send(p), 0);
    c.check("pending, not linked", fifo::bits(p) & (PENDING | LINKED | MASKED) == PENDING | MASKED);
    c.check("no event", stays_quiet(p, seen));
    // SCHEDOP_poll reads PENDING in the event word. (The timer is
    // stopped: an upcall for another port would end a poll too.)
    c.eq("stop the singleshot timer", xen::stop_timer(), 0);
    x86::cli();
    let t0 = xen::now();
    let r = xen::poll(&[p], t0 + 2000 * MS);
    let pending_took = xen::now() - t0;
    x86::sti();
    c.eq("SCHEDOP_poll on the pending FIFO port", r, 0);
    c.check("it returns at once", pending_took < 1000 * MS);
    c.eq("EVTCHNOP_unmask", xen::unmask(p), 0);
    c.check("the event arrives", arrives(0, p, seen + 1));
    c.check("the port is unmasked", fifo::bits(p) & (MASKED | BUSY) == 0);
    c.eq("stop the singleshot timer", xen::stop_timer(), 0);
    x86::cli();
    let t0 = xen::now();
    let r = xen::poll(&[p], t0 + 50 * MS);
    let took = xen::now() - t0;
    x86::sti();
    c.eq("SCHEDOP_poll on a quiet FIFO port", r, 0);
    c.check("it waits for its timeout", took >= 40 * MS);
    // Close clears PENDING (never MASKED).
    fifo::mask(p);
    xen::send(p);
    c.eq("close a pending, masked port", xen::close(p), 0);
    c.check("PENDING is cleared, MASKED kept", fifo::bits(p) & (PENDING | MASKED) == MASKED);
    fifo::unmask(p);

    // A closed port whose word is still on a queue is not handed out
    // again (Xen's evtchn_is_busy) until the guest unlinked it.
    let x = ipi(c, 0);
    let seen = xen::events(x);
    x86::cli();
    xen::send(x);
    let linked = fifo::bits(x) & LINKED != 0;
    c.eq("close a port still queued", xen::close(x), 0);
    let (rc, y) = xen::bind_ipi(0);
    x86::sti();
    c.check("it was linked", linked);
    c.eq("bind_ipi", rc, 0);
    c.check("the queued port is skipped", y != x);
    xen::spin_until(xen::after_ms(5), || false);
    c.eq("its closed event was not counted", xen::events(x) as i64, seen as i64);
    let (rc, z) = xen::bind_ipi(0);
    c.eq("bind_ipi once it was unlinked", rc, 0);
    c.eq("the port is handed out again", z as i64, x as i64);
    c.eq("close them", xen::close(y) | xen::close(z), 0);
}

fn vcpus_and_moves(c: &mut Checks) {
    c.eq("upcall vector for vCPU 1", xen::set_upcall_vector(1, xen::UPCALL_VECTOR), 0);
    let (init, up) = x86::start_vcpu(1, ap_main);
    c.eq("start vCPU 1", init | up, 0);
    c.check("vCPU 1 runs", xen::spin_until(deadline(), || AP_ALIVE.load(Ordering::SeqCst) == 1));
    let q = ipi(c, 1);
    c.eq("send an IPI to vCPU 1", xen::send(q), 0);
    c.check("it arrives on vCPU 1", arrives(1, q, 1));
    c.eq("and not on vCPU 0", xen::events_on(0, q) as i64, 0);
    let (rc, t1) = xen::bind_virq(VIRQ_TIMER, 1);
    c.eq("bind VIRQ_TIMER on vCPU 1", rc, 0);
    c.eq("close it", xen::close(t1), 0);

    // A loopback port moved between vCPUs with bind_vcpu.
    let (r, l) = loopback(c);
    fifo::unmask(l);
    c.check("its first event arrives on vCPU 0", arrives(0, l, 1));
    c.eq("bind_vcpu to vCPU 1", xen::bind_vcpu(l, 1), 0);
    c.eq("send", xen::send(r), 0);
    c.check("it arrives on vCPU 1", arrives(1, l, 1));
    c.eq("bind_vcpu back to vCPU 0", xen::bind_vcpu(l, 0), 0);
    c.eq("send", xen::send(r), 0);
    c.check("it arrives on vCPU 0 again", arrives(0, l, 2));

    // Moved while its event is still on vCPU 0's queue: it is consumed
    // there; the next goes to vCPU 1, and vCPU 0's queue, whose tail it
    // was, starts afresh with the next port raised on it.
    let p = ipi(c, 0);
    x86::cli();
    xen::send(r);
    let queued = fifo::bits(l) & LINKED != 0;
    let moved = xen::bind_vcpu(l, 1);
    xen::send(r);
    x86::sti();
    c.check("the event was queued on vCPU 0", queued);
    c.eq("bind_vcpu to vCPU 1 meanwhile", moved, 0);
    c.check("the queued event arrives on vCPU 0", arrives(0, l, 3));
    c.eq("vCPU 1 saw no more of it", xen::events_on(1, l) as i64, 1);
    // vCPU 1 holds its events now (woken by an IPI to see HOLD).
    HOLD.store(true, Ordering::SeqCst);
    xen::send(q);
    c.check("vCPU 1 holds its events", xen::spin_until(deadline(), || HELD.load(Ordering::SeqCst)));
    c.eq("send again", xen::send(r), 0);
    c.check("now it is queued on vCPU 1", fifo::bits(l) & LINKED != 0 && fifo::ready(1) & 1 << 7 != 0);
    c.eq("send an IPI on vCPU 0's queue, whose tail it was", xen::send(p), 0);
    c.check("it heads vCPU 0's queue and arrives there", arrives(0, p, 1));
    HOLD.store(false, Ordering::SeqCst);
    c.check("vCPU 1 gets the moved port's event", arrives(1, l, 2));
    c.eq("the IPI did not go to vCPU 1", xen::events_on(1, p) as i64, 0);
    c.eq("send on the moved port again", xen::send(r), 0);
    c.check("it arrives on vCPU 1", arrives(1, l, 3));
    c.eq("close them", xen::close(l) | xen::close(r) | xen::close(p) | xen::close(q), 0);
}

fn refusals_after_the_switch(c: &mut Checks, timer: u32) {
    c.eq("set_priority 16", fifo::set_priority(timer, 16), -EINVAL);
    c.eq("set_priority 2^32-1", fifo::set_priority(timer, u32::MAX), -EINVAL);
    c.eq("set_priority of a free port", fifo::set_priority(50, 3), -EACCES);
    c.eq("set_priority of port 0", fifo::set_priority(0, 3), -EACCES);
    c.eq("set_priority of a port the domain does not have", fifo::set_priority(4095, 3), -EINVAL);
    c.eq("set_priority of port 2^17", fifo::set_priority(1 << 17, 3), -EINVAL);
    c.eq("set_priority with its argument in unmapped memory", ev_raw(EVTCHNOP_SET_PRIORITY, UNMAPPED), -EFAULT);
    c.eq("init_control for vCPU 2", fifo::init_control(fifo::control_gfn(0), 0, 2).0, -ENOENT);
    c.eq("init_control at offset 12", fifo::init_control(fifo::control_gfn(2), 12, 1).0, -EINVAL);
    c.eq("send on port 4096", xen::send(4096), -EINVAL);
    c.eq("unmask port 2^17", xen::unmask(1 << 17), -EINVAL);
    // The event array: 128 pages at most.
    let mut all = true;
    for i in 1..EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES {
        let rc = fifo::add_page();
        if rc != 0 {
            println!("  page {i}: {rc}");
            all = false;
            break;
        }
    }
    c.check("expand_array to 128 pages", all);
    c.eq("a 129th page", fifo::expand_array(fifo::array_gfn(1)), -ENOSPC);
    c.eq("a 129th page that is not RAM (full is checked first)", fifo::expand_array(NOT_RAM), -ENOSPC);
}

fn reset_and_again(c: &mut Checks) {
    c.eq("EVTCHNOP_reset", xen::reset(SELF), 0);
    fifo::activate(false);
    c.eq("after reset: expand_array", fifo::expand_array(fifo::array_gfn(0)), -EOPNOTSUPP);
    c.eq("after reset: set_priority", fifo::set_priority(1, 3), -ENOSYS);
    let (rc, t) = xen::bind_timer();
    c.eq("after reset: bind VIRQ_TIMER", rc, 0);
    c.eq("on the lowest port", t as i64, 1);
    let (rc, p) = xen::bind_ipi(0);
    c.eq("after reset: bind_ipi", rc, 0);
    // The 2-level bitmaps are as the FIFO ABI left them (Xen): this guest
    // masked and raised ports there before the switch.
    for port in [t, p] {
        xen::clear_mask(port);
        xen::clear_pending(port);
    }
    let seen = xen::events(p);
    c.eq("send", xen::send(p), 0);
    c.check("it arrives through the 2-level bitmaps again", arrives(0, p, seen + 1));
    // Switch again, and leave the pages to the domain's end.
    c.eq("init_control after reset", fifo::init_vcpu(0, 0).0, 0);
    fifo::activate(true);
    c.eq("expand_array again", fifo::add_page(), 0);
    c.eq("unmask the ports", fifo::unmask(t) | fifo::unmask(p), 0);
    c.eq("send", xen::send(p), 0);
    c.check("it arrives through the FIFO queues", arrives(0, p, seen + 2));
}
