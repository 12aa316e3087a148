//! xen_version, event_channel_op, sched_op, vcpu_op, hvm_op,
//! set_timer_op, console_io, the control hypercalls and every other
//! number. Nothing here may end the domain: shutdown is only called with
//! a pointer that cannot be read, blocking and polling always have a near
//! deadline, and vCPUs are only taken down in pairs with their bringing
//! up (see `world`).

use crate::fz::Fz;
use crate::stats::*;
use crate::world::*;
use core::sync::atomic::Ordering;
use test_guests::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF};
use xen_abi::event_channel as ev;
use xen_abi::hypercall as nr;
use xen_abi::{DOMID_SELF, console, hvm, sched, vcpu as xv, version as ver};

/// Whether `only=` lets sub-operation `name` of family `f` be called: the
/// family is named, or `family.name` is (a name up to its first
/// parenthesis, so `memory_op.add_to_physmap` is every space).
pub fn allowed(f: usize, name: &str) -> bool {
    let fam = FAMILIES[f].name.split(' ').next().unwrap_or("");
    let named = |list: &str| {
        list.split(',').any(|w| match w.split_once('.') {
            None => w == fam,
            Some((a, b)) => a == fam && (b == name || name.split('(').next() == Some(b)),
        })
    };
    lay().only_list.is_none_or(named) && !lay().skip_list.is_some_and(named)
}

impl Fz {
    /// A sub-operation of family `f` (of those `only=` allows).
    pub fn pick_code(&mut self, f: usize) -> u64 {
        let ops = &FAMILIES[f].ops;
        for _ in 0..1000 {
            let (code, name) = ops[self.rng.below(ops.len() as u64) as usize];
            if allowed(f, name) {
                return code;
            }
        }
        ops[0].0
    }

    /// A garbage sub-command now and then instead of a real one.
    fn garbage_cmd(&mut self, code: u64) -> u64 {
        if self.rng.chance(1, 32) { self.rng.edge64() } else { code }
    }

    pub fn xen_version(&mut self) {
        let code = self.pick_code(F_VERSION);
        let p = match code {
            ver::XENVER_PAGESIZE if self.rng.chance(1, 2) => 0,
            ver::XENVER_GET_FEATURES => {
                let fi = ver::FeatureInfo { submap_idx: self.rng.count(2) as u32, submap: self.rng.edge32() };
                self.arg(fi)
            }
            ver::XENVER_VERSION if self.rng.chance(1, 2) => 0,
            _ => self.out_ptr(1024),
        };
        let cmd = self.garbage_cmd(code);
        self.call(F_VERSION, code, nr::XEN_VERSION, [cmd, p, 0, 0, 0]);
    }

