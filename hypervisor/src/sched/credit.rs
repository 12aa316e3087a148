//! The credit scheduler's policy, after Xen's credit scheduler (credit1):
//! plain logic over virtual time, unit-tested on the host; `sched::scheduler`
//! drives it on the real CPUs.
//!
//! - Every schedulable vCPU (an *entity*) belongs to a domain with a
//!   `weight` (relative share, default 256) and an optional `cap` (at most
//!   this percentage of one CPU for the whole domain; 0 = none).
//! - Every `PERIOD_NS` the CPU time of the period (`PERIOD_NS` per online
//!   CPU) is shared out as credit among the active entities in proportion
//!   to their domain's weight, water-filling so that no domain is given
//!   more than its vCPUs can use or its cap allows; running burns credit
//!   nanosecond for nanosecond.
//! - Priorities: BOOST (just woken with credit left: runs ahead of
//!   everything, so event-driven domains answer quickly), UNDER (credit
//!   left), OVER (credit spent: runs only when nothing UNDER wants the
//!   CPU, so idle time is never wasted). A capped domain's entities that
//!   overspend are parked until the next period refills them.
//! - One run queue per CPU, ordered by priority, and within a priority by
//!   credit left (most first; equals take turns). Xen orders a priority
//!   first-in first-out; ordering by credit lets an entity that lost time
//!   to late timer interrupts catch up, which keeps shares within a few
//!   percent of the weights. A CPU whose best local choice is OVER (or nothing) steals a
//!   better entity from another CPU's queue; a woken entity goes to an
//!   idle CPU it may use if there is one. Hard affinity (`cpus=`) bounds
//!   where an entity may run.
//! - Decisions happen at least every `SLICE_NS` on a busy CPU.

use crate::util::cpumask::{CpuMask, MAX_CPUS};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

/// A busy CPU reconsiders its choice this often (Xen's tick).
pub const SLICE_NS: u64 = 10_000_000;
/// Credit is handed out this often (Xen: 30 ms).
pub const PERIOD_NS: u64 = 30_000_000;
pub const DEFAULT_WEIGHT: u32 = 256;
pub const MAX_WEIGHT: u32 = 65535;

/// Index of an entity, chosen by the caller.
pub type Id = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Prio {
    Boost,
    Under,
    Over,
}

#[derive(Debug, Clone)]
struct Ent {
    dom: u16,
    affinity: CpuMask,
    runnable: bool,
    /// Capped and overspent: not scheduled until credit comes back.
    parked: bool,
    credit: i64,
    prio: Prio,
    /// The CPU whose queue holds it, that runs it, or that last ran it.
    cpu: usize,
    queued: bool,
    running: bool,
    /// Ran or wanted to run since the last accounting (gets credit).
    active: bool,
    runtime: u64,
    /// Every CPU it has run on (what `sched_report=` shows of pinning).
    ran_on: CpuMask,
}

#[derive(Debug, Clone, Copy)]
struct DomParams {
    weight: u32,
    cap: u32,
}

#[derive(Debug, Clone, Default)]
struct Cpu {
    online: bool,
    queue: VecDeque<Id>,
    current: Option<Id>,
    since: u64,
}

/// What a CPU should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub next: Option<Id>,
    /// When to call `schedule` again at the latest (None: only when woken).
    pub until: Option<u64>,
    /// Other CPUs that should call `schedule` soon.
    pub kicks: CpuMask,
}

pub struct Credit {
    ents: Vec<Option<Ent>>,
    doms: BTreeMap<u16, DomParams>,
    cpus: Vec<Cpu>,
    next_acct: u64,
}

impl Default for Credit {
    fn default() -> Self {
        Credit::new()
    }
}

impl Credit {
    pub const fn new() -> Credit {
        Credit { ents: Vec::new(), doms: BTreeMap::new(), cpus: Vec::new(), next_acct: PERIOD_NS }
    }

