//! `vcpu_op(cmd, vcpuid, arg)` (xen/include/public/vcpu.h) and the HVM
//! initial-state structure of VCPUOP_initialise
//! (xen/include/public/hvm/hvm_vcpu.h).

use crate::pod;

pub const VCPUOP_INITIALISE: u64 = 0;
pub const VCPUOP_UP: u64 = 1;
pub const VCPUOP_DOWN: u64 = 2;
pub const VCPUOP_IS_UP: u64 = 3;
pub const VCPUOP_GET_RUNSTATE_INFO: u64 = 4;
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u64 = 5;
pub const VCPUOP_SET_PERIODIC_TIMER: u64 = 6;
pub const VCPUOP_STOP_PERIODIC_TIMER: u64 = 7;
pub const VCPUOP_SET_SINGLESHOT_TIMER: u64 = 8;
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u64 = 9;
pub const VCPUOP_REGISTER_VCPU_INFO: u64 = 10;
pub const VCPUOP_SEND_NMI: u64 = 11;
pub const VCPUOP_GET_PHYSID: u64 = 12;
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u64 = 13;
pub const VCPUOP_REGISTER_RUNSTATE_PHYS_AREA: u64 = 14;
pub const VCPUOP_REGISTER_VCPU_TIME_PHYS_AREA: u64 = 15;

pub const RUNSTATE_RUNNING: u32 = 0;
pub const RUNSTATE_RUNNABLE: u32 = 1;
pub const RUNSTATE_BLOCKED: u32 = 2;
pub const RUNSTATE_OFFLINE: u32 = 3;

/// `VCPU_SSHOTTMR_future`: fail with -ETIME if the timeout has passed.
pub const SSHOTTMR_FUTURE: u32 = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunstateInfo {
    pub state: u32,
    pub _pad: u32,
    pub state_entry_time: u64,
    pub time: [u64; 4],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SetPeriodicTimer {
    pub period_ns: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SetSingleshotTimer {
    pub timeout_abs_ns: u64,
    pub flags: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RegisterVcpuInfo {
    /// Guest frame (GFN for HVM guests) of the page holding vcpu_info.
    pub mfn: u64,
    pub offset: u32,
    pub rsvd: u32,
}

/// VCPUOP_register_runstate_memory_area and
/// VCPUOP_register_vcpu_time_memory_area: a guest-virtual address.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RegisterArea {
    pub addr: u64,
}

pub const VCPU_HVM_MODE_32B: u32 = 0;
pub const VCPU_HVM_MODE_64B: u32 = 1;

/// `struct vcpu_hvm_x86_32`. Segment attributes (`*_ar`): type 0-3, s 4,
/// dpl 5-6, p 7, avl 8, l 9, db 10, g 11, 12-15 zero.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct VcpuHvmX86_32 {
    pub eax: u32,
    pub ecx: u32,
    pub edx: u32,
    pub ebx: u32,
    pub esp: u32,
    pub ebp: u32,
    pub esi: u32,
    pub edi: u32,
    pub eip: u32,
    pub eflags: u32,
    pub cr0: u32,
    pub cr3: u32,
    pub cr4: u32,
    pub pad1: u32,
    pub efer: u64,
    pub cs_base: u32,
    pub ds_base: u32,
    pub ss_base: u32,
    pub es_base: u32,
    pub tr_base: u32,
    pub cs_limit: u32,
    pub ds_limit: u32,
    pub ss_limit: u32,
    pub es_limit: u32,
    pub tr_limit: u32,
    pub cs_ar: u16,
    pub ds_ar: u16,
    pub ss_ar: u16,
    pub es_ar: u16,
    pub tr_ar: u16,
    pub pad2: [u16; 3],
}

/// `struct vcpu_hvm_x86_64`: starts in long mode with flat segments.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct VcpuHvmX86_64 {
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rbx: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

/// `struct vcpu_hvm_context`: `mode`, padding, then the larger of the two
/// register sets (the 32-bit one, 120 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VcpuHvmContext {
    pub mode: u32,
    pub pad: u32,
    pub regs: [u8; 120],
}

impl Default for VcpuHvmContext {
    fn default() -> Self {
        VcpuHvmContext { mode: 0, pad: 0, regs: [0; 120] }
    }
}

pod!(
    RunstateInfo,
    SetPeriodicTimer,
    SetSingleshotTimer,
    RegisterVcpuInfo,
    RegisterArea,
    VcpuHvmX86_32,
    VcpuHvmX86_64,
    VcpuHvmContext
);
