//! VMCS field encodings and control bits (Intel SDM vol. 3 appendix B and
//! chapter 24; the same numbers as Linux's `asm/vmx.h`).

// 16-bit fields.
pub const VPID: u64 = 0x0000;
pub const GUEST_ES_SELECTOR: u64 = 0x0800;
pub const GUEST_CS_SELECTOR: u64 = 0x0802;
pub const GUEST_SS_SELECTOR: u64 = 0x0804;
pub const GUEST_DS_SELECTOR: u64 = 0x0806;
pub const GUEST_FS_SELECTOR: u64 = 0x0808;
pub const GUEST_GS_SELECTOR: u64 = 0x080a;
pub const GUEST_LDTR_SELECTOR: u64 = 0x080c;
pub const GUEST_TR_SELECTOR: u64 = 0x080e;
pub const HOST_ES_SELECTOR: u64 = 0x0c00;
pub const HOST_CS_SELECTOR: u64 = 0x0c02;
pub const HOST_SS_SELECTOR: u64 = 0x0c04;
pub const HOST_DS_SELECTOR: u64 = 0x0c06;
pub const HOST_FS_SELECTOR: u64 = 0x0c08;
pub const HOST_GS_SELECTOR: u64 = 0x0c0a;
pub const HOST_TR_SELECTOR: u64 = 0x0c0c;

// 64-bit fields.
pub const IO_BITMAP_A: u64 = 0x2000;
pub const IO_BITMAP_B: u64 = 0x2002;
pub const MSR_BITMAP: u64 = 0x2004;
pub const VM_EXIT_MSR_STORE_ADDR: u64 = 0x2006;
pub const VM_EXIT_MSR_LOAD_ADDR: u64 = 0x2008;
pub const VM_ENTRY_MSR_LOAD_ADDR: u64 = 0x200a;
pub const TSC_OFFSET: u64 = 0x2010;
pub const EPT_POINTER: u64 = 0x201a;
pub const GUEST_PHYSICAL_ADDRESS: u64 = 0x2400;
pub const VMCS_LINK_POINTER: u64 = 0x2800;
pub const GUEST_IA32_DEBUGCTL: u64 = 0x2802;
pub const GUEST_IA32_PAT: u64 = 0x2804;
pub const GUEST_IA32_EFER: u64 = 0x2806;
pub const HOST_IA32_PAT: u64 = 0x2c00;
pub const HOST_IA32_EFER: u64 = 0x2c02;

// 32-bit fields.
pub const PIN_BASED_CONTROLS: u64 = 0x4000;
pub const PRIMARY_CONTROLS: u64 = 0x4002;
pub const EXCEPTION_BITMAP: u64 = 0x4004;
pub const PAGE_FAULT_ERROR_CODE_MASK: u64 = 0x4006;
pub const PAGE_FAULT_ERROR_CODE_MATCH: u64 = 0x4008;
pub const CR3_TARGET_COUNT: u64 = 0x400a;
pub const EXIT_CONTROLS: u64 = 0x400c;
pub const EXIT_MSR_STORE_COUNT: u64 = 0x400e;
pub const EXIT_MSR_LOAD_COUNT: u64 = 0x4010;
pub const ENTRY_CONTROLS: u64 = 0x4012;
pub const ENTRY_MSR_LOAD_COUNT: u64 = 0x4014;
pub const ENTRY_INTERRUPTION_INFO: u64 = 0x4016;
pub const ENTRY_EXCEPTION_ERROR_CODE: u64 = 0x4018;
pub const ENTRY_INSTRUCTION_LEN: u64 = 0x401a;
pub const TPR_THRESHOLD: u64 = 0x401c;
pub const SECONDARY_CONTROLS: u64 = 0x401e;
pub const VM_INSTRUCTION_ERROR: u64 = 0x4400;
pub const EXIT_REASON: u64 = 0x4402;
pub const EXIT_INTERRUPTION_INFO: u64 = 0x4404;
pub const EXIT_INTERRUPTION_ERROR_CODE: u64 = 0x4406;
pub const IDT_VECTORING_INFO: u64 = 0x4408;
pub const IDT_VECTORING_ERROR_CODE: u64 = 0x440a;
pub const EXIT_INSTRUCTION_LEN: u64 = 0x440c;
pub const EXIT_INSTRUCTION_INFO: u64 = 0x440e;
pub const GUEST_ES_LIMIT: u64 = 0x4800;
pub const GUEST_CS_LIMIT: u64 = 0x4802;
pub const GUEST_SS_LIMIT: u64 = 0x4804;
pub const GUEST_DS_LIMIT: u64 = 0x4806;
pub const GUEST_FS_LIMIT: u64 = 0x4808;
pub const GUEST_GS_LIMIT: u64 = 0x480a;
pub const GUEST_LDTR_LIMIT: u64 = 0x480c;
pub const GUEST_TR_LIMIT: u64 = 0x480e;
pub const GUEST_GDTR_LIMIT: u64 = 0x4810;
pub const GUEST_IDTR_LIMIT: u64 = 0x4812;
pub const GUEST_ES_AR: u64 = 0x4814;
pub const GUEST_CS_AR: u64 = 0x4816;
pub const GUEST_SS_AR: u64 = 0x4818;
pub const GUEST_DS_AR: u64 = 0x481a;
pub const GUEST_FS_AR: u64 = 0x481c;
pub const GUEST_GS_AR: u64 = 0x481e;
pub const GUEST_LDTR_AR: u64 = 0x4820;
pub const GUEST_TR_AR: u64 = 0x4822;
pub const GUEST_INTERRUPTIBILITY: u64 = 0x4824;
pub const GUEST_ACTIVITY_STATE: u64 = 0x4826;
pub const GUEST_SYSENTER_CS: u64 = 0x482a;
pub const GUEST_PREEMPTION_TIMER: u64 = 0x482e;
pub const HOST_SYSENTER_CS: u64 = 0x4c00;

