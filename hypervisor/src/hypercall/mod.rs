//! Hypercalls with Xen's numbers, structures and errors: dispatch here,
//! one file per family.
//!
//! Handlers see the calling domain through [`Env`], so their semantics
//! (argument checks, error codes, continuations) are tested on the host
//! against a fake domain (`fake`); the bare-metal implementation of `Env`
//! is `env`. Behaviour follows Xen 4.17 (see docs/abi-coverage.md for what
//! is implemented and how it differs).

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

use crate::arch::x86_64::hvm::vcpu_init::InitialState;
use crate::event::table::{Reply, Request};
use crate::memory::guest_mem::MemFault;
use xen_abi::errno::*;
use xen_abi::memory::E820Entry;
use xen_abi::vcpu::RunstateInfo;
use xen_abi::{Pod, hypercall as nr};

/// A hypercall as the vCPU made it.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub nr: u64,
    pub args: [u64; 5],
    /// The caller runs in 64-bit mode (else the 32-bit compat layouts apply).
    pub long_mode: bool,
}

/// What the vCPU does after the hypercall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Return this value in rax and go on.
    Done(i64),
    /// Not finished: re-execute the hypercall with these arguments.
    Continue([u64; 5]),
    /// Return 0 and let another vCPU run.
    Yield,
    /// Return 0 and wait for an event.
    Block,
    /// The domain is shutting down with this reason.
    Shutdown(u8),
    /// Return 0 and take the calling vCPU down (VCPUOP_down on itself).
    Down,
}

/// The calling vCPU and its domain, as handlers may use them.
pub trait Env {
    fn domid(&self) -> u16;
    fn vcpu_id(&self) -> u32;
    fn nr_vcpus(&self) -> u32;
    fn privileged(&self) -> bool;
    /// Whether a domain with this id exists.
    fn domain_exists(&self, domid: u16) -> bool;
    /// Copies from the caller's guest-virtual memory.
    fn read(&self, gva: u64, buf: &mut [u8]) -> Result<(), MemFault>;
    /// Copies to the caller's guest-virtual memory.
    fn write(&mut self, gva: u64, buf: &[u8]) -> Result<(), MemFault>;
    /// One character of guest console output (line-buffered by the callee).
    fn console_put(&mut self, byte: u8);
    fn param(&self, domid: u16, index: u32) -> u64;
    fn set_param(&mut self, domid: u16, index: u32, value: u64);
    /// Maps the caller's shared_info page at `gpfn` (moving it if it was
    /// mapped elsewhere, freeing a RAM page that was there).
    fn map_shared_info(&mut self, gpfn: u64) -> Result<(), i64>;
    /// The caller's memory map (None if it has none).
    fn memory_map(&self) -> Option<&[E820Entry]>;
    fn handle(&self) -> [u8; 16];
    fn hypervisor_cmdline(&self) -> &str;
    fn now_ns(&self) -> u64;
    fn set_upcall_vector(&mut self, vcpu: u32, vector: u8);
    fn flush_guest_tlbs(&mut self);
    /// Shuts another domain down (the caller's privilege is checked first).
    fn shutdown_domain(&mut self, domid: u16, reason: u8);
    /// Latches the shutdown code for a later shutdown.
    fn set_shutdown_code(&mut self, reason: u8);

    // vCPUs of the caller's domain (`vcpu` < nr_vcpus, checked first).
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
    fn set_runstate_area(&mut self, vcpu: u32, gva: u64);
    /// Registers a guest-virtual copy of vcpu_time_info.
    fn set_time_area(&mut self, vcpu: u32, gva: u64);
    fn register_vcpu_info(&mut self, vcpu: u32, gfn: u64, offset: u32) -> Result<(), i64>;
    /// 0 stops it.
    fn set_periodic_timer(&mut self, vcpu: u32, period_ns: u64);
    /// The caller's singleshot timer (None stops it); a deadline already
    /// past raises the timer event at once.
    fn set_singleshot_timer(&mut self, deadline: Option<u64>);
    fn send_nmi(&mut self, vcpu: u32);
    /// CR4 bits a vCPU may have.
    fn cr4_valid(&self) -> u64;
    /// Whether event channel `port` is pending (-EINVAL for a port the
    /// domain cannot have).
    fn port_pending(&self, port: u32) -> Result<bool, i64>;
    /// Starts a poll: the caller wakes when `port` (None: any port) turns
    /// pending, or at `deadline` (0: none).
    fn set_poll(&mut self, port: Option<u32>, deadline: u64);
    /// Ends a poll that found a port pending before it blocked.
    fn cancel_poll(&mut self);

    // Event channels (`common::evtchn`): domains resolved and known to
    // exist; the caller's permission checks are done by the parser.
    fn evtchn(&mut self, req: Request) -> Result<Reply, i64>;

    // Grant tables (`common::grant`), each returning a GNTST_* status.
    /// Maps a grant; the handle on success.
    fn grant_map(&mut self, op: &xen_abi::grant_table::MapGrantRef) -> (i16, u32);
    fn grant_unmap(&mut self, op: &xen_abi::grant_table::UnmapGrantRef) -> i16;
    fn grant_copy(&mut self, op: &xen_abi::grant_table::Copy) -> i16;
    /// Frames and maximum frames of `domid`'s table, grown to `grow_to`
    /// frames first if asked.
    fn grant_table_size(&mut self, domid: u16, grow_to: Option<u32>) -> Result<(u32, u32), i16>;
    /// Where grant frame `idx` of `domid` is mapped (INVALID_GFN if not).
    fn grant_frame_gfn(&self, domid: u16, idx: u32) -> u64;
    /// XENMAPSPACE_grant_table: maps the caller's grant frame `idx` at
    /// `gpfn`, growing the table to it.
    fn map_grant_frame(&mut self, idx: u32, gpfn: u64) -> Result<(), i64>;

    // Memory reservation of `domid` (checked to exist and be the caller's
    // to change).
    /// (pages it has, pages it may have).
    fn reservation(&self, domid: u16) -> (u64, u64);
    /// One extent of increase/decrease_reservation or populate_physmap:
    /// false stops the operation there.
    fn extent(&mut self, op: Extent, domid: u16, gfn: u64, order: u32) -> bool;
    /// The highest guest frame `domid` has mapped.
    fn maximum_gpfn(&self, domid: u16) -> u64;
    /// The highest host frame number (XENMEM_maximum_ram_page).
    fn maximum_ram_page(&self) -> u64;
}

/// What an extent operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// Adds pages to the domain without placing them (what
    /// increase_reservation does for a translated guest).
    Increase,
    /// Takes the domain's RAM at the extent away.
    Decrease,
    /// Gives the domain new zeroed RAM at the extent.
    Populate,
}

pub(crate) fn fault(_: MemFault) -> i64 {
    -EFAULT
}

pub(crate) fn read_arg<T: Pod>(env: &impl Env, gva: u64) -> Result<T, i64> {
    let mut v = T::zeroed();
    env.read(gva, v.as_bytes_mut()).map_err(fault)?;
    Ok(v)
}

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
