//! Event channels: each domain's port table (what every port is bound
//! to) and the port operations of the ABI the domain uses (Xen's
//! `evtchn_port_ops`): the 2-level ABI, the delivery rules on the pending
//! and mask bitmaps and the per-vCPU selector words, until the guest
//! switches to the FIFO ABI (`event::fifo`) with EVTCHNOP_init_control.
//! Binding, sending, closing and unmasking are one code path for both;
//! raising, clearing, unmasking and testing a port ask the table, which
//! knows the domain's ABI.
//!
//! This is the logic alone: tables are plain data, the bitmaps are reached
//! through [`EventWords`], the FIFO pages through `fifo::GuestPage`, and an
//! operation that concerns two domains takes both tables (the caller locks
//! them). `event::deliver` and `event::ops` wire it to real domains; the
//! tests below run it on the host.

use super::fifo::{self, Fifo, FifoRaise, GuestPage, PortQueue};
use alloc::boxed::Box;
use alloc::vec::Vec;
use xen_abi::errno::*;
use xen_abi::event_channel::{self as ev, EVTCHN_2L_NR_CHANNELS, EVTCHN_FIFO_NR_CHANNELS, NR_VIRQS};

/// Who consumes a port's events besides its domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// The domain's own driver.
    Guest,
    /// The hypervisor's console backend drains the domain's console ring
    /// when the domain sends on this (unbound) port, until a backend domain
    /// binds it.
    HvConsole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Free,
    /// Port 0: never handed out.
    Reserved,
    /// Waiting for `remote` to bind to it.
    Unbound {
        remote: u16,
    },
    Interdomain {
        remote_dom: u16,
        remote_port: u32,
    },
    Virq(u32),
    Ipi,
    /// A physical IRQ of the hardware domain (`irq::pirq`).
    Pirq(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    pub state: State,
    /// The vCPU whose selector and upcall flag the port raises.
    pub notify_vcpu: u32,
    pub consumer: Consumer,
    /// The FIFO ABI's priority and last queue (kept when the port is
    /// closed: its word may still be on that queue).
    pub fifo: PortQueue,
}

const FREE: Channel = Channel { state: State::Free, notify_vcpu: 0, consumer: Consumer::Guest, fifo: PortQueue::NEW };

/// What a send on a port does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendTarget {
    /// Raise `port` of domain `dom` (an interdomain channel's other end).
    Remote { dom: u16, port: u32 },
    /// Raise this domain's own `port` (an IPI).
    Local { port: u32, vcpu: u32 },
    /// The hypervisor's console backend has work.
    Console,
    /// Nothing: an unbound port swallows sends (Xen).
    Nothing,
}

/// Status as EVTCHNOP_status reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub status: u32,
    pub vcpu: u32,
    pub u: [u8; 8],
}

/// Ports a table grows by (Xen's bucket).
const GROW: usize = 64;

/// One domain's ports.
#[derive(Debug)]
pub struct Table {
    chans: Vec<Channel>,
    nr_vcpus: u32,
    /// Port bound to each per-vCPU VIRQ, per vCPU (0: none); the global
    /// and per-domain VIRQs use vCPU 0's row.
    virq_ports: Vec<[u32; NR_VIRQS as usize]>,
    /// Ports the domain may have (xl's `max_event_channels`), whatever the
    /// ABI allows.
    limit: u32,
    /// The FIFO ABI's state once the guest switched to it (Xen's
    /// `d->evtchn_fifo`); the 2-level ABI until then.
    fifo: Option<Box<Fifo>>,
}

/// What raising a port did, for the caller to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Raised {
    /// The vCPU whose upcall went from 0 to 1: kick it.
    pub notify: Option<u32>,
    /// The port went from not pending to pending: wake its pollers.
    pub newly_pending: bool,
}

/// Whether a VIRQ is global (raised by the hypervisor for the one
/// domain that handles it, bound on vCPU 0) rather than per vCPU (Xen's
/// `virq_is_global`).
pub fn virq_is_global(virq: u32) -> bool {
    !matches!(virq, ev::VIRQ_TIMER | ev::VIRQ_DEBUG | ev::VIRQ_XENOPROF | ev::VIRQ_XENPMU)
}

/// An event-channel operation, its domains resolved (no DOMID_SELF) and
/// known to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `permitted`: the caller may act on `dom` (checked after the port is
    /// allocated, as Xen does).
    AllocUnbound {
        dom: u16,
        remote: u16,
        permitted: bool,
    },
    BindInterdomain {
        remote_dom: u16,
        remote_port: u32,
    },
    BindVirq {
        virq: u32,
        vcpu: u32,
    },
    BindIpi {
        vcpu: u32,
    },
    BindPirq {
        pirq: u32,
    },
    Close {
        port: u32,
    },
    Send {
        port: u32,
    },
    Status {
        dom: u16,
        port: u32,
    },
    Unmask {
        port: u32,
    },
    BindVcpu {
        port: u32,
        vcpu: u32,
    },
    Reset {
        dom: u16,
    },
    /// EVTCHNOP_init_control: the caller's vCPU `vcpu` gets its FIFO
    /// control block at `offset` of its frame `gfn`.
    InitControl {
        gfn: u64,
        offset: u32,
        vcpu: u32,
    },
    ExpandArray {
        gfn: u64,
    },
    SetPriority {
        port: u32,
        priority: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Done,
    Port(u32),
    Status(Status),
}

impl Table {
    pub fn new(nr_vcpus: u32) -> Table {
        Table::with_limit(nr_vcpus, EVTCHN_2L_NR_CHANNELS)
    }

    /// A table of at most `limit` ports (xl's `max_event_channels`), and
    /// at most what the ABI in use can number.
    pub fn with_limit(nr_vcpus: u32, limit: u32) -> Table {
        // The first bucket of ports exists from the start (Xen): ports
        // 1-63 are valid, free ports.
        let mut chans = alloc::vec![FREE; GROW.min(limit.max(1) as usize)];
        chans[0] = Channel { state: State::Reserved, ..FREE };
        Table { chans, nr_vcpus, virq_ports: alloc::vec![[0; NR_VIRQS as usize]; nr_vcpus as usize], limit, fifo: None }
    }

