//! A guest with three vCPUs (start it with vcpus=3): brings vCPU 1 up with
//! VCPUOP_initialise/up and vCPU 2 with INIT and STARTUP through its local
//! APIC, as Linux does; checks that vCPUs run at the same time, that an
//! IPI reaches its target, that the clocks of different vCPUs never go
//! backwards against each other, and that VCPUOP_down stops a vCPU.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use test_guests::x86::{self, vcpu_op};
use test_guests::*;
use xen_abi::errno::*;
use xen_abi::vcpu::*;

/// What vCPU 1 does next (set by vCPU 0).
static AP_TASK: AtomicU32 = AtomicU32::new(0);
const TASK_COUNT: u32 = 0;
const TASK_CLOCK: u32 = 1;
const TASK_IDLE: u32 = 2;

static AP_ALIVE: AtomicU32 = AtomicU32::new(0);
static AP_VCPU_ID: AtomicU32 = AtomicU32::new(u32::MAX);
static COUNTER: AtomicU64 = AtomicU64::new(0);
/// Clock hand-offs: the time a vCPU read, and whose turn it is.
static STAMP: AtomicU64 = AtomicU64::new(0);
static TURN: AtomicU32 = AtomicU32::new(0);
static BACKWARDS: AtomicU32 = AtomicU32::new(0);
const ROUNDS: u32 = 2000;

const IPI_VECTOR: u8 = 0x40;
/// Where vCPU 2's real-mode code runs (guest RAM below 1 MiB).
const SIPI_PAGE: u64 = 0x8000;
const SIPI_MAGIC: u32 = 0xb007_1e55;

extern "C" fn ap_main(vcpu: u32) -> ! {
    x86::install_idt();
    x86::x2apic_enable();
    AP_VCPU_ID.store(x86::vcpu_id(), Ordering::SeqCst);
    AP_ALIVE.store(vcpu, Ordering::SeqCst);
    // Interrupts on: the IPI test needs them.
    x86::sti();
    loop {
        match AP_TASK.load(Ordering::SeqCst) {
            TASK_COUNT => {
                COUNTER.fetch_add(1, Ordering::SeqCst);
            }
            TASK_CLOCK => {
                // Take turns with vCPU 0: read the clock, publish it; on
                // our turn, first check that ours is not behind theirs.
                if TURN.load(Ordering::SeqCst) % 2 == 1 {
                    let theirs = STAMP.load(Ordering::SeqCst);
                    let mine = x86::now_ns_of(vcpu);
                    if mine < theirs {
                        BACKWARDS.fetch_add(1, Ordering::SeqCst);
                    }
                    STAMP.store(x86::now_ns_of(vcpu), Ordering::SeqCst);
                    TURN.fetch_add(1, Ordering::SeqCst);
                }
            }
            _ => core::hint::spin_loop(),
        }
    }
}

/// vCPU 2's real-mode start code: writes a magic word at offset 0x100 of
/// its page, then halts with interrupts off (which takes it down).
const SIPI_CODE: [u8; 17] = [
    0x8c, 0xc8, // mov ax, cs
    0x8e, 0xd8, // mov ds, ax
    0x66, 0xc7, 0x06, 0x00, 0x01, 0x55, 0x1e, 0x07, 0xb0, // mov dword [0x100], 0xb0071e55
    0xfa, // cli
    0xf4, // hlt
    0xeb, 0xfd, // jmp back to hlt
];

fn wait_until(mut cond: impl FnMut() -> bool, spins: u64) -> bool {
    for _ in 0..spins {
        if cond() {
            return true;
        }
        core::hint::spin_loop();
    }
    cond()
}

fn runstate(vcpu: u32) -> RunstateInfo {
    let mut r = RunstateInfo::default();
    vcpu_op(VCPUOP_GET_RUNSTATE_INFO, vcpu, &mut r as *mut _ as u64);
    r
}

