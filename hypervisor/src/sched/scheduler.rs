//! The scheduler on the real CPUs: the credit policy (`sched::credit`)
//! behind one lock, what each CPU runs next (its loop is
//! `arch::x86_64::hvm::run::cpu_loop`), software timers, and waking, blocking
//! and kicking vCPUs across CPUs.
//!
//! Blocking and waking meet under the scheduler lock, so a wake-up cannot
//! be lost between a vCPU deciding to block and blocking: the blocker
//! checks for pending work under the lock, the waker sets its work first
//! and then takes the lock.
//!
//! Hypervisor code runs with interrupts off. Host interrupts are taken at
//! the window after every VM exit and while a CPU idles; their handlers
//! only set flags (a timer is due, reschedule) that the loop acts on.

use super::credit::Credit;
use crate::arch::x86_64::{cpu, lapic, percpu};
use crate::domain::{self, Domain, RunState, VcpuShared, vflags};
use crate::time;
use crate::util::cpumask::{CpuMask, MAX_CPUS};
use crate::util::timer_queue::TimerQueue;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Mutex;
use xen_abi::vcpu::{RUNSTATE_BLOCKED, RUNSTATE_OFFLINE, RUNSTATE_RUNNABLE, RUNSTATE_RUNNING};

static SCHED: Mutex<Credit> = Mutex::new(Credit::new());
/// Entity id -> (domain, vCPU).
static ENTITIES: Mutex<Vec<Option<Entity>>> = Mutex::new(Vec::new());

/// What a scheduler entity is: a domain's vCPU.
type Entity = (Arc<Domain>, u32);

/// What a software timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    Singleshot,
    Periodic,
    Vlapic,
    Poll,
    /// Periodic hypervisor work registered with [`every`] (its index).
    Service(u32),
}

/// Whose timer an entry is: a CPU's queue holds one entry per key, so a
/// guest re-arming its timers in a loop replaces its entry instead of
/// adding one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerItem {
    /// The domain's `serial`: an entry left by a dead domain never fires
    /// for a new one given the same id.
    pub serial: u64,
    pub dom: u16,
    pub vcpu: u32,
    pub kind: TimerKind,
}

/// The vCPU's timer generation when armed: an entry on another CPU's
/// queue (the vCPU moved since) is out of date once the vCPU re-arms.
type Generation = u64;

/// A CPU's scheduling state.
pub struct Pcpu {
    need_resched: AtomicBool,
    timer_due: AtomicBool,
    /// A device interrupt arrived: `DEVICE_WORK` runs at the next softirq.
    device_due: AtomicBool,
    /// When the running vCPU's slice ends (0: no slice).
    slice_end: AtomicU64,
    /// Counts VM exits, so that a CPU asking another to leave a guest can
    /// see that it has.
    exits: AtomicU64,
    /// From just before the running vCPU's pending requests (a TLB flush
    /// among them) are looked at until its guest exits: while set, the CPU
    /// may use translations cached before a p2m change.
    in_guest: AtomicBool,
    timers: Mutex<TimerQueue<TimerItem, Generation>>,
}

static PCPUS: [Pcpu; MAX_CPUS] = [const {
    Pcpu {
        need_resched: AtomicBool::new(false),
        timer_due: AtomicBool::new(false),
        device_due: AtomicBool::new(false),
        slice_end: AtomicU64::new(0),
        exits: AtomicU64::new(0),
        in_guest: AtomicBool::new(false),
        timers: Mutex::new(TimerQueue::new()),
    }
}; MAX_CPUS];

/// `sched_report=` interval (0: off) and when it was last printed.
static REPORT_NS: AtomicU64 = AtomicU64::new(0);
static REPORT_LAST: AtomicU64 = AtomicU64::new(0);

fn this() -> usize {
    percpu::cpu_index() as usize
}

fn pcpu(cpu: usize) -> &'static Pcpu {
    &PCPUS[cpu.min(MAX_CPUS - 1)]
}

/// Timer interrupt handler: the loop checks timers and the slice.
pub fn timer_interrupt(_: &mut crate::arch::x86_64::traps::TrapFrame) {
    pcpu(this()).timer_due.store(true, Ordering::Release);
    lapic::eoi();
}

