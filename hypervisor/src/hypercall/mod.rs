//! Hypercall dispatch with Xen's numbers, structures and errors.
//!
//! Handlers see the calling domain through [`Env`], so their semantics
//! (argument checks, error codes, continuations) are tested on the host
//! against a fake domain; the bare-metal implementation of `Env` sits in
//! `common::domain`. Behaviour follows Xen 4.17 (see docs/abi-coverage.md
//! for what is implemented and how it differs).

pub mod event_channel_op;
pub mod grant_table_op;

use crate::event::table::{Reply, Request};
use crate::memory::guest_mem::MemFault;
use crate::arch::x86_64::hvm::vcpu_init::InitialState;
use xen_abi::errno::*;
use xen_abi::hvm::{self, EvtchnUpcallVector, HvmParam};
use xen_abi::memory::{self, AddToPhysmap, E820Entry};
use xen_abi::sched::{self, SchedRemoteShutdown};
use xen_abi::vcpu::{self as xv, RunstateInfo};
use xen_abi::version::{self, CompileInfo, FeatureInfo};
use xen_abi::{DOMID_SELF, Pod, console, features, hypercall as nr};

/// The Xen version this ABI matches.
pub const XEN_MAJOR: u32 = 4;
pub const XEN_MINOR: u32 = 17;

/// Bytes of `console_io` output handled per call before it continues.
const CONSOLE_CHUNK: usize = 127;
const CONSOLE_CHUNKS_PER_CALL: usize = 32;

/// A hypercall as the vCPU made it.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub nr: u64,
    pub args: [u64; 5],
    /// The caller runs in 64-bit mode (else the 32-bit compat layouts apply).
    pub long_mode: bool,
}

/// What the vCPU does after the hypercall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Return this value in rax and go on.
    Done(i64),
    /// Not finished: re-execute the hypercall with these arguments.
    Continue([u64; 5]),
    /// Return 0 and let another vCPU run.
    Yield,
    /// Return 0 and wait for an event.
    Block,
    /// The domain is shutting down with this reason.
    Shutdown(u8),
    /// Return 0 and take the calling vCPU down (VCPUOP_down on itself).
    Down,
}

/// The calling vCPU and its domain, as handlers may use them.
pub trait Env {
    fn domid(&self) -> u16;
    fn vcpu_id(&self) -> u32;
    fn nr_vcpus(&self) -> u32;
    fn privileged(&self) -> bool;
    /// Whether a domain with this id exists.
    fn domain_exists(&self, domid: u16) -> bool;
    /// Copies from the caller's guest-virtual memory.
    fn read(&self, gva: u64, buf: &mut [u8]) -> Result<(), MemFault>;
    /// Copies to the caller's guest-virtual memory.
    fn write(&mut self, gva: u64, buf: &[u8]) -> Result<(), MemFault>;
    /// One character of guest console output (line-buffered by the callee).
    fn console_put(&mut self, byte: u8);
    fn param(&self, domid: u16, index: u32) -> u64;
    fn set_param(&mut self, domid: u16, index: u32, value: u64);
    /// Maps the caller's shared_info page at `gpfn` (moving it if it was
    /// mapped elsewhere, freeing a RAM page that was there).
    fn map_shared_info(&mut self, gpfn: u64) -> Result<(), i64>;
    /// The caller's memory map (None if it has none).
    fn memory_map(&self) -> Option<&[E820Entry]>;
    fn handle(&self) -> [u8; 16];
    fn hypervisor_cmdline(&self) -> &str;
    fn now_ns(&self) -> u64;
    fn set_upcall_vector(&mut self, vcpu: u32, vector: u8);
    fn flush_guest_tlbs(&mut self);
    /// Shuts another domain down (the caller's privilege is checked first).
    fn shutdown_domain(&mut self, domid: u16, reason: u8);
    /// Latches the shutdown code for a later shutdown.
    fn set_shutdown_code(&mut self, reason: u8);

    // vCPUs of the caller's domain (`vcpu` < nr_vcpus, checked first).
    /// Gives a down, never-started vCPU its starting state (-EEXIST if it
    /// has one).
    fn vcpu_initialise(&mut self, vcpu: u32, state: &InitialState) -> Result<(), i64>;
    /// Makes an initialised vCPU runnable (-EINVAL if not initialised).
    fn vcpu_up(&mut self, vcpu: u32) -> Result<(), i64>;
    /// Takes another vCPU down.
    fn vcpu_down(&mut self, vcpu: u32);
    fn vcpu_is_up(&self, vcpu: u32) -> bool;
    fn vcpus_up(&self) -> u32;
    fn runstate(&self, vcpu: u32) -> RunstateInfo;
    /// Registers a guest-virtual runstate area (updated on every switch).
    fn set_runstate_area(&mut self, vcpu: u32, gva: u64);
    /// Registers a guest-virtual copy of vcpu_time_info.
    fn set_time_area(&mut self, vcpu: u32, gva: u64);
    fn register_vcpu_info(&mut self, vcpu: u32, gfn: u64, offset: u32) -> Result<(), i64>;
    /// 0 stops it.
    fn set_periodic_timer(&mut self, vcpu: u32, period_ns: u64);
    /// The caller's singleshot timer (None stops it); a deadline already
    /// past raises the timer event at once.
    fn set_singleshot_timer(&mut self, deadline: Option<u64>);
    fn send_nmi(&mut self, vcpu: u32);
    /// CR4 bits a vCPU may have.
    fn cr4_valid(&self) -> u64;
    /// Whether event channel `port` is pending (-EINVAL for a port the
    /// domain cannot have).
    fn port_pending(&self, port: u32) -> Result<bool, i64>;
    /// Starts a poll: the caller wakes when `port` (None: any port) turns
    /// pending, or at `deadline` (0: none).
    fn set_poll(&mut self, port: Option<u32>, deadline: u64);
    /// Ends a poll that found a port pending before it blocked.
    fn cancel_poll(&mut self);

    // Event channels (`common::evtchn`): domains resolved and known to
    // exist; the caller's permission checks are done by the parser.
    fn evtchn(&mut self, req: Request) -> Result<Reply, i64>;

    // Grant tables (`common::grant`), each returning a GNTST_* status.
    /// Maps a grant; the handle on success.
    fn grant_map(&mut self, op: &xen_abi::grant_table::MapGrantRef) -> (i16, u32);
    fn grant_unmap(&mut self, op: &xen_abi::grant_table::UnmapGrantRef) -> i16;
    fn grant_copy(&mut self, op: &xen_abi::grant_table::Copy) -> i16;
    /// Frames and maximum frames of `domid`'s table, grown to `grow_to`
    /// frames first if asked.
    fn grant_table_size(&mut self, domid: u16, grow_to: Option<u32>) -> Result<(u32, u32), i16>;
    /// Where grant frame `idx` of `domid` is mapped (INVALID_GFN if not).
    fn grant_frame_gfn(&self, domid: u16, idx: u32) -> u64;
    /// XENMAPSPACE_grant_table: maps the caller's grant frame `idx` at
    /// `gpfn`, growing the table to it.
    fn map_grant_frame(&mut self, idx: u32, gpfn: u64) -> Result<(), i64>;

    // Memory reservation of `domid` (checked to exist and be the caller's
    // to change).
    /// (pages it has, pages it may have).
    fn reservation(&self, domid: u16) -> (u64, u64);
    /// One extent of increase/decrease_reservation or populate_physmap:
    /// false stops the operation there.
    fn extent(&mut self, op: Extent, domid: u16, gfn: u64, order: u32) -> bool;
    /// The highest guest frame `domid` has mapped.
    fn maximum_gpfn(&self, domid: u16) -> u64;
    /// The highest host frame number (XENMEM_maximum_ram_page).
    fn maximum_ram_page(&self) -> u64;
}

/// What an extent operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// Adds pages to the domain without placing them (what
    /// increase_reservation does for a translated guest).
    Increase,
    /// Takes the domain's RAM at the extent away.
    Decrease,
    /// Gives the domain new zeroed RAM at the extent.
    Populate,
}

pub(crate) fn fault(_: MemFault) -> i64 {
    -EFAULT
}

pub(crate) fn read_arg<T: Pod>(env: &impl Env, gva: u64) -> Result<T, i64> {
    let mut v = T::zeroed();
    env.read(gva, v.as_bytes_mut()).map_err(fault)?;
    Ok(v)
}

