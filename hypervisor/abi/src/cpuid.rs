//! The hypervisor CPUID leaves (xen/include/public/arch-x86/cpuid.h).

pub const BASE: u32 = 0x4000_0000;
/// "XenVMMXenVMM" in EBX, ECX, EDX.
pub const SIGNATURE_EBX: u32 = 0x566e_6558;
pub const SIGNATURE_ECX: u32 = 0x6558_4d4d;
pub const SIGNATURE_EDX: u32 = 0x4d4d_566e;

/// Leaf base+4 EAX: HVM-specific features.
pub const HVM_APIC_ACCESS_VIRT: u32 = 1 << 0;
pub const HVM_X2APIC_VIRT: u32 = 1 << 1;
pub const HVM_IOMMU_MAPPINGS: u32 = 1 << 2;
/// EBX holds the vCPU id.
pub const HVM_VCPU_ID_PRESENT: u32 = 1 << 3;
/// ECX holds the domain id.
pub const HVM_DOMID_PRESENT: u32 = 1 << 4;
pub const HVM_EXT_DEST_ID: u32 = 1 << 5;
/// HVMOP_set_evtchn_upcall_vector is available.
pub const HVM_UPCALL_VECTOR: u32 = 1 << 6;

/// MSR through which a guest asks for the hypercall page (leaf base+2 EBX).
pub const HYPERCALL_PAGE_MSR: u32 = 0x4000_0000;
