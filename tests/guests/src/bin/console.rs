//! Reads lines typed on the serial line from its console ring (Xen's
//! `xencons_interface`: HVM_PARAM_CONSOLE_PFN / CONSOLE_EVTCHN) and says
//! what it got through the same ring, until it reads "quit". Control
//! characters are shown as ^X.

#![no_std]
#![no_main]

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU32, Ordering};
use test_guests::xen::{self, Upcall};
use test_guests::*;
use xen_abi::console as xc;

/// A line of text for the console ring.
struct Line {
    buf: [u8; 200],
    len: usize,
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

fn index(page: u64, off: usize) -> &'static AtomicU32 {
    // SAFETY: the console page is identity-mapped; the indices are shared
    // with the hypervisor, hence atomics.
    unsafe { AtomicU32::from_ptr(((page << 12) + off as u64) as *mut u32) }
}

/// Writes `text` to the ring's output half and notifies the port.
fn ring_write(pfn: u64, port: u32, text: &[u8]) {
    let (cons, prod) = (index(pfn, xc::OUT_CONS), index(pfn, xc::OUT_PROD));
    let mut p = prod.load(Ordering::SeqCst);
    for &b in text {
        let deadline = xen::after_ms(60_000);
        if !xen::wait_until(deadline, || p.wrapping_sub(cons.load(Ordering::SeqCst)) < xc::OUT_SIZE) {
            println!("console: the output ring stays full");
            shutdown(SHUTDOWN_CRASH);
        }
        let at = (pfn << 12) + (xc::OUT_OFFSET as u64) + (p % xc::OUT_SIZE) as u64;
        // SAFETY: inside the console page.
        unsafe { core::ptr::write_volatile(at as *mut u8, b) };
        p = p.wrapping_add(1);
        prod.store(p, Ordering::SeqCst);
    }
    xen::send(port);
}

#[unsafe(no_mangle)]
extern "C" fn pvh_main(_: u64) -> ! {
    x86::install_idt();
    x86::map_shared_info(0x3f0);
    xen::init_upcalls(Upcall::Callback);
    // A timer ends every wait, so a lost event would show as a timeout.
    xen::bind_timer();
    x86::sti();
    let (_, pfn) = xen::get_param(xen_abi::hvm::PARAM_CONSOLE_PFN);
    let (_, port) = xen::get_param(xen_abi::hvm::PARAM_CONSOLE_EVTCHN);
    let port = port as u32;
    ring_write(pfn, port, b"console: ready for input\n");
    let mut line = [0u8; 128];
    let mut len = 0;
    loop {
        let cons = index(pfn, xc::IN_CONS).load(Ordering::SeqCst);
        let has_input = || index(pfn, xc::IN_PROD).load(Ordering::SeqCst) != cons;
        if !xen::wait_until(xen::after_ms(60_000), has_input) {
            println!("console: no input for a minute");
            shutdown(SHUTDOWN_CRASH);
        }
        let prod = index(pfn, xc::IN_PROD).load(Ordering::SeqCst);
        let mut c = cons;
        while c != prod {
            // SAFETY: inside the console page.
            let b = unsafe { core::ptr::read_volatile(((pfn << 12) + (c % xc::IN_SIZE) as u64) as *const u8) };
            c = c.wrapping_add(1);
            if b == b'\r' || b == b'\n' {
                let text = &line[..len];
                let mut out = Line { buf: [0; 200], len: 0 };
                let _ = write!(out, "console input: ");
                for &ch in text {
                    if ch < 0x20 {
                        let _ = write!(out, "^{}", (ch + 0x40) as char);
                    } else {
                        let _ = out.write_char(ch as char);
                    }
                }
                let _ = out.write_char('\n');
                ring_write(pfn, port, &out.buf[..out.len]);
                if text == b"quit" {
                    index(pfn, xc::IN_CONS).store(c, Ordering::SeqCst);
                    shutdown(SHUTDOWN_POWEROFF);
                }
                len = 0;
            } else if len < line.len() {
                line[len] = b;
                len += 1;
            }
        }
        index(pfn, xc::IN_CONS).store(c, Ordering::SeqCst);
    }
}