/// Reschedule IPI handler.
pub fn resched_interrupt(_: &mut crate::arch::x86_64::traps::TrapFrame) {
    pcpu(this()).need_resched.store(true, Ordering::Release);
    lapic::eoi();
}

/// Kick IPI handler: the exit it caused is all it was for.
pub fn kick_interrupt(_: &mut crate::arch::x86_64::traps::TrapFrame) {
    lapic::eoi();
}

/// Puts a CPU in service.
pub fn add_cpu(cpu: u32) {
    SCHED.lock().add_cpu(cpu as usize);
}

/// `sched_report=MS`: print each domain's CPU time every MS milliseconds.
pub fn set_report_interval(ms: u64) {
    REPORT_NS.store(ms.saturating_mul(1_000_000), Ordering::Relaxed);
}

/// Hands a new domain's vCPUs to the scheduler (runnable ones wake).
pub fn add_domain(dom: &Arc<Domain>) {
    let mut kicks = CpuMask::empty();
    {
        let mut ents = ENTITIES.lock();
        let mut s = SCHED.lock();
        s.set_params(dom.id, dom.weight, dom.cap);
        for v in &dom.vcpus {
            let id = match ents.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    ents.push(None);
                    ents.len() - 1
                }
            };
            ents[id] = Some((dom.clone(), v.id));
            v.sched_id.store(id, Ordering::Release);
            s.add(id, dom.id, dom.affinity);
            if v.state() == RunState::Runnable {
                kicks.or(&s.wake(id));
            }
        }
    }
    send_kicks(&kicks);
}

fn send_kicks(k: &CpuMask) {
    let me = this();
    for c in k.iter() {
        if c == me {
            pcpu(c).need_resched.store(true, Ordering::Release);
        } else if let Some(p) = percpu::get(c) {
            lapic::send_ipi(p.apic_id, lapic::VECTOR_RESCHED);
        }
    }
}

/// Makes a running vCPU leave its guest (to see new work), or wakes a
/// blocked one. Call after setting the work (a flag, an IRR bit).
pub fn notify(v: &VcpuShared) {
    let mut kicks = CpuMask::empty();
    {
        let mut s = SCHED.lock();
        if v.state() == RunState::Blocked {
            v.set_state(RunState::Runnable);
            v.runstate.lock().enter(RUNSTATE_RUNNABLE, time::now_ns());
            kicks = s.wake(v.sched_id.load(Ordering::Acquire));
        }
    }
    send_kicks(&kicks);
    let on = v.running_on.load(Ordering::Acquire);
    if on != 0 && on as usize - 1 != this() {
        if let Some(p) = percpu::get(on as usize - 1) {
            lapic::send_ipi(p.apic_id, lapic::VECTOR_CALL);
        }
    }
}

/// The running vCPU wants to block: it does unless something already
/// woke it. Returns whether it blocked.
pub fn try_block(v: &VcpuShared) -> bool {
    let mut s = SCHED.lock();
    if v.wake_pending() {
        return false;
    }
    v.set_state(RunState::Blocked);
    v.runstate.lock().enter(RUNSTATE_BLOCKED, time::now_ns());
    s.sleep(v.sched_id.load(Ordering::Acquire));
    true
}

/// Takes a vCPU down (it stops at its next exit if it runs).
pub fn take_down(v: &VcpuShared, state: RunState) {
    {
        let mut s = SCHED.lock();
        v.set_state(state);
        v.runstate.lock().enter(RUNSTATE_OFFLINE, time::now_ns());
        s.sleep(v.sched_id.load(Ordering::Acquire));
    }
    let on = v.running_on.load(Ordering::Acquire);
    if on != 0
        && let Some(p) = percpu::get(on as usize - 1)
    {
        if on as usize - 1 == this() {
            pcpu(on as usize - 1).need_resched.store(true, Ordering::Release);
        } else {
            lapic::send_ipi(p.apic_id, lapic::VECTOR_RESCHED);
        }
    }
}

/// Brings a down vCPU up (VCPUOP_up, STARTUP).
pub fn bring_up(v: &VcpuShared) {
    let kicks = {
        let mut s = SCHED.lock();
        if !matches!(v.state(), RunState::Down | RunState::WaitForSipi) {
            return;
        }
        v.set_state(RunState::Runnable);
        v.runstate.lock().enter(RUNSTATE_RUNNABLE, time::now_ns());
        s.wake(v.sched_id.load(Ordering::Acquire))
    };
    send_kicks(&kicks);
}

