//! Which domain the serial line belongs to: the one serial input goes to
//! (`console::input` moves it), whose console output then goes out as it
//! comes (`console::ring`). An atomic, so that neither side holds a lock
//! the other may need.

use core::sync::atomic::{AtomicU32, Ordering};

const NONE: u32 = u32::MAX;

static FOCUS: AtomicU32 = AtomicU32::new(NONE);

/// The domain serial input goes to now; None: the hypervisor.
pub fn get() -> Option<u16> {
    match FOCUS.load(Ordering::Acquire) {
        NONE => None,
        id => Some(id as u16),
    }
}

pub fn set(domain: Option<u16>) {
    FOCUS.store(domain.map_or(NONE, u32::from), Ordering::Release);
}