#[unsafe(no_mangle)]
extern "C" fn pvh_main(_: u64) -> ! {
    let mut c = Checks::new();
    println!("smp: vCPU {} of a domain with several", x86::vcpu_id());
    if vcpu_op(VCPUOP_IS_UP, 2, 0) == -ENOENT {
        c.skip("the smp guest needs three vCPUs (vcpus=3)");
    }
    x86::install_idt();
    c.eq("map shared_info", x86::map_shared_info(0x3f0), 0);

    // vCPU 1: Xen's way.
    c.eq("vCPU 1 starts down", vcpu_op(VCPUOP_IS_UP, 1, 0), 0);
    c.eq("up before initialise is refused", vcpu_op(VCPUOP_UP, 1, 0), -EINVAL);
    let (init, up) = x86::start_vcpu(1, ap_main);
    c.eq("VCPUOP_initialise vCPU 1", init, 0);
    c.eq("VCPUOP_up vCPU 1", up, 0);
    c.eq("vCPU 1 is up", vcpu_op(VCPUOP_IS_UP, 1, 0), 1);
    c.check("vCPU 1 runs", wait_until(|| AP_ALIVE.load(Ordering::SeqCst) == 1, 1 << 30));
    c.eq("vCPU 1 knows its id", AP_VCPU_ID.load(Ordering::SeqCst) as i64, 1);
    let (again, _) = x86::start_vcpu(1, ap_main);
    c.eq("initialising it again is refused", again, -EEXIST);
    c.eq("vCPU 7 does not exist", vcpu_op(VCPUOP_IS_UP, 7, 0), -ENOENT);

    // Both run at once: while this vCPU runs, vCPU 1 is seen running too
    // (by the hypervisor's own account) and its counter moves.
    let mut together = false;
    for _ in 0..200_000 {
        if runstate(1).state == RUNSTATE_RUNNING {
            together = true;
            break;
        }
    }
    c.check("vCPU 0 and vCPU 1 run at the same time", together);
    let before = COUNTER.load(Ordering::SeqCst);
    c.check("vCPU 1 makes progress", wait_until(|| COUNTER.load(Ordering::SeqCst) > before + 1000, 1 << 30));

    // An IPI through the x2APIC reaches vCPU 1 (APIC id 2).
    x86::x2apic_enable();
    x86::send_ipi(2, IPI_VECTOR);
    c.check("an IPI reaches vCPU 1", wait_until(|| x86::interrupts(1, IPI_VECTOR) >= 1, 1 << 30));
    c.eq("and only vCPU 1", x86::interrupts(0, IPI_VECTOR) as i64, 0);

    // Clocks across vCPUs: each reads its own pvclock after seeing the
    // other's reading; none may be earlier.
    AP_TASK.store(TASK_CLOCK, Ordering::SeqCst);
    let mut backwards = 0;
    for _ in 0..ROUNDS {
        let ok = wait_until(|| TURN.load(Ordering::SeqCst) % 2 == 0, 1 << 28);
        if !ok {
            break;
        }
        let theirs = STAMP.load(Ordering::SeqCst);
        if x86::now_ns_of(0) < theirs {
            backwards += 1;
        }
        STAMP.store(x86::now_ns_of(0), Ordering::SeqCst);
        TURN.fetch_add(1, Ordering::SeqCst);
    }
    // vCPU 1 takes the last turn.
    wait_until(|| TURN.load(Ordering::SeqCst) == 2 * ROUNDS, 1 << 28);
    AP_TASK.store(TASK_IDLE, Ordering::SeqCst);
    c.eq("hand-offs done", TURN.load(Ordering::SeqCst) as i64 / 2, ROUNDS as i64);
    c.eq("pvclock never goes backwards across vCPUs", (backwards + BACKWARDS.load(Ordering::SeqCst)) as i64, 0);

    // vCPU 2: INIT, STARTUP (twice, as Linux does), real mode at 0x8000.
    // SAFETY: the page is this guest's RAM and unused.
    unsafe {
        core::ptr::copy_nonoverlapping(SIPI_CODE.as_ptr(), SIPI_PAGE as *mut u8, SIPI_CODE.len());
        core::ptr::write_volatile((SIPI_PAGE + 0x100) as *mut u32, 0);
    }
    c.eq("vCPU 2 starts down", vcpu_op(VCPUOP_IS_UP, 2, 0), 0);
    x86::send_init(4);
    x86::send_startup(4, (SIPI_PAGE >> 12) as u8);
    x86::send_startup(4, (SIPI_PAGE >> 12) as u8);
    // SAFETY: as above.
    let magic = || unsafe { core::ptr::read_volatile((SIPI_PAGE + 0x100) as *const u32) };
    c.check("vCPU 2 ran real-mode code at the STARTUP vector", wait_until(|| magic() == SIPI_MAGIC, 1 << 30));
    c.check(
        "vCPU 2 went down when it halted with interrupts off",
        wait_until(|| vcpu_op(VCPUOP_IS_UP, 2, 0) == 0, 1 << 24),
    );

    // Taking vCPU 1 down stops it.
    AP_TASK.store(TASK_COUNT, Ordering::SeqCst);
    c.eq("VCPUOP_down vCPU 1", vcpu_op(VCPUOP_DOWN, 1, 0), 0);
    c.eq("vCPU 1 is down", vcpu_op(VCPUOP_IS_UP, 1, 0), 0);
    let settled = wait_until(|| runstate(1).state == RUNSTATE_OFFLINE, 1 << 24);
    c.check("vCPU 1 is offline", settled);
    let a = COUNTER.load(Ordering::SeqCst);
    for _ in 0..5_000_000 {
        core::hint::spin_loop();
    }
    c.eq("a down vCPU does not run", (COUNTER.load(Ordering::SeqCst) - a) as i64, 0);
    let r = runstate(1);
    c.check("vCPU 1 spent time running", r.time[RUNSTATE_RUNNING as usize] > 0);
    c.finish()
}
