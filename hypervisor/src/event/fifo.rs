//! Event channels, Xen's FIFO ABI (xen/common/event_fifo.c): each port
//! has a 32-bit event word in an event array of guest pages (PENDING,
//! MASKED, LINKED, BUSY and a 17-bit link to the next port), and each
//! vCPU has a control block in a guest page with a `ready` bit and a
//! queue head per priority (16 queues, 0 the highest). Raising a port
//! links its word onto the tail of its vCPU's queue for its priority; the
//! guest walks the queues from their heads, unlinking as it goes.
//!
//! The guest changes the words concurrently, so they are only reached with
//! atomic operations, and the link update follows Xen's protocol: the
//! tail's link is replaced by compare-and-exchange only while the tail is
//! still LINKED, and after a first failure the word is marked BUSY so that
//! the guest stops unmasking it (it may then change the word at most four
//! more times). The queue tails and each port's last queue are the
//! hypervisor's own; the caller serialises every call on one domain (the
//! domain's port-table lock).
//!
//! This is the logic alone, on pages reached through [`GuestPage`]: the
//! caller maps and references the frames; the tests below run it on the
//! host, a consumer written as Linux's racing it from other threads.

use crate::mm::addr::Mfn;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering::SeqCst};
use xen_abi::errno::*;
use xen_abi::event_channel::{
    EVTCHN_FIFO_BUSY, EVTCHN_FIFO_EVENT_WORDS_PER_PAGE, EVTCHN_FIFO_LINK_MASK, EVTCHN_FIFO_LINKED, EVTCHN_FIFO_MASKED,
    EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES, EVTCHN_FIFO_MAX_QUEUES, EVTCHN_FIFO_PENDING, EVTCHN_FIFO_PRIORITY_DEFAULT,
    EVTCHN_FIFO_PRIORITY_MIN, FIFO_CONTROL_BLOCK_SIZE, FIFO_CONTROL_HEAD, FIFO_CONTROL_READY,
};

const PENDING: u32 = 1 << EVTCHN_FIFO_PENDING;
const MASKED: u32 = 1 << EVTCHN_FIFO_MASKED;
const LINKED: u32 = 1 << EVTCHN_FIFO_LINKED;
const BUSY: u32 = 1 << EVTCHN_FIFO_BUSY;
const WORDS_PER_PAGE: u32 = EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;
const QUEUES: usize = EVTCHN_FIFO_MAX_QUEUES;

/// A guest page the hypervisor holds a reference on and reaches at a
/// host address, for as long as this value exists.
#[derive(Debug)]
pub struct GuestPage {
    mfn: Mfn,
    va: u64,
}

impl GuestPage {
    /// # Safety
    /// `va` is page-aligned and the 4096 bytes from it stay valid,
    /// writable memory until this value is given back by
    /// [`Fifo::into_frames`] (the caller holds a reference on frame
    /// `mfn`, so that its owner cannot free it meanwhile).
    pub unsafe fn new(mfn: Mfn, va: u64) -> GuestPage {
        GuestPage { mfn, va }
    }

    pub fn mfn(&self) -> Mfn {
        self.mfn
    }

    /// The 32-bit word at byte `at` (kept inside the page and aligned).
    fn u32_at(&self, at: usize) -> &AtomicU32 {
        debug_assert!(at.is_multiple_of(4) && at < 4096);
        let at = (at & 0xffc) as u64;
        // SAFETY: an aligned word inside the page, which is valid memory
        // while `self` exists (`new`'s contract); the guest changes it
        // concurrently, so it is only reached atomically.
        unsafe { AtomicU32::from_ptr((self.va + at) as *mut u32) }
    }
}

/// A vCPU's control block: a page and where in it the block starts.
#[derive(Debug)]
struct Control {
    page: GuestPage,
    offset: usize,
}

impl Control {
    fn ready(&self) -> &AtomicU32 {
        self.page.u32_at(self.offset + FIFO_CONTROL_READY)
    }

    fn head(&self, q: usize) -> &AtomicU32 {
        self.page.u32_at(self.offset + FIFO_CONTROL_HEAD + 4 * (q % QUEUES))
    }
}

