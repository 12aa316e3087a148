//! The `log` backend: every line carries the time since boot, the CPU and
//! the level, e.g. `[    0.004512] CPU0 INFO  ACPI: 2 CPUs`.

use crate::arch::x86_64::percpu;
use crate::cmdline::LogLevel;
use crate::console::serial::LockedWriter;
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};
use log::{Level, LevelFilter, Metadata, Record};

struct Logger;

static LOGGER: Logger = Logger;
static WARNINGS: AtomicU32 = AtomicU32::new(0);
static ERRORS: AtomicU32 = AtomicU32::new(0);

/// `[seconds.micros] CPUn ` for a line that does not go through `log`.
pub fn write_prefix(w: &mut impl Write) {
    let ns = crate::time::now_ns();
    let _ = write!(w, "[{:5}.{:06}] CPU{} ", ns / 1_000_000_000, (ns / 1000) % 1_000_000, percpu::cpu_index());
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        match record.level() {
            Level::Warn => WARNINGS.fetch_add(1, Ordering::Relaxed),
            Level::Error => ERRORS.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut w = LockedWriter::new();
        write_prefix(&mut w);
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        let _ = writeln!(w, "{level} {}", record.args());
    }

    fn flush(&self) {}
}

pub fn level_filter(l: LogLevel) -> LevelFilter {
    match l {
        LogLevel::None => LevelFilter::Off,
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warning => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::All => LevelFilter::Trace,
    }
}

pub fn init(level: LogLevel) {
    // set_logger fails only if called twice; the first logger stays.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level_filter(level));
}

/// (warnings, errors) logged so far, shown or not.
pub fn counts() -> (u32, u32) {
    (WARNINGS.load(Ordering::Relaxed), ERRORS.load(Ordering::Relaxed))
}