    pub fn event_channel_op(&mut self) {
        let f = F_EVTCHN;
        let code = self.pick_code(f);
        let e = |fz: &mut Fz, p: u64| fz.call(f, code, nr::EVENT_CHANNEL_OP, [code, p, 0, 0, 0]);
        match code {
            ev::EVTCHNOP_ALLOC_UNBOUND => {
                let dom = if self.rng.chance(3, 4) { DOMID_SELF } else { self.domid() };
                let remote_dom = match self.rng.below(4) {
                    0 | 1 => lay().peer,
                    2 => DOMID_SELF,
                    _ => self.domid(),
                };
                let a = ev::AllocUnbound { dom, remote_dom, port: 0 };
                self.bind(code, a, 4);
            }
            ev::EVTCHNOP_BIND_INTERDOMAIN => {
                let remote_dom = match self.rng.below(4) {
                    0 | 1 => lay().peer,
                    2 => DOMID_SELF,
                    _ => self.domid(),
                };
                let b = ev::BindInterdomain { remote_dom, _pad: 0, remote_port: self.port(), local_port: 0 };
                self.bind(code, b, 8);
            }
            ev::EVTCHNOP_BIND_VIRQ => {
                let virq = if self.rng.chance(3, 4) {
                    self.rng.below(ev::NR_VIRQS as u64 + 1) as u32
                } else {
                    self.rng.edge32()
                };
                let b = ev::BindVirq { virq, vcpu: self.vcpu(), port: 0 };
                self.bind(code, b, 8);
            }
            ev::EVTCHNOP_BIND_IPI => {
                let b = ev::BindIpi { vcpu: self.vcpu(), port: 0 };
                self.bind(code, b, 4);
            }
            ev::EVTCHNOP_BIND_PIRQ => {
                let b = ev::BindPirq { pirq: self.rng.edge32(), flags: self.rng.edge32(), port: 0 };
                let p = self.arg(b);
                e(self, p);
            }
            ev::EVTCHNOP_CLOSE | ev::EVTCHNOP_SEND | ev::EVTCHNOP_UNMASK => {
                let port = if code == ev::EVTCHNOP_CLOSE && self.rng.chance(1, 2) {
                    self.ports.take(&mut self.rng).unwrap_or(0)
                } else {
                    self.port()
                };
                let p = self.arg(ev::Port { port });
                e(self, p);
            }
            ev::EVTCHNOP_STATUS => {
                let s = ev::Status { dom: self.domid(), port: self.port(), ..Default::default() };
                let p = self.arg(s);
                e(self, p);
            }
            ev::EVTCHNOP_BIND_VCPU => {
                let b = ev::BindVcpu { port: self.port(), vcpu: self.vcpu() };
                let p = self.arg(b);
                e(self, p);
            }
            ev::EVTCHNOP_RESET | ev::EVTCHNOP_RESET_CONT => {
                // Closes every port of mine: not too often.
                let dom = if self.rng.chance(1, 8) { DOMID_SELF } else { self.domid() };
                let p = self.arg(ev::Reset { dom });
                let rc = e(self, p);
                if rc == 0 && (dom == DOMID_SELF || dom == lay().me) {
                    self.ports = crate::fz::Ring::new(0);
                }
            }
            ev::EVTCHNOP_INIT_CONTROL => {
                let offset = match self.rng.below(4) {
                    0 => self.rng.pick(&[0, 8, 64, 4096 - 72, 4096 - 71, 4096 - 64, 4096 - 8, 4096, u32::MAX]),
                    1 => self.rng.edge32(),
                    _ => self.rng.below(4096 / 8) as u32 * 8,
                };
                let c = ev::InitControl {
                    control_gfn: self.gfn_mut(0),
                    offset,
                    vcpu: self.vcpu(),
                    link_bits: 0x55,
                    _pad: [0; 7],
                };
                let p = self.arg(c);
                e(self, p);
            }
            ev::EVTCHNOP_EXPAND_ARRAY => {
                let a = ev::ExpandArray { array_gfn: self.gfn_mut(0) };
                let p = self.arg(a);
                e(self, p);
            }
            ev::EVTCHNOP_SET_PRIORITY => {
                let priority = if self.rng.chance(3, 4) { self.rng.below(17) as u32 } else { self.rng.edge32() };
                let s = ev::SetPriority { port: self.port(), priority };
                let p = self.arg(s);
                e(self, p);
            }
            _ => {
                let p = self.out_ptr(64);
                e(self, p);
            }
        }
    }

    /// A bind-like call whose new port comes back at byte `port_at` of
    /// `t`; remembers the port.
    fn bind<T: xen_abi::Pod>(&mut self, code: u64, t: T, port_at: u64) {
        let size = core::mem::size_of::<T>() as u64;
        let (p, off) = if self.rng.chance(1, 12) {
            (self.bad_ptr(), None)
        } else {
            let off = self.arg_off(size);
            (self.put(off, t), Some(off))
        };
        let rc = self.call(F_EVTCHN, code, nr::EVENT_CHANNEL_OP, [code, p, 0, 0, 0]);
        if rc == 0
            && let Some(off) = off
        {
            let port: u32 = self.get(off + port_at);
            self.ports.push(port);
        }
    }

    pub fn sched_op(&mut self) {
        let f = F_SCHED;
        let code = self.pick_code(f);
        match code {
            sched::SCHEDOP_YIELD => {
                let a = self.rng.edge64();
                self.call(f, code, nr::SCHED_OP, [code, a, 0, 0, 0]);
            }
            sched::SCHEDOP_BLOCK => self.block(),
            sched::SCHEDOP_POLL => self.poll(),
            sched::SCHEDOP_SHUTDOWN => {
                // Only through a pointer that cannot be read: -EFAULT.
                let p = self.bad_ptr();
                self.call(f, code, nr::SCHED_OP, [code, p, 0, 0, 0]);
            }
            sched::SCHEDOP_REMOTE_SHUTDOWN => {
                // A domU may shut no domain down, itself included.
                let r =
                    sched::SchedRemoteShutdown { domain_id: self.domid(), _pad: 0, reason: self.rng.below(8) as u32 };
                let p = self.arg(r);
                self.call(f, code, nr::SCHED_OP, [code, p, 0, 0, 0]);
            }
            sched::SCHEDOP_SHUTDOWN_CODE => {
                // Xen keeps the first code latched and ends the domain with
                // it whatever reason comes later: only the reason this
                // domain will end with, or an unreadable pointer.
                let reason = if lay().end == 1 { SHUTDOWN_CRASH } else { SHUTDOWN_POWEROFF };
                let p = if self.rng.chance(1, 2) { self.bad_ptr() } else { self.arg(reason) };
                self.call(f, code, nr::SCHED_OP, [code, p, 0, 0, 0]);
            }
            _ => {
                let p = self.out_ptr(64);
                self.call(f, code, nr::SCHED_OP, [code, p, 0, 0, 0]);
            }
        }
    }