/// A vCPU's queues: its control block (none until init_control names
/// one) and the port each queue ends at (0: none), Xen's `q->tail`.
#[derive(Debug, Default)]
struct VcpuQueues {
    control: Option<Control>,
    tail: [u32; QUEUES],
}

/// What the FIFO ABI keeps per port besides its event word: its priority,
/// the queue it was last linked on (Xen's `fifo_lastq`), and whether it
/// was raised while its word did not exist yet (Xen's `evtchn->pending`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortQueue {
    pub priority: u8,
    pub last_vcpu: u32,
    pub last_priority: u8,
    pub saved_pending: bool,
}

impl PortQueue {
    pub const NEW: PortQueue = PortQueue {
        priority: EVTCHN_FIFO_PRIORITY_DEFAULT as u8,
        last_vcpu: 0,
        last_priority: 0,
        saved_pending: false,
    };
}

/// What raising a port did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FifoRaise {
    /// PENDING went from 0 to 1 (pollers of the port may wake).
    pub newly_pending: bool,
    /// A ready bit of this vCPU's control block went from 0 to 1: the
    /// vCPU's upcall is due (Xen's `vcpu_mark_events_pending`).
    pub ready: Option<u32>,
}

/// A domain's FIFO state: the event array and every vCPU's queues.
#[derive(Debug)]
pub struct Fifo {
    array: Vec<GuestPage>,
    vcpus: Vec<VcpuQueues>,
}

/// EVTCHNOP_init_control's checks before anything is mapped, in Xen's
/// order: the vCPU (-ENOENT), then the offset (-EINVAL unless the block
/// fits in the page and is 8-byte aligned).
pub fn check_control(nr_vcpus: u32, vcpu: u32, offset: u32) -> Result<(), i64> {
    if vcpu >= nr_vcpus {
        return Err(-ENOENT);
    }
    if offset as usize > 4096 - FIFO_CONTROL_BLOCK_SIZE || !offset.is_multiple_of(8) {
        return Err(-EINVAL);
    }
    Ok(())
}

fn word_in(array: &[GuestPage], port: u32) -> Option<&AtomicU32> {
    let page = array.get((port / WORDS_PER_PAGE) as usize)?;
    Some(page.u32_at((port % WORDS_PER_PAGE) as usize * 4))
}

/// Replaces the link of `word` with `link` if it is still LINKED (Xen's
/// `try_set_link`): Some(true) done, Some(false) not linked (the guest
/// unlinked it), None the guest changed the word meanwhile (`w` is the
/// new value).
fn try_set_link(word: &AtomicU32, w: &mut u32, link: u32) -> Option<bool> {
    if *w & LINKED == 0 {
        return Some(false);
    }
    let new = (*w & !(BUSY | EVTCHN_FIFO_LINK_MASK)) | link;
    match word.compare_exchange(*w, new, SeqCst, SeqCst) {
        Ok(_) => Some(true),
        Err(now) => {
            *w = now;
            None
        }
    }
}

/// Links `word` (a queue's tail) to `link` if it is still LINKED (Xen's
/// `evtchn_fifo_set_link`); returns whether it was. The guest may only
/// set or clear MASKED, clear PENDING, and clear LINKED (with the link):
/// with the word BUSY it stops unmasking, so four more tries suffice.
fn set_link(word: &AtomicU32, link: u32) -> bool {
    let mut w = word.load(SeqCst);
    if let Some(done) = try_set_link(word, &mut w, link) {
        return done;
    }
    word.fetch_or(BUSY, SeqCst);
    let mut w = word.load(SeqCst);
    for _ in 0..4 {
        if let Some(done) = try_set_link(word, &mut w, link) {
            // A successful exchange cleared BUSY with the old link.
            if !done {
                word.fetch_and(!BUSY, SeqCst);
            }
            return done;
        }
    }
    // A guest that breaks the protocol: Xen gives up and calls the word
    // linked (the event is the guest's loss).
    word.fetch_and(!BUSY, SeqCst);
    true
}

impl Fifo {
    /// FIFO state for `nr_vcpus` vCPUs: no control block, no event array.
    pub fn new(nr_vcpus: u32) -> Fifo {
        Fifo { array: Vec::new(), vcpus: (0..nr_vcpus).map(|_| VcpuQueues::default()).collect() }
    }

