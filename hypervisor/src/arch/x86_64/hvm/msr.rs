//! Guest MSR accesses the run loop keeps in the hardware state (EFER, PAT,
//! the TSC and TSC_ADJUST); the rest of Xen's list is `policy::msrs`.
//! Unknown MSRs raise #GP, as in Xen since 4.15.

pub const EFER: u32 = 0xc000_0080;
pub const TSC: u32 = 0x10;
pub const TSC_ADJUST: u32 = 0x3b;
pub const APIC_BASE: u32 = 0x1b;
pub const PAT: u32 = 0x277;

/// The access raises #GP in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gp;

/// The guest's TSC offset and IA32_TSC_ADJUST after the guest writes
/// `value` to IA32_TSC: the TSC reads `value` now, and TSC_ADJUST moves
/// by as much as the TSC did (the SDM's rule, and Xen's
/// hvm_set_guest_tsc_msr). Returns (offset, adjust).
pub fn tsc_write(offset: u64, adjust: u64, host_tsc: u64, value: u64) -> (u64, u64) {
    let new_offset = value.wrapping_sub(host_tsc);
    (new_offset, adjust.wrapping_add(new_offset.wrapping_sub(offset)))
}

/// The same after a write of `value` to IA32_TSC_ADJUST: the TSC moves by
/// the change (Xen's hvm_set_guest_tsc_adjust). Returns (offset, adjust).
pub fn tsc_adjust_write(offset: u64, adjust: u64, value: u64) -> (u64, u64) {
    (offset.wrapping_add(value.wrapping_sub(adjust)), value)
}

/// Whether every byte of a PAT value is a valid memory type.
pub fn pat_valid(v: u64) -> bool {
    (0..8).all(|i| matches!((v >> (i * 8)) & 0xff, 0 | 1 | 4 | 5 | 6 | 7))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_and_tsc_adjust_move_together() {
        let host = 1_000_000u64;
        // The guest sets its TSC to 5000: TSC_ADJUST records the jump.
        let (off, adj) = tsc_write(0, 0, host, 5000);
        assert_eq!(host.wrapping_add(off), 5000);
        assert_eq!(adj, off, "TSC_ADJUST moved as much as the TSC");
        // Writing TSC_ADJUST back to 0 undoes the jump.
        let (off2, adj2) = tsc_adjust_write(off, adj, 0);
        assert_eq!((off2, adj2), (0, 0));
        // Adding 100 to TSC_ADJUST adds 100 to the TSC.
        let (off3, adj3) = tsc_adjust_write(off2, adj2, 100);
        assert_eq!((host.wrapping_add(off3), adj3), (host + 100, 100));
        // Negative adjustments wrap as two's complement.
        let (off4, adj4) = tsc_adjust_write(off3, adj3, (-50i64) as u64);
        assert_eq!(host.wrapping_add(off4), host - 50);
        assert_eq!(adj4 as i64, -50);
    }

    #[test]
    fn pat_types() {
        assert!(pat_valid(0x0007_0406_0007_0406));
        assert!(!pat_valid(0x0007_0406_0007_0402), "type 2 is reserved");
        assert!(!pat_valid(0x0807_0406_0007_0406));
    }
}