    /// Ports the domain may have now (Xen's `max_evtchns`, under the limit).
    fn max_ports(&self) -> u32 {
        let abi = if self.fifo.is_some() { EVTCHN_FIFO_NR_CHANNELS } else { EVTCHN_2L_NR_CHANNELS };
        self.limit.min(abi)
    }

    /// Whether the domain uses the FIFO ABI.
    pub fn is_fifo(&self) -> bool {
        self.fifo.is_some()
    }

    /// Whether `port` exists in this table (Xen's `port_is_valid`).
    pub fn valid(&self, port: u32) -> bool {
        (port as usize) < self.chans.len()
    }

    pub fn get(&self, port: u32) -> Option<&Channel> {
        self.chans.get(port as usize)
    }

    /// Whether `port` is bound to something (SCHEDOP_poll's "usable").
    pub fn in_use(&self, port: u32) -> bool {
        self.get(port).is_some_and(|c| !matches!(c.state, State::Free | State::Reserved))
    }

    /// The lowest free port, growing the table if needed (-ENOSPC when it
    /// is full). A closed port still on a FIFO queue is skipped (Xen's
    /// `evtchn_is_busy`).
    fn free_port(&mut self) -> Result<u32, i64> {
        let fifo = self.fifo.as_deref();
        let usable = |(p, c): &(usize, &Channel)| c.state == State::Free && !fifo.is_some_and(|f| f.is_busy(*p as u32));
        if let Some((p, _)) = self.chans.iter().enumerate().find(usable) {
            return Ok(p as u32);
        }
        let (n, max) = (self.chans.len(), self.max_ports() as usize);
        if n >= max {
            return Err(-ENOSPC);
        }
        self.chans.resize((n + GROW).min(max), FREE);
        Ok(n as u32)
    }

    /// Claims a specific port (static channels at boot): -EINVAL beyond
    /// the ABI's limit, -EEXIST if in use.
    pub fn claim(&mut self, port: u32) -> Result<(), i64> {
        let max = self.max_ports();
        if port == 0 || port >= max {
            return Err(-EINVAL);
        }
        if self.chans.len() <= port as usize {
            let grown = (port as usize + 1).next_multiple_of(GROW).min(max as usize);
            self.chans.resize(grown, FREE);
        }
        if self.chans[port as usize].state != State::Free {
            return Err(-EEXIST);
        }
        Ok(())
    }

    /// Binds free `port` (Xen's `evtchn_port_init`: the default FIFO
    /// priority; the last queue stays, as the word may still be on it).
    fn set(&mut self, port: u32, c: Channel) {
        let last = self.chans[port as usize].fifo;
        self.chans[port as usize] = Channel { fifo: PortQueue { priority: PortQueue::NEW.priority, ..last }, ..c };
    }

    /// EVTCHNOP_alloc_unbound's local part: a port `remote` may bind to.
    pub fn alloc_unbound(&mut self, remote: u16) -> Result<u32, i64> {
        let port = self.free_port()?;
        self.set(port, Channel { state: State::Unbound { remote }, ..FREE });
        Ok(port)
    }

    /// An unbound port whose sends the hypervisor's console consumes.
    pub fn alloc_console(&mut self, remote: u16) -> Result<u32, i64> {
        let port = self.free_port()?;
        self.set(
            port,
            Channel { state: State::Unbound { remote }, notify_vcpu: 0, consumer: Consumer::HvConsole, ..FREE },
        );
        Ok(port)
    }

    /// EVTCHNOP_bind_virq.
    pub fn bind_virq(&mut self, virq: u32, vcpu: u32) -> Result<u32, i64> {
        if virq >= NR_VIRQS {
            return Err(-EINVAL);
        }
        if virq_is_global(virq) && vcpu != 0 {
            return Err(-EINVAL);
        }
        if vcpu >= self.nr_vcpus {
            return Err(-ENOENT);
        }
        if self.virq_ports[vcpu as usize][virq as usize] != 0 {
            return Err(-EEXIST);
        }
        let port = self.free_port()?;
        self.set(port, Channel { state: State::Virq(virq), notify_vcpu: vcpu, consumer: Consumer::Guest, ..FREE });
        self.virq_ports[vcpu as usize][virq as usize] = port;
        Ok(port)
    }

    /// The port VIRQ `virq` of `vcpu` raises, if bound.
    pub fn virq_port(&self, vcpu: u32, virq: u32) -> Option<(u32, u32)> {
        let row = if virq_is_global(virq) { 0 } else { vcpu };
        let port = *self.virq_ports.get(row as usize)?.get(virq as usize)?;
        let c = self.get(port)?;
        (port != 0).then_some((port, c.notify_vcpu))
    }

    /// EVTCHNOP_bind_ipi.
    pub fn bind_ipi(&mut self, vcpu: u32) -> Result<u32, i64> {
        if vcpu >= self.nr_vcpus {
            return Err(-ENOENT);
        }
        let port = self.free_port()?;
        self.set(port, Channel { state: State::Ipi, notify_vcpu: vcpu, consumer: Consumer::Guest, ..FREE });
        Ok(port)
    }

    /// EVTCHNOP_bind_pirq: a port for `pirq`, notifying vCPU 0 (the caller
    /// has checked the pirq is mapped and not bound elsewhere).
    pub fn bind_pirq(&mut self, pirq: u32) -> Result<u32, i64> {
        let port = self.free_port()?;
        self.set(port, Channel { state: State::Pirq(pirq), notify_vcpu: 0, consumer: Consumer::Guest, ..FREE });
        Ok(port)
    }

    /// EVTCHNOP_bind_vcpu: which vCPU a port notifies. Per-vCPU VIRQs and
    /// IPIs keep theirs (-EINVAL).
    pub fn bind_vcpu(&mut self, port: u32, vcpu: u32) -> Result<(), i64> {
        if vcpu >= self.nr_vcpus {
            return Err(-ENOENT);
        }
        let c = self.chans.get_mut(port as usize).ok_or(-EINVAL)?;
        match c.state {
            State::Virq(v) if !virq_is_global(v) => return Err(-EINVAL),
            State::Virq(v) => {
                // A global VIRQ moves with its port (Xen keeps it on the
                // row of vCPU 0 and changes only the notified vCPU).
                let _ = v;
            }
            State::Unbound { .. } | State::Interdomain { .. } | State::Pirq(_) => {}
            _ => return Err(-EINVAL),
        }
        c.notify_vcpu = vcpu;
        Ok(())
    }

