//! Xen's inter-domain primitives between two test guests joined by a
//! static event channel and a static grant: event-channel ping-pong with
//! upcalls, channels made and closed at run time, grants mapped, written,
//! unmapped and copied with the granter watching GTF_reading and
//! GTF_writing, VIRQ_TIMER, IPIs, polls on masked ports, the reservation
//! operations, the console ring, and Xen's error for every bad argument.
//! On QEMU (SVM+NPT) and Bochs (VT-x+EPT), two CPUs each.

use integration_tests::{Boot, End, Machine, Outcome};

/// The two guests: `a` (domain 1) binds port 10 to b's port 10; `b`
/// (domain 2) grants its frame 0x500 to a as reference 0.
fn pair(boot: Boot, rounds: u32) -> Boot {
    boot.guest("events", &format!("name=ev-a memory=8 evtchn=10:ev-b:10 cmdline=\"role=a peer=2 rounds={rounds}\""))
        .guest(
            "events",
            &format!("name=ev-b memory=8 grant=0:ev-a:0x500 cmdline=\"role=b peer=1 me=2 rounds={rounds}\""),
        )
}

fn check_pair(o: &Outcome) {
    o.expect_end(End::PoweredOff).expect_no_crash();
    o.expect("domain 1 (ev-a): static event channel 10 <-> domain 2 (ev-b) port 10")
        .expect("domain 2 (ev-b): static grant 0 of frame 0x500 to domain 1 (ev-a)")
        .expect("(d1) PASS every round trip came back")
        .expect("(d1) PASS status: interdomain to b's port")
        .expect("(d2) PASS the new port starts pending (Xen)")
        .expect("(d1) PASS mapped writable: GTF_reading and GTF_writing set")
        .expect("(d1) PASS b's grant copy into this page landed at its offset")
        .expect("(d1) PASS unmapped and copied: the flags are back")
        .expect("(d2) PASS unmap again")
        .expect("(d2) PASS a read-only grant mapped writable")
        .expect("(d1) PASS the singleshot timer raised VIRQ_TIMER")
        .expect("(d1) PASS unmasking a pending port delivers it")
        .expect("(d1) PASS populate_physmap brings them back")
        .expect("(d2) written to the console ring")
        .expect("(d1) ALL 98 CHECKS PASSED")
        .expect("(d2) ALL 41 CHECKS PASSED");
    o.expect_absent("FAIL");
}

#[test]
fn two_domains_use_event_channels_grants_and_memory_ops() {
    let o = pair(Boot::new("events_pair", Machine::QemuBios).cpus(2), 200).run();
    check_pair(&o);
}

#[test]
fn vtx_two_domains_use_event_channels_grants_and_memory_ops() {
    let o = pair(Boot::new("vtx_events_pair", Machine::Bochs).cpus(2), 20).run();
    check_pair(&o);
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
        .run();
    o.expect_end(End::PoweredOff).expect_no_crash();
    o.expect("domain 1 (lonely) refused: evtchn=10:nobody:10: no domain 'nobody'")
        .expect("domain 2 (friend) refused: grant=0:lonely:0x500: no domain 'lonely'")
        .expect("domain refused: evtchn=\"0:fine:1\" is not valid")
        .expect("(d3) goodbye")
        .expect("domain 3 (fine) destroyed; 8 MiB returned");
    o.expect_absent("(d1) hello").expect_absent("(d2) hello");
}
