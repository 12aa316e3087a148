//! Event channels, grant tables and memory ops from a test guest: thin
//! wrappers over the hypercalls (results as Xen returns them), the
//! 2-level bitmaps in shared_info, and an upcall handler on the callback
//! vector that consumes pending ports the way Linux does and counts them.

use crate::hypercall;
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use xen_abi::event_channel::{self as ev, *};
use xen_abi::grant_table::{self as gt, *};
use xen_abi::hypercall as nr;
use xen_abi::{DOMID_SELF, Pod};

/// The vector the callback (HVM_PARAM_CALLBACK_IRQ) is delivered on.
pub const CALLBACK_VECTOR: u8 = 0xf3;
static VECTOR: AtomicU8 = AtomicU8::new(0);
/// Upcalls taken, and events consumed per port (the first 256 ports).
pub static UPCALLS: AtomicU32 = AtomicU32::new(0);
static EVENTS: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];
/// TSC at the last upcall.
pub static LAST_UPCALL_TSC: AtomicU64 = AtomicU64::new(0);

fn op<T: Pod>(cmd: u64, arg: &mut T) -> i64 {
    // SAFETY: `arg` is a valid, writable structure of the type `cmd` takes.
    unsafe { hypercall(nr::EVENT_CHANNEL_OP, cmd, arg as *mut T as u64, 0, 0, 0) }
}

pub fn alloc_unbound(dom: u16, remote: u16) -> (i64, u32) {
    let mut a = AllocUnbound { dom, remote_dom: remote, port: 0 };
    (op(EVTCHNOP_ALLOC_UNBOUND, &mut a), a.port)
}

pub fn bind_interdomain(remote_dom: u16, remote_port: u32) -> (i64, u32) {
    let mut b = BindInterdomain { remote_dom, _pad: 0, remote_port, local_port: 0 };
    (op(EVTCHNOP_BIND_INTERDOMAIN, &mut b), b.local_port)
}

pub fn bind_virq(virq: u32, vcpu: u32) -> (i64, u32) {
    let mut b = BindVirq { virq, vcpu, port: 0 };
    (op(EVTCHNOP_BIND_VIRQ, &mut b), b.port)
}

pub fn bind_ipi(vcpu: u32) -> (i64, u32) {
    let mut b = BindIpi { vcpu, port: 0 };
    (op(EVTCHNOP_BIND_IPI, &mut b), b.port)
}

pub fn send(port: u32) -> i64 {
    op(EVTCHNOP_SEND, &mut Port { port })
}

pub fn close(port: u32) -> i64 {
    op(EVTCHNOP_CLOSE, &mut Port { port })
}

pub fn unmask(port: u32) -> i64 {
    op(EVTCHNOP_UNMASK, &mut Port { port })
}

pub fn bind_vcpu(port: u32, vcpu: u32) -> i64 {
    op(EVTCHNOP_BIND_VCPU, &mut BindVcpu { port, vcpu })
}

pub fn reset(dom: u16) -> i64 {
    op(EVTCHNOP_RESET, &mut Reset { dom })
}

/// EVTCHNOP_status: (rc, status, vcpu, domain in u, port in u).
pub fn status(dom: u16, port: u32) -> (i64, u32, u32, u16, u32) {
    let mut s = ev::Status { dom, port, ..Default::default() };
    let rc = op(EVTCHNOP_STATUS, &mut s);
    let d = u16::from_le_bytes([s.u[0], s.u[1]]);
    let p = u32::from_le_bytes([s.u[4], s.u[5], s.u[6], s.u[7]]);
    (rc, s.status, s.vcpu, d, p)
}

/// An event-channel operation on a raw argument address (bad pointers).
pub fn raw_op(cmd: u64, arg: u64) -> i64 {
    // SAFETY: the hypervisor checks the pointer; nothing here uses it.
    unsafe { hypercall(nr::EVENT_CHANNEL_OP, cmd, arg, 0, 0, 0) }
}

// --- the bitmaps -------------------------------------------------------------

