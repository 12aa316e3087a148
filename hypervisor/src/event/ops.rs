//! Event-channel operations between real domains (`hypercall::event_channel_op`
//! has read the arguments and resolved the domains): allocating, binding,
//! closing, sending and resetting ports.
//!
//! Lock order: a domain's `evtchn` lock before its `inner` lock, never
//! after; two domains' `evtchn` locks lower domain id first.

use crate::domain::Domain;
use crate::domain::registry as domain;
use crate::domain::unit::{Unit, nothing_to_create};
use crate::event::deliver::Words;
use crate::event::table::{self as evtchn, EventWords, Reply, Request, SendTarget, Table};
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
                let _ = t.close(port);
                return Err(-EPERM);
            }
            Ok(Reply::Port(port))
        }
        Request::BindInterdomain { remote_dom, remote_port } => {
            let port = if remote_dom == me.id {
                evtchn::bind_loopback(&mut me.evtchn.lock(), me.id, remote_port)?
            } else {
                let rd = domain::find(remote_dom).ok_or(-ESRCH)?;
                let (mut mine, mut theirs) = lock_two(me, &rd);
                evtchn::bind_interdomain(&mut mine, me.id, &mut theirs, rd.id, remote_port)?
            };
            // Events sent to the unbound port may have been lost: the new
            // port starts pending (Xen).
            let notify = me.evtchn.lock().get(port).map_or(0, |c| c.notify_vcpu);
            me.raise(port, notify);
            Ok(Reply::Port(port))
        }
        Request::BindVirq { virq, vcpu } => me.evtchn.lock().bind_virq(virq, vcpu).map(Reply::Port),
        Request::BindIpi { vcpu } => me.evtchn.lock().bind_ipi(vcpu).map(Reply::Port),
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
            let (vcpu, usable) = {
                let t = me.evtchn.lock();
                (t.get(port).ok_or(-EINVAL)?.notify_vcpu, t.in_use(port))
            };
            // A free or reserved port is left alone, mask bit and all (Xen).
            if usable && evtchn::unmask(&Words(me), port, vcpu) {
                me.kick_upcall(vcpu);
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
            Ok(Reply::Done)
        }
    }
}

/// Closes `port` of `me`; the far end of an interdomain channel waits for
/// `me` again.
pub fn close_port(me: &Domain, port: u32) -> Result<(), i64> {
    let other = me.evtchn.lock().close(port)?;
    // Xen clears the closed port's pending bit (never its mask).
    Words(me).clear_pending(port);
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
            let notify = {
                let t = d.evtchn.lock();
                match t.get(rport) {
                    Some(c) if c.state == (evtchn::State::Interdomain { remote_dom: me.id, remote_port: port }) => {
                        Some(c.notify_vcpu)
                    }
                    _ => None,
                }
            };
            if let Some(v) = notify {
                d.raise(rport, v);
            }
        }
        SendTarget::Local { port, vcpu } => me.raise(port, vcpu),
        SendTarget::Console => crate::console::ring::drain_console(me),
        SendTarget::Nothing => {}
    }
    Ok(())
}

/// A domain's channels live in its port table; a dead domain's are closed,
/// so that its peers see their ends unbound.
pub const UNIT: Unit<Domain> = Unit { name: "event channels", create: nothing_to_create, destroy: close_all_ports };

/// A dying domain's channels: every port closed, so that peers see their
/// ends unbound.
pub fn close_all_ports(me: &Domain) {
    let ports: Vec<u32> = me.evtchn.lock().bound_ports().collect();
    for p in ports {
        let _ = close_port(me, p);
    }
}
