//! Grant tables (version 1) between two domains, as Xen 4.17 gives them:
//! a pair of these guests, `role=granter` and `role=mapper`, joined at
//! boot by a static control channel (`ctl=`) and a statically granted
//! mailbox page (the granter's frame, `gref=`), from the granter's line:
//!
//! ```text
//! domu name=granter evtchn=11:mapper:11 grant=0:mapper:0x500
//!      cmdline="role=granter peer=2 ctl=11 gref=0"
//! domu name=mapper cmdline="role=mapper peer=1 ctl=11 gref=0"
//! ```
//!
//! The granter maps its grant frames (XENMAPSPACE_grant_table), checks
//! its table's size and version, and writes grants: read-write,
//! read-only, to another domain, of a frame it does not have, of the
//! wrong type. The mapper maps them (and Xen refuses what it must), writes
//! through its mapping while the granter watches GTF_reading and
//! GTF_writing, unmaps (twice, at the wrong address, ...), then copies
//! with GNTTABOP_copy in both directions, whole and partial pages, and
//! every copy Xen refuses. Every expected value is Xen's.

#![no_std]
#![no_main]

use test_guests::pair::Link;
use test_guests::pair::{MAILBOX_AT, MAILBOX_GFN, NOT_RAM};
use test_guests::xen::{self, Args, GrantFrame, NO_DOMAIN, UNMAPPED, Upcall};
use test_guests::*;
use xen_abi::errno::*;
use xen_abi::grant_table::*;
use xen_abi::hypercall as nr;
use xen_abi::{DOMID_SELF, Pod, memory as mem};

const SELF: u16 = DOMID_SELF;
/// Where the granter maps its grant frames 0 and 1.
const FRAME0_AT: u64 = 0x1100;
const FRAME1_AT: u64 = 0x1101;

/// The granter's pages and the references granting them.
const RW_PAGE: u64 = 0x600;
const RO_PAGE: u64 = 0x601;
const COPY_PAGE: u64 = 0x602;
const OTHER_PAGE: u64 = 0x603;
const TRANSFER_PAGE: u64 = 0x604;
const FRAME1_PAGE: u64 = 0x605;
const REF_RW: u32 = 10;
const REF_RO: u32 = 11;
/// Granted to a domain other than the mapper.
const REF_OTHER: u32 = 12;
/// Grants a frame the granter does not have.
const REF_NOT_RAM: u32 = 13;
/// GTF_accept_transfer: not something to map.
const REF_TRANSFER: u32 = 14;
/// Read-write, the target of the mapper's copies.
const REF_COPY: u32 = 15;
/// In grant frame 1.
const REF_FRAME1: u32 = 520;

/// Where the mapper maps, and its own pages.
const MAP_RW: u64 = 0x1010;
const MAP_RO: u64 = 0x1011;
const MAP_SECOND: u64 = 0x1012;
const MAP_FRAME1: u64 = 0x1013;
const MAP_REFUSED: u64 = 0x1014;
const OWN_A: u64 = 0x650;
const OWN_B: u64 = 0x651;
const OWN_C: u64 = 0x652;
const OWN_D: u64 = 0x653;

// Mailbox slots.
const HELLO: usize = 1;
const GRANTED: usize = 2;
const MAPPED: usize = 3;
const CHECKED: usize = 4;
const UNMAPPED_ALL: usize = 5;
const REVOKED: usize = 6;
const COPIED: usize = 7;

const STEP_DONE: u32 = 1;

/// What the mapper writes through its mapping, and copies from OWN_B.
fn written(i: usize) -> u8 {
    (i * 7 + 1) as u8
}

fn own_b(i: usize) -> u8 {
    (i % 251) as u8 ^ 0x3c
}

const RO_BYTE: u8 = 0xa5;

