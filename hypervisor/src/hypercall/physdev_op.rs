//! physdev_op (33): the hardware domain's interrupts and PCI devices
//! (PHYSDEVOP_map_pirq, eoi, irq_status_query, pci_device_add, ...).
//!
//! The table lets only the hardware domain in: any other domain gets
//! -EPERM for every operation (Xen answers a PVH domU -ENOSYS, having no
//! pirqs for it; refusing outright is the stricter reading of the same
//! rule, and what docs/abi-coverage.md records). The operations
//! themselves arrive with device interrupts (pirqs as event channels);
//! until then each answers -ENOSYS, which Linux's and our dom0 treat as
//! "not offered".

use super::call::Guest;
use super::call::{Args, Outcome};
use xen_abi::errno::*;

pub fn physdev_op<E: Guest>(_env: &mut E, _args: &Args) -> Outcome {
    Outcome::Done(-ENOSYS)
}

#[cfg(test)]
mod tests {
    use crate::hypercall::call::Outcome;
    use crate::hypercall::fake::{Fake, call};
    use xen_abi::errno::*;
    use xen_abi::hypercall as nr;

    #[test]
    fn only_the_hardware_domain_may_ask() {
        let mut domu = Fake::new(5);
        for cmd in [12, 13, 14, 5, 28, 25] {
            assert_eq!(call(&mut domu, nr::PHYSDEV_OP, [cmd, 0, 0, 0, 0]), Outcome::Done(-EPERM), "cmd {cmd}");
        }
        let mut dom0 = Fake::new(0);
        dom0.privileged = true;
        assert_eq!(call(&mut dom0, nr::PHYSDEV_OP, [13, 0, 0, 0, 0]), Outcome::Done(-ENOSYS));
    }
}
