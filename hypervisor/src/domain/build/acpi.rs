//! The ACPI tables a PVH domain finds through `hvm_start_info.rsdp_paddr`,
//! built the way Xen's toolstack builds them for PVH: RSDP (revision 2) ->
//! XSDT and RSDT -> a hardware-reduced FADT (revision 5) with a
//! header-only DSDT, and a MADT with one local APIC per vCPU (ACPI
//! processor id = vCPU id, APIC id = 2 x vCPU id, as Xen numbers them) and
//! no I/O APIC.
//!
//! Linux needs the MADT even for one vCPU: without it, it never sets up
//! the Xen clock event device (see docs/abi-coverage.md).

use alloc::vec::Vec;

/// Where guests find their local APIC.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
const OEM_ID: &[u8; 6] = b"RUSTHV";
const OEM_TABLE_ID: &[u8; 8] = b"PVH     ";
const CREATOR_ID: &[u8; 4] = b"RSHV";

/// The APIC id of vCPU `vcpu` (Xen's numbering: even ids).
pub fn apic_id(vcpu: u32) -> u32 {
    vcpu * 2
}

/// The largest number of vCPUs the tables describe (8-bit APIC ids).
pub const MAX_VCPUS: u32 = 128;

const FADT_FLAG_WBINVD: u32 = 1 << 0;
const FADT_FLAG_PWR_BUTTON: u32 = 1 << 4;
const FADT_FLAG_SLP_BUTTON: u32 = 1 << 5;
const FADT_FLAG_FORCE_APIC_PHYSICAL: u32 = 1 << 19;
const FADT_FLAG_HW_REDUCED: u32 = 1 << 20;
const BOOT_ARCH_NO_VGA: u16 = 1 << 2;
const BOOT_ARCH_NO_CMOS_RTC: u16 = 1 << 5;
const FADT_LEN: usize = 268;