    /// SCHEDOP_block with a singleshot timer a little ahead, so that it
    /// ends (the timer argument on the stack, where no registration the
    /// fuzzer makes can change it).
    pub fn block(&mut self) {
        let t = xv::SetSingleshotTimer { timeout_abs_ns: now() + self.rng.range(10_000, 2 * MS), flags: 0, _pad: 0 };
        let code = xv::VCPUOP_SET_SINGLESHOT_TIMER;
        let rc = self.call(F_VCPU, code, nr::VCPU_OP, [code, self.v as u64, &t as *const _ as u64, 0, 0]);
        if rc == 0 {
            self.call(F_SCHED, sched::SCHEDOP_BLOCK, nr::SCHED_OP, [sched::SCHEDOP_BLOCK, 0, 0, 0, 0]);
        }
    }

    /// SCHEDOP_poll on some ports with a near deadline (past, or up to
    /// 2 ms ahead), the structure on the stack.
    fn poll(&mut self) {
        let n = match self.rng.below(8) {
            0 => self.rng.pick(&[128, 129, 1 << 16, u32::MAX as u64]),
            _ => self.rng.below(6),
        };
        let k = n.min(64) as usize;
        let mut ports = [0u32; 64];
        for p in ports.iter_mut().take(k) {
            *p = self.port();
        }
        let list = if n > 64 || self.rng.chance(1, 8) {
            self.in_ptr(n.min(1024) * 4)
        } else {
            let (p, _) = self.put_list_u32(&ports[..k]);
            p
        };
        let timeout = if self.rng.chance(1, 8) { self.rng.range(1, 1000) } else { now() + self.rng.range(1, 2 * MS) };
        let poll = sched::SchedPoll { ports: list, nr_ports: n as u32, _pad: 0, timeout };
        let code = sched::SCHEDOP_POLL;
        self.call(F_SCHED, code, nr::SCHED_OP, [code, &poll as *const _ as u64, 0, 0, 0]);
    }

    fn put_list_u32(&mut self, xs: &[u32]) -> (u64, u64) {
        let off = SCRATCH - 4 * xs.len() as u64;
        for (i, x) in xs.iter().enumerate() {
            self.put(off + 4 * i as u64, *x);
        }
        (self.scratch + off, 0)
    }

    pub fn set_timer_op(&mut self) {
        let t = match self.rng.below(6) {
            0 => 0,
            1 => self.rng.edge64(),
            2 => now() + self.rng.below(10 * MS),
            3 => now() + (1 << 50) + self.rng.below(1 << 20),
            4 => u64::MAX - self.rng.below(1000),
            _ => now().saturating_sub(self.rng.below(MS)),
        };
        let a = self.rng.edge64();
        self.call(F_TIMER, 0, nr::SET_TIMER_OP, [t, a, 0, 0, 0]);
    }