/// A domain stopped running (shut down or crashed): its vCPUs that are
/// not on a CPU leave the scheduler now, the others at their next exit.
/// Returns how many left now.
pub fn domain_stopped(dom: &Domain) -> u32 {
    let mut kicks = CpuMask::empty();
    let mut gone = 0;
    {
        let mut s = SCHED.lock();
        let mut ents = ENTITIES.lock();
        for v in &dom.vcpus {
            let id = v.sched_id.load(Ordering::Acquire);
            if id == usize::MAX || ents.get(id).is_none_or(|e| e.is_none()) {
                continue;
            }
            let on = v.running_on.load(Ordering::Acquire);
            if on != 0 {
                kicks.set(on as usize - 1);
                continue;
            }
            s.remove(id);
            ents[id] = None;
            v.sched_id.store(usize::MAX, Ordering::Release);
            gone += 1;
        }
    }
    send_kicks(&kicks);
    gone
}

/// A running vCPU of a stopped domain leaves the scheduler; false if it
/// already had.
fn leave(v: &VcpuShared) -> bool {
    let mut s = SCHED.lock();
    let mut ents = ENTITIES.lock();
    let id = v.sched_id.swap(usize::MAX, Ordering::AcqRel);
    if id == usize::MAX {
        return false;
    }
    s.remove(id);
    if let Some(e) = ents.get_mut(id) {
        *e = None;
    }
    true
}

/// Makes CPU `cpu` look at its work at once (its loop, or the exit from the
/// guest it runs).
pub fn kick_cpu(cpu: usize) {
    if cpu == this() {
        pcpu(cpu).need_resched.store(true, Ordering::Release);
    } else if let Some(p) = percpu::get(cpu) {
        lapic::send_ipi(p.apic_id, lapic::VECTOR_RESCHED);
    }
}

/// Arms a software timer on this CPU, replacing the one `item` had here.
pub fn add_timer(deadline: u64, item: TimerItem, generation: Generation) {
    let cpu = this();
    pcpu(cpu).timers.lock().set(deadline, item, generation);
    program_timer(cpu);
}

/// Drops every timer a dead domain left on any CPU's queue.
pub fn forget_timers(serial: u64) {
    for p in &PCPUS {
        p.timers.lock().remove_where(|t| t.serial == serial);
    }
}

/// Aims the APIC timer at this CPU's next deadline (timers or the slice).
fn program_timer(cpu: usize) {
    let p = pcpu(cpu);
    let next = p.timers.lock().next_deadline();
    let slice = p.slice_end.load(Ordering::Relaxed);
    let deadline = match (next, slice) {
        (Some(a), 0) => Some(a),
        (Some(a), b) => Some(a.min(b)),
        (None, 0) => None,
        (None, b) => Some(b),
    };
    lapic::arm(deadline.map(time::ns_to_tsc));
}

/// Runs this CPU's due timers and notes the end of the slice. Returns true
/// if the running vCPU should give up the CPU.
/// What device interrupts leave for softirq context (`irq::deliver`):
/// set once at boot, so the scheduler need not know about devices.
static DEVICE_WORK: spin::Once<fn()> = spin::Once::new();

pub fn set_device_work(f: fn()) {
    DEVICE_WORK.call_once(|| f);
}

/// From an interrupt handler: this CPU runs the device work at its next
/// softirq.
pub fn device_work_due() {
    let p = this_pcpu();
    p.device_due.store(true, Ordering::Release);
    p.timer_due.store(true, Ordering::Release);
}

pub fn softirqs() -> bool {
    this_pcpu().softirqs()
}

/// This CPU's scheduler state (the run loop keeps it for a whole run).
pub fn this_pcpu() -> &'static Pcpu {
    pcpu(this())
}

