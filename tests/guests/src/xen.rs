//! Xen's inter-domain interfaces from the guest side, for the test guests:
//! thin wrappers over event_channel_op, grant_table_op, memory_op's
//! reservation and physmap operations, HVM params and SCHEDOP_poll (each
//! returns what Xen returns: the hypercall's result and the structure's
//! out fields); the 2-level event bitmaps in shared_info; an upcall
//! handler that consumes events the way Linux's 2-level code does and
//! counts them per vCPU and port; waiting for a condition with HLT; and
//! the `key=value` words of the start info command line.
//!
//! Every structure and number comes from `xen_abi`. Guests using the
//! upcall handler map shared_info with `x86::map_shared_info` first.

use crate::hypercall;
use crate::x86;
use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering, fence};
use xen_abi::event_channel::{self as ev, EVTCHN_2L_NR_CHANNELS};
use xen_abi::grant_table::{self as gt, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING};
use xen_abi::hypercall as nr;
use xen_abi::shared::{SHARED_EVTCHN_MASK, SHARED_EVTCHN_PENDING, VCPU_INFO_PENDING_SEL, VCPU_INFO_SIZE};
use xen_abi::{DOMID_SELF, Pod, hvm, memory as mem, sched};

/// A guest-physical address no test guest has memory at (the guests are
/// identity-mapped, so it is a valid virtual address whose frame the
/// hypervisor must refuse to touch).
pub const UNMAPPED: u64 = 0xd000_0000;

/// A domain id no test boot has (below the reserved ids, so Xen looks it
/// up and finds nothing).
pub const NO_DOMAIN: u16 = 0x7fe0;

/// This domain's id (Xen's CPUID leaf 0x40000004, ECX).
pub fn domid() -> u16 {
    crate::cpuid(0x4000_0004, 0).ecx as u16
}

/// A hypercall with a structure argument the hypervisor reads and writes.
fn call<T: Pod>(nr: u64, cmd: u64, arg: &mut T, a3: u64) -> i64 {
    // SAFETY: `arg` is a valid, writable structure of the type `cmd` takes
    // (the caller picks the pair); the hypervisor touches nothing else.
    unsafe { hypercall(nr, cmd, arg as *mut T as u64, a3, 0, 0) }
}

/// A hypercall with raw arguments, for bad pointers and garbage: the
/// hypervisor must check them.
pub fn raw(nr: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    // SAFETY: whatever the arguments point at belongs to this guest or to
    // nobody; a correct hypervisor refuses the latter.
    unsafe { hypercall(nr, a1, a2, a3, 0, 0) }
}

// --- event channels ----------------------------------------------------------

pub fn evtchn_op<T: Pod>(cmd: u64, arg: &mut T) -> i64 {
    call(nr::EVENT_CHANNEL_OP, cmd, arg, 0)
}

/// EVTCHNOP_alloc_unbound: a port of `dom` that `remote` may bind to.
/// (rc, port)
pub fn alloc_unbound(dom: u16, remote: u16) -> (i64, u32) {
    let mut a = ev::AllocUnbound { dom, remote_dom: remote, port: 0 };
    let rc = evtchn_op(ev::EVTCHNOP_ALLOC_UNBOUND, &mut a);
    if rc == 0 && dom == DOMID_SELF {
        note_vcpu(a.port, 0);
    }
    (rc, a.port)
}

/// EVTCHNOP_bind_interdomain: (rc, local port).
pub fn bind_interdomain(remote_dom: u16, remote_port: u32) -> (i64, u32) {
    let mut b = ev::BindInterdomain { remote_dom, _pad: 0, remote_port, local_port: 0 };
    let rc = evtchn_op(ev::EVTCHNOP_BIND_INTERDOMAIN, &mut b);
    if rc == 0 {
        note_vcpu(b.local_port, 0);
    }
    (rc, b.local_port)
}

/// EVTCHNOP_bind_virq: (rc, port).
pub fn bind_virq(virq: u32, vcpu: u32) -> (i64, u32) {
    let mut b = ev::BindVirq { virq, vcpu, port: 0 };
    let rc = evtchn_op(ev::EVTCHNOP_BIND_VIRQ, &mut b);
    if rc == 0 {
        note_vcpu(b.port, vcpu);
    }
    (rc, b.port)
}

