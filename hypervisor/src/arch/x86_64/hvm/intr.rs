//! Which interrupt a vCPU gets before it enters the guest (Xen's
//! hvm/vmx/intr.c and svm/intr.c): the event-channel callback vector comes
//! before the local APIC's highest pending vector, for as long as the
//! guest's `evtchn_upcall_pending` is set; one is injected only when the
//! guest can take it, else the vCPU asks to exit as soon as it can.

/// What to do before entering the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The vector to inject now.
    pub inject: Option<u8>,
    /// It came from the local APIC, which must move it from IRR to ISR.
    pub ack_lapic: bool,
    /// Whether the guest should exit as soon as it can take an interrupt.
    pub want_window: bool,
}

/// The choice for a vCPU whose upcall is pending through callback vector
/// `callback` (if any), whose local APIC would deliver `lapic` next, and
/// which can take an interrupt now or not (`window_open`).
pub fn choose(callback: Option<u8>, lapic: Option<u8>, window_open: bool) -> Delivery {
    let (vector, from_lapic) = match (callback, lapic) {
        (Some(v), _) => (Some(v), false),
        (None, Some(v)) => (Some(v), true),
        (None, None) => (None, false),
    };
    match vector {
        Some(v) if window_open => Delivery { inject: Some(v), ack_lapic: from_lapic, want_window: false },
        Some(_) => Delivery { inject: None, ack_lapic: false, want_window: true },
        None => Delivery { inject: None, ack_lapic: false, want_window: false },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callback_vector_goes_before_the_local_apic() {
        assert_eq!(
            choose(Some(0xf3), Some(0x30), true),
            Delivery { inject: Some(0xf3), ack_lapic: false, want_window: false }
        );
        assert_eq!(
            choose(None, Some(0x30), true),
            Delivery { inject: Some(0x30), ack_lapic: true, want_window: false }
        );
    }

    #[test]
    fn a_closed_window_asks_for_an_exit_and_acknowledges_nothing() {
        for (cb, lapic) in [(Some(0xf3), None), (None, Some(0x30)), (Some(0xf3), Some(0x30))] {
            assert_eq!(choose(cb, lapic, false), Delivery { inject: None, ack_lapic: false, want_window: true });
        }
    }

    #[test]
    fn nothing_pending_wants_no_window() {
        assert_eq!(choose(None, None, true), Delivery { inject: None, ack_lapic: false, want_window: false });
        assert_eq!(choose(None, None, false), Delivery { inject: None, ack_lapic: false, want_window: false });
    }
}