    /// What a send on `port` does (-EINVAL for a port that is not bound
    /// to something a send can reach).
    pub fn send_target(&self, port: u32) -> Result<SendTarget, i64> {
        let c = self.get(port).ok_or(-EINVAL)?;
        match c.state {
            State::Interdomain { remote_dom, remote_port } => {
                Ok(SendTarget::Remote { dom: remote_dom, port: remote_port })
            }
            State::Ipi => Ok(SendTarget::Local { port, vcpu: c.notify_vcpu }),
            State::Unbound { .. } if c.consumer == Consumer::HvConsole => Ok(SendTarget::Console),
            State::Unbound { .. } => Ok(SendTarget::Nothing),
            _ => Err(-EINVAL),
        }
    }

    /// EVTCHNOP_status for a port of this table.
    pub fn status(&self, port: u32) -> Result<Status, i64> {
        let c = self.get(port).ok_or(-EINVAL)?;
        let mut u = [0u8; 8];
        let status = match c.state {
            State::Free | State::Reserved => ev::EVTCHNSTAT_CLOSED,
            State::Unbound { remote } => {
                u[..2].copy_from_slice(&remote.to_le_bytes());
                ev::EVTCHNSTAT_UNBOUND
            }
            State::Interdomain { remote_dom, remote_port } => {
                u[..2].copy_from_slice(&remote_dom.to_le_bytes());
                u[4..].copy_from_slice(&remote_port.to_le_bytes());
                ev::EVTCHNSTAT_INTERDOMAIN
            }
            State::Virq(v) => {
                u[..4].copy_from_slice(&v.to_le_bytes());
                ev::EVTCHNSTAT_VIRQ
            }
            State::Ipi => ev::EVTCHNSTAT_IPI,
            State::Pirq(p) => {
                u[..4].copy_from_slice(&p.to_le_bytes());
                ev::EVTCHNSTAT_PIRQ
            }
        };
        Ok(Status { status, vcpu: c.notify_vcpu, u })
    }

    /// Closes `port` here, clearing its pending bit (never its mask) under
    /// the same lock as the state change, so that a port bound again at
    /// once cannot lose its first event. Returns the other end of an
    /// interdomain channel, which the caller turns back into an unbound
    /// port ([`Table::unbind_remote_end`]).
    pub fn close(&mut self, w: &impl EventWords, port: u32) -> Result<Option<(u16, u32)>, i64> {
        let c = *self.get(port).ok_or(-EINVAL)?;
        let other = match c.state {
            State::Free | State::Reserved => return Err(-EINVAL),
            State::Interdomain { remote_dom, remote_port } => Some((remote_dom, remote_port)),
            State::Virq(v) => {
                let row = if virq_is_global(v) { 0 } else { c.notify_vcpu };
                if let Some(r) = self.virq_ports.get_mut(row as usize) {
                    r[v as usize] = 0;
                }
                None
            }
            State::Unbound { .. } | State::Ipi | State::Pirq(_) => None,
        };
        self.clear_pending(w, port);
        let last = PortQueue { saved_pending: false, ..c.fifo };
        self.chans[port as usize] = Channel { fifo: last, ..FREE };
        Ok(other)
    }

    /// The far end of a closed interdomain channel: if `port` is still
    /// bound to (`dom`, `dom_port`), it waits for `dom` again (Xen).
    pub fn unbind_remote_end(&mut self, port: u32, dom: u16, dom_port: u32) {
        if let Some(c) = self.chans.get_mut(port as usize)
            && c.state == (State::Interdomain { remote_dom: dom, remote_port: dom_port })
        {
            c.state = State::Unbound { remote: dom };
        }
    }

    /// Every port in use, for EVTCHNOP_reset and domain destruction.
    pub fn bound_ports(&self) -> impl Iterator<Item = u32> + '_ {
        self.chans
            .iter()
            .enumerate()
            .filter(|(_, c)| !matches!(c.state, State::Free | State::Reserved))
            .map(|(p, _)| p as u32)
    }
}

/// Checks for EVTCHNOP_bind_interdomain against the remote table:
/// `remote_port` must be unbound and waiting for `local_dom`.
pub fn check_bindable(remote: &Table, remote_port: u32, local_dom: u16) -> Result<(), i64> {
    match remote.get(remote_port).map(|c| c.state) {
        Some(State::Unbound { remote }) if remote == local_dom => Ok(()),
        _ => Err(-EINVAL),
    }
}

/// EVTCHNOP_bind_interdomain between two tables (`local` and `remote` of
/// different domains). Returns the local port.
pub fn bind_interdomain(
    local: &mut Table,
    local_dom: u16,
    remote: &mut Table,
    remote_dom: u16,
    remote_port: u32,
) -> Result<u32, i64> {
    check_bindable(remote, remote_port, local_dom)?;
    let port = local.free_port()?;
    local.set(port, FREE);
    link(local, port, remote_dom, remote_port);
    link(remote, remote_port, local_dom, port);
    Ok(port)
}

/// The same within one domain (a loopback channel).
pub fn bind_loopback(table: &mut Table, dom: u16, remote_port: u32) -> Result<u32, i64> {
    check_bindable(table, remote_port, dom)?;
    let port = table.free_port()?;
    table.set(port, FREE);
    link(table, port, dom, remote_port);
    link(table, remote_port, dom, port);
    Ok(port)
}

fn link(t: &mut Table, port: u32, dom: u16, dom_port: u32) {
    let c = &mut t.chans[port as usize];
    c.state = State::Interdomain { remote_dom: dom, remote_port: dom_port };
    // A backend domain binding the console port takes the ring over.
    c.consumer = Consumer::Guest;
}

/// Binds two claimed ports of different domains to each other (static
/// channels at boot).
pub fn bind_static(a: &mut Table, a_dom: u16, a_port: u32, b: &mut Table, b_dom: u16, b_port: u32) -> Result<(), i64> {
    a.claim(a_port)?;
    b.claim(b_port)?;
    a.set(a_port, FREE);
    b.set(b_port, FREE);
    link(a, a_port, b_dom, b_port);
    link(b, b_port, a_dom, a_port);
    Ok(())
}