/// EVTCHNOP_bind_ipi: (rc, port).
pub fn bind_ipi(vcpu: u32) -> (i64, u32) {
    let mut b = ev::BindIpi { vcpu, port: 0 };
    let rc = evtchn_op(ev::EVTCHNOP_BIND_IPI, &mut b);
    if rc == 0 {
        note_vcpu(b.port, vcpu);
    }
    (rc, b.port)
}

/// The vCPU each port notifies, as this guest bound it (Linux's
/// `evtchn_to_cpu`; ports bound by the hypervisor at boot notify vCPU 0).
/// A 2-level upcall consumes only its own vCPU's ports: the selector
/// names 64-port words, and without this one vCPU's upcall would take an
/// event another vCPU was sent before that vCPU ran (Linux masks them out
/// the same way with its per-CPU `cpu_evtchn_mask`).
static PORT_VCPU: [AtomicU8; EVTCHN_2L_NR_CHANNELS as usize] =
    [const { AtomicU8::new(0) }; EVTCHN_2L_NR_CHANNELS as usize];

fn note_vcpu(port: u32, vcpu: u32) {
    if let Some(v) = PORT_VCPU.get(port as usize) {
        v.store(vcpu as u8, Ordering::SeqCst);
    }
}

fn port_vcpu(port: u32) -> u32 {
    PORT_VCPU.get(port as usize).map_or(0, |v| v.load(Ordering::SeqCst) as u32)
}

pub fn send(port: u32) -> i64 {
    evtchn_op(ev::EVTCHNOP_SEND, &mut ev::Port { port })
}

pub fn close(port: u32) -> i64 {
    let rc = evtchn_op(ev::EVTCHNOP_CLOSE, &mut ev::Port { port });
    if rc == 0 {
        note_vcpu(port, 0);
    }
    rc
}

/// EVTCHNOP_unmask: clears the mask bit and, if the port is pending,
/// raises the upcall as a new event would.
pub fn unmask(port: u32) -> i64 {
    evtchn_op(ev::EVTCHNOP_UNMASK, &mut ev::Port { port })
}

pub fn bind_vcpu(port: u32, vcpu: u32) -> i64 {
    let rc = evtchn_op(ev::EVTCHNOP_BIND_VCPU, &mut ev::BindVcpu { port, vcpu });
    if rc == 0 {
        note_vcpu(port, vcpu);
    }
    rc
}

pub fn reset(dom: u16) -> i64 {
    let rc = evtchn_op(ev::EVTCHNOP_RESET, &mut ev::Reset { dom });
    if rc == 0 && dom == DOMID_SELF {
        PORT_VCPU.iter().for_each(|v| v.store(0, Ordering::SeqCst));
    }
    rc
}

/// What EVTCHNOP_status said, its union decoded by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStatus {
    pub rc: i64,
    /// `EVTCHNSTAT_*`.
    pub status: u32,
    pub vcpu: u32,
    /// unbound: the domain that may bind; interdomain: the remote domain.
    pub dom: u16,
    /// interdomain: the remote port.
    pub port: u32,
    /// virq: the VIRQ number.
    pub virq: u32,
}

pub fn status(dom: u16, port: u32) -> PortStatus {
    let mut s = ev::Status { dom, port, ..Default::default() };
    let rc = evtchn_op(ev::EVTCHNOP_STATUS, &mut s);
    let u = s.u;
    PortStatus {
        rc,
        status: s.status,
        vcpu: s.vcpu,
        dom: u16::from_le_bytes([u[0], u[1]]),
        port: u32::from_le_bytes([u[4], u[5], u[6], u[7]]),
        virq: u32::from_le_bytes([u[0], u[1], u[2], u[3]]),
    }
}

// --- the 2-level bitmaps -----------------------------------------------------

/// The 64-bit word of shared_info at `offset` that holds `port`'s bit.
fn bitmap_word(offset: usize, port: u32) -> &'static AtomicU64 {
    assert!(port < EVTCHN_2L_NR_CHANNELS, "port {port} is beyond the 2-level ABI");
    let si = x86::shared_info();
    assert!(si != 0, "shared_info is not mapped");
    let at = si + offset as u64 + (port as u64 / 64) * 8;
    // SAFETY: shared_info is mapped at `si` (identity-mapped memory) and the
    // word lies inside its bitmap; the hypervisor and other vCPUs change it
    // concurrently, so it is only reached atomically.
    unsafe { AtomicU64::from_ptr(at as *mut u64) }
}

fn bit(port: u32) -> u64 {
    1 << (port % 64)
}