impl Pcpu {
    /// Runs due timers and notes the end of the slice; call it on the CPU
    /// this is for. Returns true if the running vCPU should give up the
    /// CPU.
    ///
    /// The APIC timer is always armed for the earliest of this CPU's
    /// timers and the slice end (`add_timer` and the loop re-arm it), so
    /// nothing can be due before its interrupt has set `timer_due`:
    /// without it this is two loads, which keeps every VM exit cheap.
    #[inline]
    pub fn softirqs(&self) -> bool {
        // Device work raises `timer_due` too, so that this stays two
        // loads on every exit.
        if self.timer_due.swap(false, Ordering::AcqRel) {
            if self.device_due.load(Ordering::Acquire) {
                self.device_work();
            }
            self.run_timers();
        }
        self.need_resched.load(Ordering::Acquire)
    }

    #[cold]
    #[inline(never)]
    fn device_work(&self) {
        self.device_due.store(false, Ordering::Release);
        if let Some(f) = DEVICE_WORK.get() {
            f();
        }
    }

    #[cold]
    #[inline(never)]
    fn run_timers(&self) {
        let now = time::now_ns();
        loop {
            let due = self.timers.lock().pop_due(now);
            let Some((_, item, generation)) = due else { break };
            fire(item, generation, now);
        }
        let slice = self.slice_end.load(Ordering::Relaxed);
        if slice != 0 && now >= slice {
            self.need_resched.store(true, Ordering::Release);
        }
        // Also re-arms after an early interrupt (a far deadline is cut to
        // what the count-down register holds).
        program_timer(this());
    }

    /// The running vCPU should give up the CPU (its slice ended, a better
    /// one woke).
    #[inline]
    pub fn need_resched(&self) -> bool {
        self.need_resched.load(Ordering::Acquire)
    }

    /// About to look at the vCPU's requests and enter its guest. An
    /// exchange, a full barrier: a CPU that sets a request (FLUSH) and then
    /// finds this clear knows the request will be seen before the entry.
    #[inline]
    pub fn entering_guest(&self) {
        self.in_guest.swap(true, Ordering::SeqCst);
    }

    /// The guest exited (counted).
    #[inline]
    pub fn left_guest(&self) {
        self.exits.fetch_add(1, Ordering::Relaxed);
        self.not_in_guest();
    }

    /// Out of the guest for good: after an exit already counted, or an
    /// entry given up.
    #[inline]
    pub fn not_in_guest(&self) {
        self.in_guest.store(false, Ordering::Release);
    }
}

/// Periodic hypervisor work: (period, what to do).
static SERVICES: Mutex<Vec<Service>> = Mutex::new(Vec::new());

/// A period and the work done every period.
type Service = (u64, fn());

/// Runs `work` every `period_ns` on this CPU (serial input polling, say),
/// from its timer interrupts.
pub fn every(period_ns: u64, work: fn()) {
    let index = {
        let mut s = SERVICES.lock();
        s.push((period_ns, work));
        s.len() as u32 - 1
    };
    add_timer(
        time::now_ns().saturating_add(period_ns),
        TimerItem { serial: 0, dom: 0, vcpu: 0, kind: TimerKind::Service(index) },
        0,
    );
}

fn fire(item: TimerItem, generation: Generation, now: u64) {
    if let TimerKind::Service(index) = item.kind {
        let service = SERVICES.lock().get(index as usize).copied();
        if let Some((period, work)) = service {
            work();
            add_timer(now.saturating_add(period), item, 0);
        }
        return;
    }
    let Some(dom) = domain::registry::find(item.dom) else { return };
    if dom.serial != item.serial {
        return;
    }
    let Some(v) = dom.vcpu(item.vcpu) else { return };
    let mut t = v.timers.lock();
    let current = if item.kind == TimerKind::Vlapic { t.vlapic_generation } else { t.generation };
    if current != generation {
        return;
    }
    match item.kind {
        TimerKind::Singleshot => {
            if t.singleshot.take().is_none() {
                return;
            }
            drop(t);
            v.set_flag(vflags::TIMER);
            dom.send_virq(v.id, xen_abi::event_channel::VIRQ_TIMER);
        }
        TimerKind::Periodic => {
            let Some((period, next)) = t.periodic else { return };
            if next > now {
                return;
            }
            let following = now.saturating_add(period);
            t.periodic = Some((period, following));
            let g = t.generation;
            drop(t);
            add_timer(following, item, g);
            v.set_flag(vflags::TIMER);
            dom.send_virq(v.id, xen_abi::event_channel::VIRQ_TIMER);
        }
        TimerKind::Poll => {
            if t.poll_deadline.take().is_none() {
                return;
            }
            drop(t);
            v.set_flag(vflags::POLL_DONE);
        }
        TimerKind::Service(_) => return,
        TimerKind::Vlapic => {
            drop(t);
            let mut l = v.vlapic.lock();
            l.timer_expired(now);
            let again = l.timer_deadline();
            let pending = l.has_pending();
            drop(l);
            v.note_irr();
            if let Some(d) = again {
                add_timer(d, item, generation);
            }
            if !pending {
                return;
            }
        }
    }
    notify(v);
}