/// The 2-level bitmaps of one domain as delivery sees them: shared_info's
/// pending and mask bits and each vCPU's selector and upcall flag, all
/// changed with atomic operations (the guest changes them concurrently).
pub trait EventWords {
    /// Sets pending bit `port`, returning its old value.
    fn test_and_set_pending(&self, port: u32) -> bool;
    fn test_pending(&self, port: u32) -> bool;
    fn clear_pending(&self, port: u32);
    fn test_mask(&self, port: u32) -> bool;
    /// Clears mask bit `port`, returning its old value.
    fn test_and_clear_mask(&self, port: u32) -> bool;
    /// Sets selector bit `word` of `vcpu`, returning its old value (true
    /// if the vCPU has no vcpu_info, so that nothing more is done).
    fn test_and_set_selector(&self, vcpu: u32, word: u32) -> bool;
    /// Sets `evtchn_upcall_pending` of `vcpu`, returning its old value.
    fn test_and_set_upcall(&self, vcpu: u32) -> bool;
}

/// Marks `port` pending for `vcpu` (Xen's `evtchn_2l_set_pending`):
/// the pending bit, then unless the port is masked the selector bit, then
/// the upcall flag; the vCPU is to be notified if that went from 0 to 1.
/// Pollers of the port are the caller's business: a poll ends on the
/// pending bit alone, masked or not.
pub fn set_pending(w: &impl EventWords, port: u32, vcpu: u32) -> Raised {
    if w.test_and_set_pending(port) {
        return Raised::default();
    }
    let quiet = w.test_mask(port) || w.test_and_set_selector(vcpu, port / 64) || w.test_and_set_upcall(vcpu);
    Raised { notify: (!quiet).then_some(vcpu), newly_pending: true }
}

/// EVTCHNOP_unmask (Xen's `evtchn_2l_unmask`): a port that was masked
/// and is pending raises its selector and upcall now. Returns whether the
/// vCPU must be notified.
pub fn unmask(w: &impl EventWords, port: u32, vcpu: u32) -> bool {
    if w.test_and_clear_mask(port) && w.test_pending(port) && !w.test_and_set_selector(vcpu, port / 64) {
        return !w.test_and_set_upcall(vcpu);
    }
    false
}

/// The port operations of the ABI a domain uses (Xen's
/// `evtchn_port_ops`), and the FIFO ABI's own operations. Every one runs
/// with the table locked: the FIFO queues are changed only then.
impl Table {
    fn raised(w: &impl EventWords, r: FifoRaise) -> Raised {
        Raised { notify: r.ready.filter(|&v| !w.test_and_set_upcall(v)), newly_pending: r.newly_pending }
    }

    /// Raises `port` on the vCPU it notifies (Xen's
    /// `evtchn_port_set_pending`). A port the table does not have is
    /// ignored.
    pub fn raise(&mut self, w: &impl EventWords, port: u32) -> Raised {
        let Some(c) = self.chans.get_mut(port as usize) else { return Raised::default() };
        let vcpu = c.notify_vcpu;
        match self.fifo.as_deref_mut() {
            Some(f) => Self::raised(w, f.set_pending(port, vcpu, &mut c.fifo)),
            // The 2-level bitmaps have 4096 bits; a 2-level table has no
            // more ports.
            None if port < EVTCHN_2L_NR_CHANNELS => set_pending(w, port, vcpu),
            None => Raised::default(),
        }
    }

    fn clear_pending(&self, w: &impl EventWords, port: u32) {
        match self.fifo.as_deref() {
            Some(f) => f.clear_pending(port),
            None if port < EVTCHN_2L_NR_CHANNELS => w.clear_pending(port),
            None => {}
        }
    }

    /// Whether `port` is pending (SCHEDOP_poll).
    pub fn is_pending(&self, w: &impl EventWords, port: u32) -> bool {
        match self.fifo.as_deref() {
            Some(f) => f.is_pending(port),
            None => port < EVTCHN_2L_NR_CHANNELS && w.test_pending(port),
        }
    }

    /// EVTCHNOP_unmask: -EINVAL for a port the table does not have; a
    /// free or reserved port is left alone, mask and all (Xen). Returns
    /// the vCPU to kick, if any.
    pub fn unmask(&mut self, w: &impl EventWords, port: u32) -> Result<Option<u32>, i64> {
        let usable = self.in_use(port);
        let c = self.chans.get_mut(port as usize).ok_or(-EINVAL)?;
        if !usable {
            return Ok(None);
        }
        let vcpu = c.notify_vcpu;
        Ok(match self.fifo.as_deref_mut() {
            Some(f) => Self::raised(w, f.unmask(port, vcpu, &mut c.fifo)).notify,
            None => (port < EVTCHN_2L_NR_CHANNELS && unmask(w, port, vcpu)).then_some(vcpu),
        })
    }

    /// EVTCHNOP_init_control for `vcpu` (Xen's `evtchn_fifo_init_control`):
    /// the checks, then the control block `map` gives (it maps and
    /// references the guest's page, -EINVAL if that is not the domain's
    /// RAM), asked for only once nothing can fail after it. The first
    /// switches the domain to the FIFO ABI with an empty event array:
    /// every port gets the default priority, and those pending in the
    /// 2-level bitmap are raised again once their word exists (Xen's
    /// `setup_ports`). A vCPU's second control block is -EINVAL.
    pub fn init_control(
        &mut self,
        w: &impl EventWords,
        vcpu: u32,
        offset: u32,
        map: impl FnOnce() -> Result<GuestPage, i64>,
    ) -> Result<(), i64> {
        fifo::check_control(self.nr_vcpus, vcpu, offset)?;
        if let Some(f) = self.fifo.as_deref_mut() {
            if f.has_control(vcpu) {
                return Err(-EINVAL);
            }
            f.set_control(vcpu, map()?, offset);
            return Ok(());
        }
        let mut f = Box::new(Fifo::new(self.nr_vcpus));
        f.set_control(vcpu, map()?, offset);
        for (p, c) in self.chans.iter_mut().enumerate().skip(1) {
            let p = p as u32;
            c.fifo.priority = PortQueue::NEW.priority;
            c.fifo.saved_pending = p < EVTCHN_2L_NR_CHANNELS && w.test_pending(p);
        }
        self.fifo = Some(f);
        Ok(())
    }

