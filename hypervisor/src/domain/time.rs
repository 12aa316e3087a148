//! A domain's view of time: each vCPU's vcpu_time_info (Xen's pvclock)
//! and the wall clock in shared_info.

use super::Domain;
use super::unit::{Unit, nothing_to_destroy};
use crate::arch::x86_64::hvm::pvclock::TimeScale;
use crate::mm::phys::phys_to_virt;
use core::sync::atomic::Ordering;
use xen_abi::Pod;
use xen_abi::shared::{self as xs, VcpuTimeInfo};

/// A domain's clock: the wall clock and every vCPU's time info are in
/// place before it first runs.
pub const UNIT: Unit<Domain> = Unit { name: "clock", create: start_clock, destroy: nothing_to_destroy };

fn start_clock(d: &Domain) -> Result<(), &'static str> {
    d.write_wallclock();
    for v in &d.vcpus {
        d.write_time_info(v.id, d.tsc_offset);
    }
    Ok(())
}

impl Domain {
    /// Writes vCPU `id`'s vcpu_time_info (Xen's pvclock) with the version
    /// protocol: every vCPU of the domain gets the same point of the
    /// host's TSC line, so their clocks agree exactly.
    pub fn write_time_info(&self, id: u32, tsc_offset: u64) {
        let Some(p) = self.vcpu_info_ptr(id) else { return };
        let (tsc, ns) = crate::time::reference();
        let scale = TimeScale::for_hz(crate::time::tsc_khz() * 1000);
        let t = p.wrapping_add(xs::VCPU_INFO_TIME);
        // SAFETY: `t` points at 32 bytes of this domain's vcpu_info, in a
        // page the domain owns; the guest reads it concurrently, which the
        // version field (odd while changing) tells it.
        unsafe {
            let version = core::ptr::read_volatile(t as *const u32);
            let next = (version | 1).wrapping_add(1);
            core::ptr::write_volatile(t as *mut u32, version | 1);
            core::sync::atomic::fence(Ordering::SeqCst);
            let info = VcpuTimeInfo {
                version: version | 1,
                pad0: 0,
                tsc_timestamp: tsc.wrapping_add(tsc_offset),
                system_time: ns,
                tsc_to_system_mul: scale.mul,
                tsc_shift: scale.shift,
                flags: if crate::arch::x86_64::cpu::features().invariant_tsc { xs::PVCLOCK_TSC_STABLE } else { 0 },
                pad1: [0; 2],
            };
            for (i, b) in info.as_bytes().iter().enumerate().skip(4) {
                core::ptr::write_volatile(t.add(i), *b);
            }
            core::sync::atomic::fence(Ordering::SeqCst);
            core::ptr::write_volatile(t as *mut u32, next);
        }
    }

    /// The wall clock at system time 0, in shared_info.
    pub fn write_wallclock(&self) {
        let mfn = self.inner.lock().shared_info_mfn;
        let Some(base) = phys_to_virt(mfn.phys()) else { return };
        let (sec, nsec) = crate::time::boot_wallclock();
        let at = |off: usize| (base + off as u64) as *mut u32;
        // SAFETY: the domain's shared_info page, owned by the hypervisor;
        // wc_version is the guest's consistency check.
        unsafe {
            let v = core::ptr::read_volatile(at(xs::SHARED_WC_VERSION));
            core::ptr::write_volatile(at(xs::SHARED_WC_VERSION), v | 1);
            core::sync::atomic::fence(Ordering::SeqCst);
            core::ptr::write_volatile(at(xs::SHARED_WC_SEC), sec as u32);
            core::ptr::write_volatile(at(xs::SHARED_WC_NSEC), nsec);
            core::ptr::write_volatile(at(xs::SHARED_WC_SEC_HI), (sec >> 32) as u32);
            core::sync::atomic::fence(Ordering::SeqCst);
            core::ptr::write_volatile(at(xs::SHARED_WC_VERSION), (v | 1).wrapping_add(1));
        }
    }
}
