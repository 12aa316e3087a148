//! Event-channel operations between real domains (`hypercall::event_channel_op`
//! has read the arguments and resolved the domains): allocating, binding,
//! closing, sending and resetting ports, and the FIFO ABI's control blocks
//! and event array in the domain's own pages.
//!
//! Lock order: a domain's `evtchn` lock before its `inner` lock, never
//! after; two domains' `evtchn` locks lower domain id first. A port is
//! raised with its table locked; kicking the vCPU takes its local APIC's
//! and the scheduler's locks under it.

use crate::arch::x86_64::hvm::npt::P2mType;
use crate::domain::Domain;
use crate::domain::registry as domain;
use crate::domain::unit::{Unit, nothing_to_create};
use crate::event::deliver::Words;
use crate::event::fifo::{Fifo, GuestPage};
use crate::event::table::{self as evtchn, Reply, Request, SendTarget, Table};
use crate::memory::frame_ref::{frame_get, frame_put};
use crate::mm::addr::Gfn;
use crate::mm::phys::phys_to_virt;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use xen_abi::errno::*;

/// Locks two domains' port tables, lower id first.
fn lock_two<'a>(a: &'a Domain, b: &'a Domain) -> (spin::MutexGuard<'a, Table>, spin::MutexGuard<'a, Table>) {
    if a.id < b.id {
        let ga = a.evtchn.lock();
        (ga, b.evtchn.lock())
    } else {
        let gb = b.evtchn.lock();
        (a.evtchn.lock(), gb)
    }
}

/// One event-channel operation by domain `me` (`hypercall::event_channel_op`
/// has resolved and checked the domains).
pub fn evtchn_op(me: &Arc<Domain>, req: Request) -> Result<Reply, i64> {
    match req {
        Request::AllocUnbound { dom, remote, permitted } => {
            let d = domain::get(me, dom).ok_or(-ESRCH)?;
            let mut t = d.evtchn.lock();
            let port = t.alloc_unbound(remote)?;
            if !permitted {
                let _ = t.close(&Words(&d), port);
                return Err(-EPERM);
            }
            Ok(Reply::Port(port))
        }
        Request::BindInterdomain { remote_dom, remote_port } => {
            // Events sent to the unbound port may have been lost: the new
            // port starts pending (Xen).
            if remote_dom == me.id {
                let mut t = me.evtchn.lock();
                let port = evtchn::bind_loopback(&mut t, me.id, remote_port)?;
                me.raise_in(&mut t, port);
                Ok(Reply::Port(port))
            } else {
                let rd = domain::find(remote_dom).ok_or(-ESRCH)?;
                let (mut mine, mut theirs) = lock_two(me, &rd);
                let port = evtchn::bind_interdomain(&mut mine, me.id, &mut theirs, rd.id, remote_port)?;
                me.raise_in(&mut mine, port);
                Ok(Reply::Port(port))
            }
        }
        Request::BindVirq { virq, vcpu } => me.evtchn.lock().bind_virq(virq, vcpu).map(Reply::Port),
        Request::BindIpi { vcpu } => me.evtchn.lock().bind_ipi(vcpu).map(Reply::Port),
        Request::BindPirq { pirq } => crate::irq::deliver::bind_pirq(me, pirq).map(Reply::Port),
        Request::Close { port } => {
            close_port(me, port)?;
            Ok(Reply::Done)
        }
        Request::Send { port } => {
            send(me, port)?;
            Ok(Reply::Done)
        }
        Request::Status { dom, port } => {
            let d = domain::get(me, dom).ok_or(-ESRCH)?;
            let s = d.evtchn.lock().status(port)?;
            Ok(Reply::Status(s))
        }
        Request::Unmask { port } => {
            let mut t = me.evtchn.lock();
            if let Some(v) = t.unmask(&Words(me), port)? {
                me.kick_upcall(v);
            }
            Ok(Reply::Done)
        }
        Request::BindVcpu { port, vcpu } => me.evtchn.lock().bind_vcpu(port, vcpu).map(|_| Reply::Done),
        Request::Reset { .. } => {
            // Every port, the console's included: it is an ordinary port
            // to the guest (Xen's toolstack made it), so it goes too.
            let ports: Vec<u32> = me.evtchn.lock().bound_ports().collect();
            for p in ports {
                let _ = close_port(me, p);
            }
            // Back to the 2-level ABI (Xen: "if called with <dom> ==
            // DOMID_SELF and FIFO ABI was used").
            let fifo = me.evtchn.lock().reset_abi()?;
            release(fifo);
            Ok(Reply::Done)
        }
        Request::InitControl { gfn, offset, vcpu } => {
            let mut t = me.evtchn.lock();
            t.init_control(&Words(me), vcpu, offset, || map_guest_page(me, gfn))?;
            Ok(Reply::Done)
        }
        Request::ExpandArray { gfn } => {
            let mut t = me.evtchn.lock();
            for (port, r) in t.expand_array(&Words(me), || map_guest_page(me, gfn))? {
                if let Some(v) = r.notify {
                    me.kick_upcall(v);
                }
                if r.newly_pending {
                    me.wake_pollers(port);
                }
            }
            Ok(Reply::Done)
        }
        Request::SetPriority { port, priority } => me.evtchn.lock().set_priority(port, priority).map(|_| Reply::Done),
    }
}

