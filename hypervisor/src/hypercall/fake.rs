//! Fakes for the handlers' host tests. `FakeGuest` is a caller with flat
//! guest-virtual memory (gva = offset in `mem`); a test that exercises one
//! family wraps it and implements that family's trait alone
//! (`guest_via!`). `Fake` implements every family, recording what the
//! handlers asked of it, for tests that go through `dispatch`.

use super::call::{Guest, Outcome};
use super::console_io::ConsoleEnv;
use super::event_channel_op::EventEnv;
use super::grant_table_op::GrantEnv;
use super::hvm_op::HvmEnv;
use super::memory_op::{Extent, MemoryEnv};
use super::perm::Caller;
use super::sched_op::{SchedEnv, TimerEnv};
use super::vcpu_op::VcpuEnv;
use super::xen_version::VersionEnv;
use super::{Call, dispatch};
use crate::arch::x86_64::hvm::vcpu_init::InitialState;
use crate::event::table::{Reply, Request};
use crate::memory::guest_mem::MemFault;
use crate::mm::addr::{Gfn, Gva};
use std::collections::BTreeMap;
use std::vec::Vec;
use xen_abi::errno::*;
use xen_abi::memory::E820Entry;
use xen_abi::vcpu::RunstateInfo;

/// A caller: domain `domid` (domains 0 and 7 exist too), 64 KiB of flat
/// guest-virtual memory, vCPU 0 of two, at system time 123456 ns.
pub struct FakeGuest {
    pub domid: u16,
    pub privileged: bool,
    pub mem: Vec<u8>,
}

