//! The hypercall table: one row per family, in the manner of Xen's
//! `hypercall-defs.c` and its per-guest-type tables. A row says which
//! handler serves the number, how a 32-bit caller's arguments are taken,
//! and who may make the call at all; a number without a row is -ENOSYS.
//! Checks on what a call does to which domain are the handlers' (through
//! `perm`).

use super::call::{Args, Call, Outcome};
use super::console_io::{ConsoleEnv, console_io};
use super::control::{domctl, kexec_op, platform_op, sysctl};
use super::event_channel_op::{EventEnv, event_channel_op};
use super::grant_table_op::{GrantEnv, grant_table_op};
use super::hvm_op::{HvmEnv, hvm_op};
use super::memory_op::{MemoryEnv, memory_op};
use super::perm::Perm;
use super::physdev_op::{PhysdevEnv, physdev_op};
use super::sched_op::{SchedEnv, sched_op, set_timer_op};
use super::vcpu_op::{VcpuEnv, vcpu_op};
use super::xen_version::{VersionEnv, xen_version};
use core::marker::PhantomData;
use xen_abi::errno::*;
use xen_abi::hypercall as nr;

/// Everything a caller must offer to reach every family.
pub trait Env:
    ConsoleEnv + VersionEnv + SchedEnv + VcpuEnv + HvmEnv + MemoryEnv + EventEnv + GrantEnv + PhysdevEnv
{
}

impl<T: ConsoleEnv + VersionEnv + SchedEnv + VcpuEnv + HvmEnv + MemoryEnv + EventEnv + GrantEnv + PhysdevEnv> Env
    for T
{
}

/// How a 32-bit caller's register arguments are taken (structures in
/// guest memory are the handler's, which knows their compat layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compat {
    /// Each argument is the low 32 bits of its register.
    Truncate,
    /// One 64-bit value in the first two registers, low half first
    /// (set_timer_op).
    SplitU64,
}

/// One hypercall family.
pub struct Family<E> {
    pub nr: u64,
    pub name: &'static str,
    pub handler: fn(&mut E, &Args) -> Outcome,
    pub compat: Compat,
    /// Who may make the call at all (-EPERM for the others).
    pub callers: Perm,
}

impl<E> Clone for Family<E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for Family<E> {}

/// Hypercall numbers the table can hold (the hypercall page's slots).
pub const NR_HYPERCALLS: usize = xen_abi::hypercall::PAGE_SLOTS;

/// The families a PVH guest may call, by number.
pub struct Table<E>(PhantomData<E>);

impl<E: Env> Table<E> {
    pub const ROWS: [Option<Family<E>>; NR_HYPERCALLS] = rows();
}

const fn rows<E: Env>() -> [Option<Family<E>>; NR_HYPERCALLS] {
    use Compat::*;
    let families: [Family<E>; 14] = [
        Family { nr: nr::CONSOLE_IO, name: "console_io", handler: console_io, compat: Truncate, callers: Perm::Any },
        Family { nr: nr::XEN_VERSION, name: "xen_version", handler: xen_version, compat: Truncate, callers: Perm::Any },
        Family { nr: nr::SCHED_OP, name: "sched_op", handler: sched_op, compat: Truncate, callers: Perm::Any },
        Family {
            nr: nr::SET_TIMER_OP,
            name: "set_timer_op",
            handler: set_timer_op,
            compat: SplitU64,
            callers: Perm::Any,
        },
        Family { nr: nr::VCPU_OP, name: "vcpu_op", handler: vcpu_op, compat: Truncate, callers: Perm::Any },
        Family { nr: nr::HVM_OP, name: "hvm_op", handler: hvm_op, compat: Truncate, callers: Perm::Any },
        Family { nr: nr::MEMORY_OP, name: "memory_op", handler: memory_op, compat: Truncate, callers: Perm::Any },
        Family {
            nr: nr::EVENT_CHANNEL_OP,
            name: "event_channel_op",
            handler: event_channel_op,
            compat: Truncate,
            callers: Perm::Any,
        },
        Family {
            nr: nr::GRANT_TABLE_OP,
            name: "grant_table_op",
            handler: grant_table_op,
            compat: Truncate,
            callers: Perm::Any,
        },
        // domctl, sysctl and platform_op check their interface version
        // before the caller (Xen's order), so the handler checks.
        Family { nr: nr::DOMCTL, name: "domctl", handler: domctl, compat: Truncate, callers: Perm::Any },
        Family { nr: nr::SYSCTL, name: "sysctl", handler: sysctl, compat: Truncate, callers: Perm::Any },
        Family { nr: nr::PLATFORM_OP, name: "platform_op", handler: platform_op, compat: Truncate, callers: Perm::Any },
        Family { nr: nr::KEXEC_OP, name: "kexec_op", handler: kexec_op, compat: Truncate, callers: Perm::Control },
        Family {
            nr: nr::PHYSDEV_OP,
            name: "physdev_op",
            handler: physdev_op,
            compat: Truncate,
            callers: Perm::Control,
        },
    ];
    let mut table = [None; NR_HYPERCALLS];
    let mut i = 0;
    while i < families.len() {
        let f = families[i];
        assert!(table[f.nr as usize].is_none(), "two families with one number");
        table[f.nr as usize] = Some(f);
        i += 1;
    }
    table
}

