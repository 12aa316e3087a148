//! The calling vCPU and its domain as hypercall handlers see them: the
//! bare-metal implementation of `Guest` and every family's trait over real
//! domains. Domain ids arrive resolved (`perm`), so lookups here are by id.

use crate::arch::x86_64::hvm::HvmVcpu;
use crate::arch::x86_64::hvm::vcpu_init::InitialState;
use crate::arch::x86_64::hvm::vendor::VendorVcpu;
use crate::domain::registry::{self, find};
use crate::domain::{Domain, RunState, VcpuShared, vflags};
use crate::hypercall::call::Guest;
use crate::hypercall::console_io::ConsoleEnv;
use crate::hypercall::event_channel_op::EventEnv;
use crate::hypercall::grant_table_op::GrantEnv;
use crate::hypercall::hvm_op::HvmEnv;
use crate::hypercall::memory_op::{Extent, MemoryEnv};
use crate::hypercall::perm::Caller;
use crate::hypercall::sched_op::{SchedEnv, TimerEnv};
use crate::hypercall::vcpu_op::VcpuEnv;
use crate::hypercall::xen_version::VersionEnv;
use crate::memory::frame_ref::Deferred;
use crate::memory::guest_mem::{self, MemFault};
use crate::memory::physmap::DomainMemory;
use crate::memory::reservation;
use crate::mm::addr::{Gfn, Gpa, Gva};
use crate::util::cpumask::CpuMask;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use xen_abi::hvm;
use xen_abi::memory::E820Entry;

/// The calling vCPU's view for hypercalls.
pub struct HcEnv<'a> {
    pub dom: &'a Arc<Domain>,
    pub shared: &'a VcpuShared,
    pub vcpu_id: u32,
    /// The calling vCPU's registers, for its paging mode when a hypercall
    /// reaches guest memory (read then, not on every call).
    pub arch: &'a HvmVcpu,
    /// Guest translations must be dropped on every vCPU of the domain.
    pub flush_tlb: bool,
    /// Work for once that flush is done.
    pub deferred: Vec<Deferred>,
}

impl<'a> HcEnv<'a> {
    pub fn new(dom: &'a Arc<Domain>, shared: &'a VcpuShared, arch: &'a HvmVcpu) -> HcEnv<'a> {
        HcEnv { dom, shared, vcpu_id: shared.id, arch, flush_tlb: false, deferred: Vec::new() }
    }

    fn with_mem<R>(&self, f: impl FnOnce(&DomainMemory<'_>) -> Result<R, MemFault>) -> Result<R, MemFault> {
        let i = self.dom.inner.lock();
        let p2m = i.p2m.as_ref().ok_or(MemFault::Unmapped { gpa: Gpa(0) })?;
        f(&DomainMemory { p2m })
    }

    fn target(&self, vcpu: u32) -> &'a VcpuShared {
        // The dispatcher checks vcpu < nr_vcpus first.
        &self.dom.vcpus[vcpu as usize]
    }
}

impl Guest for HcEnv<'_> {
    fn caller(&self) -> Caller {
        Caller { domid: self.dom.id, privileged: self.dom.privileged, xenstore: false, device_model_for: None }
    }
    fn vcpu_id(&self) -> u32 {
        self.vcpu_id
    }
    fn nr_vcpus(&self) -> u32 {
        self.dom.vcpus.len() as u32
    }
    fn domain_exists(&self, domid: u16) -> bool {
        domid == self.dom.id || find(domid).is_some()
    }
    fn read(&self, gva: Gva, buf: &mut [u8]) -> Result<(), MemFault> {
        let p = self.arch.paging();
        self.with_mem(|m| guest_mem::read_virt(m, &p, gva, buf))
    }
    fn write(&mut self, gva: Gva, buf: &[u8]) -> Result<(), MemFault> {
        let p = self.arch.paging();
        self.with_mem(|m| guest_mem::write_virt(m, &p, gva, buf))
    }
    fn now_ns(&self) -> u64 {
        crate::time::now_ns()
    }
}