pub fn is_pending(port: u32) -> bool {
    bitmap_word(SHARED_EVTCHN_PENDING, port).load(Ordering::SeqCst) & bit(port) != 0
}

pub fn clear_pending(port: u32) {
    bitmap_word(SHARED_EVTCHN_PENDING, port).fetch_and(!bit(port), Ordering::SeqCst);
}

pub fn is_masked(port: u32) -> bool {
    bitmap_word(SHARED_EVTCHN_MASK, port).load(Ordering::SeqCst) & bit(port) != 0
}

/// Masks `port`: events still mark it pending, but raise no upcall.
pub fn mask(port: u32) {
    bitmap_word(SHARED_EVTCHN_MASK, port).fetch_or(bit(port), Ordering::SeqCst);
}

/// Clears the mask bit in place. A port pending meanwhile raises no
/// upcall this way; [`unmask`] (the hypercall) does.
pub fn clear_mask(port: u32) {
    bitmap_word(SHARED_EVTCHN_MASK, port).fetch_and(!bit(port), Ordering::SeqCst);
}

/// vcpu_info of `vcpu` in shared_info (the legacy slots).
fn vcpu_info(vcpu: u32) -> u64 {
    x86::shared_info() + vcpu as u64 * VCPU_INFO_SIZE as u64
}

/// `evtchn_upcall_pending` of `vcpu`.
pub fn upcall_pending(vcpu: u32) -> bool {
    // SAFETY: vcpu_info lies in the mapped shared_info page; a byte the
    // hypervisor sets concurrently.
    unsafe { AtomicU8::from_ptr(vcpu_info(vcpu) as *mut u8) }.load(Ordering::SeqCst) != 0
}

// --- upcalls -----------------------------------------------------------------

/// The vector upcalls arrive on, as Linux's HYPERVISOR_CALLBACK_VECTOR.
pub const UPCALL_VECTOR: u8 = 0xf3;
/// vCPUs whose events are counted.
pub const COUNTED_VCPUS: usize = 4;

/// How the hypervisor tells a vCPU that events are pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upcall {
    /// HVM_PARAM_CALLBACK_IRQ with the vector type: one vector for the
    /// domain, injected directly (not through the local APIC) for as long
    /// as the vCPU's evtchn_upcall_pending is set.
    Callback,
    /// HVMOP_set_evtchn_upcall_vector: a local APIC interrupt per vCPU,
    /// acknowledged with an EOI.
    ApicVector,
}

static MODE: AtomicU8 = AtomicU8::new(0);
static EVENTS: [[AtomicU32; EVTCHN_2L_NR_CHANNELS as usize]; COUNTED_VCPUS] =
    [const { [const { AtomicU32::new(0) }; EVTCHN_2L_NR_CHANNELS as usize] }; COUNTED_VCPUS];
static UPCALLS: [AtomicU32; COUNTED_VCPUS] = [const { AtomicU32::new(0) }; COUNTED_VCPUS];

/// HVMOP_set_param on this domain.
pub fn set_param(index: u32, value: u64) -> i64 {
    set_param_of(DOMID_SELF, index, value)
}

pub fn set_param_of(domid: u16, index: u32, value: u64) -> i64 {
    let mut p = hvm::HvmParam { domid, _pad: 0, index, value };
    call(nr::HVM_OP, hvm::HVMOP_SET_PARAM, &mut p, 0)
}

/// HVMOP_get_param on this domain: (rc, value).
pub fn get_param(index: u32) -> (i64, u64) {
    let mut p = hvm::HvmParam { domid: DOMID_SELF, _pad: 0, index, value: 0 };
    let rc = call(nr::HVM_OP, hvm::HVMOP_GET_PARAM, &mut p, 0);
    (rc, p.value)
}

/// HVM_PARAM_CALLBACK_IRQ = vector type | `vector`.
pub fn set_callback_vector(vector: u8) -> i64 {
    set_param(hvm::PARAM_CALLBACK_IRQ, hvm::CALLBACK_VIA_TYPE_VECTOR << hvm::CALLBACK_VIA_TYPE_SHIFT | vector as u64)
}

/// HVMOP_set_evtchn_upcall_vector for `vcpu`.
pub fn set_upcall_vector(vcpu: u32, vector: u8) -> i64 {
    let mut v = hvm::EvtchnUpcallVector { vcpu, vector, _pad: [0; 3] };
    call(nr::HVM_OP, hvm::HVMOP_SET_EVTCHN_UPCALL_VECTOR, &mut v, 0)
}