// Natural-width fields.
pub const CR0_GUEST_HOST_MASK: u64 = 0x6000;
pub const CR4_GUEST_HOST_MASK: u64 = 0x6002;
pub const CR0_READ_SHADOW: u64 = 0x6004;
pub const CR4_READ_SHADOW: u64 = 0x6006;
pub const EXIT_QUALIFICATION: u64 = 0x6400;
pub const GUEST_LINEAR_ADDRESS: u64 = 0x640a;
pub const GUEST_CR0: u64 = 0x6800;
pub const GUEST_CR3: u64 = 0x6802;
pub const GUEST_CR4: u64 = 0x6804;
pub const GUEST_ES_BASE: u64 = 0x6806;
pub const GUEST_CS_BASE: u64 = 0x6808;
pub const GUEST_SS_BASE: u64 = 0x680a;
pub const GUEST_DS_BASE: u64 = 0x680c;
pub const GUEST_FS_BASE: u64 = 0x680e;
pub const GUEST_GS_BASE: u64 = 0x6810;
pub const GUEST_LDTR_BASE: u64 = 0x6812;
pub const GUEST_TR_BASE: u64 = 0x6814;
pub const GUEST_GDTR_BASE: u64 = 0x6816;
pub const GUEST_IDTR_BASE: u64 = 0x6818;
pub const GUEST_DR7: u64 = 0x681a;
pub const GUEST_RSP: u64 = 0x681c;
pub const GUEST_RIP: u64 = 0x681e;
pub const GUEST_RFLAGS: u64 = 0x6820;
pub const GUEST_PENDING_DBG_EXCEPTIONS: u64 = 0x6822;
pub const GUEST_SYSENTER_ESP: u64 = 0x6824;
pub const GUEST_SYSENTER_EIP: u64 = 0x6826;
pub const HOST_CR0: u64 = 0x6c00;
pub const HOST_CR3: u64 = 0x6c02;
pub const HOST_CR4: u64 = 0x6c04;
pub const HOST_FS_BASE: u64 = 0x6c06;
pub const HOST_GS_BASE: u64 = 0x6c08;
pub const HOST_TR_BASE: u64 = 0x6c0a;
pub const HOST_GDTR_BASE: u64 = 0x6c0c;
pub const HOST_IDTR_BASE: u64 = 0x6c0e;
pub const HOST_SYSENTER_ESP: u64 = 0x6c10;
pub const HOST_SYSENTER_EIP: u64 = 0x6c12;
pub const HOST_RSP: u64 = 0x6c14;
pub const HOST_RIP: u64 = 0x6c16;

