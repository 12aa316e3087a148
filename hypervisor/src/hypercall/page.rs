//! The hypercall page a guest asks for through the hypercall MSR: one
//! 32-byte stub per hypercall.

use xen_abi::hypercall as nr;

/// The 32-byte hypercall-page slots: `mov eax, i; <insn>; ret` with the
/// backend's hypercall instruction (VMMCALL or VMCALL), padded with int3;
/// slot 23 (`iret`) is `ud2`.
pub fn hypercall_page(insn: &[u8]) -> [u8; 4096] {
    let mut p = [0xccu8; 4096];
    for i in 0..nr_slots() {
        let s = &mut p[i * 32..i * 32 + 32];
        if i as u64 == nr::IRET {
            s[0] = 0x0f;
            s[1] = 0x0b;
            continue;
        }
        s[0] = 0xb8;
        s[1..5].copy_from_slice(&(i as u32).to_le_bytes());
        s[5..5 + insn.len()].copy_from_slice(insn);
        s[5 + insn.len()] = 0xc3;
    }
    p
}

fn nr_slots() -> usize {
    xen_abi::hypercall::PAGE_SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::insn::Expected;

    #[test]
    fn hypercall_page_layout() {
        let p = hypercall_page(Expected::Vmmcall.encoding());
        assert_eq!(&p[0..9], &[0xb8, 0, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3]);
        assert_eq!(&p[18 * 32..18 * 32 + 9], &[0xb8, 18, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3]);
        assert_eq!(&p[23 * 32..23 * 32 + 3], &[0x0f, 0x0b, 0xcc]);
        assert!(p[9..32].iter().all(|&b| b == 0xcc));
        let i = hypercall_page(Expected::Vmcall.encoding());
        assert_eq!(&i[32..41], &[0xb8, 1, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3]);
    }
}