    /// EVTCHNOP_expand_array (Xen's `evtchn_fifo_expand_array`): one more
    /// page of event words from `map` (-EOPNOTSUPP without the FIFO ABI,
    /// -ENOSPC past 2^17 ports). Ports raised while their word was missing
    /// are raised now; returns each such port and what raising it did.
    pub fn expand_array(
        &mut self,
        w: &impl EventWords,
        map: impl FnOnce() -> Result<GuestPage, i64>,
    ) -> Result<Vec<(u32, Raised)>, i64> {
        let f = self.fifo.as_deref_mut().ok_or(-EOPNOTSUPP)?;
        if f.array_full() {
            return Err(-ENOSPC);
        }
        let mut raised = Vec::new();
        for port in f.add_array_page(map()?) {
            let Some(c) = self.chans.get_mut(port as usize) else { break };
            if core::mem::take(&mut c.fifo.saved_pending) && !matches!(c.state, State::Free | State::Reserved) {
                raised.push((port, Self::raised(w, f.set_pending(port, c.notify_vcpu, &mut c.fifo))));
            }
        }
        Ok(raised)
    }

    /// EVTCHNOP_set_priority: -EINVAL for a port the table does not have,
    /// -ENOSYS under the 2-level ABI, -EACCES for a port bound to nothing,
    /// -EINVAL for a priority past 15. An event already queued stays on
    /// its queue; the next one goes to the new.
    pub fn set_priority(&mut self, port: u32, priority: u32) -> Result<(), i64> {
        let usable = self.in_use(port);
        let c = self.chans.get_mut(port as usize).ok_or(-EINVAL)?;
        if self.fifo.is_none() {
            return Err(-ENOSYS);
        }
        if !usable {
            return Err(-EACCES);
        }
        c.fifo.priority = fifo::check_priority(priority)?;
        Ok(())
    }

    /// The end of EVTCHNOP_reset, every port closed: back to the 2-level
    /// ABI (-EAGAIN if a port was bound meanwhile, as Xen). Returns the
    /// FIFO state, whose frames the caller lets go of.
    pub fn reset_abi(&mut self) -> Result<Option<Box<Fifo>>, i64> {
        if self.bound_ports().next().is_some() {
            return Err(-EAGAIN);
        }
        let f = self.fifo.take();
        // Every port is free: the 2-level ABI's 4096 are all there is.
        self.chans.truncate(EVTCHN_2L_NR_CHANNELS as usize);
        Ok(f)
    }

