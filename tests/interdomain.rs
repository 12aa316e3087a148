//! Xen's inter-domain interfaces, driven by test guests that check every
//! result against what Xen 4.17 returns: event channels (the `evtchn`
//! pair, and the FIFO ABI's `evtchn-fifo`), grant tables v1 (the `grants`
//! pair), the reservation operations
//! of memory_op (`memory`), the console ring (`console-ring`) with serial
//! input switched between domains (`console`), and static channels and
//! grants that cannot be made. QEMU
//! (AMD-V with nested paging) boots each on two CPUs; Bochs (VT-x with
//! EPT), ten times slower, boots them all together with fewer rounds.
//!
//! Each guest ends with one verdict line, which the tests require to be
//! PASS; a guest that gives up part way (its peer never came, a map
//! failed) records that as a failed check first, so it cannot pass.

use integration_tests::{Boot, End, Machine, Outcome};

/// The evtchn pair: `ping` (domain `d`, per-vCPU upcall vector, declares
/// the static channels and grants the mailbox) and `pong` (domain `d+1`,
/// callback vector), two vCPUs each.
fn evtchn_pair(b: Boot, d: u32, rounds: u32) -> Boot {
    b.guest(
        "evtchn",
        &format!(
            "name=ping memory=8 vcpus=2 evtchn=10:pong:10,11:pong:11 grant=0:pong:0x500 \
             cmdline=\"role=ping peer={} port=10 ctl=11 gref=0 rounds={rounds} upcall=vector\"",
            d + 1
        ),
    )
    .guest(
        "evtchn",
        &format!("name=pong memory=8 vcpus=2 cmdline=\"role=pong peer={d} port=10 ctl=11 gref=0 rounds={rounds}\""),
    )
}

fn check_evtchn(o: &Outcome, d: u32, rounds: u32) {
    let (ping, pong) = (d, d + 1);
    o.expect(&format!("domain {ping} (ping): static event channel 10 <-> domain {pong} (pong) port 10"))
        .expect(&format!("domain {ping} (ping): static event channel 11 <-> domain {pong} (pong) port 11"))
        .expect(&format!("domain {ping} (ping): static grant 0 of frame 0x500 to domain {pong} (pong)"))
        .expect(&format!("(d{ping}) evtchn: ping, domain {ping}, peer {pong}, {rounds} rounds, upcalls by ApicVector"))
        .expect(&format!("(d{pong}) evtchn: pong, domain {pong}, peer {ping}, {rounds} rounds, upcalls by Callback"))
        .expect(&format!("(d{ping}) PASS every round trip came back"))
        .expect(&format!("(d{pong}) PASS every ping arrived and was answered"))
        .expect(&format!("(d{pong}) PASS the new port starts pending (Xen)"))
        .expect(&format!("(d{pong}) PASS status: unbound again, for the domain that closed"))
        .expect(&format!("(d{ping}) PASS the peer's send ended it, before its timeout"))
        .expect(&format!("(d{ping}) PASS unmasking a pending port delivers it"))
        .expect(&format!("(d{ping}) PASS the singleshot timer raised VIRQ_TIMER"))
        .expect(&format!("(d{pong}) PASS the event arrives on vCPU 1"))
        .expect(&format!("(d{ping}) PASS status of the peer's port"))
        .expect_verdict_pass(ping)
        .expect_verdict_pass(pong)
        .expect(&format!("domain {ping} (ping) shut down: poweroff"))
        .expect(&format!("domain {pong} (pong) shut down: poweroff"));
}

/// The grants pair: `granter` (domain `d`) and `mapper` (domain `d+1`).
fn grants_pair(b: Boot, d: u32) -> Boot {
    b.guest(
        "grants",
        &format!(
            "name=granter memory=8 evtchn=11:mapper:11 grant=0:mapper:0x500 \
             cmdline=\"role=granter peer={} ctl=11 gref=0\"",
            d + 1
        ),
    )
    .guest("grants", &format!("name=mapper memory=8 cmdline=\"role=mapper peer={d} ctl=11 gref=0\""))
}