/// What every event-using test guest does first, as checks: an IDT, the
/// x2APIC, shared_info at gfn 0x3f0, upcalls in `mode`, interrupts on,
/// and VIRQ_TIMER bound on vCPU 0 (so waits can time out). Returns the
/// timer's port.
pub fn start(c: &mut crate::Checks, mode: Upcall) -> u32 {
    x86::install_idt();
    x86::x2apic_enable();
    c.eq("map shared_info", x86::map_shared_info(0x3f0), 0);
    c.eq("take upcalls", init_upcalls(mode), 0);
    x86::sti();
    let (rc, port) = bind_timer();
    c.eq("bind VIRQ_TIMER on vCPU 0", rc, 0);
    port
}

/// Takes upcalls on [`UPCALL_VECTOR`] in `mode` (for vCPU 0; others call
/// [`set_upcall_vector`] too in `ApicVector` mode) and returns what the
/// hypervisor said. The IDT must be installed and the local APIC enabled
/// in x2APIC mode; interrupts stay as they are.
pub fn init_upcalls(mode: Upcall) -> i64 {
    MODE.store(mode as u8, Ordering::SeqCst);
    x86::set_handler(UPCALL_VECTOR, upcall);
    match mode {
        Upcall::Callback => set_callback_vector(UPCALL_VECTOR),
        Upcall::ApicVector => set_upcall_vector(0, UPCALL_VECTOR),
    }
}

pub fn upcall_mode() -> Upcall {
    if MODE.load(Ordering::SeqCst) == Upcall::ApicVector as u8 { Upcall::ApicVector } else { Upcall::Callback }
}

/// The upcall, on vCPU `vcpu` with interrupts off: clears
/// evtchn_upcall_pending, takes the selector, and consumes every pending
/// and unmasked port of the words it names that is bound to this vCPU,
/// clearing the pending bit before counting the event, as Linux's 2-level
/// handler does (or the
/// FIFO queues, once `fifo::activate` was called); again while new events
/// set evtchn_upcall_pending. Masked ports stay pending (EVTCHNOP_unmask
/// raises them later). Returns whether the local APIC needs an EOI.
fn upcall(vcpu: u32) -> bool {
    let me = vcpu as usize % COUNTED_VCPUS;
    UPCALLS[me].fetch_add(1, Ordering::SeqCst);
    let vi = vcpu_info(vcpu);
    // SAFETY: vcpu_info lies in the mapped shared_info page; the
    // hypervisor changes these fields concurrently, hence atomics.
    let (pending, sel) = unsafe {
        (AtomicU8::from_ptr(vi as *mut u8), AtomicU64::from_ptr((vi + VCPU_INFO_PENDING_SEL as u64) as *mut u64))
    };
    loop {
        pending.store(0, Ordering::SeqCst);
        if crate::fifo::active() {
            crate::fifo::consume(vcpu);
            if pending.load(Ordering::SeqCst) == 0 {
                break;
            }
            continue;
        }
        let mut words = sel.swap(0, Ordering::SeqCst);
        while words != 0 {
            let w = words.trailing_zeros();
            words &= words - 1;
            let first = w * 64;
            let ready = bitmap_word(SHARED_EVTCHN_PENDING, first).load(Ordering::SeqCst)
                & !bitmap_word(SHARED_EVTCHN_MASK, first).load(Ordering::SeqCst);
            let mut bits = ready;
            while bits != 0 {
                let port = first + bits.trailing_zeros();
                bits &= bits - 1;
                if port_vcpu(port) != vcpu {
                    // Another vCPU's: its own upcall takes it.
                    continue;
                }
                clear_pending(port);
                EVENTS[me][port as usize].fetch_add(1, Ordering::SeqCst);
            }
        }
        if pending.load(Ordering::SeqCst) == 0 {
            break;
        }
    }
    upcall_mode() == Upcall::ApicVector
}

/// Counts one event consumed on `port` by `vcpu`.
pub(crate) fn count_event(vcpu: u32, port: u32) {
    if let Some(c) = EVENTS[vcpu as usize % COUNTED_VCPUS].get(port as usize) {
        c.fetch_add(1, Ordering::SeqCst);
    }
}

/// Forgets the events counted on `port` (a port number bound again).
pub fn forget_events(port: u32) {
    for v in &EVENTS {
        if let Some(c) = v.get(port as usize) {
            c.store(0, Ordering::SeqCst);
        }
    }
}

