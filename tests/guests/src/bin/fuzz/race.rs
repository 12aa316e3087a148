//! The racing phase: every fuzzing vCPU works on the same few grant
//! references, mapping addresses, frames and ports at once (map against
//! unmap against copy against the entry being ended, a frame given up
//! while a grant is mapped over it, close against send against bind),
//! and the same steps while the domain is being destroyed.

use crate::fz::Fz;
use crate::ops_mem::grant_entry_step;
use crate::stats::*;
use crate::world::*;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use xen_abi::event_channel as ev;
use xen_abi::grant_table::{self as gt, MapGrantRef, UnmapGrantRef};
use xen_abi::hypercall as nr;
use xen_abi::memory::{self as mem, AddToPhysmap, MemoryReservation};
use xen_abi::{DOMID_SELF, Pod};

const SLOTS: usize = 4;
/// Grant mappings made at the shared addresses: handle << 32 | slot + 1.
static HANDLES: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
/// Ports everyone binds, sends on and closes.
static PORTS: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];

/// The shared mapping addresses: zone frames.
fn host(slot: usize) -> u64 {
    lay().zone_lo + 16 + slot as u64
}

/// Scratch offset for the racing steps' structures.
const AT: u64 = 1024;

impl Fz {
    fn race_ref(&mut self) -> (u16, u32) {
        if lay().peer != NO_DOMAIN && self.rng.chance(1, 2) {
            (lay().peer, self.rng.range(12, 15) as u32)
        } else {
            (DOMID_SELF, self.rng.range(8, 11) as u32)
        }
    }

    fn gnt<T: Pod>(&mut self, code: u64, op: T) -> T {
        let p = self.put(AT, op);
        self.call(F_GRANT, code, nr::GRANT_TABLE_OP, [code, p, 1, 0, 0]);
        self.get(AT)
    }

    fn evtchn<T: Pod>(&mut self, code: u64, op: T) -> (i64, T) {
        let p = self.put(AT, op);
        let rc = self.call(F_EVTCHN, code, nr::EVENT_CHANNEL_OP, [code, p, 0, 0, 0]);
        (rc, self.get(AT))
    }

    fn unmap_slot(&mut self, h: u64) {
        if h == 0 {
            return;
        }
        let slot = (h & 0xffff_ffff) as usize - 1;
        let u = UnmapGrantRef {
            host_addr: host(slot) << 12,
            dev_bus_addr: 0,
            handle: (h >> 32) as u32,
            status: 0x55,
            _pad: 0,
        };
        let done = self.gnt(gt::GNTTABOP_UNMAP_GRANT_REF, u);
        self.status(F_GRANT, gt::GNTTABOP_UNMAP_GRANT_REF, done.status);
    }

    fn new_port(&mut self) -> Option<u32> {
        let me = lay().me;
        match self.rng.below(5) {
            0 => {
                let v = self.rng.below(lay().fuzzers as u64) as u32;
                let (rc, b) = self.evtchn(ev::EVTCHNOP_BIND_IPI, ev::BindIpi { vcpu: v, port: 0 });
                (rc == 0).then_some(b.port)
            }
            1 => {
                let (rc, a) = self
                    .evtchn(ev::EVTCHNOP_ALLOC_UNBOUND, ev::AllocUnbound { dom: DOMID_SELF, remote_dom: me, port: 0 });
                if rc != 0 {
                    return None;
                }
                // The loopback's other end.
                let b = ev::BindInterdomain { remote_dom: DOMID_SELF, _pad: 0, remote_port: a.port, local_port: 0 };
                let (rc, b) = self.evtchn(ev::EVTCHNOP_BIND_INTERDOMAIN, b);
                (rc == 0).then_some(if self.rng.chance(1, 2) { b.local_port } else { a.port })
            }
            2 => {
                let a = ev::AllocUnbound { dom: DOMID_SELF, remote_dom: lay().peer, port: 0 };
                let (rc, a) = self.evtchn(ev::EVTCHNOP_ALLOC_UNBOUND, a);
                (rc == 0).then_some(a.port)
            }
            3 => {
                // The peer's ports are numbered like mine: try a few.
                let b = ev::BindInterdomain {
                    remote_dom: lay().peer,
                    _pad: 0,
                    remote_port: self.rng.range(1, 24) as u32,
                    local_port: 0,
                };
                let (rc, b) = self.evtchn(ev::EVTCHNOP_BIND_INTERDOMAIN, b);
                (rc == 0).then_some(b.local_port)
            }
            _ => {
                let b = ev::BindVirq { virq: ev::VIRQ_TIMER, vcpu: self.v, port: 0 };
                let (rc, b) = self.evtchn(ev::EVTCHNOP_BIND_VIRQ, b);
                (rc == 0).then_some(b.port)
            }
        }
    }