    /// Ports the event array has words for.
    pub fn nr_words(&self) -> u32 {
        self.array.len() as u32 * WORDS_PER_PAGE
    }

    fn word(&self, port: u32) -> Option<&AtomicU32> {
        word_in(&self.array, port)
    }

    pub fn has_control(&self, vcpu: u32) -> bool {
        self.vcpus.get(vcpu as usize).is_some_and(|v| v.control.is_some())
    }

    /// Installs `vcpu`'s control block at `offset` of `page` (checked by
    /// [`check_control`]; the caller made sure it has none yet).
    pub fn set_control(&mut self, vcpu: u32, page: GuestPage, offset: u32) {
        if let Some(v) = self.vcpus.get_mut(vcpu as usize) {
            debug_assert!(v.control.is_none());
            v.control = Some(Control { page, offset: offset as usize });
        }
    }

    /// Whether the event array is at its largest (2^17 ports).
    pub fn array_full(&self) -> bool {
        self.array.len() as u32 >= EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES
    }

    /// Adds a page to the event array (the caller checked
    /// [`Fifo::array_full`]); returns the ports it gives words to.
    pub fn add_array_page(&mut self, page: GuestPage) -> core::ops::Range<u32> {
        let first = self.nr_words();
        self.array.push(page);
        first..self.nr_words()
    }

    /// Every frame the state holds, for the caller to drop its references.
    pub fn into_frames(self) -> impl Iterator<Item = Mfn> {
        let controls = self.vcpus.into_iter().filter_map(|v| v.control.map(|c| c.page.mfn));
        self.array.into_iter().map(|p| p.mfn).chain(controls)
    }

    pub fn is_pending(&self, port: u32) -> bool {
        self.word(port).is_some_and(|w| w.load(SeqCst) & PENDING != 0)
    }

    /// A port without a word counts as masked (Xen).
    pub fn is_masked(&self, port: u32) -> bool {
        self.word(port).is_none_or(|w| w.load(SeqCst) & MASKED != 0)
    }

    /// Still on a queue: a closed port in that state is not reused.
    pub fn is_busy(&self, port: u32) -> bool {
        self.word(port).is_some_and(|w| w.load(SeqCst) & LINKED != 0)
    }

    /// Clears PENDING only: the guest unlinks and skips events that are
    /// not pending.
    pub fn clear_pending(&self, port: u32) {
        if let Some(w) = self.word(port) {
            w.fetch_and(!PENDING, SeqCst);
        }
    }

    /// Raises `port` for `vcpu` (Xen's `evtchn_fifo_set_pending`): sets
    /// PENDING and, unless the port is masked or already linked, links it
    /// at the tail of `vcpu`'s queue for its priority, moving it off the
    /// queue it was last on. An event for a port without a word yet is
    /// remembered; one for a vCPU without a control block is dropped
    /// (the guest must not unmask ports before it set one up).
    pub fn set_pending(&mut self, port: u32, vcpu: u32, pq: &mut PortQueue) -> FifoRaise {
        let mut out = FifoRaise::default();
        let Some(word) = word_in(&self.array, port) else {
            pq.saved_pending = true;
            return out;
        };
        let v = vcpu as usize;
        if self.vcpus.get(v).is_none_or(|q| q.control.is_none()) {
            return out;
        }
        out.newly_pending = word.fetch_or(PENDING, SeqCst) & PENDING == 0;
        let q = (pq.priority as usize).min(QUEUES - 1);
        let mut linked = true;
        if word.load(SeqCst) & MASKED == 0 && word.fetch_or(LINKED, SeqCst) & LINKED == 0 {
            // If it was the tail of the queue it was last on, that queue
            // is empty now: forget its tail, so that linking there later
            // cannot reach into the queue this event joins.
            let (lv, lp) = (pq.last_vcpu as usize, (pq.last_priority as usize).min(QUEUES - 1));
            if let Some(old) = self.vcpus.get_mut(lv)
                && old.tail[lp] == port
            {
                old.tail[lp] = 0;
            }
            pq.last_vcpu = vcpu;
            pq.last_priority = q as u8;
            // Link it to the tail if the tail is still linked; else the
            // queue is empty (the guest consumed the tail) and this port
            // is its new head.
            let tail = self.vcpus[v].tail[q];
            linked = tail != 0 && word_in(&self.array, tail).is_some_and(|t| set_link(t, port));
            let vq = &mut self.vcpus[v];
            if !linked && let Some(c) = &vq.control {
                c.head(q).store(port, SeqCst);
            }
            vq.tail[q] = port;
        }
        if !linked
            && let Some(c) = &self.vcpus[v].control
            && c.ready().fetch_or(1 << q, SeqCst) & (1 << q) == 0
        {
            out.ready = Some(vcpu);
        }
        out
    }

