//! The console ring: finds its page and event channel in the HVM params
//! (HVM_PARAM_CONSOLE_PFN, HVM_PARAM_CONSOLE_EVTCHN), as Linux's hvc_xen
//! does, and writes lines into the ring's output half (free-running
//! OUT_PROD, OUT_CONS), notifying the port after each batch: one line per
//! send, many lines in one send, a line split across two sends, and more
//! text in all than the ring holds, so the indices wrap. With no console
//! backend domain the hypervisor prints the ring's text as the domain's
//! console lines, consumes it and notifies the port back. Waiting for room
//! uses SCHEDOP_poll on the (masked) console port.

#![no_std]
#![no_main]

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU32, Ordering, fence};
use test_guests::xen::{self, MS};
use test_guests::*;
use xen_abi::console as xc;
use xen_abi::event_channel::*;
use xen_abi::hvm;

/// Lines written one per send; in all more than the ring's 2048 bytes.
const LINES: u32 = 60;
/// Lines written with a single send.
const BATCH: u32 = 20;

struct Ring {
    page: u64,
    port: u32,
}

impl Ring {
    fn index(&self, off: usize) -> &'static AtomicU32 {
        // SAFETY: the console page is mapped (identity; the special-page
        // area) for the domain's life, and the index is a 4-byte-aligned
        // word inside it that the backend reads and writes concurrently.
        unsafe { AtomicU32::from_ptr((self.page + off as u64) as *mut u32) }
    }

    /// Room in the output ring now.
    fn room(&self) -> u32 {
        let used = self
            .index(xc::OUT_PROD)
            .load(Ordering::SeqCst)
            .wrapping_sub(self.index(xc::OUT_CONS).load(Ordering::SeqCst));
        xc::OUT_SIZE.saturating_sub(used)
    }

    /// Waits until `n` bytes fit: clears the port's pending bit, and polls
    /// the port if there is still no room (the backend notifies it when it
    /// has consumed). False if no room comes within the deadline.
    fn wait_room(&self, n: u32) -> bool {
        let deadline = xen::after_ms(60_000);
        loop {
            xen::clear_pending(self.port);
            if self.room() >= n {
                return true;
            }
            if xen::now() >= deadline {
                return false;
            }
            xen::poll(&[self.port], xen::now() + 10 * MS);
        }
    }

    /// Copies `text` into the ring and moves the producer (the bytes
    /// before the index, as the backend reads them after it). No send.
    fn put(&self, text: &[u8]) -> bool {
        for chunk in text.chunks(xc::OUT_SIZE as usize / 2) {
            if !self.wait_room(chunk.len() as u32) {
                return false;
            }
            let prod = self.index(xc::OUT_PROD).load(Ordering::SeqCst);
            for (i, &b) in chunk.iter().enumerate() {
                let at = self.page + xc::OUT_OFFSET as u64 + (prod.wrapping_add(i as u32) % xc::OUT_SIZE) as u64;
                // SAFETY: inside the output half of the console page.
                unsafe { core::ptr::write_volatile(at as *mut u8, b) };
            }
            fence(Ordering::Release);
            self.index(xc::OUT_PROD).store(prod.wrapping_add(chunk.len() as u32), Ordering::SeqCst);
        }
        true
    }

    /// Writes `text` and notifies the backend; the send's result.
    fn write(&self, text: &[u8]) -> i64 {
        if !self.put(text) {
            return -1;
        }
        xen::send(self.port)
    }
}

/// A line of text built without allocation.
struct Line {
    buf: [u8; 128],
    len: usize,
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let b = s.as_bytes();
        let end = self.len + b.len();
        if end > self.buf.len() {
            return Err(core::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(b);
        self.len = end;
        Ok(())
    }
}

fn line(args: core::fmt::Arguments<'_>) -> Line {
    let mut l = Line { buf: [0; 128], len: 0 };
    let _ = l.write_fmt(args);
    l
}

#[unsafe(no_mangle)]
extern "C" fn pvh_main(_: u64) -> ! {
    let mut c = Checks::new();
    c.eq("map shared_info", x86::map_shared_info(0x3f0), 0);
    let (rc, pfn) = xen::get_param(hvm::PARAM_CONSOLE_PFN);
    c.eq("HVM_PARAM_CONSOLE_PFN", rc, 0);
    c.check("the console page is a special page (0xfeff8-0xfefff)", (0xfeff8..=0xfefff).contains(&pfn));
    let (rc, port) = xen::get_param(hvm::PARAM_CONSOLE_EVTCHN);
    c.eq("HVM_PARAM_CONSOLE_EVTCHN", rc, 0);
    c.check("the console has a port", port != 0 && port < EVTCHN_2L_NR_CHANNELS as u64);
    let port = port as u32;
    let st = xen::status(xen_abi::DOMID_SELF, port);
    c.eq("status of the console port", st.rc, 0);
    c.eq("the console port is unbound", st.status as i64, EVTCHNSTAT_UNBOUND as i64);
    c.eq("waiting for the console backend in domain 0", st.dom as i64, 0);
    if rc != 0 || !(0xfeff8..=0xfefff).contains(&pfn) || port == 0 {
        c.finish();
    }
    // No upcalls: the port is polled.
    xen::mask(port);
    let ring = Ring { page: pfn << 12, port };

    let mut bad = 0;
    for i in 0..LINES {
        let l = line(format_args!("console ring line {i:02}: the quick brown fox jumps over the lazy dog\n"));
        if ring.write(&l.buf[..l.len]) != 0 {
            bad += 1;
        }
    }
    c.eq("every line written and sent", bad, 0);
    let mut batch_ok = true;
    for i in 0..BATCH {
        let l = line(format_args!("twenty lines in one send, {i:02}\n"));
        batch_ok &= ring.put(&l.buf[..l.len]);
    }
    c.check("twenty lines in the ring", batch_ok);
    c.eq("one send for them", xen::send(port), 0);
    // (No console_io output until the line is complete: the hypervisor
    // may buffer both sources' partial lines together.)
    let first = ring.write(b"split across two sends: ");
    let second = ring.put(b"ok\n");
    xen::clear_pending(port);
    let sent = xen::send(port);
    c.eq("half a line", first, 0);
    c.check("the other half in the ring", second);
    c.eq("and sent", sent, 0);
    let deadline = xen::after_ms(60_000);
    c.check("the backend notified the port", xen::spin_until(deadline, || xen::is_pending(port)));
    c.check("after consuming everything", xen::spin_until(deadline, || ring.room() == xc::OUT_SIZE));
    // Through console_io now: it comes after every ring line.
    println!("after the ring, through console_io");
    c.finish()
}
