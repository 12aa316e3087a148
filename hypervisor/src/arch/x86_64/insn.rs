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

/// Every `Expected`, in declaration order (index = discriminant).
const ALL: [Expected; 19] = [
    Expected::Vmmcall,
    Expected::Vmcall,
    Expected::Cpuid,
    Expected::Rdmsr,
    Expected::Wrmsr,
    Expected::Hlt,
    Expected::Invd,
    Expected::Wbinvd,
    Expected::Xsetbv,
    Expected::Monitor,
    Expected::Mwait,
    Expected::Vmrun,
    Expected::Vmload,
    Expected::Vmsave,
    Expected::Stgi,
    Expected::Clgi,
    Expected::Skinit,
    Expected::Rdpmc,
    Expected::Pause,
];

/// Each plain encoding as (little-endian value, mask, length): the hot
/// path is one table load and one masked 32-bit compare.
static PATTERNS: [(u32, u32, usize); ALL.len()] = {
    let mut t = [(0, 0, 0); ALL.len()];
    let mut i = 0;
    while i < ALL.len() {
        assert!(ALL[i] as usize == i, "ALL is in declaration order");
        let b = ALL[i].encoding();
        let mut v = 0u32;
        let mut k = 0;
        while k < b.len() {
            v |= (b[k] as u32) << (8 * k);
            k += 1;
        }
        t[i] = (v, u32::MAX >> (8 * (4 - b.len())), b.len());
        i += 1;
    }
    t
};

impl Expected {
    /// The plain encoding (at most 4 bytes).
    pub const fn encoding(self) -> &'static [u8] {
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

