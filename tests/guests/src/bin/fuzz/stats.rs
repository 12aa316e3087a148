//! What the fuzzer counts: every hypercall sub-operation Xen's public ABI
//! defines (the list is built from `xen_abi`'s constants, so the coverage
//! figure says how much of the ABI was reached), how often each was
//! called and succeeded, and the distinct results it gave.

use test_guests::println;
use xen_abi::errno::ENOSYS;
use xen_abi::event_channel as ev;
use xen_abi::grant_table as gt;
use xen_abi::hypercall as nr;
use xen_abi::{console, hvm, memory as mem, sched, vcpu as xv, version as ver};

/// One family: a hypercall (or a group of numbers) and its sub-operations
/// as (code, name).
pub struct Family {
    pub name: &'static str,
    pub ops: &'static [(u64, &'static str)],
}

/// add_to_physmap is counted per space: code ADD_TO_PHYSMAP_SPACE + space
/// (an unknown space as + 0xff).
pub const ADD_TO_PHYSMAP_SPACE: u64 = 0x700;
/// Hypercall numbers that Xen's ABI does not assign (11, 38, 43-127), and
/// numbers past the hypercall page (128 up).
pub const UNASSIGNED: u64 = 0x1000;
pub const PAST_THE_PAGE: u64 = 0x1001;

pub const F_VERSION: usize = 0;
pub const F_MEMORY: usize = 1;
pub const F_GRANT: usize = 2;
pub const F_EVTCHN: usize = 3;
pub const F_SCHED: usize = 4;
pub const F_VCPU: usize = 5;
pub const F_HVM: usize = 6;
pub const F_TIMER: usize = 7;
pub const F_CONSOLE: usize = 8;
pub const F_CONTROL: usize = 9;
pub const F_OTHER: usize = 10;

