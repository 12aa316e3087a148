//! `sched_op` and `set_timer_op`: yielding, blocking, polling event
//! channels, shutting down (itself or, for the control domain, another
//! domain), and the singleshot timer.

use super::call::{Args, Guest, GuestHandle, Outcome};
use super::perm::{self, Perm};
use xen_abi::errno::*;
use xen_abi::sched::{self, SchedRemoteShutdown};

/// The caller's singleshot timer, which set_timer_op and
/// VCPUOP_set_singleshot_timer both set.
pub trait TimerEnv: Guest {
    /// The caller's singleshot timer (None stops it); a deadline already
    /// past raises the timer event at once.
    fn set_singleshot_timer(&mut self, deadline: Option<u64>);
}

/// What sched_op needs of the caller.
pub trait SchedEnv: TimerEnv {
    /// Shuts another domain down.
    fn shutdown_domain(&mut self, domid: u16, reason: u8);
    /// Latches the shutdown code for a later shutdown.
    fn set_shutdown_code(&mut self, reason: u8);
    /// Whether event channel `port` is pending (-EINVAL for a port the
    /// domain cannot have).
    fn port_pending(&self, port: u32) -> Result<bool, i64>;
    /// Starts a poll: the caller wakes when `port` (None: any port) turns
    /// pending, or at `deadline` (0: none).
    fn set_poll(&mut self, port: Option<u32>, deadline: u64);
    /// Ends a poll that found a port pending before it blocked.
    fn cancel_poll(&mut self);
}

/// sched_op(cmd, arg).
pub fn sched_op<E: SchedEnv>(env: &mut E, args: &Args) -> Outcome {
    let (cmd, arg) = (args.a[0], args.a[1]);
    match cmd {
        sched::SCHEDOP_YIELD => Outcome::Yield,
        sched::SCHEDOP_BLOCK => Outcome::Block,
        // Xen does not range-check the reason: it is truncated to a byte.
        sched::SCHEDOP_SHUTDOWN => match GuestHandle::<u32>::new(arg).read(env) {
            Ok(reason) => Outcome::Shutdown(reason as u8),
            Err(e) => Outcome::Done(e),
        },
        sched::SCHEDOP_SHUTDOWN_CODE => Outcome::of(GuestHandle::<u32>::new(arg).read(env).map(|reason| {
            env.set_shutdown_code(reason as u8);
            0
        })),
        sched::SCHEDOP_REMOTE_SHUTDOWN => {
            let rs = match GuestHandle::<SchedRemoteShutdown>::new(arg).read(env) {
                Ok(rs) => rs,
                Err(e) => return Outcome::Done(e),
            };
            // Xen's xsm_schedop_shutdown: the target's device model or the
            // control domain, even on itself.
            match perm::target(env, rs.domain_id, Perm::DeviceModel) {
                Err(e) => Outcome::Done(e),
                Ok(target) if target == env.domid() => Outcome::Shutdown(rs.reason as u8),
                Ok(target) => {
                    env.shutdown_domain(target, rs.reason as u8);
                    Outcome::Done(0)
                }
            }
        }
        sched::SCHEDOP_POLL => poll(env, arg),
        sched::SCHEDOP_PIN_OVERRIDE if !env.caller().may(Perm::Control, None) => Outcome::Done(-EPERM),
        _ => Outcome::Done(-ENOSYS),
    }
}

/// Event-channel ports SCHEDOP_poll may wait on at once (Xen's limit).
const POLL_MAX_PORTS: u32 = 128;

fn poll(env: &mut impl SchedEnv, arg: u64) -> Outcome {
    let p = match GuestHandle::<sched::SchedPoll>::new(arg).read(env) {
        Ok(p) => p,
        Err(e) => return Outcome::Done(e),
    };
    if p.nr_ports > POLL_MAX_PORTS {
        return Outcome::Done(-EINVAL);
    }
    let list = GuestHandle::<u32>::new(p.ports);
    let mut ports = [0u32; POLL_MAX_PORTS as usize];
    for (i, slot) in ports.iter_mut().take(p.nr_ports as usize).enumerate() {
        match list.at(i as u64).read(env) {
            Ok(port) => *slot = port,
            Err(e) => return Outcome::Done(e),
        }
    }
    let ports = &ports[..p.nr_ports as usize];
    // Registered first, then checked: an event between the two ends the
    // poll through the registration (Xen's order).
    env.set_poll(if ports.len() == 1 { Some(ports[0]) } else { None }, p.timeout);
    for &port in ports {
        match env.port_pending(port) {
            Ok(true) => {
                env.cancel_poll();
                return Outcome::Done(0);
            }
            Ok(false) => {}
            Err(e) => {
                env.cancel_poll();
                return Outcome::Done(e);
            }
        }
    }
    Outcome::Block
}

/// Timeouts this far ahead are Linux's wrapped jiffies (Xen's 2^50 ns).
pub const HUGE_TIMEOUT_NS: u64 = 1 << 50;

