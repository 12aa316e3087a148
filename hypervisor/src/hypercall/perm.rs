//! Who may do what to which domain: Xen's default permission levels (its
//! XSM defaults, `xsm_default_action` in xen/include/xsm/dummy.h), and the
//! one place a domain named by a hypercall argument is resolved and looked
//! up (Xen's `rcu_lock_domain_by_any_id` and `rcu_lock_domain_by_id`).
//! Handlers say which level an operation needs; none checks privilege by
//! hand.

pub use super::call::Caller;
use super::call::Guest;
use xen_abi::DOMID_SELF;
use xen_abi::errno::*;

/// Xen's default permission levels, each admitting more than the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// Any guest (XSM_HOOK).
    Any,
    /// The target itself, its device model, or the control domain
    /// (XSM_TARGET).
    Target,
    /// The xenstore domain, the target's device model, or the control
    /// domain (XSM_XS_PRIV).
    Xenstore,
    /// The target's device model, or the control domain (XSM_DM_PRIV).
    DeviceModel,
    /// The control domain only (XSM_PRIV).
    Control,
}

impl Caller {
    /// Whether the caller may act at `perm` on `target` (None: on no
    /// domain, the machine itself).
    pub fn may(&self, perm: Perm, target: Option<u16>) -> bool {
        let itself = target == Some(self.domid);
        let device_model = target.is_some() && self.device_model_for == target;
        match perm {
            Perm::Any => true,
            Perm::Target => itself || device_model || self.privileged,
            Perm::Xenstore => self.xenstore || device_model || self.privileged,
            Perm::DeviceModel => device_model || self.privileged,
            Perm::Control => self.privileged,
        }
    }

    /// [`Caller::may`] as Xen answers it: -EPERM when not.
    pub fn check(&self, perm: Perm, target: Option<u16>) -> Result<(), i64> {
        if self.may(perm, target) { Ok(()) } else { Err(-EPERM) }
    }
}

/// A domain id from an argument with DOMID_SELF made the caller's.
pub fn resolve(env: &impl Guest, domid: u16) -> u16 {
    if domid == DOMID_SELF { env.caller().domid } else { domid }
}

/// The domain an argument names (DOMID_SELF: the caller): -ESRCH if there
/// is no such domain.
pub fn lookup(env: &impl Guest, domid: u16) -> Result<u16, i64> {
    let d = resolve(env, domid);
    if env.domain_exists(d) { Ok(d) } else { Err(-ESRCH) }
}

/// [`lookup`] by id only: DOMID_SELF names no domain here.
pub fn lookup_by_id(env: &impl Guest, domid: u16) -> Result<u16, i64> {
    if domid == DOMID_SELF || !env.domain_exists(domid) { Err(-ESRCH) } else { Ok(domid) }
}

/// The prologue of an operation on another domain: looked up (-ESRCH),
/// then the caller checked at `perm` (-EPERM).
pub fn target(env: &impl Guest, domid: u16, perm: Perm) -> Result<u16, i64> {
    let d = lookup(env, domid)?;
    env.caller().check(perm, Some(d))?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(domid: u16) -> Caller {
        Caller { domid, privileged: false, xenstore: false, device_model_for: None }
    }

    #[test]
    fn each_level_admits_whom_xen_admits() {
        let domu = caller(5);
        let dom0 = Caller { privileged: true, ..caller(0) };
        let xs = Caller { xenstore: true, ..caller(3) };
        let dm = Caller { device_model_for: Some(7), ..caller(4) };
        let table = [
            // (perm, target, [domU 5, dom0, xenstore 3, device model 4 of 7])
            (Perm::Any, Some(7), [true, true, true, true]),
            (Perm::Target, Some(5), [true, true, false, false]),
            (Perm::Target, Some(7), [false, true, false, true]),
            (Perm::Target, Some(3), [false, true, true, false]),
            (Perm::Xenstore, Some(7), [false, true, true, true]),
            (Perm::Xenstore, Some(5), [false, true, true, false]),
            (Perm::DeviceModel, Some(7), [false, true, false, true]),
            (Perm::DeviceModel, Some(5), [false, true, false, false]),
            (Perm::Control, Some(5), [false, true, false, false]),
            (Perm::Control, None, [false, true, false, false]),
            (Perm::DeviceModel, None, [false, true, false, false]),
        ];
        for (perm, target, want) in table {
            let got = [domu, dom0, xs, dm].map(|c| c.may(perm, target));
            assert_eq!(got, want, "{perm:?} on {target:?}");
        }
        assert_eq!(domu.check(Perm::Control, None), Err(-EPERM));
        assert_eq!(dom0.check(Perm::Control, None), Ok(()));
    }
}
