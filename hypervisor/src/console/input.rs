//! Serial input for domain consoles: Xen's console switching (Ctrl-A
//! three times moves the input to the next domain, then back to the
//! hypervisor).

use super::focus;
use super::ring::console_input;
use crate::domain::registry as domain;
use alloc::vec::Vec;
use spin::Mutex;

/// How many Ctrl-A were typed in a row (three move the focus: Xen's
/// console switching, to the next domain, then back to the hypervisor).
static CTRL_A_TYPED: Mutex<u8> = Mutex::new(0);

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
    let mut typed = CTRL_A_TYPED.lock();
    let mut focus = focus::get();
    let mut out: Vec<u8> = Vec::new();
    for &b in &buf[..n] {
        if b == CTRL_A {
            *typed += 1;
            if *typed == 3 {
                // What was typed so far goes where it was typed.
                deliver_input(focus, &core::mem::take(&mut out));
                *typed = 0;
                focus = next_focus(focus);
                match focus {
                    Some(id) => give_serial_line(id, ""),
                    None => {
                        focus::set(None);
                        log::info!("serial input to the hypervisor (type Ctrl-A three times to switch)");
                    }
                }
            }
            continue;
        }
        // Ctrl-A typed fewer than three times goes through as typed.
        let held = core::mem::take(&mut *typed) as usize;
        out.resize(out.len() + held, CTRL_A);
        out.push(b);
    }
    deliver_input(focus, &out);
}

/// `serial_input=`: once the boot has built its domains, serial input
/// goes to domain `id` (when it has a console ring) instead of the
/// hypervisor.
pub fn focus_at_boot(id: u16) {
    if domain::find(id).is_some_and(|d| has_console(&d)) {
        give_serial_line(id, &alloc::format!("serial_input={id}; "));
    } else {
        log::warn!("serial_input={id}: no domain {id} with a console; serial input stays with the hypervisor");
    }
}

/// Serial input goes to domain `id` (`why` opens the log line's note),
/// which then prints as it writes (see `ring::drain_console`): what it
/// wrote since its last newline (a shell prompt, say) is shown now, as it
/// wrote it.
fn give_serial_line(id: u16, why: &str) {
    focus::set(Some(id));
    log::info!("serial input to domain {id} ({why}type Ctrl-A three times to switch)");
    if let Some(d) = domain::find(id) {
        d.console_flush_unfinished();
    }
}

/// Whether the domain has a console ring to type into.
fn has_console(d: &crate::domain::Domain) -> bool {
    d.console.get().is_some_and(|r| r.va != 0)
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
    let mut ids: Vec<u16> = domain::all().iter().filter(|d| has_console(d)).map(|d| d.id).collect();
    ids.sort_unstable();
    match cur {
        None => ids.first().copied(),
        Some(c) => ids.into_iter().find(|&i| i > c),
    }
}