// Pin-based controls.
pub const PIN_EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
pub const PIN_NMI_EXITING: u32 = 1 << 3;
pub const PIN_PREEMPTION_TIMER: u32 = 1 << 6;

// Primary processor-based controls.
pub const CPU_INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
pub const CPU_USE_TSC_OFFSETTING: u32 = 1 << 3;
pub const CPU_HLT_EXITING: u32 = 1 << 7;
pub const CPU_INVLPG_EXITING: u32 = 1 << 9;
pub const CPU_MWAIT_EXITING: u32 = 1 << 10;
pub const CPU_RDPMC_EXITING: u32 = 1 << 11;
pub const CPU_RDTSC_EXITING: u32 = 1 << 12;
pub const CPU_CR3_LOAD_EXITING: u32 = 1 << 15;
pub const CPU_CR3_STORE_EXITING: u32 = 1 << 16;
pub const CPU_CR8_LOAD_EXITING: u32 = 1 << 19;
pub const CPU_CR8_STORE_EXITING: u32 = 1 << 20;
pub const CPU_MOV_DR_EXITING: u32 = 1 << 23;
pub const CPU_UNCONDITIONAL_IO_EXITING: u32 = 1 << 24;
pub const CPU_USE_IO_BITMAPS: u32 = 1 << 25;
pub const CPU_USE_MSR_BITMAPS: u32 = 1 << 28;
pub const CPU_MONITOR_EXITING: u32 = 1 << 29;
pub const CPU_ACTIVATE_SECONDARY: u32 = 1 << 31;

// Secondary processor-based controls.
pub const CPU2_ENABLE_EPT: u32 = 1 << 1;
pub const CPU2_ENABLE_RDTSCP: u32 = 1 << 3;
pub const CPU2_ENABLE_VPID: u32 = 1 << 5;
pub const CPU2_WBINVD_EXITING: u32 = 1 << 6;
pub const CPU2_UNRESTRICTED_GUEST: u32 = 1 << 7;

// VM-exit controls.
pub const EXIT_SAVE_DEBUG_CONTROLS: u32 = 1 << 2;
pub const EXIT_HOST_ADDRESS_SPACE_SIZE: u32 = 1 << 9;
pub const EXIT_SAVE_PAT: u32 = 1 << 18;
pub const EXIT_LOAD_PAT: u32 = 1 << 19;
pub const EXIT_SAVE_EFER: u32 = 1 << 20;
pub const EXIT_LOAD_EFER: u32 = 1 << 21;

// VM-entry controls.
pub const ENTRY_LOAD_DEBUG_CONTROLS: u32 = 1 << 2;
pub const ENTRY_IA32E_MODE_GUEST: u32 = 1 << 9;
pub const ENTRY_LOAD_PAT: u32 = 1 << 14;
pub const ENTRY_LOAD_EFER: u32 = 1 << 15;