impl Args {
    /// The arguments a family's handler gets.
    pub fn of(call: &Call, compat: Compat) -> Args {
        let a = if call.long_mode {
            call.args
        } else {
            let low = call.args.map(|x| x & 0xffff_ffff);
            match compat {
                Compat::Truncate => low,
                Compat::SplitU64 => [low[0] | low[1] << 32, 0, low[2], low[3], low[4]],
            }
        };
        Args { a, long_mode: call.long_mode }
    }
}

/// The 32-byte hypercall-page slots: `mov eax, i; <insn>; ret` with the
/// backend's hypercall instruction (VMMCALL or VMCALL), padded with int3;
/// slot 23 (`iret`) is `ud2`.
pub fn hypercall_page(insn: &[u8]) -> [u8; 4096] {
    let mut p = [0xccu8; 4096];
    for i in 0..NR_HYPERCALLS {
        let s = &mut p[i * 32..i * 32 + 32];
        if i as u64 == nr::IRET {
            s[0] = 0x0f;
            s[1] = 0x0b;
            continue;
        }
        s[0] = 0xb8;
        s[1..5].copy_from_slice(&(i as u32).to_le_bytes());
        s[5..5 + insn.len()].copy_from_slice(insn);
        s[5 + insn.len()] = 0xc3;
    }
    p
}

/// Handles one hypercall from a vCPU at privilege level `cpl`.
pub fn dispatch<E: Env>(env: &mut E, call: Call, cpl: u8) -> Outcome {
    // Xen refuses hypercalls from guest user mode.
    if cpl > 0 {
        return Outcome::Done(-EPERM);
    }
    let Some(Some(family)) = usize::try_from(call.nr).ok().and_then(|n| Table::<E>::ROWS.get(n)) else {
        return Outcome::Done(-ENOSYS);
    };
    if family.callers != Perm::Any && !env.caller().may(family.callers, None) {
        return Outcome::Done(-EPERM);
    }
    (family.handler)(env, &Args::of(&call, family.compat))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::insn::Expected;
    use crate::hypercall::fake::{Fake, call};

    #[test]
    fn unknown_hypercalls_and_user_mode_callers_are_refused() {
        let mut f = Fake::new(3);
        assert_eq!(call(&mut f, 11, [0; 5]), Outcome::Done(-ENOSYS));
        assert_eq!(call(&mut f, 99_999, [1, 2, 3, 4, 5]), Outcome::Done(-ENOSYS));
        assert_eq!(call(&mut f, u64::MAX, [0; 5]), Outcome::Done(-ENOSYS));
        assert_eq!(call(&mut f, nr::PHYSDEV_OP_COMPAT, [0; 5]), Outcome::Done(-ENOSYS));
        let r = dispatch(&mut f, Call { nr: nr::XEN_VERSION, args: [0; 5], long_mode: true }, 3);
        assert_eq!(r, Outcome::Done(-EPERM));
    }

    #[test]
    fn each_row_sits_at_its_number_and_says_who_may_call() {
        let rows = Table::<Fake>::ROWS;
        let named: Vec<(u64, &str)> = rows.iter().flatten().map(|f| (f.nr, f.name)).collect();
        assert_eq!(named.len(), 14);
        for (i, row) in rows.iter().enumerate() {
            if let Some(f) = row {
                assert_eq!(f.nr as usize, i, "{} is filed under {i}", f.name);
            }
        }
        let row = |n: u64| rows[n as usize].unwrap();
        assert_eq!((row(nr::KEXEC_OP).callers, row(nr::XEN_VERSION).callers), (Perm::Control, Perm::Any));
        assert_eq!(row(nr::SET_TIMER_OP).compat, Compat::SplitU64);
        assert_eq!(row(nr::MEMORY_OP).compat, Compat::Truncate);
        // Only the control domain gets past kexec_op's row.
        let mut f = Fake::new(3);
        assert_eq!(call(&mut f, nr::KEXEC_OP, [0; 5]), Outcome::Done(-EPERM));
        f.privileged = true;
        assert_eq!(call(&mut f, nr::KEXEC_OP, [0; 5]), Outcome::Done(-ENOSYS));
    }

    #[test]
    fn a_32_bit_callers_arguments_follow_the_row() {
        let call32 =
            Call { nr: nr::SET_TIMER_OP, args: [0xdead_0000_0010, 0xbeef_0000_0001, 7, 8, 9], long_mode: false };
        assert_eq!(Args::of(&call32, Compat::SplitU64).a, [0x1_0000_0010, 0, 7, 8, 9]);
        assert_eq!(Args::of(&call32, Compat::Truncate).a, [0x10, 1, 7, 8, 9]);
        let call64 = Call { long_mode: true, ..call32 };
        assert_eq!(Args::of(&call64, Compat::SplitU64).a, call64.args);
    }

    #[test]
    fn hypercall_page_layout() {
        let p = hypercall_page(Expected::Vmmcall.encoding());
        assert_eq!(&p[0..9], &[0xb8, 0, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3]);
        assert_eq!(&p[18 * 32..18 * 32 + 9], &[0xb8, 18, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3]);
        assert_eq!(&p[23 * 32..23 * 32 + 3], &[0x0f, 0x0b, 0xcc]);
        assert!(p[9..32].iter().all(|&b| b == 0xcc));
        let i = hypercall_page(Expected::Vmcall.encoding());
        assert_eq!(&i[32..41], &[0xb8, 1, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3]);
    }
}