pub const FAMILIES: [Family; 11] = [
    Family {
        name: "xen_version",
        ops: &[
            (ver::XENVER_VERSION, "version"),
            (ver::XENVER_EXTRAVERSION, "extraversion"),
            (ver::XENVER_COMPILE_INFO, "compile_info"),
            (ver::XENVER_CAPABILITIES, "capabilities"),
            (ver::XENVER_CHANGESET, "changeset"),
            (ver::XENVER_PLATFORM_PARAMETERS, "platform_parameters"),
            (ver::XENVER_GET_FEATURES, "get_features"),
            (ver::XENVER_PAGESIZE, "pagesize"),
            (ver::XENVER_GUEST_HANDLE, "guest_handle"),
            (ver::XENVER_COMMANDLINE, "commandline"),
            (ver::XENVER_BUILD_ID, "build_id"),
        ],
    },
    Family {
        name: "memory_op",
        ops: &[
            (mem::XENMEM_INCREASE_RESERVATION, "increase_reservation"),
            (mem::XENMEM_DECREASE_RESERVATION, "decrease_reservation"),
            (mem::XENMEM_MAXIMUM_RAM_PAGE, "maximum_ram_page"),
            (mem::XENMEM_CURRENT_RESERVATION, "current_reservation"),
            (mem::XENMEM_MAXIMUM_RESERVATION, "maximum_reservation"),
            (mem::XENMEM_MACHPHYS_MFN_LIST, "machphys_mfn_list"),
            (mem::XENMEM_POPULATE_PHYSMAP, "populate_physmap"),
            (ADD_TO_PHYSMAP_SPACE + mem::XENMAPSPACE_SHARED_INFO as u64, "add_to_physmap(shared_info)"),
            (ADD_TO_PHYSMAP_SPACE + mem::XENMAPSPACE_GRANT_TABLE as u64, "add_to_physmap(grant_table)"),
            (ADD_TO_PHYSMAP_SPACE + mem::XENMAPSPACE_GMFN as u64, "add_to_physmap(gmfn)"),
            (ADD_TO_PHYSMAP_SPACE + mem::XENMAPSPACE_GMFN_RANGE as u64, "add_to_physmap(gmfn_range)"),
            (ADD_TO_PHYSMAP_SPACE + mem::XENMAPSPACE_GMFN_FOREIGN as u64, "add_to_physmap(gmfn_foreign)"),
            (ADD_TO_PHYSMAP_SPACE + mem::XENMAPSPACE_DEV_MMIO as u64, "add_to_physmap(dev_mmio)"),
            (ADD_TO_PHYSMAP_SPACE + 0xff, "add_to_physmap(unknown space)"),
            (mem::XENMEM_MEMORY_MAP, "memory_map"),
            (mem::XENMEM_MACHINE_MEMORY_MAP, "machine_memory_map"),
            (mem::XENMEM_EXCHANGE, "exchange"),
            (mem::XENMEM_MACHPHYS_MAPPING, "machphys_mapping"),
            (mem::XENMEM_SET_MEMORY_MAP, "set_memory_map"),
            (mem::XENMEM_MAXIMUM_GPFN, "maximum_gpfn"),
            (mem::XENMEM_REMOVE_FROM_PHYSMAP, "remove_from_physmap"),
            (mem::XENMEM_ADD_TO_PHYSMAP_BATCH, "add_to_physmap_batch"),
            (mem::XENMEM_CLAIM_PAGES, "claim_pages"),
            (mem::XENMEM_GET_VNUMAINFO, "get_vnumainfo"),
            (mem::XENMEM_RESERVED_DEVICE_MEMORY_MAP, "reserved_device_memory_map"),
            (mem::XENMEM_ACQUIRE_RESOURCE, "acquire_resource"),
        ],
    },
    Family {
        name: "grant_table_op",
        ops: &[
            (gt::GNTTABOP_MAP_GRANT_REF, "map_grant_ref"),
            (gt::GNTTABOP_UNMAP_GRANT_REF, "unmap_grant_ref"),
            (gt::GNTTABOP_SETUP_TABLE, "setup_table"),
            (gt::GNTTABOP_DUMP_TABLE, "dump_table"),
            (gt::GNTTABOP_TRANSFER, "transfer"),
            (gt::GNTTABOP_COPY, "copy"),
            (gt::GNTTABOP_QUERY_SIZE, "query_size"),
            (gt::GNTTABOP_UNMAP_AND_REPLACE, "unmap_and_replace"),
            (gt::GNTTABOP_SET_VERSION, "set_version"),
            (gt::GNTTABOP_GET_STATUS_FRAMES, "get_status_frames"),
            (gt::GNTTABOP_GET_VERSION, "get_version"),
            (gt::GNTTABOP_SWAP_GRANT_REF, "swap_grant_ref"),
            (gt::GNTTABOP_CACHE_FLUSH, "cache_flush"),
        ],
    },
    Family {
        name: "event_channel_op",
        ops: &[
            (ev::EVTCHNOP_BIND_INTERDOMAIN, "bind_interdomain"),
            (ev::EVTCHNOP_BIND_VIRQ, "bind_virq"),
            (ev::EVTCHNOP_BIND_PIRQ, "bind_pirq"),
            (ev::EVTCHNOP_CLOSE, "close"),
            (ev::EVTCHNOP_SEND, "send"),
            (ev::EVTCHNOP_STATUS, "status"),
            (ev::EVTCHNOP_ALLOC_UNBOUND, "alloc_unbound"),
            (ev::EVTCHNOP_BIND_IPI, "bind_ipi"),
            (ev::EVTCHNOP_BIND_VCPU, "bind_vcpu"),
            (ev::EVTCHNOP_UNMASK, "unmask"),
            (ev::EVTCHNOP_RESET, "reset"),
            (ev::EVTCHNOP_INIT_CONTROL, "init_control"),
            (ev::EVTCHNOP_EXPAND_ARRAY, "expand_array"),
            (ev::EVTCHNOP_SET_PRIORITY, "set_priority"),
            (ev::EVTCHNOP_RESET_CONT, "reset_cont"),
        ],
    },
    Family {
        name: "sched_op",
        ops: &[
            (sched::SCHEDOP_YIELD, "yield"),
            (sched::SCHEDOP_BLOCK, "block"),
            (sched::SCHEDOP_SHUTDOWN, "shutdown"),
            (sched::SCHEDOP_POLL, "poll"),
            (sched::SCHEDOP_REMOTE_SHUTDOWN, "remote_shutdown"),
            (sched::SCHEDOP_SHUTDOWN_CODE, "shutdown_code"),
            (sched::SCHEDOP_WATCHDOG, "watchdog"),
            (sched::SCHEDOP_PIN_OVERRIDE, "pin_override"),
        ],
    },
    Family {
        name: "vcpu_op",
        ops: &[
            (xv::VCPUOP_INITIALISE, "initialise"),
            (xv::VCPUOP_UP, "up"),
            (xv::VCPUOP_DOWN, "down"),
            (xv::VCPUOP_IS_UP, "is_up"),
            (xv::VCPUOP_GET_RUNSTATE_INFO, "get_runstate_info"),
            (xv::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, "register_runstate_memory_area"),
            (xv::VCPUOP_SET_PERIODIC_TIMER, "set_periodic_timer"),
            (xv::VCPUOP_STOP_PERIODIC_TIMER, "stop_periodic_timer"),
            (xv::VCPUOP_SET_SINGLESHOT_TIMER, "set_singleshot_timer"),
            (xv::VCPUOP_STOP_SINGLESHOT_TIMER, "stop_singleshot_timer"),
            (xv::VCPUOP_REGISTER_VCPU_INFO, "register_vcpu_info"),
            (xv::VCPUOP_SEND_NMI, "send_nmi"),
            (xv::VCPUOP_GET_PHYSID, "get_physid"),
            (xv::VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA, "register_vcpu_time_memory_area"),
            (xv::VCPUOP_REGISTER_RUNSTATE_PHYS_AREA, "register_runstate_phys_area"),
            (xv::VCPUOP_REGISTER_VCPU_TIME_PHYS_AREA, "register_vcpu_time_phys_area"),
        ],
    },
    Family {
        name: "hvm_op",
        ops: &[
            (hvm::HVMOP_SET_PARAM, "set_param"),
            (hvm::HVMOP_GET_PARAM, "get_param"),
            (hvm::HVMOP_SET_PCI_INTX_LEVEL, "set_pci_intx_level"),
            (hvm::HVMOP_SET_ISA_IRQ_LEVEL, "set_isa_irq_level"),
            (hvm::HVMOP_SET_PCI_LINK_ROUTE, "set_pci_link_route"),
            (hvm::HVMOP_FLUSH_TLBS, "flush_tlbs"),
            (hvm::HVMOP_PAGETABLE_DYING, "pagetable_dying"),
            (hvm::HVMOP_GET_TIME, "get_time"),
            (hvm::HVMOP_XENTRACE, "xentrace"),
            (hvm::HVMOP_SET_MEM_ACCESS, "set_mem_access"),
            (hvm::HVMOP_GET_MEM_ACCESS, "get_mem_access"),
            (hvm::HVMOP_INJECT_TRAP, "inject_trap"),
            (hvm::HVMOP_GET_MEM_TYPE, "get_mem_type"),
            (hvm::HVMOP_SET_EVTCHN_UPCALL_VECTOR, "set_evtchn_upcall_vector"),
            (hvm::HVMOP_GUEST_REQUEST_VM_EVENT, "guest_request_vm_event"),
            (hvm::HVMOP_ALTP2M, "altp2m"),
        ],
    },
    Family { name: "set_timer_op", ops: &[(0, "set_timer_op")] },
    Family { name: "console_io", ops: &[(console::CONSOLEIO_WRITE, "write"), (console::CONSOLEIO_READ, "read")] },
    Family {
        name: "control",
        ops: &[
            (nr::DOMCTL, "domctl"),
            (nr::SYSCTL, "sysctl"),
            (nr::PLATFORM_OP, "platform_op"),
            (nr::KEXEC_OP, "kexec_op"),
        ],
    },
    Family {
        name: "other numbers",
        ops: &[
            (nr::SET_TRAP_TABLE, "set_trap_table"),
            (nr::MMU_UPDATE, "mmu_update"),
            (nr::SET_GDT, "set_gdt"),
            (nr::STACK_SWITCH, "stack_switch"),
            (nr::SET_CALLBACKS, "set_callbacks"),
            (nr::FPU_TASKSWITCH, "fpu_taskswitch"),
            (nr::SCHED_OP_COMPAT, "sched_op_compat"),
            (nr::SET_DEBUGREG, "set_debugreg"),
            (nr::GET_DEBUGREG, "get_debugreg"),
            (nr::UPDATE_DESCRIPTOR, "update_descriptor"),
            (nr::MULTICALL, "multicall"),
            (nr::UPDATE_VA_MAPPING, "update_va_mapping"),
            (nr::EVENT_CHANNEL_OP_COMPAT, "event_channel_op_compat"),
            (nr::PHYSDEV_OP_COMPAT, "physdev_op_compat"),
            (nr::VM_ASSIST, "vm_assist"),
            (nr::UPDATE_VA_MAPPING_OTHERDOMAIN, "update_va_mapping_otherdomain"),
            (nr::IRET, "iret"),
            (nr::SET_SEGMENT_BASE, "set_segment_base"),
            (nr::MMUEXT_OP, "mmuext_op"),
            (nr::XSM_OP, "xsm_op"),
            (nr::NMI_OP, "nmi_op"),
            (nr::CALLBACK_OP, "callback_op"),
            (nr::XENOPROF_OP, "xenoprof_op"),
            (nr::PHYSDEV_OP, "physdev_op"),
            (nr::ARGO_OP, "argo_op"),
            (nr::XENPMU_OP, "xenpmu_op"),
            (nr::DM_OP, "dm_op"),
            (nr::HYPFS_OP, "hypfs_op"),
            (UNASSIGNED, "unassigned numbers"),
            (PAST_THE_PAGE, "numbers past the page"),
        ],
    },
];

