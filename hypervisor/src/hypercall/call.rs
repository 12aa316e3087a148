//! What every hypercall handler works with: the call as the vCPU made it,
//! what the vCPU does after it, and the calling vCPU and its domain
//! ([`Env`]), implemented on real domains by `env` and by a fake in tests.

use crate::arch::x86_64::hvm::vcpu_init::InitialState;
use crate::event::table::{Reply, Request};
use crate::memory::guest_mem::MemFault;
use xen_abi::Pod;
use xen_abi::errno::*;
use xen_abi::memory::E820Entry;
use xen_abi::vcpu::RunstateInfo;

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

pub fn fault(_: MemFault) -> i64 {
    -EFAULT
}

pub fn read_arg<T: Pod>(env: &impl Env, gva: u64) -> Result<T, i64> {
    let mut v = T::zeroed();
    env.read(gva, v.as_bytes_mut()).map_err(fault)?;
    Ok(v)
}