/// Handles one hypercall from a vCPU at `cpl`.
pub fn dispatch(env: &mut impl Env, call: Call, cpl: u8) -> Outcome {
    // Xen refuses hypercalls from guest user mode.
    if cpl > 0 {
        return Outcome::Done(-EPERM);
    }
    let a = if call.long_mode { call.args } else { call.args.map(|x| x & 0xffff_ffff) };
    let r = match call.nr {
        nr::CONSOLE_IO => return console_io(env, a),
        nr::XEN_VERSION => xen_version(env, a[0], a[1], call.long_mode),
        nr::SCHED_OP => return sched_op(env, a[0], a[1]),
        nr::HVM_OP => hvm_op(env, a[0], a[1]),
        nr::VCPU_OP => return vcpu_op(env, a[0], a[1], a[2], call.long_mode),
        nr::SET_TIMER_OP => set_timer_op(env, if call.long_mode { call.args[0] } else { a[0] | (a[1] << 32) }),
        nr::EVENT_CHANNEL_OP => crate::hypercall::event_channel_op::event_channel_op(env, a[0], a[1]),
        nr::DOMCTL => control_op(env, a[0], DOMCTL_INTERFACE_VERSION),
        nr::SYSCTL => control_op(env, a[0], SYSCTL_INTERFACE_VERSION),
        nr::PLATFORM_OP => control_op(env, a[0], PLATFORM_INTERFACE_VERSION),
        nr::KEXEC_OP if !env.privileged() => Err(-EPERM),
        nr::GRANT_TABLE_OP => return crate::hypercall::grant_table_op::grant_table_op(env, a[0], a[1], a[2], call.long_mode),
        nr::MEMORY_OP => return memory_op_outer(env, a[0], a[1], call.long_mode),
        _ => Err(-ENOSYS),
    };
    Outcome::Done(r.unwrap_or_else(|e| e))
}

/// Interface versions of the control hypercalls (Xen 4.17).
pub const DOMCTL_INTERFACE_VERSION: u32 = 0x15;
pub const SYSCTL_INTERFACE_VERSION: u32 = 0x15;
pub const PLATFORM_INTERFACE_VERSION: u32 = 0x0300_0001;

/// domctl, sysctl and platform_op: Xen reads the structure, checks its
/// interface version (-EACCES), then that the caller is the control
/// domain (-EPERM). None of their commands is offered yet (the toolstack
/// issue brings them), so dom0 gets -ENOSYS.
fn control_op(env: &impl Env, arg: u64, version: u32) -> Result<i64, i64> {
    let mut hdr = [0u8; 8];
    env.read(arg, &mut hdr).map_err(fault)?;
    if u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) != version {
        return Err(-EACCES);
    }
    if !env.privileged() {
        return Err(-EPERM);
    }
    Err(-ENOSYS)
}

fn console_io(env: &mut impl Env, a: [u64; 5]) -> Outcome {
    let (cmd, count, buf) = (a[0], a[1] & 0xffff_ffff, a[2]);
    match cmd {
        console::CONSOLEIO_WRITE => {}
        // Reading the hypervisor console is for the control domain.
        console::CONSOLEIO_READ if !env.privileged() => return Outcome::Done(-EPERM),
        console::CONSOLEIO_READ => return Outcome::Done(0),
        _ => return Outcome::Done(-ENOSYS),
    }
    let mut done = 0u64;
    let mut chunk = [0u8; CONSOLE_CHUNK];
    for _ in 0..CONSOLE_CHUNKS_PER_CALL {
        if done == count {
            return Outcome::Done(0);
        }
        let n = ((count - done) as usize).min(CONSOLE_CHUNK);
        if env.read(buf.wrapping_add(done), &mut chunk[..n]).is_err() {
            return Outcome::Done(-EFAULT);
        }
        for &c in &chunk[..n] {
            env.console_put(c);
        }
        done += n as u64;
    }
    if done == count {
        return Outcome::Done(0);
    }
    // The rest in a continuation, as Xen does for long writes.
    Outcome::Continue([cmd, count - done, buf.wrapping_add(done), a[3], a[4]])
}

/// XENVER_get_features submap 0 for this domain (Xen 4.17's values for a
/// PVH domain).
pub fn feature_submap(privileged: bool) -> u32 {
    let mut f = 1 << features::WRITABLE_PAGE_TABLES
        | 1 << features::AUTO_TRANSLATED_PHYSMAP
        | 1 << features::HVM_CALLBACK_VECTOR
        | 1 << features::HVM_SAFE_PVCLOCK
        | 1 << features::MEMORY_OP_VCPU_LOCAL
        | 1 << features::NOT_DIRECT_MAPPED;
    if privileged {
        f |= 1 << features::DOM0;
    }
    f
}

pub const CAPABILITIES: &str = "hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64 ";
pub const EXTRAVERSION: &str = ".0";

fn xen_version(env: &mut impl Env, cmd: u64, arg: u64, long_mode: bool) -> Result<i64, i64> {
    let put = |env: &mut _, bytes: &[u8]| -> Result<i64, i64> {
        Env::write(env, arg, bytes).map_err(fault)?;
        Ok(0)
    };
    match cmd {
        version::XENVER_VERSION => Ok(((XEN_MAJOR << 16) | XEN_MINOR) as i64),
        version::XENVER_EXTRAVERSION => put(env, &version::fixed::<16>(EXTRAVERSION)),
        version::XENVER_COMPILE_INFO => {
            let ci = CompileInfo {
                compiler: version::fixed(concat!("rustc (hypervisor ", env!("CARGO_PKG_VERSION"), ")")),
                compile_by: version::fixed("hypervisor"),
                compile_domain: version::fixed("localdomain"),
                compile_date: version::fixed("unknown"),
            };
            put(env, ci.as_bytes())
        }
        version::XENVER_CAPABILITIES => {
            let mut caps = [0u8; 1024];
            caps[..CAPABILITIES.len()].copy_from_slice(CAPABILITIES.as_bytes());
            put(env, &caps)
        }
        version::XENVER_CHANGESET => put(env, &version::fixed::<64>(concat!("hypervisor ", env!("CARGO_PKG_VERSION")))),
        version::XENVER_PLATFORM_PARAMETERS => {
            if long_mode {
                put(env, &0xffff_8000_0000_0000u64.to_le_bytes())
            } else {
                put(env, &0xffff_ffffu32.to_le_bytes())
            }
        }
        version::XENVER_GET_FEATURES => {
            let mut fi: FeatureInfo = read_arg(env, arg)?;
            if fi.submap_idx != 0 {
                return Err(-EINVAL);
            }
            fi.submap = feature_submap(env.privileged());
            put(env, fi.as_bytes())
        }
        version::XENVER_PAGESIZE if arg != 0 => Err(-EINVAL),
        version::XENVER_PAGESIZE => Ok(4096),
        version::XENVER_GUEST_HANDLE => {
            let h = env.handle();
            put(env, &h)
        }
        version::XENVER_COMMANDLINE => {
            if !env.privileged() {
                return put(env, b"<denied>\0");
            }
            let mut line = [0u8; 1024];
            let c = env.hypervisor_cmdline().as_bytes();
            let n = c.len().min(1023);
            line[..n].copy_from_slice(&c[..n]);
            put(env, &line)
        }
        version::XENVER_BUILD_ID if !env.privileged() => Err(-EPERM),
        version::XENVER_BUILD_ID => Err(-ENODATA),
        _ => Err(-ENOSYS),
    }
}

fn sched_op(env: &mut impl Env, cmd: u64, arg: u64) -> Outcome {
    let done = |r: Result<i64, i64>| Outcome::Done(r.unwrap_or_else(|e| e));
    match cmd {
        sched::SCHEDOP_YIELD => Outcome::Yield,
        sched::SCHEDOP_BLOCK => Outcome::Block,
        // Xen does not range-check the reason: it is truncated to a byte.
        sched::SCHEDOP_SHUTDOWN => match read_arg::<u32>(env, arg) {
            Ok(reason) => Outcome::Shutdown(reason as u8),
            Err(e) => Outcome::Done(e),
        },
        sched::SCHEDOP_SHUTDOWN_CODE => done(read_arg::<u32>(env, arg).map(|reason| {
            env.set_shutdown_code(reason as u8);
            0
        })),
        sched::SCHEDOP_REMOTE_SHUTDOWN => {
            let rs = match read_arg::<SchedRemoteShutdown>(env, arg) {
                Ok(rs) => rs,
                Err(e) => return Outcome::Done(e),
            };
            let target = if rs.domain_id == DOMID_SELF { env.domid() } else { rs.domain_id };
            if !env.domain_exists(target) {
                Outcome::Done(-ESRCH)
            } else if !env.privileged() {
                Outcome::Done(-EPERM)
            } else if target == env.domid() {
                Outcome::Shutdown(rs.reason as u8)
            } else {
                env.shutdown_domain(target, rs.reason as u8);
                Outcome::Done(0)
            }
        }
        sched::SCHEDOP_POLL => poll(env, arg),
        sched::SCHEDOP_PIN_OVERRIDE if !env.privileged() => Outcome::Done(-EPERM),
        _ => Outcome::Done(-ENOSYS),
    }
}

/// Event-channel ports SCHEDOP_poll may wait on at once (Xen's limit).
const POLL_MAX_PORTS: u32 = 128;