/// Sub-operations in all.
pub const TOTAL: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < FAMILIES.len() {
        n += FAMILIES[i].ops.len();
        i += 1;
    }
    n
};

/// Where family `f`'s sub-operations start in the flat table.
const fn base(f: usize) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < f {
        n += FAMILIES[i].ops.len();
        i += 1;
    }
    n
}

/// Distinct results kept per sub-operation.
const KEPT: usize = 10;

#[derive(Clone, Copy)]
pub struct OpStat {
    pub calls: u32,
    pub ok: u32,
    rcs: [i64; KEPT],
    nrc: u8,
    /// Grant status codes seen (GNTST_*).
    sts: [i16; KEPT],
    nst: u8,
}

impl OpStat {
    const ZERO: OpStat = OpStat { calls: 0, ok: 0, rcs: [0; KEPT], nrc: 0, sts: [0; KEPT], nst: 0 };

    fn add_rc(&mut self, rc: i64) {
        if !self.rcs[..self.nrc as usize].contains(&rc) && (self.nrc as usize) < KEPT {
            self.rcs[self.nrc as usize] = rc;
            self.nrc += 1;
        }
    }

    fn add_st(&mut self, st: i16) {
        if !self.sts[..self.nst as usize].contains(&st) && (self.nst as usize) < KEPT {
            self.sts[self.nst as usize] = st;
            self.nst += 1;
        }
    }