/// set_timer_op(timeout): the caller's singleshot timer at an absolute
/// system time; 0 stops it. Nonsense values get Xen's 100 ms. (A 32-bit
/// caller passes the time in two halves; the table joins them.)
pub fn set_timer_op<E: TimerEnv>(env: &mut E, args: &Args) -> Outcome {
    let timeout = args.a[0];
    if timeout == 0 {
        env.set_singleshot_timer(None);
        return Outcome::Done(0);
    }
    let now = env.now_ns();
    let deadline = if (timeout as i64) < 0 || timeout.saturating_sub(now) >= HUGE_TIMEOUT_NS {
        now + 100_000_000
    } else {
        timeout
    };
    env.set_singleshot_timer(Some(deadline));
    Outcome::Done(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::fake::{Fake, call};
    use crate::hypercall::{Call, Outcome, dispatch};
    use xen_abi::{Pod, hypercall as nr};

    #[test]
    fn sched_op_shutdown_yield_block_and_remote() {
        let mut f = Fake::new(2);
        f.put(0x10, &3u32.to_le_bytes());
        assert_eq!(call(&mut f, nr::SCHED_OP, [2, 0x10, 0, 0, 0]), Outcome::Shutdown(3));
        // Any reason is accepted, truncated to a byte, as in Xen.
        f.put(0x10, &0x1ffu32.to_le_bytes());
        assert_eq!(call(&mut f, nr::SCHED_OP, [2, 0x10, 0, 0, 0]), Outcome::Shutdown(0xff));
        assert_eq!(call(&mut f, nr::SCHED_OP, [2, 0xffff_ffff_0000, 0, 0, 0]), Outcome::Done(-EFAULT));
        assert_eq!(call(&mut f, nr::SCHED_OP, [0, 0, 0, 0, 0]), Outcome::Yield);
        assert_eq!(call(&mut f, nr::SCHED_OP, [1, 0, 0, 0, 0]), Outcome::Block);
        assert_eq!(call(&mut f, nr::SCHED_OP, [42, 0, 0, 0, 0]), Outcome::Done(-ENOSYS));
        // remote_shutdown: missing domain, then no privilege, then allowed.
        f.put(0x20, &[9, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(call(&mut f, nr::SCHED_OP, [4, 0x20, 0, 0, 0]), Outcome::Done(-ESRCH));
        f.put(0x20, &[7, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(call(&mut f, nr::SCHED_OP, [4, 0x20, 0, 0, 0]), Outcome::Done(-EPERM));
        f.privileged = true;
        assert_eq!(call(&mut f, nr::SCHED_OP, [4, 0x20, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.shut, vec![(7, 1)]);
    }

    #[test]
    fn set_timer_op_and_poll() {
        let mut f = Fake::new(3);
        assert_eq!(call(&mut f, nr::SET_TIMER_OP, [500_000, 0, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.singleshot, Some(Some(500_000)));
        assert_eq!(call(&mut f, nr::SET_TIMER_OP, [0, 0, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.singleshot, Some(None));
        // Wrapped or absurd timeouts get 100 ms from now.
        assert_eq!(call(&mut f, nr::SET_TIMER_OP, [u64::MAX, 0, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.singleshot, Some(Some(123_456 + 100_000_000)));
        // 32-bit callers pass the time in two halves.
        let r = dispatch(&mut f, Call { nr: nr::SET_TIMER_OP, args: [0x10, 0x1, 0, 0, 0], long_mode: false }, 0);
        assert_eq!(r, Outcome::Done(0));
        assert_eq!(f.singleshot, Some(Some(0x1_0000_0010)));
        // Poll: a pending port returns at once, otherwise it blocks.
        f.put(0x700, &[5, 0, 0, 0, 9, 0, 0, 0]);
        let p = sched::SchedPoll { ports: 0x700, nr_ports: 2, _pad: 0, timeout: 777 };
        f.put(0x680, p.as_bytes());
        assert_eq!(call(&mut f, nr::SCHED_OP, [sched::SCHEDOP_POLL, 0x680, 0, 0, 0]), Outcome::Block);
        assert_eq!(f.poll_deadline, Some(777));
        f.pending_ports.push(9);
        assert_eq!(call(&mut f, nr::SCHED_OP, [sched::SCHEDOP_POLL, 0x680, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.poll_deadline, None, "a pending port cancels the poll");
        f.put(0x700, &[0, 0x10, 0, 0]);
        assert_eq!(call(&mut f, nr::SCHED_OP, [sched::SCHEDOP_POLL, 0x680, 0, 0, 0]), Outcome::Done(-EINVAL));
        let p = sched::SchedPoll { ports: 0x700, nr_ports: 129, _pad: 0, timeout: 0 };
        f.put(0x680, p.as_bytes());
        assert_eq!(call(&mut f, nr::SCHED_OP, [sched::SCHEDOP_POLL, 0x680, 0, 0, 0]), Outcome::Done(-EINVAL));
    }
}