fn word(base: u64, port: u32) -> &'static AtomicU64 {
    let at = crate::x86::shared_info() + base + (port as u64 / 64) * 8;
    // SAFETY: shared_info is mapped (identity) and the word is inside it;
    // the hypervisor changes it concurrently, hence atomics.
    unsafe { AtomicU64::from_ptr(at as *mut u64) }
}

pub fn is_pending(port: u32) -> bool {
    word(0x800, port).load(Ordering::SeqCst) & 1 << (port % 64) != 0
}

pub fn clear_pending(port: u32) {
    word(0x800, port).fetch_and(!(1 << (port % 64)), Ordering::SeqCst);
}

pub fn mask(port: u32) {
    word(0xa00, port).fetch_or(1 << (port % 64), Ordering::SeqCst);
}

pub fn is_masked(port: u32) -> bool {
    word(0xa00, port).load(Ordering::SeqCst) & 1 << (port % 64) != 0
}

fn vcpu_info(vcpu: u32) -> u64 {
    crate::x86::shared_info() + vcpu as u64 * 64
}

/// Routes event upcalls to the callback vector (HVM_PARAM_CALLBACK_IRQ,
/// vector type) and enables interrupts. The IDT must be installed.
pub fn use_callback_vector() -> i64 {
    VECTOR.store(CALLBACK_VECTOR, Ordering::SeqCst);
    let p = xen_abi::hvm::HvmParam {
        domid: DOMID_SELF,
        _pad: 0,
        index: xen_abi::hvm::PARAM_CALLBACK_IRQ,
        value: 2 << 56 | CALLBACK_VECTOR as u64,
    };
    // SAFETY: `p` is a valid xen_hvm_param.
    let r = unsafe { hypercall(nr::HVM_OP, xen_abi::hvm::HVMOP_SET_PARAM, &p as *const _ as u64, 0, 0, 0) };
    crate::x86::sti();
    r
}

/// Whether `vector` is the callback vector (guest_interrupt asks).
pub fn is_callback(vector: u64) -> bool {
    let v = VECTOR.load(Ordering::Relaxed);
    v != 0 && vector == v as u64
}