    /// The hypervisor looked at it: some call got more than -ENOSYS.
    fn answered(&self) -> bool {
        self.rcs[..self.nrc as usize].iter().any(|&r| r != -ENOSYS)
    }

    fn merge(&mut self, o: &OpStat) {
        self.calls += o.calls;
        self.ok += o.ok;
        for &r in &o.rcs[..o.nrc as usize] {
            self.add_rc(r);
        }
        for &s in &o.sts[..o.nst as usize] {
            self.add_st(s);
        }
    }
}

/// One vCPU's counts (merged into vCPU 0's at the end).
pub struct Stats {
    pub ops: [OpStat; TOTAL],
    /// HVM param indices set / read successfully (bit per index).
    pub param_set: u64,
    pub param_get: u64,
    pub calls: u64,
}

impl Stats {
    pub const fn new() -> Stats {
        Stats { ops: [OpStat::ZERO; TOTAL], param_set: 0, param_get: 0, calls: 0 }
    }

    fn index(f: usize, code: u64) -> Option<usize> {
        FAMILIES[f].ops.iter().position(|&(c, _)| c == code).map(|i| base(f) + i)
    }

    /// Records a call of sub-operation `code` of family `f` and its result.
    pub fn rec(&mut self, f: usize, code: u64, rc: i64) {
        self.calls += 1;
        let Some(i) = Self::index(f, code) else { return };
        let s = &mut self.ops[i];
        s.calls += 1;
        if rc >= 0 {
            s.ok += 1;
        }
        s.add_rc(rc);
    }

