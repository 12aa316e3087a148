//! Where the ACPI tables lie, found before the frame allocator exists so
//! that no table is ever handed out as free memory, even when firmware put
//! one in memory its map calls RAM.
//!
//! Reads go through a caller-supplied function that may refuse (memory not
//! reachable yet); lengths are capped so a corrupt header cannot reserve
//! gigabytes.

use crate::mm::ranges::Range;

/// Larger than any real table; a header claiming more is corrupt.
const MAX_TABLE_LEN: u64 = 16 << 20;
pub const MAX_TABLES: usize = 64;

/// Physical ranges of the root table, every table it lists, and the FACS
/// and DSDT the FADT points to. `read(phys, buf)` fills `buf` or returns
/// false. Returns how many ranges were written to `out`.
pub fn table_ranges(
    root: u64,
    xsdt: bool,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
    out: &mut [Range; MAX_TABLES],
) -> usize {
    let mut n = 0;
    let mut add = |r: Range, n: &mut usize| {
        if *n < out.len() && !r.is_empty() {
            out[*n] = r;
            *n += 1;
        }
    };
    let header_len = |addr: u64, read: &mut dyn FnMut(u64, &mut [u8]) -> bool| -> Option<u64> {
        let mut h = [0u8; 8];
        if addr == 0 || !read(addr, &mut h) {
            return None;
        }
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
        (36..=MAX_TABLE_LEN).contains(&len).then_some(len)
    };
    let Some(root_len) = header_len(root, read) else { return 0 };
    add(Range::from_len(root, root_len), &mut n);
    let entry = if xsdt { 8 } else { 4 };
    let count = ((root_len - 36) / entry) as usize;
    for i in 0..count.min(MAX_TABLES) {
        let mut e = [0u8; 8];
        if !read(root + 36 + i as u64 * entry, &mut e[..entry as usize]) {
            continue;
        }
        let addr = u64::from_le_bytes(e);
        let Some(len) = header_len(addr, read) else { continue };
        add(Range::from_len(addr, len), &mut n);
        let mut sig = [0u8; 4];
        if read(addr, &mut sig) && &sig == b"FACP" {
            // FIRMWARE_CTRL @36, DSDT @40, X_FIRMWARE_CTRL @132, X_DSDT @140.
            let mut f = [0u8; 148];
            let got = (len as usize).min(148);
            if !read(addr, &mut f[..got]) {
                continue;
            }
            let u32_at = |o: usize| u32::from_le_bytes([f[o], f[o + 1], f[o + 2], f[o + 3]]) as u64;
            let u64_at = |o: usize| u64::from_le_bytes(f[o..o + 8].try_into().unwrap_or([0; 8]));
            let facs = if got >= 140 && u64_at(132) != 0 { u64_at(132) } else { u32_at(36) };
            let dsdt = if got >= 148 && u64_at(140) != 0 { u64_at(140) } else { u32_at(40) };
            if let Some(l) = header_len(facs, read) {
                add(Range::from_len(facs, l.max(64)), &mut n);
            }
            if let Some(l) = header_len(dsdt, read) {
                add(Range::from_len(dsdt, l), &mut n);
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Mem(BTreeMap<u64, Vec<u8>>);

    impl Mem {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            for (&base, bytes) in &self.0 {
                if addr >= base && addr + buf.len() as u64 <= base + bytes.len() as u64 {
                    let o = (addr - base) as usize;
                    buf.copy_from_slice(&bytes[o..o + buf.len()]);
                    return true;
                }
            }
            false
        }
    }

    fn table(sig: &[u8; 4], len: usize) -> Vec<u8> {
        let mut t = vec![0u8; len];
        t[..4].copy_from_slice(sig);
        t[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        t
    }

    #[test]
    fn walks_xsdt_fadt_facs_dsdt() {
        let mut xsdt = table(b"XSDT", 36 + 16);
        xsdt[36..44].copy_from_slice(&0x2000u64.to_le_bytes());
        xsdt[44..52].copy_from_slice(&0x3000u64.to_le_bytes());
        let mut fadt = table(b"FACP", 276);
        fadt[36..40].copy_from_slice(&0x4000u32.to_le_bytes());
        fadt[140..148].copy_from_slice(&0x5000u64.to_le_bytes());
        let mut facs = vec![0u8; 64];
        facs[..4].copy_from_slice(b"FACS");
        facs[4..8].copy_from_slice(&64u32.to_le_bytes());
        let mem = Mem(BTreeMap::from([
            (0x1000, xsdt),
            (0x2000, fadt),
            (0x3000, table(b"APIC", 120)),
            (0x4000, facs),
            (0x5000, table(b"DSDT", 0x1234)),
        ]));
        let mut out = [Range::default(); MAX_TABLES];
        let n = table_ranges(0x1000, true, &mut |a, b| mem.read(a, b), &mut out);
        let got: Vec<_> = out[..n].iter().map(|r| (r.start, r.len())).collect();
        assert_eq!(got, vec![(0x1000, 52), (0x2000, 276), (0x4000, 64), (0x5000, 0x1234), (0x3000, 120)]);
    }

    #[test]
    fn unreadable_or_corrupt_tables_are_skipped() {
        let mut rsdt = table(b"RSDT", 36 + 12);
        rsdt[36..40].copy_from_slice(&0x2000u32.to_le_bytes()); // corrupt length
        rsdt[40..44].copy_from_slice(&0x9999_0000u32.to_le_bytes()); // unreadable
        rsdt[44..48].copy_from_slice(&0x3000u32.to_le_bytes());
        let mut bad = table(b"SSDT", 40);
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let mem = Mem(BTreeMap::from([(0x1000, rsdt), (0x2000, bad), (0x3000, table(b"HPET", 56))]));
        let mut out = [Range::default(); MAX_TABLES];
        let n = table_ranges(0x1000, false, &mut |a, b| mem.read(a, b), &mut out);
        let got: Vec<_> = out[..n].iter().map(|r| (r.start, r.len())).collect();
        assert_eq!(got, vec![(0x1000, 48), (0x3000, 56)]);
        assert_eq!(table_ranges(0x7777, false, &mut |a, b| mem.read(a, b), &mut out), 0);
    }
}