    /// Puts a CPU in service.
    pub fn add_cpu(&mut self, cpu: usize) {
        if cpu >= MAX_CPUS {
            return;
        }
        if self.cpus.len() <= cpu {
            self.cpus.resize_with(cpu + 1, Cpu::default);
        }
        self.cpus[cpu].online = true;
    }

    pub fn online(&self) -> CpuMask {
        let mut m = CpuMask::empty();
        for (i, c) in self.cpus.iter().enumerate() {
            if c.online {
                m.set(i);
            }
        }
        m
    }

    /// Sets a domain's weight (1..=65535) and cap (percent of one CPU, 0 =
    /// none).
    pub fn set_params(&mut self, dom: u16, weight: u32, cap: u32) {
        self.doms.insert(dom, DomParams { weight: weight.clamp(1, MAX_WEIGHT), cap });
    }

    /// Registers entity `id` of domain `dom`, not yet runnable.
    pub fn add(&mut self, id: Id, dom: u16, affinity: CpuMask) {
        self.doms.entry(dom).or_insert(DomParams { weight: DEFAULT_WEIGHT, cap: 0 });
        if self.ents.len() <= id {
            self.ents.resize(id + 1, None);
        }
        let cpu = self.allowed(&affinity).iter().next().unwrap_or(0);
        self.ents[id] = Some(Ent {
            dom,
            affinity,
            runnable: false,
            parked: false,
            credit: 0,
            prio: Prio::Under,
            cpu,
            queued: false,
            running: false,
            active: false,
            runtime: 0,
            ran_on: CpuMask::empty(),
        });
    }

    /// Forgets an entity; the caller makes sure it no longer runs.
    pub fn remove(&mut self, id: Id) {
        let Some(e) = self.ents.get(id).and_then(|e| e.as_ref()) else { return };
        let (cpu, dom) = (e.cpu, e.dom);
        self.dequeue(id);
        if let Some(c) = self.cpus.get_mut(cpu)
            && c.current == Some(id)
        {
            c.current = None;
        }
        self.ents[id] = None;
        if !self.ents.iter().flatten().any(|e| e.dom == dom) {
            self.doms.remove(&dom);
        }
    }

    /// CPU time the entity has had, including the slice it is in.
    pub fn runtime(&self, id: Id, now: u64) -> u64 {
        let Some(e) = self.ent(id) else { return 0 };
        let mut t = e.runtime;
        if e.running
            && let Some(c) = self.cpus.get(e.cpu)
        {
            t += now.saturating_sub(c.since);
        }
        t
    }

    /// The CPUs the entity has run on so far.
    pub fn ran_on(&self, id: Id) -> CpuMask {
        self.ent(id).map(|e| e.ran_on).unwrap_or_else(CpuMask::empty)
    }

    pub fn is_runnable(&self, id: Id) -> bool {
        self.ent(id).is_some_and(|e| e.runnable)
    }

    pub fn prio(&self, id: Id) -> Option<Prio> {
        self.ent(id).map(|e| e.prio)
    }

    pub fn current(&self, cpu: usize) -> Option<Id> {
        self.cpus.get(cpu).and_then(|c| c.current)
    }

    pub fn affinity(&self, id: Id) -> Option<CpuMask> {
        self.ent(id).map(|e| e.affinity)
    }

    /// The entity wants to run. Returns the CPUs to kick.
    pub fn wake(&mut self, id: Id) -> CpuMask {
        let Some(e) = self.ent_mut(id) else { return CpuMask::empty() };
        if e.runnable {
            return CpuMask::empty();
        }
        e.runnable = true;
        e.active = true;
        if e.parked || e.running {
            // Parked: the next period lets it in. Running: it blocked and
            // woke before its CPU descheduled it, and simply goes on.
            return CpuMask::empty();
        }
        e.prio = if e.credit >= 0 { Prio::Boost } else { Prio::Over };
        let cpu = self.place(id);
        self.enqueue(id, cpu);
        self.kick_if_better(id, cpu)
    }