/// A page of the domain's own RAM for the FIFO ABI, referenced while the
/// ABI holds it (so that ballooning it out cannot free it): -EINVAL for
/// any other frame (Xen's `map_guest_page`). The caller holds the
/// domain's port table.
fn map_guest_page(me: &Domain, gfn: u64) -> Result<GuestPage, i64> {
    let i = me.inner.lock();
    let Some((mfn, P2mType::Ram)) = i.p2m.as_ref().and_then(|p| p.lookup(Gfn(gfn))) else {
        return Err(-EINVAL);
    };
    let va = phys_to_virt(mfn.phys()).ok_or(-EINVAL)?;
    frame_get(mfn);
    // SAFETY: `va` is the direct map of RAM frame `mfn`, which stays
    // allocated while referenced; the reference goes only when the page
    // comes back from `Fifo::into_frames` (`release`).
    Ok(unsafe { GuestPage::new(mfn, va) })
}

/// Drops the references on a FIFO state's pages.
fn release(fifo: Option<Box<Fifo>>) {
    for mfn in fifo.into_iter().flat_map(|f| f.into_frames()) {
        frame_put(mfn);
    }
}

/// Closes `port` of `me`; the far end of an interdomain channel waits for
/// `me` again.
pub fn close_port(me: &Domain, port: u32) -> Result<(), i64> {
    // Xen clears the closed port's pending bit (never its mask), with the
    // port's state under the same lock.
    let (other, pirq) = {
        let mut t = me.evtchn.lock();
        let pirq = match t.get(port).map(|c| c.state) {
            Some(evtchn::State::Pirq(p)) => Some(p),
            _ => None,
        };
        (t.close(&Words(me), port)?, pirq)
    };
    if let Some(p) = pirq {
        crate::irq::deliver::unbind_pirq(me, p);
    }
    if let Some((rd, rport)) = other {
        if rd == me.id {
            me.evtchn.lock().unbind_remote_end(rport, me.id, port);
        } else if let Some(d) = domain::find(rd) {
            d.evtchn.lock().unbind_remote_end(rport, me.id, port);
        }
    }
    Ok(())
}

/// EVTCHNOP_send.
pub fn send(me: &Domain, port: u32) -> Result<(), i64> {
    let target = me.evtchn.lock().send_target(port)?;
    match target {
        SendTarget::Remote { dom, port: rport } => {
            let far;
            let d: &Domain = if dom == me.id {
                me
            } else {
                match domain::find(dom) {
                    Some(x) => {
                        far = x;
                        &far
                    }
                    None => return Ok(()),
                }
            };
            // The far end must still point back here (it may have been
            // closed and reused meanwhile).
            let mut t = d.evtchn.lock();
            if t.get(rport)
                .is_some_and(|c| c.state == (evtchn::State::Interdomain { remote_dom: me.id, remote_port: port }))
            {
                d.raise_in(&mut t, rport);
            }
        }
        SendTarget::Local { port, .. } => me.raise(port),
        SendTarget::Console => crate::console::ring::drain_console(me),
        SendTarget::Nothing => {}
    }
    Ok(())
}

/// A domain's channels live in its port table; a dead domain's are closed,
/// so that its peers see their ends unbound.
pub const UNIT: Unit<Domain> = Unit { name: "event channels", create: nothing_to_create, destroy: close_all_ports };

/// A dying domain's channels: every port closed, so that peers see their
/// ends unbound, and the FIFO ABI's pages let go of.
pub fn close_all_ports(me: &Domain) {
    let ports: Vec<u32> = me.evtchn.lock().bound_ports().collect();
    for p in ports {
        let _ = close_port(me, p);
    }
    let fifo = me.evtchn.lock().take_fifo();
    release(fifo);
}
