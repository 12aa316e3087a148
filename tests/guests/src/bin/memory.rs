//! The reservation operations of memory_op, as Xen 4.17 gives them to a
//! PVH domU (start it with memory=8): current and maximum reservation,
//! decrease_reservation handing frames back, populate_physmap bringing
//! them back (zeroed, a rule of this hypervisor), extents of order 9 and the domU limit beyond it,
//! increase_reservation up to the maximum, the continuation of a long
//! request, and what Xen refuses: each reservation call returns the
//! extents it did, stopping at the first it could not do.

#![no_std]
#![no_main]

use test_guests::pair::NOT_RAM;
use test_guests::xen::{self, NO_DOMAIN, UNMAPPED};
use test_guests::*;
use xen_abi::DOMID_SELF;
use xen_abi::errno::*;
use xen_abi::hypercall as nr;
use xen_abi::memory::*;

const SELF: u16 = DOMID_SELF;
/// Frames of this guest's RAM it does not use (its image, stacks and
/// start info end below 4 MiB).
const SMALL: u64 = 0x700;
const ORDER9: u64 = 0x600;
const LONG: u64 = 0x400;
const LONG_EXTENTS: usize = 600;

const DECREASE: u64 = XENMEM_DECREASE_RESERVATION;
const POPULATE: u64 = XENMEM_POPULATE_PHYSMAP;
const INCREASE: u64 = XENMEM_INCREASE_RESERVATION;

fn current() -> i64 {
    xen::current_reservation(SELF)
}

fn pattern(gfn: u64) -> impl Fn(usize) -> u8 {
    move |i| (i as u64 ^ gfn) as u8 | 1
}

