//! The control hypercalls: domctl, sysctl, platform_op (interface version
//! first, then the control domain only) and kexec_op.

use super::{Env, fault};
use xen_abi::errno::*;

/// Interface versions of the control hypercalls (Xen 4.17).
pub const DOMCTL_INTERFACE_VERSION: u32 = 0x15;

pub const SYSCTL_INTERFACE_VERSION: u32 = 0x15;

pub const PLATFORM_INTERFACE_VERSION: u32 = 0x0300_0001;

/// domctl, sysctl and platform_op: Xen reads the structure, checks its
/// interface version (-EACCES), then that the caller is the control
/// domain (-EPERM). None of their commands is offered yet (the toolstack
/// issue brings them), so dom0 gets -ENOSYS.
pub fn control_op(env: &impl Env, arg: u64, version: u32) -> Result<i64, i64> {
    let mut hdr = [0u8; 8];
    env.read(arg, &mut hdr).map_err(fault)?;
    if u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) != version {
        return Err(-EACCES);
    }
    if !env.privileged() {
        return Err(-EPERM);
    }
    Err(-ENOSYS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::Outcome;
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