/// The upcall: clears evtchn_upcall_pending, then takes the selector and
/// consumes every pending, unmasked port in the words it names (Linux's
/// 2-level handler, simplified).
pub fn upcall(vcpu: u32) {
    UPCALLS.fetch_add(1, Ordering::SeqCst);
    LAST_UPCALL_TSC.store(crate::rdtsc(), Ordering::SeqCst);
    let vi = vcpu_info(vcpu);
    // SAFETY: vcpu_info lies in the mapped shared_info page.
    let (pending, sel) = unsafe { (AtomicU8::from_ptr(vi as *mut u8), AtomicU64::from_ptr((vi + 8) as *mut u64)) };
    loop {
        pending.store(0, Ordering::SeqCst);
        let words = sel.swap(0, Ordering::SeqCst);
        if words == 0 {
            break;
        }
        for w in 0..64u32 {
            if words & 1 << w == 0 {
                continue;
            }
            let bits = word(0x800, w * 64).load(Ordering::SeqCst) & !word(0xa00, w * 64).load(Ordering::SeqCst);
            for b in 0..64u32 {
                if bits & 1 << b != 0 {
                    let port = w * 64 + b;
                    clear_pending(port);
                    if let Some(c) = EVENTS.get(port as usize) {
                        c.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
    }
}

/// Events consumed on `port` so far.
pub fn events(port: u32) -> u32 {
    EVENTS.get(port as usize).map_or(0, |c| c.load(Ordering::SeqCst))
}

/// Halts until `done()` or `timeout_ms` pass (a singleshot timer ends
/// each halt, so a lost event cannot hang the guest). Whether it was done.
pub fn wait_until(timeout_ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let end = crate::x86::now_ns() + timeout_ms * 1_000_000;
    while !done() {
        let now = crate::x86::now_ns();
        if now >= end {
            return done();
        }
        crate::x86::cli();
        if done() {
            crate::x86::sti();
            break;
        }
        crate::x86::set_singleshot(now + 5_000_000, 0);
        // STI; HLT: an upcall or the timer ends the halt.
        crate::x86::wait_for_interrupt();
    }
    true
}

/// Waits until `port` has seen more than `seen` events.
pub fn wait_for(port: u32, seen: u32, timeout_ms: u64) -> bool {
    wait_until(timeout_ms, || events(port) > seen)
}

/// SCHEDOP_poll on one port with an absolute timeout (0: none).
pub fn poll(port: u32, timeout: u64) -> i64 {
    let ports = [port];
    let p = xen_abi::sched::SchedPoll { ports: ports.as_ptr() as u64, nr_ports: 1, _pad: 0, timeout };
    // SAFETY: `p` points at a valid port array.
    unsafe { hypercall(nr::SCHED_OP, xen_abi::sched::SCHEDOP_POLL, &p as *const _ as u64, 0, 0, 0) }
}

// --- grant tables ------------------------------------------------------------

fn gnt<T: Pod>(cmd: u64, arg: &mut T, count: u64) -> i64 {
    // SAFETY: `arg` is a valid, writable structure of the type `cmd` takes.
    unsafe { hypercall(nr::GRANT_TABLE_OP, cmd, arg as *mut T as u64, count, 0, 0) }
}

/// Maps grant `gref` of `dom` at guest frame `gfn`: (status, handle), or
/// the hypercall's error as the status.
pub fn map(dom: u16, gref: u32, gfn: u64, flags: u32) -> (i64, u32) {
    let mut m = MapGrantRef { host_addr: gfn << 12, flags, gref, dom, ..Default::default() };
    let rc = gnt(GNTTABOP_MAP_GRANT_REF, &mut m, 1);
    (if rc != 0 { rc } else { m.status as i64 }, m.handle)
}

pub fn unmap(gfn: u64, handle: u32) -> i64 {
    let mut u = UnmapGrantRef { host_addr: gfn << 12, handle, ..Default::default() };
    let rc = gnt(GNTTABOP_UNMAP_GRANT_REF, &mut u, 1);
    if rc != 0 { rc } else { u.status as i64 }
}

/// One grant copy: each side a grant reference (with its domain) or one
/// of the caller's frames.
pub fn copy(src: (u64, u16, u16), dst: (u64, u16, u16), len: u16, flags: u16) -> i64 {
    let mut c = gt::Copy {
        source: CopyPtr { u: src.0, domid: src.1, offset: src.2, _pad: 0 },
        dest: CopyPtr { u: dst.0, domid: dst.1, offset: dst.2, _pad: 0 },
        len,
        flags,
        ..Default::default()
    };
    let rc = gnt(GNTTABOP_COPY, &mut c, 1);
    if rc != 0 { rc } else { c.status as i64 }
}

/// GNTTABOP_query_size: (rc or status, frames, max frames).
pub fn query_size(dom: u16) -> (i64, u32, u32) {
    let mut q = QuerySize { dom, ..Default::default() };
    let rc = gnt(GNTTABOP_QUERY_SIZE, &mut q, 1);
    (if rc != 0 { rc } else { q.status as i64 }, q.nr_frames, q.max_nr_frames)
}

pub fn raw_gnt(cmd: u64, arg: u64, count: u64) -> i64 {
    // SAFETY: the hypervisor checks the pointer.
    unsafe { hypercall(nr::GRANT_TABLE_OP, cmd, arg, count, 0, 0) }
}

/// Maps the caller's grant frame `idx` at `gfn` (XENMAPSPACE_grant_table).
pub fn map_grant_frame(idx: u64, gfn: u64) -> i64 {
    let x = xen_abi::memory::AddToPhysmap { domid: DOMID_SELF, size: 0, space: 1, idx, gpfn: gfn };
    // SAFETY: `x` is a valid add_to_physmap argument.
    unsafe { hypercall(nr::MEMORY_OP, 7, &x as *const _ as u64, 0, 0, 0) }
}

/// Writes grant entry `gref` in a grant frame mapped at `table`: frame and
/// domain first, the flags that make it valid last (Xen's rule).
pub fn grant_access(table: u64, gref: u32, domid: u16, frame: u32, readonly: bool) {
    let e = table + gref as u64 * 8;
    // SAFETY: the grant frame is mapped at `table` (identity) and the
    // entry lies inside it.
    unsafe {
        let head = AtomicU32::from_ptr(e as *mut u32);
        let f = AtomicU32::from_ptr((e + 4) as *mut u32);
        f.store(frame, Ordering::SeqCst);
        head.store((domid as u32) << 16, Ordering::SeqCst);
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        head.store((domid as u32) << 16 | flags as u32, Ordering::SeqCst);
    }
}

/// The flags of grant entry `gref` as the hypervisor left them.
pub fn grant_flags(table: u64, gref: u32) -> u16 {
    // SAFETY: as for grant_access.
    unsafe { AtomicU32::from_ptr((table + gref as u64 * 8) as *mut u32).load(Ordering::SeqCst) as u16 }
}

/// Ends access to a grant unless the peer still uses it (Linux's
/// gnttab_end_foreign_access_ref): false while it is mapped.
pub fn end_access(table: u64, gref: u32) -> bool {
    // SAFETY: as for grant_access.
    let head = unsafe { AtomicU32::from_ptr((table + gref as u64 * 8) as *mut u32) };
    let cur = head.load(Ordering::SeqCst);
    if cur as u16 & (GTF_READING | GTF_WRITING) != 0 {
        return false;
    }
    head.compare_exchange(cur, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok()
}

// --- memory ----------------------------------------------------------------------

/// increase/decrease_reservation or populate_physmap on the frames in
/// `list`: extents done (or an error).
pub fn reservation(cmd: u64, list: &[u64], order: u32, domid: u16) -> i64 {
    let r = xen_abi::memory::MemoryReservation {
        extent_start: list.as_ptr() as u64,
        nr_extents: list.len() as u64,
        extent_order: order,
        mem_flags: 0,
        domid,
        _pad: [0; 3],
    };
    // SAFETY: `r` and the list are valid for the call.
    unsafe { hypercall(nr::MEMORY_OP, cmd, &r as *const _ as u64, 0, 0, 0) }
}

/// current_reservation (3), maximum_reservation (4), maximum_gpfn (14).
pub fn reservation_query(cmd: u64, domid: u16) -> i64 {
    let d = domid;
    // SAFETY: the argument is a domid_t.
    unsafe { hypercall(nr::MEMORY_OP, cmd, &d as *const u16 as u64, 0, 0, 0) }
}

// --- the console ring ----------------------------------------------------------

/// An HVM param of this domain (HVMOP_get_param): (rc, value).
pub fn get_param(index: u32) -> (i64, u64) {
    let mut p = xen_abi::hvm::HvmParam { domid: DOMID_SELF, _pad: 0, index, value: 0 };
    // SAFETY: `p` is a valid, writable xen_hvm_param.
    let rc = unsafe { hypercall(nr::HVM_OP, xen_abi::hvm::HVMOP_GET_PARAM, &mut p as *mut _ as u64, 0, 0, 0) };
    (rc, p.value)
}

/// Writes `text` to the console ring at frame `pfn` and notifies `port`.
pub fn console_ring_write(pfn: u64, port: u32, text: &[u8]) -> i64 {
    use xen_abi::console as xc;
    let page = pfn << 12;
    // SAFETY: the console page is in the identity-mapped special area; the
    // indices are shared with the hypervisor, hence atomics.
    unsafe {
        let cons = AtomicU32::from_ptr((page + xc::OUT_CONS as u64) as *mut u32);
        let prod = AtomicU32::from_ptr((page + xc::OUT_PROD as u64) as *mut u32);
        let mut p = prod.load(Ordering::SeqCst);
        for &b in text {
            while p.wrapping_sub(cons.load(Ordering::SeqCst)) >= xc::OUT_SIZE {
                core::hint::spin_loop();
            }
            let at = page + xc::OUT_OFFSET as u64 + (p % xc::OUT_SIZE) as u64;
            core::ptr::write_volatile(at as *mut u8, b);
            p = p.wrapping_add(1);
        }
        prod.store(p, Ordering::SeqCst);
    }
    send(port)
}

/// A `key=value` word of the command line (the value up to a space).
pub fn arg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// A numeric `key=` (decimal or 0x hex).
pub fn arg_num(cmdline: &str, key: &str) -> Option<u64> {
    let v = arg(cmdline, key)?;
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}