    /// The FIFO state of a dead domain, for the caller to let go of its
    /// frames.
    pub fn take_fifo(&mut self) -> Option<Box<Fifo>> {
        self.fifo.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;

    /// Bitmaps in plain memory.
    struct Words {
        pending: RefCell<[u64; 64]>,
        mask: RefCell<[u64; 64]>,
        sel: RefCell<Vec<u64>>,
        upcall: RefCell<Vec<bool>>,
    }

    impl Words {
        fn new(vcpus: usize) -> Words {
            Words {
                pending: RefCell::new([0; 64]),
                mask: RefCell::new([0; 64]),
                sel: RefCell::new(vec![0; vcpus]),
                upcall: RefCell::new(vec![false; vcpus]),
            }
        }
    }

    fn bit(port: u32) -> (usize, u64) {
        ((port / 64) as usize, 1 << (port % 64))
    }

    impl Words {
        fn set_mask(&self, port: u32) {
            let (i, b) = bit(port);
            self.mask.borrow_mut()[i] |= b;
        }
    }

    impl EventWords for Words {
        fn test_and_set_pending(&self, port: u32) -> bool {
            let (i, b) = bit(port);
            let old = self.pending.borrow()[i] & b != 0;
            self.pending.borrow_mut()[i] |= b;
            old
        }
        fn test_pending(&self, port: u32) -> bool {
            let (i, b) = bit(port);
            self.pending.borrow()[i] & b != 0
        }
        fn clear_pending(&self, port: u32) {
            let (i, b) = bit(port);
            self.pending.borrow_mut()[i] &= !b;
        }
        fn test_mask(&self, port: u32) -> bool {
            let (i, b) = bit(port);
            self.mask.borrow()[i] & b != 0
        }
        fn test_and_clear_mask(&self, port: u32) -> bool {
            let (i, b) = bit(port);
            let old = self.mask.borrow()[i] & b != 0;
            self.mask.borrow_mut()[i] &= !b;
            old
        }
        fn test_and_set_selector(&self, vcpu: u32, word: u32) -> bool {
            let mut s = self.sel.borrow_mut();
            let old = s[vcpu as usize] & 1 << word != 0;
            s[vcpu as usize] |= 1 << word;
            old
        }
        fn test_and_set_upcall(&self, vcpu: u32) -> bool {
            let mut u = self.upcall.borrow_mut();
            core::mem::replace(&mut u[vcpu as usize], true)
        }
    }

    #[test]
    fn ports_start_at_one_and_reuse_the_lowest_free() {
        let mut t = Table::new(2);
        assert_eq!(t.status(0).unwrap().status, ev::EVTCHNSTAT_CLOSED);
        assert_eq!(t.close(&Words::new(4), 0), Err(-EINVAL), "port 0 is reserved");
        assert_eq!(t.alloc_unbound(3), Ok(1));
        assert_eq!(t.alloc_unbound(3), Ok(2));
        assert_eq!(t.bind_ipi(1), Ok(3));
        assert_eq!(t.close(&Words::new(4), 2), Ok(None));
        assert_eq!(t.alloc_unbound(4), Ok(2));
        assert_eq!(t.close(&Words::new(4), 2), Ok(None));
        assert_eq!(t.close(&Words::new(4), 2), Err(-EINVAL), "closing a closed port");
        assert_eq!(t.close(&Words::new(4), 5000), Err(-EINVAL));
        assert_eq!(t.status(5000), Err(-EINVAL));
        // The first 64 ports exist (closed) before any is allocated.
        assert_eq!(t.status(63).map(|s| s.status), Ok(ev::EVTCHNSTAT_CLOSED));
        assert_eq!(t.status(64), Err(-EINVAL));
        assert!(t.in_use(1) && !t.in_use(2) && !t.in_use(0));
    }

    #[test]
    fn a_full_table_says_enospc() {
        let mut t = Table::with_limit(1, 100);
        for p in 1..100 {
            assert_eq!(t.alloc_unbound(0), Ok(p));
        }
        assert_eq!(t.alloc_unbound(0), Err(-ENOSPC));
        assert_eq!(t.bind_ipi(0), Err(-ENOSPC));
        let mut full = Table::new(1);
        for _ in 1..4096 {
            full.alloc_unbound(0).unwrap();
        }
        assert_eq!(full.alloc_unbound(0), Err(-ENOSPC), "4096 ports in the 2-level ABI");
    }

    #[test]
    fn interdomain_bind_send_status_and_close() {
        let (mut a, mut b) = (Table::new(1), Table::new(2));
        let pa = a.alloc_unbound(2).unwrap();
        // Only the domain the port waits for may bind it.
        assert_eq!(bind_interdomain(&mut b, 3, &mut a, 1, pa), Err(-EINVAL));
        assert_eq!(bind_interdomain(&mut b, 2, &mut a, 1, 77), Err(-EINVAL));
        let pb = bind_interdomain(&mut b, 2, &mut a, 1, pa).unwrap();
        assert_eq!(a.send_target(pa), Ok(SendTarget::Remote { dom: 2, port: pb }));
        assert_eq!(b.send_target(pb), Ok(SendTarget::Remote { dom: 1, port: pa }));
        // Bound already: not bindable twice.
        assert_eq!(bind_interdomain(&mut b, 2, &mut a, 1, pa), Err(-EINVAL));
        let s = a.status(pa).unwrap();
        assert_eq!(s.status, ev::EVTCHNSTAT_INTERDOMAIN);
        assert_eq!(&s.u[..2], &2u16.to_le_bytes());
        assert_eq!(&s.u[4..], &pb.to_le_bytes());
        // Closing one end leaves the other waiting for the closer.
        assert_eq!(a.close(&Words::new(4), pa), Ok(Some((2, pb))));
        b.unbind_remote_end(pb, 1, pa);
        let s = b.status(pb).unwrap();
        assert_eq!((s.status, &s.u[..2]), (ev::EVTCHNSTAT_UNBOUND, &1u16.to_le_bytes()[..]));
        assert_eq!(b.send_target(pb), Ok(SendTarget::Nothing));
        assert_eq!(a.send_target(pa), Err(-EINVAL), "send on a closed port");
        // The other end was rebound meanwhile: it is left alone.
        let mut c = Table::new(1);
        let pc = c.alloc_unbound(9).unwrap();
        c.unbind_remote_end(pc, 1, pa);
        assert_eq!(c.get(pc).unwrap().state, State::Unbound { remote: 9 });
    }

    #[test]
    fn loopback_channels_link_two_ports_of_one_domain() {
        let mut t = Table::new(1);
        let p = t.alloc_unbound(5).unwrap();
        let q = bind_loopback(&mut t, 5, p).unwrap();
        assert_ne!(p, q);
        assert_eq!(t.send_target(q), Ok(SendTarget::Remote { dom: 5, port: p }));
        assert_eq!(t.send_target(p), Ok(SendTarget::Remote { dom: 5, port: q }));
    }

    #[test]
    fn virqs_are_bound_once_per_vcpu_and_by_kind() {
        let mut t = Table::new(2);
        let p0 = t.bind_virq(ev::VIRQ_TIMER, 0).unwrap();
        let p1 = t.bind_virq(ev::VIRQ_TIMER, 1).unwrap();
        assert_ne!(p0, p1);
        assert_eq!(t.bind_virq(ev::VIRQ_TIMER, 1), Err(-EEXIST));
        assert_eq!(t.bind_virq(ev::VIRQ_TIMER, 2), Err(-ENOENT));
        assert_eq!(t.bind_virq(NR_VIRQS, 0), Err(-EINVAL));
        // Global VIRQs only on vCPU 0.
        assert_eq!(t.bind_virq(ev::VIRQ_CONSOLE, 1), Err(-EINVAL));
        let pc = t.bind_virq(ev::VIRQ_CONSOLE, 0).unwrap();
        assert_eq!(t.virq_port(1, ev::VIRQ_TIMER), Some((p1, 1)));
        assert_eq!(t.virq_port(1, ev::VIRQ_CONSOLE), Some((pc, 0)));
        assert_eq!(t.send_target(p0), Err(-EINVAL), "VIRQ ports cannot be sent on");
        let s = t.status(p1).unwrap();
        assert_eq!((s.status, s.vcpu, &s.u[..4]), (ev::EVTCHNSTAT_VIRQ, 1, &0u32.to_le_bytes()[..]));
        // bind_vcpu: a global VIRQ moves, a per-vCPU one does not.
        assert_eq!(t.bind_vcpu(p1, 0), Err(-EINVAL));
        assert_eq!(t.bind_vcpu(pc, 1), Ok(()));
        assert_eq!(t.virq_port(0, ev::VIRQ_CONSOLE), Some((pc, 1)));
        // Closing frees the VIRQ for binding again.
        t.close(&Words::new(4), p1).unwrap();
        assert_eq!(t.virq_port(1, ev::VIRQ_TIMER), None);
        assert_eq!(t.bind_virq(ev::VIRQ_TIMER, 1), Ok(p1));
        t.close(&Words::new(4), pc).unwrap();
        assert_eq!(t.bind_virq(ev::VIRQ_CONSOLE, 0), Ok(pc));
    }

    #[test]
    fn ipis_and_bind_vcpu() {
        let mut t = Table::new(3);
        let p = t.bind_ipi(2).unwrap();
        assert_eq!(t.send_target(p), Ok(SendTarget::Local { port: p, vcpu: 2 }));
        assert_eq!(t.bind_vcpu(p, 1), Err(-EINVAL), "IPIs stay on their vCPU");
        let u = t.alloc_unbound(0).unwrap();
        assert_eq!(t.bind_vcpu(u, 2), Ok(()));
        assert_eq!(t.status(u).unwrap().vcpu, 2);
        assert_eq!(t.bind_vcpu(u, 3), Err(-ENOENT));
        assert_eq!(t.bind_vcpu(999, 0), Err(-EINVAL));
        assert_eq!(t.bind_ipi(3), Err(-ENOENT));
    }

    #[test]
    fn static_channels_claim_their_ports() {
        let (mut a, mut b) = (Table::new(1), Table::new(1));
        bind_static(&mut a, 1, 10, &mut b, 2, 200).unwrap();
        assert_eq!(a.send_target(10), Ok(SendTarget::Remote { dom: 2, port: 200 }));
        assert_eq!(b.send_target(200), Ok(SendTarget::Remote { dom: 1, port: 10 }));
        assert_eq!(a.claim(10), Err(-EEXIST));
        assert_eq!(a.claim(0), Err(-EINVAL));
        assert_eq!(a.claim(4096), Err(-EINVAL));
        // Dynamic ports fill the gaps below.
        assert_eq!(a.alloc_unbound(2), Ok(1));
    }

    #[test]
    fn the_console_port_is_the_hypervisors_until_bound() {
        let (mut d, mut dom0) = (Table::new(1), Table::new(1));
        let p = d.alloc_console(0).unwrap();
        assert_eq!(d.send_target(p), Ok(SendTarget::Console));
        let q = bind_interdomain(&mut dom0, 0, &mut d, 5, p).unwrap();
        assert_eq!(d.send_target(p), Ok(SendTarget::Remote { dom: 0, port: q }));
    }

    #[test]
    fn delivery_sets_pending_selector_and_upcall_once() {
        let w = Words::new(2);
        assert!(set_pending(&w, 70, 1).notify.is_some(), "first event notifies");
        assert!(w.test_pending(70));
        assert_eq!(w.sel.borrow()[1], 1 << 1);
        assert!(w.upcall.borrow()[1]);
        assert!(set_pending(&w, 70, 1).notify.is_none(), "already pending");
        assert!(set_pending(&w, 71, 1).notify.is_none(), "upcall already pending");
        // The guest consumed the upcall but not the selector word: no new
        // upcall for a port in the same word.
        w.upcall.borrow_mut()[1] = false;
        assert!(set_pending(&w, 72, 1).notify.is_none());
        w.sel.borrow_mut()[1] = 0;
        assert!(set_pending(&w, 73, 1).notify.is_some());
    }

    #[test]
    fn masked_ports_stay_quiet_until_unmasked() {
        let w = Words::new(1);
        w.set_mask(5);
        assert!(set_pending(&w, 5, 0).notify.is_none());
        assert!(w.test_pending(5), "pending even while masked");
        assert_eq!(w.sel.borrow()[0], 0);
        assert!(!w.upcall.borrow()[0]);
        assert!(unmask(&w, 5, 0), "unmasking a pending port raises the upcall");
        assert!(w.upcall.borrow()[0]);
        assert!(!unmask(&w, 5, 0), "not masked any more");
        // Unmasking a port that is not pending does nothing.
        let w = Words::new(1);
        w.set_mask(6);
        assert!(!unmask(&w, 6, 0));
        assert!(!w.test_mask(6));
        assert_eq!(w.sel.borrow()[0], 0);
    }

    // --- the FIFO ABI through the table ---------------------------------

    use crate::event::fifo::tests::{Page, guest_page, new_page};
    use core::sync::atomic::Ordering::SeqCst;
    use std::boxed::Box;
    use xen_abi::event_channel::{EVTCHN_FIFO_LINKED, EVTCHN_FIFO_MASKED, EVTCHN_FIFO_PENDING};

    const PENDING: u32 = 1 << EVTCHN_FIFO_PENDING;
    const LINKED: u32 = 1 << EVTCHN_FIFO_LINKED;

    /// A table switched to FIFO with vCPU 0's control block in `ctl` and
    /// one event array page, `array`.
    fn fifo_table(w: &Words, vcpus: u32, limit: u32, ctl: &Page, array: &Page) -> Table {
        let mut t = Table::with_limit(vcpus, limit);
        t.init_control(w, 0, 0, || Ok(guest_page(ctl, 1))).unwrap();
        t.expand_array(w, || Ok(guest_page(array, 2))).unwrap();
        t
    }

    fn no_map() -> Result<GuestPage, i64> {
        panic!("nothing may be mapped after a refusal")
    }

    #[test]
    fn init_control_refuses_before_it_maps_and_a_refused_map_leaves_two_level() {
        let w = Words::new(2);
        let mut t = Table::new(2);
        assert_eq!(t.init_control(&w, 2, 0, no_map), Err(-ENOENT));
        assert_eq!(t.init_control(&w, 0, 12, no_map), Err(-EINVAL));
        assert_eq!(t.init_control(&w, 0, 4032, no_map), Err(-EINVAL));
        assert_eq!(t.init_control(&w, 0, 0, || Err(-EINVAL)), Err(-EINVAL), "not the domain's RAM");
        assert!(!t.is_fifo());
        let p = t.bind_ipi(0).unwrap();
        assert_eq!(t.expand_array(&w, no_map), Err(-EOPNOTSUPP));
        assert_eq!(t.set_priority(p, 3), Err(-ENOSYS));
        assert_eq!(t.set_priority(4096, 3), Err(-EINVAL), "the port first");
        let ctl = new_page();
        assert_eq!(t.init_control(&w, 1, 4024, || Ok(guest_page(&ctl, 1))), Ok(()));
        assert!(t.is_fifo());
        assert_eq!(t.init_control(&w, 1, 0, no_map), Err(-EINVAL), "vCPU 1 has its block");
        let ctl0 = new_page();
        assert_eq!(t.init_control(&w, 0, 0, || Ok(guest_page(&ctl0, 3))), Ok(()), "vCPU 0's, later");
        let frames: Vec<u64> = t.take_fifo().unwrap().into_frames().map(|m| m.0).collect();
        assert_eq!(frames, [3, 1]);
    }

    #[test]
    fn switching_carries_pending_ports_over_until_their_words_exist() {
        let w = Words::new(2);
        let mut t = Table::new(2);
        let (ipi, other) = (t.bind_ipi(0).unwrap(), t.bind_ipi(1).unwrap());
        let quiet = t.alloc_unbound(0).unwrap();
        w.set_mask(ipi);
        assert_eq!(t.raise(&w, ipi), Raised { notify: None, newly_pending: true }, "2-level, masked");
        let ctl = new_page();
        t.init_control(&w, 0, 0, || Ok(guest_page(&ctl, 1))).unwrap();
        assert!(t.get(ipi).unwrap().fifo.saved_pending, "pending in the 2-level bitmap");
        assert!(!t.get(quiet).unwrap().fifo.saved_pending);
        assert_eq!(t.get(other).unwrap().fifo.priority, 7);
        // No event word yet: remembered, not pending, masked.
        assert_eq!(t.raise(&w, quiet), Raised::default());
        assert!(!t.is_pending(&w, quiet));
        assert_eq!(t.unmask(&w, quiet), Ok(None));
        // vCPU 1 has no control block: its events are dropped.
        assert_eq!(t.raise(&w, other), Raised::default());
        t.close(&w, quiet).unwrap();
        let array = new_page();
        let raised = t.expand_array(&w, || Ok(guest_page(&array, 2))).unwrap();
        // The closed port is not raised; vCPU 1's is, and dropped again.
        assert_eq!(raised, [(ipi, Raised { notify: Some(0), newly_pending: true }), (other, Raised::default())]);
        assert!(*w.upcall.borrow().first().unwrap());
        assert_eq!(array.0[ipi as usize].load(SeqCst), PENDING | LINKED);
        assert!(t.is_pending(&w, ipi));
        assert!(!t.get(ipi).unwrap().fifo.saved_pending);
    }

    #[test]
    fn fifo_ports_deliver_unmask_close_and_prioritise() {
        let w = Words::new(1);
        let (ctl, array) = (new_page(), new_page());
        let mut t = fifo_table(&w, 1, 4096, &ctl, &array);
        let p = t.bind_ipi(0).unwrap();
        assert_eq!(t.raise(&w, p), Raised { notify: Some(0), newly_pending: true });
        assert_eq!(t.raise(&w, p), Raised::default());
        assert_eq!(t.raise(&w, 5000), Raised::default(), "no such port");
        // The guest masks and acks; a new event stays unlinked.
        array.0[p as usize].store(1 << EVTCHN_FIFO_MASKED, SeqCst);
        w.upcall.borrow_mut()[0] = false;
        ctl.0[0].store(0, SeqCst);
        assert_eq!(t.raise(&w, p).notify, None);
        assert_eq!(t.unmask(&w, p), Ok(Some(0)));
        assert_eq!(t.unmask(&w, 4096), Err(-EINVAL));
        assert_eq!(t.unmask(&w, 60), Ok(None), "a free port");
        // Priorities: the port first, then the ABI, the state, the range.
        assert_eq!(t.set_priority(4096, 3), Err(-EINVAL));
        assert_eq!(t.set_priority(60, 3), Err(-EACCES));
        assert_eq!(t.set_priority(0, 3), Err(-EACCES));
        assert_eq!(t.set_priority(p, 16), Err(-EINVAL));
        assert_eq!(t.set_priority(p, 0), Ok(()));
        assert_eq!(t.get(p).unwrap().fifo.priority, 0);
        // Closing clears PENDING under the table; the word is still
        // linked, so the port is not handed out again until the guest
        // unlinked it.
        assert_eq!(t.close(&w, p), Ok(None));
        assert_eq!(array.0[p as usize].load(SeqCst), LINKED);
        let q = t.bind_ipi(0).unwrap();
        assert_ne!(q, p, "a busy port is skipped");
        array.0[p as usize].store(0, SeqCst);
        assert_eq!(t.bind_ipi(0), Ok(p));
        assert_eq!(t.get(p).unwrap().fifo.priority, 7, "a new binding has the default priority");
        drop(t);
    }

    #[test]
    fn close_clears_the_pending_bit_in_either_abi() {
        let w = Words::new(1);
        let mut t = Table::new(1);
        let p = t.bind_ipi(0).unwrap();
        t.raise(&w, p);
        assert!(t.is_pending(&w, p));
        t.close(&w, p).unwrap();
        assert!(!w.test_pending(p) && !t.is_pending(&w, p));
    }

    #[test]
    fn the_fifo_abi_numbers_more_ports_and_reset_returns_to_two_level() {
        let w = Words::new(1);
        let mut t = Table::with_limit(1, 5000);
        for _ in 1..4096 {
            t.alloc_unbound(0).unwrap();
        }
        assert_eq!(t.alloc_unbound(0), Err(-ENOSPC), "4096 under the 2-level ABI");
        let (ctl, array) = (new_page(), new_page());
        t.init_control(&w, 0, 0, || Ok(guest_page(&ctl, 1))).unwrap();
        t.expand_array(&w, || Ok(guest_page(&array, 2))).unwrap();
        for p in 4096..5000 {
            assert_eq!(t.alloc_unbound(0), Ok(p));
        }
        assert_eq!(t.alloc_unbound(0), Err(-ENOSPC), "the domain's limit");
        assert_eq!(t.raise(&w, 4500), Raised::default(), "no word for it yet");
        assert!(t.reset_abi().is_err_and(|e| e == -EAGAIN), "ports still bound");
        let ports: Vec<u32> = t.bound_ports().collect();
        for p in ports {
            t.close(&w, p).unwrap();
        }
        let f = t.reset_abi().unwrap().expect("the FIFO state");
        assert_eq!(f.into_frames().count(), 2);
        assert!(!t.is_fifo());
        assert_eq!(t.status(4500), Err(-EINVAL), "back to 4096 ports");
        assert_eq!(t.status(4095).map(|s| s.status), Ok(ev::EVTCHNSTAT_CLOSED));
        assert!(t.reset_abi().unwrap().is_none(), "2-level already");
    }

    #[test]
    fn the_event_array_stops_at_128_pages() {
        let w = Words::new(1);
        let (ctl, array) = (new_page(), new_page());
        let mut t = fifo_table(&w, 1, 4096, &ctl, &array);
        let pages: Vec<Box<Page>> = (1..128).map(|_| new_page()).collect();
        for (i, pg) in pages.iter().enumerate() {
            assert_eq!(t.expand_array(&w, || Ok(guest_page(pg, 10 + i as u64))), Ok(Vec::new()));
        }
        assert_eq!(t.expand_array(&w, no_map), Err(-ENOSPC));
        assert_eq!(t.expand_array(&w, || Err(-EINVAL)).err(), Some(-ENOSPC), "full is checked first");
        assert_eq!(t.take_fifo().unwrap().into_frames().count(), 129);
    }
}
