//! A subsystem's part in a domain's life, registered rather than called by
//! name (Jailhouse's `DEFINE_UNIT`, Xen's per-domain init and teardown
//! hooks): each subsystem that keeps something per domain (its p2m, event
//! channels, grant table, console ring, clock) offers a `Unit`, and
//! `domain::lifecycle` runs the list it is given. Later hooks (saving and
//! restoring a domain) join the same table.
//!
//! The order is the contract: units are set up in list order and torn
//! down in the reverse, and a unit that cannot be set up has those before
//! it torn down again.

/// One subsystem's hooks for a domain of type `D`.
pub struct Unit<D> {
    pub name: &'static str,
    /// Sets the subsystem up for a new domain (built, not yet running):
    /// the reason on failure, and the domain is refused.
    pub create: fn(&D) -> Result<(), &'static str>,
    /// Gives back what the subsystem holds of a dead domain (no vCPU runs
    /// it any more, and it is out of the registry).
    pub destroy: fn(&D),
}

/// For a unit with nothing to set up or tear down.
pub fn nothing_to_create<D>(_: &D) -> Result<(), &'static str> {
    Ok(())
}

pub fn nothing_to_destroy<D>(_: &D) {}

/// A unit that could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitFailed {
    pub unit: &'static str,
    pub why: &'static str,
}

/// Sets every unit up for `d`, in order; if one fails, those already set
/// up are torn down (in reverse) and the failure is returned.
pub fn set_up<D>(units: &[Unit<D>], d: &D) -> Result<(), UnitFailed> {
    for (i, u) in units.iter().enumerate() {
        if let Err(why) = (u.create)(d) {
            tear_down(&units[..i], d);
            return Err(UnitFailed { unit: u.name, why });
        }
    }
    Ok(())
}

/// Tears every unit down for `d`, last set up first.
pub fn tear_down<D>(units: &[Unit<D>], d: &D) {
    for u in units.iter().rev() {
        (u.destroy)(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::string::String;
    use std::vec::Vec;

    /// A domain that records what was done to it; `refuse` makes one
    /// unit's setup fail.
    #[derive(Default)]
    struct Fake {
        log: RefCell<Vec<String>>,
        refuse: Option<&'static str>,
    }

    fn unit(name: &'static str) -> Unit<Fake> {
        // Each unit's hooks log their name; a table of functions per name
        // keeps them plain fn pointers.
        macro_rules! hooks {
            ($($n:literal),*) => {
                match name {
                    $($n => Unit {
                        name: $n,
                        create: |d: &Fake| {
                            if d.refuse == Some($n) {
                                return Err("refused");
                            }
                            d.log.borrow_mut().push(format!("create {}", $n));
                            Ok(())
                        },
                        destroy: |d: &Fake| d.log.borrow_mut().push(format!("destroy {}", $n)),
                    },)*
                    _ => unreachable!(),
                }
            };
        }
        hooks!("memory", "event channels", "grants", "console")
    }

    fn units() -> [Unit<Fake>; 4] {
        ["memory", "event channels", "grants", "console"].map(unit)
    }

    #[test]
    fn units_are_set_up_in_order_and_torn_down_in_reverse() {
        let d = Fake::default();
        assert_eq!(set_up(&units(), &d), Ok(()));
        tear_down(&units(), &d);
        assert_eq!(
            *d.log.borrow(),
            [
                "create memory",
                "create event channels",
                "create grants",
                "create console",
                "destroy console",
                "destroy grants",
                "destroy event channels",
                "destroy memory",
            ]
        );
    }

    #[test]
    fn a_unit_that_fails_undoes_those_before_it_and_names_itself() {
        let d = Fake { refuse: Some("grants"), ..Fake::default() };
        assert_eq!(set_up(&units(), &d), Err(UnitFailed { unit: "grants", why: "refused" }));
        assert_eq!(
            *d.log.borrow(),
            ["create memory", "create event channels", "destroy event channels", "destroy memory"]
        );
    }

    #[test]
    fn units_with_nothing_to_do_do_nothing() {
        let u: Unit<Fake> = Unit { name: "clock", create: nothing_to_create, destroy: nothing_to_destroy };
        let d = Fake::default();
        assert_eq!(set_up(core::slice::from_ref(&u), &d), Ok(()));
        tear_down(core::slice::from_ref(&u), &d);
        assert!(d.log.borrow().is_empty());
    }
}
