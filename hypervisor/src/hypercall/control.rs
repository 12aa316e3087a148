//! The control hypercalls: domctl, sysctl, platform_op (interface version
//! first, then the control domain only) and kexec_op.

use super::call::{Args, Guest, GuestHandle, Outcome};
use super::perm::Perm;
use xen_abi::errno::*;

/// Interface versions of the control hypercalls (Xen 4.17).
pub const DOMCTL_INTERFACE_VERSION: u32 = 0x15;

pub const SYSCTL_INTERFACE_VERSION: u32 = 0x15;

pub const PLATFORM_INTERFACE_VERSION: u32 = 0x0300_0001;

/// domctl, sysctl and platform_op: Xen reads the structure, checks its
/// interface version (-EACCES), then that the caller is the control
/// domain (-EPERM). None of their commands is offered yet (the toolstack
/// issue brings them), so dom0 gets -ENOSYS.
fn control_op(env: &impl Guest, arg: u64, version: u32) -> Result<i64, i64> {
    // Every control structure starts with a command and its interface
    // version; both must be readable.
    let head = GuestHandle::<u32>::new(arg);
    head.read(env)?;
    let interface = head.at(1).read(env)?;
    if interface != version {
        return Err(-EACCES);
    }
    env.caller().check(Perm::Control, None)?;
    Err(-ENOSYS)
}

pub fn domctl<E: Guest>(env: &mut E, args: &Args) -> Outcome {
    Outcome::of(control_op(env, args.a[0], DOMCTL_INTERFACE_VERSION))
}

pub fn sysctl<E: Guest>(env: &mut E, args: &Args) -> Outcome {
    Outcome::of(control_op(env, args.a[0], SYSCTL_INTERFACE_VERSION))
}

pub fn platform_op<E: Guest>(env: &mut E, args: &Args) -> Outcome {
    Outcome::of(control_op(env, args.a[0], PLATFORM_INTERFACE_VERSION))
}

/// kexec_op: the table lets only the control domain in; loading and
/// running another kernel is not offered.
pub fn kexec_op<E: Guest>(_env: &mut E, _args: &Args) -> Outcome {
    Outcome::Done(-ENOSYS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::fake::{Fake, call};
    use xen_abi::hypercall as nr;

    #[test]
    fn control_hypercalls_are_for_the_control_domain() {
        let mut f = Fake::new(5);
        f.put(0x40, &[1, 0, 0, 0, 0x15, 0, 0, 0]);
        assert_eq!(call(&mut f, nr::DOMCTL, [0x40, 0, 0, 0, 0]), Outcome::Done(-EPERM));
        assert_eq!(call(&mut f, nr::SYSCTL, [0x40, 0, 0, 0, 0]), Outcome::Done(-EPERM));
        assert_eq!(call(&mut f, nr::PLATFORM_OP, [0x40, 0, 0, 0, 0]), Outcome::Done(-EACCES), "wrong version");
        assert_eq!(call(&mut f, nr::DOMCTL, [0xffff_0000, 0, 0, 0, 0]), Outcome::Done(-EFAULT));
        assert_eq!(call(&mut f, nr::KEXEC_OP, [0, 0, 0, 0, 0]), Outcome::Done(-EPERM));
        f.privileged = true;
        assert_eq!(call(&mut f, nr::DOMCTL, [0x40, 0, 0, 0, 0]), Outcome::Done(-ENOSYS));
    }
}
