//! Two test domains working together. One (the owner) grants the other a
//! page of its RAM statically (`grant=REF:PEER:GFN` on its module line),
//! the other maps it; the page is their mailbox: 1024 words, the owner
//! writing the first half and the peer the second, so neither overwrites
//! what the other wrote. A static event channel (the control port) says
//! "look at the mailbox"; waits halt until an upcall, so both must have
//! taken upcalls with `xen::init_upcalls` first.

use crate::Checks;
use crate::xen;
use core::sync::atomic::{AtomicU32, Ordering};

/// The owner's mailbox frame (statically granted) and where the peer maps
/// it: the layout every pair of test guests uses.
pub const MAILBOX_GFN: u64 = 0x500;
pub const MAILBOX_AT: u64 = 0x1000;
/// A frame outside every test guest's RAM (memory=8: 0..0x800).
pub const NOT_RAM: u64 = 0x5000;

/// Mailbox words each side owns.
const HALF: usize = 512;
/// How long a wait for the peer may take (Xen system time, which runs
/// slowly in Bochs but is real time in QEMU; generous, as the host may be
/// busy with other emulators).
pub const WAIT_MS: u64 = 60_000;
/// The word each side counts its steps in.
const STEP: usize = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Owns the mailbox page and granted it.
    Owner,
    /// Mapped the owner's grant.
    Peer,
}

/// One end of the link between two domains.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Guest address of the mailbox (own RAM, or the mapped grant).
    mailbox: u64,
    /// The static channel to the other domain.
    pub ctl: u32,
    pub side: Side,
    /// The other domain's id.
    pub peer: u16,
}

impl Link {
    /// The owner's end: the mailbox is its own frame `gfn` (zeroed RAM when
    /// the domain starts, so every word reads 0 until written).
    pub fn owner(gfn: u64, ctl: u32, peer: u16) -> Link {
        Link { mailbox: gfn << 12, ctl, side: Side::Owner, peer }
    }

    /// The peer's end: maps grant `gref` of `owner` at frame `at` (checked)
    /// and says hello. None if the map failed.
    pub fn peer(c: &mut Checks, owner: u16, gref: u32, at: u64, ctl: u32) -> Option<Link> {
        let (rc, status, _) = xen::map_grant(owner, gref, at, false);
        c.eq("map the owner's statically granted mailbox", rc, 0);
        c.eq("the map's status", status as i64, 0);
        if rc != 0 || status != 0 {
            return None;
        }
        Some(Link { mailbox: at << 12, ctl, side: Side::Peer, peer: owner })
    }

    fn word(&self, i: usize) -> &'static AtomicU32 {
        assert!(i < 2 * HALF);
        // SAFETY: the mailbox page is mapped at `mailbox` (identity) for the
        // domain's life; both domains write it, hence atomics.
        unsafe { AtomicU32::from_ptr((self.mailbox + 4 * i as u64) as *mut u32) }
    }

    fn mine(&self, slot: usize) -> &'static AtomicU32 {
        self.word(if self.side == Side::Owner { slot } else { HALF + slot })
    }

    fn theirs(&self, slot: usize) -> &'static AtomicU32 {
        self.word(if self.side == Side::Owner { HALF + slot } else { slot })
    }

    /// Writes `v` into this side's `slot` and notifies the other side.
    pub fn put(&self, slot: usize, v: u32) {
        assert!(slot != STEP && slot < HALF);
        self.mine(slot).store(v, Ordering::SeqCst);
        xen::send(self.ctl);
    }

    /// The other side's `slot` now.
    pub fn get(&self, slot: usize) -> u32 {
        self.theirs(slot).load(Ordering::SeqCst)
    }

    /// Waits until the other side's `slot` is not 0; returns it. A wait
    /// that times out is a failed check named `what`.
    pub fn wait(&self, c: &mut Checks, slot: usize, what: &str) -> Option<u32> {
        let ok = xen::wait_until(xen::after_ms(WAIT_MS), || self.get(slot) != 0);
        if !ok {
            c.check(what, false);
            return None;
        }
        Some(self.get(slot))
    }

    /// Both sides reach step `n` before either goes on (a failed check if
    /// the other does not come).
    pub fn step(&self, c: &mut Checks, n: u32) -> bool {
        self.mine(STEP).store(n, Ordering::SeqCst);
        xen::send(self.ctl);
        let ok = xen::wait_until(xen::after_ms(WAIT_MS), || self.theirs(STEP).load(Ordering::SeqCst) >= n);
        if !ok {
            crate::println!("the other domain did not reach step {n}");
            c.check("the other domain kept in step", false);
        }
        ok
    }
}
