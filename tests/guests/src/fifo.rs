//! Xen's FIFO event-channel ABI from the guest side, as Linux's
//! events_fifo.c uses it: a control block per vCPU and the event array in
//! this guest's own pages (statics, identity-mapped, so an address is its
//! frame), the three operations (init_control, expand_array,
//! set_priority), the event words, and a consumer the upcall handler in
//! `xen` runs once [`activate`] is called: it takes the ready word, walks
//! each ready queue from its head (highest priority first), unlinks each
//! word with compare-and-exchange, and counts an event that is pending and
//! not masked after clearing PENDING; it also logs the order events came
//! in. Unmasking is Linux's: in place unless the port is pending or BUSY,
//! else EVTCHNOP_unmask.

use crate::xen::{self, COUNTED_VCPUS};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use xen_abi::event_channel::{self as ev, EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES, EVTCHN_FIFO_MAX_QUEUES};

pub const PENDING: u32 = 1 << ev::EVTCHN_FIFO_PENDING;
pub const MASKED: u32 = 1 << ev::EVTCHN_FIFO_MASKED;
pub const LINKED: u32 = 1 << ev::EVTCHN_FIFO_LINKED;
pub const BUSY: u32 = 1 << ev::EVTCHN_FIFO_BUSY;
const WORDS: usize = 1024;
const QUEUES: usize = EVTCHN_FIFO_MAX_QUEUES;

/// A page of guest memory seen as 32-bit words.
#[repr(C, align(4096))]
pub struct Page(pub [AtomicU32; WORDS]);

const fn page() -> Page {
    Page([const { AtomicU32::new(0) }; WORDS])
}

/// One page per vCPU for its control block (where in it init_control
/// says), and enough pages for the largest event array Xen allows.
static CONTROL: [Page; COUNTED_VCPUS] = [const { page() }; COUNTED_VCPUS];
static ARRAY: [Page; EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES as usize] =
    [const { page() }; EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES as usize];
/// Where each vCPU's control block is in its page (bytes).
static OFFSET: [AtomicU32; COUNTED_VCPUS] = [const { AtomicU32::new(0) }; COUNTED_VCPUS];
/// Event array pages the hypervisor accepted.
static PAGES: AtomicU32 = AtomicU32::new(0);
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Where each vCPU's consumer is in each queue (Linux's `q->head`).
static HEAD: [[AtomicU32; QUEUES]; COUNTED_VCPUS] = [const { [const { AtomicU32::new(0) }; QUEUES] }; COUNTED_VCPUS];
/// The last events consumed, in order: (vCPU << 24) | port.
static LOG: [AtomicU32; 64] = [const { AtomicU32::new(0) }; 64];
static LOGGED: AtomicUsize = AtomicUsize::new(0);

/// The frame of vCPU `vcpu`'s control block page.
pub fn control_gfn(vcpu: u32) -> u64 {
    &CONTROL[vcpu as usize % COUNTED_VCPUS] as *const Page as u64 >> 12
}

/// The frame of event array page `i`.
pub fn array_gfn(i: u32) -> u64 {
    &ARRAY[i as usize % ARRAY.len()] as *const Page as u64 >> 12
}

/// EVTCHNOP_init_control: (rc, link_bits written back).
pub fn init_control(gfn: u64, offset: u32, vcpu: u32) -> (i64, u8) {
    let mut c = ev::InitControl { control_gfn: gfn, offset, vcpu, link_bits: 0, _pad: [0; 7] };
    (xen::evtchn_op(ev::EVTCHNOP_INIT_CONTROL, &mut c), c.link_bits)
}

/// init_control for `vcpu` on its own page at `offset`, clearing the
/// block and the consumer's place first (Linux's init_control_block):
/// (rc, link_bits).
pub fn init_vcpu(vcpu: u32, offset: u32) -> (i64, u8) {
    let v = vcpu as usize % COUNTED_VCPUS;
    for w in &CONTROL[v].0 {
        w.store(0, SeqCst);
    }
    for h in &HEAD[v] {
        h.store(0, SeqCst);
    }
    OFFSET[v].store(offset, SeqCst);
    init_control(control_gfn(vcpu), offset, vcpu)
}

pub fn expand_array(gfn: u64) -> i64 {
    xen::evtchn_op(ev::EVTCHNOP_EXPAND_ARRAY, &mut ev::ExpandArray { array_gfn: gfn })
}

/// The next page of the event array, every word masked first (Linux's
/// init_array_page): the result of expand_array.
pub fn add_page() -> i64 {
    let i = PAGES.load(SeqCst);
    if i as usize >= ARRAY.len() {
        return expand_array(array_gfn(0));
    }
    for w in &ARRAY[i as usize].0 {
        w.store(MASKED, SeqCst);
    }
    let rc = expand_array(array_gfn(i));
    if rc == 0 {
        PAGES.store(i + 1, SeqCst);
    }
    rc
}