    pub fn matches(self, code: Code) -> bool {
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
#[inline]
pub fn length(bytes: &[u8], bitness: u32, expected: Expected) -> Result<usize, InsnError> {
    // The hot path (every hypercall, CPUID and MSR exit without NRIP save):
    // one masked 32-bit compare instead of a memcmp call, inlined into the
    // caller; the decoder's frame is set up only when that fails.
    if let Some(head) = bytes.first_chunk::<4>() {
        let (want, mask, len) = PATTERNS[expected as usize];
        if u32::from_le_bytes(*head) & mask == want {
            return Ok(len);
        }
    } else if bytes.starts_with(expected.encoding()) {
        return Ok(expected.encoding().len());
    }
    length_decoded(bytes, bitness, expected)
}

/// `length` by a full decode (prefixes, other encodings).
#[inline(never)]
fn length_decoded(bytes: &[u8], bitness: u32, expected: Expected) -> Result<usize, InsnError> {
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

/// What an instruction that faulted on an emulated device page does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioKind {
    /// Loads into a general register (x86 number).
    Load {
        reg: u8,
    },
    /// MOVZX/MOVSX: loads `size` bytes, extended to `to` bytes.
    LoadExtend {
        reg: u8,
        to: u8,
        signed: bool,
    },
    Store {
        value: MmioValue,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioValue {
    Reg(u8),
    Imm(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioAccess {
    pub kind: MmioKind,
    /// Bytes accessed.
    pub size: u8,
    /// Instruction length.
    pub len: usize,
}

/// The x86 number of a general register (0 rax ... 15 r15) of any width;
/// None for the legacy high-byte registers and anything else.
fn gpr_number(r: iced_x86::Register) -> Option<u8> {
    use iced_x86::Register as R;
    let n = r as u32;
    let from = |first: R| n.checked_sub(first as u32).filter(|i| *i < 16).map(|i| i as u8);
    if let Some(i) = from(R::RAX).or_else(|| from(R::EAX)).or_else(|| from(R::AX)) {
        return Some(i);
    }
    // AL CL DL BL AH CH DH BH SPL BPL SIL DIL R8L..R15L
    match n.checked_sub(R::AL as u32)? {
        i @ 0..=3 => Some(i as u8),
        4..=7 => None,
        i @ 8..=19 => Some(i as u8 - 4),
        _ => None,
    }
}

/// Decodes the MOV forms guests use on device registers (load into a
/// register, store from a register or an immediate). Anything else is
/// None: the caller refuses it.
pub fn decode_mmio(bytes: &[u8], bitness: u32) -> Option<MmioAccess> {
    use iced_x86::Register as R;
    let mut d = Decoder::new(bitness, bytes, DecoderOptions::NONE);
    let insn = d.decode();
    if insn.is_invalid() {
        return None;
    }
    let load = |size: u8| Some((MmioKind::Load { reg: gpr_number(insn.op0_register())? }, size));
    let store = |size: u8| Some((MmioKind::Store { value: MmioValue::Reg(gpr_number(insn.op1_register())?) }, size));
    let imm = |size: u8| Some((MmioKind::Store { value: MmioValue::Imm(insn.immediate(1)) }, size));
    let acc = |size: u8, is_load: bool| {
        let r = if is_load { insn.op0_register() } else { insn.op1_register() };
        let reg = gpr_number(r).filter(|_| r != R::None)?;
        Some((if is_load { MmioKind::Load { reg } } else { MmioKind::Store { value: MmioValue::Reg(reg) } }, size))
    };
    let ext = |size: u8, to: u8, signed: bool| {
        Some((MmioKind::LoadExtend { reg: gpr_number(insn.op0_register())?, to, signed }, size))
    };
    let (kind, size) = match insn.code() {
        Code::Movzx_r16_rm8 => ext(1, 2, false)?,
        Code::Movzx_r32_rm8 => ext(1, 4, false)?,
        Code::Movzx_r64_rm8 => ext(1, 8, false)?,
        Code::Movzx_r32_rm16 => ext(2, 4, false)?,
        Code::Movzx_r64_rm16 => ext(2, 8, false)?,
        Code::Movsx_r16_rm8 => ext(1, 2, true)?,
        Code::Movsx_r32_rm8 => ext(1, 4, true)?,
        Code::Movsx_r64_rm8 => ext(1, 8, true)?,
        Code::Movsx_r32_rm16 => ext(2, 4, true)?,
        Code::Movsx_r64_rm16 => ext(2, 8, true)?,
        Code::Movsxd_r64_rm32 => ext(4, 8, true)?,
        Code::Mov_r8_rm8 => load(1)?,
        Code::Mov_r16_rm16 => load(2)?,
        Code::Mov_r32_rm32 => load(4)?,
        Code::Mov_r64_rm64 => load(8)?,
        Code::Mov_rm8_r8 => store(1)?,
        Code::Mov_rm16_r16 => store(2)?,
        Code::Mov_rm32_r32 => store(4)?,
        Code::Mov_rm64_r64 => store(8)?,
        Code::Mov_rm8_imm8 => imm(1)?,
        Code::Mov_rm16_imm16 => imm(2)?,
        Code::Mov_rm32_imm32 => imm(4)?,
        Code::Mov_rm64_imm32 => imm(8)?,
        Code::Mov_AL_moffs8 => acc(1, true)?,
        Code::Mov_AX_moffs16 => acc(2, true)?,
        Code::Mov_EAX_moffs32 => acc(4, true)?,
        Code::Mov_RAX_moffs64 => acc(8, true)?,
        Code::Mov_moffs8_AL => acc(1, false)?,
        Code::Mov_moffs16_AX => acc(2, false)?,
        Code::Mov_moffs32_EAX => acc(4, false)?,
        Code::Mov_moffs64_RAX => acc(8, false)?,
        _ => return None,
    };
    // Register to register forms share these codes: a memory operand is
    // what faulted.
    let mem = if matches!(kind, MmioKind::Store { .. }) { insn.op0_kind() } else { insn.op1_kind() };
    if !matches!(mem, iced_x86::OpKind::Memory) {
        return None;
    }
    Some(MmioAccess { kind, size, len: insn.len() })
}

/// An instruction that writes a control register (what a CR0 or CR4
/// write intercept reports without decode assists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrInsn {
    /// MOV to CRn from a general register (x86 number).
    MovTo {
        cr: u8,
        gpr: u8,
    },
    Clts,
    /// LMSW from a general register (its low 16 bits).
    LmswReg {
        gpr: u8,
    },
    /// LMSW from memory, which the caller may refuse.
    LmswMem,
}

/// Decodes the control-register write at the start of `bytes`; its length
/// comes with it. Anything else is None.
pub fn decode_cr_write(bytes: &[u8], bitness: u32) -> Option<(CrInsn, usize)> {
    plain_cr_write(bytes, bitness).or_else(|| decode_cr_write_full(bytes, bitness))
}

/// The encodings every guest uses, read directly: `MOV CRn, reg` as
/// `0F 22 /r` in its register form (with one REX prefix in 64-bit code)
/// and a bare CLTS. The decoder builds its tables on its first use, about
/// 5 M instructions (under QEMU -icount) once per boot at a guest's first
/// CR write without decode assists; anything else (other prefixes, a
/// memory-form ModRM, LMSW) still goes to it. The host tests check that
/// both agree on every byte this path accepts.
fn plain_cr_write(bytes: &[u8], bitness: u32) -> Option<(CrInsn, usize)> {
    let (rex, rest) = match bytes.split_first() {
        Some((&b, rest)) if bitness == 64 && b & 0xf0 == 0x40 => (b, rest),
        _ => (0, bytes),
    };
    let prefix = usize::from(rex != 0);
    match *rest {
        [0x0f, 0x22, modrm, ..] if modrm >> 6 == 3 => {
            let cr = (modrm >> 3) & 7 | if rex & 0x4 != 0 { 8 } else { 0 };
            let gpr = modrm & 7 | if rex & 0x1 != 0 { 8 } else { 0 };
            // The control registers that exist; MOV to another is #UD,
            // which the decoder reports.
            matches!(cr, 0 | 2 | 3 | 4 | 8).then_some((CrInsn::MovTo { cr, gpr }, prefix + 3))
        }
        [0x0f, 0x06, ..] if rex == 0 => Some((CrInsn::Clts, 2)),
        _ => None,
    }
}

/// `decode_cr_write` by the full decoder.
fn decode_cr_write_full(bytes: &[u8], bitness: u32) -> Option<(CrInsn, usize)> {
    use iced_x86::{OpKind, Register as R};
    let mut d = Decoder::new(bitness, bytes, DecoderOptions::NONE);
    let insn = d.decode();
    if insn.is_invalid() {
        return None;
    }
    let kind = match insn.code() {
        Code::Mov_cr_r32 | Code::Mov_cr_r64 => {
            let cr = (insn.op0_register() as u32).checked_sub(R::CR0 as u32).filter(|c| *c < 16)? as u8;
            CrInsn::MovTo { cr, gpr: gpr_number(insn.op1_register())? }
        }
        Code::Clts => CrInsn::Clts,
        Code::Lmsw_rm16 | Code::Lmsw_r32m16 | Code::Lmsw_r64m16 => match insn.op0_kind() {
            OpKind::Register => CrInsn::LmswReg { gpr: gpr_number(insn.op0_register())? },
            _ => CrInsn::LmswMem,
        },
        _ => return None,
    };
    Some((kind, insn.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_cr_writes_read_as_the_decoder_reads_them() {
        // Every register-form MOV to CR, with and without each REX prefix
        // (64-bit code), and CLTS, with a byte after them as a fetch has.
        let mut checked = 0;
        for bitness in [16, 32, 64] {
            let rexes: &[Option<u8>] = if bitness == 64 {
                &[None, Some(0x40), Some(0x41), Some(0x44), Some(0x45), Some(0x48), Some(0x4c), Some(0x4f)]
            } else {
                &[None]
            };
            for &rex in rexes {
                for modrm in 0xc0..=0xffu8 {
                    let mut b: Vec<u8> = rex.into_iter().collect();
                    b.extend([0x0f, 0x22, modrm, 0x90]);
                    let full = decode_cr_write_full(&b, bitness);
                    assert_eq!(decode_cr_write(&b, bitness), full, "{b:x?} in {bitness}-bit code");
                    if let Some(plain) = plain_cr_write(&b, bitness) {
                        assert_eq!(Some(plain), full, "{b:x?} in {bitness}-bit code");
                        checked += 1;
                    }
                }
            }
            let clts = [0x0f, 0x06, 0x90];
            assert_eq!(plain_cr_write(&clts, bitness), Some((CrInsn::Clts, 2)));
            assert_eq!(plain_cr_write(&clts, bitness), decode_cr_write_full(&clts, bitness));
        }
        // CR0, CR2, CR3 and CR4 from each of 8 registers without REX (in
        // each mode) and with the 3 REX prefixes that lack REX.R; CR8 alone
        // with the 4 that have it.
        assert_eq!(checked, 3 * 4 * 8 + 3 * 4 * 8 + 4 * 8);
        // REX.R and REX.B reach CR8 and R8-R15.
        assert_eq!(decode_cr_write(&[0x45, 0x0f, 0x22, 0xc1], 64), Some((CrInsn::MovTo { cr: 8, gpr: 9 }, 4)));
        // Other forms are left to the decoder: prefixes, a memory-form
        // ModRM, REX outside 64-bit code (there it is INC/DEC), LMSW.
        for (b, bits) in [
            (&[0x66, 0x0f, 0x22, 0xc0][..], 64),
            (&[0xf0, 0x0f, 0x22, 0xc0][..], 32),
            (&[0x0f, 0x22, 0x00][..], 64),
            (&[0x44, 0x0f, 0x22, 0xc0][..], 32),
            (&[0x0f, 0x01, 0xf0][..], 64),
            (&[0x48, 0x0f, 0x06][..], 64),
            (&[0x0f, 0x22][..], 64),
        ] {
            assert_eq!(plain_cr_write(b, bits), None, "{b:x?}");
        }
        assert_eq!(decode_cr_write(&[0x0f, 0x01, 0xf0], 64), Some((CrInsn::LmswReg { gpr: 0 }, 3)));
    }

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
    fn mmio_moves_are_decoded() {
        // mov eax, [rbx+0x20]
        assert_eq!(
            decode_mmio(&[0x8b, 0x43, 0x20], 64),
            Some(MmioAccess { kind: MmioKind::Load { reg: 0 }, size: 4, len: 3 })
        );
        // mov [rdi+0xb0], esi
        assert_eq!(
            decode_mmio(&[0x89, 0xb7, 0xb0, 0, 0, 0], 64),
            Some(MmioAccess { kind: MmioKind::Store { value: MmioValue::Reg(6) }, size: 4, len: 6 })
        );
        // mov dword [0xfee000b0], 0 (32-bit code)
        assert_eq!(
            decode_mmio(&[0xc7, 0x05, 0xb0, 0x00, 0xe0, 0xfe, 0, 0, 0, 0], 32),
            Some(MmioAccess { kind: MmioKind::Store { value: MmioValue::Imm(0) }, size: 4, len: 10 })
        );
        // mov eax, [0xfee00020] and back (32-bit code, moffs forms)
        assert_eq!(
            decode_mmio(&[0xa1, 0x20, 0x00, 0xe0, 0xfe], 32),
            Some(MmioAccess { kind: MmioKind::Load { reg: 0 }, size: 4, len: 5 })
        );
        assert_eq!(
            decode_mmio(&[0xa3, 0xb0, 0x00, 0xe0, 0xfe], 32).map(|a| a.kind),
            Some(MmioKind::Store { value: MmioValue::Reg(0) })
        );
        // mov r9d, [rax]
        assert_eq!(decode_mmio(&[0x44, 0x8b, 0x08], 64).map(|a| a.kind), Some(MmioKind::Load { reg: 9 }));
        // movzx eax, byte [rdi+1] / movsx rcx, word [rax]
        assert_eq!(
            decode_mmio(&[0x0f, 0xb6, 0x47, 0x01], 64),
            Some(MmioAccess { kind: MmioKind::LoadExtend { reg: 0, to: 4, signed: false }, size: 1, len: 4 })
        );
        assert_eq!(
            decode_mmio(&[0x48, 0x0f, 0xbf, 0x08], 64).map(|a| (a.kind, a.size)),
            Some((MmioKind::LoadExtend { reg: 1, to: 8, signed: true }, 2))
        );
        assert_eq!(decode_mmio(&[0x0f, 0xb6, 0xc1], 64), None, "movzx eax, cl");
        // Not a MOV, or a high-byte register: refused.
        assert_eq!(decode_mmio(&[0x87, 0x03], 64), None, "xchg");
        assert_eq!(decode_mmio(&[0x8a, 0x23], 64), None, "mov ah, [rbx]");
        assert_eq!(decode_mmio(&[0x89, 0xd8], 64), None, "register to register");
        assert_eq!(decode_mmio(&[], 64), None);
    }

    #[test]
    fn control_register_writes_are_decoded() {
        // mov cr4, rax / mov cr0, r9 / mov cr4, eax in 32-bit code.
        assert_eq!(decode_cr_write(&[0x0f, 0x22, 0xe0], 64), Some((CrInsn::MovTo { cr: 4, gpr: 0 }, 3)));
        assert_eq!(decode_cr_write(&[0x41, 0x0f, 0x22, 0xc1], 64), Some((CrInsn::MovTo { cr: 0, gpr: 9 }, 4)));
        assert_eq!(decode_cr_write(&[0x0f, 0x22, 0xe0], 32), Some((CrInsn::MovTo { cr: 4, gpr: 0 }, 3)));
        assert_eq!(decode_cr_write(&[0x0f, 0x06], 64), Some((CrInsn::Clts, 2)));
        // lmsw ax / lmsw [rbx]
        assert_eq!(decode_cr_write(&[0x0f, 0x01, 0xf0], 64), Some((CrInsn::LmswReg { gpr: 0 }, 3)));
        assert_eq!(decode_cr_write(&[0x0f, 0x01, 0x33], 64), Some((CrInsn::LmswMem, 3)));
        // mov rax, cr4 (a read) and anything else: None.
        assert_eq!(decode_cr_write(&[0x0f, 0x20, 0xe0], 64), None);
        assert_eq!(decode_cr_write(&[0x90], 64), None);
        assert_eq!(decode_cr_write(&[], 64), None);
    }

    #[test]
    fn vmcall_is_recognised_for_the_cross_vendor_path() {
        assert_eq!(decode_code(&[0x0f, 0x01, 0xc1], 64), Some((Code::Vmcall, 3)));
        assert_eq!(decode_code(&[0x0f, 0x0b], 64), Some((Code::Ud2, 2)));
    }
}
