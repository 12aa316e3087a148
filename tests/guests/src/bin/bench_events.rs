//! Inter-domain figures, timed with RDTSC (under QEMU's `-icount` and in
//! Bochs the TSC counts instructions): a pair of these guests,
//! `role=ping` and `role=pong`, joined as the evtchn guests are (static
//! channels `port=` and `ctl=`, ping's mailbox frame as grant `gref=`,
//! and ping's frame 0x600 as grant `page=` for the grant figures):
//!
//! ```text
//! domu name=ping evtchn=10:pong:10,11:pong:11 grant=0:pong:0x500,1:pong:0x600
//!      cmdline="role=ping peer=2 rounds=2000"
//! domu name=pong cmdline="role=pong peer=1 rounds=2000"
//! ```
//!
//! Ping prints the event-channel round trip (send, the other domain's
//! upcall and send back, this domain's upcall); pong prints a grant map
//! plus unmap, and grant copies of a whole page. Each as a
//! `BENCH name value ...` line.

#![no_std]
#![no_main]

use test_guests::pair::{Link, MAILBOX_AT, MAILBOX_GFN, WAIT_MS};
use test_guests::xen::{self, Args, Upcall};
use test_guests::*;
use xen_abi::grant_table::GNTCOPY_SOURCE_GREF;

const MAP_AT: u64 = 0x1010;
const COPY_TO: u64 = 0x700;
const HELLO: usize = 1;
const WARM_UP: u32 = 20;

fn round_trips(port: u32, from: u32, n: u32) -> Option<u64> {
    let t0 = rdtsc();
    for i in 0..n {
        xen::send(port);
        if !xen::wait_until(xen::after_ms(WAIT_MS), || xen::events(port) > from + i) {
            return None;
        }
    }
    Some((rdtsc() - t0) / n.max(1) as u64)
}

fn answer(port: u32, n: u32) -> bool {
    for i in 0..n {
        if !xen::wait_until(xen::after_ms(WAIT_MS), || xen::events(port) > i) {
            return false;
        }
        xen::send(port);
    }
    true
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
    let page = args.num_or("page", 1) as u32;
    let rounds = args.num_or("rounds", 2000) as u32;
    println!("bench-events: {role}, {rounds} rounds");

    xen::start(&mut c, Upcall::Callback);
    let total = WARM_UP + rounds;

    if role == "ping" {
        let link = Link::owner(MAILBOX_GFN, ctl, peer);
        if link.wait(&mut c, HELLO, "pong mapped the mailbox").is_none() {
            c.finish();
        }
        let warm = round_trips(port, 0, WARM_UP);
        let per = warm.and_then(|_| round_trips(port, WARM_UP, rounds));
        c.check("every round trip came back", per.is_some());
        if let Some(per) = per {
            println!("BENCH evtchn_round_trip {per} per round trip between two domains ({rounds} rounds)");
        }
        link.step(&mut c, 1);
        link.step(&mut c, 2);
    } else {
        let Some(link) = Link::peer(&mut c, peer, gref, MAILBOX_AT, ctl) else { c.finish() };
        link.put(HELLO, 1);
        c.check("every ping answered", answer(port, total));
        link.step(&mut c, 1);

        // Map and unmap one grant, over and over.
        let mut failed = 0;
        let t0 = rdtsc();
        for _ in 0..rounds {
            let (rc, status, handle) = xen::map_grant(peer, page, MAP_AT, false);
            let (rc2, status2) = xen::unmap_grant(MAP_AT, handle);
            if rc != 0 || status != 0 || rc2 != 0 || status2 != 0 {
                failed += 1;
            }
        }
        let per = (rdtsc() - t0) / rounds.max(1) as u64;
        c.eq("every map and unmap succeeded", failed, 0);
        println!("BENCH grant_map_unmap {per} per map+unmap pair ({rounds} pairs)");

        // Copy the granted page into this domain's frame.
        let mut failed = 0;
        let t0 = rdtsc();
        for _ in 0..rounds {
            let (rc, status) =
                xen::copy(xen::gref_ptr(peer, page, 0), xen::frame_ptr(COPY_TO, 0), 4096, GNTCOPY_SOURCE_GREF);
            if rc != 0 || status != 0 {
                failed += 1;
            }
        }
        let per = (rdtsc() - t0) / rounds.max(1) as u64;
        c.eq("every copy succeeded", failed, 0);
        println!("BENCH grant_copy_4k {per} per 4096-byte copy ({rounds} copies)");
        println!("BENCH grant_copy_throughput {} bytes per 1000 TSC ticks", 4096 * 1000 / per.max(1));
        link.step(&mut c, 2);
    }
    c.finish()
}
