//! `event_channel_op(cmd, arg)`: argument structures in and out of guest
//! memory, domain ids resolved and checked in Xen's order; the operations
//! themselves are `event::table`'s, run on real domains by `event::ops`.

use super::call::{Args, Guest, GuestHandle, Outcome};
use super::perm::{self, Perm};
use crate::event::table::{Reply, Request};
use xen_abi::errno::*;
use xen_abi::event_channel::{self as ev};

/// What event_channel_op needs of the caller: one operation on real
/// domains (resolved, and known to exist when asked).
pub trait EventEnv: Guest {
    fn evtchn(&mut self, req: Request) -> Result<Reply, i64>;
}

fn port_of(r: Reply) -> u32 {
    match r {
        Reply::Port(p) => p,
        _ => 0,
    }
}

/// event_channel_op(cmd, arg).
pub fn event_channel_op<E: EventEnv>(env: &mut E, args: &Args) -> Outcome {
    Outcome::of(op(env, args.a[0], args.a[1]))
}

/// Reads the argument structure, lets `f` fill it in, writes it back.
fn in_out<E: EventEnv, T: xen_abi::Pod>(
    env: &mut E,
    arg: u64,
    f: impl FnOnce(&mut E, &mut T) -> Result<(), i64>,
) -> Result<i64, i64> {
    let h = GuestHandle::<T>::new(arg);
    let mut v = h.read(env)?;
    f(env, &mut v)?;
    h.write(env, &v)?;
    Ok(0)
}

