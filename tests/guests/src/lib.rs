//! What every test guest shares: printing through `console_io`, the start
//! info, checks that report PASS/FAIL lines and end with one verdict line,
//! and a panic handler that reports, fails and crashes the domain.

#![no_std]

pub use xen_abi::guest::{Console, console_write, hypercall, shutdown};
pub use xen_abi::sched::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF};
use xen_abi::start_info::{HvmMemmapEntry, HvmModlistEntry, HvmStartInfo};

pub mod fifo;
pub mod pair;
pub mod x86;
pub mod xen;

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::Console, $($arg)*);
    }};
}

/// The start info the hypervisor passed in EBX (identity-mapped memory).
pub fn start_info(paddr: u64) -> &'static HvmStartInfo {
    // SAFETY: the first 4 GiB are identity-mapped by the PVH entry code and
    // the hypervisor put a start info there.
    unsafe { &*(paddr as *const HvmStartInfo) }
}

pub fn memmap(si: &HvmStartInfo) -> &'static [HvmMemmapEntry] {
    if si.memmap_paddr == 0 {
        return &[];
    }
    // SAFETY: as for start_info.
    unsafe { core::slice::from_raw_parts(si.memmap_paddr as *const HvmMemmapEntry, si.memmap_entries as usize) }
}

pub fn modules(si: &HvmStartInfo) -> &'static [HvmModlistEntry] {
    if si.modlist_paddr == 0 {
        return &[];
    }
    // SAFETY: as for start_info.
    unsafe { core::slice::from_raw_parts(si.modlist_paddr as *const HvmModlistEntry, si.nr_modules as usize) }
}

/// A NUL-terminated string in guest memory.
pub fn c_str(paddr: u64) -> &'static str {
    if paddr == 0 {
        return "";
    }
    let p = paddr as *const u8;
    let mut n = 0;
    // SAFETY: as for start_info; the hypervisor NUL-terminates.
    while n < 4096 && unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    // SAFETY: as above.
    core::str::from_utf8(unsafe { core::slice::from_raw_parts(p, n) }).unwrap_or("(not UTF-8)")
}

/// Counts checks and remembers the first that failed; `finish` prints the
/// guest's one verdict line, which the integration tests read:
/// `VERDICT: PASS`, `VERDICT: FAIL <first failed check>` or
/// `VERDICT: SKIP <reason>`.
pub struct Checks {
    failed: u32,
    total: u32,
    first_failed: Name,
}

/// A check's name, kept in the guest (no heap).
struct Name {
    bytes: [u8; 96],
    len: usize,
}

impl Name {
    const fn empty() -> Name {
        Name { bytes: [0; 96], len: 0 }
    }

    fn set(&mut self, s: &str) {
        // Cut at a character boundary so that it stays valid UTF-8.
        let mut n = s.len().min(self.bytes.len());
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
        self.len = n;
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

impl Checks {
    pub const fn new() -> Checks {
        Checks { failed: 0, total: 0, first_failed: Name::empty() }
    }

    /// Records one check: prints `PASS name` or `FAIL name: got .., want ..`.
    pub fn eq(&mut self, name: &str, got: i64, want: i64) {
        self.total += 1;
        if got == want {
            println!("PASS {name}");
        } else {
            if self.failed == 0 {
                self.first_failed.set(name);
            }
            self.failed += 1;
            println!("FAIL {name}: got {got} ({got:#x}), want {want} ({want:#x})");
        }
    }

    pub fn check(&mut self, name: &str, ok: bool) {
        self.eq(name, ok as i64, 1);
    }

    /// Prints the verdict and powers the domain off. A guest that ran no
    /// check at all fails: it cannot have shown anything.
    pub fn finish(&self) -> ! {
        self.verdict();
        shutdown(SHUTDOWN_POWEROFF)
    }

    /// Prints the count and the verdict line, and goes on (for a guest
    /// that ends its domain its own way).
    pub fn verdict(&self) {
        println!("{} checks, {} failed", self.total, self.failed);
        if self.failed > 0 {
            println!("VERDICT: FAIL {}", self.first_failed.as_str());
        } else if self.total == 0 {
            println!("VERDICT: FAIL no check ran");
        } else {
            println!("VERDICT: PASS");
        }
    }

    /// Ends the guest without a verdict on what it checks, saying why (it
    /// was started in a way it cannot check anything in); a test that
    /// expects PASS fails on it with the reason.
    pub fn skip(&self, reason: &str) -> ! {
        println!("VERDICT: SKIP {reason}");
        shutdown(SHUTDOWN_POWEROFF)
    }
}

impl Default for Checks {
    fn default() -> Self {
        Self::new()
    }
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is not intercepted and has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

pub fn cpuid(leaf: u32, sub: u32) -> core::arch::x86_64::CpuidResult {
    core::arch::x86_64::__cpuid_count(leaf, sub)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(l) => println!("guest panic: {} at {}:{}", info.message(), l.file(), l.line()),
        None => println!("guest panic: {}", info.message()),
    }
    println!("VERDICT: FAIL guest panic");
    shutdown(SHUTDOWN_CRASH)
}
