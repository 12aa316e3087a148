//! `sched_op` and `set_timer_op`: yielding, blocking, polling event
//! channels, shutting down (itself or, for the control domain, another
//! domain), and the singleshot timer.

use super::{Env, Outcome, read_arg};
use xen_abi::DOMID_SELF;
use xen_abi::errno::*;
use xen_abi::sched::{self, SchedRemoteShutdown};

pub fn sched_op(env: &mut impl Env, cmd: u64, arg: u64) -> Outcome {
    let done = |r: Result<i64, i64>| Outcome::Done(r.unwrap_or_else(|e| e));
    match cmd {
        sched::SCHEDOP_YIELD => Outcome::Yield,
        sched::SCHEDOP_BLOCK => Outcome::Block,
        // Xen does not range-check the reason: it is truncated to a byte.
        sched::SCHEDOP_SHUTDOWN => match read_arg::<u32>(env, arg) {
            Ok(reason) => Outcome::Shutdown(reason as u8),
            Err(e) => Outcome::Done(e),
        },
        sched::SCHEDOP_SHUTDOWN_CODE => done(read_arg::<u32>(env, arg).map(|reason| {
            env.set_shutdown_code(reason as u8);
            0
        })),
        sched::SCHEDOP_REMOTE_SHUTDOWN => {
            let rs = match read_arg::<SchedRemoteShutdown>(env, arg) {
                Ok(rs) => rs,
                Err(e) => return Outcome::Done(e),
            };
            let target = if rs.domain_id == DOMID_SELF { env.domid() } else { rs.domain_id };
            if !env.domain_exists(target) {
                Outcome::Done(-ESRCH)
            } else if !env.privileged() {
                Outcome::Done(-EPERM)
            } else if target == env.domid() {
                Outcome::Shutdown(rs.reason as u8)
            } else {
                env.shutdown_domain(target, rs.reason as u8);
                Outcome::Done(0)
            }
        }
        sched::SCHEDOP_POLL => poll(env, arg),
        sched::SCHEDOP_PIN_OVERRIDE if !env.privileged() => Outcome::Done(-EPERM),
        _ => Outcome::Done(-ENOSYS),
    }
}

/// Event-channel ports SCHEDOP_poll may wait on at once (Xen's limit).
const POLL_MAX_PORTS: u32 = 128;

pub fn poll(env: &mut impl Env, arg: u64) -> Outcome {
    let p = match read_arg::<sched::SchedPoll>(env, arg) {
        Ok(p) => p,
        Err(e) => return Outcome::Done(e),
    };
    if p.nr_ports > POLL_MAX_PORTS {
        return Outcome::Done(-EINVAL);
    }
    let mut ports = [0u32; POLL_MAX_PORTS as usize];
    for (i, slot) in ports.iter_mut().take(p.nr_ports as usize).enumerate() {
        match read_arg::<u32>(env, p.ports.wrapping_add(4 * i as u64)) {
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
/// system time; 0 stops it. Nonsense values get Xen's 100 ms.
pub fn set_timer_op(env: &mut impl Env, timeout: u64) -> Result<i64, i64> {
    if timeout == 0 {
        env.set_singleshot_timer(None);
        return Ok(0);
    }
    let now = env.now_ns();
    let deadline = if (timeout as i64) < 0 || timeout.saturating_sub(now) >= HUGE_TIMEOUT_NS {
        now + 100_000_000
    } else {
        timeout
    };
    env.set_singleshot_timer(Some(deadline));
    Ok(0)
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