/// Events consumed on `port` by vCPU `vcpu`.
pub fn events_on(vcpu: u32, port: u32) -> u32 {
    EVENTS[vcpu as usize % COUNTED_VCPUS].get(port as usize).map_or(0, |c| c.load(Ordering::SeqCst))
}

/// Events consumed on `port` by any vCPU.
pub fn events(port: u32) -> u32 {
    (0..COUNTED_VCPUS as u32).map(|v| events_on(v, port)).sum()
}

/// Upcalls vCPU `vcpu` took.
pub fn upcalls(vcpu: u32) -> u32 {
    UPCALLS[vcpu as usize % COUNTED_VCPUS].load(Ordering::SeqCst)
}

// --- waiting -----------------------------------------------------------------

pub const MS: u64 = 1_000_000;
/// Port of this domain's VIRQ_TIMER on vCPU 0 (0: not bound), which wakes
/// halts so that waits end at their deadline even if an event is lost.
static TIMER_PORT: AtomicU32 = AtomicU32::new(0);
/// When vCPU 0's singleshot timer is armed for (0: not armed).
static ARMED: AtomicU64 = AtomicU64::new(0);
/// How often a waiting vCPU 0 wakes to look at the clock.
const TICK: u64 = 10 * MS;

/// Binds VIRQ_TIMER on vCPU 0 for the waits: (rc, port).
pub fn bind_timer() -> (i64, u32) {
    let (rc, port) = bind_virq(ev::VIRQ_TIMER, 0);
    if rc == 0 {
        TIMER_PORT.store(port, Ordering::SeqCst);
    }
    (rc, port)
}

pub fn timer_port() -> u32 {
    TIMER_PORT.load(Ordering::SeqCst)
}

/// Arms vCPU 0's singleshot timer at `at` (the caller is vCPU 0).
pub fn arm_timer(at: u64) -> i64 {
    ARMED.store(at, Ordering::SeqCst);
    x86::set_singleshot(at, 0)
}

/// Stops vCPU 0's singleshot timer (the caller is vCPU 0).
pub fn stop_timer() -> i64 {
    ARMED.store(0, Ordering::SeqCst);
    x86::vcpu_op(xen_abi::vcpu::VCPUOP_STOP_SINGLESHOT_TIMER, 0, 0)
}

/// Now, in Xen system time, on vCPU 0.
pub fn now() -> u64 {
    x86::now_ns_of(0)
}

/// A deadline `ms` milliseconds from now.
pub fn after_ms(ms: u64) -> u64 {
    now() + ms * MS
}

/// Waits on vCPU 0 with interrupts enabled, halting between checks, until
/// `cond()` holds (true) or Xen system time passes `deadline` (false).
/// The check runs with interrupts off and the halt is `STI; HLT`, so an
/// upcall arriving after a check still ends the halt; a singleshot timer
/// (VIRQ_TIMER) ends it every TICK so the deadline is always seen.
/// Interrupts are on when it returns.
pub fn wait_until(deadline: u64, mut cond: impl FnMut() -> bool) -> bool {
    loop {
        x86::cli();
        if cond() {
            x86::sti();
            return true;
        }
        let t = now();
        if t >= deadline {
            x86::sti();
            return cond();
        }
        if timer_port() != 0 && ARMED.load(Ordering::SeqCst) <= t {
            arm_timer((t + TICK).min(deadline));
        }
        x86::wait_for_interrupt();
    }
}

/// Spins (interrupts on, no halt) until `cond()` or the deadline.
pub fn spin_until(deadline: u64, mut cond: impl FnMut() -> bool) -> bool {
    x86::sti();
    while !cond() {
        if now() >= deadline {
            return cond();
        }
        core::hint::spin_loop();
    }
    true
}

// --- scheduling ---------------------------------------------------------------

/// SCHEDOP_poll on `ports` until one is pending or `timeout` (absolute
/// system time; 0: none).
pub fn poll(ports: &[u32], timeout: u64) -> i64 {
    let mut p = sched::SchedPoll { ports: ports.as_ptr() as u64, nr_ports: ports.len() as u32, _pad: 0, timeout };
    call(nr::SCHED_OP, sched::SCHEDOP_POLL, &mut p, 0)
}

pub fn yield_cpu() -> i64 {
    raw(nr::SCHED_OP, sched::SCHEDOP_YIELD, 0, 0)
}

// --- grant tables -----------------------------------------------------------

