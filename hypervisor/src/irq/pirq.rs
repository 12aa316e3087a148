//! A domain's physical IRQs (pirqs, Xen's name): a device interrupt the
//! hypervisor receives on a host vector of its choosing and delivers as
//! an event on the port the domain bound the pirq to. The logic only.

use alloc::collections::BTreeMap;
use xen_abi::errno::*;

/// pirqs a domain may number (Xen's `nr_pirqs` for a small hardware
/// domain is of this order).
pub const NR_PIRQS: u32 = 1024;
/// The first pirq given out for MSIs (below: GSIs keep their numbers, as
/// in Xen).
pub const FIRST_DYNAMIC: u32 = 256;

/// Where an interrupt comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A function's MSI (one vector), by its bus/device/function.
    Msi { bdf: u16 },
    /// One entry of a function's MSI-X table (at physical `table`).
    MsiX { bdf: u16, entry: u16, table: u64 },
}

impl Source {
    pub fn bdf(self) -> u16 {
        match self {
            Source::Msi { bdf } | Source::MsiX { bdf, .. } => bdf,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pirq {
    pub source: Source,
    /// The host vector it arrives on.
    pub vector: u8,
    /// The event channel port it is delivered on (0: not bound).
    pub port: u32,
    /// Interrupts delivered.
    pub count: u64,
}

#[derive(Debug, Clone, Default)]
pub struct PirqTable {
    pirqs: BTreeMap<u32, Pirq>,
}

impl PirqTable {
    pub const fn new() -> PirqTable {
        PirqTable { pirqs: BTreeMap::new() }
    }

    pub fn get(&self, pirq: u32) -> Option<&Pirq> {
        self.pirqs.get(&pirq)
    }

    /// The pirq of `source`, if mapped (an MSI-X entry by function and
    /// entry, wherever its table is).
    pub fn find(&self, source: Source) -> Option<u32> {
        let same = |a: Source, b: Source| match (a, b) {
            (Source::MsiX { bdf, entry, .. }, Source::MsiX { bdf: b2, entry: e2, .. }) => bdf == b2 && entry == e2,
            _ => a == b,
        };
        self.pirqs.iter().find(|(_, p)| same(p.source, source)).map(|(n, _)| *n)
    }

    /// Whether any other pirq uses an MSI-X entry of function `bdf`.
    pub fn msix_in_use(&self, bdf: u16) -> bool {
        self.pirqs.values().any(|p| matches!(p.source, Source::MsiX { bdf: b, .. } if b == bdf))
    }

    /// Maps `source` on `vector` as pirq `want` (None: the lowest free
    /// dynamic one). -EEXIST if the source is mapped already (as another
    /// pirq than asked) or `want` is taken, -EINVAL out of range, -ENOSPC
    /// when none is free.
    pub fn map(&mut self, source: Source, vector: u8, want: Option<u32>) -> Result<u32, i64> {
        if self.find(source).is_some() {
            return Err(-EEXIST);
        }
        let n = match want {
            Some(n) if n >= NR_PIRQS => return Err(-EINVAL),
            Some(n) if self.pirqs.contains_key(&n) => return Err(-EEXIST),
            Some(n) => n,
            None => (FIRST_DYNAMIC..NR_PIRQS).find(|n| !self.pirqs.contains_key(n)).ok_or(-ENOSPC)?,
        };
        self.pirqs.insert(n, Pirq { source, vector, port: 0, count: 0 });
        Ok(n)
    }

    /// Unmaps `pirq`: -EINVAL if it is not mapped, -EBUSY while a port is
    /// bound to it.
    pub fn unmap(&mut self, pirq: u32) -> Result<Pirq, i64> {
        match self.pirqs.get(&pirq) {
            None => Err(-EINVAL),
            Some(p) if p.port != 0 => Err(-EBUSY),
            Some(_) => self.pirqs.remove(&pirq).ok_or(-EINVAL),
        }
    }

    /// Binds `port` to `pirq`: -EINVAL if it is not mapped, -EBUSY if
    /// bound already.
    pub fn bind(&mut self, pirq: u32, port: u32) -> Result<Pirq, i64> {
        let p = self.pirqs.get_mut(&pirq).ok_or(-EINVAL)?;
        if p.port != 0 {
            return Err(-EBUSY);
        }
        p.port = port;
        Ok(*p)
    }

    /// Unbinds `pirq`'s port (after the port was closed).
    pub fn unbind(&mut self, pirq: u32) -> Option<Pirq> {
        let p = self.pirqs.get_mut(&pirq)?;
        p.port = 0;
        Some(*p)
    }

    /// An interrupt of `pirq` arrived: the port to raise (0: not bound).
    pub fn fired(&mut self, pirq: u32) -> u32 {
        match self.pirqs.get_mut(&pirq) {
            Some(p) => {
                p.count += 1;
                p.port
            }
            None => 0,
        }
    }

    /// Every mapping, for tearing them down with the domain.
    pub fn take_all(&mut self) -> BTreeMap<u32, Pirq> {
        core::mem::take(&mut self.pirqs)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u32, &Pirq)> {
        self.pirqs.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDU: Source = Source::Msi { bdf: 0x18 };

    #[test]
    fn msis_get_dynamic_pirqs_once_each() {
        let mut t = PirqTable::new();
        assert_eq!(t.map(EDU, 0x30, None), Ok(FIRST_DYNAMIC));
        assert_eq!(t.map(EDU, 0x31, None), Err(-EEXIST), "the same MSI twice");
        assert_eq!(t.map(Source::Msi { bdf: 0x20 }, 0x31, Some(FIRST_DYNAMIC)), Err(-EEXIST));
        assert_eq!(t.map(Source::Msi { bdf: 0x20 }, 0x31, Some(NR_PIRQS)), Err(-EINVAL));
        assert_eq!(t.map(Source::Msi { bdf: 0x20 }, 0x31, None), Ok(FIRST_DYNAMIC + 1));
        assert_eq!(t.find(EDU), Some(FIRST_DYNAMIC));
    }

    #[test]
    fn msix_entries_are_pirqs_of_their_own() {
        let mut t = PirqTable::new();
        let e = |entry| Source::MsiX { bdf: 0x28, entry, table: 0xfebf_0000 };
        assert_eq!(t.map(e(0), 0x30, None), Ok(FIRST_DYNAMIC));
        assert_eq!(t.map(e(1), 0x31, None), Ok(FIRST_DYNAMIC + 1));
        assert_eq!(
            t.map(Source::MsiX { bdf: 0x28, entry: 0, table: 0xe000_0000 }, 0x32, None),
            Err(-EEXIST),
            "same entry"
        );
        assert!(t.msix_in_use(0x28) && !t.msix_in_use(0x18));
        t.unmap(FIRST_DYNAMIC).unwrap();
        t.unmap(FIRST_DYNAMIC + 1).unwrap();
        assert!(!t.msix_in_use(0x28));
    }

    #[test]
    fn bound_pirqs_count_interrupts_and_stay_until_unbound() {
        let mut t = PirqTable::new();
        let p = t.map(EDU, 0x30, None).unwrap();
        assert_eq!(t.fired(p), 0, "not bound: nothing to raise");
        assert_eq!(t.bind(p, 7).map(|x| x.port), Ok(7));
        assert_eq!(t.bind(p, 8), Err(-EBUSY));
        assert_eq!(t.fired(p), 7);
        assert_eq!(t.get(p).map(|x| x.count), Some(2));
        assert_eq!(t.unmap(p), Err(-EBUSY), "still bound");
        assert!(t.unbind(p).is_some());
        assert_eq!(t.unmap(p).map(|x| x.vector), Ok(0x30));
        assert_eq!(t.unmap(p), Err(-EINVAL));
        assert_eq!(t.bind(p, 7), Err(-EINVAL));
    }
}