fn op<E: EventEnv>(env: &mut E, cmd: u64, arg: u64) -> Result<i64, i64> {
    match cmd {
        ev::EVTCHNOP_ALLOC_UNBOUND => in_out(env, arg, |env, a: &mut ev::AllocUnbound| {
            let dom = perm::lookup(env, a.dom)?;
            // Xen allocates the port before its xsm_evtchn_unbound check
            // (and frees it again when that fails).
            let permitted = env.caller().may(Perm::Target, Some(dom));
            let remote = perm::resolve(env, a.remote_dom);
            a.port = port_of(env.evtchn(Request::AllocUnbound { dom, remote, permitted })?);
            Ok(())
        }),
        ev::EVTCHNOP_BIND_INTERDOMAIN => in_out(env, arg, |env, b: &mut ev::BindInterdomain| {
            let remote_dom = perm::lookup(env, b.remote_dom)?;
            b.local_port = port_of(env.evtchn(Request::BindInterdomain { remote_dom, remote_port: b.remote_port })?);
            Ok(())
        }),
        ev::EVTCHNOP_BIND_VIRQ => in_out(env, arg, |env, b: &mut ev::BindVirq| {
            b.port = port_of(env.evtchn(Request::BindVirq { virq: b.virq, vcpu: b.vcpu })?);
            Ok(())
        }),
        ev::EVTCHNOP_BIND_IPI => in_out(env, arg, |env, b: &mut ev::BindIpi| {
            b.port = port_of(env.evtchn(Request::BindIpi { vcpu: b.vcpu })?);
            Ok(())
        }),
        // Physical IRQs belong to the hardware domain; PVH domUs have none.
        ev::EVTCHNOP_BIND_PIRQ => in_out(env, arg, |env, b: &mut ev::BindPirq| {
            env.caller().check(Perm::Control, None)?;
            b.port = port_of(env.evtchn(Request::BindPirq { pirq: b.pirq })?);
            Ok(())
        }),
        ev::EVTCHNOP_CLOSE => {
            let p = GuestHandle::<ev::Port>::new(arg).read(env)?;
            env.evtchn(Request::Close { port: p.port }).map(|_| 0)
        }
        ev::EVTCHNOP_SEND => {
            let p = GuestHandle::<ev::Port>::new(arg).read(env)?;
            env.evtchn(Request::Send { port: p.port }).map(|_| 0)
        }
        ev::EVTCHNOP_UNMASK => {
            let p = GuestHandle::<ev::Port>::new(arg).read(env)?;
            env.evtchn(Request::Unmask { port: p.port }).map(|_| 0)
        }
        ev::EVTCHNOP_STATUS => in_out(env, arg, |env, s: &mut ev::Status| {
            let dom = perm::lookup(env, s.dom)?;
            // Xen looks the port up before its xsm_evtchn_status check.
            let r = env.evtchn(Request::Status { dom, port: s.port })?;
            env.caller().check(Perm::Target, Some(dom))?;
            if let Reply::Status(st) = r {
                s.status = st.status;
                s.vcpu = st.vcpu;
                s.u = st.u;
            }
            Ok(())
        }),
        ev::EVTCHNOP_BIND_VCPU => {
            let b = GuestHandle::<ev::BindVcpu>::new(arg).read(env)?;
            env.evtchn(Request::BindVcpu { port: b.port, vcpu: b.vcpu }).map(|_| 0)
        }
        ev::EVTCHNOP_RESET | ev::EVTCHNOP_RESET_CONT => {
            let r = GuestHandle::<ev::Reset>::new(arg).read(env)?;
            // Xen's xsm_evtchn_reset.
            let dom = perm::target(env, r.dom, Perm::Target)?;
            // Xen resets another domain only while its controller keeps it
            // paused; there is no pausing here yet.
            if dom != env.domid() {
                return Err(-EINVAL);
            }
            env.evtchn(Request::Reset { dom }).map(|_| 0)
        }
        // The FIFO ABI, always for the caller's own domain. init_control
        // writes link_bits back only when it succeeds (Xen).
        ev::EVTCHNOP_INIT_CONTROL => in_out(env, arg, |env, c: &mut ev::InitControl| {
            env.evtchn(Request::InitControl { gfn: c.control_gfn, offset: c.offset, vcpu: c.vcpu })?;
            c.link_bits = ev::EVTCHN_FIFO_LINK_BITS as u8;
            Ok(())
        }),
        ev::EVTCHNOP_EXPAND_ARRAY => {
            let e = GuestHandle::<ev::ExpandArray>::new(arg).read(env)?;
            env.evtchn(Request::ExpandArray { gfn: e.array_gfn }).map(|_| 0)
        }
        ev::EVTCHNOP_SET_PRIORITY => {
            let p = GuestHandle::<ev::SetPriority>::new(arg).read(env)?;
            env.evtchn(Request::SetPriority { port: p.port, priority: p.priority }).map(|_| 0)
        }
        _ => Err(-ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use crate::event::table::{Reply, Request, Status};
    use crate::hypercall::fake::Fake;
    use crate::hypercall::{Call, Outcome, dispatch};
    use xen_abi::Pod;
    use xen_abi::errno::*;
    use xen_abi::event_channel::*;
    use xen_abi::hypercall as nr;

    fn op(f: &mut Fake, cmd: u64, arg: u64) -> Outcome {
        dispatch(f, Call { nr: nr::EVENT_CHANNEL_OP, args: [cmd, arg, 0, 0, 0], long_mode: true }, 0)
    }

    #[test]
    fn requests_are_read_and_replies_written_back() {
        let mut f = Fake::new(4);
        f.evtchn_reply = Ok(Reply::Port(9));
        f.put(0x100, AllocUnbound { dom: 0x7ff0, remote_dom: 0x7ff0, port: 0 }.as_bytes());
        assert_eq!(op(&mut f, EVTCHNOP_ALLOC_UNBOUND, 0x100), Outcome::Done(0));
        assert_eq!(f.evtchn_requests.pop(), Some(Request::AllocUnbound { dom: 4, remote: 4, permitted: true }));
        assert_eq!(AllocUnbound::read_from(f.get(0x100, 8)).unwrap().port, 9);
        // Another domain's port: allowed to try, refused after allocation.
        f.put(0x100, AllocUnbound { dom: 7, remote_dom: 4, port: 0 }.as_bytes());
        op(&mut f, EVTCHNOP_ALLOC_UNBOUND, 0x100);
        assert_eq!(f.evtchn_requests.pop(), Some(Request::AllocUnbound { dom: 7, remote: 4, permitted: false }));
        f.put(0x100, AllocUnbound { dom: 99, remote_dom: 4, port: 0 }.as_bytes());
        assert_eq!(op(&mut f, EVTCHNOP_ALLOC_UNBOUND, 0x100), Outcome::Done(-ESRCH));
        assert_eq!(op(&mut f, EVTCHNOP_ALLOC_UNBOUND, 0xffff_0000), Outcome::Done(-EFAULT));
        f.put(0x120, BindInterdomain { remote_dom: 7, _pad: 0, remote_port: 3, local_port: 0 }.as_bytes());
        assert_eq!(op(&mut f, EVTCHNOP_BIND_INTERDOMAIN, 0x120), Outcome::Done(0));
        assert_eq!(f.evtchn_requests.pop(), Some(Request::BindInterdomain { remote_dom: 7, remote_port: 3 }));
        assert_eq!(BindInterdomain::read_from(f.get(0x120, 12)).unwrap().local_port, 9);
        f.put(0x140, BindVirq { virq: VIRQ_TIMER, vcpu: 1, port: 0 }.as_bytes());
        assert_eq!(op(&mut f, EVTCHNOP_BIND_VIRQ, 0x140), Outcome::Done(0));
        assert_eq!(BindVirq::read_from(f.get(0x140, 12)).unwrap().port, 9);
        f.put(0x160, &5u32.to_le_bytes());
        for (cmd, want) in [
            (EVTCHNOP_SEND, Request::Send { port: 5 }),
            (EVTCHNOP_CLOSE, Request::Close { port: 5 }),
            (EVTCHNOP_UNMASK, Request::Unmask { port: 5 }),
        ] {
            assert_eq!(op(&mut f, cmd, 0x160), Outcome::Done(0));
            assert_eq!(f.evtchn_requests.pop(), Some(want));
        }
        // Errors from the operation come back as they are.
        f.evtchn_reply = Err(-EINVAL);
        assert_eq!(op(&mut f, EVTCHNOP_SEND, 0x160), Outcome::Done(-EINVAL));
        assert_eq!(op(&mut f, 99, 0x160), Outcome::Done(-ENOSYS));
    }

    #[test]
    fn fifo_operations_read_their_arguments_and_init_control_writes_link_bits() {
        let mut f = Fake::new(4);
        let ic = InitControl { control_gfn: 0x1234, offset: 64, vcpu: 1, link_bits: 0, _pad: [0; 7] };
        f.put(0x100, ic.as_bytes());
        f.evtchn_reply = Err(-EINVAL);
        assert_eq!(op(&mut f, EVTCHNOP_INIT_CONTROL, 0x100), Outcome::Done(-EINVAL));
        assert_eq!(f.evtchn_requests.pop(), Some(Request::InitControl { gfn: 0x1234, offset: 64, vcpu: 1 }));
        assert_eq!(InitControl::read_from(f.get(0x100, 24)).unwrap().link_bits, 0, "nothing written on failure");
        f.evtchn_reply = Ok(Reply::Done);
        assert_eq!(op(&mut f, EVTCHNOP_INIT_CONTROL, 0x100), Outcome::Done(0));
        assert_eq!(InitControl::read_from(f.get(0x100, 24)).unwrap().link_bits, 17);
        assert_eq!(op(&mut f, EVTCHNOP_INIT_CONTROL, 0xffff_0000), Outcome::Done(-EFAULT));
        f.put(0x140, ExpandArray { array_gfn: 0x99 }.as_bytes());
        assert_eq!(op(&mut f, EVTCHNOP_EXPAND_ARRAY, 0x140), Outcome::Done(0));
        assert_eq!(f.evtchn_requests.pop(), Some(Request::ExpandArray { gfn: 0x99 }));
        f.put(0x160, SetPriority { port: 5, priority: 3 }.as_bytes());
        assert_eq!(op(&mut f, EVTCHNOP_SET_PRIORITY, 0x160), Outcome::Done(0));
        assert_eq!(f.evtchn_requests.pop(), Some(Request::SetPriority { port: 5, priority: 3 }));
        assert_eq!(op(&mut f, EVTCHNOP_EXPAND_ARRAY, 0xffff_0000), Outcome::Done(-EFAULT));
        assert_eq!(op(&mut f, EVTCHNOP_SET_PRIORITY, 0xffff_0000), Outcome::Done(-EFAULT));
    }

    #[test]
    fn status_checks_the_port_before_the_permission() {
        let mut f = Fake::new(4);
        let st = Status { status: EVTCHNSTAT_INTERDOMAIN, vcpu: 1, u: [7, 0, 0, 0, 3, 0, 0, 0] };
        f.evtchn_reply = Ok(Reply::Status(st));
        f.put(0x200, xen_abi::event_channel::Status { dom: 0x7ff0, port: 2, ..Default::default() }.as_bytes());
        assert_eq!(op(&mut f, EVTCHNOP_STATUS, 0x200), Outcome::Done(0));
        let out = xen_abi::event_channel::Status::read_from(f.get(0x200, 24)).unwrap();
        assert_eq!((out.status, out.vcpu, out.u), (EVTCHNSTAT_INTERDOMAIN, 1, st.u));
        f.put(0x200, xen_abi::event_channel::Status { dom: 7, port: 2, ..Default::default() }.as_bytes());
        assert_eq!(op(&mut f, EVTCHNOP_STATUS, 0x200), Outcome::Done(-EPERM));
        f.evtchn_reply = Err(-EINVAL);
        assert_eq!(op(&mut f, EVTCHNOP_STATUS, 0x200), Outcome::Done(-EINVAL));
        f.put(0x200, xen_abi::event_channel::Status { dom: 42, port: 2, ..Default::default() }.as_bytes());
        assert_eq!(op(&mut f, EVTCHNOP_STATUS, 0x200), Outcome::Done(-ESRCH));
    }

    #[test]
    fn reset_and_pirqs_are_refused_to_a_domu() {
        let mut f = Fake::new(4);
        f.evtchn_reply = Ok(Reply::Done);
        f.put(0x300, &7u16.to_le_bytes());
        assert_eq!(op(&mut f, EVTCHNOP_RESET, 0x300), Outcome::Done(-EPERM));
        f.put(0x300, &0x7ff0u16.to_le_bytes());
        assert_eq!(op(&mut f, EVTCHNOP_RESET, 0x300), Outcome::Done(0));
        assert_eq!(f.evtchn_requests.pop(), Some(Request::Reset { dom: 4 }));
        assert_eq!(op(&mut f, EVTCHNOP_BIND_PIRQ, 0x300), Outcome::Done(-EPERM));
    }
}
