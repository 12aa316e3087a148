//! physdev_op (33): the hardware domain's device interrupts (pirqs).
//!
//! The table lets only the hardware domain in: any other domain gets
//! -EPERM for every operation (Xen answers a PVH domU -ENOSYS, having no
//! pirqs for it; refusing outright is the stricter reading of the same
//! rule, and what docs/abi-coverage.md records).
//!
//! map_pirq maps a function's MSI (the hypervisor picks the host vector
//! and programs the device; EVTCHNOP_bind_pirq then turns it on);
//! unmap_pirq undoes it; eoi and irq_status_query answer for MSIs, which
//! need no EOI. map_pirq also maps MSI-X entries (a `table_base`). GSIs
//! and MULTI_MSI are not offered yet (-EOPNOTSUPP), nor are the other
//! operations (-ENOSYS).

use super::call::{Args, Guest, GuestHandle, Outcome};
use xen_abi::DOMID_SELF;
use xen_abi::errno::*;
use xen_abi::physdev::*;

pub trait PhysdevEnv: Guest {
    /// Maps the MSI of function `bdf` (bus << 8 | devfn) for the caller,
    /// as pirq `want` or any: the pirq.
    fn map_msi(&mut self, bdf: u16, want: Option<u32>) -> Result<u32, i64>;
    /// Maps entry `entry` of function `bdf`'s MSI-X table, whose BAR dom0
    /// says is at `table_base`.
    fn map_msix(&mut self, bdf: u16, entry: u32, table_base: u64, want: Option<u32>) -> Result<u32, i64>;
    fn unmap_pirq(&mut self, pirq: u32) -> Result<(), i64>;
    /// Whether the caller has `pirq` mapped.
    fn has_pirq(&mut self, pirq: u32) -> bool;
}

pub fn physdev_op<E: PhysdevEnv>(env: &mut E, args: &Args) -> Outcome {
    Outcome::of(op(env, args.a[0], args.a[1]))
}

/// The domain named is the caller (mapping for another domain, for
/// device pass-through, is not offered yet).
fn own<E: PhysdevEnv>(env: &E, domid: u16) -> Result<(), i64> {
    if domid == DOMID_SELF || domid == env.caller().domid { Ok(()) } else { Err(-EOPNOTSUPP) }
}