    /// The entity stops wanting to run (blocked, down, paused).
    pub fn sleep(&mut self, id: Id) {
        if let Some(e) = self.ent_mut(id) {
            e.runnable = false;
        }
        self.dequeue(id);
    }

    /// Changes where the entity may run. Returns CPUs to kick.
    pub fn set_affinity(&mut self, id: Id, affinity: CpuMask) -> CpuMask {
        let Some(e) = self.ent_mut(id) else { return CpuMask::empty() };
        e.affinity = affinity;
        let (cpu, queued, running) = (e.cpu, e.queued, e.running);
        if affinity.contains(cpu) {
            return CpuMask::empty();
        }
        if running {
            return CpuMask::single(cpu);
        }
        if queued {
            self.dequeue(id);
            let to = self.place(id);
            self.enqueue(id, to);
            return self.kick_if_better(id, to);
        }
        CpuMask::empty()
    }

    /// Decides what `cpu` runs next at time `now`: the current entity is
    /// charged for its time and requeued if it still wants to run.
    pub fn schedule(&mut self, cpu: usize, now: u64) -> Pick {
        let mut kicks = CpuMask::empty();
        if cpu >= self.cpus.len() || !self.cpus[cpu].online {
            return Pick { next: None, until: None, kicks };
        }
        if let Some(cur) = self.cpus[cpu].current.take() {
            let elapsed = now.saturating_sub(self.cpus[cpu].since);
            self.burn(cur, elapsed);
            if let Some(e) = self.ent_mut(cur) {
                e.running = false;
                if e.runnable && !e.parked {
                    let to = if e.affinity.contains(cpu) { cpu } else { self.place(cur) };
                    self.enqueue(cur, to);
                    if to != cpu {
                        kicks.or(&self.kick_if_better(cur, to));
                    }
                }
            }
        }
        if now >= self.next_acct {
            kicks.or(&self.account(now));
        }
        let next = self.pick(cpu);
        let c = &mut self.cpus[cpu];
        c.current = next;
        c.since = now;
        if let Some(n) = next
            && let Some(e) = self.ents[n].as_mut()
        {
            e.running = true;
            e.queued = false;
            e.cpu = cpu;
            e.ran_on.set(cpu);
        }
        // Work left in this queue that an idle CPU could take (read in
        // place: nothing here changes the queue, so no copy of it).
        for &id in &self.cpus[cpu].queue {
            if let Some(e) = self.ent(id)
                && let Some(idle) = self.idle_cpu(&e.affinity, cpu, &kicks)
            {
                kicks.set(idle);
            }
        }
        kicks.clear(cpu);
        let parked = self.ents.iter().flatten().any(|e| e.parked && e.runnable);
        let until = match next {
            Some(_) => Some(now + SLICE_NS),
            // An idle CPU must still come back for accounting while a
            // capped entity waits for its refill.
            None if parked => Some(self.next_acct.max(now + 1)),
            None => None,
        };
        Pick { next, until, kicks }
    }

    fn ent(&self, id: Id) -> Option<&Ent> {
        self.ents.get(id).and_then(|e| e.as_ref())
    }

    fn ent_mut(&mut self, id: Id) -> Option<&mut Ent> {
        self.ents.get_mut(id).and_then(|e| e.as_mut())
    }

    fn allowed(&self, affinity: &CpuMask) -> CpuMask {
        let a = affinity.and(&self.online());
        if a.is_empty() { self.online() } else { a }
    }

    fn is_idle(&self, cpu: usize) -> bool {
        self.cpus.get(cpu).is_some_and(|c| c.online && c.current.is_none() && c.queue.is_empty())
    }

    /// An idle CPU the affinity allows, other than `not` and not already
    /// being kicked.
    fn idle_cpu(&self, affinity: &CpuMask, not: usize, kicked: &CpuMask) -> Option<usize> {
        self.allowed(affinity).iter().find(|&c| c != not && !kicked.contains(c) && self.is_idle(c))
    }