impl ConsoleEnv for HcEnv<'_> {
    fn console_put(&mut self, byte: u8) -> bool {
        self.dom.console_put(byte)
    }
}

impl VersionEnv for HcEnv<'_> {
    fn handle(&self) -> [u8; 16] {
        self.dom.handle
    }
    fn hypervisor_cmdline(&self) -> &str {
        crate::cmdline::saved_line()
    }
}

impl TimerEnv for HcEnv<'_> {
    fn set_singleshot_timer(&mut self, deadline: Option<u64>) {
        let t = self.shared;
        let now = crate::time::now_ns();
        match deadline {
            Some(d) if d <= now => {
                t.timers.lock().singleshot = None;
                t.set_flag(vflags::TIMER);
                self.dom.send_virq(t.id, xen_abi::event_channel::VIRQ_TIMER);
            }
            _ => t.timers.lock().singleshot = deadline,
        }
        crate::sched::rearm_vcpu_timers(self.dom, t);
    }
}

impl SchedEnv for HcEnv<'_> {
    fn shutdown_domain(&mut self, domid: u16, reason: u8) {
        if let Some(d) = find(domid) {
            d.shutdown(reason);
        }
    }
    fn set_shutdown_code(&mut self, reason: u8) {
        let mut i = self.dom.inner.lock();
        i.shutdown_code.get_or_insert(reason);
    }
    fn port_pending(&self, port: u32) -> Result<bool, i64> {
        self.dom.port_pending(port)
    }
    fn set_poll(&mut self, port: Option<u32>, deadline: u64) {
        let t = self.shared;
        // Events and timers from before the poll do not end it (Xen wakes
        // a poller only for its ports, its timeout or a new upcall).
        t.take_flags(vflags::EVENT | vflags::TIMER);
        let p = port.map_or(crate::event::deliver::POLL_ANY, |p| p.wrapping_add(1));
        if t.poll_port.swap(p, Ordering::AcqRel) == 0 {
            self.dom.pollers.fetch_add(1, Ordering::AcqRel);
        }
        t.timers.lock().poll_deadline = (deadline != 0).then_some(deadline);
        crate::sched::rearm_vcpu_timers(self.dom, t);
    }
    fn cancel_poll(&mut self) {
        if self.shared.poll_port.swap(0, Ordering::AcqRel) != 0 {
            self.dom.pollers.fetch_sub(1, Ordering::AcqRel);
        }
        self.shared.timers.lock().poll_deadline = None;
    }
}

impl VcpuEnv for HcEnv<'_> {
    fn vcpu_initialise(&mut self, vcpu: u32, state: &InitialState) -> Result<(), i64> {
        let t = self.target(vcpu);
        if t.initialised.swap(true, Ordering::AcqRel) {
            return Err(-xen_abi::errno::EEXIST);
        }
        *t.start.lock() = Some(*state);
        t.set_flag(vflags::START);
        Ok(())
    }
    fn vcpu_up(&mut self, vcpu: u32) -> Result<(), i64> {
        let t = self.target(vcpu);
        if !t.initialised.load(Ordering::Acquire) {
            return Err(-xen_abi::errno::EINVAL);
        }
        crate::sched::bring_up(t);
        Ok(())
    }
    fn vcpu_down(&mut self, vcpu: u32) {
        crate::sched::take_down(self.target(vcpu), RunState::Down);
        // Two vCPUs taking each other down at once both passed the "last
        // vCPU" check: whoever finishes last sees none up and powers the
        // domain off, as Xen does for its last vCPU going down.
        if !self.dom.vcpus.iter().any(VcpuShared::is_up) {
            self.dom.shutdown(xen_abi::sched::SHUTDOWN_POWEROFF as u8);
        }
    }
    fn vcpu_is_up(&self, vcpu: u32) -> bool {
        self.target(vcpu).is_up()
    }
    fn vcpus_up(&self) -> u32 {
        self.dom.vcpus.iter().filter(|v| v.is_up()).count() as u32
    }
    fn runstate(&self, vcpu: u32) -> xen_abi::vcpu::RunstateInfo {
        self.target(vcpu).runstate.lock().info(crate::time::now_ns())
    }
    fn set_runstate_area(&mut self, vcpu: u32, gva: Gva) {
        self.target(vcpu).runstate.lock().area = Some(gva);
    }
    fn set_time_area(&mut self, vcpu: u32, gva: Gva) {
        let t = self.target(vcpu);
        *t.time_area.lock() = Some(gva);
        t.set_flag(vflags::TIME);
    }
    fn register_vcpu_info(&mut self, vcpu: u32, gfn: Gfn, offset: u32) -> Result<(), i64> {
        self.dom.register_vcpu_info(vcpu, gfn, offset)
    }
    fn set_periodic_timer(&mut self, vcpu: u32, period_ns: u64) {
        let t = self.target(vcpu);
        let now = crate::time::now_ns();
        t.timers.lock().periodic = (period_ns > 0).then_some((period_ns, now.saturating_add(period_ns)));
        crate::sched::rearm_vcpu_timers(self.dom, t);
    }
    fn send_nmi(&mut self, vcpu: u32) {
        let t = self.target(vcpu);
        t.set_flag(vflags::NMI);
        crate::sched::notify(t);
    }
    fn policy(&self) -> crate::arch::x86_64::hvm::policy::GuestPolicy {
        *crate::arch::x86_64::hvm::policy::guest_policy()
    }
}