/// grant_table_op(cmd, ops, ops.len()).
pub fn grant_table_op<T: Pod>(cmd: u64, ops: &mut [T]) -> i64 {
    // SAFETY: `ops` are valid, writable structures of the type `cmd` takes.
    unsafe { hypercall(nr::GRANT_TABLE_OP, cmd, ops.as_mut_ptr() as u64, ops.len() as u64, 0, 0) }
}

/// What a map asks for: grant `gref` of `dom`, at guest frame `gfn`.
pub fn map_op(dom: u16, gref: u32, gfn: u64, flags: u32) -> gt::MapGrantRef {
    gt::MapGrantRef { host_addr: gfn << 12, flags, gref, dom, ..Default::default() }
}

/// Maps one grant at `gfn` (GNTMAP_host_map, plus GNTMAP_readonly if
/// `readonly`): (rc, status, handle).
pub fn map_grant(dom: u16, gref: u32, gfn: u64, readonly: bool) -> (i64, i16, u32) {
    let flags = gt::GNTMAP_HOST_MAP | if readonly { gt::GNTMAP_READONLY } else { 0 };
    map_grant_flags(dom, gref, gfn, flags)
}

pub fn map_grant_flags(dom: u16, gref: u32, gfn: u64, flags: u32) -> (i64, i16, u32) {
    let mut m = [map_op(dom, gref, gfn, flags)];
    let rc = grant_table_op(gt::GNTTABOP_MAP_GRANT_REF, &mut m);
    (rc, m[0].status, m[0].handle)
}

/// Unmaps the mapping `handle` at guest address `host_addr`: (rc, status).
pub fn unmap_grant_at(host_addr: u64, handle: u32) -> (i64, i16) {
    let mut u = [gt::UnmapGrantRef { host_addr, handle, ..Default::default() }];
    let rc = grant_table_op(gt::GNTTABOP_UNMAP_GRANT_REF, &mut u);
    (rc, u[0].status)
}

pub fn unmap_grant(gfn: u64, handle: u32) -> (i64, i16) {
    unmap_grant_at(gfn << 12, handle)
}

/// One side of a grant copy: a grant reference of `dom`.
pub fn gref_ptr(dom: u16, gref: u32, offset: u16) -> gt::CopyPtr {
    gt::CopyPtr { u: gref as u64, domid: dom, offset, _pad: 0 }
}

/// One side of a grant copy: a frame of the caller (Xen wants DOMID_SELF).
pub fn frame_ptr(gfn: u64, offset: u16) -> gt::CopyPtr {
    gt::CopyPtr { u: gfn, domid: DOMID_SELF, offset, _pad: 0 }
}

/// A copy of `len` bytes; the flags say which sides are grant references.
pub fn copy_op(source: gt::CopyPtr, dest: gt::CopyPtr, len: u16, flags: u16) -> gt::Copy {
    gt::Copy { source, dest, len, flags, ..Default::default() }
}

/// One grant copy: (rc, status).
pub fn copy(source: gt::CopyPtr, dest: gt::CopyPtr, len: u16, flags: u16) -> (i64, i16) {
    let mut c = [copy_op(source, dest, len, flags)];
    let rc = grant_table_op(gt::GNTTABOP_COPY, &mut c);
    (rc, c[0].status)
}

/// GNTTABOP_setup_table for `dom` into `frames` (nr_frames = its
/// length): (rc, status).
pub fn setup_table(dom: u16, frames: &mut [u64]) -> (i64, i16) {
    setup_table_at(dom, frames.len() as u32, frames.as_mut_ptr() as u64)
}

/// GNTTABOP_setup_table with the frame list at any address.
pub fn setup_table_at(dom: u16, nr_frames: u32, frame_list: u64) -> (i64, i16) {
    let mut s = [gt::SetupTable { dom, nr_frames, frame_list, ..Default::default() }];
    let rc = grant_table_op(gt::GNTTABOP_SETUP_TABLE, &mut s);
    (rc, s[0].status)
}

/// GNTTABOP_query_size: (rc, status, nr_frames, max_nr_frames).
pub fn query_size(dom: u16) -> (i64, i16, u32, u32) {
    let mut q = [gt::QuerySize { dom, ..Default::default() }];
    let rc = grant_table_op(gt::GNTTABOP_QUERY_SIZE, &mut q);
    (rc, q[0].status, q[0].nr_frames, q[0].max_nr_frames)
}

/// GNTTABOP_set_version: (rc, the version in force after).
pub fn set_version(version: u32) -> (i64, u32) {
    let mut s = [gt::SetVersion { version }];
    let rc = grant_table_op(gt::GNTTABOP_SET_VERSION, &mut s);
    (rc, s[0].version)
}

