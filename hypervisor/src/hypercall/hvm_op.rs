//! `hvm_op`: HVM parameters (with Xen's rules for which a guest may read
//! or set on itself), the event-channel upcall vector, TLB flushes and the
//! time.

use super::call::{Args, Guest, GuestHandle, Outcome};
use super::perm::{self, Perm};
use xen_abi::DOMID_SELF;
use xen_abi::errno::*;
use xen_abi::hvm::{self, EvtchnUpcallVector, HvmParam};

/// Params no one may use any more.
fn param_deprecated(i: u32) -> bool {
    matches!(i, 4 | 13 | 20..=26 | 30)
}

/// Params a guest may set on itself (Xen's hvm_allow_set_param).
fn param_guest_settable(i: u32) -> bool {
    matches!(
        i,
        hvm::PARAM_CALLBACK_IRQ
            | hvm::PARAM_VM86_TSS
            | hvm::PARAM_VM86_TSS_SIZED
            | hvm::PARAM_ACPI_IOPORTS_LOCATION
            | hvm::PARAM_VM_GENERATION_ID_ADDR
            | hvm::PARAM_STORE_EVTCHN
            | hvm::PARAM_CONSOLE_EVTCHN
            | hvm::PARAM_X87_FIP_WIDTH
    )
}

/// Params a guest may read on itself (Xen's hvm_allow_get_param).
fn param_guest_readable(i: u32) -> bool {
    param_guest_settable(i) || matches!(i, hvm::PARAM_STORE_PFN | hvm::PARAM_CONSOLE_PFN | hvm::PARAM_ALTP2M)
}

/// What hvm_op needs of the caller.
pub trait HvmEnv: Guest {
    fn param(&self, domid: u16, index: u32) -> u64;
    fn set_param(&mut self, domid: u16, index: u32, value: u64);
    fn set_upcall_vector(&mut self, vcpu: u32, vector: u8);
    /// Every vCPU of the caller's domain drops its cached translations.
    fn flush_guest_tlbs(&mut self);
}

/// hvm_op(op, arg).
pub fn hvm_op<E: HvmEnv>(env: &mut E, args: &Args) -> Outcome {
    Outcome::of(hvm_op_inner(env, args.a[0], args.a[1]))
}

