//! `vcpu_op`: starting and stopping a domain's vCPUs, their runstate and
//! time areas, vcpu_info placement, timers and NMIs.

use super::call::{Args, GuestHandle, Outcome};
use super::sched_op::{HUGE_TIMEOUT_NS, TimerEnv};
use crate::arch::x86_64::hvm::policy::GuestPolicy;
use crate::arch::x86_64::hvm::vcpu_init::InitialState;
use crate::mm::addr::{Gfn, Gva};
use xen_abi::errno::*;
use xen_abi::sched;
use xen_abi::vcpu::{self as xv, RunstateInfo};

/// What vcpu_op needs of the caller: its domain's vCPUs (`vcpu` is below
/// `nr_vcpus`, checked first).
pub trait VcpuEnv: TimerEnv {
    /// Gives a down, never-started vCPU its starting state (-EEXIST if it
    /// has one).
    fn vcpu_initialise(&mut self, vcpu: u32, state: &InitialState) -> Result<(), i64>;
    /// Makes an initialised vCPU runnable (-EINVAL if not initialised).
    fn vcpu_up(&mut self, vcpu: u32) -> Result<(), i64>;
    /// Takes another vCPU down.
    fn vcpu_down(&mut self, vcpu: u32);
    fn vcpu_is_up(&self, vcpu: u32) -> bool;
    fn vcpus_up(&self) -> u32;
    fn runstate(&self, vcpu: u32) -> RunstateInfo;
    /// Registers a guest-virtual runstate area (updated on every switch).
    fn set_runstate_area(&mut self, vcpu: u32, gva: Gva);
    /// Registers a guest-virtual copy of vcpu_time_info.
    fn set_time_area(&mut self, vcpu: u32, gva: Gva);
    fn register_vcpu_info(&mut self, vcpu: u32, gfn: Gfn, offset: u32) -> Result<(), i64>;
    /// 0 stops it.
    fn set_periodic_timer(&mut self, vcpu: u32, period_ns: u64);
    fn send_nmi(&mut self, vcpu: u32);
    /// What the domain's vCPUs may have (CR4 and EFER bits).
    fn policy(&self) -> GuestPolicy;
}

