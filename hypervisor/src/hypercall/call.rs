//! What every hypercall handler works with: the call as the vCPU made it
//! and its arguments, what the vCPU does after it, the calling guest
//! ([`Guest`]: who it is, its memory, which domains exist) and typed guest
//! handles for the structures an argument points at (Xen's
//! `XEN_GUEST_HANDLE` with `copy_from_guest` / `copy_to_guest`).
//!
//! Each family adds what it needs of the caller as a trait of its own
//! (`ConsoleEnv`, `SchedEnv`, ...); `env` implements them all on real
//! domains, and a test fake implements only what its tests exercise.

use crate::memory::guest_mem::MemFault;
use crate::mm::addr::Gva;
use core::marker::PhantomData;
use xen_abi::Pod;
use xen_abi::errno::*;

/// A hypercall as the vCPU made it.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub nr: u64,
    pub args: [u64; 5],
    /// The caller runs in 64-bit mode (else the 32-bit compat layouts apply).
    pub long_mode: bool,
}

/// A call's arguments as its family's handler gets them: 32-bit callers'
/// already taken as the family's row in the table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Args {
    pub a: [u64; 5],
    /// 64-bit caller: structures in guest memory have their 64-bit layout.
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

impl Outcome {
    /// A value or an error code, returned in rax.
    pub fn of(r: Result<i64, i64>) -> Outcome {
        Outcome::Done(r.unwrap_or_else(|e| e))
    }
}

/// The calling domain, as permission checks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub domid: u16,
    /// The control domain (dom0; Xen's `is_privileged`).
    pub privileged: bool,
    /// The xenstore domain (Xen's `is_xenstore`); xenstored runs in dom0
    /// until a stub domain takes it over.
    pub xenstore: bool,
    /// The domain this one is the device model for (Xen's `d->target`, set
    /// by the toolstack with DOMCTL_set_target).
    pub device_model_for: Option<u16>,
}

/// The calling vCPU and its domain, as every family sees them.
pub trait Guest {
    /// Who is calling, for permission checks (`perm`).
    fn caller(&self) -> Caller;
    fn vcpu_id(&self) -> u32;
    fn nr_vcpus(&self) -> u32;
    /// Whether a domain with this id exists.
    fn domain_exists(&self, domid: u16) -> bool;
    /// Copies from the caller's guest-virtual memory.
    fn read(&self, gva: Gva, buf: &mut [u8]) -> Result<(), MemFault>;
    /// Copies to the caller's guest-virtual memory.
    fn write(&mut self, gva: Gva, buf: &[u8]) -> Result<(), MemFault>;
    /// Xen's system time (ns since boot).
    fn now_ns(&self) -> u64;

    /// The caller's domain id.
    fn domid(&self) -> u16 {
        self.caller().domid
    }
}

/// An unreadable or unwritable guest address, as a hypercall reports it.
pub fn fault(_: MemFault) -> i64 {
    -EFAULT
}

/// A guest-virtual address where an argument structure `T` is (or an array
/// of them starts), in the caller's memory.
pub struct GuestHandle<T> {
    addr: Gva,
    _of: PhantomData<fn() -> T>,
}

impl<T> Clone for GuestHandle<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for GuestHandle<T> {}

impl<T> core::fmt::Debug for GuestHandle<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GuestHandle({:#x})", self.addr.0)
    }
}

impl<T> GuestHandle<T> {
    /// The handle an argument register holds.
    pub const fn new(addr: u64) -> GuestHandle<T> {
        GuestHandle { addr: Gva(addr), _of: PhantomData }
    }

    pub fn addr(&self) -> Gva {
        self.addr
    }

    /// Element `i` of an array of `T` starting here (guest addresses wrap,
    /// as the guest's own arithmetic would).
    pub fn at(&self, i: u64) -> GuestHandle<T> {
        GuestHandle::new(self.addr.0.wrapping_add(i.wrapping_mul(core::mem::size_of::<T>() as u64)))
    }

    /// The same memory read as another type (a 32-bit caller's layout, a
    /// field of the structure `bytes` in).
    pub fn cast<U>(&self, bytes: u64) -> GuestHandle<U> {
        GuestHandle::new(self.addr.0.wrapping_add(bytes))
    }
}

impl<T: Pod> GuestHandle<T> {
    /// copy_from_guest: the structure, or -EFAULT.
    pub fn read(&self, env: &(impl Guest + ?Sized)) -> Result<T, i64> {
        let mut v = T::zeroed();
        env.read(self.addr, v.as_bytes_mut()).map_err(fault)?;
        Ok(v)
    }

    /// copy_to_guest: the structure, or -EFAULT.
    pub fn write(&self, env: &mut (impl Guest + ?Sized), v: &T) -> Result<(), i64> {
        env.write(self.addr, v.as_bytes()).map_err(fault)
    }
}

impl GuestHandle<u8> {
    /// Bytes from here into `buf`, or -EFAULT.
    pub fn read_bytes(&self, env: &(impl Guest + ?Sized), buf: &mut [u8]) -> Result<(), i64> {
        env.read(self.addr, buf).map_err(fault)
    }

    /// `bytes` to here, or -EFAULT.
    pub fn write_bytes(&self, env: &mut (impl Guest + ?Sized), bytes: &[u8]) -> Result<(), i64> {
        env.write(self.addr, bytes).map_err(fault)
    }
}
