//! Keeping vCPUs and domains apart on a shared CPU: TLB tags (ASIDs,
//! VPIDs) recycled with a generation (`asid`), the speculative-execution
//! measures and the speculation controls guests get (`spec`, `msrs`),
//! and, on the hardware, the per-vCPU state the CPU does not switch by
//! itself (`hw`: debug registers, PKRU, TSC_AUX, MSR_SPEC_CTRL) and the
//! work around every entry and exit. docs/architecture.md, "Isolation
//! between vCPUs", lists each measure.

pub mod asid;
pub mod msrs;
pub mod spec;

#[cfg(target_os = "none")]
pub mod hw;