fn poll(env: &mut impl Env, arg: u64) -> Outcome {
    let p = match read_arg::<sched::SchedPoll>(env, arg) {
        Ok(p) => p,
        Err(e) => return Outcome::Done(e),
    };
    if p.nr_ports > POLL_MAX_PORTS {
        return Outcome::Done(-EINVAL);
    }
    let mut ports = [0u32; POLL_MAX_PORTS as usize];
    for (i, slot) in ports.iter_mut().take(p.nr_ports as usize).enumerate() {
        match read_arg::<u32>(env, p.ports.wrapping_add(4 * i as u64)) {
            Ok(port) => *slot = port,
            Err(e) => return Outcome::Done(e),
        }
    }
    let ports = &ports[..p.nr_ports as usize];
    // Registered first, then checked: an event between the two ends the
    // poll through the registration (Xen's order).
    env.set_poll(if ports.len() == 1 { Some(ports[0]) } else { None }, p.timeout);
    for &port in ports {
        match env.port_pending(port) {
            Ok(true) => {
                env.cancel_poll();
                return Outcome::Done(0);
            }
            Ok(false) => {}
            Err(e) => {
                env.cancel_poll();
                return Outcome::Done(e);
            }
        }
    }
    Outcome::Block
}

/// Timeouts this far ahead are Linux's wrapped jiffies (Xen's 2^50 ns).
const HUGE_TIMEOUT_NS: u64 = 1 << 50;

/// set_timer_op(timeout): the caller's singleshot timer at an absolute
/// system time; 0 stops it. Nonsense values get Xen's 100 ms.
fn set_timer_op(env: &mut impl Env, timeout: u64) -> Result<i64, i64> {
    if timeout == 0 {
        env.set_singleshot_timer(None);
        return Ok(0);
    }
    let now = env.now_ns();
    let deadline = if (timeout as i64) < 0 || timeout.saturating_sub(now) >= HUGE_TIMEOUT_NS {
        now + 100_000_000
    } else {
        timeout
    };
    env.set_singleshot_timer(Some(deadline));
    Ok(0)
}

fn vcpu_op(env: &mut impl Env, cmd: u64, vcpu: u64, arg: u64, long_mode: bool) -> Outcome {
    let done = |r: Result<i64, i64>| Outcome::Done(r.unwrap_or_else(|e| e));
    if vcpu >= env.nr_vcpus() as u64 {
        return Outcome::Done(-ENOENT);
    }
    let vcpu = vcpu as u32;
    let own = vcpu == env.vcpu_id();
    match cmd {
        xv::VCPUOP_INITIALISE => done((|| {
            let ctx: xv::VcpuHvmContext = read_arg(env, arg)?;
            let state = InitialState::from_hvm_context(&ctx, env.cr4_valid()).map_err(|_| -EINVAL)?;
            env.vcpu_initialise(vcpu, &state).map(|_| 0)
        })()),
        xv::VCPUOP_UP => done(env.vcpu_up(vcpu).map(|_| 0)),
        xv::VCPUOP_DOWN => {
            // The last vCPU going down powers the domain off (Xen).
            if env.vcpus_up() <= 1 && env.vcpu_is_up(vcpu) {
                return Outcome::Shutdown(sched::SHUTDOWN_POWEROFF as u8);
            }
            if own {
                return Outcome::Down;
            }
            env.vcpu_down(vcpu);
            Outcome::Done(0)
        }
        xv::VCPUOP_IS_UP => Outcome::Done(env.vcpu_is_up(vcpu) as i64),
        xv::VCPUOP_GET_RUNSTATE_INFO => {
            let r = env.runstate(vcpu);
            done(env.write(arg, r.as_bytes()).map(|_| 0).map_err(fault))
        }
        xv::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => done((|| {
            let a: xv::RegisterArea = read_arg(env, arg)?;
            let gva = if long_mode { a.addr } else { a.addr & 0xffff_ffff };
            // The area must be writable now (Xen checks the handle).
            let r = env.runstate(vcpu);
            env.write(gva, r.as_bytes()).map_err(fault)?;
            env.set_runstate_area(vcpu, gva);
            Ok(0)
        })()),
        xv::VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA => done((|| {
            let a: xv::RegisterArea = read_arg(env, arg)?;
            let gva = if long_mode { a.addr } else { a.addr & 0xffff_ffff };
            env.set_time_area(vcpu, gva);
            Ok(0)
        })()),
        xv::VCPUOP_SET_PERIODIC_TIMER => done((|| {
            let t: xv::SetPeriodicTimer = read_arg(env, arg)?;
            if t.period_ns < 1_000_000 || t.period_ns > HUGE_TIMEOUT_NS {
                return Err(-EINVAL);
            }
            env.set_periodic_timer(vcpu, t.period_ns);
            Ok(0)
        })()),
        xv::VCPUOP_STOP_PERIODIC_TIMER => {
            env.set_periodic_timer(vcpu, 0);
            Outcome::Done(0)
        }
        xv::VCPUOP_SET_SINGLESHOT_TIMER => done((|| {
            if !own {
                return Err(-EINVAL);
            }
            let t: xv::SetSingleshotTimer = read_arg(env, arg)?;
            if t.flags & xv::SSHOTTMR_FUTURE != 0 && t.timeout_abs_ns < env.now_ns() {
                return Err(-ETIME);
            }
            env.set_singleshot_timer(Some(t.timeout_abs_ns));
            Ok(0)
        })()),
        xv::VCPUOP_STOP_SINGLESHOT_TIMER => {
            if !own {
                return Outcome::Done(-EINVAL);
            }
            env.set_singleshot_timer(None);
            Outcome::Done(0)
        }
        xv::VCPUOP_REGISTER_VCPU_INFO => done((|| {
            let r: xv::RegisterVcpuInfo = read_arg(env, arg)?;
            if r.mfn >> 52 != 0 {
                return Err(-EINVAL);
            }
            env.register_vcpu_info(vcpu, r.mfn, r.offset).map(|_| 0)
        })()),
        xv::VCPUOP_SEND_NMI => {
            if arg != 0 {
                return Outcome::Done(-EINVAL);
            }
            env.send_nmi(vcpu);
            Outcome::Done(0)
        }
        // Only for a hardware domain pinned 1:1 (Xen), and the physical
        // area variants are not offered (no XENFEAT for them).
        xv::VCPUOP_GET_PHYSID => Outcome::Done(-EINVAL),
        _ => Outcome::Done(-ENOSYS),
    }
}

/// Params no one may use any more.
fn param_deprecated(i: u32) -> bool {
    matches!(i, 4 | 13 | 20..=26 | 30)
}

/// Params a guest may set on itself (Xen's hvm_allow_set_param).
fn param_guest_settable(i: u32) -> bool {
    matches!(
        i,
        hvm::PARAM_CALLBACK_IRQ
            | hvm::PARAM_VM86_TSS
            | hvm::PARAM_VM86_TSS_SIZED
            | hvm::PARAM_ACPI_IOPORTS_LOCATION
            | hvm::PARAM_VM_GENERATION_ID_ADDR
            | hvm::PARAM_STORE_EVTCHN
            | hvm::PARAM_CONSOLE_EVTCHN
            | hvm::PARAM_X87_FIP_WIDTH
    )
}

/// Params a guest may read on itself (Xen's hvm_allow_get_param).
fn param_guest_readable(i: u32) -> bool {
    param_guest_settable(i) || matches!(i, hvm::PARAM_STORE_PFN | hvm::PARAM_CONSOLE_PFN | hvm::PARAM_ALTP2M)
}

fn hvm_op(env: &mut impl Env, op: u64, arg: u64) -> Result<i64, i64> {
    match op {
        hvm::HVMOP_SET_PARAM | hvm::HVMOP_GET_PARAM => {
            let mut p: HvmParam = read_arg(env, arg)?;
            if p.index >= hvm::NR_PARAMS {
                return Err(-EINVAL);
            }
            let target = if p.domid == DOMID_SELF { env.domid() } else { p.domid };
            if !env.domain_exists(target) {
                return Err(-ESRCH);
            }
            let own = target == env.domid();
            if !own && !env.privileged() {
                return Err(-EPERM);
            }
            if param_deprecated(p.index) {
                return Err(-EINVAL);
            }
            if op == hvm::HVMOP_SET_PARAM {
                if own && !param_guest_settable(p.index) {
                    return Err(-EPERM);
                }
                match p.index {
                    hvm::PARAM_X87_FIP_WIDTH if !matches!(p.value, 0 | 4 | 8) => return Err(-EINVAL),
                    hvm::PARAM_ACPI_S_STATE if !matches!(p.value, 0 | 3) => return Err(-EINVAL),
                    hvm::PARAM_TIMER_MODE if p.value > 3 => return Err(-EINVAL),
                    hvm::PARAM_VM86_TSS if p.value >> 32 != 0 => return Err(-EINVAL),
                    _ => {}
                }
                env.set_param(target, p.index, p.value);
                Ok(0)
            } else {
                if own && !param_guest_readable(p.index) {
                    return Err(-EPERM);
                }
                p.value = env.param(target, p.index);
                env.write(arg, p.as_bytes()).map_err(fault)?;
                Ok(0)
            }
        }
        hvm::HVMOP_SET_EVTCHN_UPCALL_VECTOR => {
            let v: EvtchnUpcallVector = read_arg(env, arg)?;
            if v.vector < 0x10 {
                return Err(-EINVAL);
            }
            if v.vcpu >= env.nr_vcpus() {
                return Err(-ENOENT);
            }
            env.set_upcall_vector(v.vcpu, v.vector);
            Ok(0)
        }
        hvm::HVMOP_PAGETABLE_DYING => {
            let d: hvm::PagetableDying = read_arg(env, arg)?;
            if d.domid != DOMID_SELF && d.domid != env.domid() {
                return Err(-EOPNOTSUPP);
            }
            // Only meaningful for shadow paging; nested paging says -EINVAL.
            Err(-EINVAL)
        }
        hvm::HVMOP_FLUSH_TLBS => {
            if arg != 0 {
                return Err(-EINVAL);
            }
            env.flush_guest_tlbs();
            Ok(0)
        }
        hvm::HVMOP_GET_TIME => {
            let now = env.now_ns();
            env.write(arg, &now.to_le_bytes()).map_err(fault)?;
            Ok(0)
        }
        _ => Err(-ENOSYS),
    }
}

