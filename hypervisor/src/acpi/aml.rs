//! The one piece of AML the hypervisor reads: the `\_S5` package, whose
//! first two values are the SLP_TYPa / SLP_TYPb codes for soft-off.
//!
//! A full AML interpreter is the job of dom0's kernel. Firmware almost
//! always declares `\_S5` as a plain `Name (_S5, Package () { a, b, ... })`,
//! which is what this recognises (with or without a root prefix); any other
//! form is reported as absent and power-off falls back to halting.

/// SLP_TYPa and SLP_TYPb for S5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SleepType {
    pub a: u8,
    pub b: u8,
}

const NAME_OP: u8 = 0x08;
const PACKAGE_OP: u8 = 0x12;
const ROOT_CHAR: u8 = b'\\';

/// Reads an AML integer constant: ZeroOp, OneOp, OnesOp or a Byte/Word/
/// DWord/QWord prefix. Returns the value and the bytes it took.
fn integer(b: &[u8]) -> Option<(u64, usize)> {
    let le = |n: usize| -> Option<u64> {
        let bytes = b.get(1..1 + n)?;
        Some(bytes.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    };
    match *b.first()? {
        0x00 => Some((0, 1)),
        0x01 => Some((1, 1)),
        0xff => Some((u64::MAX, 1)),
        0x0a => Some((le(1)?, 2)),
        0x0b => Some((le(2)?, 3)),
        0x0c => Some((le(4)?, 5)),
        0x0e => Some((le(8)?, 9)),
        _ => None,
    }
}

/// Finds `\_S5` in an AML byte stream (a DSDT or SSDT body).
pub fn find_s5(aml: &[u8]) -> Option<SleepType> {
    let mut i = 0;
    while let Some(pos) = aml.get(i..)?.windows(4).position(|w| w == b"_S5_") {
        let at = i + pos;
        i = at + 1;
        let named = match at {
            0 => false,
            1 => aml[0] == NAME_OP,
            _ => aml[at - 1] == NAME_OP || (aml[at - 1] == ROOT_CHAR && aml[at - 2] == NAME_OP),
        };
        if !named || aml.get(at + 4) != Some(&PACKAGE_OP) {
            continue;
        }
        // PkgLength: the top two bits of the lead byte count the bytes that
        // follow it.
        let Some(&lead) = aml.get(at + 5) else { continue };
        let mut p = at + 5 + 1 + (lead >> 6) as usize;
        let Some(&count) = aml.get(p) else { continue };
        p += 1;
        if count == 0 {
            continue;
        }
        let Some((a, used)) = integer(aml.get(p..)?) else { continue };
        p += used;
        let b = if count >= 2 { integer(aml.get(p..)?).map_or(a, |(v, _)| v) } else { a };
        return Some(SleepType { a: (a & 7) as u8, b: (b & 7) as u8 });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_style_package() {
        // Name (_S5, Package (0x04) { Zero, Zero, Zero, Zero })
        let aml = [0x10, 0x08, NAME_OP, b'_', b'S', b'5', b'_', PACKAGE_OP, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00];
        assert_eq!(find_s5(&aml), Some(SleepType { a: 0, b: 0 }));
    }

    #[test]
    fn byte_prefixed_values_and_root_prefix() {
        // Name (\_S5, Package (0x02) { 0x07, 0x07 })  (typical Intel chipset)
        let aml = [0xaa, NAME_OP, ROOT_CHAR, b'_', b'S', b'5', b'_', PACKAGE_OP, 0x07, 0x02, 0x0a, 0x07, 0x0a, 0x05];
        assert_eq!(find_s5(&aml), Some(SleepType { a: 7, b: 5 }));
    }

    #[test]
    fn multi_byte_pkg_length() {
        let aml = [NAME_OP, b'_', b'S', b'5', b'_', PACKAGE_OP, 0x41, 0x00, 0x02, 0x01, 0x0a, 0x03];
        assert_eq!(find_s5(&aml), Some(SleepType { a: 1, b: 3 }));
    }

    #[test]
    fn single_element_package_uses_it_for_both() {
        let aml = [NAME_OP, b'_', b'S', b'5', b'_', PACKAGE_OP, 0x03, 0x01, 0x0a, 0x05];
        assert_eq!(find_s5(&aml), Some(SleepType { a: 5, b: 5 }));
    }

    #[test]
    fn references_that_are_not_declarations_are_skipped() {
        // "_S5_" used as a method argument first, then the real declaration.
        let aml = [
            0x70, b'_', b'S', b'5', b'_', 0x60, NAME_OP, b'_', b'S', b'5', b'_', PACKAGE_OP, 0x04, 0x02, 0x0a, 0x06,
            0x00,
        ];
        assert_eq!(find_s5(&aml), Some(SleepType { a: 6, b: 0 }));
    }

    #[test]
    fn absent_truncated_or_method_form() {
        assert_eq!(find_s5(b"no sleep states here"), None);
        assert_eq!(find_s5(&[NAME_OP, b'_', b'S', b'5', b'_', PACKAGE_OP]), None);
        assert_eq!(find_s5(&[NAME_OP, b'_', b'S', b'5', b'_', PACKAGE_OP, 0x02, 0x02, 0x0a]), None);
        // Method (_S5) {...} is not a package.
        assert_eq!(find_s5(&[0x14, 0x05, b'_', b'S', b'5', b'_', 0x00]), None);
        assert_eq!(find_s5(&[]), None);
    }
}
