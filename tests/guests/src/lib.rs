//! What every test guest shares: printing through `console_io`, the start
//! info, checks that report PASS/FAIL lines, and a panic handler that
//! reports and crashes the domain.

#![no_std]

pub use xen_abi::guest::{Console, console_write, hypercall, shutdown};
pub use xen_abi::sched::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF};
use xen_abi::start_info::{HvmMemmapEntry, HvmModlistEntry, HvmStartInfo};

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

/// Counts failed checks; `finish` reports the verdict.
pub struct Checks {
    failed: u32,
    total: u32,
}

impl Checks {
    pub const fn new() -> Checks {
        Checks { failed: 0, total: 0 }
    }

    /// Records one check: prints `PASS name` or `FAIL name: got .., want ..`.
    pub fn eq(&mut self, name: &str, got: i64, want: i64) {
        self.total += 1;
        if got == want {
            println!("PASS {name}");
        } else {
            self.failed += 1;
            println!("FAIL {name}: got {got} ({got:#x}), want {want} ({want:#x})");
        }
    }

    pub fn check(&mut self, name: &str, ok: bool) {
        self.eq(name, ok as i64, 1);
    }

    /// Prints the verdict and powers the domain off.
    pub fn finish(&self) -> ! {
        if self.failed == 0 {
            println!("ALL {} CHECKS PASSED", self.total);
        } else {
            println!("{} OF {} CHECKS FAILED", self.failed, self.total);
        }
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
    println!("guest panic: {}", info.message());
    shutdown(SHUTDOWN_CRASH)
}