/// Largest extent order a domU may ask for (Xen's default
/// `memop-max-order` for domUs); the control domain may use more.
const DOMU_MAX_ORDER: u32 = 9;
const CTLDOM_MAX_ORDER: u32 = 12;
/// Extents handled before a reservation operation continues.
const EXTENTS_PER_CALL: u64 = 512;

fn memory_op_outer(env: &mut impl Env, cmd: u64, arg: u64, long_mode: bool) -> Outcome {
    let op = cmd & memory::MEMOP_CMD_MASK;
    match op {
        memory::XENMEM_INCREASE_RESERVATION | memory::XENMEM_DECREASE_RESERVATION | memory::XENMEM_POPULATE_PHYSMAP => {
            reservation_op(env, op, cmd >> memory::MEMOP_EXTENT_SHIFT, arg, long_mode)
        }
        _ => Outcome::Done(memory_op(env, cmd, arg, long_mode).unwrap_or_else(|e| e)),
    }
}

/// increase/decrease_reservation and populate_physmap: they return how
/// many extents were done, stopping at the first that cannot be (errors
/// included, as in Xen, except a bad flag).
fn reservation_op(env: &mut impl Env, op: u64, start: u64, arg: u64, long_mode: bool) -> Outcome {
    let r = if long_mode {
        match read_arg::<memory::MemoryReservation>(env, arg) {
            Ok(r) => r,
            Err(_) => return Outcome::Done(start as i64),
        }
    } else {
        let mut b = [0u8; 20];
        if env.read(arg, &mut b).is_err() {
            return Outcome::Done(start as i64);
        }
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        memory::MemoryReservation {
            extent_start: w(0) as u64,
            nr_extents: w(4) as u64,
            extent_order: w(8),
            mem_flags: w(12),
            domid: u16::from_le_bytes([b[16], b[17]]),
            _pad: [0; 3],
        }
    };
    if r.nr_extents > (u32::MAX >> memory::MEMOP_EXTENT_SHIFT) as u64 || start >= r.nr_extents {
        return Outcome::Done(start as i64);
    }
    // Populate-on-demand is for HVM guests started ballooned, not offered:
    // nothing is done, as Xen does for a domain without a PoD pool.
    if op == memory::XENMEM_POPULATE_PHYSMAP && r.mem_flags & memory::XENMEMF_POPULATE_ON_DEMAND != 0 {
        return Outcome::Done(start as i64);
    }
    // An address limit of a page or less can never be met (Xen).
    let address_bits = r.mem_flags & 0xff;
    if address_bits != 0 && address_bits <= 12 {
        return Outcome::Done(start as i64);
    }
    let target = if r.domid == DOMID_SELF { env.domid() } else { r.domid };
    if !env.domain_exists(target) || (target != env.domid() && !env.privileged()) {
        return Outcome::Done(start as i64);
    }
    let max_order = if env.privileged() { CTLDOM_MAX_ORDER } else { DOMU_MAX_ORDER };
    if r.extent_order > max_order {
        return Outcome::Done(start as i64);
    }
    let width = if long_mode { 8 } else { 4 };
    let kind = match op {
        memory::XENMEM_INCREASE_RESERVATION => Extent::Increase,
        memory::XENMEM_DECREASE_RESERVATION => Extent::Decrease,
        _ => Extent::Populate,
    };
    let mut i = start;
    while i < r.nr_extents {
        if i - start == EXTENTS_PER_CALL {
            let next = op | i << memory::MEMOP_EXTENT_SHIFT;
            return Outcome::Continue([next, arg, 0, 0, 0]);
        }
        let gfn = if kind == Extent::Increase {
            0
        } else {
            let at = r.extent_start.wrapping_add(i * width);
            let mut b = [0u8; 8];
            if env.read(at, &mut b[..width as usize]).is_err() {
                break;
            }
            u64::from_le_bytes(b)
        };
        if !env.extent(kind, target, gfn, r.extent_order) {
            break;
        }
        i += 1;
    }
    Outcome::Done(i as i64)
}

fn memory_op(env: &mut impl Env, cmd: u64, arg: u64, long_mode: bool) -> Result<i64, i64> {
    match cmd & memory::MEMOP_CMD_MASK {
        memory::XENMEM_ADD_TO_PHYSMAP => {
            let x = if long_mode {
                read_arg::<AddToPhysmap>(env, arg)?
            } else {
                // 32-bit layout: domid, size, space, then 32-bit idx and gpfn.
                let mut b = [0u8; 16];
                env.read(arg, &mut b).map_err(fault)?;
                AddToPhysmap {
                    domid: u16::from_le_bytes([b[0], b[1]]),
                    size: u16::from_le_bytes([b[2], b[3]]),
                    space: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
                    idx: u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as u64,
                    gpfn: u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as u64,
                }
            };
            let target = if x.domid == DOMID_SELF { env.domid() } else { x.domid };
            if !env.domain_exists(target) {
                return Err(-ESRCH);
            }
            if target != env.domid() {
                // Acting on another domain's physmap: not for a domU, and
                // not implemented for dom0 yet.
                return Err(if env.privileged() { -EOPNOTSUPP } else { -EPERM });
            }
            if x.gpfn == u64::MAX || (!long_mode && x.gpfn == 0xffff_ffff) {
                return Err(-EINVAL);
            }
            match x.space {
                memory::XENMAPSPACE_SHARED_INFO if x.idx != 0 => Err(-EINVAL),
                memory::XENMAPSPACE_SHARED_INFO => env.map_shared_info(x.gpfn).map(|_| 0),
                memory::XENMAPSPACE_GMFN_FOREIGN => Err(-ENOSYS),
                // Status frames belong to grant tables v2, not offered.
                memory::XENMAPSPACE_GRANT_TABLE if x.idx & memory::XENMAPIDX_GRANT_TABLE_STATUS != 0 => Err(-EINVAL),
                memory::XENMAPSPACE_GRANT_TABLE if x.idx > u32::MAX as u64 => Err(-EINVAL),
                memory::XENMAPSPACE_GRANT_TABLE => env.map_grant_frame(x.idx as u32, x.gpfn).map(|_| 0),
                // Moving RAM around the physmap is not offered yet.
                memory::XENMAPSPACE_GMFN | memory::XENMAPSPACE_GMFN_RANGE => Err(-EOPNOTSUPP),
                _ => Err(-EINVAL),
            }
        }
        memory::XENMEM_MEMORY_MAP => {
            let (nr, buf) = if long_mode {
                let m: memory::MemoryMap = read_arg(env, arg)?;
                (m.nr_entries, m.buffer)
            } else {
                let mut b = [0u8; 8];
                env.read(arg, &mut b).map_err(fault)?;
                (u32::from_le_bytes([b[0], b[1], b[2], b[3]]), u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as u64)
            };
            let Some(map) = env.memory_map() else { return Err(-ENOSYS) };
            // A buffer too small for the whole map gets what fits (Xen).
            let n = (nr as usize).min(map.len());
            let mut bytes = [0u8; 20 * 32];
            let n = n.min(32);
            for (i, e) in map[..n].iter().enumerate() {
                bytes[i * 20..i * 20 + 20].copy_from_slice(e.as_bytes());
            }
            env.write(buf, &bytes[..n * 20]).map_err(fault)?;
            env.write(arg, &(n as u32).to_le_bytes()).map_err(fault)?;
            Ok(0)
        }
        // These take no continuation: bits above the command are refused.
        memory::XENMEM_CURRENT_RESERVATION
        | memory::XENMEM_MAXIMUM_RESERVATION
        | memory::XENMEM_MAXIMUM_GPFN
        | memory::XENMEM_MAXIMUM_RAM_PAGE
            if cmd >> memory::MEMOP_EXTENT_SHIFT != 0 =>
        {
            Err(-EINVAL)
        }
        memory::XENMEM_CURRENT_RESERVATION | memory::XENMEM_MAXIMUM_RESERVATION | memory::XENMEM_MAXIMUM_GPFN => {
            let dom: u16 = read_arg(env, arg)?;
            let target = if dom == DOMID_SELF { env.domid() } else { dom };
            if !env.domain_exists(target) {
                return Err(-ESRCH);
            }
            if target != env.domid() && !env.privileged() {
                return Err(-EPERM);
            }
            let (cur, max) = env.reservation(target);
            Ok(match cmd & memory::MEMOP_CMD_MASK {
                memory::XENMEM_CURRENT_RESERVATION => cur,
                memory::XENMEM_MAXIMUM_RESERVATION => max,
                _ => env.maximum_gpfn(target),
            } as i64)
        }
        memory::XENMEM_MAXIMUM_RAM_PAGE => Ok(env.maximum_ram_page() as i64),
        // Not for HVM guests in Xen either.
        memory::XENMEM_MACHINE_MEMORY_MAP | memory::XENMEM_MACHPHYS_MAPPING => Err(-ENOSYS),
        _ => Err(-ENOSYS),
    }
}