    /// EVTCHNOP_unmask (Xen's `evtchn_fifo_unmask`): clears MASKED and
    /// raises the port again if it is pending.
    pub fn unmask(&mut self, port: u32, vcpu: u32, pq: &mut PortQueue) -> FifoRaise {
        let Some(w) = self.word(port) else { return FifoRaise::default() };
        w.fetch_and(!MASKED, SeqCst);
        if w.load(SeqCst) & PENDING != 0 {
            return self.set_pending(port, vcpu, pq);
        }
        FifoRaise::default()
    }
}

/// EVTCHNOP_set_priority's range check.
pub fn check_priority(priority: u32) -> Result<u8, i64> {
    if priority > EVTCHN_FIFO_PRIORITY_MIN {
        return Err(-EINVAL);
    }
    Ok(priority as u8)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::boxed::Box;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;
    use std::vec;

    /// A page of guest memory, as event words.
    #[repr(align(4096))]
    pub(crate) struct Page(pub [AtomicU32; 1024]);

    pub(crate) fn new_page() -> Box<Page> {
        Box::new(Page([const { AtomicU32::new(0) }; 1024]))
    }

    pub(crate) fn guest_page(p: &Page, mfn: u64) -> GuestPage {
        // SAFETY: the test keeps `p` alive for as long as the Fifo holding
        // the GuestPage (every test drops the Fifo first).
        unsafe { GuestPage::new(Mfn(mfn), p as *const Page as u64) }
    }

    /// Memory of one test domain: event array pages and one control
    /// block page per vCPU (the block at offset 0).
    struct Mem {
        array: Vec<Box<Page>>,
        control: Vec<Box<Page>>,
    }

    impl Mem {
        fn new(pages: usize, vcpus: usize) -> Mem {
            Mem { array: (0..pages).map(|_| new_page()).collect(), control: (0..vcpus).map(|_| new_page()).collect() }
        }

        /// FIFO state over this memory, every vCPU's block set up.
        fn fifo(&self) -> Fifo {
            let mut f = Fifo::new(self.control.len() as u32);
            for (v, c) in self.control.iter().enumerate() {
                f.set_control(v as u32, guest_page(c, 100 + v as u64), 0);
            }
            for (i, p) in self.array.iter().enumerate() {
                f.add_array_page(guest_page(p, i as u64));
            }
            f
        }

        fn word(&self, port: u32) -> &AtomicU32 {
            &self.array[(port / 1024) as usize].0[(port % 1024) as usize]
        }
    }

    /// The guest side of one vCPU, as Linux's events_fifo.c consumes:
    /// takes the ready word, walks each ready queue from its head,
    /// unlinking each word with compare-and-exchange, and handles an event
    /// that is pending and not masked (clearing PENDING first).
    struct Consumer {
        vcpu: usize,
        head: [u32; QUEUES],
    }

    impl Consumer {
        fn new(vcpu: usize) -> Consumer {
            Consumer { vcpu, head: [0; QUEUES] }
        }

        fn ready<'m>(&self, m: &'m Mem) -> &'m AtomicU32 {
            &m.control[self.vcpu].0[0]
        }

        /// Consumes everything ready now; `handle` gets each event.
        fn consume(&mut self, m: &Mem, mut handle: impl FnMut(u32)) {
            let mut ready = self.ready(m).swap(0, SeqCst);
            while ready != 0 {
                let q = ready.trailing_zeros() as usize;
                let mut head = self.head[q];
                if head == 0 {
                    head = m.control[self.vcpu].0[2 + q].load(SeqCst);
                }
                let word = m.word(head);
                // Linux's clear_linked.
                let mut w = word.load(SeqCst);
                loop {
                    match word.compare_exchange(w, w & !(LINKED | EVTCHN_FIFO_LINK_MASK), SeqCst, SeqCst) {
                        Ok(_) => break,
                        Err(now) => w = now,
                    }
                }
                let next = w & EVTCHN_FIFO_LINK_MASK;
                if next == 0 {
                    ready &= !(1 << q);
                }
                let now = word.load(SeqCst);
                if now & PENDING != 0 && now & MASKED == 0 {
                    word.fetch_and(!PENDING, SeqCst);
                    handle(head);
                }
                self.head[q] = next;
                ready |= self.ready(m).swap(0, SeqCst);
            }
        }

        fn drain(&mut self, m: &Mem) -> Vec<u32> {
            let mut seen = Vec::new();
            self.consume(m, |p| seen.push(p));
            seen
        }
    }

    /// The guest masks a port in its word.
    fn mask(m: &Mem, port: u32) {
        m.word(port).fetch_or(MASKED, SeqCst);
    }

    /// Linux's unmask: clears MASKED in place unless the port is pending
    /// or BUSY; returns false when EVTCHNOP_unmask is needed instead.
    fn guest_unmask(m: &Mem, port: u32) -> bool {
        let word = m.word(port);
        let mut w = word.load(SeqCst);
        loop {
            if w & (PENDING | BUSY) != 0 {
                return false;
            }
            match word.compare_exchange(w, w & !MASKED, SeqCst, SeqCst) {
                Ok(_) => return true,
                Err(now) => w = now,
            }
        }
    }

    fn prio(p: u8) -> PortQueue {
        PortQueue { priority: p, ..PortQueue::NEW }
    }

    #[test]
    fn init_control_checks_the_vcpu_then_the_offset() {
        assert_eq!(check_control(2, 2, 0), Err(-ENOENT));
        assert_eq!(check_control(2, u32::MAX, 3), Err(-ENOENT), "the vCPU first");
        assert_eq!(check_control(2, 1, 4), Err(-EINVAL), "not 8-byte aligned");
        assert_eq!(check_control(2, 1, 4096 - 72), Ok(()), "the last offset that fits");
        assert_eq!(check_control(2, 1, 4096 - 64), Err(-EINVAL), "past the page end");
        assert_eq!(check_control(2, 1, !7), Err(-EINVAL));
        assert_eq!(check_priority(15), Ok(15));
        assert_eq!(check_priority(16), Err(-EINVAL));
    }

    #[test]
    fn events_queue_in_order_and_raise_the_upcall_once() {
        let m = Mem::new(1, 1);
        let mut f = m.fifo();
        let mut pq = [PortQueue::NEW; 8];
        let r = f.set_pending(3, 0, &mut pq[3]);
        assert_eq!(r, FifoRaise { newly_pending: true, ready: Some(0) });
        assert_eq!(m.control[0].0[0].load(SeqCst), 1 << 7, "queue 7 ready");
        assert_eq!(m.control[0].0[2 + 7].load(SeqCst), 3, "head of queue 7");
        assert_eq!(f.set_pending(5, 0, &mut pq[5]), FifoRaise { newly_pending: true, ready: None }, "queued behind 3");
        assert_eq!(f.set_pending(1, 0, &mut pq[1]).ready, None);
        assert_eq!(m.word(3).load(SeqCst), PENDING | LINKED | 5);
        assert_eq!(f.set_pending(3, 0, &mut pq[3]), FifoRaise::default(), "pending and linked already");
        let mut g = Consumer::new(0);
        assert_eq!(g.drain(&m), [3, 5, 1]);
        for p in [1, 3, 5] {
            assert_eq!(m.word(p).load(SeqCst), 0, "port {p} consumed and unlinked");
        }
        // The queue is empty: the next event is its head again.
        assert_eq!(f.set_pending(5, 0, &mut pq[5]).ready, Some(0));
        assert_eq!(g.drain(&m), [5]);
        drop(f);
    }

    #[test]
    fn higher_priorities_are_consumed_first_and_in_order_within_one() {
        let m = Mem::new(1, 1);
        let mut f = m.fifo();
        // Ports 1 to 5 at priorities 3, 7, 3, 0 and 15.
        let mut pq = [PortQueue::NEW, prio(3), prio(7), prio(3), prio(0), prio(15)];
        for p in 1..6u32 {
            f.set_pending(p, 0, &mut pq[p as usize]);
        }
        assert_eq!(m.control[0].0[0].load(SeqCst), 1 << 3 | 1 << 7 | 1 << 0 | 1 << 15);
        assert_eq!(Consumer::new(0).drain(&m), [4, 1, 3, 2, 5]);
    }

    #[test]
    fn a_masked_port_is_pending_but_not_queued_until_unmasked() {
        let m = Mem::new(1, 1);
        let mut f = m.fifo();
        let mut pq = PortQueue::NEW;
        mask(&m, 9);
        assert!(f.is_masked(9));
        assert_eq!(f.set_pending(9, 0, &mut pq), FifoRaise { newly_pending: true, ready: None });
        assert_eq!(m.word(9).load(SeqCst), PENDING | MASKED, "pending, not linked");
        assert!(f.is_pending(9) && !f.is_busy(9));
        assert_eq!(m.control[0].0[0].load(SeqCst), 0);
        assert!(!guest_unmask(&m, 9), "a pending port needs the hypercall");
        assert_eq!(f.unmask(9, 0, &mut pq).ready, Some(0));
        assert_eq!(Consumer::new(0).drain(&m), [9]);
        // Unmasking a port that is not pending only clears the bit.
        mask(&m, 9);
        assert_eq!(f.unmask(9, 0, &mut pq), FifoRaise::default());
        assert_eq!(m.word(9).load(SeqCst), 0);
        // clear_pending leaves the link for the guest to drop.
        f.set_pending(9, 0, &mut pq);
        f.clear_pending(9);
        assert_eq!(m.word(9).load(SeqCst), LINKED);
        assert!(f.is_busy(9) && !f.is_pending(9));
        assert_eq!(Consumer::new(0).drain(&m), [] as [u32; 0], "unlinked and skipped");
    }

    #[test]
    fn ports_beyond_the_array_are_remembered_and_count_as_masked() {
        let m = Mem::new(1, 1);
        let mut f = m.fifo();
        let mut pq = PortQueue::NEW;
        assert_eq!(f.nr_words(), 1024);
        assert!(f.is_masked(1024) && !f.is_pending(1024) && !f.is_busy(1024));
        assert_eq!(f.set_pending(1500, 0, &mut pq), FifoRaise::default());
        assert!(pq.saved_pending);
        assert_eq!(f.unmask(1500, 0, &mut pq), FifoRaise::default());
        let more = new_page();
        assert_eq!(f.add_array_page(guest_page(&more, 7)), 1024..2048);
        assert!(!f.is_pending(1500), "the caller raises saved events again");
        assert_eq!(f.set_pending(1500, 0, &mut pq).ready, Some(0));
        assert_eq!(more.0[1500 - 1024].load(SeqCst), PENDING | LINKED);
        let frames: Vec<u64> = f.into_frames().map(|m| m.0).collect();
        assert_eq!(frames, [0, 7, 100]);
    }

    #[test]
    fn a_vcpu_without_a_control_block_drops_the_event() {
        let m = Mem::new(1, 2);
        let mut f = Fifo::new(2);
        f.set_control(0, guest_page(&m.control[0], 100), 0);
        f.add_array_page(guest_page(&m.array[0], 0));
        assert!(f.has_control(0) && !f.has_control(1) && !f.has_control(2));
        let mut pq = PortQueue::NEW;
        assert_eq!(f.set_pending(4, 1, &mut pq), FifoRaise::default());
        assert_eq!(m.word(4).load(SeqCst), 0, "not even pending (Xen)");
        assert_eq!(f.set_pending(4, 7, &mut pq), FifoRaise::default(), "a vCPU that does not exist");
    }

    #[test]
    fn a_control_block_at_an_offset_uses_its_own_words() {
        let (page, array) = (new_page(), new_page());
        let mut f = Fifo::new(1);
        f.set_control(0, guest_page(&page, 1), 4096 - 72);
        f.add_array_page(guest_page(&array, 2));
        f.set_pending(2, 0, &mut prio(15));
        let at = (4096 - 72) / 4;
        assert_eq!(page.0[at].load(SeqCst), 1 << 15, "ready");
        assert_eq!(page.0[at + 2 + 15].load(SeqCst), 2, "head[15], the page's last word");
        assert_eq!(page.0[0].load(SeqCst), 0);
    }

    /// A port consumed at the tail of one queue and raised on another
    /// (moved to another vCPU, or given another priority) leaves its old
    /// queue empty: a port raised on the old queue next must start it
    /// afresh, not be linked behind the moved port on the new queue.
    #[test]
    fn an_event_moved_to_another_queue_leaves_the_old_one_empty() {
        let m = Mem::new(1, 2);
        let mut f = m.fifo();
        let (mut p, mut q) = (PortQueue::NEW, PortQueue::NEW);
        let (mut g0, mut g1) = (Consumer::new(0), Consumer::new(1));
        f.set_pending(10, 0, &mut p);
        assert_eq!(g0.drain(&m), [10], "10 was the tail of vCPU 0's queue 7");
        // bind_vcpu moved it: raised for vCPU 1 now.
        assert_eq!(f.set_pending(10, 1, &mut p).ready, Some(1));
        assert_eq!((p.last_vcpu, p.last_priority), (1, 7));
        // Not consumed yet; another port on vCPU 0's queue 7.
        assert_eq!(f.set_pending(11, 0, &mut q).ready, Some(0), "the head of an empty queue");
        assert_eq!(g0.drain(&m), [11]);
        assert_eq!(g1.drain(&m), [10]);
        // The same with a priority change.
        f.set_pending(12, 0, &mut q);
        f.set_pending(11, 0, &mut q);
        assert_eq!(g0.drain(&m), [12, 11]);
        q.priority = 2;
        assert_eq!(f.set_pending(11, 0, &mut q).ready, Some(0));
        let mut r = PortQueue::NEW;
        f.set_pending(13, 0, &mut r);
        assert_eq!(g0.drain(&m), [11, 13], "queue 2 first; 13 heads queue 7");
    }

    #[test]
    fn a_linked_event_stays_on_its_queue_when_its_port_moves() {
        let m = Mem::new(1, 2);
        let mut f = m.fifo();
        let mut p = PortQueue::NEW;
        f.set_pending(20, 0, &mut p);
        m.word(20).fetch_and(!PENDING, SeqCst); // the guest acked it early
        // Raised for vCPU 1 while still linked on vCPU 0: only PENDING.
        assert_eq!(f.set_pending(20, 1, &mut p), FifoRaise { newly_pending: true, ready: None });
        assert_eq!(Consumer::new(1).drain(&m), [] as [u32; 0]);
        assert_eq!(Consumer::new(0).drain(&m), [20]);
    }

    #[test]
    fn linking_onto_a_busy_or_changing_tail() {
        let m = Mem::new(1, 1);
        let mut f = m.fifo();
        let mut pq = [PortQueue::NEW; 4];
        f.set_pending(1, 0, &mut pq[1]);
        // The guest masked the tail meanwhile: the link still goes in.
        mask(&m, 1);
        f.set_pending(2, 0, &mut pq[2]);
        assert_eq!(m.word(1).load(SeqCst), PENDING | MASKED | LINKED | 2);
        // A tail the guest unlinked: the new port heads the queue.
        m.word(2).fetch_and(!(LINKED | EVTCHN_FIFO_LINK_MASK), SeqCst);
        assert_eq!(f.set_pending(3, 0, &mut pq[3]).ready, None, "queue 7 was still ready");
        assert_eq!(m.control[0].0[2 + 7].load(SeqCst), 3);
        assert_eq!(m.word(2).load(SeqCst) & EVTCHN_FIFO_LINK_MASK, 0);
        // set_link itself: BUSY is cleared whether it links or not.
        let w = AtomicU32::new(LINKED | BUSY | 5);
        assert!(set_link(&w, 9));
        assert_eq!(w.load(SeqCst), LINKED | 9);
        let w = AtomicU32::new(PENDING);
        assert!(!set_link(&w, 9));
        assert_eq!(w.load(SeqCst), PENDING);
    }

    /// A tiny deterministic generator for the race below.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, n: u32) -> u32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as u32
        }
    }

    /// The hypervisor raising, moving and re-prioritising ports while two
    /// vCPUs of a guest consume their queues and mask and unmask ports
    /// (Linux's way: in place unless pending or BUSY, else the hypercall),
    /// all at once. Afterwards every port's last event was seen, no word
    /// is left pending or linked, and the queues drain cleanly.
    #[test]
    fn a_consumer_racing_the_hypervisor_loses_no_event() {
        const PORTS: u32 = 48;
        const RAISES: u32 = 1_000_000;
        let m = Mem::new(1, 2);
        struct Hv {
            fifo: Fifo,
            pq: Vec<PortQueue>,
            notify: Vec<u32>,
        }
        let hv = Mutex::new(Hv {
            fifo: m.fifo(),
            pq: vec![PortQueue::NEW; PORTS as usize + 1],
            notify: (0..=PORTS).map(|p| p % 2).collect(),
        });
        let raised: Vec<AtomicU32> = (0..=PORTS).map(|_| AtomicU32::new(0)).collect();
        let seen: Vec<AtomicU32> = (0..=PORTS).map(|_| AtomicU32::new(0)).collect();
        let stop = AtomicBool::new(false);
        // All three start together, so that they overlap even on a busy
        // machine.
        let start = std::sync::Barrier::new(3);
        let unmask_call = |port: u32| {
            let mut h = hv.lock().unwrap();
            let h = &mut *h;
            let v = h.notify[port as usize];
            h.fifo.unmask(port, v, &mut h.pq[port as usize]);
        };
        let consumers = std::thread::scope(|s| {
            let guests: Vec<_> = (0..2)
                .map(|vcpu| {
                    let (m, seen, raised, stop, unmask_call, start) = (&m, &seen, &raised, &stop, &unmask_call, &start);
                    s.spawn(move || {
                        start.wait();
                        let mut g = Consumer::new(vcpu);
                        let mut rng = Lcg(vcpu as u64 + 7);
                        while !stop.load(SeqCst) {
                            g.consume(m, |p| {
                                seen[p as usize].fetch_max(raised[p as usize].load(SeqCst), SeqCst);
                            });
                            let p = 1 + rng.next(PORTS);
                            if rng.next(4) == 0 {
                                mask(m, p);
                            } else if m.word(p).load(SeqCst) & MASKED != 0 && !guest_unmask(m, p) {
                                unmask_call(p);
                            }
                            if rng.next(8) == 0 {
                                std::thread::yield_now();
                            }
                        }
                        g
                    })
                })
                .collect();
            let mut rng = Lcg(1);
            start.wait();
            for i in 0..RAISES {
                if i % 256 == 0 {
                    std::thread::yield_now();
                }
                let p = 1 + rng.next(PORTS);
                let mut h = hv.lock().unwrap();
                let h = &mut *h;
                match rng.next(16) {
                    0 => h.notify[p as usize] ^= 1,
                    1 => h.pq[p as usize].priority = rng.next(16) as u8,
                    _ => {}
                }
                raised[p as usize].fetch_add(1, SeqCst);
                let v = h.notify[p as usize];
                h.fifo.set_pending(p, v, &mut h.pq[p as usize]);
            }
            stop.store(true, SeqCst);
            guests.into_iter().map(|g| g.join().unwrap()).collect::<Vec<_>>()
        });
        // Quiet now: unmask everything the guests left masked, then drain.
        let mut h = hv.into_inner().unwrap();
        for p in 1..=PORTS {
            if m.word(p).load(SeqCst) & MASKED != 0 && !guest_unmask(&m, p) {
                let v = h.notify[p as usize];
                h.fifo.unmask(p, v, &mut h.pq[p as usize]);
            }
        }
        for mut g in consumers {
            g.consume(&m, |p| {
                seen[p as usize].fetch_max(raised[p as usize].load(SeqCst), SeqCst);
            });
        }
        for p in 1..=PORTS {
            let (r, s) = (raised[p as usize].load(SeqCst), seen[p as usize].load(SeqCst));
            assert_eq!(s, r, "port {p}: its last event was lost");
            assert_eq!(m.word(p).load(SeqCst) & (PENDING | LINKED | BUSY), 0, "port {p} left queued");
        }
        assert_eq!(m.control[0].0[0].load(SeqCst) | m.control[1].0[0].load(SeqCst), 0);
        drop(h);
    }
}
