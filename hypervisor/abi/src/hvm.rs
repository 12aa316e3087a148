//! `hvm_op(op, arg)` and HVM parameters (xen/include/public/hvm/hvm_op.h,
//! params.h).

use crate::pod;

pub const HVMOP_SET_PARAM: u64 = 0;
pub const HVMOP_GET_PARAM: u64 = 1;
pub const HVMOP_SET_PCI_INTX_LEVEL: u64 = 2;
pub const HVMOP_SET_ISA_IRQ_LEVEL: u64 = 3;
pub const HVMOP_SET_PCI_LINK_ROUTE: u64 = 4;
pub const HVMOP_FLUSH_TLBS: u64 = 5;
pub const HVMOP_PAGETABLE_DYING: u64 = 9;
pub const HVMOP_GET_TIME: u64 = 10;
pub const HVMOP_XENTRACE: u64 = 11;
pub const HVMOP_SET_MEM_ACCESS: u64 = 12;
pub const HVMOP_GET_MEM_ACCESS: u64 = 13;
pub const HVMOP_INJECT_TRAP: u64 = 14;
pub const HVMOP_GET_MEM_TYPE: u64 = 15;
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u64 = 23;
pub const HVMOP_GUEST_REQUEST_VM_EVENT: u64 = 24;
pub const HVMOP_ALTP2M: u64 = 25;

pub const PARAM_CALLBACK_IRQ: u32 = 0;
pub const PARAM_STORE_PFN: u32 = 1;
pub const PARAM_STORE_EVTCHN: u32 = 2;
pub const PARAM_PAE_ENABLED: u32 = 4;
pub const PARAM_IOREQ_PFN: u32 = 5;
pub const PARAM_BUFIOREQ_PFN: u32 = 6;
pub const PARAM_VIRIDIAN: u32 = 9;
pub const PARAM_TIMER_MODE: u32 = 10;
pub const PARAM_HPET_ENABLED: u32 = 11;
pub const PARAM_IDENT_PT: u32 = 12;
pub const PARAM_ACPI_S_STATE: u32 = 14;
pub const PARAM_VM86_TSS: u32 = 15;
pub const PARAM_VPT_ALIGN: u32 = 16;
pub const PARAM_CONSOLE_PFN: u32 = 17;
pub const PARAM_CONSOLE_EVTCHN: u32 = 18;
pub const PARAM_ACPI_IOPORTS_LOCATION: u32 = 19;
pub const PARAM_NESTEDHVM: u32 = 24;
pub const PARAM_BUFIOREQ_EVTCHN: u32 = 26;
pub const PARAM_PAGING_RING_PFN: u32 = 27;
pub const PARAM_MONITOR_RING_PFN: u32 = 28;
pub const PARAM_SHARING_RING_PFN: u32 = 29;
pub const PARAM_TRIPLE_FAULT_REASON: u32 = 31;
pub const PARAM_IOREQ_SERVER_PFN: u32 = 32;
pub const PARAM_NR_IOREQ_SERVER_PAGES: u32 = 33;
pub const PARAM_VM_GENERATION_ID_ADDR: u32 = 34;
pub const PARAM_ALTP2M: u32 = 35;
pub const PARAM_X87_FIP_WIDTH: u32 = 36;
pub const PARAM_VM86_TSS_SIZED: u32 = 37;
pub const PARAM_MCA_CAP: u32 = 38;
pub const NR_PARAMS: u32 = 39;

/// CALLBACK_IRQ value: bits 63:56 give the type.
pub const CALLBACK_VIA_TYPE_SHIFT: u32 = 56;
pub const CALLBACK_VIA_TYPE_GSI: u64 = 0;
pub const CALLBACK_VIA_TYPE_PCI_INTX: u64 = 1;
pub const CALLBACK_VIA_TYPE_VECTOR: u64 = 2;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct HvmParam {
    pub domid: u16,
    pub _pad: u16,
    pub index: u32,
    pub value: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EvtchnUpcallVector {
    pub vcpu: u32,
    pub vector: u8,
    pub _pad: [u8; 3],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PagetableDying {
    pub domid: u16,
    pub _pad: [u16; 3],
    pub gpa: u64,
}

pod!(HvmParam, EvtchnUpcallVector, PagetableDying);