    /// One racing step.
    pub fn race(&mut self) {
        let slot = self.rng.below(SLOTS as u64) as usize;
        match self.rng.below(16) {
            0 | 1 => {
                let (dom, gref) = self.race_ref();
                let flags = gt::GNTMAP_HOST_MAP | if self.rng.chance(1, 4) { gt::GNTMAP_READONLY } else { 0 };
                let m = MapGrantRef {
                    host_addr: host(slot) << 12,
                    flags,
                    gref,
                    dom,
                    status: 0x55,
                    handle: 0,
                    dev_bus_addr: 0,
                };
                let done = self.gnt(gt::GNTTABOP_MAP_GRANT_REF, m);
                self.status(F_GRANT, gt::GNTTABOP_MAP_GRANT_REF, done.status);
                if done.status == gt::GNTST_OKAY {
                    let old = HANDLES[slot].swap((done.handle as u64) << 32 | (slot as u64 + 1), Ordering::SeqCst);
                    self.unmap_slot(old);
                }
            }
            2 => {
                let h = HANDLES[slot].swap(0, Ordering::SeqCst);
                self.unmap_slot(h);
            }
            3 => {
                // Whoever else holds it unmaps it too: one must fail.
                let h = HANDLES[slot].load(Ordering::SeqCst);
                self.unmap_slot(h);
            }
            4 => {
                let (sd, sr) = self.race_ref();
                let (dd, dr) = self.race_ref();
                let source = if self.rng.chance(1, 2) {
                    gt::CopyPtr { u: sr as u64, domid: sd, offset: 0, _pad: 0 }
                } else {
                    gt::CopyPtr { u: host(slot), domid: DOMID_SELF, offset: 0, _pad: 0 }
                };
                let dest = gt::CopyPtr { u: dr as u64, domid: dd, offset: self.rng.below(2048) as u16, _pad: 0 };
                let flags = gt::GNTCOPY_DEST_GREF
                    | if source.domid == DOMID_SELF && source.u == host(slot) { 0 } else { gt::GNTCOPY_SOURCE_GREF };
                let c = gt::Copy { source, dest, len: self.rng.range(1, 2048) as u16, flags, status: 0x55, _pad: 0 };
                let done = self.gnt(gt::GNTTABOP_COPY, c);
                self.status(F_GRANT, gt::GNTTABOP_COPY, done.status);
            }
            5 => {
                let r = self.rng.range(8, 11) as u32;
                grant_entry_step(self, Some(r));
            }
            6 => {
                let code =
                    if self.rng.chance(1, 2) { mem::XENMEM_DECREASE_RESERVATION } else { mem::XENMEM_POPULATE_PHYSMAP };
                let lp = self.put(AT + 256, host(slot));
                let r = MemoryReservation {
                    extent_start: lp,
                    nr_extents: 1,
                    extent_order: 0,
                    mem_flags: 0,
                    domid: DOMID_SELF,
                    _pad: [0; 3],
                };
                let p = self.put(AT, r);
                self.call(F_MEMORY, code, nr::MEMORY_OP, [code, p, 0, 0, 0]);
            }
            7 => {
                let gpfn = if self.rng.chance(1, 2) { host(slot) } else { self.zone_gfn(0) };
                let x = AddToPhysmap { domid: DOMID_SELF, size: 0, space: mem::XENMAPSPACE_SHARED_INFO, idx: 0, gpfn };
                let p = self.put(AT, x);
                let code = ADD_TO_PHYSMAP_SPACE + mem::XENMAPSPACE_SHARED_INFO as u64;
                self.call(F_MEMORY, code, nr::MEMORY_OP, [mem::XENMEM_ADD_TO_PHYSMAP, p, 0, 0, 0]);
            }
            8 => {
                if let Some(port) = self.new_port() {
                    let old = PORTS[slot].swap(port, Ordering::SeqCst);
                    if old != 0 && self.rng.chance(1, 2) {
                        self.evtchn(ev::EVTCHNOP_CLOSE, ev::Port { port: old });
                    }
                }
            }
            9 => {
                let port = if self.rng.chance(1, 2) {
                    PORTS[slot].swap(0, Ordering::SeqCst)
                } else {
                    PORTS[slot].load(Ordering::SeqCst)
                };
                self.evtchn(ev::EVTCHNOP_CLOSE, ev::Port { port });
            }
            10 | 11 => {
                let port = PORTS[slot].load(Ordering::SeqCst);
                self.evtchn(ev::EVTCHNOP_SEND, ev::Port { port });
            }
            12 => {
                let port = PORTS[slot].load(Ordering::SeqCst);
                match self.rng.below(4) {
                    0 => {
                        self.evtchn(ev::EVTCHNOP_UNMASK, ev::Port { port });
                    }
                    1 => {
                        let vcpu = self.rng.below(lay().fuzzers as u64) as u32;
                        self.evtchn(ev::EVTCHNOP_BIND_VCPU, ev::BindVcpu { port, vcpu });
                    }
                    2 => {
                        let priority = self.rng.below(16) as u32;
                        self.evtchn(ev::EVTCHNOP_SET_PRIORITY, ev::SetPriority { port, priority });
                    }
                    _ => {
                        self.evtchn(ev::EVTCHNOP_STATUS, ev::Status { dom: DOMID_SELF, port, ..Default::default() });
                    }
                }
            }
            13 => {
                // The FIFO ABI switched on (or its array grown) while ports
                // are busy; now and then everything reset.
                if self.rng.chance(1, 16) {
                    self.evtchn(ev::EVTCHNOP_RESET, ev::Reset { dom: DOMID_SELF });
                } else if self.rng.chance(1, 2) {
                    let c = ev::InitControl {
                        control_gfn: self.zone_gfn(0),
                        offset: 0,
                        vcpu: self.rng.below(lay().vcpus as u64) as u32,
                        link_bits: 0,
                        _pad: [0; 7],
                    };
                    self.evtchn(ev::EVTCHNOP_INIT_CONTROL, c);
                } else {
                    let array_gfn = self.zone_gfn(0);
                    self.evtchn(ev::EVTCHNOP_EXPAND_ARRAY, ev::ExpandArray { array_gfn });
                }
            }
            _ => {
                let port = lay().port;
                if self.rng.chance(1, 2) {
                    self.evtchn(ev::EVTCHNOP_SEND, ev::Port { port });
                } else {
                    let b = ev::BindInterdomain { remote_dom: lay().peer, _pad: 0, remote_port: port, local_port: 0 };
                    self.evtchn(ev::EVTCHNOP_BIND_INTERDOMAIN, b);
                }
            }
        }
    }
}