impl FakeGuest {
    pub fn new(domid: u16) -> FakeGuest {
        FakeGuest { domid, privileged: false, mem: vec![0; 0x10000] }
    }
    pub fn put(&mut self, at: u64, bytes: &[u8]) {
        self.mem[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    }
    pub fn get(&self, at: u64, n: usize) -> &[u8] {
        &self.mem[at as usize..at as usize + n]
    }
}

impl Guest for FakeGuest {
    fn caller(&self) -> Caller {
        Caller { domid: self.domid, privileged: self.privileged, xenstore: false, device_model_for: None }
    }
    fn vcpu_id(&self) -> u32 {
        0
    }
    fn nr_vcpus(&self) -> u32 {
        2
    }
    fn domain_exists(&self, d: u16) -> bool {
        d == self.domid || d == 0 || d == 7
    }
    fn read(&self, gva: Gva, buf: &mut [u8]) -> Result<(), MemFault> {
        let end = gva.0.checked_add(buf.len() as u64).filter(|&e| e <= self.mem.len() as u64);
        match end {
            Some(_) => {
                buf.copy_from_slice(&self.mem[gva.0 as usize..gva.0 as usize + buf.len()]);
                Ok(())
            }
            None => Err(MemFault::PageFault { gva, error_code: 0 }),
        }
    }
    fn write(&mut self, gva: Gva, buf: &[u8]) -> Result<(), MemFault> {
        if gva.0.checked_add(buf.len() as u64).is_none_or(|e| e > self.mem.len() as u64) {
            return Err(MemFault::PageFault { gva, error_code: 2 });
        }
        self.put(gva.0, buf);
        Ok(())
    }
    fn now_ns(&self) -> u64 {
        123_456
    }
}

/// Implements `Guest` for a test's own fake by handing every call to the
/// `FakeGuest` in one of its fields.
macro_rules! guest_via {
    ($t:ty, $field:tt) => {
        impl $crate::hypercall::call::Guest for $t {
            fn caller(&self) -> $crate::hypercall::perm::Caller {
                self.$field.caller()
            }
            fn vcpu_id(&self) -> u32 {
                self.$field.vcpu_id()
            }
            fn nr_vcpus(&self) -> u32 {
                self.$field.nr_vcpus()
            }
            fn domain_exists(&self, d: u16) -> bool {
                self.$field.domain_exists(d)
            }
            fn read(
                &self,
                gva: $crate::mm::addr::Gva,
                buf: &mut [u8],
            ) -> Result<(), $crate::memory::guest_mem::MemFault> {
                self.$field.read(gva, buf)
            }
            fn write(
                &mut self,
                gva: $crate::mm::addr::Gva,
                buf: &[u8],
            ) -> Result<(), $crate::memory::guest_mem::MemFault> {
                self.$field.write(gva, buf)
            }
            fn now_ns(&self) -> u64 {
                self.$field.now_ns()
            }
        }
    };
}
pub(crate) use guest_via;

/// A domain that answers every family, recording what it was asked.
pub struct Fake {
    pub g: FakeGuest,
    pub console: Vec<u8>,
    /// Bytes the fake serial line takes before it is full.
    pub console_room: usize,
    pub params: BTreeMap<(u16, u32), u64>,
    pub shared_info_at: Option<u64>,
    pub map: Option<Vec<E820Entry>>,
    pub upcall: Option<(u32, u8)>,
    pub shut: Vec<(u16, u8)>,
    pub flushed: bool,
    /// Per vCPU: (initialised, up).
    pub vcpus: Vec<(bool, bool)>,
    pub singleshot: Option<Option<u64>>,
    pub periodic: Vec<(u32, u64)>,
    pub poll_deadline: Option<u64>,
    pub areas: Vec<(u32, u64)>,
    pub infos: Vec<(u32, u64, u32)>,
    pub pending_ports: Vec<u32>,
    pub evtchn_reply: Result<Reply, i64>,
    pub evtchn_requests: Vec<Request>,
    /// Maps asked for, with the granter resolved.
    pub grant_maps: Vec<(xen_abi::grant_table::MapGrantRef, u16)>,
    /// Copies asked for: their sides' domains.
    pub copies: Vec<(u16, u16)>,
    pub grant_status: i16,
    pub extents: Vec<(Extent, u16, u64, u32)>,
    pub extents_left: u32,
    /// MSIs mapped: (bdf, pirq asked for); pirqs count from 256.
    pub msis: Vec<(u16, Option<u32>)>,
    /// MSI-X entries mapped: (bdf, entry, table base); each pirq 300.
    pub msixes: Vec<(u16, u32, u64)>,
}

impl Fake {
    pub fn new(domid: u16) -> Fake {
        Fake {
            g: FakeGuest::new(domid),
            console: Vec::new(),
            console_room: usize::MAX,
            params: BTreeMap::new(),
            shared_info_at: None,
            map: Some(vec![
                E820Entry { addr: 0, size: 0x800_0000, kind: 1 },
                E820Entry { addr: 0xfeff_8000, size: 0x8000, kind: 2 },
            ]),
            upcall: None,
            shut: Vec::new(),
            flushed: false,
            vcpus: vec![(true, true), (false, false)],
            singleshot: None,
            periodic: Vec::new(),
            poll_deadline: None,
            areas: Vec::new(),
            infos: Vec::new(),
            pending_ports: Vec::new(),
            evtchn_reply: Ok(Reply::Done),
            evtchn_requests: Vec::new(),
            grant_maps: Vec::new(),
            copies: Vec::new(),
            grant_status: 0,
            extents: Vec::new(),
            extents_left: u32::MAX,
            msis: Vec::new(),
            msixes: Vec::new(),
        }
    }
}

impl std::ops::Deref for Fake {
    type Target = FakeGuest;
    fn deref(&self) -> &FakeGuest {
        &self.g
    }
}

impl std::ops::DerefMut for Fake {
    fn deref_mut(&mut self) -> &mut FakeGuest {
        &mut self.g
    }
}

guest_via!(Fake, g);

impl ConsoleEnv for Fake {
    fn console_put(&mut self, b: u8) -> bool {
        if self.console_room == 0 {
            return false;
        }
        self.console_room -= 1;
        self.console.push(b);
        true
    }
}

impl VersionEnv for Fake {
    fn handle(&self) -> [u8; 16] {
        [0xab; 16]
    }
    fn hypervisor_cmdline(&self) -> &str {
        "loglvl=all"
    }
}

impl TimerEnv for Fake {
    fn set_singleshot_timer(&mut self, deadline: Option<u64>) {
        self.singleshot = Some(deadline);
    }
}

impl SchedEnv for Fake {
    fn shutdown_domain(&mut self, d: u16, r: u8) {
        self.shut.push((d, r));
    }
    fn set_shutdown_code(&mut self, _r: u8) {}
    fn port_pending(&self, port: u32) -> Result<bool, i64> {
        if port >= 4096 { Err(-EINVAL) } else { Ok(self.pending_ports.contains(&port)) }
    }
    fn set_poll(&mut self, _port: Option<u32>, deadline: u64) {
        self.poll_deadline = Some(deadline);
    }
    fn cancel_poll(&mut self) {
        self.poll_deadline = None;
    }
}

impl VcpuEnv for Fake {
    fn vcpu_initialise(&mut self, vcpu: u32, _state: &InitialState) -> Result<(), i64> {
        let v = &mut self.vcpus[vcpu as usize];
        if v.0 {
            return Err(-EEXIST);
        }
        v.0 = true;
        Ok(())
    }
    fn vcpu_up(&mut self, vcpu: u32) -> Result<(), i64> {
        let v = &mut self.vcpus[vcpu as usize];
        if !v.0 {
            return Err(-EINVAL);
        }
        v.1 = true;
        Ok(())
    }
    fn vcpu_down(&mut self, vcpu: u32) {
        self.vcpus[vcpu as usize].1 = false;
    }
    fn vcpu_is_up(&self, vcpu: u32) -> bool {
        self.vcpus[vcpu as usize].1
    }
    fn vcpus_up(&self) -> u32 {
        self.vcpus.iter().filter(|v| v.1).count() as u32
    }
    fn runstate(&self, vcpu: u32) -> RunstateInfo {
        RunstateInfo { state: 0, _pad: 0, state_entry_time: 7, time: [vcpu as u64, 2, 3, 4] }
    }
    fn set_runstate_area(&mut self, vcpu: u32, gva: Gva) {
        self.areas.push((vcpu, gva.0));
    }
    fn set_time_area(&mut self, vcpu: u32, gva: Gva) {
        self.areas.push((vcpu + 100, gva.0));
    }
    fn register_vcpu_info(&mut self, vcpu: u32, gfn: Gfn, offset: u32) -> Result<(), i64> {
        if offset > 4096 - 64 {
            return Err(-EINVAL);
        }
        self.infos.push((vcpu, gfn.0, offset));
        Ok(())
    }
    fn set_periodic_timer(&mut self, vcpu: u32, period_ns: u64) {
        self.periodic.push((vcpu, period_ns));
    }
    fn send_nmi(&mut self, _vcpu: u32) {}
    fn policy(&self) -> crate::arch::x86_64::hvm::policy::GuestPolicy {
        crate::arch::x86_64::hvm::policy::tests::qemu64()
    }
}

impl HvmEnv for Fake {
    fn param(&self, d: u16, i: u32) -> u64 {
        self.params.get(&(d, i)).copied().unwrap_or(0)
    }
    fn set_param(&mut self, d: u16, i: u32, v: u64) {
        self.params.insert((d, i), v);
    }
    fn set_upcall_vector(&mut self, v: u32, vec: u8) {
        self.upcall = Some((v, vec));
    }
    fn flush_guest_tlbs(&mut self) {
        self.flushed = true;
    }
}

impl MemoryEnv for Fake {
    fn map_shared_info(&mut self, gpfn: Gfn) -> Result<(), i64> {
        self.shared_info_at = Some(gpfn.0);
        Ok(())
    }
    fn map_grant_frame(&mut self, idx: u32, _gpfn: Gfn) -> Result<(), i64> {
        if idx >= 64 { Err(-EINVAL) } else { Ok(()) }
    }
    fn memory_map(&self) -> Option<&[E820Entry]> {
        self.map.as_deref()
    }
    fn reservation(&self, _d: u16) -> (u64, u64) {
        (2000, 2048)
    }
    fn extent(&mut self, op: Extent, d: u16, gfn: Gfn, order: u32) -> bool {
        if self.extents_left == 0 {
            return false;
        }
        self.extents_left -= 1;
        self.extents.push((op, d, gfn.0, order));
        true
    }
    fn maximum_gpfn(&self, _d: u16) -> Gfn {
        Gfn(0x7ff)
    }
    fn maximum_ram_page(&self) -> u64 {
        0x12345
    }
}

impl EventEnv for Fake {
    fn evtchn(&mut self, req: Request) -> Result<Reply, i64> {
        self.evtchn_requests.push(req);
        self.evtchn_reply
    }
}

impl GrantEnv for Fake {
    fn grant_map(&mut self, op: &xen_abi::grant_table::MapGrantRef, granter: u16) -> (i16, u32, u64) {
        self.grant_maps.push((*op, granter));
        (self.grant_status, self.grant_maps.len() as u32 - 1, 0x1234_5000)
    }
    fn grant_unmap(&mut self, _op: &xen_abi::grant_table::UnmapGrantRef) -> i16 {
        self.grant_status
    }
    fn grant_copy(&mut self, _op: &xen_abi::grant_table::Copy, source: u16, dest: u16) -> i16 {
        self.copies.push((source, dest));
        self.grant_status
    }
    fn grant_table_size(&mut self, _d: u16, grow_to: Option<u32>) -> Result<(u32, u32), i16> {
        match grow_to {
            Some(n) if n > 64 => Err(xen_abi::grant_table::GNTST_GENERAL_ERROR),
            Some(n) => Ok((n.max(1), 64)),
            None => Ok((1, 64)),
        }
    }
    fn grant_frame_gfn(&self, _d: u16, idx: u32) -> Option<Gfn> {
        (idx == 0).then_some(Gfn(0x1000))
    }
}

/// A 64-bit call through the table, from kernel mode.
pub fn call(f: &mut Fake, nr: u64, args: [u64; 5]) -> Outcome {
    dispatch(f, Call { nr, args, long_mode: true }, 0)
}

impl crate::hypercall::physdev_op::PhysdevEnv for Fake {
    fn map_msi(&mut self, bdf: u16, want: Option<u32>) -> Result<u32, i64> {
        self.msis.push((bdf, want));
        Ok(want.unwrap_or(255 + self.msis.len() as u32))
    }
    fn map_msix(&mut self, bdf: u16, entry: u32, table_base: u64, _want: Option<u32>) -> Result<u32, i64> {
        self.msixes.push((bdf, entry, table_base));
        Ok(300)
    }
    fn unmap_pirq(&mut self, pirq: u32) -> Result<(), i64> {
        let i = self.msis.len().checked_sub(1).filter(|i| 256 + *i as u32 == pirq).ok_or(-EINVAL)?;
        self.msis.remove(i);
        Ok(())
    }
    fn has_pirq(&mut self, pirq: u32) -> bool {
        (256..256 + self.msis.len() as u32).contains(&pirq)
    }
}
