//! The length of the guest instruction that caused an exit.
//!
//! With NRIP save the CPU says where the next instruction starts. Without it
//! (QEMU's emulated SVM) the hypervisor must work it out from the bytes at
//! the guest's RIP. The few instructions that exit are almost always in
//! their plain encoding, which is matched exactly (no guessing: the bytes
//! are compared); anything else (prefixes, odd encodings) is decoded in full
//! by `iced-x86`, and the decoded instruction must be the one the exit
//! reported.

use iced_x86::{Code, Decoder, DecoderOptions};

/// The instruction an exit says the guest executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Vmmcall,
    Vmcall,
    Cpuid,
    Rdmsr,
    Wrmsr,
    Hlt,
    Invd,
    Wbinvd,
    Xsetbv,
    Monitor,
    Mwait,
    Vmrun,
    Vmload,
    Vmsave,
    Stgi,
    Clgi,
    Skinit,
    Rdpmc,
    Pause,
}

impl Expected {
    /// The plain encoding.
    fn bytes(self) -> &'static [u8] {
        match self {
            Expected::Vmmcall => &[0x0f, 0x01, 0xd9],
            Expected::Vmcall => &[0x0f, 0x01, 0xc1],
            Expected::Cpuid => &[0x0f, 0xa2],
            Expected::Rdmsr => &[0x0f, 0x32],
            Expected::Wrmsr => &[0x0f, 0x30],
            Expected::Hlt => &[0xf4],
            Expected::Invd => &[0x0f, 0x08],
            Expected::Wbinvd => &[0x0f, 0x09],
            Expected::Xsetbv => &[0x0f, 0x01, 0xd1],
            Expected::Monitor => &[0x0f, 0x01, 0xc8],
            Expected::Mwait => &[0x0f, 0x01, 0xc9],
            Expected::Vmrun => &[0x0f, 0x01, 0xd8],
            Expected::Vmload => &[0x0f, 0x01, 0xda],
            Expected::Vmsave => &[0x0f, 0x01, 0xdb],
            Expected::Stgi => &[0x0f, 0x01, 0xdc],
            Expected::Clgi => &[0x0f, 0x01, 0xdd],
            Expected::Skinit => &[0x0f, 0x01, 0xde],
            Expected::Rdpmc => &[0x0f, 0x33],
            Expected::Pause => &[0xf3, 0x90],
        }
    }

    fn matches(self, code: Code) -> bool {
        use Code::*;
        match self {
            Expected::Vmmcall => code == Vmmcall,
            Expected::Vmcall => code == Vmcall,
            Expected::Cpuid => code == Cpuid,
            Expected::Rdmsr => code == Rdmsr,
            Expected::Wrmsr => code == Wrmsr,
            Expected::Hlt => code == Hlt,
            Expected::Invd => code == Invd,
            Expected::Wbinvd => code == Wbinvd,
            Expected::Xsetbv => code == Xsetbv,
            Expected::Monitor => matches!(code, Monitorw | Monitord | Monitorq),
            Expected::Mwait => code == Mwait,
            Expected::Vmrun => matches!(code, Vmrunw | Vmrund | Vmrunq),
            Expected::Vmload => matches!(code, Vmloadw | Vmloadd | Vmloadq),
            Expected::Vmsave => matches!(code, Vmsavew | Vmsaved | Vmsaveq),
            Expected::Stgi => code == Stgi,
            Expected::Clgi => code == Clgi,
            Expected::Skinit => code == Skinit,
            Expected::Rdpmc => code == Rdpmc,
            Expected::Pause => code == Pause,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsnError {
    /// The bytes do not decode to a valid instruction.
    Invalid,
    /// They decode to something other than what the exit reported (the
    /// guest changed its code, or another vCPU did).
    Mismatch { expected: Expected, len: usize },
}

/// The length of the instruction at the start of `bytes` (up to 15 bytes
/// fetched from the guest's RIP), which must be `expected`. `bitness` is
/// 16, 32 or 64 (the guest's code-segment mode).
pub fn length(bytes: &[u8], bitness: u32, expected: Expected) -> Result<usize, InsnError> {
    let plain = expected.bytes();
    // The hot path (every hypercall, CPUID and MSR exit without NRIP save):
    // one masked 32-bit compare instead of a memcmp call.
    if let Some(head) = bytes.first_chunk::<4>() {
        let mut want = [0u8; 4];
        want[..plain.len()].copy_from_slice(plain);
        let mask = u32::MAX >> (8 * (4 - plain.len()));
        if u32::from_le_bytes(*head) & mask == u32::from_le_bytes(want) {
            return Ok(plain.len());
        }
    } else if bytes.starts_with(plain) {
        return Ok(plain.len());
    }
    let mut d = Decoder::new(bitness, bytes, DecoderOptions::NONE);
    let insn = d.decode();
    if insn.is_invalid() {
        return Err(InsnError::Invalid);
    }
    if !expected.matches(insn.code()) {
        return Err(InsnError::Mismatch { expected, len: insn.len() });
    }
    Ok(insn.len())
}

/// Decodes one instruction, for `Vmcall` on AMD (#UD intercept) and reports.
pub fn decode_code(bytes: &[u8], bitness: u32) -> Option<(Code, usize)> {
    let mut d = Decoder::new(bitness, bytes, DecoderOptions::NONE);
    let insn = d.decode();
    if insn.is_invalid() { None } else { Some((insn.code(), insn.len())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_encodings_take_the_fast_path() {
        assert_eq!(length(&[0x0f, 0x01, 0xd9, 0xc3], 64, Expected::Vmmcall), Ok(3));
        assert_eq!(length(&[0x0f, 0xa2, 0x00], 32, Expected::Cpuid), Ok(2));
        assert_eq!(length(&[0xf4], 16, Expected::Hlt), Ok(1));
        assert_eq!(length(&[0x0f, 0x30], 64, Expected::Wrmsr), Ok(2));
    }

    #[test]
    fn prefixed_forms_are_decoded_in_full() {
        // A redundant operand-size and a segment prefix on CPUID.
        assert_eq!(length(&[0x66, 0x2e, 0x0f, 0xa2, 0x90], 64, Expected::Cpuid), Ok(4));
        // REX.W on RDMSR.
        assert_eq!(length(&[0x48, 0x0f, 0x32], 64, Expected::Rdmsr), Ok(3));
        // An address-size prefix on VMRUN (rAX form).
        assert_eq!(length(&[0x67, 0x0f, 0x01, 0xd8], 64, Expected::Vmrun), Ok(4));
    }

    #[test]
    fn bytes_that_are_not_the_reported_instruction_are_refused() {
        assert_eq!(
            length(&[0x90, 0x90, 0x90], 64, Expected::Cpuid),
            Err(InsnError::Mismatch { expected: Expected::Cpuid, len: 1 })
        );
        assert_eq!(length(&[0x0f, 0xff], 64, Expected::Hlt), Err(InsnError::Invalid));
        // The other vendor's hypercall differs only in the third byte.
        assert_eq!(
            length(&[0x0f, 0x01, 0xc1, 0xc3, 0x90], 64, Expected::Vmmcall),
            Err(InsnError::Mismatch { expected: Expected::Vmmcall, len: 3 })
        );
        assert_eq!(length(&[], 64, Expected::Hlt), Err(InsnError::Invalid));
        // Truncated: the fetch stopped at an unmapped page.
        assert_eq!(length(&[0x66, 0x0f], 64, Expected::Cpuid), Err(InsnError::Invalid));
    }

    #[test]
    fn vmcall_is_recognised_for_the_cross_vendor_path() {
        assert_eq!(decode_code(&[0x0f, 0x01, 0xc1], 64), Some((Code::Vmcall, 3)));
        assert_eq!(decode_code(&[0x0f, 0x0b], 64), Some((Code::Ud2, 2)));
    }
}
