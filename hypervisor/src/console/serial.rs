//! The hypervisor console: COM1 through `uart_16550`.
//!
//! Output goes through a transmit ring (Xen's `serial_txbufsz`): a writer
//! copies its bytes in and sends what the UART's FIFO takes at once, and
//! a periodic service ([`pump`]) sends the rest, so nobody waits for the
//! line at 115200 baud (about 87 µs a byte). The hypervisor's own messages
//! are never dropped: when the ring is full, their writer waits for room.
//! Guests' output is kept below that by their rate limit and
//! [`guest_room`] (see `console::guest`). A fatal error turns the console
//! synchronous ([`go_sync`]) after sending what the ring holds.
//!
//! One lock serialises whole lines (and whole multi-line reports) between
//! CPUs. The lock remembers which CPU holds it, so a fault taken while this
//! CPU is printing can still print its report instead of deadlocking; and a
//! CPU that waits too long for a lock whose holder has died takes it over,
//! because a console that can hang is worse than a garbled line.

use crate::arch::x86_64::{cpu, percpu};
use crate::cmdline::SerialConfig;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};
use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::{Parity, WordLength};
use uart_16550::{BaudRate, Config, Uart16550};

/// Bytes the transmit ring holds.
const TX_SIZE: usize = 1 << 16;

/// Room the ring keeps for the hypervisor's own messages: guests' output
/// waits (a console ring) or is dropped (port 0xe9, console_io) beyond it.
const TX_RESERVE: usize = 8 << 10;

struct TxRing {
    buf: [u8; TX_SIZE],
    /// Bytes written and sent since boot (free-running).
    head: usize,
    tail: usize,
}

impl TxRing {
    fn len(&self) -> usize {
        self.head.wrapping_sub(self.tail)
    }

    fn room(&self) -> usize {
        TX_SIZE - self.len()
    }

    /// Appends as much of `bytes` as fits; returns how much.
    fn push(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.room());
        for &b in &bytes[..n] {
            self.buf[self.head % TX_SIZE] = b;
            self.head = self.head.wrapping_add(1);
        }
        n
    }
}

struct Console {
    uart: Option<Uart16550<PioBackend>>,
    tx: TxRing,
    /// Write straight to the UART, waiting for it (before `init`, and after
    /// a fatal error, so that the last words get out).
    sync: bool,
    /// Before `init`, or when the UART could not be set up: write to the
    /// standard COM1 port directly, as firmware and GRUB left it.
    raw_port: Option<u16>,
    /// The UART's I/O base, for flushing.
    port: u16,
}

struct ConsoleLock {
    owner: AtomicU32,
    inner: UnsafeCell<Console>,
}

// SAFETY: access to `inner` goes through `lock`, which admits one CPU at a
// time (plus that CPU's own nested trap handler, see the module comment).
unsafe impl Sync for ConsoleLock {}

const FREE: u32 = u32::MAX;
/// Spins before a waiting CPU takes the lock over.
const STEAL_AFTER_SPINS: u64 = 200_000_000;

static CONSOLE: ConsoleLock = ConsoleLock {
    owner: AtomicU32::new(FREE),
    inner: UnsafeCell::new(Console {
        uart: None,
        tx: TxRing { buf: [0; TX_SIZE], head: 0, tail: 0 },
        sync: true,
        raw_port: Some(0x3f8),
        port: 0x3f8,
    }),
};

/// Holds the console for a sequence of writes.
pub struct LockedWriter {
    release: bool,
}

impl LockedWriter {
    pub fn new() -> LockedWriter {
        let me = percpu::cpu_index();
        if CONSOLE.owner.load(Ordering::Acquire) == me {
            return LockedWriter { release: false }; // nested on this CPU
        }
        let mut spins = 0u64;
        while CONSOLE.owner.compare_exchange_weak(FREE, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
            spins += 1;
            if spins > STEAL_AFTER_SPINS {
                CONSOLE.owner.store(me, Ordering::Release);
                break;
            }
        }
        LockedWriter { release: true }
    }