    /// Where a woken or moved entity should queue: its last CPU if that is
    /// idle, else any idle CPU it may use, else its last CPU (if allowed).
    fn place(&self, id: Id) -> usize {
        let Some(e) = self.ent(id) else { return 0 };
        let allowed = self.allowed(&e.affinity);
        if allowed.contains(e.cpu) && self.is_idle(e.cpu) {
            return e.cpu;
        }
        if let Some(c) = allowed.iter().find(|&c| self.is_idle(c)) {
            return c;
        }
        if allowed.contains(e.cpu) { e.cpu } else { allowed.iter().next().unwrap_or(0) }
    }

    /// Kicks `cpu` if `id` should run there before what it runs now.
    fn kick_if_better(&self, id: Id, cpu: usize) -> CpuMask {
        let Some(e) = self.ent(id) else { return CpuMask::empty() };
        let c = &self.cpus[cpu];
        let better = match c.current.and_then(|cur| self.ent(cur)) {
            None => true,
            Some(cur) => e.prio < cur.prio,
        };
        if better { CpuMask::single(cpu) } else { CpuMask::empty() }
    }

    fn enqueue(&mut self, id: Id, cpu: usize) {
        let Some((prio, credit)) = self.ent(id).map(|e| (e.prio, e.credit)) else { return };
        let ents = &self.ents;
        let q = &mut self.cpus[cpu].queue;
        // Behind everything of better priority, and within its own behind
        // every entity with as much credit left or more: equals take turns,
        // and one that has fallen behind its share catches up first (Xen's
        // FIFO order lets slices overrun by timer latency add up).
        let at = q
            .iter()
            .position(|&o| ents[o].as_ref().is_some_and(|e| e.prio > prio || (e.prio == prio && e.credit < credit)))
            .unwrap_or(q.len());
        q.insert(at, id);
        if let Some(e) = self.ents[id].as_mut() {
            e.queued = true;
            e.cpu = cpu;
        }
    }

    fn dequeue(&mut self, id: Id) {
        let Some(e) = self.ent(id) else { return };
        if !e.queued {
            return;
        }
        let cpu = e.cpu;
        if let Some(c) = self.cpus.get_mut(cpu) {
            c.queue.retain(|&o| o != id);
        }
        if let Some(e) = self.ent_mut(id) {
            e.queued = false;
        }
    }

    fn burn(&mut self, id: Id, elapsed: u64) {
        let cap = self.ent(id).and_then(|e| self.doms.get(&e.dom)).map_or(0, |d| d.cap);
        let Some(e) = self.ent_mut(id) else { return };
        e.credit -= elapsed as i64;
        e.runtime += elapsed;
        e.active = true;
        e.prio = if e.credit >= 0 { Prio::Under } else { Prio::Over };
        if cap > 0 && e.credit < 0 {
            e.parked = true;
        }
    }