impl HvmEnv for HcEnv<'_> {
    fn param(&self, domid: u16, index: u32) -> u64 {
        let read = |d: &Domain| d.inner.lock().params[index as usize];
        if domid == self.dom.id { read(self.dom) } else { find(domid).map_or(0, |d| read(&d)) }
    }
    fn set_param(&mut self, domid: u16, index: u32, value: u64) {
        let write = |d: &Domain| {
            d.inner.lock().params[index as usize] = value;
            // Only the vector type means anything to a PVH domain: it has no
            // emulated IOAPIC or PIC to route a GSI or an INTx, and Xen
            // ignores those (and 0) there, so a vector stays once set.
            if index == hvm::PARAM_CALLBACK_IRQ
                && value >> hvm::CALLBACK_VIA_TYPE_SHIFT == hvm::CALLBACK_VIA_TYPE_VECTOR
            {
                d.callback_vector.store(value as u8, Ordering::Release);
                d.reassert_upcalls();
            }
        };
        if domid == self.dom.id {
            write(self.dom);
        } else if let Some(d) = find(domid) {
            write(&d);
        }
    }
    fn set_upcall_vector(&mut self, vcpu: u32, vector: u8) {
        if let Some(v) = self.dom.vcpus.get(vcpu as usize) {
            v.upcall_vector.store(vector, Ordering::Release);
            self.dom.reassert_upcalls();
        }
    }
    fn flush_guest_tlbs(&mut self) {
        self.flush_tlb = true;
    }
}