fn op<E: PhysdevEnv>(env: &mut E, cmd: u64, arg: u64) -> Result<i64, i64> {
    match cmd {
        PHYSDEVOP_MAP_PIRQ => {
            let h = GuestHandle::<MapPirq>::new(arg);
            let mut m = h.read(env)?;
            own(env, m.domid)?;
            let (segment, bus) = match m.kind {
                MAP_PIRQ_TYPE_MSI => (0, m.bus),
                MAP_PIRQ_TYPE_MSI_SEG => (m.bus >> 16, m.bus & 0xffff),
                MAP_PIRQ_TYPE_GSI | MAP_PIRQ_TYPE_MULTI_MSI => return Err(-EOPNOTSUPP),
                _ => return Err(-EINVAL),
            };
            if segment != 0 || !(0..256).contains(&bus) || !(0..256).contains(&m.devfn) {
                return Err(-EINVAL);
            }
            // A pirq out of range first, as Xen checks it.
            let want = match m.pirq {
                p if p < 0 => None,
                p if p as u32 >= crate::irq::pirq::NR_PIRQS => return Err(-EINVAL),
                p => Some(p as u32),
            };
            let bdf = (bus as u16) << 8 | m.devfn as u16;
            // A table address says MSI-X (Xen's test too).
            let pirq = if m.table_base != 0 {
                if m.entry_nr < 0 {
                    return Err(-EINVAL);
                }
                env.map_msix(bdf, m.entry_nr as u32, m.table_base, want)?
            } else {
                env.map_msi(bdf, want)?
            };
            m.pirq = pirq as i32;
            h.write(env, &m)?;
            Ok(0)
        }
        PHYSDEVOP_UNMAP_PIRQ => {
            let u = GuestHandle::<UnmapPirq>::new(arg).read(env)?;
            own(env, u.domid)?;
            if u.pirq < 0 {
                return Err(-EINVAL);
            }
            env.unmap_pirq(u.pirq as u32).map(|()| 0)
        }
        PHYSDEVOP_EOI => {
            let e = GuestHandle::<PhysdevEoi>::new(arg).read(env)?;
            // An MSI is edge-triggered: nothing to end.
            if env.has_pirq(e.irq) { Ok(0) } else { Err(-EINVAL) }
        }
        PHYSDEVOP_IRQ_STATUS_QUERY => {
            let h = GuestHandle::<IrqStatusQuery>::new(arg);
            let mut q = h.read(env)?;
            if !env.has_pirq(q.irq) {
                return Err(-EINVAL);
            }
            q.flags = 0;
            h.write(env, &q)?;
            Ok(0)
        }
        _ => Err(-ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use crate::hypercall::call::Outcome;
    use crate::hypercall::fake::{Fake, call};
    use xen_abi::Pod;
    use xen_abi::errno::*;
    use xen_abi::hypercall as nr;
    use xen_abi::physdev::*;

    #[test]
    fn only_the_hardware_domain_may_ask() {
        let mut domu = Fake::new(5);
        for cmd in [12, 13, 14, 5, 28, 25] {
            assert_eq!(call(&mut domu, nr::PHYSDEV_OP, [cmd, 0, 0, 0, 0]), Outcome::Done(-EPERM), "cmd {cmd}");
        }
    }

    fn map(f: &mut Fake, m: MapPirq) -> (Outcome, MapPirq) {
        f.put(0x300, m.as_bytes());
        let r = call(f, nr::PHYSDEV_OP, [PHYSDEVOP_MAP_PIRQ, 0x300, 0, 0, 0]);
        (r, MapPirq::read_from(f.get(0x300, 40)).unwrap())
    }

    #[test]
    fn msis_map_to_pirqs_and_the_rest_is_refused_as_xen_would() {
        let mut f = Fake::new(0);
        f.privileged = true;
        let msi = MapPirq {
            domid: 0x7ff0,
            kind: MAP_PIRQ_TYPE_MSI,
            index: -1,
            pirq: -1,
            bus: 0,
            devfn: 3 << 3,
            entry_nr: 1,
            ..Default::default()
        };
        let (r, out) = map(&mut f, msi);
        assert_eq!(r, Outcome::Done(0));
        assert_eq!(out.pirq, 256);
        assert_eq!(f.msis, [(0x18, None)]);
        let bad = [
            (MapPirq { kind: MAP_PIRQ_TYPE_GSI, ..msi }, -EOPNOTSUPP),
            (MapPirq { table_base: 0xfebf_0000, entry_nr: -1, ..msi }, -EINVAL),
            (MapPirq { kind: 9, ..msi }, -EINVAL),
            (MapPirq { bus: 256, ..msi }, -EINVAL),
            (MapPirq { devfn: -1, ..msi }, -EINVAL),
            (MapPirq { kind: MAP_PIRQ_TYPE_MSI_SEG, bus: 1 << 16, ..msi }, -EINVAL),
            (MapPirq { domid: 3, ..msi }, -EOPNOTSUPP),
            (MapPirq { pirq: 1024, ..msi }, -EINVAL),
        ];
        for (m, want) in bad {
            assert_eq!(map(&mut f, m).0, Outcome::Done(want), "{m:?}");
        }
        assert_eq!(f.msis.len(), 1, "none of those reached the device");
        // MSI-X: entry 2 of the table in the BAR at 0xfebf0000.
        let (r, out) = map(&mut f, MapPirq { table_base: 0xfebf_0000, entry_nr: 2, ..msi });
        assert_eq!((r, out.pirq), (Outcome::Done(0), 300));
        assert_eq!(f.msixes, [(0x18, 2, 0xfebf_0000)]);
        // eoi and status of a pirq it has; unmap.
        f.put(0x340, PhysdevEoi { irq: 256 }.as_bytes());
        assert_eq!(call(&mut f, nr::PHYSDEV_OP, [PHYSDEVOP_EOI, 0x340, 0, 0, 0]), Outcome::Done(0));
        f.put(0x340, IrqStatusQuery { irq: 256, flags: 7 }.as_bytes());
        assert_eq!(call(&mut f, nr::PHYSDEV_OP, [PHYSDEVOP_IRQ_STATUS_QUERY, 0x340, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(IrqStatusQuery::read_from(f.get(0x340, 8)).unwrap().flags, 0, "an MSI needs no EOI");
        f.put(0x340, PhysdevEoi { irq: 9 }.as_bytes());
        assert_eq!(call(&mut f, nr::PHYSDEV_OP, [PHYSDEVOP_EOI, 0x340, 0, 0, 0]), Outcome::Done(-EINVAL));
        f.put(0x340, UnmapPirq { domid: 0x7ff0, pirq: 256, ..Default::default() }.as_bytes());
        assert_eq!(call(&mut f, nr::PHYSDEV_OP, [PHYSDEVOP_UNMAP_PIRQ, 0x340, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(call(&mut f, nr::PHYSDEV_OP, [PHYSDEVOP_UNMAP_PIRQ, 0x340, 0, 0, 0]), Outcome::Done(-EINVAL));
        assert_eq!(call(&mut f, nr::PHYSDEV_OP, [PHYSDEVOP_PCI_DEVICE_ADD, 0x340, 0, 0, 0]), Outcome::Done(-ENOSYS));
        assert_eq!(call(&mut f, nr::PHYSDEV_OP, [PHYSDEVOP_MAP_PIRQ, 0xfff8, 0, 0, 0]), Outcome::Done(-EFAULT));
    }
}
