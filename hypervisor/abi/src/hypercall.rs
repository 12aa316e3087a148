//! Hypercall numbers (`__HYPERVISOR_*`, xen/include/public/xen.h).

pub const SET_TRAP_TABLE: u64 = 0;
pub const MMU_UPDATE: u64 = 1;
pub const SET_GDT: u64 = 2;
pub const STACK_SWITCH: u64 = 3;
pub const SET_CALLBACKS: u64 = 4;
pub const FPU_TASKSWITCH: u64 = 5;
pub const SCHED_OP_COMPAT: u64 = 6;
pub const PLATFORM_OP: u64 = 7;
pub const SET_DEBUGREG: u64 = 8;
pub const GET_DEBUGREG: u64 = 9;
pub const UPDATE_DESCRIPTOR: u64 = 10;
pub const MEMORY_OP: u64 = 12;
pub const MULTICALL: u64 = 13;
pub const UPDATE_VA_MAPPING: u64 = 14;
pub const SET_TIMER_OP: u64 = 15;
pub const EVENT_CHANNEL_OP_COMPAT: u64 = 16;
pub const XEN_VERSION: u64 = 17;
pub const CONSOLE_IO: u64 = 18;
pub const PHYSDEV_OP_COMPAT: u64 = 19;
pub const GRANT_TABLE_OP: u64 = 20;
pub const VM_ASSIST: u64 = 21;
pub const UPDATE_VA_MAPPING_OTHERDOMAIN: u64 = 22;
pub const IRET: u64 = 23;
pub const VCPU_OP: u64 = 24;
pub const SET_SEGMENT_BASE: u64 = 25;
pub const MMUEXT_OP: u64 = 26;
pub const XSM_OP: u64 = 27;
pub const NMI_OP: u64 = 28;
pub const SCHED_OP: u64 = 29;
pub const CALLBACK_OP: u64 = 30;
pub const XENOPROF_OP: u64 = 31;
pub const EVENT_CHANNEL_OP: u64 = 32;
pub const PHYSDEV_OP: u64 = 33;
pub const HVM_OP: u64 = 34;
pub const SYSCTL: u64 = 35;
pub const DOMCTL: u64 = 36;
pub const KEXEC_OP: u64 = 37;
pub const ARGO_OP: u64 = 39;
pub const XENPMU_OP: u64 = 40;
pub const DM_OP: u64 = 41;
pub const HYPFS_OP: u64 = 42;

/// Slots in the hypercall page (32 bytes each).
pub const PAGE_SLOTS: usize = 128;
pub const PAGE_SLOT_SIZE: usize = 32;