/// GNTTABOP_get_version: (rc, version).
pub fn get_version(dom: u16) -> (i64, u32) {
    let mut g = [gt::GetVersion { dom, ..Default::default() }];
    let rc = grant_table_op(gt::GNTTABOP_GET_VERSION, &mut g);
    (rc, g[0].version)
}

/// One of this domain's grant frames, mapped into its physical address
/// space (XENMAPSPACE_grant_table), holding version 1 entries.
#[derive(Debug, Clone, Copy)]
pub struct GrantFrame {
    /// Guest-physical (and, identity-mapped, virtual) address.
    pub base: u64,
    /// The first grant reference the frame holds.
    pub first_ref: u32,
}

impl GrantFrame {
    /// Maps grant frame `idx` at `gfn`: the memory_op result, and the frame.
    pub fn map(idx: u32, gfn: u64) -> (i64, GrantFrame) {
        let rc = add_to_physmap(mem::XENMAPSPACE_GRANT_TABLE, idx as u64, gfn);
        (rc, GrantFrame { base: gfn << 12, first_ref: idx * gt::ENTRIES_PER_FRAME_V1 })
    }

    fn at(&self, gref: u32) -> u64 {
        let i = gref.checked_sub(self.first_ref).filter(|i| *i < gt::ENTRIES_PER_FRAME_V1);
        let i = i.unwrap_or_else(|| panic!("grant {gref} is not in this frame"));
        self.base + i as u64 * core::mem::size_of::<gt::GrantEntryV1>() as u64
    }

    fn flags_word(&self, gref: u32) -> &'static AtomicU16 {
        // SAFETY: the frame is mapped at `base` (identity) and the entry is
        // inside it; the hypervisor changes the flags concurrently (compare
        // and exchange), so they are only reached atomically.
        unsafe { AtomicU16::from_ptr(self.at(gref) as *mut u16) }
    }

    /// Grants `peer` access to this domain's frame `frame` through entry
    /// `gref`: the frame and the domain first, then (after a barrier) the
    /// flags that make the entry valid, as Xen requires.
    pub fn grant(&self, gref: u32, peer: u16, frame: u32, readonly: bool) {
        let e = self.at(gref);
        // SAFETY: as for flags_word; the entry is not valid yet (flags 0),
        // so the hypervisor does not read domid and frame until the flags
        // store below.
        unsafe {
            AtomicU16::from_ptr((e + 2) as *mut u16).store(peer, Ordering::Relaxed);
            AtomicU32::from_ptr((e + 4) as *mut u32).store(frame, Ordering::Relaxed);
        }
        fence(Ordering::Release);
        self.flags_word(gref).store(GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 }, Ordering::SeqCst);
    }

    /// Writes entry `gref` as raw values (for entries the hypervisor must
    /// refuse), flags last.
    pub fn write_raw(&self, gref: u32, e: gt::GrantEntryV1) {
        let a = self.at(gref);
        // SAFETY: as for grant.
        unsafe {
            AtomicU16::from_ptr((a + 2) as *mut u16).store(e.domid, Ordering::Relaxed);
            AtomicU32::from_ptr((a + 4) as *mut u32).store(e.frame, Ordering::Relaxed);
        }
        fence(Ordering::Release);
        self.flags_word(gref).store(e.flags, Ordering::SeqCst);
    }

    /// Entry `gref` as it is now.
    pub fn entry(&self, gref: u32) -> gt::GrantEntryV1 {
        let a = self.at(gref);
        let flags = self.flags_word(gref).load(Ordering::SeqCst);
        // SAFETY: as for grant.
        let (domid, frame) = unsafe {
            (
                AtomicU16::from_ptr((a + 2) as *mut u16).load(Ordering::SeqCst),
                AtomicU32::from_ptr((a + 4) as *mut u32).load(Ordering::SeqCst),
            )
        };
        gt::GrantEntryV1 { flags, domid, frame }
    }

    pub fn flags(&self, gref: u32) -> u16 {
        self.flags_word(gref).load(Ordering::SeqCst)
    }

    /// Ends access through `gref` unless the peer still has it mapped or
    /// is copying (Linux's gnttab_end_foreign_access_ref): swaps the flags
    /// to 0 only if neither GTF_reading nor GTF_writing is set.
    pub fn end_access(&self, gref: u32) -> bool {
        let f = self.flags_word(gref);
        let cur = f.load(Ordering::SeqCst);
        cur & (GTF_READING | GTF_WRITING) == 0 && f.compare_exchange(cur, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }
}