#[unsafe(no_mangle)]
extern "C" fn pvh_main(_: u64) -> ! {
    let mut c = Checks::new();
    let cur = current();
    let max = xen::maximum_reservation(SELF);
    println!("memory: reservation {cur} pages, maximum {max}");
    // 8 MiB of RAM, give or take the special pages a toolstack adds.
    c.check("current_reservation: the domain's 8 MiB", (1984..=2112).contains(&cur));
    c.check("maximum_reservation: not below it", max >= cur);
    let top = xen::raw(nr::MEMORY_OP, XENMEM_MAXIMUM_RAM_PAGE, 0, 0);
    c.check("maximum_ram_page: the machine's, above this domain's pages", top > cur);
    c.check("maximum_gpfn: covers the RAM", xen::reservation_query(XENMEM_MAXIMUM_GPFN, SELF) >= 0x7ff);
    c.eq("current_reservation of no domain", xen::current_reservation(NO_DOMAIN), -ESRCH);
    c.eq(
        "current_reservation from unmapped memory",
        xen::raw(nr::MEMORY_OP, XENMEM_CURRENT_RESERVATION, UNMAPPED, 0),
        -EFAULT,
    );
    let cont = 1 << MEMOP_EXTENT_SHIFT;
    let mut d = SELF;
    c.eq(
        "current_reservation with continuation bits",
        xen::memory_op(XENMEM_CURRENT_RESERVATION | cont, &mut d),
        -EINVAL,
    );
    c.eq(
        "maximum_ram_page with continuation bits",
        xen::raw(nr::MEMORY_OP, XENMEM_MAXIMUM_RAM_PAGE | cont, 0, 0),
        -EINVAL,
    );

    // Four frames out and back.
    for g in SMALL..SMALL + 4 {
        xen::fill(g, pattern(g));
    }
    let mut four = [SMALL, SMALL + 1, SMALL + 2, SMALL + 3];
    c.eq("decrease_reservation of four frames", xen::reservation(DECREASE, SELF, &mut four, 0, 0), 4);
    c.eq("the reservation is four frames smaller", current(), cur - 4);
    c.eq("decrease them again: nothing to give", xen::reservation(DECREASE, SELF, &mut four, 0, 0), 0);
    c.eq("populate_physmap them", xen::reservation(POPULATE, SELF, &mut four, 0, 0), 4);
    c.eq("the reservation is back", current(), cur);
    // (Stricter than Xen, which leaves scrubbing to the domain that freed
    // a page unless it is dying or scrub_domheap is set: this hypervisor
    // never hands out a frame it has not zeroed.)
    c.check("populated frames read as zero", (SMALL..SMALL + 4).all(|g| xen::holds(g, 0..4096, |_| 0)));

    // A list with a frame the domain does not have: done up to it.
    let mut mixed = [SMALL + 4, NOT_RAM, SMALL + 5];
    c.eq("decrease stops at a frame not in RAM", xen::reservation(DECREASE, SELF, &mut mixed, 0, 0), 1);
    c.eq("one frame went", current(), cur - 1);
    c.eq("populate it back", xen::reservation(POPULATE, SELF, &mut mixed[..1], 0, 0), 1);

    // Order 9 is the domU limit.
    xen::fill(ORDER9 + 17, pattern(ORDER9));
    let mut big = [ORDER9];
    c.eq("decrease an order-9 extent", xen::reservation(DECREASE, SELF, &mut big, 9, 0), 1);
    c.eq("512 frames went", current(), cur - 512);
    c.eq("populate an order-9 extent", xen::reservation(POPULATE, SELF, &mut big, 9, 0), 1);
    c.eq("512 frames came", current(), cur);
    c.check("they read as zero", xen::holds(ORDER9 + 17, 0..4096, |_| 0));
    let mut huge = [LONG];
    c.eq("decrease an order-10 extent", xen::reservation(DECREASE, SELF, &mut huge, 10, 0), 0);
    c.eq("populate an order-10 extent", xen::reservation(POPULATE, SELF, &mut huge, 10, 0), 0);
    c.eq("increase by an order-10 extent", xen::reservation(INCREASE, SELF, &mut huge, 10, 0), 0);
    c.eq("nothing changed", current(), cur);

    // What makes Xen do nothing (it returns the extents done: none).
    let mut one = [SMALL + 6];
    c.eq("address bits 12 (too few)", xen::reservation(DECREASE, SELF, &mut one, 0, 12), 0);
    c.eq("a domain that does not exist", xen::reservation(DECREASE, NO_DOMAIN, &mut one, 0, 0), 0);
    c.eq("the reservation from unmapped memory", xen::raw(nr::MEMORY_OP, DECREASE, UNMAPPED, 0), 0);
    let mut r = MemoryReservation { extent_start: UNMAPPED, nr_extents: 1, domid: SELF, ..Default::default() };
    c.eq("the extent list in unmapped memory", xen::memory_op(DECREASE, &mut r), 0);
    let mut r = MemoryReservation {
        extent_start: one.as_mut_ptr() as u64,
        nr_extents: (u32::MAX >> MEMOP_EXTENT_SHIFT) as u64 + 1,
        domid: SELF,
        ..Default::default()
    };
    c.eq("more extents than a continuation can count", xen::memory_op(DECREASE, &mut r), 0);
    c.eq("nothing changed", current(), cur);
    // Should a call that must do nothing have taken the frame, it is put
    // back, so that the checks below do not fail for the same reason.
    // (Populating a frame that is there would replace it and leak the old
    // one, in Xen.)
    if current() < cur {
        xen::reservation(POPULATE, SELF, &mut one, 0, 0);
    }
    let mut other = [SMALL + 9];
    c.eq("decrease with address bits 32", xen::reservation(DECREASE, SELF, &mut other, 0, 32), 1);
    c.eq(
        "populate-on-demand of oneself",
        xen::reservation(POPULATE, SELF, &mut other, 0, XENMEMF_POPULATE_ON_DEMAND),
        0,
    );
    c.eq("populate with address bits 32", xen::reservation(POPULATE, SELF, &mut other, 0, 32), 1);
    c.eq("the reservation is back", current(), cur);

    // A request longer than one go: Xen continues it.
    let mut list = [0u64; LONG_EXTENTS];
    for (i, g) in list.iter_mut().enumerate() {
        *g = LONG + i as u64;
    }
    c.eq("decrease 600 frames in one call", xen::reservation(DECREASE, SELF, &mut list, 0, 0), LONG_EXTENTS as i64);
    c.eq("600 frames went", current(), cur - LONG_EXTENTS as i64);
    c.eq("populate them in one call", xen::reservation(POPULATE, SELF, &mut list, 0, 0), LONG_EXTENTS as i64);
    c.eq("600 frames came", current(), cur);

    // Up to the maximum, and no further. (Frames increase_reservation
    // gives a translated guest have no guest address.)
    let room = max - cur;
    c.check("the maximum is within 16 MiB of the reservation", (0..=4096).contains(&room));
    let room = room.clamp(0, 4096);
    let mut r = MemoryReservation { extent_start: 0, nr_extents: room as u64 + 1, domid: SELF, ..Default::default() };
    c.eq("increase_reservation stops at the maximum", xen::memory_op(INCREASE, &mut r), room);
    c.eq("the reservation is at the maximum", current(), max);
    let mut r = MemoryReservation { extent_start: 0, nr_extents: 1, domid: SELF, ..Default::default() };
    c.eq("increase_reservation beyond it", xen::memory_op(INCREASE, &mut r), 0);
    let mut last = [SMALL + 7];
    c.eq("decrease one frame", xen::reservation(DECREASE, SELF, &mut last, 0, 0), 1);
    c.eq("increase by one frame", xen::memory_op(INCREASE, &mut r), 1);
    c.eq("populate_physmap beyond the maximum", xen::reservation(POPULATE, SELF, &mut last, 0, 0), 0);
    c.eq("the reservation is at the maximum still", current(), max);
    c.finish()
}