/// vcpu_op(cmd, vcpu, arg).
pub fn vcpu_op<E: VcpuEnv>(env: &mut E, args: &Args) -> Outcome {
    let [cmd, vcpu, arg, ..] = args.a;
    let long_mode = args.long_mode;
    let done = Outcome::of;
    if vcpu >= env.nr_vcpus() as u64 {
        return Outcome::Done(-ENOENT);
    }
    let vcpu = vcpu as u32;
    let own = vcpu == env.vcpu_id();
    match cmd {
        xv::VCPUOP_INITIALISE => done((|| {
            let ctx = GuestHandle::<xv::VcpuHvmContext>::new(arg).read(env)?;
            let state = InitialState::from_hvm_context(&ctx, &env.policy()).map_err(|_| -EINVAL)?;
            env.vcpu_initialise(vcpu, &state).map(|_| 0)
        })()),
        xv::VCPUOP_UP => done(env.vcpu_up(vcpu).map(|_| 0)),
        xv::VCPUOP_DOWN => {
            // The last vCPU going down powers the domain off (Xen).
            if env.vcpus_up() <= 1 && env.vcpu_is_up(vcpu) {
                return Outcome::Shutdown(sched::SHUTDOWN_POWEROFF as u8);
            }
            if own {
                return Outcome::Down;
            }
            env.vcpu_down(vcpu);
            Outcome::Done(0)
        }
        xv::VCPUOP_IS_UP => Outcome::Done(env.vcpu_is_up(vcpu) as i64),
        xv::VCPUOP_GET_RUNSTATE_INFO => {
            let r = env.runstate(vcpu);
            done(GuestHandle::new(arg).write(env, &r).map(|_| 0))
        }
        xv::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => done((|| {
            let a = GuestHandle::<xv::RegisterArea>::new(arg).read(env)?;
            let area = GuestHandle::<RunstateInfo>::new(if long_mode { a.addr } else { a.addr & 0xffff_ffff });
            // The area must be writable now (Xen checks the handle).
            let r = env.runstate(vcpu);
            area.write(env, &r)?;
            env.set_runstate_area(vcpu, area.addr());
            Ok(0)
        })()),
        xv::VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA => done((|| {
            let a = GuestHandle::<xv::RegisterArea>::new(arg).read(env)?;
            env.set_time_area(vcpu, Gva(if long_mode { a.addr } else { a.addr & 0xffff_ffff }));
            Ok(0)
        })()),
        xv::VCPUOP_SET_PERIODIC_TIMER => done((|| {
            let t = GuestHandle::<xv::SetPeriodicTimer>::new(arg).read(env)?;
            if t.period_ns < 1_000_000 || t.period_ns > HUGE_TIMEOUT_NS {
                return Err(-EINVAL);
            }
            env.set_periodic_timer(vcpu, t.period_ns);
            Ok(0)
        })()),
        xv::VCPUOP_STOP_PERIODIC_TIMER => {
            env.set_periodic_timer(vcpu, 0);
            Outcome::Done(0)
        }
        xv::VCPUOP_SET_SINGLESHOT_TIMER => done((|| {
            if !own {
                return Err(-EINVAL);
            }
            let t = GuestHandle::<xv::SetSingleshotTimer>::new(arg).read(env)?;
            if t.flags & xv::SSHOTTMR_FUTURE != 0 && t.timeout_abs_ns < env.now_ns() {
                return Err(-ETIME);
            }
            env.set_singleshot_timer(Some(t.timeout_abs_ns));
            Ok(0)
        })()),
        xv::VCPUOP_STOP_SINGLESHOT_TIMER => {
            if !own {
                return Outcome::Done(-EINVAL);
            }
            env.set_singleshot_timer(None);
            Outcome::Done(0)
        }
        xv::VCPUOP_REGISTER_VCPU_INFO => done((|| {
            let r = GuestHandle::<xv::RegisterVcpuInfo>::new(arg).read(env)?;
            if r.mfn >> 52 != 0 {
                return Err(-EINVAL);
            }
            // A translated guest names the frame by its guest frame number.
            env.register_vcpu_info(vcpu, Gfn(r.mfn), r.offset).map(|_| 0)
        })()),
        xv::VCPUOP_SEND_NMI => {
            if arg != 0 {
                return Outcome::Done(-EINVAL);
            }
            env.send_nmi(vcpu);
            Outcome::Done(0)
        }
        // Only for a hardware domain pinned 1:1 (Xen), and the physical
        // area variants are not offered (no XENFEAT for them).
        xv::VCPUOP_GET_PHYSID => Outcome::Done(-EINVAL),
        _ => Outcome::Done(-ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::fake::{Fake, call};
    use xen_abi::{Pod, hypercall as nr};

    #[test]
    fn vcpu_up_down_and_initialise_follow_xen() {
        let mut f = Fake::new(3);
        // vCPU 1 has no state yet: up is refused until it is initialised.
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_UP, 1, 0, 0, 0]), Outcome::Done(-EINVAL));
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_IS_UP, 1, 0, 0, 0]), Outcome::Done(0));
        let r = xv::VcpuHvmX86_64 { rip: 0x1000, cr0: 0x8000_0001, cr4: 0x20, efer: 0x100, ..Default::default() };
        let mut ctx = xv::VcpuHvmContext { mode: xv::VCPU_HVM_MODE_64B, ..Default::default() };
        ctx.regs[..112].copy_from_slice(r.as_bytes());
        f.put(0x400, ctx.as_bytes());
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_INITIALISE, 1, 0x400, 0, 0]), Outcome::Done(0));
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_INITIALISE, 1, 0x400, 0, 0]), Outcome::Done(-EEXIST));
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_UP, 1, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_IS_UP, 1, 0, 0, 0]), Outcome::Done(1));
        // A bad context is -EINVAL, an unreadable one -EFAULT.
        f.vcpus[1].0 = false;
        ctx.mode = 9;
        f.put(0x400, ctx.as_bytes());
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_INITIALISE, 1, 0x400, 0, 0]), Outcome::Done(-EINVAL));
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_INITIALISE, 1, 0xffff_0000, 0, 0]), Outcome::Done(-EFAULT));
        f.vcpus[1].0 = true;
        // Down: another vCPU is done here, the caller leaves, the last one
        // up powers the domain off.
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_DOWN, 1, 0, 0, 0]), Outcome::Done(0));
        assert!(!f.vcpus[1].1);
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_DOWN, 0, 0, 0, 0]), Outcome::Shutdown(0));
        f.vcpus[1].1 = true;
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_DOWN, 0, 0, 0, 0]), Outcome::Down);
        // Unknown vCPUs and commands.
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_IS_UP, 2, 0, 0, 0]), Outcome::Done(-ENOENT));
        assert_eq!(call(&mut f, nr::VCPU_OP, [99, 0, 0, 0, 0]), Outcome::Done(-ENOSYS));
    }

    #[test]
    fn vcpu_timers_and_areas() {
        let mut f = Fake::new(3);
        let op = |f: &mut Fake, cmd, vcpu, arg| call(f, nr::VCPU_OP, [cmd, vcpu, arg, 0, 0]);
        f.put(0x100, xv::SetSingleshotTimer { timeout_abs_ns: 200_000, flags: 0, _pad: 0 }.as_bytes());
        assert_eq!(op(&mut f, xv::VCPUOP_SET_SINGLESHOT_TIMER, 0, 0x100), Outcome::Done(0));
        assert_eq!(f.singleshot, Some(Some(200_000)));
        // Only the caller's own; a past deadline with the "future" flag
        // is -ETIME (Xen 4.17); without it, it fires at once.
        assert_eq!(op(&mut f, xv::VCPUOP_SET_SINGLESHOT_TIMER, 1, 0x100), Outcome::Done(-EINVAL));
        f.put(0x100, xv::SetSingleshotTimer { timeout_abs_ns: 5, flags: xv::SSHOTTMR_FUTURE, _pad: 0 }.as_bytes());
        assert_eq!(op(&mut f, xv::VCPUOP_SET_SINGLESHOT_TIMER, 0, 0x100), Outcome::Done(-ETIME));
        assert_eq!(op(&mut f, xv::VCPUOP_STOP_SINGLESHOT_TIMER, 0, 0), Outcome::Done(0));
        assert_eq!(f.singleshot, Some(None));
        // Periodic: at least 1 ms.
        f.put(0x120, &999_999u64.to_le_bytes());
        assert_eq!(op(&mut f, xv::VCPUOP_SET_PERIODIC_TIMER, 1, 0x120), Outcome::Done(-EINVAL));
        f.put(0x120, &10_000_000u64.to_le_bytes());
        assert_eq!(op(&mut f, xv::VCPUOP_SET_PERIODIC_TIMER, 1, 0x120), Outcome::Done(0));
        assert_eq!(op(&mut f, xv::VCPUOP_STOP_PERIODIC_TIMER, 1, 0), Outcome::Done(0));
        assert_eq!(f.periodic, vec![(1, 10_000_000), (1, 0)]);
        // Runstate: written where asked, area registered after a test write.
        assert_eq!(op(&mut f, xv::VCPUOP_GET_RUNSTATE_INFO, 1, 0x200), Outcome::Done(0));
        assert_eq!(RunstateInfo::read_from(f.get(0x200, 48)).unwrap().time[0], 1);
        f.put(0x300, &0x800u64.to_le_bytes());
        assert_eq!(op(&mut f, xv::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, 0x300), Outcome::Done(0));
        f.put(0x300, &0xffff_0000u64.to_le_bytes());
        assert_eq!(op(&mut f, xv::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, 0x300), Outcome::Done(-EFAULT));
        assert_eq!(f.areas, vec![(0, 0x800)]);
        // vcpu_info: the frame and offset go through.
        f.put(0x340, xv::RegisterVcpuInfo { mfn: 0x1234, offset: 64, rsvd: 0 }.as_bytes());
        assert_eq!(op(&mut f, xv::VCPUOP_REGISTER_VCPU_INFO, 1, 0x340), Outcome::Done(0));
        assert_eq!(f.infos, vec![(1, 0x1234, 64)]);
        assert_eq!(op(&mut f, xv::VCPUOP_SEND_NMI, 1, 8), Outcome::Done(-EINVAL));
        assert_eq!(op(&mut f, xv::VCPUOP_GET_PHYSID, 0, 0x100), Outcome::Done(-EINVAL));
    }
}