fn hvm_op_inner(env: &mut impl HvmEnv, op: u64, arg: u64) -> Result<i64, i64> {
    match op {
        hvm::HVMOP_SET_PARAM | hvm::HVMOP_GET_PARAM => {
            let h = GuestHandle::<HvmParam>::new(arg);
            let mut p = h.read(env)?;
            if p.index >= hvm::NR_PARAMS {
                return Err(-EINVAL);
            }
            // Xen's xsm_hvm_param.
            let target = perm::target(env, p.domid, Perm::Target)?;
            let own = target == env.domid();
            if param_deprecated(p.index) {
                return Err(-EINVAL);
            }
            if op == hvm::HVMOP_SET_PARAM {
                if own && !param_guest_settable(p.index) {
                    return Err(-EPERM);
                }
                match p.index {
                    hvm::PARAM_X87_FIP_WIDTH if !matches!(p.value, 0 | 4 | 8) => return Err(-EINVAL),
                    hvm::PARAM_ACPI_S_STATE if !matches!(p.value, 0 | 3) => return Err(-EINVAL),
                    hvm::PARAM_TIMER_MODE if p.value > 3 => return Err(-EINVAL),
                    hvm::PARAM_VM86_TSS if p.value >> 32 != 0 => return Err(-EINVAL),
                    _ => {}
                }
                env.set_param(target, p.index, p.value);
                Ok(0)
            } else {
                if own && !param_guest_readable(p.index) {
                    return Err(-EPERM);
                }
                p.value = env.param(target, p.index);
                h.write(env, &p)?;
                Ok(0)
            }
        }
        hvm::HVMOP_SET_EVTCHN_UPCALL_VECTOR => {
            let v = GuestHandle::<EvtchnUpcallVector>::new(arg).read(env)?;
            if v.vector < 0x10 {
                return Err(-EINVAL);
            }
            if v.vcpu >= env.nr_vcpus() {
                return Err(-ENOENT);
            }
            env.set_upcall_vector(v.vcpu, v.vector);
            Ok(0)
        }
        hvm::HVMOP_PAGETABLE_DYING => {
            let d = GuestHandle::<hvm::PagetableDying>::new(arg).read(env)?;
            if d.domid != DOMID_SELF && d.domid != env.domid() {
                return Err(-EOPNOTSUPP);
            }
            // Only meaningful for shadow paging; nested paging says -EINVAL.
            Err(-EINVAL)
        }
        hvm::HVMOP_FLUSH_TLBS => {
            if arg != 0 {
                return Err(-EINVAL);
            }
            env.flush_guest_tlbs();
            Ok(0)
        }
        hvm::HVMOP_GET_TIME => {
            let now = env.now_ns();
            GuestHandle::<u64>::new(arg).write(env, &now)?;
            Ok(0)
        }
        _ => Err(-ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::fake::{Fake, call};
    use xen_abi::{Pod, hypercall as nr};

    fn param_at(f: &mut Fake, at: u64, domid: u16, index: u32, value: u64) {
        let p = HvmParam { domid, _pad: 0, index, value };
        f.put(at, p.as_bytes());
    }

    #[test]
    fn hvm_params_follow_xens_permission_rules() {
        let mut f = Fake::new(4);
        f.set_param(4, hvm::PARAM_STORE_PFN, 0xfeffc);
        // A guest may read STORE_PFN but not set it.
        param_at(&mut f, 0x40, DOMID_SELF, hvm::PARAM_STORE_PFN, 0);
        assert_eq!(call(&mut f, nr::HVM_OP, [1, 0x40, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(HvmParam::read_from(f.get(0x40, 16)).unwrap().value, 0xfeffc);
        assert_eq!(call(&mut f, nr::HVM_OP, [0, 0x40, 0, 0, 0]), Outcome::Done(-EPERM));
        // It may set CALLBACK_IRQ (vector type) and read it back.
        param_at(&mut f, 0x40, 4, hvm::PARAM_CALLBACK_IRQ, 2 << 56 | 0xf3);
        assert_eq!(call(&mut f, nr::HVM_OP, [0, 0x40, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.param(4, 0), 2 << 56 | 0xf3);
        // Index out of range, deprecated, not readable, another domain,
        // a missing domain, a bad value.
        for (domid, index, value, get, want) in [
            (DOMID_SELF, 39, 0, true, -EINVAL),
            (DOMID_SELF, 4, 0, true, -EINVAL),
            (DOMID_SELF, hvm::PARAM_IDENT_PT, 0, true, -EPERM),
            (7, hvm::PARAM_STORE_PFN, 0, true, -EPERM),
            (9, hvm::PARAM_STORE_PFN, 0, true, -ESRCH),
            (DOMID_SELF, hvm::PARAM_X87_FIP_WIDTH, 5, false, -EINVAL),
        ] {
            param_at(&mut f, 0x40, domid, index, value);
            let op = if get { 1 } else { 0 };
            assert_eq!(call(&mut f, nr::HVM_OP, [op, 0x40, 0, 0, 0]), Outcome::Done(want), "param {index} dom {domid}");
        }
        assert_eq!(call(&mut f, nr::HVM_OP, [1, 0xffff_0000_0000, 0, 0, 0]), Outcome::Done(-EFAULT));
        // The rules bind a privileged domain acting on itself too...
        f.privileged = true;
        param_at(&mut f, 0x40, DOMID_SELF, hvm::PARAM_STORE_PFN, 1);
        assert_eq!(call(&mut f, nr::HVM_OP, [0, 0x40, 0, 0, 0]), Outcome::Done(-EPERM));
        // ...but the control domain may read another domain's params.
        param_at(&mut f, 0x40, 7, hvm::PARAM_STORE_PFN, 0);
        assert_eq!(call(&mut f, nr::HVM_OP, [1, 0x40, 0, 0, 0]), Outcome::Done(0));
    }

    #[test]
    fn other_hvm_ops() {
        let mut f = Fake::new(4);
        f.put(0x80, &[1, 0, 0, 0, 0xf3, 0, 0, 0]);
        assert_eq!(call(&mut f, nr::HVM_OP, [23, 0x80, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.upcall, Some((1, 0xf3)));
        f.put(0x80, &[1, 0, 0, 0, 0x0f, 0, 0, 0]);
        assert_eq!(call(&mut f, nr::HVM_OP, [23, 0x80, 0, 0, 0]), Outcome::Done(-EINVAL));
        f.put(0x80, &[5, 0, 0, 0, 0xf3, 0, 0, 0]);
        assert_eq!(call(&mut f, nr::HVM_OP, [23, 0x80, 0, 0, 0]), Outcome::Done(-ENOENT));
        f.put(0x90, &[0xf0, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(call(&mut f, nr::HVM_OP, [9, 0x90, 0, 0, 0]), Outcome::Done(-EINVAL));
        f.put(0x90, &[7, 0]);
        assert_eq!(call(&mut f, nr::HVM_OP, [9, 0x90, 0, 0, 0]), Outcome::Done(-EOPNOTSUPP));
        assert_eq!(call(&mut f, nr::HVM_OP, [5, 0, 0, 0, 0]), Outcome::Done(0));
        assert!(f.flushed);
        assert_eq!(call(&mut f, nr::HVM_OP, [5, 0x10, 0, 0, 0]), Outcome::Done(-EINVAL));
        assert_eq!(call(&mut f, nr::HVM_OP, [10, 0x100, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.get(0x100, 8), &123_456u64.to_le_bytes());
        assert_eq!(call(&mut f, nr::HVM_OP, [77, 0, 0, 0, 0]), Outcome::Done(-ENOSYS));
    }
}