#[unsafe(no_mangle)]
extern "C" fn pvh_main(si_paddr: u64) -> ! {
    let args = Args::from_start_info(si_paddr);
    let mut c = Checks::new();
    let role = args.get("role").unwrap_or("?");
    let peer = args.required("peer") as u16;
    let ctl = args.num_or("ctl", 11) as u32;
    let gref = args.num_or("gref", 0) as u32;
    println!("grants: {role}, domain {}, peer {peer}", xen::domid());

    xen::start(&mut c, Upcall::Callback);

    match role {
        "granter" => {
            let link = Link::owner(MAILBOX_GFN, ctl, peer);
            if link.wait(&mut c, HELLO, "the mapper mapped the mailbox").is_some() {
                granter(&mut c, &link);
            }
            cross_domain(&mut c, peer);
            link.step(&mut c, STEP_DONE);
        }
        "mapper" => {
            if let Some(link) = Link::peer(&mut c, peer, gref, MAILBOX_AT, ctl) {
                link.put(HELLO, 1);
                mapper(&mut c, &link);
                cross_domain(&mut c, peer);
                link.step(&mut c, STEP_DONE);
            }
        }
        _ => panic!("role= must be granter or mapper"),
    }
    c.finish()
}

fn granter(c: &mut Checks, link: &Link) {
    let peer = link.peer;
    let me = xen::domid();

    // The table: version 1, one frame to begin with, at most 64.
    c.eq("get_version", xen::get_version(SELF).0, 0);
    c.eq("the version is 1", xen::get_version(SELF).1 as i64, 1);
    c.eq("set_version 1 (already)", xen::set_version(1).0, 0);
    c.eq("set_version 0", xen::set_version(0).0, -EINVAL);
    c.eq("set_version 3", xen::set_version(3).0, -EINVAL);
    // As Xen for a domain created with max_grant_version=1.
    c.eq("set_version 2 (no version 2 here)", xen::set_version(2).0, -ENOSYS);
    c.eq("still version 1", xen::get_version(SELF).1 as i64, 1);
    let (rc, status, nr, max) = xen::query_size(SELF);
    c.eq("query_size", rc, 0);
    c.eq("query_size: status", status as i64, GNTST_OKAY as i64);
    c.eq("one grant frame to begin with", nr as i64, 1);
    c.eq("at most 64", max as i64, 64);
    let mut frames = [0u64; 1];
    let (rc, status) = xen::setup_table(SELF, &mut frames);
    c.eq("setup_table for one frame", rc, 0);
    c.eq("setup_table: status", status as i64, GNTST_OKAY as i64);
    // A translated guest gets the frame's guest address: none until mapped.
    c.eq("setup_table: frame 0 is not in the physmap yet", frames[0] as i64, -1);

    // Frame 0 into the physmap: the static grant is its entry 0.
    let (rc, f0) = GrantFrame::map(0, FRAME0_AT);
    c.eq("add_to_physmap grant frame 0", rc, 0);
    // (The mapper has it mapped: it is the mailbox.)
    let e0 = f0.entry(0);
    let want =
        GrantEntryV1 { flags: GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING, domid: peer, frame: MAILBOX_GFN as u32 };
    c.check("the static grant is entry 0, mapped by the mapper", e0 == want);
    if e0 != want {
        println!("  entry 0 is {e0:?}");
    }
    let (_, status) = xen::setup_table(SELF, &mut frames);
    c.eq("setup_table now", status as i64, GNTST_OKAY as i64);
    c.eq("setup_table: frame 0 is where it was mapped", frames[0] as i64, FRAME0_AT as i64);
    let (rc, f1) = GrantFrame::map(1, FRAME1_AT);
    c.eq("add_to_physmap grant frame 1 grows the table", rc, 0);
    c.eq("two frames now", xen::query_size(SELF).2 as i64, 2);
    let (rc, _) = GrantFrame::map(64, NOT_RAM);
    c.eq("add_to_physmap grant frame 64", rc, -EINVAL);
    c.eq(
        "add_to_physmap a status frame (version 1 has none)",
        xen::add_to_physmap(mem::XENMAPSPACE_GRANT_TABLE, mem::XENMAPIDX_GRANT_TABLE_STATUS, NOT_RAM),
        -EINVAL,
    );
    let mut many = [0u64; 65];
    let (rc, status) = xen::setup_table(SELF, &mut many);
    c.eq("setup_table for 65 frames", rc, 0);
    c.eq("setup_table for 65 frames: status", status as i64, GNTST_GENERAL_ERROR as i64);
    let (rc, status) = xen::setup_table_at(SELF, 1, UNMAPPED);
    c.eq("setup_table into unmapped memory", rc, 0);
    c.eq("setup_table into unmapped memory: status", status as i64, GNTST_BAD_VIRT_ADDR as i64);
    let mut two =
        [SetupTable { dom: SELF, nr_frames: 1, frame_list: frames.as_mut_ptr() as u64, ..Default::default() }; 2];
    c.eq("setup_table with a count of 2", xen::grant_table_op(GNTTABOP_SETUP_TABLE, &mut two), -EINVAL);
    let mut q = [QuerySize { dom: SELF, ..Default::default() }; 2];
    c.eq("query_size with a count of 2", xen::grant_table_op(GNTTABOP_QUERY_SIZE, &mut q), -EINVAL);
    c.eq("query_size from unmapped memory", xen::raw(nr::GRANT_TABLE_OP, GNTTABOP_QUERY_SIZE, UNMAPPED, 1), -EFAULT);
    // What a PVH guest may not use at all.
    for (what, cmd) in [
        ("GNTTABOP_dump_table", GNTTABOP_DUMP_TABLE),
        ("GNTTABOP_transfer", GNTTABOP_TRANSFER),
        ("GNTTABOP_unmap_and_replace", GNTTABOP_UNMAP_AND_REPLACE),
        ("GNTTABOP_get_status_frames", GNTTABOP_GET_STATUS_FRAMES),
        ("GNTTABOP_cache_flush", GNTTABOP_CACHE_FLUSH),
        ("an unknown grant operation", 99),
        ("map with continuation bits", GNTTABOP_MAP_GRANT_REF | 1 << 12),
    ] {
        c.eq(what, xen::raw(nr::GRANT_TABLE_OP, cmd, UNMAPPED, 1), -ENOSYS);
    }

    // Grants, each written frame and domain first, flags last.
    xen::fill(RW_PAGE, |_| 0);
    xen::fill(RO_PAGE, |_| RO_BYTE);
    xen::fill(COPY_PAGE, |_| 0);
    f0.grant(REF_RW, peer, RW_PAGE as u32, false);
    f0.grant(REF_RO, peer, RO_PAGE as u32, true);
    f0.grant(REF_OTHER, me, OTHER_PAGE as u32, false);
    f0.grant(REF_NOT_RAM, peer, NOT_RAM as u32, false);
    f0.write_raw(REF_TRANSFER, GrantEntryV1 { flags: GTF_ACCEPT_TRANSFER, domid: peer, frame: TRANSFER_PAGE as u32 });
    f0.grant(REF_COPY, peer, COPY_PAGE as u32, false);
    f1.grant(REF_FRAME1, peer, FRAME1_PAGE as u32, false);
    link.put(GRANTED, 1);

    // While the mapper has them mapped.
    if link.wait(c, MAPPED, "the mapper mapped the grants").is_none() {
        return;
    }
    c.eq(
        "mapped writable: GTF_reading and GTF_writing set",
        f0.flags(REF_RW) as i64,
        (GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING) as i64,
    );
    c.eq(
        "mapped read-only: GTF_reading set",
        f0.flags(REF_RO) as i64,
        (GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING) as i64,
    );
    c.eq("refused maps leave no flags: another domain's grant", f0.flags(REF_OTHER) as i64, GTF_PERMIT_ACCESS as i64);
    c.eq("refused maps leave no flags: a frame not in RAM", f0.flags(REF_NOT_RAM) as i64, GTF_PERMIT_ACCESS as i64);
    c.eq("refused maps leave no flags: a transfer entry", f0.flags(REF_TRANSFER) as i64, GTF_ACCEPT_TRANSFER as i64);
    c.eq("the grant in frame 1 was mapped and unmapped", f1.flags(REF_FRAME1) as i64, GTF_PERMIT_ACCESS as i64);
    c.check("the mapper's writes are in the granted page", xen::holds(RW_PAGE, 0..4096, written));
    c.check("the grant in frame 1 was written", xen::holds(FRAME1_PAGE, 0..4096, |_| 0x5a));
    c.check("ending access to a mapped grant fails", !f0.end_access(REF_RW));
    c.eq("and leaves it as it was", f0.flags(REF_RW) as i64, (GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING) as i64);
    link.put(CHECKED, 1);

    // After the unmaps.
    if link.wait(c, UNMAPPED_ALL, "the mapper unmapped").is_none() {
        return;
    }
    c.eq("unmapped: the read-write grant's flags are back", f0.flags(REF_RW) as i64, GTF_PERMIT_ACCESS as i64);
    c.eq(
        "unmapped: the read-only grant's flags are back",
        f0.flags(REF_RO) as i64,
        (GTF_PERMIT_ACCESS | GTF_READONLY) as i64,
    );
    c.check("ending access now succeeds", f0.end_access(REF_RW));
    c.eq("the entry is invalid", f0.flags(REF_RW) as i64, 0);
    link.put(REVOKED, 1);

    // After the copies.
    if link.wait(c, COPIED, "the mapper copied").is_none() {
        return;
    }
    c.check("the copy landed at its offset", xen::holds(COPY_PAGE, 100..300, |i| own_b(i - 100)));
    c.check("the batch's copy landed at offset 0", xen::holds(COPY_PAGE, 0..16, own_b));
    c.check(
        "nothing else of the page changed",
        xen::holds(COPY_PAGE, 16..100, |_| 0) && xen::holds(COPY_PAGE, 300..4096, |_| 0),
    );
    c.eq("copies leave no flags behind", f0.flags(REF_COPY) as i64, GTF_PERMIT_ACCESS as i64);
    c.eq("nor on the read-only grant", f0.flags(REF_RO) as i64, (GTF_PERMIT_ACCESS | GTF_READONLY) as i64);
    // A copy between two of one's own frames needs no grant.
    xen::fill(OTHER_PAGE, |i| i as u8);
    let (rc, status) = xen::copy(xen::frame_ptr(OTHER_PAGE, 8), xen::frame_ptr(RO_PAGE, 16), 64, 0);
    c.eq("copy between two of this domain's frames", rc, 0);
    c.eq("copy between two of this domain's frames: status", status as i64, GNTST_OKAY as i64);
    c.check(
        "the bytes moved",
        xen::holds(RO_PAGE, 16..80, |i| (i - 8) as u8) && xen::holds(RO_PAGE, 80..96, |_| RO_BYTE),
    );
}

