//! What a domain is: its identity, scheduling parameters, memory map, its
//! state under one lock (run state, p2m, HVM params, shared_info, console
//! line), its vCPUs, event channels and grant table, and where each vCPU's
//! vcpu_info lives.

use super::vcpu::{VcpuShared, vflags};
use crate::arch::x86_64::hvm::npt::{Npt, P2mType};
use crate::console::line::LINE_MAX;
use crate::console::ratelimit::GuestOutput;
use crate::mm::addr::{Gfn, Mfn};
use crate::mm::phys::{free_frames, phys_to_virt};
use crate::util::cpumask::CpuMask;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use spin::Mutex;
use xen_abi::hvm;
use xen_abi::memory::E820Entry;
use xen_abi::shared as xs;

/// Guest-physical layout of a PVH domain, as libxl lays it out: RAM from
/// 0, a hole from 0xfc000000 (ACPI tables, the LAPIC, Xen's special pages
/// at 0xfeff8000), RAM above 4 GiB for the rest.
pub const LOW_RAM_END: u64 = 0xfc00_0000;
pub const SPECIAL_PAGES: u64 = 0xfeff_8000;
pub const SPECIAL_PAGES_LEN: u64 = 0x8000;
/// Table pages a domain's p2m may add after it is built.
pub const P2M_HEADROOM: u64 = 64;
/// More for the hardware domain, whose devices' memory is mapped too
/// (4 MiB of table pages: at least 2 GiB of BARs in 4 KiB pages, far more
/// where large pages fit).
pub const DEVICE_P2M_HEADROOM: u64 = 1024;
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
    pub shared_info_mfn: Mfn,
    pub shared_info_gfn: Option<Gfn>,
    pub shutdown_code: Option<u8>,
    /// Changes whenever a guest frame is remapped or removed.
    pub p2m_gen: u64,
    /// Pages the domain may have (xl's maxmem; its initial memory).
    pub max_pages: u64,
    /// Extents from increase_reservation, owned but not in the p2m.
    pub unplaced: Vec<(Mfn, u64)>,
}

/// What the hypervisor adds to a line a domain prints (timestamp, CPU,
/// level, "(dN) ", the line end), for the rate limit and the room check.
const LINE_PREFIX: usize = 32;

pub struct Domain {
    pub id: u16,
    /// Unique for the machine's life (domain ids are reused): what
    /// hypervisor work queued for a domain (timers, say) checks that it
    /// still finds the same domain.
    pub serial: u64,
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
    /// Event channels and grant table (lock order: a domain's `evtchn` or
    /// `grants` lock before its `inner` lock; see `event::ops` and
    /// `grant::map`).
    pub evtchn: Mutex<crate::event::table::Table>,
    pub grants: Mutex<crate::grant::table::Grants>,
    /// vCPUs in SCHEDOP_poll.
    pub pollers: AtomicU32,
    /// HVM_PARAM_CALLBACK_IRQ's vector (0: none): injected while a vCPU's
    /// evtchn_upcall_pending is set.
    pub callback_vector: AtomicU8,
    /// Accesses to guest-physical addresses nothing backs, for the
    /// run loop's rate-limited report.
    pub unbacked_reports: AtomicU32,
    /// The console ring (`console::ring` sets it up with the domain).
    pub console: spin::Once<ConsoleRing>,
    /// Its console output on the way to the serial line (a lock of its
    /// own: nothing is printed with the domain's other locks held).
    pub console_out: Mutex<GuestOutput>,
    /// The machine's devices it reaches (the hardware domain's ports and
    /// PCI configuration space); after `vcpus`, whose hardware state
    /// points at its port bitmap.
    pub devices: Option<crate::passthrough::access::DeviceAccess>,
    /// Its physical IRQs (the hardware domain's devices' interrupts).
    pub pirqs: Mutex<crate::irq::pirq::PirqTable>,
    /// Counts the domain among those not yet dropped. The last field, so
    /// dropped after everything the domain holds.
    pub counted: Counted,
}

/// Counts domain structures until they are dropped with all they hold: a
/// dead domain's last pages go only when the last CPU holding it lets go.
#[derive(Debug)]
pub struct Counted(());

static DOMAIN_STRUCTS: AtomicU32 = AtomicU32::new(0);

impl Counted {
    pub fn new() -> Counted {
        DOMAIN_STRUCTS.fetch_add(1, Ordering::AcqRel);
        Counted(())
    }

    /// Domain structures made and not yet dropped.
    pub fn alive() -> u32 {
        DOMAIN_STRUCTS.load(Ordering::Acquire)
    }
}

impl Default for Counted {
    fn default() -> Counted {
        Counted::new()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        DOMAIN_STRUCTS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A domain's console ring: Xen's `xencons_interface` in a hypervisor page
/// at libxl's console frame, and the event channel port that announces it
/// (0: none could be made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleRing {
    pub mfn: Mfn,
    /// Where the hypervisor reaches the page.
    pub va: u64,
    pub port: u32,
}

impl Domain {
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// One character of the domain's console output (port 0xe9,
    /// console_io), printed a line at a time with the domain's prefix.
    /// False when the serial line has no room for the line it would end:
    /// the caller offers it again later (the guest waits, as it would for
    /// a slow UART, but in guest mode, not holding the CPU). Lines beyond
    /// the domain's rate limit are dropped and counted.
    pub fn console_put(&self, byte: u8) -> bool {
        self.console_byte(byte, false)
    }