    pub fn vcpu_op(&mut self) {
        let f = F_VCPU;
        let code = self.pick_code(f);
        let l = lay();
        let target = self.vcpu();
        let op = |fz: &mut Fz, vcpu: u64, arg: u64| fz.call(f, code, nr::VCPU_OP, [code, vcpu, arg, 0, 0]);
        match code {
            xv::VCPUOP_INITIALISE => crate::spare::initialise(self),
            xv::VCPUOP_UP => {
                // Up vCPUs stay up; the spare only if it was started on
                // the park loop (else it would run whatever it was given).
                let v = match self.rng.below(4) {
                    0 => l.vcpus as u64 + self.rng.below(4),
                    _ => self.rng.below(l.fuzzers as u64),
                };
                let v = if l.vcpus > l.fuzzers && SPARE_PARKED.load(Ordering::SeqCst) && self.rng.chance(1, 2) {
                    l.fuzzers as u64
                } else {
                    v
                };
                op(self, v, 0);
            }
            xv::VCPUOP_DOWN => crate::spare::down_up(self),
            xv::VCPUOP_IS_UP | xv::VCPUOP_STOP_PERIODIC_TIMER | xv::VCPUOP_GET_PHYSID => {
                let a = if self.rng.chance(3, 4) { 0 } else { self.rng.edge64() };
                op(self, target as u64, a);
            }
            xv::VCPUOP_GET_RUNSTATE_INFO => {
                let p = self.out_ptr(48);
                op(self, target as u64, p);
            }
            xv::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA | xv::VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA => {
                let a = xv::RegisterArea { addr: self.persist_ptr(48) };
                let p = self.arg(a);
                op(self, target as u64, p);
            }
            xv::VCPUOP_SET_PERIODIC_TIMER => {
                let period_ns = match self.rng.below(4) {
                    0 => self.rng.edge64(),
                    1 => self.rng.below(MS + 1),
                    _ => self.rng.range(5 * MS, 100 * MS),
                };
                let p = self.arg(xv::SetPeriodicTimer { period_ns });
                op(self, target as u64, p);
            }
            xv::VCPUOP_SET_SINGLESHOT_TIMER => {
                let timeout_abs_ns = match self.rng.below(4) {
                    0 => self.rng.edge64(),
                    1 => now().saturating_sub(self.rng.below(10 * MS)),
                    _ => now() + self.rng.below(10 * MS),
                };
                let flags = if self.rng.chance(3, 4) { self.rng.below(2) as u32 } else { self.rng.edge32() };
                let p = self.arg(xv::SetSingleshotTimer { timeout_abs_ns, flags, _pad: 0 });
                let v = if self.rng.chance(1, 2) { self.v } else { target };
                op(self, v as u64, p);
            }
            xv::VCPUOP_STOP_SINGLESHOT_TIMER => {
                let v = if self.rng.chance(1, 2) { self.v } else { target };
                op(self, v as u64, 0);
            }
            xv::VCPUOP_REGISTER_VCPU_INFO => {
                let offset = match self.rng.below(4) {
                    0 => self.rng.pick(&[1, 4, 7, 4096 - 64, 4096 - 63, 4096 - 56, 4096, u32::MAX]),
                    1 => self.rng.edge32(),
                    _ => self.rng.below(64) as u32 * 64,
                };
                let r = xv::RegisterVcpuInfo { mfn: self.gfn_mut(0), offset, rsvd: self.rng.below(2) as u32 };
                let p = self.arg(r);
                op(self, target as u64, p);
            }
            xv::VCPUOP_SEND_NMI => {
                // Fuzzing vCPUs have their IDT; the spare once it says so.
                let v = match self.rng.below(8) {
                    0 if SPARE_READY.load(Ordering::SeqCst) => l.fuzzers as u64,
                    1 => l.vcpus as u64 + self.rng.below(4),
                    _ => self.rng.below(l.fuzzers as u64),
                };
                let a = if self.rng.chance(7, 8) { 0 } else { self.rng.edge64() | 1 };
                op(self, v, a);
            }
            _ => {
                let p = self.out_ptr(64);
                op(self, target as u64, p);
            }
        }
    }