/// The vCPU's timers changed: a new generation invalidates queued ones.
pub fn rearm_vcpu_timers(dom: &Domain, v: &VcpuShared) {
    let (generation, single, periodic, poll) = {
        let mut t = v.timers.lock();
        t.generation += 1;
        (t.generation, t.singleshot, t.periodic, t.poll_deadline)
    };
    let cpu = this();
    let mut q = pcpu(cpu).timers.lock();
    let item = |kind| TimerItem { serial: dom.serial, dom: dom.id, vcpu: v.id, kind };
    let arms = [
        (single, TimerKind::Singleshot),
        (periodic.map(|(_, next)| next), TimerKind::Periodic),
        (poll, TimerKind::Poll),
    ];
    for (deadline, kind) in arms {
        match deadline {
            Some(d) => q.set(d, item(kind), generation),
            None => q.cancel(item(kind)),
        }
    }
    drop(q);
    program_timer(cpu);
}

/// The vLAPIC's timer was (re)programmed: earlier queue entries go stale.
pub fn rearm_vlapic_timer(dom: &Domain, v: &VcpuShared) {
    let deadline = v.vlapic.lock().timer_deadline();
    let generation = {
        let mut t = v.timers.lock();
        t.vlapic_generation += 1;
        t.vlapic_generation
    };
    let item = TimerItem { serial: dom.serial, dom: dom.id, vcpu: v.id, kind: TimerKind::Vlapic };
    match deadline {
        Some(d) => add_timer(d, item, generation),
        None => pcpu(this()).timers.lock().cancel(item),
    }
}

/// Makes every CPU in `cpus` leave its guest and waits until each has
/// (they will flush what they were told to before re-entering). Call
/// after setting the request: a CPU outside its guest sees it before its
/// next entry (`Pcpu::entering_guest`), and is not waited for, so two
/// CPUs asking each other at once do not wait forever.
///
/// The wait has no time limit: the callers free frames the guest may
/// still reach through translations cached on those CPUs, so going on
/// before they left would hand those frames to someone else while a
/// guest can still write them (an emulated or nested machine can keep a
/// CPU from running for a long time). The interrupt is sent again every
/// 10 ms in case one was lost, and a CPU that takes a second is reported.
pub fn kick_and_wait(cpus: &CpuMask) {
    let me = this();
    let before: Vec<(usize, u64)> =
        cpus.iter().filter(|&c| c != me).map(|c| (c, pcpu(c).exits.load(Ordering::Acquire))).collect();
    let kick = |c: usize| {
        if let Some(p) = percpu::get(c) {
            lapic::send_ipi(p.apic_id, lapic::VECTOR_CALL);
        }
    };
    for &(c, _) in &before {
        kick(c);
    }
    let tick = time::tsc_khz().max(1) * 10;
    for (c, e) in before {
        let p = pcpu(c);
        let start = cpu::rdtsc();
        let mut next_kick = start + tick;
        let mut reported = false;
        while p.in_guest.load(Ordering::SeqCst) && p.exits.load(Ordering::Acquire) == e {
            core::hint::spin_loop();
            let now = cpu::rdtsc();
            if now >= next_kick {
                kick(c);
                next_kick = now + tick;
                if !reported && now - start >= tick * 100 {
                    reported = true;
                    log::warn!("sched: CPU{c} has not left its guest for a second after being asked to; waiting on");
                }
            }
        }
    }
}

