//! Typed addresses and frame numbers, so that a guest-physical address is
//! never passed where a machine frame is meant, or a guest-virtual one where
//! a guest-physical one is (Xen's `typesafe.h` `mfn_t`/`gfn_t`, rust-vmm's
//! `GuestAddress`). Each is a plain `u64` inside; conversions between them
//! are named, so every crossing shows in the code.

use core::fmt;

/// The size of a page and of the frames the numbers below count.
pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

macro_rules! typed {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, " {:#x}"), self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

typed!(
    /// A guest-physical address (what the guest's page tables map to, and
    /// what the p2m translates).
    Gpa,
    "gpa"
);
typed!(
    /// A guest-virtual address (what the guest's own page tables translate).
    Gva,
    "gva"
);
typed!(
    /// A guest frame number: a guest-physical address >> 12.
    Gfn,
    "gfn"
);
typed!(
    /// A machine frame number: a host-physical address >> 12.
    Mfn,
    "mfn"
);

impl Gpa {
    /// The frame the address is in.
    pub const fn gfn(self) -> Gfn {
        Gfn(self.0 >> PAGE_SHIFT)
    }

    /// Where in its page the address is.
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }
}

impl Gva {
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }
}

impl Gfn {
    /// The frame's first guest-physical address.
    pub const fn gpa(self) -> Gpa {
        Gpa(self.0 << PAGE_SHIFT)
    }

    /// The frame `n` frames on.
    pub const fn add(self, n: u64) -> Gfn {
        Gfn(self.0 + n)
    }
}

impl Mfn {
    /// The frame's machine (host-physical) address.
    pub const fn phys(self) -> u64 {
        self.0 << PAGE_SHIFT
    }

    /// The frame holding machine address `phys`.
    pub const fn of_phys(phys: u64) -> Mfn {
        Mfn(phys >> PAGE_SHIFT)
    }

    pub const fn add(self, n: u64) -> Mfn {
        Mfn(self.0 + n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_keep_the_page_and_its_offset() {
        let a = Gpa(0x1234_5678);
        assert_eq!(a.gfn(), Gfn(0x12345));
        assert_eq!(a.page_offset(), 0x678);
        assert_eq!(a.gfn().gpa(), Gpa(0x1234_5000));
        assert_eq!(Gfn(7).add(3), Gfn(10));
        assert_eq!(Mfn::of_phys(0x20_1fff), Mfn(0x201));
        assert_eq!(Mfn(0x201).phys(), 0x20_1000);
        assert_eq!(format!("{:?} {:x}", Mfn(0x1f), Gva(0xabc)), "mfn 0x1f abc");
    }
}