impl MemoryEnv for HcEnv<'_> {
    fn map_shared_info(&mut self, gpfn: Gfn) -> Result<(), i64> {
        let mut i = self.dom.inner.lock();
        let (mfn, prev) = (i.shared_info_mfn, i.shared_info_gfn);
        if i.place_hypervisor_page(gpfn, mfn, prev, &mut self.deferred)? {
            i.shared_info_gfn = Some(gpfn);
            self.flush_tlb = true;
        }
        Ok(())
    }
    fn map_grant_frame(&mut self, idx: u32, gpfn: Gfn) -> Result<(), i64> {
        if crate::grant::map::map_grant_frame(self.dom, idx, gpfn, &mut self.deferred)? {
            self.flush_tlb = true;
        }
        Ok(())
    }
    fn memory_map(&self) -> Option<&[E820Entry]> {
        Some(&self.dom.memmap)
    }
    fn reservation(&self, domid: u16) -> (u64, u64) {
        let d = registry::get(self.dom, domid);
        d.map_or((0, 0), |d| {
            let i = d.inner.lock();
            (i.ram_pages, i.max_pages)
        })
    }
    fn extent(&mut self, op: Extent, domid: u16, gfn: Gfn, order: u32) -> bool {
        let d = registry::get(self.dom, domid);
        let Some(d) = d else { return false };
        let n = self.deferred.len();
        let ok = match op {
            Extent::Increase => reservation::increase(&d, order),
            Extent::Decrease => reservation::decrease(&d, gfn, order, &mut self.deferred),
            Extent::Populate => reservation::populate(&d, gfn, order, &mut self.deferred),
        };
        if self.deferred.len() != n || op == Extent::Decrease {
            self.flush_tlb = true;
            if d.id != self.dom.id {
                // Another domain's p2m changed: its vCPUs drop their
                // translations before any frame it gave up is freed.
                let mut running = CpuMask::empty();
                for v in &d.vcpus {
                    v.set_flag(vflags::FLUSH);
                    let on = v.running_on.load(Ordering::Acquire);
                    if on != 0 {
                        running.set(on as usize - 1);
                    }
                }
                crate::sched::kick_and_wait(&running);
            }
        }
        ok
    }
    fn maximum_gpfn(&self, domid: u16) -> Gfn {
        let d = registry::get(self.dom, domid);
        Gfn(d.map_or(0, |d| {
            let hi = d.memmap.iter().map(|e| (e.addr + e.size) >> 12).max().unwrap_or(1);
            hi.max(crate::console::ring::CONSOLE_GFN.0 + 1) - 1
        }))
    }
    fn maximum_ram_page(&self) -> u64 {
        crate::mm::phys::max_frame()
    }
}

impl EventEnv for HcEnv<'_> {
    fn evtchn(&mut self, req: crate::event::table::Request) -> Result<crate::event::table::Reply, i64> {
        crate::event::ops::evtchn_op(self.dom, req)
    }
}

impl GrantEnv for HcEnv<'_> {
    fn grant_map(&mut self, op: &xen_abi::grant_table::MapGrantRef, granter: u16) -> (i16, u32, u64) {
        let n = self.deferred.len();
        let r = crate::grant::map::grant_map(self.dom, op, granter, &mut self.deferred);
        if self.deferred.len() != n {
            self.flush_tlb = true;
        }
        r
    }
    fn grant_unmap(&mut self, op: &xen_abi::grant_table::UnmapGrantRef) -> i16 {
        let n = self.deferred.len();
        let r = crate::grant::map::grant_unmap(self.dom, op, &mut self.deferred);
        if self.deferred.len() != n {
            self.flush_tlb = true;
        }
        r
    }
    fn grant_copy(&mut self, op: &xen_abi::grant_table::Copy, source: u16, dest: u16) -> i16 {
        crate::grant::copy::grant_copy(self.dom, op, source, dest)
    }
    fn grant_table_size(&mut self, domid: u16, grow_to: Option<u32>) -> Result<(u32, u32), i16> {
        let d = registry::get(self.dom, domid).ok_or(xen_abi::grant_table::GNTST_BAD_DOMAIN)?;
        if let Some(n) = grow_to
            && !crate::grant::map::grant_grow(&d, n)
        {
            return Err(xen_abi::grant_table::GNTST_GENERAL_ERROR);
        }
        let g = d.grants.lock();
        Ok((g.nr_frames(), g.max_frames()))
    }
    fn grant_frame_gfn(&self, domid: u16, idx: u32) -> Option<Gfn> {
        registry::get(self.dom, domid).and_then(|d| d.grants.lock().frame_gfn(idx))
    }
}

impl super::physdev_op::PhysdevEnv for HcEnv<'_> {
    fn map_msi(&mut self, bdf: u16, want: Option<u32>) -> Result<u32, i64> {
        crate::irq::deliver::map_msi(self.dom, bdf, want)
    }
    fn map_msix(&mut self, bdf: u16, entry: u32, table_base: u64, want: Option<u32>) -> Result<u32, i64> {
        crate::irq::deliver::map_msix(self.dom, bdf, entry, table_base, want)
    }
    fn unmap_pirq(&mut self, pirq: u32) -> Result<(), i64> {
        crate::irq::deliver::unmap(self.dom, pirq)
    }
    fn has_pirq(&mut self, pirq: u32) -> bool {
        self.dom.pirqs.lock().get(pirq).is_some()
    }
}
