//! Serial input for domain consoles: Xen's console switching (Ctrl-A
//! three times moves the input to the next domain, then back to the
//! hypervisor).

use super::ring::console_input;
use crate::domain::registry as domain;
use alloc::vec::Vec;
use spin::Mutex;

/// Which domain serial input goes to (Xen's console switching: Ctrl-A
/// three times moves it to the next domain, then back to the hypervisor).
static INPUT_FOCUS: Mutex<(Option<u16>, u8)> = Mutex::new((None, 0));

const CTRL_A: u8 = 0x01;

/// How often serial input is looked for.
pub const SERIAL_POLL_NS: u64 = 20_000_000;

/// Takes what was typed on the serial line (called every SERIAL_POLL_NS).
pub fn poll_serial_input() {
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < buf.len() {
        match crate::console::serial::read_byte() {
            Some(b) => {
                buf[n] = b;
                n += 1;
            }
            None => break,
        }
    }
    if n == 0 {
        return;
    }
    let mut focus = INPUT_FOCUS.lock();
    let mut out: Vec<u8> = Vec::new();
    for &b in &buf[..n] {
        if b == CTRL_A {
            focus.1 += 1;
            if focus.1 == 3 {
                // What was typed so far goes where it was typed.
                deliver_input(focus.0, &core::mem::take(&mut out));
                focus.1 = 0;
                focus.0 = next_focus(focus.0);
                match focus.0 {
                    Some(id) => log::info!("serial input to domain {id} (type Ctrl-A three times to switch)"),
                    None => log::info!("serial input to the hypervisor (type Ctrl-A three times to switch)"),
                }
            }
            continue;
        }
        // Ctrl-A typed fewer than three times goes through as typed.
        let held = core::mem::take(&mut focus.1) as usize;
        out.resize(out.len() + held, CTRL_A);
        out.push(b);
    }
    deliver_input(focus.0, &out);
}

fn deliver_input(focus: Option<u16>, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    if let Some(id) = focus
        && let Some(d) = domain::find(id)
    {
        console_input(&d, bytes);
    }
}

fn next_focus(cur: Option<u16>) -> Option<u16> {
    let mut ids: Vec<u16> =
        domain::all().iter().filter(|d| d.console.get().is_some_and(|r| r.va != 0)).map(|d| d.id).collect();
    ids.sort_unstable();
    match cur {
        None => ids.first().copied(),
        Some(c) => ids.into_iter().find(|&i| i > c),
    }
}