// --- memory -----------------------------------------------------------------

pub fn memory_op<T: Pod>(cmd: u64, arg: &mut T) -> i64 {
    call(nr::MEMORY_OP, cmd, arg, 0)
}

/// XENMEM_add_to_physmap on this domain.
pub fn add_to_physmap(space: u32, idx: u64, gpfn: u64) -> i64 {
    add_to_physmap_of(DOMID_SELF, space, idx, gpfn)
}

pub fn add_to_physmap_of(domid: u16, space: u32, idx: u64, gpfn: u64) -> i64 {
    let mut x = mem::AddToPhysmap { domid, size: 0, space, idx, gpfn };
    memory_op(mem::XENMEM_ADD_TO_PHYSMAP, &mut x)
}

/// increase_reservation, decrease_reservation or populate_physmap on the
/// extents in `list` (guest frames; ignored by increase): extents done.
pub fn reservation(cmd: u64, domid: u16, list: &mut [u64], order: u32, mem_flags: u32) -> i64 {
    let mut r = mem::MemoryReservation {
        extent_start: list.as_mut_ptr() as u64,
        nr_extents: list.len() as u64,
        extent_order: order,
        mem_flags,
        domid,
        _pad: [0; 3],
    };
    memory_op(cmd, &mut r)
}

/// current_reservation, maximum_reservation or maximum_gpfn of `domid`.
pub fn reservation_query(cmd: u64, domid: u16) -> i64 {
    let mut d = domid;
    memory_op(cmd, &mut d)
}

pub fn current_reservation(domid: u16) -> i64 {
    reservation_query(mem::XENMEM_CURRENT_RESERVATION, domid)
}

pub fn maximum_reservation(domid: u16) -> i64 {
    reservation_query(mem::XENMEM_MAXIMUM_RESERVATION, domid)
}

// --- pages ------------------------------------------------------------------

/// The bytes of guest frame `gfn` (identity-mapped RAM or a mapped grant
/// or special page).
///
/// # Safety
/// The frame must be mapped for the whole lifetime the slice is used, and
/// nothing may write it through another path meanwhile unless the caller
/// reads it with volatile accesses.
pub unsafe fn page(gfn: u64) -> &'static mut [u8; 4096] {
    // SAFETY: per the contract.
    unsafe { &mut *((gfn << 12) as *mut [u8; 4096]) }
}

/// Fills frame `gfn` with `f(i)` for each byte offset i.
pub fn fill(gfn: u64, f: impl Fn(usize) -> u8) {
    let p = (gfn << 12) as *mut u8;
    for i in 0..4096 {
        // SAFETY: callers pass frames this guest owns or has mapped
        // writable; volatile, as another domain may read the page.
        unsafe { core::ptr::write_volatile(p.add(i), f(i)) };
    }
}

/// Whether bytes `range` of frame `gfn` are `f(i)`.
pub fn holds(gfn: u64, range: core::ops::Range<usize>, f: impl Fn(usize) -> u8) -> bool {
    let p = (gfn << 12) as *const u8;
    // SAFETY: callers pass frames this guest can read; volatile, as another
    // domain may write the page.
    range.into_iter().all(|i| unsafe { core::ptr::read_volatile(p.add(i)) } == f(i))
}

// --- the command line ---------------------------------------------------------

/// The `key=value` words of a command line.
#[derive(Debug, Clone, Copy)]
pub struct Args(pub &'static str);

impl Args {
    /// The command line the hypervisor passed in the start info.
    pub fn from_start_info(si_paddr: u64) -> Args {
        Args(crate::c_str(crate::start_info(si_paddr).cmdline_paddr))
    }

    /// The value of `key=` (up to the next space).
    pub fn get(&self, key: &str) -> Option<&'static str> {
        self.0.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }

    /// A number: decimal, or hexadecimal after 0x.
    pub fn num(&self, key: &str) -> Option<u64> {
        let v = self.get(key)?;
        match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        }
    }

    pub fn num_or(&self, key: &str, default: u64) -> u64 {
        self.num(key).unwrap_or(default)
    }

    /// A domain id, port or reference that must be given.
    pub fn required(&self, key: &str) -> u64 {
        self.num(key).unwrap_or_else(|| panic!("the command line has no {key}= (it is \"{}\")", self.0))
    }
}