    /// Hands out one period's credit; returns CPUs to kick for entities
    /// that come back from parking.
    fn account(&mut self, now: u64) -> CpuMask {
        while self.next_acct <= now {
            self.next_acct += PERIOD_NS;
        }
        let online = self.online().count() as u64;
        let period = PERIOD_NS as i64;
        // Active entities per domain.
        let mut active: BTreeMap<u16, u64> = BTreeMap::new();
        for e in self.ents.iter_mut().flatten() {
            if e.runnable || e.running {
                e.active = true;
            }
            if e.active {
                *active.entry(e.dom).or_default() += 1;
            }
        }
        // Water-filling: shares in proportion to weight x active entities,
        // no domain above what its entities can run or its cap allows.
        let mut share: BTreeMap<u16, u64> = BTreeMap::new();
        let limit = |dom: u16, n: u64, doms: &BTreeMap<u16, DomParams>| -> u64 {
            let peak = n.min(online) * PERIOD_NS;
            match doms.get(&dom) {
                Some(d) if d.cap > 0 => peak.min(d.cap as u64 * PERIOD_NS / 100),
                _ => peak,
            }
        };
        let mut pool = online * PERIOD_NS;
        let mut open: Vec<u16> = active.keys().copied().collect();
        loop {
            let weight = |d: &u16| self.doms.get(d).map_or(DEFAULT_WEIGHT, |p| p.weight) as u64 * active[d];
            let total: u64 = open.iter().map(weight).sum();
            if total == 0 {
                break;
            }
            let saturated: Vec<u16> = open
                .iter()
                .copied()
                .filter(|d| {
                    (pool as u128 * weight(d) as u128 / total as u128) as u64 >= limit(*d, active[d], &self.doms)
                })
                .collect();
            if saturated.is_empty() {
                for d in &open {
                    share.insert(*d, (pool as u128 * weight(d) as u128 / total as u128) as u64);
                }
                break;
            }
            for d in saturated {
                let l = limit(d, active[&d], &self.doms);
                share.insert(d, l);
                pool = pool.saturating_sub(l);
                open.retain(|o| *o != d);
            }
        }
        let mut unparked = Vec::new();
        for (i, slot) in self.ents.iter_mut().enumerate() {
            let Some(e) = slot.as_mut() else { continue };
            if !e.active {
                continue;
            }
            let n = active.get(&e.dom).copied().unwrap_or(1).max(1);
            let s = share.get(&e.dom).copied().unwrap_or(0) / n;
            // Unused credit is not banked beyond one period, nor debt
            // carried beyond one.
            e.credit = (e.credit + s as i64).clamp(-period, period);
            if !e.running {
                e.prio = match e.prio {
                    Prio::Boost if e.credit >= 0 => Prio::Boost,
                    _ if e.credit >= 0 => Prio::Under,
                    _ => Prio::Over,
                };
            }
            if e.parked && e.credit >= 0 {
                e.parked = false;
                if e.runnable && !e.running {
                    unparked.push(i);
                }
            }
            // Inactive until it runs or wants to again.
            e.active = e.runnable || e.running;
        }
        // Queues were ordered by the old priorities.
        for c in 0..self.cpus.len() {
            let mut q: Vec<Id> = self.cpus[c].queue.drain(..).collect();
            q.sort_by_key(|&id| self.ents[id].as_ref().map_or((Prio::Over, 0), |e| (e.prio, -e.credit)));
            self.cpus[c].queue = q.into();
        }
        let mut kicks = CpuMask::empty();
        for id in unparked {
            let cpu = self.place(id);
            self.enqueue(id, cpu);
            kicks.or(&self.kick_if_better(id, cpu));
        }
        kicks
    }