pub fn set_priority(port: u32, priority: u32) -> i64 {
    xen::evtchn_op(ev::EVTCHNOP_SET_PRIORITY, &mut ev::SetPriority { port, priority })
}

/// From now on the upcall handler consumes the FIFO queues (false: the
/// 2-level bitmaps again, after EVTCHNOP_reset).
pub fn activate(on: bool) {
    if !on {
        PAGES.store(0, SeqCst);
    }
    ACTIVE.store(on, SeqCst);
}

pub fn active() -> bool {
    ACTIVE.load(SeqCst)
}

/// Port `port`'s event word, if the array has it.
pub fn word(port: u32) -> Option<&'static AtomicU32> {
    let (p, i) = (port as usize / WORDS, port as usize % WORDS);
    if p >= PAGES.load(SeqCst) as usize {
        return None;
    }
    Some(&ARRAY[p].0[i])
}

/// The word's value (0 for a port without one).
pub fn bits(port: u32) -> u32 {
    word(port).map_or(0, |w| w.load(SeqCst))
}

pub fn mask(port: u32) {
    if let Some(w) = word(port) {
        w.fetch_or(MASKED, SeqCst);
    }
}

/// Linux's evtchn_fifo_unmask: clears MASKED in place unless the port is
/// pending or BUSY, else asks the hypervisor (which links a pending
/// port). Returns the hypercall's result, or 0.
pub fn unmask(port: u32) -> i64 {
    let Some(w) = word(port) else { return xen::unmask(port) };
    let mut cur = w.load(SeqCst);
    while cur & (PENDING | BUSY) == 0 {
        match w.compare_exchange(cur, cur & !MASKED, SeqCst, SeqCst) {
            Ok(_) => return 0,
            Err(now) => cur = now,
        }
    }
    xen::unmask(port)
}

/// The ready word of `vcpu`'s control block.
pub fn ready(vcpu: u32) -> u32 {
    block_word(vcpu, 0).load(SeqCst)
}

fn block_word(vcpu: u32, i: usize) -> &'static AtomicU32 {
    let v = vcpu as usize % COUNTED_VCPUS;
    &CONTROL[v].0[(OFFSET[v].load(SeqCst) as usize / 4 + i) % WORDS]
}

/// Forgets the logged order.
pub fn clear_log() {
    LOGGED.store(0, SeqCst);
}

/// The events logged since [`clear_log`]: (vCPU, port) each.
pub fn log(out: &mut [(u32, u32)]) -> usize {
    let n = LOGGED.load(SeqCst).min(LOG.len()).min(out.len());
    for (i, o) in out[..n].iter_mut().enumerate() {
        let e = LOG[i].load(SeqCst);
        *o = (e >> 24, e & 0xff_ffff);
    }
    n
}

/// Consumes everything ready on `vcpu` (interrupts off), as Linux's
/// __evtchn_fifo_handle_events does.
pub(crate) fn consume(vcpu: u32) {
    let v = vcpu as usize % COUNTED_VCPUS;
    let mut ready = block_word(vcpu, 0).swap(0, SeqCst);
    while ready != 0 {
        let q = ready.trailing_zeros() as usize;
        let mut head = HEAD[v][q].load(SeqCst);
        if head == 0 {
            head = block_word(vcpu, 2 + q).load(SeqCst);
        }
        let Some(w) = word(head) else {
            // A head past the array: the hypervisor broke the ABI.
            crate::println!("FAIL vCPU {vcpu} queue {q}: head {head} has no event word");
            ready &= !(1 << q);
            HEAD[v][q].store(0, SeqCst);
            continue;
        };
        // Unlink, keeping the rest of the word.
        let mut cur = w.load(SeqCst);
        while let Err(now) = w.compare_exchange(cur, cur & !(LINKED | ev::EVTCHN_FIFO_LINK_MASK), SeqCst, SeqCst) {
            cur = now;
        }
        let next = cur & ev::EVTCHN_FIFO_LINK_MASK;
        if next == 0 {
            ready &= !(1 << q);
        }
        let now = w.load(SeqCst);
        if now & PENDING != 0 && now & MASKED == 0 {
            w.fetch_and(!PENDING, SeqCst);
            xen::count_event(vcpu, head);
            let i = LOGGED.fetch_add(1, SeqCst);
            if let Some(slot) = LOG.get(i) {
                slot.store(vcpu << 24 | head, SeqCst);
            }
        }
        HEAD[v][q].store(next, SeqCst);
        ready |= block_word(vcpu, 0).swap(0, SeqCst);
    }
}