// Basic exit reasons.
pub const EXIT_EXCEPTION_NMI: u32 = 0;
pub const EXIT_EXTERNAL_INTERRUPT: u32 = 1;
pub const EXIT_TRIPLE_FAULT: u32 = 2;
pub const EXIT_INIT: u32 = 3;
pub const EXIT_SIPI: u32 = 4;
pub const EXIT_INTERRUPT_WINDOW: u32 = 7;
pub const EXIT_NMI_WINDOW: u32 = 8;
pub const EXIT_TASK_SWITCH: u32 = 9;
pub const EXIT_CPUID: u32 = 10;
pub const EXIT_GETSEC: u32 = 11;
pub const EXIT_HLT: u32 = 12;
pub const EXIT_INVD: u32 = 13;
pub const EXIT_INVLPG: u32 = 14;
pub const EXIT_RDPMC: u32 = 15;
pub const EXIT_RDTSC: u32 = 16;
pub const EXIT_VMCALL: u32 = 18;
pub const EXIT_VMCLEAR: u32 = 19;
pub const EXIT_VMLAUNCH: u32 = 20;
pub const EXIT_VMPTRLD: u32 = 21;
pub const EXIT_VMPTRST: u32 = 22;
pub const EXIT_VMREAD: u32 = 23;
pub const EXIT_VMRESUME: u32 = 24;
pub const EXIT_VMWRITE: u32 = 25;
pub const EXIT_VMXOFF: u32 = 26;
pub const EXIT_VMXON: u32 = 27;
pub const EXIT_CR_ACCESS: u32 = 28;
pub const EXIT_DR_ACCESS: u32 = 29;
pub const EXIT_IO: u32 = 30;
pub const EXIT_RDMSR: u32 = 31;
pub const EXIT_WRMSR: u32 = 32;
pub const EXIT_INVALID_GUEST_STATE: u32 = 33;
pub const EXIT_MSR_LOADING: u32 = 34;
pub const EXIT_MWAIT: u32 = 36;
pub const EXIT_MONITOR: u32 = 39;
pub const EXIT_PAUSE: u32 = 40;
pub const EXIT_MACHINE_CHECK: u32 = 41;
pub const EXIT_EPT_VIOLATION: u32 = 48;
pub const EXIT_EPT_MISCONFIG: u32 = 49;
pub const EXIT_INVEPT: u32 = 50;
pub const EXIT_RDTSCP: u32 = 51;
pub const EXIT_PREEMPTION_TIMER: u32 = 52;
pub const EXIT_INVVPID: u32 = 53;
pub const EXIT_WBINVD: u32 = 54;
pub const EXIT_XSETBV: u32 = 55;
pub const EXIT_RDRAND: u32 = 57;
pub const EXIT_INVPCID: u32 = 58;
pub const EXIT_VMFUNC: u32 = 59;
pub const EXIT_RDSEED: u32 = 61;
pub const EXIT_XSAVES: u32 = 63;
pub const EXIT_XRSTORS: u32 = 64;

/// Exit reason bit 31: the VM entry itself failed.
pub const EXIT_REASON_ENTRY_FAILURE: u64 = 1 << 31;

// Interruption information (entry, exit, IDT vectoring).
pub const INTR_VALID: u32 = 1 << 31;
pub const INTR_ERROR_VALID: u32 = 1 << 11;
pub const INTR_TYPE_EXTERNAL: u32 = 0 << 8;
pub const INTR_TYPE_NMI: u32 = 2 << 8;
pub const INTR_TYPE_HW_EXCEPTION: u32 = 3 << 8;
pub const INTR_TYPE_SW_INTERRUPT: u32 = 4 << 8;
pub const INTR_TYPE_PRIV_SW_EXCEPTION: u32 = 5 << 8;
pub const INTR_TYPE_SW_EXCEPTION: u32 = 6 << 8;

/// Access rights of an unusable segment.
pub const AR_UNUSABLE: u64 = 1 << 16;

/// What a VM-instruction error number means (SDM 30.4).
pub fn instruction_error(n: u64) -> &'static str {
    match n {
        0 => "none",
        1 => "VMCALL executed in VMX root operation",
        2 => "VMCLEAR with invalid physical address",
        3 => "VMCLEAR with VMXON pointer",
        4 => "VMLAUNCH with non-clear VMCS",
        5 => "VMRESUME with non-launched VMCS",
        6 => "VMRESUME after VMXOFF",
        7 => "VM entry with invalid control field(s)",
        8 => "VM entry with invalid host-state field(s)",
        9 => "VMPTRLD with invalid physical address",
        10 => "VMPTRLD with VMXON pointer",
        11 => "VMPTRLD with incorrect VMCS revision identifier",
        12 => "VMREAD/VMWRITE from/to unsupported VMCS component",
        13 => "VMWRITE to read-only VMCS component",
        15 => "VMXON executed in VMX root operation",
        16 => "VM entry with invalid executive-VMCS pointer",
        17 => "VM entry with non-launched executive VMCS",
        18 => "VM entry with executive-VMCS pointer not VMXON pointer",
        19 => "VMCALL with non-clear VMCS",
        20 => "VMCALL with invalid VM-exit control fields",
        22 => "VMCALL with incorrect MSEG revision identifier",
        23 => "VMXOFF under dual-monitor treatment of SMIs and SMM",
        24 => "VMCALL with invalid SMM-monitor features",
        25 => "VM entry with invalid VM-execution control fields in executive VMCS",
        26 => "VM entry with events blocked by MOV SS",
        28 => "invalid operand to INVEPT/INVVPID",
        _ => "unknown VM-instruction error",
    }
}