    /// Records a grant operation's status.
    pub fn status(&mut self, f: usize, code: u64, st: i16) {
        if let Some(i) = Self::index(f, code) {
            self.ops[i].add_st(st);
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        for (a, b) in self.ops.iter_mut().zip(o.ops.iter()) {
            a.merge(b);
        }
        self.param_set |= o.param_set;
        self.param_get |= o.param_get;
        self.calls += o.calls;
    }

    /// (called, answered, succeeded) over every sub-operation.
    pub fn totals(&self) -> (usize, usize, usize) {
        let called = self.ops.iter().filter(|s| s.calls > 0).count();
        let answered = self.ops.iter().filter(|s| s.answered()).count();
        let ok = self.ops.iter().filter(|s| s.ok > 0).count();
        (called, answered, ok)
    }

    /// Prints one line per sub-operation and one per family.
    pub fn print(&self) {
        for (f, fam) in FAMILIES.iter().enumerate() {
            let b = base(f);
            for (i, &(_, name)) in fam.ops.iter().enumerate() {
                let s = &self.ops[b + i];
                let mut line = Line::new();
                line.push(format_args!("fuzz:   {}.{}: {} calls, {} ok; results", fam.name, name, s.calls, s.ok));
                for r in &s.rcs[..s.nrc as usize] {
                    line.push(format_args!(" {r}"));
                }
                if s.nst > 0 {
                    line.push(format_args!("; statuses"));
                    for st in &s.sts[..s.nst as usize] {
                        line.push(format_args!(" {st}"));
                    }
                }
                println!("{}", line.as_str());
            }
            let ops = &self.ops[b..b + fam.ops.len()];
            let called = ops.iter().filter(|s| s.calls > 0).count();
            let answered = ops.iter().filter(|s| s.answered()).count();
            let ok = ops.iter().filter(|s| s.ok > 0).count();
            println!(
                "fuzz: coverage {}: {}/{} called, {} answered, {} succeeded",
                fam.name,
                called,
                fam.ops.len(),
                answered,
                ok
            );
        }
        println!(
            "fuzz: HVM params: {} of {} indices set, {} read",
            self.param_set.count_ones(),
            hvm::NR_PARAMS,
            self.param_get.count_ones()
        );
    }
}

/// A line built in a fixed buffer (no heap), cut if too long.
pub struct Line {
    buf: [u8; 240],
    len: usize,
}

impl Line {
    pub fn new() -> Line {
        Line { buf: [0; 240], len: 0 }
    }

    pub fn push(&mut self, a: core::fmt::Arguments<'_>) {
        use core::fmt::Write;
        let _ = self.write_fmt(a);
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
