//! Hypercalls with Xen's numbers, structures and errors: dispatch here,
//! one file per family.
//!
//! Handlers see the calling domain through [`Env`], so their semantics
//! (argument checks, error codes, continuations) are tested on the host
//! against a fake domain (`fake`); the bare-metal implementation of `Env`
//! is `env`. Behaviour follows Xen 4.17 (see docs/abi-coverage.md for what
//! is implemented and how it differs).

mod call;
pub mod console_io;
pub mod control;
#[cfg(target_os = "none")]
pub mod env;
pub mod event_channel_op;
#[cfg(test)]
pub(crate) mod fake;
pub mod grant_table_op;
pub mod hvm_op;
pub mod memory_op;
pub mod page;
pub mod sched_op;
pub mod vcpu_op;
pub mod xen_version;

pub use call::{Call, Env, Extent, Outcome, fault, read_arg};
use xen_abi::errno::*;
use xen_abi::hypercall as nr;

/// Handles one hypercall from a vCPU at `cpl`.
pub fn dispatch(env: &mut impl Env, call: Call, cpl: u8) -> Outcome {
    // Xen refuses hypercalls from guest user mode.
    if cpl > 0 {
        return Outcome::Done(-EPERM);
    }
    let a = if call.long_mode { call.args } else { call.args.map(|x| x & 0xffff_ffff) };
    let r = match call.nr {
        nr::CONSOLE_IO => return console_io::console_io(env, a),
        nr::XEN_VERSION => xen_version::xen_version(env, a[0], a[1], call.long_mode),
        nr::SCHED_OP => return sched_op::sched_op(env, a[0], a[1]),
        nr::HVM_OP => hvm_op::hvm_op(env, a[0], a[1]),
        nr::VCPU_OP => return vcpu_op::vcpu_op(env, a[0], a[1], a[2], call.long_mode),
        nr::SET_TIMER_OP => {
            sched_op::set_timer_op(env, if call.long_mode { call.args[0] } else { a[0] | (a[1] << 32) })
        }
        nr::EVENT_CHANNEL_OP => event_channel_op::event_channel_op(env, a[0], a[1]),
        nr::DOMCTL => control::control_op(env, a[0], control::DOMCTL_INTERFACE_VERSION),
        nr::SYSCTL => control::control_op(env, a[0], control::SYSCTL_INTERFACE_VERSION),
        nr::PLATFORM_OP => control::control_op(env, a[0], control::PLATFORM_INTERFACE_VERSION),
        nr::KEXEC_OP if !env.privileged() => Err(-EPERM),
        nr::GRANT_TABLE_OP => return grant_table_op::grant_table_op(env, a[0], a[1], a[2], call.long_mode),
        nr::MEMORY_OP => return memory_op::memory_op_outer(env, a[0], a[1], call.long_mode),
        _ => Err(-ENOSYS),
    };
    Outcome::Done(r.unwrap_or_else(|e| e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::fake::{Fake, call};

    #[test]
    fn unknown_hypercalls_and_user_mode_callers() {
        let mut f = Fake::new(3);
        assert_eq!(call(&mut f, 11, [0; 5]), Outcome::Done(-ENOSYS));
        assert_eq!(call(&mut f, 99_999, [1, 2, 3, 4, 5]), Outcome::Done(-ENOSYS));
        assert_eq!(call(&mut f, nr::PHYSDEV_OP, [0; 5]), Outcome::Done(-ENOSYS));
        let r = dispatch(&mut f, Call { nr: nr::XEN_VERSION, args: [0; 5], long_mode: true }, 3);
        assert_eq!(r, Outcome::Done(-EPERM));
    }
}