    pub fn hvm_op(&mut self) {
        let f = F_HVM;
        let code = self.pick_code(f);
        match code {
            hvm::HVMOP_SET_PARAM | hvm::HVMOP_GET_PARAM => {
                let index = match self.rng.below(8) {
                    0 => self.rng.pick(&[hvm::NR_PARAMS, hvm::NR_PARAMS + 1, 63, 64, 0xffff, u32::MAX]),
                    _ => self.rng.below(hvm::NR_PARAMS as u64) as u32,
                };
                let domid = if self.rng.chance(3, 4) { DOMID_SELF } else { self.domid() };
                let value = match (index, self.rng.below(4)) {
                    (hvm::PARAM_CALLBACK_IRQ, 0 | 1) => {
                        self.rng.below(4) << hvm::CALLBACK_VIA_TYPE_SHIFT | self.rng.below(256)
                    }
                    (_, 0) => self.rng.below(8),
                    _ => self.rng.edge64(),
                };
                let p = self.arg(hvm::HvmParam { domid, _pad: 0, index, value });
                let rc = self.call(f, code, nr::HVM_OP, [code, p, 0, 0, 0]);
                if rc == 0 && index < 64 && self.counting {
                    if code == hvm::HVMOP_SET_PARAM {
                        self.stats.param_set |= 1 << index;
                    } else {
                        self.stats.param_get |= 1 << index;
                    }
                }
            }
            hvm::HVMOP_SET_EVTCHN_UPCALL_VECTOR => {
                let vector =
                    if self.rng.chance(3, 4) { self.rng.below(256) as u8 } else { self.rng.pick(&[0, 15, 16, 0xff]) };
                let vcpu = self.vcpu();
                let p = self.arg(hvm::EvtchnUpcallVector { vcpu, vector, _pad: [0; 3] });
                self.call(f, code, nr::HVM_OP, [code, p, 0, 0, 0]);
            }
            hvm::HVMOP_PAGETABLE_DYING => {
                let (domid, gpa) = (self.domid(), self.rng.edge64());
                let p = self.arg(hvm::PagetableDying { domid, _pad: [0; 3], gpa });
                self.call(f, code, nr::HVM_OP, [code, p, 0, 0, 0]);
            }
            hvm::HVMOP_FLUSH_TLBS => {
                let p = if self.rng.chance(3, 4) { 0 } else { self.out_ptr(16) };
                self.call(f, code, nr::HVM_OP, [code, p, 0, 0, 0]);
            }
            _ => {
                let p = self.out_ptr(64);
                let cmd = self.garbage_cmd(code);
                self.call(f, code, nr::HVM_OP, [cmd, p, 0, 0, 0]);
            }
        }
    }

    pub fn console_io(&mut self) {
        let code = self.pick_code(F_CONSOLE);
        const TEXT: &[u8] = b"fz.";
        // Only a little text is printed (line-buffered by the hypervisor):
        // long lengths come with addresses that fault within a page.
        let (len, p) = match self.rng.below(8) {
            0 | 1 => (self.rng.range(1, 3), TEXT.as_ptr() as u64),
            2 => (0, self.out_ptr(8)),
            3 => (self.rng.edge64(), self.bad_ptr()),
            4 => (self.rng.range(1, 4096), self.bad_ptr()),
            5 => (self.rng.edge64() | 1 << 40, lay().ram_pages * PAGE - self.rng.range(1, 8)),
            _ => (self.rng.edge64() | 1 << 40, self.bad_ptr()),
        };
        let cmd = if code == console::CONSOLEIO_WRITE { code } else { self.garbage_cmd(code) };
        self.call(F_CONSOLE, code, nr::CONSOLE_IO, [cmd, len, p, 0, 0]);
    }

    /// domctl, sysctl, platform_op and kexec_op: each reads an interface
    /// version first.
    pub fn control(&mut self) {
        let code = self.pick_code(F_CONTROL);
        let version: u32 = match (code, self.rng.below(2)) {
            (nr::DOMCTL, 0) | (nr::SYSCTL, 0) => 0x15,
            (nr::PLATFORM_OP, 0) => 0x0300_0001,
            _ => self.rng.edge32(),
        };
        let mut words = [0u8; 128];
        // struct { u32 cmd; u32 interface_version; ... }
        words[..4].copy_from_slice(&self.rng.edge32().to_le_bytes());
        words[4..8].copy_from_slice(&version.to_le_bytes());
        for w in words.chunks_mut(8).skip(1) {
            w.copy_from_slice(&self.rng.edge64().to_le_bytes());
        }
        let p = if self.rng.chance(1, 8) { self.bad_ptr() } else { self.arg(words) };
        let a = self.rng.edge64();
        self.call(F_CONTROL, code, code, [p, a, 0, 0, 0]);
    }

    /// Every other number: the ones Xen assigns (PV-only or not offered
    /// here), unassigned ones, numbers past the hypercall page.
    pub fn other(&mut self) {
        let code = self.pick_code(F_OTHER);
        let number = match code {
            UNASSIGNED => self.rng.pick(&[11, 38, 43, 44, 48, 55, 63, 64, 65, 100, 127]),
            PAST_THE_PAGE => match self.rng.below(3) {
                0 => self.rng.range(128, 4096),
                _ => self.rng.edge64().max(128),
            },
            n => n,
        };
        let a = [self.out_ptr(256), self.rng.edge64(), self.out_ptr(64), self.rng.edge64(), self.rng.edge64()];
        self.call(F_OTHER, code, number, a);
    }
}
