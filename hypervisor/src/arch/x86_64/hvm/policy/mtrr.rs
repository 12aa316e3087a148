//! A vCPU's MTRRs, as Xen's hvm/mtrr.c keeps them for an HVM guest:
//! MTRRcap with 8 variable ranges, fixed ranges and write-combining; the
//! default type, the 11 fixed-range registers and the variable ranges,
//! each checked on write. A PVH domU starts with the default type
//! write-back and enabled and nothing else (what Xen's toolstack sets).
//! The guest's memory types are not applied to the nested page tables
//! (they map RAM write-back and the guest's PAT still applies).

pub const CAP: u32 = 0xfe;
pub const DEF_TYPE: u32 = 0x2ff;
pub const FIX64K_00000: u32 = 0x250;
pub const FIX16K_80000: u32 = 0x258;
pub const FIX16K_A0000: u32 = 0x259;
pub const FIX4K_C0000: u32 = 0x268;
pub const FIX4K_F8000: u32 = 0x26f;
pub const PHYSBASE0: u32 = 0x200;
/// Xen's MTRR_VCNT_MAX: the MSR range variable ranges may occupy.
const PHYS_LAST: u32 = FIX64K_00000 - 1;
/// Variable ranges a domU has (Xen's MTRR_VCNT).
pub const VCNT: usize = 8;
/// MTRRcap: WC, fixed ranges, VCNT variable ranges.
pub const CAP_VALUE: u64 = 1 << 10 | 1 << 8 | VCNT as u64;
const DEF_E: u64 = 1 << 11;
const WRBACK: u64 = 6;

/// The access raises #GP in the guest.
pub use super::super::msr::Gp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mtrr {
    def_type: u64,
    fixed: [u64; 11],
    /// Base and mask of each variable range, interleaved as the MSRs are.
    var: [u64; 2 * VCNT],
}

impl Default for Mtrr {
    fn default() -> Self {
        Self::new()
    }
}

fn valid_type(t: u8) -> bool {
    matches!(t, 0 | 1 | 4 | 5 | 6)
}

/// The fixed-range register `msr` is, or None.
fn fixed_index(msr: u32) -> Option<usize> {
    match msr {
        FIX64K_00000 => Some(0),
        FIX16K_80000 | FIX16K_A0000 => Some((msr - FIX16K_80000) as usize + 1),
        FIX4K_C0000..=FIX4K_F8000 => Some((msr - FIX4K_C0000) as usize + 3),
        _ => None,
    }
}

impl Mtrr {
    /// A PVH domU's vCPU: default type write-back, enabled.
    pub const fn new() -> Mtrr {
        Mtrr { def_type: WRBACK | DEF_E, fixed: [0; 11], var: [0; 2 * VCNT] }
    }

    /// Whether `msr` is an MTRR register.
    pub fn owns(msr: u32) -> bool {
        matches!(msr, CAP | DEF_TYPE | PHYSBASE0..=PHYS_LAST) || fixed_index(msr).is_some()
    }

    /// Reads `msr` (one `owns` accepts).
    pub fn read(&self, msr: u32) -> Result<u64, Gp> {
        match msr {
            CAP => Ok(CAP_VALUE),
            DEF_TYPE => Ok(self.def_type),
            PHYSBASE0..=PHYS_LAST => self.var.get((msr - PHYSBASE0) as usize).copied().ok_or(Gp),
            _ => fixed_index(msr).map(|i| self.fixed[i]).ok_or(Gp),
        }
    }

    /// Writes `value` to `msr`; `phys_bits` is the guest's address width.
    pub fn write(&mut self, msr: u32, value: u64, phys_bits: u8) -> Result<(), Gp> {
        match msr {
            CAP => Err(Gp),
            DEF_TYPE => {
                if !valid_type(value as u8) || value & !0xcff != 0 {
                    return Err(Gp);
                }
                self.def_type = value;
                Ok(())
            }
            PHYSBASE0..=PHYS_LAST => {
                let i = (msr - PHYSBASE0) as usize;
                if i >= self.var.len() || !valid_type(value as u8) {
                    return Err(Gp);
                }
                let above = !((1u64 << phys_bits.min(63)) - 1);
                let reserved = above | if i % 2 == 1 { 0x7ff } else { 0xf00 };
                if value & reserved != 0 {
                    return Err(Gp);
                }
                self.var[i] = value;
                Ok(())
            }
            _ => {
                let i = fixed_index(msr).ok_or(Gp)?;
                if !value.to_le_bytes().into_iter().all(valid_type) {
                    return Err(Gp);
                }
                self.fixed[i] = value;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pvh_domu_starts_write_back_with_no_ranges() {
        let m = Mtrr::new();
        assert_eq!(m.read(CAP), Ok(0x508));
        assert_eq!(m.read(DEF_TYPE), Ok(0x806));
        for msr in [FIX64K_00000, FIX16K_80000, FIX16K_A0000, FIX4K_C0000, FIX4K_F8000, 0x200, 0x20f] {
            assert!(Mtrr::owns(msr));
            assert_eq!(m.read(msr), Ok(0), "{msr:#x}");
        }
        assert!(!Mtrr::owns(0x251) && !Mtrr::owns(0x1ff) && !Mtrr::owns(0x270));
        // Xen's range for variable MTRRs reaches 0x24f; beyond VCNT faults.
        assert!(Mtrr::owns(0x24f));
        assert_eq!(m.read(0x210), Err(Gp));
    }

    #[test]
    fn writes_are_checked_as_xen_checks_them() {
        let mut m = Mtrr::new();
        assert_eq!(m.write(CAP, 0x508, 40), Err(Gp));
        assert_eq!(m.write(DEF_TYPE, 0xc06, 40), Ok(()));
        assert_eq!(m.read(DEF_TYPE), Ok(0xc06));
        assert_eq!(m.write(DEF_TYPE, 0x802, 40), Err(Gp), "type 2");
        assert_eq!(m.write(DEF_TYPE, 0x1806, 40), Err(Gp), "reserved bit 12");
        assert_eq!(m.write(DEF_TYPE, 0, 40), Ok(()), "off, uncached");
        assert_eq!(m.write(FIX4K_C0000, 0x0606_0606_0505_0404, 40), Ok(()));
        assert_eq!(m.read(FIX4K_C0000), Ok(0x0606_0606_0505_0404));
        assert_eq!(m.write(FIX4K_C0000, 0x0700, 40), Err(Gp));
        assert_eq!(m.write(0x200, 0x8000_0006, 40), Ok(()));
        assert_eq!(m.write(0x201, 0xff_f000_0800, 40), Ok(()));
        assert_eq!(m.read(0x201), Ok(0xff_f000_0800));
        assert_eq!(m.write(0x201, 0x1ff_f000_0800, 40), Err(Gp), "above the address width");
        assert_eq!(m.write(0x201, 0xff_f000_0801, 40), Err(Gp), "mask bits 0-10");
        assert_eq!(m.write(0x200, 0x8000_0106, 40), Err(Gp), "base bits 8-11");
        assert_eq!(m.write(0x200, 0x8000_0003, 40), Err(Gp), "type 3");
        assert_eq!(m.write(0x210, 0, 40), Err(Gp), "range 8");
    }
}