/// What this CPU runs next (the policy's pick, with the end of its slice
/// and this CPU's next timer armed), or None to idle.
pub fn pick_next(cpu: usize) -> Option<(Arc<Domain>, u32)> {
    let p = pcpu(cpu);
    let now = time::now_ns();
    p.need_resched.store(false, Ordering::Release);
    let pick = SCHED.lock().schedule(cpu, now);
    send_kicks(&pick.kicks);
    let mut until = pick.until.unwrap_or(0);
    // CPU 0 prints sched_report= lines even when it idles.
    let every = REPORT_NS.load(Ordering::Relaxed);
    if cpu == 0 && every != 0 {
        let next = REPORT_LAST.load(Ordering::Relaxed) + every;
        until = if until == 0 { next } else { until.min(next) };
    }
    p.slice_end.store(until, Ordering::Relaxed);
    program_timer(cpu);
    pick.next.and_then(|id| ENTITIES.lock().get(id).cloned().flatten())
}

/// After vCPU `vid` of `dom` ran: if its domain stopped, a dead domain's
/// vCPU leaves the scheduler (true: it left now), a suspended one's stays,
/// out of the run queues.
pub fn after_run(dom: &Domain, vid: u32) -> bool {
    let Some(v) = dom.vcpu(vid) else { return false };
    if dom.is_running() {
        return false;
    }
    if matches!(dom.inner.lock().state, domain::DomainState::Dead(_)) {
        leave(v)
    } else {
        SCHED.lock().sleep(v.sched_id.load(Ordering::Acquire));
        false
    }
}

/// Nothing to run: wait for the next interrupt unless work is already due.
pub fn idle(cpu: usize) {
    let p = pcpu(cpu);
    if !p.need_resched.load(Ordering::Acquire) && !p.timer_due.load(Ordering::Acquire) {
        // SAFETY: waits for the next interrupt with interrupts enabled;
        // handlers only set flags.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
}

/// `sched_report=`: each domain's CPU time (the scheduler's accounting)
/// and its share of the time since the last report.
pub fn maybe_report() {
    let every = REPORT_NS.load(Ordering::Relaxed);
    if every == 0 || this() != 0 {
        return;
    }
    let now = time::now_ns();
    let last = REPORT_LAST.load(Ordering::Relaxed);
    if now < last + every {
        return;
    }
    REPORT_LAST.store(now, Ordering::Relaxed);
    let s = SCHED.lock();
    let ents = ENTITIES.lock();
    // Per domain: name, weight, cap, CPU time, CPUs its vCPUs ran on.
    let mut per: Vec<(u16, alloc::string::String, u32, u32, u64, CpuMask)> = Vec::new();
    for (id, e) in ents.iter().enumerate() {
        let Some((d, _)) = e else { continue };
        let t = s.runtime(id, now);
        let on = s.ran_on(id);
        match per.iter_mut().find(|p| p.0 == d.id) {
            Some(p) => {
                p.4 += t;
                p.5.or(&on);
            }
            None => per.push((d.id, d.name.clone(), d.weight, d.cap, t, on)),
        }
    }
    drop(ents);
    drop(s);
    log::info!("sched: report at {} us", now / 1000);
    for (id, name, weight, cap, t, on) in per {
        log::info!("sched: domain {id} ({name}) weight {weight} cap {cap} cpu time {} us on cpus {on}", t / 1000);
    }
}

/// Marks a vCPU as running on this CPU (runstate and kick target).
pub fn enter_vcpu(v: &VcpuShared) {
    v.running_on.store(this() as u32 + 1, Ordering::Release);
    v.runstate.lock().enter(RUNSTATE_RUNNING, time::now_ns());
}

pub fn exit_vcpu(v: &VcpuShared) {
    v.running_on.store(0, Ordering::Release);
    let state = match v.state() {
        RunState::Runnable => RUNSTATE_RUNNABLE,
        RunState::Blocked => RUNSTATE_BLOCKED,
        _ => RUNSTATE_OFFLINE,
    };
    let mut r = v.runstate.lock();
    if r.state == RUNSTATE_RUNNING {
        r.enter(state, time::now_ns());
    }
}

/// The running vCPU yields: the scheduler looks at this CPU again.
pub fn yield_now() {
    pcpu(this()).need_resched.store(true, Ordering::Release);
}