    fn console(&mut self) -> &mut Console {
        // SAFETY: this CPU holds the lock (see LockedWriter::new).
        unsafe { &mut *CONSOLE.inner.get() }
    }
}

impl Default for LockedWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for LockedWriter {
    fn drop(&mut self) {
        if self.release {
            CONSOLE.owner.store(FREE, Ordering::Release);
        }
    }
}

impl fmt::Write for LockedWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.console().write(s.as_bytes());
        Ok(())
    }
}

impl Console {
    fn write(&mut self, bytes: &[u8]) {
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                self.write_raw(&bytes[start..i]);
                self.write_raw(b"\r\n");
                start = i + 1;
            }
        }
        self.write_raw(&bytes[start..]);
    }

    fn write_raw(&mut self, mut bytes: &[u8]) {
        if self.uart.is_none() {
            if let Some(port) = self.raw_port {
                raw_write(port, bytes);
            }
            return;
        }
        if self.sync {
            self.drain();
            if let Some(uart) = self.uart.as_mut() {
                uart.send_bytes_exact(bytes);
            }
            return;
        }
        while !bytes.is_empty() {
            let n = self.tx.push(bytes);
            bytes = &bytes[n..];
            if !bytes.is_empty() {
                // Full: the hypervisor's own words wait for room.
                self.send_one_fifo_or_wait();
            }
        }
        self.pump();
    }

    /// Sends what the UART takes now without waiting.
    fn pump(&mut self) {
        let Some(uart) = self.uart.as_mut() else {
            self.tx.tail = self.tx.head;
            return;
        };
        while self.tx.len() > 0 {
            let at = self.tx.tail % TX_SIZE;
            let end = (at + self.tx.len()).min(TX_SIZE);
            let sent = uart.send_bytes(&self.tx.buf[at..end]);
            if sent == 0 {
                break;
            }
            self.tx.tail = self.tx.tail.wrapping_add(sent);
        }
    }

    /// Sends at least one FIFO's worth, waiting (bounded) for the UART.
    fn send_one_fifo_or_wait(&mut self) {
        let before = self.tx.len();
        for _ in 0..1_000_000 {
            self.pump();
            if self.tx.len() < before {
                return;
            }
            core::hint::spin_loop();
        }
        // A UART that never empties: drop the oldest rather than hang.
        self.tx.tail = self.tx.tail.wrapping_add(before.min(64));
    }

    /// Sends everything the ring holds, waiting for the UART.
    fn drain(&mut self) {
        while self.tx.len() > 0 {
            self.send_one_fifo_or_wait();
        }
    }
}

/// Sends what the UART takes now of the transmit ring (the periodic
/// service; writers do it too).
pub fn pump() {
    let mut w = LockedWriter::new();
    w.console().pump();
}

/// Room in the transmit ring for a guest's output, keeping the
/// hypervisor's reserve.
pub fn guest_room() -> usize {
    let mut w = LockedWriter::new();
    let c = w.console();
    if c.uart.is_none() || c.sync {
        return usize::MAX;
    }
    c.tx.room().saturating_sub(TX_RESERVE)
}

/// Sends what the ring holds and writes synchronously from now on: for a
/// fatal error's report.
pub fn go_sync() {
    let mut w = LockedWriter::new();
    let c = w.console();
    c.drain();
    c.sync = true;
}

/// Writes by polling the UART's line-status register, with a bounded wait
/// per byte so a missing UART cannot hang the caller.
fn raw_write(port: u16, bytes: &[u8]) {
    for &b in bytes {
        let mut tries = 0u32;
        while cpu::inb(port + 5) & 0x20 == 0 && tries < 100_000 {
            core::hint::spin_loop();
            tries += 1;
        }
        cpu::outb(port, b);
    }
}