/// The 32-byte hypercall-page slots: `mov eax, i; vmcall/vmmcall; ret`,
/// padded with int3; slot 23 (`iret`) is `ud2`.
pub fn hypercall_page(amd: bool) -> [u8; 4096] {
    let mut p = [0xccu8; 4096];
    for i in 0..nr_slots() {
        let s = &mut p[i * 32..i * 32 + 32];
        if i as u64 == nr::IRET {
            s[0] = 0x0f;
            s[1] = 0x0b;
            continue;
        }
        s[0] = 0xb8;
        s[1..5].copy_from_slice(&(i as u32).to_le_bytes());
        s[5] = 0x0f;
        s[6] = 0x01;
        s[7] = if amd { 0xd9 } else { 0xc1 };
        s[8] = 0xc3;
    }
    p
}

fn nr_slots() -> usize {
    xen_abi::hypercall::PAGE_SLOTS
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A domain with flat guest-virtual memory (gva = offset in `mem`).
    pub struct Fake {
        pub domid: u16,
        pub privileged: bool,
        pub mem: Vec<u8>,
        pub console: Vec<u8>,
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
        pub grant_maps: Vec<xen_abi::grant_table::MapGrantRef>,
        pub grant_status: i16,
        pub extents: Vec<(Extent, u16, u64, u32)>,
        pub extents_left: u32,
    }

    impl Fake {
        pub fn new(domid: u16) -> Fake {
            Fake {
                domid,
                privileged: false,
                mem: vec![0; 0x10000],
                console: Vec::new(),
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
                grant_status: 0,
                extents: Vec::new(),
                extents_left: u32::MAX,
            }
        }
        pub fn put(&mut self, at: u64, bytes: &[u8]) {
            self.mem[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
        }
        pub fn get(&self, at: u64, n: usize) -> &[u8] {
            &self.mem[at as usize..at as usize + n]
        }
    }

    impl Env for Fake {
        fn domid(&self) -> u16 {
            self.domid
        }
        fn vcpu_id(&self) -> u32 {
            0
        }
        fn nr_vcpus(&self) -> u32 {
            2
        }
        fn privileged(&self) -> bool {
            self.privileged
        }
        fn domain_exists(&self, d: u16) -> bool {
            d == self.domid || d == 0 || d == 7
        }
        fn read(&self, gva: u64, buf: &mut [u8]) -> Result<(), MemFault> {
            let end = gva.checked_add(buf.len() as u64).filter(|&e| e <= self.mem.len() as u64);
            match end {
                Some(_) => {
                    buf.copy_from_slice(&self.mem[gva as usize..gva as usize + buf.len()]);
                    Ok(())
                }
                None => Err(MemFault::PageFault { gva, error_code: 0 }),
            }
        }
        fn write(&mut self, gva: u64, buf: &[u8]) -> Result<(), MemFault> {
            if gva.checked_add(buf.len() as u64).is_none_or(|e| e > self.mem.len() as u64) {
                return Err(MemFault::PageFault { gva, error_code: 2 });
            }
            self.put(gva, buf);
            Ok(())
        }
        fn console_put(&mut self, b: u8) {
            self.console.push(b);
        }
        fn param(&self, d: u16, i: u32) -> u64 {
            self.params.get(&(d, i)).copied().unwrap_or(0)
        }
        fn set_param(&mut self, d: u16, i: u32, v: u64) {
            self.params.insert((d, i), v);
        }
        fn map_shared_info(&mut self, gpfn: u64) -> Result<(), i64> {
            self.shared_info_at = Some(gpfn);
            Ok(())
        }
        fn memory_map(&self) -> Option<&[E820Entry]> {
            self.map.as_deref()
        }
        fn handle(&self) -> [u8; 16] {
            [0xab; 16]
        }
        fn hypervisor_cmdline(&self) -> &str {
            "loglvl=all"
        }
        fn now_ns(&self) -> u64 {
            123_456
        }
        fn set_upcall_vector(&mut self, v: u32, vec: u8) {
            self.upcall = Some((v, vec));
        }
        fn flush_guest_tlbs(&mut self) {
            self.flushed = true;
        }
        fn shutdown_domain(&mut self, d: u16, r: u8) {
            self.shut.push((d, r));
        }
        fn set_shutdown_code(&mut self, _r: u8) {}
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
        fn set_runstate_area(&mut self, vcpu: u32, gva: u64) {
            self.areas.push((vcpu, gva));
        }
        fn set_time_area(&mut self, vcpu: u32, gva: u64) {
            self.areas.push((vcpu + 100, gva));
        }
        fn register_vcpu_info(&mut self, vcpu: u32, gfn: u64, offset: u32) -> Result<(), i64> {
            if offset > 4096 - 64 {
                return Err(-EINVAL);
            }
            self.infos.push((vcpu, gfn, offset));
            Ok(())
        }
        fn set_periodic_timer(&mut self, vcpu: u32, period_ns: u64) {
            self.periodic.push((vcpu, period_ns));
        }
        fn set_singleshot_timer(&mut self, deadline: Option<u64>) {
            self.singleshot = Some(deadline);
        }
        fn send_nmi(&mut self, _vcpu: u32) {}
        fn cr4_valid(&self) -> u64 {
            0x3f_ffff
        }
        fn port_pending(&self, port: u32) -> Result<bool, i64> {
            if port >= 4096 { Err(-EINVAL) } else { Ok(self.pending_ports.contains(&port)) }
        }
        fn set_poll(&mut self, _port: Option<u32>, deadline: u64) {
            self.poll_deadline = Some(deadline);
        }
        fn cancel_poll(&mut self) {
            self.poll_deadline = None;
        }
        fn evtchn(&mut self, req: Request) -> Result<Reply, i64> {
            self.evtchn_requests.push(req);
            self.evtchn_reply
        }
        fn grant_map(&mut self, op: &xen_abi::grant_table::MapGrantRef) -> (i16, u32) {
            self.grant_maps.push(*op);
            (self.grant_status, self.grant_maps.len() as u32 - 1)
        }
        fn grant_unmap(&mut self, _op: &xen_abi::grant_table::UnmapGrantRef) -> i16 {
            self.grant_status
        }
        fn grant_copy(&mut self, _op: &xen_abi::grant_table::Copy) -> i16 {
            self.grant_status
        }
        fn grant_table_size(&mut self, _d: u16, grow_to: Option<u32>) -> Result<(u32, u32), i16> {
            match grow_to {
                Some(n) if n > 64 => Err(xen_abi::grant_table::GNTST_GENERAL_ERROR),
                Some(n) => Ok((n.max(1), 64)),
                None => Ok((1, 64)),
            }
        }
        fn grant_frame_gfn(&self, _d: u16, idx: u32) -> u64 {
            if idx == 0 { 0x1000 } else { u64::MAX }
        }
        fn map_grant_frame(&mut self, idx: u32, _gpfn: u64) -> Result<(), i64> {
            if idx >= 64 { Err(-EINVAL) } else { Ok(()) }
        }
        fn reservation(&self, _d: u16) -> (u64, u64) {
            (2000, 2048)
        }
        fn extent(&mut self, op: Extent, d: u16, gfn: u64, order: u32) -> bool {
            if self.extents_left == 0 {
                return false;
            }
            self.extents_left -= 1;
            self.extents.push((op, d, gfn, order));
            true
        }
        fn maximum_gpfn(&self, _d: u16) -> u64 {
            0x7ff
        }
        fn maximum_ram_page(&self) -> u64 {
            0x12345
        }
    }

    fn call(f: &mut Fake, nr: u64, args: [u64; 5]) -> Outcome {
        dispatch(f, Call { nr, args, long_mode: true }, 0)
    }

    #[test]
    fn unknown_hypercalls_and_user_mode_callers() {
        let mut f = Fake::new(3);
        assert_eq!(call(&mut f, 11, [0; 5]), Outcome::Done(-ENOSYS));
        assert_eq!(call(&mut f, 99_999, [1, 2, 3, 4, 5]), Outcome::Done(-ENOSYS));
        assert_eq!(call(&mut f, nr::PHYSDEV_OP, [0; 5]), Outcome::Done(-ENOSYS));
        let r = dispatch(&mut f, Call { nr: nr::XEN_VERSION, args: [0; 5], long_mode: true }, 3);
        assert_eq!(r, Outcome::Done(-EPERM));
    }

    #[test]
    fn console_write_returns_zero_and_continues_long_writes() {
        let mut f = Fake::new(1);
        f.put(0x100, b"hello\n");
        assert_eq!(call(&mut f, nr::CONSOLE_IO, [0, 6, 0x100, 0, 0]), Outcome::Done(0));
        assert_eq!(f.console, b"hello\n");
        // 10 KB: more than one call's worth, so it continues with the rest.
        let n = 10_000u64;
        let r = call(&mut f, nr::CONSOLE_IO, [0, n, 0x1000, 0, 0]);
        let done = (CONSOLE_CHUNK * CONSOLE_CHUNKS_PER_CALL) as u64;
        assert_eq!(r, Outcome::Continue([0, n - done, 0x1000 + done, 0, 0]));
        assert_eq!(
            call(&mut f, nr::CONSOLE_IO, [0, n - done, 0x1000 + done, 0, 0]),
            Outcome::Continue([0, n - 2 * done, 0x1000 + 2 * done, 0, 0])
        );
        // Bad pointer, read for a domU, unknown command.
        assert_eq!(call(&mut f, nr::CONSOLE_IO, [0, 16, 0xffff_ffff_0000, 0, 0]), Outcome::Done(-EFAULT));
        assert_eq!(call(&mut f, nr::CONSOLE_IO, [1, 16, 0x100, 0, 0]), Outcome::Done(-EPERM));
        assert_eq!(call(&mut f, nr::CONSOLE_IO, [7, 16, 0x100, 0, 0]), Outcome::Done(-ENOSYS));
        // count is an unsigned int: the upper half is ignored.
        f.console.clear();
        assert_eq!(call(&mut f, nr::CONSOLE_IO, [0, 0xdead_0000_0000_0002, 0x100, 0, 0]), Outcome::Done(0));
        assert_eq!(f.console, b"he");
    }

    #[test]
    fn xen_version_values() {
        let mut f = Fake::new(1);
        assert_eq!(call(&mut f, nr::XEN_VERSION, [0, 0, 0, 0, 0]), Outcome::Done(0x40011));
        assert_eq!(call(&mut f, nr::XEN_VERSION, [1, 0x200, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.get(0x200, 3), b".0\0");
        assert_eq!(call(&mut f, nr::XEN_VERSION, [3, 0x300, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.get(0x300, CAPABILITIES.len()), CAPABILITIES.as_bytes());
        // get_features: submap 0 is the PVH domU value; other submaps refused.
        f.put(0x2000, &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(call(&mut f, nr::XEN_VERSION, [6, 0x2000, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.get(0x2004, 4), &0x12305u32.to_le_bytes());
        f.put(0x2000, &1u32.to_le_bytes());
        assert_eq!(call(&mut f, nr::XEN_VERSION, [6, 0x2000, 0, 0, 0]), Outcome::Done(-EINVAL));
        assert_eq!(call(&mut f, nr::XEN_VERSION, [7, 0, 0, 0, 0]), Outcome::Done(4096));
        assert_eq!(call(&mut f, nr::XEN_VERSION, [7, 0x10, 0, 0, 0]), Outcome::Done(-EINVAL));
        assert_eq!(call(&mut f, nr::XEN_VERSION, [5, 0x400, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.get(0x400, 8), &0xffff_8000_0000_0000u64.to_le_bytes());
        assert_eq!(call(&mut f, nr::XEN_VERSION, [9, 0x500, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.get(0x500, 9), b"<denied>\0");
        assert_eq!(call(&mut f, nr::XEN_VERSION, [10, 0x500, 0, 0, 0]), Outcome::Done(-EPERM));
        assert_eq!(call(&mut f, nr::XEN_VERSION, [11, 0x500, 0, 0, 0]), Outcome::Done(-ENOSYS));
        assert_eq!(call(&mut f, nr::XEN_VERSION, [1, 0xffff_0000_0000, 0, 0, 0]), Outcome::Done(-EFAULT));
        // dom0 sees the real command line and the dom0 feature bit.
        f.privileged = true;
        assert_eq!(call(&mut f, nr::XEN_VERSION, [9, 0x500, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.get(0x500, 11), b"loglvl=all\0");
        f.put(0x2000, &0u32.to_le_bytes());
        call(&mut f, nr::XEN_VERSION, [6, 0x2000, 0, 0, 0]);
        assert_eq!(f.get(0x2004, 4), &(0x12305u32 | 1 << 11).to_le_bytes());
    }

    #[test]
    fn sched_op_shutdown_yield_block_and_remote() {
        let mut f = Fake::new(2);
        f.put(0x10, &3u32.to_le_bytes());
        assert_eq!(call(&mut f, nr::SCHED_OP, [2, 0x10, 0, 0, 0]), Outcome::Shutdown(3));
        // Any reason is accepted, truncated to a byte, as in Xen.
        f.put(0x10, &0x1ffu32.to_le_bytes());
        assert_eq!(call(&mut f, nr::SCHED_OP, [2, 0x10, 0, 0, 0]), Outcome::Shutdown(0xff));
        assert_eq!(call(&mut f, nr::SCHED_OP, [2, 0xffff_ffff_0000, 0, 0, 0]), Outcome::Done(-EFAULT));
        assert_eq!(call(&mut f, nr::SCHED_OP, [0, 0, 0, 0, 0]), Outcome::Yield);
        assert_eq!(call(&mut f, nr::SCHED_OP, [1, 0, 0, 0, 0]), Outcome::Block);
        assert_eq!(call(&mut f, nr::SCHED_OP, [42, 0, 0, 0, 0]), Outcome::Done(-ENOSYS));
        // remote_shutdown: missing domain, then no privilege, then allowed.
        f.put(0x20, &[9, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(call(&mut f, nr::SCHED_OP, [4, 0x20, 0, 0, 0]), Outcome::Done(-ESRCH));
        f.put(0x20, &[7, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(call(&mut f, nr::SCHED_OP, [4, 0x20, 0, 0, 0]), Outcome::Done(-EPERM));
        f.privileged = true;
        assert_eq!(call(&mut f, nr::SCHED_OP, [4, 0x20, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.shut, vec![(7, 1)]);
    }

    fn param_at(f: &mut Fake, at: u64, domid: u16, index: u32, value: u64) {
        let p = HvmParam { domid, _pad: 0, index, value };
        f.put(at, p.as_bytes());
    }

    #[test]
    fn hvm_params_follow_xens_permission_rules() {
        let mut f = Fake::new(4);
        f.set_param(4, hvm::PARAM_STORE_PFN, 0xfeffc);
        // A guest may read STORE_PFN but not set it.
        param_at(&mut f, 0x40, DOMID_SELF, hvm::PARAM_STORE_PFN, 0);
        assert_eq!(call(&mut f, nr::HVM_OP, [1, 0x40, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(HvmParam::read_from(f.get(0x40, 16)).unwrap().value, 0xfeffc);
        assert_eq!(call(&mut f, nr::HVM_OP, [0, 0x40, 0, 0, 0]), Outcome::Done(-EPERM));
        // It may set CALLBACK_IRQ (vector type) and read it back.
        param_at(&mut f, 0x40, 4, hvm::PARAM_CALLBACK_IRQ, 2 << 56 | 0xf3);
        assert_eq!(call(&mut f, nr::HVM_OP, [0, 0x40, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.param(4, 0), 2 << 56 | 0xf3);
        // Index out of range, deprecated, not readable, another domain,
        // a missing domain, a bad value.
        for (domid, index, value, get, want) in [
            (DOMID_SELF, 39, 0, true, -EINVAL),
            (DOMID_SELF, 4, 0, true, -EINVAL),
            (DOMID_SELF, hvm::PARAM_IDENT_PT, 0, true, -EPERM),
            (7, hvm::PARAM_STORE_PFN, 0, true, -EPERM),
            (9, hvm::PARAM_STORE_PFN, 0, true, -ESRCH),
            (DOMID_SELF, hvm::PARAM_X87_FIP_WIDTH, 5, false, -EINVAL),
        ] {
            param_at(&mut f, 0x40, domid, index, value);
            let op = if get { 1 } else { 0 };
            assert_eq!(call(&mut f, nr::HVM_OP, [op, 0x40, 0, 0, 0]), Outcome::Done(want), "param {index} dom {domid}");
        }
        assert_eq!(call(&mut f, nr::HVM_OP, [1, 0xffff_0000_0000, 0, 0, 0]), Outcome::Done(-EFAULT));
        // The rules bind a privileged domain acting on itself too...
        f.privileged = true;
        param_at(&mut f, 0x40, DOMID_SELF, hvm::PARAM_STORE_PFN, 1);
        assert_eq!(call(&mut f, nr::HVM_OP, [0, 0x40, 0, 0, 0]), Outcome::Done(-EPERM));
        // ...but the control domain may read another domain's params.
        param_at(&mut f, 0x40, 7, hvm::PARAM_STORE_PFN, 0);
        assert_eq!(call(&mut f, nr::HVM_OP, [1, 0x40, 0, 0, 0]), Outcome::Done(0));
    }

    #[test]
    fn other_hvm_ops() {
        let mut f = Fake::new(4);
        f.put(0x80, &[1, 0, 0, 0, 0xf3, 0, 0, 0]);
        assert_eq!(call(&mut f, nr::HVM_OP, [23, 0x80, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.upcall, Some((1, 0xf3)));
        f.put(0x80, &[1, 0, 0, 0, 0x0f, 0, 0, 0]);
        assert_eq!(call(&mut f, nr::HVM_OP, [23, 0x80, 0, 0, 0]), Outcome::Done(-EINVAL));
        f.put(0x80, &[5, 0, 0, 0, 0xf3, 0, 0, 0]);
        assert_eq!(call(&mut f, nr::HVM_OP, [23, 0x80, 0, 0, 0]), Outcome::Done(-ENOENT));
        f.put(0x90, &[0xf0, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(call(&mut f, nr::HVM_OP, [9, 0x90, 0, 0, 0]), Outcome::Done(-EINVAL));
        f.put(0x90, &[7, 0]);
        assert_eq!(call(&mut f, nr::HVM_OP, [9, 0x90, 0, 0, 0]), Outcome::Done(-EOPNOTSUPP));
        assert_eq!(call(&mut f, nr::HVM_OP, [5, 0, 0, 0, 0]), Outcome::Done(0));
        assert!(f.flushed);
        assert_eq!(call(&mut f, nr::HVM_OP, [5, 0x10, 0, 0, 0]), Outcome::Done(-EINVAL));
        assert_eq!(call(&mut f, nr::HVM_OP, [10, 0x100, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.get(0x100, 8), &123_456u64.to_le_bytes());
        assert_eq!(call(&mut f, nr::HVM_OP, [77, 0, 0, 0, 0]), Outcome::Done(-ENOSYS));
    }

    #[test]
    fn add_to_physmap_shared_info() {
        let mut f = Fake::new(5);
        let x = AddToPhysmap { domid: DOMID_SELF, size: 0, space: 0, idx: 0, gpfn: 0x1234 };
        f.put(0x300, x.as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [7, 0x300, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.shared_info_at, Some(0x1234));
        for (x, want) in [
            (AddToPhysmap { domid: DOMID_SELF, size: 0, space: 0, idx: 1, gpfn: 1 }, -EINVAL),
            (AddToPhysmap { domid: DOMID_SELF, size: 0, space: 9, idx: 0, gpfn: 1 }, -EINVAL),
            (AddToPhysmap { domid: DOMID_SELF, size: 0, space: 0, idx: 0, gpfn: u64::MAX }, -EINVAL),
            (AddToPhysmap { domid: 7, size: 0, space: 0, idx: 0, gpfn: 1 }, -EPERM),
            (AddToPhysmap { domid: 99, size: 0, space: 0, idx: 0, gpfn: 1 }, -ESRCH),
            (AddToPhysmap { domid: DOMID_SELF, size: 0, space: 4, idx: 0, gpfn: 1 }, -ENOSYS),
            (AddToPhysmap { domid: DOMID_SELF, size: 0, space: 2, idx: 0, gpfn: 1 }, -EOPNOTSUPP),
        ] {
            f.put(0x300, x.as_bytes());
            assert_eq!(call(&mut f, nr::MEMORY_OP, [7, 0x300, 0, 0, 0]), Outcome::Done(want), "{x:?}");
        }
        // 32-bit callers use the compact layout.
        let mut b = [0u8; 16];
        b[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
        b[12..16].copy_from_slice(&0x777u32.to_le_bytes());
        f.put(0x300, &b);
        let r = dispatch(&mut f, Call { nr: nr::MEMORY_OP, args: [7, 0x300, 0, 0, 0], long_mode: false }, 0);
        assert_eq!(r, Outcome::Done(0));
        assert_eq!(f.shared_info_at, Some(0x777));
    }

    #[test]
    fn memory_map_truncates_and_reports_missing_maps() {
        let mut f = Fake::new(5);
        let m = memory::MemoryMap { nr_entries: 1, _pad: 0, buffer: 0x600 };
        f.put(0x500, m.as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [9, 0x500, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(u32::from_le_bytes(f.get(0x500, 4).try_into().unwrap()), 1);
        let e = E820Entry::read_from(f.get(0x600, 20)).unwrap();
        assert_eq!({ e.size }, 0x800_0000);
        assert_eq!(f.get(0x614, 4), &[0; 4], "nothing past the one entry asked for");
        let m = memory::MemoryMap { nr_entries: 10, _pad: 0, buffer: 0x600 };
        f.put(0x500, m.as_bytes());
        call(&mut f, nr::MEMORY_OP, [9, 0x500, 0, 0, 0]);
        assert_eq!(u32::from_le_bytes(f.get(0x500, 4).try_into().unwrap()), 2);
        let m = memory::MemoryMap { nr_entries: 2, _pad: 0, buffer: 0xffff_0000_0000 };
        f.put(0x500, m.as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [9, 0x500, 0, 0, 0]), Outcome::Done(-EFAULT));
        f.map = None;
        assert_eq!(call(&mut f, nr::MEMORY_OP, [9, 0x500, 0, 0, 0]), Outcome::Done(-ENOSYS));
        assert_eq!(call(&mut f, nr::MEMORY_OP, [10, 0x500, 0, 0, 0]), Outcome::Done(-ENOSYS));
        assert_eq!(call(&mut f, nr::MEMORY_OP, [63, 0x500, 0, 0, 0]), Outcome::Done(-ENOSYS));
    }

    #[test]
    fn control_hypercalls_are_for_the_control_domain() {
        let mut f = Fake::new(5);
        f.put(0x40, &[1, 0, 0, 0, 0x15, 0, 0, 0]);
        assert_eq!(call(&mut f, nr::DOMCTL, [0x40, 0, 0, 0, 0]), Outcome::Done(-EPERM));
        assert_eq!(call(&mut f, nr::SYSCTL, [0x40, 0, 0, 0, 0]), Outcome::Done(-EPERM));
        assert_eq!(call(&mut f, nr::PLATFORM_OP, [0x40, 0, 0, 0, 0]), Outcome::Done(-EACCES), "wrong version");
        assert_eq!(call(&mut f, nr::DOMCTL, [0xffff_0000, 0, 0, 0, 0]), Outcome::Done(-EFAULT));
        assert_eq!(call(&mut f, nr::KEXEC_OP, [0, 0, 0, 0, 0]), Outcome::Done(-EPERM));
        f.privileged = true;
        assert_eq!(call(&mut f, nr::DOMCTL, [0x40, 0, 0, 0, 0]), Outcome::Done(-ENOSYS));
    }

    #[test]
    fn reservation_ops_count_extents_and_continue() {
        let mut f = Fake::new(5);
        for i in 0..4u64 {
            f.put(0x900 + 8 * i, &(0x100 + i).to_le_bytes());
        }
        let r = |n, order, domid| memory::MemoryReservation {
            extent_start: 0x900,
            nr_extents: n,
            extent_order: order,
            mem_flags: 0,
            domid,
            _pad: [0; 3],
        };
        f.put(0x800, r(4, 0, DOMID_SELF).as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [1, 0x800, 0, 0, 0]), Outcome::Done(4));
        assert_eq!(f.extents[3], (Extent::Decrease, 5, 0x103, 0));
        // Stops at the first extent that fails, saying how many were done.
        f.extents_left = 2;
        assert_eq!(call(&mut f, nr::MEMORY_OP, [6, 0x800, 0, 0, 0]), Outcome::Done(2));
        f.extents_left = u32::MAX;
        // A continued call starts where the command's upper bits say.
        f.extents.clear();
        assert_eq!(call(&mut f, nr::MEMORY_OP, [6 | 3 << 6, 0x800, 0, 0, 0]), Outcome::Done(4));
        assert_eq!(f.extents, vec![(Extent::Populate, 5, 0x103, 0)]);
        // Too large an order, another domain, a bad buffer: nothing done.
        f.put(0x800, r(4, 10, DOMID_SELF).as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [6, 0x800, 0, 0, 0]), Outcome::Done(0));
        f.put(0x800, r(4, 0, 7).as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [1, 0x800, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(call(&mut f, nr::MEMORY_OP, [1, 0xffff_0000, 0, 0, 0]), Outcome::Done(0));
        // Many extents continue after a bounded number.
        f.put(0x800, r(600, 0, DOMID_SELF).as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [0, 0x800, 0, 0, 0]), Outcome::Continue([512 << 6, 0x800, 0, 0, 0]));
        // Reservation queries.
        f.put(0xa00, &DOMID_SELF.to_le_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [3, 0xa00, 0, 0, 0]), Outcome::Done(2000));
        assert_eq!(call(&mut f, nr::MEMORY_OP, [4, 0xa00, 0, 0, 0]), Outcome::Done(2048));
        assert_eq!(call(&mut f, nr::MEMORY_OP, [14, 0xa00, 0, 0, 0]), Outcome::Done(0x7ff));
        assert_eq!(call(&mut f, nr::MEMORY_OP, [2, 0, 0, 0, 0]), Outcome::Done(0x12345));
        assert_eq!(call(&mut f, nr::MEMORY_OP, [3 | 1 << 6, 0xa00, 0, 0, 0]), Outcome::Done(-EINVAL));
        f.put(0xa00, &7u16.to_le_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [3, 0xa00, 0, 0, 0]), Outcome::Done(-EPERM));
        f.put(0xa00, &9u16.to_le_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [3, 0xa00, 0, 0, 0]), Outcome::Done(-ESRCH));
        // Grant frames through add_to_physmap.
        let x = AddToPhysmap { domid: DOMID_SELF, size: 0, space: 1, idx: 3, gpfn: 0x2000 };
        f.put(0x300, x.as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [7, 0x300, 0, 0, 0]), Outcome::Done(0));
        let x = AddToPhysmap { domid: DOMID_SELF, size: 0, space: 1, idx: 1 << 31, gpfn: 0x2000 };
        f.put(0x300, x.as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [7, 0x300, 0, 0, 0]), Outcome::Done(-EINVAL));
    }

    #[test]
    fn hypercall_page_layout() {
        let p = hypercall_page(true);
        assert_eq!(&p[0..9], &[0xb8, 0, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3]);
        assert_eq!(&p[18 * 32..18 * 32 + 9], &[0xb8, 18, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3]);
        assert_eq!(&p[23 * 32..23 * 32 + 3], &[0x0f, 0x0b, 0xcc]);
        assert!(p[9..32].iter().all(|&b| b == 0xcc));
        let i = hypercall_page(false);
        assert_eq!(&i[32..41], &[0xb8, 1, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3]);
    }

    #[test]
    fn vcpu_up_down_and_initialise_follow_xen() {
        let mut f = Fake::new(3);
        // vCPU 1 has no state yet: up is refused until it is initialised.
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_UP, 1, 0, 0, 0]), Outcome::Done(-EINVAL));
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_IS_UP, 1, 0, 0, 0]), Outcome::Done(0));
        let r = xv::VcpuHvmX86_64 { rip: 0x1000, cr0: 0x8000_0001, cr4: 0x20, efer: 0x100, ..Default::default() };
        let mut ctx = xv::VcpuHvmContext { mode: xv::VCPU_HVM_MODE_64B, ..Default::default() };
        ctx.regs[..112].copy_from_slice(r.as_bytes());
        f.put(0x400, ctx.as_bytes());
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_INITIALISE, 1, 0x400, 0, 0]), Outcome::Done(0));
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_INITIALISE, 1, 0x400, 0, 0]), Outcome::Done(-EEXIST));
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_UP, 1, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_IS_UP, 1, 0, 0, 0]), Outcome::Done(1));
        // A bad context is -EINVAL, an unreadable one -EFAULT.
        f.vcpus[1].0 = false;
        ctx.mode = 9;
        f.put(0x400, ctx.as_bytes());
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_INITIALISE, 1, 0x400, 0, 0]), Outcome::Done(-EINVAL));
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_INITIALISE, 1, 0xffff_0000, 0, 0]), Outcome::Done(-EFAULT));
        f.vcpus[1].0 = true;
        // Down: another vCPU is done here, the caller leaves, the last one
        // up powers the domain off.
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_DOWN, 1, 0, 0, 0]), Outcome::Done(0));
        assert!(!f.vcpus[1].1);
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_DOWN, 0, 0, 0, 0]), Outcome::Shutdown(0));
        f.vcpus[1].1 = true;
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_DOWN, 0, 0, 0, 0]), Outcome::Down);
        // Unknown vCPUs and commands.
        assert_eq!(call(&mut f, nr::VCPU_OP, [xv::VCPUOP_IS_UP, 2, 0, 0, 0]), Outcome::Done(-ENOENT));
        assert_eq!(call(&mut f, nr::VCPU_OP, [99, 0, 0, 0, 0]), Outcome::Done(-ENOSYS));
    }

    #[test]
    fn vcpu_timers_and_areas() {
        let mut f = Fake::new(3);
        let op = |f: &mut Fake, cmd, vcpu, arg| call(f, nr::VCPU_OP, [cmd, vcpu, arg, 0, 0]);
        f.put(0x100, xv::SetSingleshotTimer { timeout_abs_ns: 200_000, flags: 0, _pad: 0 }.as_bytes());
        assert_eq!(op(&mut f, xv::VCPUOP_SET_SINGLESHOT_TIMER, 0, 0x100), Outcome::Done(0));
        assert_eq!(f.singleshot, Some(Some(200_000)));
        // Only the caller's own; a past deadline with the "future" flag
        // is -ETIME (Xen 4.17); without it, it fires at once.
        assert_eq!(op(&mut f, xv::VCPUOP_SET_SINGLESHOT_TIMER, 1, 0x100), Outcome::Done(-EINVAL));
        f.put(0x100, xv::SetSingleshotTimer { timeout_abs_ns: 5, flags: xv::SSHOTTMR_FUTURE, _pad: 0 }.as_bytes());
        assert_eq!(op(&mut f, xv::VCPUOP_SET_SINGLESHOT_TIMER, 0, 0x100), Outcome::Done(-ETIME));
        assert_eq!(op(&mut f, xv::VCPUOP_STOP_SINGLESHOT_TIMER, 0, 0), Outcome::Done(0));
        assert_eq!(f.singleshot, Some(None));
        // Periodic: at least 1 ms.
        f.put(0x120, &999_999u64.to_le_bytes());
        assert_eq!(op(&mut f, xv::VCPUOP_SET_PERIODIC_TIMER, 1, 0x120), Outcome::Done(-EINVAL));
        f.put(0x120, &10_000_000u64.to_le_bytes());
        assert_eq!(op(&mut f, xv::VCPUOP_SET_PERIODIC_TIMER, 1, 0x120), Outcome::Done(0));
        assert_eq!(op(&mut f, xv::VCPUOP_STOP_PERIODIC_TIMER, 1, 0), Outcome::Done(0));
        assert_eq!(f.periodic, vec![(1, 10_000_000), (1, 0)]);
        // Runstate: written where asked, area registered after a test write.
        assert_eq!(op(&mut f, xv::VCPUOP_GET_RUNSTATE_INFO, 1, 0x200), Outcome::Done(0));
        assert_eq!(RunstateInfo::read_from(f.get(0x200, 48)).unwrap().time[0], 1);
        f.put(0x300, &0x800u64.to_le_bytes());
        assert_eq!(op(&mut f, xv::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, 0x300), Outcome::Done(0));
        f.put(0x300, &0xffff_0000u64.to_le_bytes());
        assert_eq!(op(&mut f, xv::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, 0x300), Outcome::Done(-EFAULT));
        assert_eq!(f.areas, vec![(0, 0x800)]);
        // vcpu_info: the frame and offset go through.
        f.put(0x340, xv::RegisterVcpuInfo { mfn: 0x1234, offset: 64, rsvd: 0 }.as_bytes());
        assert_eq!(op(&mut f, xv::VCPUOP_REGISTER_VCPU_INFO, 1, 0x340), Outcome::Done(0));
        assert_eq!(f.infos, vec![(1, 0x1234, 64)]);
        assert_eq!(op(&mut f, xv::VCPUOP_SEND_NMI, 1, 8), Outcome::Done(-EINVAL));
        assert_eq!(op(&mut f, xv::VCPUOP_GET_PHYSID, 0, 0x100), Outcome::Done(-EINVAL));
    }

    #[test]
    fn set_timer_op_and_poll() {
        let mut f = Fake::new(3);
        assert_eq!(call(&mut f, nr::SET_TIMER_OP, [500_000, 0, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.singleshot, Some(Some(500_000)));
        assert_eq!(call(&mut f, nr::SET_TIMER_OP, [0, 0, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.singleshot, Some(None));
        // Wrapped or absurd timeouts get 100 ms from now.
        assert_eq!(call(&mut f, nr::SET_TIMER_OP, [u64::MAX, 0, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.singleshot, Some(Some(123_456 + 100_000_000)));
        // 32-bit callers pass the time in two halves.
        let r = dispatch(&mut f, Call { nr: nr::SET_TIMER_OP, args: [0x10, 0x1, 0, 0, 0], long_mode: false }, 0);
        assert_eq!(r, Outcome::Done(0));
        assert_eq!(f.singleshot, Some(Some(0x1_0000_0010)));
        // Poll: a pending port returns at once, otherwise it blocks.
        f.put(0x700, &[5, 0, 0, 0, 9, 0, 0, 0]);
        let p = sched::SchedPoll { ports: 0x700, nr_ports: 2, _pad: 0, timeout: 777 };
        f.put(0x680, p.as_bytes());
        assert_eq!(call(&mut f, nr::SCHED_OP, [sched::SCHEDOP_POLL, 0x680, 0, 0, 0]), Outcome::Block);
        assert_eq!(f.poll_deadline, Some(777));
        f.pending_ports.push(9);
        assert_eq!(call(&mut f, nr::SCHED_OP, [sched::SCHEDOP_POLL, 0x680, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.poll_deadline, None, "a pending port cancels the poll");
        f.put(0x700, &[0, 0x10, 0, 0]);
        assert_eq!(call(&mut f, nr::SCHED_OP, [sched::SCHEDOP_POLL, 0x680, 0, 0, 0]), Outcome::Done(-EINVAL));
        let p = sched::SchedPoll { ports: 0x700, nr_ports: 129, _pad: 0, timeout: 0 };
        f.put(0x680, p.as_bytes());
        assert_eq!(call(&mut f, nr::SCHED_OP, [sched::SCHEDOP_POLL, 0x680, 0, 0, 0]), Outcome::Done(-EINVAL));
    }
}