    /// The same for output already paid for (what `console::ring` took
    /// from the ring within the allowance and the room): always taken.
    pub fn console_put_paid(&self, byte: u8) {
        self.console_byte(byte, true);
    }

    fn console_byte(&self, byte: u8, paid: bool) -> bool {
        let mut line = [0u8; LINE_MAX];
        let n = {
            let mut c = self.console_out.lock();
            if !paid && c.line.completes(byte) && crate::console::serial::guest_room() < c.line.len() + 1 + LINE_PREFIX
            {
                return false;
            }
            let Some(l) = c.line.put(byte) else { return true };
            line[..l.len()].copy_from_slice(l.as_bytes());
            l.len()
        };
        // Printed after the lock is let go.
        self.print_console_line(core::str::from_utf8(&line[..n]).unwrap_or(""), paid);
        true
    }

    fn print_console_line(&self, line: &str, paid: bool) {
        let cost = (line.len() + LINE_PREFIX) as u64;
        let dropped = {
            let mut c = self.console_out.lock();
            if !paid && !c.bucket.take(cost, crate::time::now_ns()) {
                c.dropped += 1;
                return;
            }
            core::mem::take(&mut c.dropped)
        };
        if dropped > 0 {
            log::warn!("(d{}) [{dropped} lines dropped: over the domain's console rate limit]", self.id);
        }
        log::info!("(d{}) {line}", self.id);
    }

    /// Bytes of console output the domain may send now (its allowance and
    /// the room in the serial transmit ring), taken from its allowance.
    pub fn console_allowance(&self, wanted: u64) -> u64 {
        // A whole line's prefix for every line it could end is too much to
        // reserve; a line's worth of slack covers the usual case, and a
        // writer finding the ring full waits briefly for room.
        let room = (crate::console::serial::guest_room() as u64).saturating_sub((LINE_MAX + LINE_PREFIX) as u64);
        let now = crate::time::now_ns();
        let mut c = self.console_out.lock();
        let n = wanted.min(room).min(c.bucket.available(now));
        c.bucket.take(n, now);
        n
    }

    /// What the console line buffer holds (no newline yet), for a domain
    /// that now holds the serial line, or dies.
    pub fn console_take_unfinished(&self) -> Option<([u8; LINE_MAX], usize)> {
        let mut c = self.console_out.lock();
        let rest = c.line.take_rest()?;
        let mut out = [0u8; LINE_MAX];
        out[..rest.len()].copy_from_slice(rest.as_bytes());
        Some((out, rest.len()))
    }

    /// Writes what the console line buffer holds as it is.
    pub fn console_flush_unfinished(&self) {
        if let Some((b, n)) = self.console_take_unfinished() {
            crate::console::serial::write_bytes(&b[..n]);
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

    /// Moves vCPU `id`'s vcpu_info to (`gfn`, `offset`), copying what is
    /// there now (VCPUOP_register_vcpu_info).
    pub fn register_vcpu_info(&self, id: u32, gfn: Gfn, offset: u32) -> Result<(), i64> {
        use xen_abi::errno::*;
        let v = self.vcpu(id).ok_or(-ENOENT)?;
        // Xen 4.17's map_vcpu_info: inside the page, and aligned, which
        // the atomics on its words need (8 bytes: every word of it is
        // changed as a u64).
        if offset as usize > 4096 - xs::VCPU_INFO_SIZE || offset % 8 != 0 {
            return Err(-ENXIO);
        }
        // Held throughout, so that two vCPUs registering at once cannot
        // both take a frame reference and leave one behind.
        let mut registered = v.vcpu_info.lock();
        // Registered already: Xen's map_vcpu_info answers -EINVAL.
        if registered.is_some() {
            return Err(-EINVAL);
        }
        // The frame must be the domain's RAM; it is referenced while
        // registered, so that ballooning it out cannot free it.
        let (mfn, dst) = {
            let i = self.inner.lock();
            let Some((mfn, P2mType::Ram)) = i.p2m.as_ref().and_then(|p| p.lookup(gfn)) else { return Err(-EINVAL) };
            let dst = phys_to_virt(mfn.phys() + offset as u64).ok_or(-EINVAL)? as *mut u8;
            crate::memory::frame_ref::frame_get(mfn);
            (mfn, dst)
        };
        let mut cur = [0u8; xs::VCPU_INFO_SIZE];
        if let Some(src) = self.vcpu_info_ptr(id) {
            // SAFETY: both point at 64 bytes of domain memory (checked).
            unsafe { core::ptr::copy_nonoverlapping(src, cur.as_mut_ptr(), cur.len()) };
        }
        // SAFETY: as above.
        unsafe { core::ptr::copy_nonoverlapping(cur.as_ptr(), dst, cur.len()) };
        *registered = Some((gfn, offset, mfn));
        v.vcpu_info_va.store(dst as u64, Ordering::Release);
        v.set_flag(vflags::TIME);
        Ok(())
    }
}

impl Drop for Domain {
    /// The pages other CPUs may still write while they hold the domain
    /// (an event raised, a console drained) go with the last reference.
    fn drop(&mut self) {
        let _ = free_frames(self.inner.get_mut().shared_info_mfn.phys(), 1);
        if let Some(ring) = self.console.get() {
            let _ = free_frames(ring.mfn.phys(), 1);
        }
        for v in &mut self.vcpus {
            if let Some((_, _, mfn)) = v.vcpu_info.get_mut().take() {
                crate::memory::frame_ref::frame_put(mfn);
            }
        }
    }
}