fn align16(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(16) {
        v.push(0);
    }
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// A table header with the length and checksum filled in by `finish`.
fn header(sig: &[u8; 4], revision: u8) -> Vec<u8> {
    let mut t = Vec::with_capacity(64);
    t.extend_from_slice(sig);
    t.extend_from_slice(&0u32.to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(CREATOR_ID);
    t.extend_from_slice(&1u32.to_le_bytes());
    t
}

fn finish(mut t: Vec<u8>) -> Vec<u8> {
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    t[9] = 0;
    t[9] = checksum(&t);
    t
}

/// The tables for a domain with `nr_vcpus` vCPUs (1..=MAX_VCPUS), to be
/// placed at guest-physical `base` (16-byte aligned). Returns the bytes;
/// the RSDP is at offset 0.
pub fn build(base: u64, nr_vcpus: u32) -> Vec<u8> {
    let nr = nr_vcpus.clamp(1, MAX_VCPUS);
    let mut blob = alloc::vec![0u8; 64]; // the RSDP, written last

    let mut dsdt_t = header(b"DSDT", 2);
    dsdt_t.truncate(36);
    let dsdt_t = finish(dsdt_t);
    let dsdt = base + blob.len() as u64;
    blob.extend_from_slice(&dsdt_t);
    align16(&mut blob);

    let mut fadt_t = header(b"FACP", 5);
    fadt_t.resize(FADT_LEN, 0);
    fadt_t[40..44].copy_from_slice(&(dsdt as u32).to_le_bytes());
    fadt_t[109..111].copy_from_slice(&(BOOT_ARCH_NO_VGA | BOOT_ARCH_NO_CMOS_RTC).to_le_bytes());
    let flags = FADT_FLAG_WBINVD
        | FADT_FLAG_PWR_BUTTON
        | FADT_FLAG_SLP_BUTTON
        | FADT_FLAG_FORCE_APIC_PHYSICAL
        | FADT_FLAG_HW_REDUCED;
    fadt_t[112..116].copy_from_slice(&flags.to_le_bytes());
    fadt_t[140..148].copy_from_slice(&dsdt.to_le_bytes());
    let fadt_t = finish(fadt_t);
    let fadt = base + blob.len() as u64;
    blob.extend_from_slice(&fadt_t);
    align16(&mut blob);

    let mut madt_t = header(b"APIC", 3);
    madt_t.extend_from_slice(&(LAPIC_BASE as u32).to_le_bytes());
    madt_t.extend_from_slice(&0u32.to_le_bytes()); // no PC-AT 8259s
    for v in 0..nr {
        // Processor Local APIC: type 0, length 8, uid, APIC id, enabled.
        madt_t.extend_from_slice(&[0, 8, v as u8, apic_id(v) as u8]);
        madt_t.extend_from_slice(&1u32.to_le_bytes());
    }
    let madt_t = finish(madt_t);
    let madt = base + blob.len() as u64;
    blob.extend_from_slice(&madt_t);
    align16(&mut blob);

    let mut xsdt_t = header(b"XSDT", 1);
    for p in [fadt, madt] {
        xsdt_t.extend_from_slice(&p.to_le_bytes());
    }
    let xsdt_t = finish(xsdt_t);
    let xsdt = base + blob.len() as u64;
    blob.extend_from_slice(&xsdt_t);
    align16(&mut blob);

    let mut rsdt_t = header(b"RSDT", 1);
    for p in [fadt, madt] {
        rsdt_t.extend_from_slice(&(p as u32).to_le_bytes());
    }
    let rsdt_t = finish(rsdt_t);
    let rsdt = base + blob.len() as u64;
    blob.extend_from_slice(&rsdt_t);
    align16(&mut blob);

    let r = &mut blob[..36];
    r[..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(OEM_ID);
    r[15] = 2;
    r[16..20].copy_from_slice(&(rsdt as u32).to_le_bytes());
    r[20..24].copy_from_slice(&36u32.to_le_bytes());
    r[24..32].copy_from_slice(&xsdt.to_le_bytes());
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r[..36]);
    blob
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    /// Walks the tables as an OS does and returns (signature, offset) of
    /// every table the XSDT lists, checking checksums on the way.
    fn walk(blob: &[u8], base: u64) -> Vec<([u8; 4], usize)> {
        assert_eq!(&blob[..8], b"RSD PTR ");
        assert_eq!(sum(&blob[..20]), 0, "RSDP checksum");
        assert_eq!(sum(&blob[..36]), 0, "RSDP extended checksum");
        assert_eq!(blob[15], 2);
        let xsdt = (u64_at(blob, 24) - base) as usize;
        let rsdt = (u32_at(blob, 16) as u64 - base) as usize;
        let table = |o: usize| {
            let len = u32_at(blob, o + 4) as usize;
            assert_eq!(sum(&blob[o..o + len]), 0, "checksum of {:?}", core::str::from_utf8(&blob[o..o + 4]));
            (blob[o..o + 4].try_into().unwrap(), len)
        };
        let (sig, len) = table(xsdt);
        assert_eq!(&sig, b"XSDT");
        let (rsig, rlen) = table(rsdt);
        assert_eq!(&rsig, b"RSDT");
        let n = (len - 36) / 8;
        assert_eq!((rlen - 36) / 4, n, "RSDT and XSDT list the same tables");
        (0..n)
            .map(|i| {
                let o = (u64_at(blob, xsdt + 36 + 8 * i) - base) as usize;
                assert_eq!(u32_at(blob, rsdt + 36 + 4 * i) as usize, o + base as usize);
                (table(o).0, o)
            })
            .collect()
    }

    #[test]
    fn tables_walk_from_the_rsdp_with_valid_checksums() {
        let base = 0xfc00_0000;
        let blob = build(base, 4);
        let tables = walk(&blob, base);
        let sigs: Vec<&[u8; 4]> = tables.iter().map(|(s, _)| s).collect();
        assert_eq!(sigs, [b"FACP", b"APIC"]);
        // The FADT is hardware-reduced and points at a DSDT.
        let fadt = tables[0].1;
        assert_eq!(blob[fadt + 8], 5, "FADT revision 5");
        assert_eq!(u32_at(&blob, fadt + 4) as usize, FADT_LEN);
        assert_ne!(u32_at(&blob, fadt + 112) & FADT_FLAG_HW_REDUCED, 0);
        let dsdt = (u64_at(&blob, fadt + 140) - base) as usize;
        assert_eq!(u32_at(&blob, fadt + 40) as usize, dsdt + base as usize);
        assert_eq!(&blob[dsdt..dsdt + 4], b"DSDT");
        assert_eq!(sum(&blob[dsdt..dsdt + u32_at(&blob, dsdt + 4) as usize]), 0);
    }

    #[test]
    fn the_madt_lists_one_enabled_lapic_per_vcpu_and_no_ioapic() {
        let base = 0xfc00_0000;
        for n in [1u32, 3, 128] {
            let blob = build(base, n);
            let madt = walk(&blob, base)[1].1;
            assert_eq!(u32_at(&blob, madt + 36), LAPIC_BASE as u32);
            let len = u32_at(&blob, madt + 4) as usize;
            let mut o = madt + 44;
            let mut seen = 0;
            while o < madt + len {
                assert_eq!(blob[o], 0, "only local APIC entries");
                assert_eq!(blob[o + 1], 8);
                assert_eq!(blob[o + 2] as u32, seen, "ACPI processor id = vCPU id");
                assert_eq!(blob[o + 3] as u32, apic_id(seen));
                assert_eq!(u32_at(&blob, o + 4), 1, "enabled");
                seen += 1;
                o += 8;
            }
            assert_eq!(seen, n);
        }
        // Out-of-range counts are clamped, not trusted.
        let blob = build(base, 1000);
        let madt = walk(&blob, base)[1].1;
        assert_eq!((u32_at(&blob, madt + 4) as usize - 44) / 8, MAX_VCPUS as usize);
    }
}