    /// The best entity for `cpu`: its own queue's head, or a better one
    /// stolen from another CPU's queue.
    fn pick(&mut self, cpu: usize) -> Option<Id> {
        let local = self.cpus[cpu].queue.front().copied();
        let local_prio = local.and_then(|id| self.ent(id)).map(|e| e.prio);
        if local_prio.is_none() || local_prio == Some(Prio::Over) {
            let mut best: Option<(Prio, usize, Id)> = None;
            let n = self.cpus.len();
            for k in 1..n {
                let other = (cpu + k) % n;
                if !self.cpus[other].online {
                    continue;
                }
                for &id in &self.cpus[other].queue {
                    let Some(e) = self.ent(id) else { continue };
                    if !e.affinity.contains(cpu) {
                        continue;
                    }
                    let better_than_local = local_prio.is_none_or(|lp| e.prio < lp);
                    if better_than_local && best.is_none_or(|(bp, _, _)| e.prio < bp) {
                        best = Some((e.prio, other, id));
                    }
                }
            }
            if let Some((_, _, id)) = best {
                self.dequeue(id);
                return Some(id);
            }
        }
        let id = self.cpus[cpu].queue.pop_front()?;
        if let Some(e) = self.ent_mut(id) {
            e.queued = false;
        }
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy)]
    enum Load {
        /// Always wants the CPU.
        Busy,
        /// Runs `run` ns, then sleeps `sleep` ns.
        Duty { run: u64, sleep: u64 },
    }

    /// A discrete-event run of the policy: CPUs call `schedule` when their
    /// slice ends, when kicked, and when their entity blocks.
    struct Sim {
        s: Credit,
        ncpu: usize,
        now: u64,
        until: Vec<Option<u64>>,
        load: Vec<Load>,
        /// (entity, time it next wakes) for sleeping Duty entities.
        wakes: Vec<Option<u64>>,
        /// When a running Duty entity blocks (absolute).
        blocks: Vec<Option<u64>>,
        ran_on: Vec<CpuMask>,
    }

    impl Sim {
        fn new(ncpu: usize) -> Sim {
            let mut s = Credit::new();
            for c in 0..ncpu {
                s.add_cpu(c);
            }
            Sim {
                s,
                ncpu,
                now: 0,
                until: vec![Some(0); ncpu],
                load: Vec::new(),
                wakes: Vec::new(),
                blocks: Vec::new(),
                ran_on: Vec::new(),
            }
        }

        fn add(&mut self, dom: u16, load: Load, affinity: CpuMask) -> Id {
            let id = self.load.len();
            self.s.add(id, dom, affinity);
            self.load.push(load);
            self.wakes.push(None);
            self.blocks.push(None);
            self.ran_on.push(CpuMask::empty());
            let k = self.s.wake(id);
            self.kick(k);
            id
        }

        fn kick(&mut self, k: CpuMask) {
            for c in k.iter() {
                self.until[c] = Some(self.now);
            }
        }

        fn schedule(&mut self, cpu: usize) {
            let p = self.s.schedule(cpu, self.now);
            self.until[cpu] = p.until;
            if let Some(id) = p.next {
                self.ran_on[id].set(cpu);
                if let Load::Duty { run, .. } = self.load[id] {
                    // Blocks after `run` more ns of running.
                    self.blocks[id].get_or_insert(self.now + run);
                    let b = self.blocks[id].unwrap();
                    self.until[cpu] = Some(self.until[cpu].map_or(b, |u| u.min(b)));
                }
            }
            self.kick(p.kicks);
        }

        fn run_until(&mut self, end: u64) {
            while self.now < end {
                // Due events at `now` first.
                for id in 0..self.load.len() {
                    if self.wakes[id].is_some_and(|w| w <= self.now) {
                        self.wakes[id] = None;
                        let k = self.s.wake(id);
                        self.kick(k);
                    }
                }
                for cpu in 0..self.ncpu {
                    if self.until[cpu].is_some_and(|u| u <= self.now) {
                        if let Some(cur) = self.s.current(cpu)
                            && let Load::Duty { sleep, .. } = self.load[cur]
                            && self.blocks[cur].is_some_and(|b| b <= self.now)
                        {
                            self.blocks[cur] = None;
                            self.s.sleep(cur);
                            self.wakes[cur] = Some(self.now + sleep);
                        }
                        self.schedule(cpu);
                    }
                }
                let next = self
                    .until
                    .iter()
                    .flatten()
                    .chain(self.wakes.iter().flatten())
                    .copied()
                    .filter(|&t| t > self.now)
                    .min()
                    .unwrap_or(end);
                // Anything due now (a kick) is handled on the next loop.
                if self.until.iter().flatten().any(|&u| u <= self.now) {
                    continue;
                }
                self.now = next.min(end);
            }
        }

        fn share(&self, id: Id, over: u64) -> f64 {
            self.s.runtime(id, self.now) as f64 / over as f64
        }
    }

    fn close(got: f64, want: f64, tolerance: f64) -> bool {
        (got - want).abs() <= want * tolerance
    }

    #[test]
    fn weights_1_1_2_4_on_two_cpus_get_those_shares() {
        let mut sim = Sim::new(2);
        let weights = [256, 256, 512, 1024];
        let ids: Vec<Id> = (0..4)
            .map(|d| {
                sim.s.set_params(d as u16, weights[d], 0);
                sim.add(d as u16, Load::Busy, CpuMask::all())
            })
            .collect();
        let t = 20_000_000_000;
        sim.run_until(t);
        // 2 CPUs in the ratio 1:1:2:4.
        let want = [0.25, 0.25, 0.5, 1.0];
        for (i, id) in ids.iter().enumerate() {
            let got = sim.share(*id, t);
            assert!(close(got, want[i], 0.05), "domain {i}: {got:.3} CPUs, want {}", want[i]);
        }
    }

    #[test]
    fn equal_weights_share_equally_and_use_every_cpu() {
        let mut sim = Sim::new(2);
        let ids: Vec<Id> = (0..3).map(|d| sim.add(d, Load::Busy, CpuMask::all())).collect();
        let t = 10_000_000_000;
        sim.run_until(t);
        let total: f64 = ids.iter().map(|id| sim.share(*id, t)).sum();
        assert!(close(total, 2.0, 0.01), "both CPUs busy: {total}");
        for id in ids {
            assert!(close(sim.share(id, t), 2.0 / 3.0, 0.05), "{}", sim.share(id, t));
        }
    }

    #[test]
    fn a_cap_holds_a_domain_to_its_share_even_on_idle_cpus() {
        let mut sim = Sim::new(2);
        sim.s.set_params(0, 256, 25);
        let capped = sim.add(0, Load::Busy, CpuMask::all());
        let t = 10_000_000_000;
        sim.run_until(t);
        assert!(close(sim.share(capped, t), 0.25, 0.05), "alone: {}", sim.share(capped, t));

        // Against a busy uncapped domain with a far lower weight.
        let mut sim = Sim::new(1);
        sim.s.set_params(0, 4096, 40);
        sim.s.set_params(1, 16, 0);
        let capped = sim.add(0, Load::Busy, CpuMask::all());
        let other = sim.add(1, Load::Busy, CpuMask::all());
        sim.run_until(t);
        assert!(close(sim.share(capped, t), 0.40, 0.05), "contended: {}", sim.share(capped, t));
        assert!(close(sim.share(other, t), 0.60, 0.05), "the rest: {}", sim.share(other, t));
    }

    #[test]
    fn a_pinned_entity_never_runs_elsewhere() {
        let mut sim = Sim::new(3);
        let pinned = sim.add(0, Load::Busy, CpuMask::single(1));
        let free: Vec<Id> = (1..5).map(|d| sim.add(d, Load::Busy, CpuMask::all())).collect();
        sim.run_until(5_000_000_000);
        assert_eq!(sim.ran_on[pinned], CpuMask::single(1));
        assert_eq!(sim.s.ran_on(pinned), CpuMask::single(1), "the policy's own record agrees");
        assert!(free.iter().any(|id| sim.ran_on[*id].count() > 1), "the others move around");
        assert!(sim.share(pinned, 5_000_000_000) > 0.3);
    }

    #[test]
    fn two_entities_of_one_domain_run_at_once() {
        let mut sim = Sim::new(2);
        let a = sim.add(0, Load::Busy, CpuMask::all());
        let b = sim.add(0, Load::Busy, CpuMask::all());
        sim.run_until(1_000_000_000);
        assert!(close(sim.share(a, 1_000_000_000), 1.0, 0.02));
        assert!(close(sim.share(b, 1_000_000_000), 1.0, 0.02));
    }

    #[test]
    fn a_woken_entity_is_boosted_ahead_of_busy_ones() {
        let mut s = Credit::new();
        s.add_cpu(0);
        s.add(0, 0, CpuMask::all());
        s.add(1, 1, CpuMask::all());
        s.wake(0);
        let p = s.schedule(0, 0);
        assert_eq!(p.next, Some(0));
        assert_eq!(p.until, Some(SLICE_NS));
        // Entity 1 wakes while 0 runs UNDER: boosted, so CPU 0 is kicked.
        let p = s.schedule(0, 1_000_000);
        assert_eq!(p.next, Some(0), "nothing else yet");
        let k = s.wake(1);
        assert_eq!(k, CpuMask::single(0));
        assert_eq!(s.prio(1), Some(Prio::Boost));
        let p = s.schedule(0, 2_000_000);
        assert_eq!(p.next, Some(1));
        // After its slice it is an ordinary UNDER or OVER entity.
        let p = s.schedule(0, 2_000_000 + SLICE_NS);
        assert_ne!(s.prio(1), Some(Prio::Boost));
        assert_eq!(p.next, Some(0), "round-robin");
    }

    #[test]
    fn an_idle_cpu_takes_queued_work() {
        let mut s = Credit::new();
        s.add_cpu(0);
        s.add_cpu(1);
        for id in 0..2 {
            s.add(id, id as u16, CpuMask::all());
        }
        // Both wake while CPU 0 is busy with entity 0 and CPU 1 sleeps.
        s.wake(0);
        assert_eq!(s.schedule(0, 0).next, Some(0));
        let k = s.wake(1);
        assert_eq!(k, CpuMask::single(1), "goes to the idle CPU");
        assert_eq!(s.schedule(1, 0).next, Some(1));
        // Entity 0 preempted by a third on CPU 0; CPU 1 free again.
        s.add(2, 2, CpuMask::all());
        s.sleep(1);
        assert_eq!(s.schedule(1, 10).next, None);
        s.wake(2);
        let p = s.schedule(0, 20);
        assert!(p.next.is_some());
        assert!(p.kicks.contains(1), "the queued one can go to idle CPU 1: {:?}", p.kicks);
        assert!(s.schedule(1, 20).next.is_some());
    }

    #[test]
    fn blocked_entities_free_the_cpu_and_come_back() {
        let mut sim = Sim::new(1);
        let busy = sim.add(0, Load::Busy, CpuMask::all());
        let io = sim.add(1, Load::Duty { run: 1_000_000, sleep: 9_000_000 }, CpuMask::all());
        let t = 5_000_000_000;
        sim.run_until(t);
        // The I/O-like entity wants 10% and gets it; the busy one the rest.
        assert!(close(sim.share(io, t), 0.10, 0.10), "{}", sim.share(io, t));
        assert!(close(sim.share(busy, t), 0.90, 0.05), "{}", sim.share(busy, t));
    }

    #[test]
    fn removal_and_unknown_ids_are_harmless() {
        let mut s = Credit::new();
        s.add_cpu(0);
        s.add(3, 7, CpuMask::all());
        s.wake(3);
        assert_eq!(s.schedule(0, 0).next, Some(3));
        s.remove(3);
        assert_eq!(s.current(0), None);
        assert_eq!(s.schedule(0, 5).next, None);
        assert_eq!(s.wake(42), CpuMask::empty());
        s.sleep(42);
        assert_eq!(s.runtime(42, 0), 0);
        // A CPU that is not online schedules nothing.
        assert_eq!(s.schedule(9, 0).next, None);
    }

    #[test]
    fn moving_affinity_moves_the_entity() {
        let mut s = Credit::new();
        s.add_cpu(0);
        s.add_cpu(1);
        s.add(0, 0, CpuMask::all());
        s.wake(0);
        assert_eq!(s.schedule(0, 0).next, Some(0));
        let k = s.set_affinity(0, CpuMask::single(1));
        assert_eq!(k, CpuMask::single(0), "its CPU must let it go");
        let p = s.schedule(0, 100);
        assert_eq!(p.next, None);
        assert!(p.kicks.contains(1));
        assert_eq!(s.schedule(1, 100).next, Some(0));
    }
}