fn check_grants(o: &Outcome, d: u32) {
    let (granter, mapper) = (d, d + 1);
    o.expect(&format!("domain {granter} (granter): static event channel 11 <-> domain {mapper} (mapper) port 11"))
        .expect(&format!("domain {granter} (granter): static grant 0 of frame 0x500 to domain {mapper} (mapper)"))
        .expect(&format!("(d{granter}) PASS the static grant is entry 0, mapped by the mapper"))
        .expect(&format!("(d{granter}) PASS mapped writable: GTF_reading and GTF_writing set"))
        .expect(&format!("(d{granter}) PASS the mapper's writes are in the granted page"))
        .expect(&format!("(d{mapper}) PASS a read-only grant mapped writable"))
        .expect(&format!("(d{mapper}) PASS unmap again"))
        .expect(&format!("(d{mapper}) PASS they came back to their offset"))
        .expect(&format!("(d{granter}) PASS the copy landed at its offset"))
        .expect_verdict_pass(granter)
        .expect_verdict_pass(mapper);
}

/// The FIFO ABI guest as domain `d` (two vCPUs).
const FIFO_ARGS: &str = "name=fifo memory=8 vcpus=2";

fn check_fifo(o: &Outcome, d: u32) {
    o.expect(&format!("(d{d}) evtchn-fifo: domain {d}"))
        .expect(&format!("(d{d}) PASS init_control for vCPU 2 (there are two)"))
        .expect(&format!("(d{d}) PASS it arrives through the 2-level bitmaps"))
        .expect(&format!("(d{d}) PASS link_bits"))
        .expect(&format!("(d{d}) PASS the event from before the switch arrives"))
        .expect(&format!("(d{d}) PASS in the order priority 0, 3, 3 (raised first first), 7, 9"))
        .expect(&format!("(d{d}) PASS SCHEDOP_poll on the pending FIFO port"))
        .expect(&format!("(d{d}) PASS the queued port is skipped"))
        .expect(&format!("(d{d}) PASS it heads vCPU 0's queue and arrives there"))
        .expect(&format!("(d{d}) PASS a 129th page"))
        .expect(&format!("(d{d}) PASS it arrives through the FIFO queues"))
        .expect_verdict_pass(d)
        .expect(&format!("domain {d} (fifo) destroyed;"));
}

fn check_memory(o: &Outcome, d: u32) {
    o.expect(&format!("(d{d}) PASS populated frames read as zero"))
        .expect(&format!("(d{d}) PASS 512 frames came"))
        .expect(&format!("(d{d}) PASS decrease 600 frames in one call"))
        .expect(&format!("(d{d}) PASS increase_reservation stops at the maximum"))
        .expect_verdict_pass(d);
}

fn check_console_ring(o: &Outcome, d: u32) {
    for i in 0..60 {
        o.expect(&format!("(d{d}) console ring line {i:02}: the quick brown fox jumps over the lazy dog"));
    }
    for i in 0..20 {
        o.expect(&format!("(d{d}) twenty lines in one send, {i:02}"));
    }
    o.expect(&format!("(d{d}) split across two sends: ok"))
        .expect(&format!("(d{d}) PASS the backend notified the port"))
        .expect_order(
            &format!("(d{d}) split across two sends: ok"),
            &format!("(d{d}) after the ring, through console_io"),
        )
        .expect_verdict_pass(d);
    // Each line once: nothing printed twice, nothing broken up.
    if o.lines_containing(&format!("(d{d}) console ring line ")).len() != 60 {
        o.fail("the ring's lines did not come out exactly once each");
    }
}

#[test]
fn two_domains_ping_pong_over_event_channels_as_in_xen() {
    let o = evtchn_pair(Boot::new("evtchn_pair", Machine::QemuBios).cpus(2), 1, 1000).run();
    o.expect_end(End::PoweredOff);
    check_evtchn(&o, 1, 1000);
}

#[test]
fn fifo_event_channels_follow_xen() {
    let o = Boot::new("evtchn_fifo", Machine::QemuBios).cpus(2).guest("evtchn-fifo", FIFO_ARGS).run();
    o.expect_end(End::PoweredOff);
    check_fifo(&o, 1);
    o.expect("memory: every domain's memory is free again");
}

#[test]
fn two_domains_map_and_copy_grants_as_in_xen() {
    let o = grants_pair(Boot::new("grants_pair", Machine::QemuBios).cpus(2), 1).run();
    o.expect_end(End::PoweredOff);
    check_grants(&o, 1);
}