/// The I/O base of the UART the console uses, if it uses one: its ports
/// stay the hypervisor's.
pub fn uart_port() -> Option<u16> {
    let mut w = LockedWriter::new();
    let con = w.console();
    (con.uart.is_some() || con.raw_port.is_some()).then_some(con.port)
}

/// Sets up COM1 as `cfg` says, or turns console output off.
pub fn init(cfg: &SerialConfig, enabled: bool) -> Result<u32, &'static str> {
    let mut w = LockedWriter::new();
    let con = w.console();
    if !enabled {
        con.uart = None;
        con.raw_port = None;
        return Ok(0);
    }
    con.port = cfg.io_base;
    let baud = match cfg.baud {
        Some(b) => b,
        None => current_baud(cfg.io_base, cfg.clock_hz).unwrap_or(115_200),
    };
    let config = Config {
        frequency: cfg.clock_hz,
        baud_rate: BaudRate::from_integer(baud),
        data_bits: match cfg.data_bits {
            5 => WordLength::FiveBits,
            6 => WordLength::SixBits,
            7 => WordLength::SevenBits,
            _ => WordLength::EightBits,
        },
        parity: match cfg.parity {
            b'o' => Parity::Odd,
            b'e' => Parity::Even,
            b'm' => Parity::Forced1,
            b's' => Parity::Forced0,
            _ => Parity::Disabled,
        },
        extra_stop_bits: cfg.stop_bits == 2,
        ..Config::DEFAULT
    };
    // SAFETY: the I/O ports of a 16550 at io_base belong to the hypervisor's
    // console for the whole run.
    let mut uart = unsafe { Uart16550::new_port(cfg.io_base) }.map_err(|_| "invalid COM1 I/O base")?;
    match uart.init(config) {
        Ok(()) => {
            con.uart = Some(uart);
            con.raw_port = None;
            con.sync = false;
            Ok(baud)
        }
        Err(_) => {
            // No UART answers there: keep writing blindly to the port so a
            // machine with an odd UART still shows something.
            con.uart = None;
            con.raw_port = Some(cfg.io_base);
            Err("no 16550 UART answers at that I/O base")
        }
    }
}

/// The baud rate firmware programmed (for `com1=auto`).
fn current_baud(base: u16, clock_hz: u32) -> Option<u32> {
    let lcr = cpu::inb(base + 3);
    cpu::outb(base + 3, lcr | 0x80);
    let div = cpu::inb(base) as u32 | (cpu::inb(base + 1) as u32) << 8;
    cpu::outb(base + 3, lcr & !0x80);
    (clock_hz / 16).checked_div(div)
}

/// Waits (bounded) until everything written has left the UART, so that a
/// power-off or reset does not cut the last line.
pub fn flush() {
    let port = {
        let mut w = LockedWriter::new();
        let c = w.console();
        c.drain();
        if c.uart.is_some() || c.raw_port.is_some() { Some(c.port) } else { None }
    };
    if let Some(p) = port {
        for _ in 0..1_000_000 {
            // LSR bit 6: transmitter holding register and shift register empty.
            if cpu::inb(p + 5) & 0x40 != 0 {
                return;
            }
            core::hint::spin_loop();
        }
    }
}

/// Writes a string under the console lock.
pub fn write_str(s: &str) {
    let mut w = LockedWriter::new();
    let _ = fmt::Write::write_str(&mut w, s);
}

/// Writes bytes as they are (no newline translation) under the console
/// lock: a guest's output on the console it holds interactively.
pub fn write_bytes(bytes: &[u8]) {
    let mut w = LockedWriter::new();
    w.console().write_raw(bytes);
}

/// Last-resort output that takes no lock at all.
pub fn emergency_write(s: &str) {
    raw_write(0x3f8, s.as_bytes());
}

/// A byte typed on the console, if any.
pub fn read_byte() -> Option<u8> {
    let mut w = LockedWriter::new();
    w.console().uart.as_mut().and_then(|u| u.try_receive_byte().ok())
}
