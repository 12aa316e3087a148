//! Domains: their memory (the p2m), vCPUs, state and lifecycle, and the
//! view of a domain that hypercalls get.

use super::vcpu::VcpuShared;
use crate::arch::x86_64::hvm::npt::Npt;
use crate::console::line::LineBuffer;
use crate::mm::phys::free_frames;
use crate::util::cpumask::CpuMask;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use spin::Mutex;
use xen_abi::hvm;
use xen_abi::memory::E820Entry;

/// Guest-physical layout of a PVH domain, as libxl lays it out: RAM from
/// 0, a hole from 0xfc000000 (ACPI tables, the LAPIC, Xen's special pages
/// at 0xfeff8000), RAM above 4 GiB for the rest.
pub const LOW_RAM_END: u64 = 0xfc00_0000;
pub const SPECIAL_PAGES: u64 = 0xfeff_8000;
pub const SPECIAL_PAGES_LEN: u64 = 0x8000;
/// Table pages a domain's p2m may add after it is built.
pub const P2M_HEADROOM: u64 = 64;
/// Where a domain's ACPI tables go (libxl's ACPI_INFO_PHYSICAL_ADDRESS
/// region: the start of the hole below 4 GiB).
pub const ACPI_BASE: u64 = LOW_RAM_END;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainState {
    Running,
    /// Suspended (SHUTDOWN_suspend): kept until a toolstack resumes or
    /// destroys it.
    Suspended,
    /// Shut down with this reason; resources are released once no vCPU
    /// runs.
    Dead(u8),
}

pub struct DomainInner {
    pub state: DomainState,
    pub p2m: Option<Npt>,
    pub ram_pages: u64,
    pub params: [u64; hvm::NR_PARAMS as usize],
    pub shared_info_mfn: u64,
    pub shared_info_gfn: Option<u64>,
    pub console: LineBuffer,
    pub shutdown_code: Option<u8>,
    /// Changes whenever a guest frame is remapped or removed.
    pub p2m_gen: u64,
    /// Pages the domain may have (xl's maxmem; its initial memory).
    pub max_pages: u64,
    /// Extents from increase_reservation, owned but not in the p2m.
    pub unplaced: Vec<(u64, u64)>,
}

pub struct Domain {
    pub id: u16,
    pub name: String,
    pub privileged: bool,
    pub handle: [u8; 16],
    /// The guest memory map (fixed at creation).
    pub memmap: Vec<E820Entry>,
    /// Credit scheduler weight and cap (percent of one CPU, 0 = none) and
    /// the CPUs its vCPUs may run on.
    pub weight: u32,
    pub cap: u32,
    pub affinity: CpuMask,
    /// Added to the host TSC to give the guest's (the same for every vCPU,
    /// so the guest's TSCs agree): the guest's TSC starts near 0.
    pub tsc_offset: u64,
    pub inner: Mutex<DomainInner>,
    /// `inner.state == Running`, readable without the lock (the run loop
    /// checks it after every exit); cleared, under the lock, when it stops.
    pub(super) running: AtomicBool,
    pub vcpus: Vec<VcpuShared>,
    /// vCPUs the scheduler still holds; the last to leave a dead domain
    /// releases it.
    pub live: AtomicU32,
    /// The hypervisor's address of the shared_info page.
    pub shared_info_va: u64,
    /// Event channels and grant table (see `common::interdomain` for the
    /// lock order).
    pub evtchn: Mutex<crate::event::table::Table>,
    pub grants: Mutex<crate::grant::table::Grants>,
    /// vCPUs in SCHEDOP_poll.
    pub pollers: AtomicU32,
    /// HVM_PARAM_CALLBACK_IRQ's vector (0: none): injected while a vCPU's
    /// evtchn_upcall_pending is set.
    pub callback_vector: AtomicU8,
    /// The console ring page (host frame and address) and its port.
    pub console_mfn: u64,
    pub console_va: u64,
    pub console_port: AtomicU32,
}

/// Work a hypercall leaves for after every vCPU of the domain has dropped
/// its cached translations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferred {
    /// A frame the domain gave up (freed unless something refers to it).
    Release(u64),
    /// A grant mapping's pin and frame reference.
    Unpin { granter: u16, gref: u32, readonly: bool, mfn: u64 },
}

impl Deferred {
    pub fn run(self) {
        match self {
            Deferred::Release(mfn) => crate::memory::frame_ref::release_frames(mfn, 1),
            Deferred::Unpin { granter, gref, readonly, mfn } => {
                crate::grant::map::unpin_after_flush(granter, gref, readonly, mfn)
            }
        }
    }
}

impl Domain {
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// One character of the domain's console output, printed a line at a
    /// time with the domain's prefix.
    pub fn console_put(&self, byte: u8) {
        let mut i = self.inner.lock();
        if let Some(line) = i.console.put(byte) {
            log::info!("(d{}) {line}", self.id);
        }
    }

    pub fn vcpu(&self, id: u32) -> Option<&VcpuShared> {
        self.vcpus.get(id as usize)
    }

    /// Where vCPU `id`'s vcpu_info lives: where the guest registered it,
    /// else its slot in shared_info (the first 32 vCPUs have one).
    pub fn vcpu_info_ptr(&self, id: u32) -> Option<*mut u8> {
        self.vcpu_info_va(id).map(|v| v as *mut u8)
    }

    /// The hypervisor's address of vCPU `id`'s vcpu_info, if it has one.
    pub fn vcpu_info_va(&self, id: u32) -> Option<u64> {
        let va = self.vcpu(id)?.vcpu_info_va.load(Ordering::Acquire);
        (va != 0).then_some(va)
    }
}

impl Drop for Domain {
    /// The pages other CPUs may still write while they hold the domain
    /// (an event raised, a console drained) go with the last reference.
    fn drop(&mut self) {
        let _ = free_frames(self.inner.get_mut().shared_info_mfn << 12, 1);
        let _ = free_frames(self.console_mfn << 12, 1);
        for v in &mut self.vcpus {
            if let Some((_, _, mfn)) = v.vcpu_info.get_mut().take() {
                crate::memory::frame_ref::frame_put(mfn);
            }
        }
    }
}