fn mapper(c: &mut Checks, link: &Link) {
    let peer = link.peer;
    let me = xen::domid();
    if link.wait(c, GRANTED, "the granter wrote its grants").is_none() {
        return;
    }
    let st = |r: (i64, i16, u32)| if r.0 != 0 { r.0 } else { r.1 as i64 };

    // Maps Xen makes.
    let (rc, status, h_rw) = xen::map_grant(peer, REF_RW, MAP_RW, false);
    c.eq("map the read-write grant", rc, 0);
    c.eq("map the read-write grant: status", status as i64, GNTST_OKAY as i64);
    xen::fill(MAP_RW, written);
    let (rc, status, h_ro) = xen::map_grant(peer, REF_RO, MAP_RO, true);
    c.eq("map the read-only grant read-only", rc, 0);
    c.eq("map the read-only grant read-only: status", status as i64, GNTST_OKAY as i64);
    c.check("it holds the granter's bytes", xen::holds(MAP_RO, 0..4096, |_| RO_BYTE));
    let (_, status, h_f1) = xen::map_grant(peer, REF_FRAME1, MAP_FRAME1, false);
    c.eq("map a grant from the granter's frame 1", status as i64, GNTST_OKAY as i64);
    xen::fill(MAP_FRAME1, |_| 0x5a);
    c.eq("unmap it", xen::unmap_grant(MAP_FRAME1, h_f1).1 as i64, GNTST_OKAY as i64);
    // The same grant a second time, from an operation at an odd address
    // (Xen copies the array whatever its alignment).
    let mut buf = [0u8; 1 + core::mem::size_of::<MapGrantRef>()];
    let op = xen::map_op(peer, REF_RW, MAP_SECOND, GNTMAP_HOST_MAP);
    buf[1..].copy_from_slice(op.as_bytes());
    let at = buf.as_mut_ptr() as u64 + 1;
    c.eq("map it again from an unaligned operation", xen::raw(nr::GRANT_TABLE_OP, GNTTABOP_MAP_GRANT_REF, at, 1), 0);
    let op2 = MapGrantRef::read_from(&buf[1..]).unwrap_or_default();
    c.eq("map it again: status", op2.status as i64, GNTST_OKAY as i64);
    let h_second = op2.handle;
    c.check("a second handle", h_second != h_rw);
    // SAFETY: both mappings are of the same granted frame.
    let same = unsafe { core::ptr::read_volatile(((MAP_SECOND << 12) + 5) as *const u8) } == written(5);
    c.check("the two mappings show the same page", same);

    // Maps Xen refuses.
    let hm = GNTMAP_HOST_MAP;
    c.eq(
        "a read-only grant mapped writable",
        st(xen::map_grant(peer, REF_RO, MAP_REFUSED, false)),
        GNTST_GENERAL_ERROR as i64,
    );
    c.eq(
        "a grant made to another domain",
        st(xen::map_grant(peer, REF_OTHER, MAP_REFUSED, false)),
        GNTST_GENERAL_ERROR as i64,
    );
    c.eq(
        "a grant of a frame the granter does not have",
        st(xen::map_grant(peer, REF_NOT_RAM, MAP_REFUSED, false)),
        GNTST_BAD_PAGE as i64,
    );
    c.eq("a transfer entry", st(xen::map_grant(peer, REF_TRANSFER, MAP_REFUSED, false)), GNTST_GENERAL_ERROR as i64);
    c.eq("a never-written entry", st(xen::map_grant(peer, 300, MAP_REFUSED, false)), GNTST_GENERAL_ERROR as i64);
    c.eq(
        "a reference beyond the granter's frames",
        st(xen::map_grant(peer, 1024, MAP_REFUSED, false)),
        GNTST_BAD_GNTREF as i64,
    );
    c.eq("reference 65536", st(xen::map_grant(peer, 0x10000, MAP_REFUSED, false)), GNTST_BAD_GNTREF as i64);
    c.eq(
        "a domain that does not exist",
        st(xen::map_grant(NO_DOMAIN, REF_RW, MAP_REFUSED, false)),
        GNTST_BAD_DOMAIN as i64,
    );
    c.eq(
        "DOMID_SELF (maps name a real domain)",
        st(xen::map_grant(SELF, 0, MAP_REFUSED, false)),
        GNTST_BAD_DOMAIN as i64,
    );
    c.eq("no GNTMAP_host_map", st(xen::map_grant_flags(peer, REF_RW, MAP_REFUSED, 0)), GNTST_BAD_GNTREF as i64);
    c.eq(
        "a device map",
        st(xen::map_grant_flags(peer, REF_RW, MAP_REFUSED, GNTMAP_DEVICE_MAP)),
        GNTST_GENERAL_ERROR as i64,
    );
    c.eq(
        "an application map",
        st(xen::map_grant_flags(peer, REF_RW, MAP_REFUSED, hm | GNTMAP_APPLICATION_MAP)),
        GNTST_GENERAL_ERROR as i64,
    );
    c.eq(
        "a map that contains a PTE",
        st(xen::map_grant_flags(peer, REF_RW, MAP_REFUSED, hm | GNTMAP_CONTAINS_PTE)),
        GNTST_GENERAL_ERROR as i64,
    );
    c.eq(
        "a map operation in unmapped memory",
        xen::raw(nr::GRANT_TABLE_OP, GNTTABOP_MAP_GRANT_REF, UNMAPPED, 1),
        -EFAULT,
    );
    c.eq("a negative count", xen::raw(nr::GRANT_TABLE_OP, GNTTABOP_MAP_GRANT_REF, UNMAPPED, 0x8000_0000), -EINVAL);
    let mut none: [MapGrantRef; 0] = [];
    c.eq("no operations at all", xen::grant_table_op(GNTTABOP_MAP_GRANT_REF, &mut none), 0);
    link.put(MAPPED, 1);

    if link.wait(c, CHECKED, "the granter checked its flags").is_none() {
        return;
    }
    c.eq("unmap the read-write grant", xen::unmap_grant(MAP_RW, h_rw).1 as i64, GNTST_OKAY as i64);
    c.eq("unmap again", xen::unmap_grant(MAP_RW, h_rw).1 as i64, GNTST_BAD_HANDLE as i64);
    c.eq("unmap a handle never given", xen::unmap_grant(MAP_RW, 0xffff_ffff).1 as i64, GNTST_BAD_HANDLE as i64);
    // host_addr 0 leaves the host mapping alone: nothing done, no error.
    c.eq("unmap with host_addr 0 (does nothing)", xen::unmap_grant_at(0, h_second).1 as i64, GNTST_OKAY as i64);
    c.eq(
        "unmap at an address the handle does not map",
        xen::unmap_grant(MAP_REFUSED, h_second).1 as i64,
        GNTST_GENERAL_ERROR as i64,
    );
    c.eq("unmap the second mapping", xen::unmap_grant(MAP_SECOND, h_second).1 as i64, GNTST_OKAY as i64);
    c.eq("unmap the read-only grant", xen::unmap_grant(MAP_RO, h_ro).1 as i64, GNTST_OKAY as i64);
    c.eq(
        "an unmap operation in unmapped memory",
        xen::raw(nr::GRANT_TABLE_OP, GNTTABOP_UNMAP_GRANT_REF, UNMAPPED, 1),
        -EFAULT,
    );
    link.put(UNMAPPED_ALL, 1);

    if link.wait(c, REVOKED, "the granter ended access").is_none() {
        return;
    }
    c.eq(
        "map a grant the granter ended",
        st(xen::map_grant(peer, REF_RW, MAP_REFUSED, false)),
        GNTST_GENERAL_ERROR as i64,
    );

    // Copies.
    let (g, f) = (GNTCOPY_SOURCE_GREF, GNTCOPY_DEST_GREF);
    let cp = |s, d, len, flags| {
        let (rc, status) = xen::copy(s, d, len, flags);
        if rc != 0 { rc } else { status as i64 }
    };
    xen::fill(OWN_A, |_| 0);
    xen::fill(OWN_B, own_b);
    xen::fill(OWN_C, |_| 0);
    let ok = GNTST_OKAY as i64;
    c.eq(
        "copy a read-only grant's page to this domain",
        cp(xen::gref_ptr(peer, REF_RO, 0), xen::frame_ptr(OWN_A, 0), 4096, g),
        ok,
    );
    c.check("the whole page came", xen::holds(OWN_A, 0..4096, |_| RO_BYTE));
    c.eq(
        "copy 200 bytes into a grant at offset 100",
        cp(xen::frame_ptr(OWN_B, 0), xen::gref_ptr(peer, REF_COPY, 100), 200, f),
        ok,
    );
    c.eq(
        "copy them back, grant to frame",
        cp(xen::gref_ptr(peer, REF_COPY, 100), xen::frame_ptr(OWN_C, 3000), 200, g),
        ok,
    );
    c.check("they came back to their offset", xen::holds(OWN_C, 3000..3200, |i| own_b(i - 3000)));
    c.check("and nowhere else", xen::holds(OWN_C, 0..3000, |_| 0) && xen::holds(OWN_C, 3200..4096, |_| 0));
    c.eq("copy nothing", cp(xen::frame_ptr(OWN_B, 0), xen::gref_ptr(peer, REF_COPY, 0), 0, f), ok);
    c.eq(
        "copy into a read-only grant",
        cp(xen::frame_ptr(OWN_B, 0), xen::gref_ptr(peer, REF_RO, 0), 16, f),
        GNTST_GENERAL_ERROR as i64,
    );
    c.eq(
        "copy from past the end of the source page",
        cp(xen::gref_ptr(peer, REF_RO, 4000), xen::frame_ptr(OWN_A, 0), 200, g),
        GNTST_BAD_COPY_ARG as i64,
    );
    c.eq(
        "copy to past the end of the destination page",
        cp(xen::frame_ptr(OWN_B, 0), xen::gref_ptr(peer, REF_COPY, 3900), 200, f),
        GNTST_BAD_COPY_ARG as i64,
    );
    c.eq(
        "copy from a frame this domain does not have",
        cp(xen::frame_ptr(NOT_RAM, 0), xen::frame_ptr(OWN_A, 0), 16, 0),
        GNTST_BAD_PAGE as i64,
    );
    let own_by_id = CopyPtr { u: OWN_B, domid: me, offset: 0, _pad: 0 };
    c.eq(
        "a frame named with this domain's id, not DOMID_SELF",
        cp(own_by_id, xen::frame_ptr(OWN_A, 0), 16, 0),
        GNTST_PERMISSION_DENIED as i64,
    );
    let theirs = CopyPtr { u: RW_PAGE, domid: peer, offset: 0, _pad: 0 };
    c.eq("a frame of the other domain", cp(theirs, xen::frame_ptr(OWN_A, 0), 16, 0), GNTST_PERMISSION_DENIED as i64);
    c.eq(
        "a grant of a domain that does not exist",
        cp(xen::gref_ptr(NO_DOMAIN, 1, 0), xen::frame_ptr(OWN_A, 0), 16, g),
        GNTST_BAD_DOMAIN as i64,
    );
    c.eq(
        "grant reference 65536",
        cp(xen::gref_ptr(peer, 0x10000, 0), xen::frame_ptr(OWN_A, 0), 16, g),
        GNTST_BAD_GNTREF as i64,
    );
    c.eq(
        "a grant made to another domain",
        cp(xen::gref_ptr(peer, REF_OTHER, 0), xen::frame_ptr(OWN_A, 0), 16, g),
        GNTST_GENERAL_ERROR as i64,
    );
    c.eq(
        "a grant the granter ended",
        cp(xen::gref_ptr(peer, REF_RW, 0), xen::frame_ptr(OWN_A, 0), 16, g),
        GNTST_GENERAL_ERROR as i64,
    );
    // Three in one call: each gets its own status.
    let mut batch = [
        xen::copy_op(xen::gref_ptr(peer, REF_RO, 0), xen::frame_ptr(OWN_D, 0), 64, g),
        xen::copy_op(xen::gref_ptr(peer, 0x10000, 0), xen::frame_ptr(OWN_D, 0), 64, g),
        xen::copy_op(xen::frame_ptr(OWN_B, 0), xen::gref_ptr(peer, REF_COPY, 0), 16, f),
    ];
    c.eq("a batch of three copies", xen::grant_table_op(GNTTABOP_COPY, &mut batch), 0);
    c.eq("the first copied", batch[0].status as i64, ok);
    c.eq("the second was refused", batch[1].status as i64, GNTST_BAD_GNTREF as i64);
    c.eq("the third copied", batch[2].status as i64, ok);
    c.eq("a copy operation in unmapped memory", xen::raw(nr::GRANT_TABLE_OP, GNTTABOP_COPY, UNMAPPED, 1), -EFAULT);
    link.put(COPIED, 1);
}

/// Grant-table operations on the other domain, and on none.
fn cross_domain(c: &mut Checks, peer: u16) {
    let (rc, status, _, _) = xen::query_size(peer);
    c.eq("query_size of the other domain", rc, 0);
    c.eq("query_size of the other domain: status", status as i64, GNTST_PERMISSION_DENIED as i64);
    let (_, status, _, _) = xen::query_size(NO_DOMAIN);
    c.eq("query_size of no domain: status", status as i64, GNTST_BAD_DOMAIN as i64);
    let mut frames = [0u64; 1];
    c.eq(
        "setup_table of the other domain: status",
        xen::setup_table(peer, &mut frames).1 as i64,
        GNTST_PERMISSION_DENIED as i64,
    );
    c.eq(
        "setup_table of no domain: status",
        xen::setup_table(NO_DOMAIN, &mut frames).1 as i64,
        GNTST_BAD_DOMAIN as i64,
    );
    c.eq("get_version of the other domain", xen::get_version(peer).0, -EPERM);
    c.eq("get_version of no domain", xen::get_version(NO_DOMAIN).0, -ESRCH);
}
