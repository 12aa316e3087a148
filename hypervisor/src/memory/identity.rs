//! The hardware domain's RAM, mapped 1:1 (guest frame = machine frame) so
//! that its drivers can hand buffer addresses to devices with no IOMMU,
//! as Xen's PV dom0 can. One part cannot be: the kernel image goes where
//! its ELF says, which is machine memory the hypervisor may hold (its own
//! image sits low, where PVH kernels are linked). So the image, its ramdisk and the boot
//! information form a "boot island" of RAM backed by any frames; every
//! other RAM page of the domain is identity-mapped, and the domain can
//! DMA into any page it allocates outside its image.
//!
//! The logic only: where the island is, which machine blocks cannot be
//! identity-mapped, and the memory map that results.

use alloc::vec::Vec;

const PAGE: u64 = 4096;

/// Room after the image and ramdisk for the start info, module list,
/// memory map (up to 240 entries) and command line.
pub const BOOT_DATA_ROOM: u64 = 4 * PAGE;

/// Most RAM runs a memory map may list (the rest of the room is for the
/// reserved entries).
pub const MAX_RUNS: usize = 232;

/// The boot island as guest frames `[first, end)`: the kernel's load
/// range, its ramdisk and the boot data after it (`pvh::place` puts them
/// there in that order).
pub fn boot_island(load_start: u64, load_end: u64, ramdisk_len: u64) -> (u64, u64) {
    let first = load_start / PAGE;
    let end = (load_end.div_ceil(PAGE) * PAGE + ramdisk_len.div_ceil(PAGE) * PAGE + BOOT_DATA_ROOM) / PAGE;
    (first, end)
}

/// Whether machine frames `[mfn, mfn + n)` can be identity-mapped in a
/// domain whose island is `island` and whose guest-physical space keeps
/// `[hole_start, hole_end)` for itself (ACPI tables, the local APIC, the
/// special pages).
pub fn identity_ok(mfn: u64, n: u64, island: (u64, u64), hole: (u64, u64)) -> bool {
    let end = mfn + n;
    let apart = |(a, b): (u64, u64)| end <= a || b <= mfn;
    apart(island) && apart(hole)
}

/// RAM runs `(first frame, frames)` sorted and merged where they touch.
pub fn merge_runs(mut runs: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    runs.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
    for (s, n) in runs.into_iter().filter(|r| r.1 > 0) {
        match out.last_mut() {
            Some(last) if last.0 + last.1 >= s => last.1 = last.1.max(s + n - last.0),
            _ => out.push((s, n)),
        }
    }
    out
}

/// The largest buddy order, at most `max_order`, not above `pages`.
pub fn order_for(pages: u64, max_order: usize) -> usize {
    (63 - pages.max(1).leading_zeros() as usize).min(max_order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn the_island_holds_the_image_ramdisk_and_boot_data() {
        // A kernel at 1 MiB ending at 1 MiB + 5000 bytes, a 3-page ramdisk.
        let (first, end) = boot_island(0x10_0000, 0x10_0000 + 5000, 3 * 4096 - 10);
        assert_eq!(first, 0x100);
        assert_eq!(end, 0x100 + 2 + 3 + 4);
    }

    #[test]
    fn blocks_over_the_island_or_the_hole_are_not_identity_mapped() {
        let island = (0x100, 0x120);
        let hole = (0xfc000, 0x100000);
        assert!(identity_ok(0x200, 0x200, island, hole));
        assert!(identity_ok(0x0e0, 0x20, island, hole), "ends where the island starts");
        assert!(!identity_ok(0x000, 0x200, island, hole), "covers the island");
        assert!(!identity_ok(0x11f, 1, island, hole));
        assert!(!identity_ok(0xfbe00, 0x400, island, hole), "reaches the hole");
        assert!(identity_ok(0x100000, 0x40000, island, hole), "above 4 GiB");
    }

    #[test]
    fn runs_merge_in_address_order() {
        let runs = vec![(0x400, 0x200), (0x100, 0x10), (0x200, 0x200), (0x110, 0x8), (0x900, 0), (0x300, 0x50)];
        assert_eq!(merge_runs(runs), [(0x100, 0x18), (0x200, 0x400)]);
    }

    #[test]
    fn orders_fit_the_pages_left() {
        assert_eq!(order_for(1, 18), 0);
        assert_eq!(order_for(511, 18), 8);
        assert_eq!(order_for(512, 18), 9);
        assert_eq!(order_for(1 << 30, 18), 18);
        assert_eq!(order_for(0, 18), 0);
    }
}
