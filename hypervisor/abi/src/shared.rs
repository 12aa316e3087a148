//! The shared_info page and vcpu_info (xen/include/public/xen.h, x86-64):
//! byte offsets, as the hypervisor writes these in place in guest memory.

/// `struct vcpu_time_info` (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VcpuTimeInfo {
    /// Odd while an update is in progress.
    pub version: u32,
    pub pad0: u32,
    pub tsc_timestamp: u64,
    /// Nanoseconds since the hypervisor booted.
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    pub flags: u8,
    pub pad1: [u8; 2],
}

crate::pod!(VcpuTimeInfo);

pub const PVCLOCK_TSC_STABLE: u8 = 1 << 0;
pub const PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// `struct vcpu_info` is 64 bytes.
pub const VCPU_INFO_SIZE: usize = 64;
pub const VCPU_INFO_UPCALL_PENDING: usize = 0;
pub const VCPU_INFO_UPCALL_MASK: usize = 1;
pub const VCPU_INFO_PENDING_SEL: usize = 8;
pub const VCPU_INFO_TIME: usize = 32;

/// vcpu_info slots in shared_info (XEN_LEGACY_MAX_VCPUS).
pub const LEGACY_MAX_VCPUS: u32 = 32;
pub const SHARED_EVTCHN_PENDING: usize = 0x800;
pub const SHARED_EVTCHN_MASK: usize = 0xa00;
pub const SHARED_WC_VERSION: usize = 0xc00;
pub const SHARED_WC_SEC: usize = 0xc04;
pub const SHARED_WC_NSEC: usize = 0xc08;
pub const SHARED_WC_SEC_HI: usize = 0xc0c;