#[test]
fn reservation_operations_follow_xen() {
    let o = Boot::new("memory_ops", Machine::QemuBios).cpus(2).guest("memory", "name=mem memory=8").run();
    o.expect_end(End::PoweredOff);
    check_memory(&o, 1);
}

#[test]
fn the_console_ring_prints_the_domains_lines() {
    let o = Boot::new("console_ring", Machine::QemuBios).cpus(2).guest("console-ring", "name=cons memory=8").run();
    o.expect_end(End::PoweredOff);
    check_console_ring(&o, 1);
}

/// Everything above on VT-x, in one boot: the pairs run beside each
/// other and the single guests.
#[test]
fn vtx_runs_the_interdomain_guests_together() {
    let rounds = 20;
    let b = Boot::new("vtx_interdomain", Machine::Bochs).cpus(2);
    let b = grants_pair(evtchn_pair(b, 1, rounds), 3)
        .guest("memory", "name=mem memory=8")
        .guest("console-ring", "name=cons memory=8")
        .guest("evtchn-fifo", FIFO_ARGS);
    let o = b.run();
    o.expect_end(End::PoweredOff);
    o.expect("VT-x: VMCS revision");
    check_evtchn(&o, 1, rounds);
    check_grants(&o, 3);
    check_memory(&o, 5);
    check_console_ring(&o, 6);
    check_fifo(&o, 7);
    o.expect("memory: every domain's memory is free again");
}

/// A static declaration naming a domain that does not exist refuses the
/// declaring domain, then the domains whose declarations named it; the
/// others run.
#[test]
fn static_declarations_that_cannot_be_made_refuse_their_domain() {
    let o = Boot::new("static_refused", Machine::QemuBios)
        .guest("hello", "name=lonely memory=8 evtchn=10:nobody:10")
        .guest("hello", "name=friend memory=8 grant=0:lonely:0x500")
        .guest("hello", "name=fine memory=8")
        .guest("hello", "name=typo memory=8 evtchn=0:fine:1")
        .expect_error("domain 1 (lonely) refused")
        .expect_error("domain 2 (friend) refused")
        .expect_error("domain refused: evtchn=\"0:fine:1\" is not valid")
        .run();
    o.expect_end(End::PoweredOff);
    o.expect("domain 1 (lonely) refused: evtchn=10:nobody:10: no domain 'nobody'")
        .expect("domain 2 (friend) refused: grant=0:lonely:0x500: no domain 'lonely'")
        .expect("domain refused: evtchn=\"0:fine:1\" is not valid")
        .expect("(d3) goodbye")
        .expect("domain 3 (fine) destroyed; 8 MiB returned");
    o.expect_absent("(d1) hello").expect_absent("(d2) hello");
}

/// Serial input goes to the hypervisor first; Ctrl-A three times moves it
/// to each domain's console ring in turn (a single Ctrl-A passes through),
/// and each domain reads it from its ring. The domain that holds the
/// serial line has its output printed as it comes, without a prefix.
#[test]
fn serial_input_reaches_the_selected_domains_console_ring() {
    let o = Boot::new("console_input", Machine::QemuBios)
        .guest("console", "name=con1 memory=8")
        .guest("console", "name=con2 memory=8")
        .type_after_all(
            &["(d1) console: ready for input", "(d2) console: ready for input"],
            b"ignored\r\x01\x01\x01one\x01two\rquit\r",
        )
        .type_after("console input: quit", b"\x01\x01\x01second\rquit\r")
        .run();
    o.expect_end(End::PoweredOff);
    o.expect("serial input to domain 1 (type Ctrl-A three times to switch)")
        .expect_order("serial input to domain 1", "console input: one^Atwo")
        .expect_line_start("console input: one^Atwo")
        .expect_order("console input: quit", "domain 1 (con1) shut down: poweroff")
        .expect_order("console input: one^Atwo", "serial input to domain 2")
        .expect_order("serial input to domain 2", "console input: second")
        .expect("domain 2 (con2) shut down: poweroff");
    assert_eq!(o.lines_containing("console input: one").len(), 1, "only domain 1 read \"one\"");
    o.expect_absent("console input: ignored");
}
