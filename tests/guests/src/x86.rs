//! CPU-level helpers for the test guests: MSRs and control registers, an
//! IDT that counts interrupts per vCPU, the local APIC (x2APIC or xAPIC),
//! Xen's pvclock, and starting secondary vCPUs.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use xen_abi::shared::VcpuTimeInfo;

/// vCPUs the helpers keep state for.
pub const MAX_VCPUS: usize = 8;

pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading an MSR the hypervisor answers (or #GPs on, which the
    // caller asked for).
    unsafe { core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
}

pub fn wrmsr(msr: u32, v: u64) {
    // SAFETY: as for rdmsr.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nomem, nostack))
    };
}

pub fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reads a control register.
    unsafe { core::arch::asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)) };
    v
}

pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reads a control register.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)) };
    v
}

pub fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reads a control register.
    unsafe { core::arch::asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)) };
    v
}

pub fn sti() {
    // SAFETY: the guest's own interrupt flag; an IDT is installed first.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
}

pub fn cli() {
    // SAFETY: the guest's own interrupt flag.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
}

/// STI; HLT: waits for the next interrupt (the STI shadow covers the HLT).
pub fn wait_for_interrupt() {
    // SAFETY: the guest's own interrupt flag; an IDT is installed first.
    unsafe { core::arch::asm!("sti", "hlt", options(nomem, nostack)) };
}

/// This vCPU's id (Xen's CPUID leaf 0x40000004, EBX).
pub fn vcpu_id() -> u32 {
    crate::cpuid(0x4000_0004, 0).ebx
}

// --- IDT -----------------------------------------------------------------

static COUNTS: [[AtomicU32; 256]; MAX_VCPUS] = [const { [const { AtomicU32::new(0) }; 256] }; MAX_VCPUS];
static LAST_NS: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];
static X2APIC: AtomicBool = AtomicBool::new(true);

core::arch::global_asm!(
    r#"
    .section .text.guest_idt, "ax"
    .balign 16
    .global guest_idt_stubs
guest_idt_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    push vec
    jmp guest_idt_common
    .set vec, vec + 1
    .endr
guest_idt_common:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    mov rdi, [rsp + 72]
    lea rsi, [rsp + 80]
    cld
    call guest_interrupt
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    add rsp, 8
    iretq

    .section .rodata.guest_gdt, "a"
    .balign 8
    .global guest_gdt
guest_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
    .global guest_gdt_ptr
guest_gdt_ptr:
    .short 23
    .quad guest_gdt

    .section .text.guest_ap_entry, "ax"
    .global guest_ap_entry
    /* A vCPU started with VCPUOP_initialise in 64-bit mode arrives here
       with flat hidden segments but no GDT: load ours, reload CS and the
       data segments, then call the function in rsi (vcpu id in rdi). */
guest_ap_entry:
    lgdt [rip + guest_gdt_ptr]
    lea rax, [rip + 2f]
    push 0x08
    push rax
    retfq
2:  mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor ebp, ebp
    call rsi
3:  cli
    hlt
    jmp 3b
"#
);

#[repr(C, packed)]
struct Idtr {
    limit: u16,
    base: u64,
}

static mut IDT: [[u64; 2]; 256] = [[0; 2]; 256];

unsafe extern "C" {
    static guest_idt_stubs: u8;
    fn guest_ap_entry();
}

/// Builds the IDT (once) and loads it on this vCPU; exceptions end the
/// domain with a message, interrupts are counted per vCPU and vector, and
/// the APIC gets its EOI.
pub fn install_idt() {
    let base = (&raw const guest_idt_stubs) as u64;
    // SAFETY: every vCPU writes the same values; nothing uses the table
    // before lidt below.
    unsafe {
        let idt = &raw mut IDT;
        for v in 0..256u64 {
            let a = base + 16 * v;
            let low = (a & 0xffff) | (0x08 << 16) | (0x8e00u64 << 32) | ((a >> 16) & 0xffff) << 48;
            (*idt)[v as usize] = [low, a >> 32];
        }
        let r = Idtr { limit: 256 * 16 - 1, base: idt as u64 };
        core::arch::asm!("lidt [{}]", in(reg) &r, options(nostack));
    }
}

/// Points vector `vector` of the IDT (loaded by `install_idt`) at
/// `handler`, an interrupt gate in the guest's code segment: for a guest
/// that handles an exception itself instead of dying of it.
pub fn set_gate(vector: u8, handler: u64) {
    let low = (handler & 0xffff) | (0x08 << 16) | (0x8e00u64 << 32) | ((handler >> 16) & 0xffff) << 48;
    // SAFETY: one 16-byte entry of the guest's own IDT, written whole.
    unsafe { (*(&raw mut IDT))[vector as usize] = [low, handler >> 32] };
}

/// Handlers for vectors that need more than counting (0: none).
static HANDLERS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

/// Runs `f(vcpu)` for every interrupt on `vector` (after counting it,
/// with interrupts off); `f` returns whether the local APIC needs an EOI
/// (false for a vector the hypervisor injects directly, such as Xen's
/// event callback vector).
pub fn set_handler(vector: u8, f: fn(u32) -> bool) {
    HANDLERS[vector as usize].store(f as usize as u64, Ordering::SeqCst);
}

/// `frame`: what the CPU pushed (an error code first for the exceptions
/// that have one, then RIP, CS, RFLAGS, RSP, SS).
#[unsafe(no_mangle)]
extern "C" fn guest_interrupt(vector: u64, frame: *const u64) {
    if vector == NMI_VECTOR {
        // VCPUOP_send_nmi: counted; nothing to acknowledge.
        NMIS.fetch_add(1, Ordering::SeqCst);
        return;
    }
    if vector < 32 {
        let has_code = matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30);
        let at = |i: usize| {
            // SAFETY: the CPU pushed the frame (and the error code) on
            // this stack just above where the stub saved registers.
            unsafe { frame.add(i + has_code as usize).read() }
        };
        let code = if has_code {
            // SAFETY: as above: the error code is the frame's first word.
            unsafe { frame.read() }
        } else {
            0
        };
        let cr2: u64;
        // SAFETY: reads the last page-fault address.
        unsafe { core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
        crate::println!(
            "guest exception {vector} on vCPU {} at rip {:#x}: error code {code:#x}, rsp {:#x}, cr2 {cr2:#x}",
            vcpu_id(),
            at(0),
            at(3)
        );
        crate::shutdown(crate::SHUTDOWN_CRASH);
    }
    let me = vcpu_id() as usize % MAX_VCPUS;
    COUNTS[me][vector as usize].fetch_add(1, Ordering::SeqCst);
    let h = HANDLERS[vector as usize].load(Ordering::SeqCst);
    if h != 0 {
        // SAFETY: set_handler stored a `fn(u32) -> bool` there.
        let f: fn(u32) -> bool = unsafe { core::mem::transmute(h as usize) };
        if !f(me as u32) {
            return;
        }
    }
    LAST_NS[me].store(crate::x86::now_ns_raw(), Ordering::SeqCst);
    apic_eoi();
}

const NMI_VECTOR: u64 = 2;
static NMIS: AtomicU32 = AtomicU32::new(0);

/// NMIs taken by every vCPU (each returns to what it interrupted).
pub fn nmis() -> u32 {
    NMIS.load(Ordering::SeqCst)
}

/// How many interrupts on `vector` vCPU `vcpu` has taken.
pub fn interrupts(vcpu: u32, vector: u8) -> u32 {
    COUNTS[vcpu as usize % MAX_VCPUS][vector as usize].load(Ordering::SeqCst)
}

/// pvclock time of the last interrupt vCPU `vcpu` took.
pub fn last_interrupt_ns(vcpu: u32) -> u64 {
    LAST_NS[vcpu as usize % MAX_VCPUS].load(Ordering::SeqCst)
}

// --- local APIC ----------------------------------------------------------

pub const APIC_BASE_MSR: u32 = 0x1b;
const XAPIC_PAGE: u64 = 0xfee0_0000;

/// Switches this vCPU's APIC to x2APIC mode and enables it (spurious
/// vector 0xff).
pub fn x2apic_enable() {
    let base = rdmsr(APIC_BASE_MSR);
    wrmsr(APIC_BASE_MSR, base | (1 << 10) | (1 << 11));
    X2APIC.store(true, Ordering::SeqCst);
    wrmsr(0x80f, 0x1ff);
}

/// Uses the APIC in xAPIC mode (memory-mapped) and enables it.
pub fn xapic_enable() {
    X2APIC.store(false, Ordering::SeqCst);
    xapic_write(0xf0, 0x1ff);
}

pub fn xapic_read(reg: u32) -> u32 {
    // SAFETY: the APIC page is identity-mapped (the first 4 GiB are).
    unsafe { core::ptr::read_volatile((XAPIC_PAGE + reg as u64) as *const u32) }
}

pub fn xapic_write(reg: u32, v: u32) {
    // SAFETY: as for xapic_read.
    unsafe { core::ptr::write_volatile((XAPIC_PAGE + reg as u64) as *mut u32, v) };
}

pub fn apic_eoi() {
    if X2APIC.load(Ordering::SeqCst) {
        wrmsr(0x80b, 0);
    } else {
        xapic_write(0xb0, 0);
    }
}

/// A fixed IPI on `vector` to APIC id `dest` (x2APIC mode).
pub fn send_ipi(dest: u32, vector: u8) {
    wrmsr(0x830, (dest as u64) << 32 | vector as u64);
}

pub fn send_init(dest: u32) {
    wrmsr(0x830, (dest as u64) << 32 | 5 << 8 | 1 << 14);
}

pub fn send_startup(dest: u32, page: u8) {
    wrmsr(0x830, (dest as u64) << 32 | 6 << 8 | 1 << 14 | page as u64);
}

// --- pvclock -------------------------------------------------------------

static SHARED_INFO: AtomicU64 = AtomicU64::new(0);

/// Maps the shared_info page at guest frame `gpfn` (XENMAPSPACE_shared_info).
pub fn map_shared_info(gpfn: u64) -> i64 {
    let x = xen_abi::memory::AddToPhysmap { domid: xen_abi::DOMID_SELF, size: 0, space: 0, idx: 0, gpfn };
    // SAFETY: `x` is a valid add_to_physmap argument.
    let r = unsafe { crate::hypercall(xen_abi::hypercall::MEMORY_OP, 7, &x as *const _ as u64, 0, 0, 0) };
    if r == 0 {
        SHARED_INFO.store(gpfn << 12, Ordering::SeqCst);
    }
    r
}

pub fn shared_info() -> u64 {
    SHARED_INFO.load(Ordering::SeqCst)
}

static TIME_AT: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];

/// Reads vcpu_time_info for this vCPU from where it is now (its own
/// registered area, else its slot in shared_info).
pub fn time_info() -> VcpuTimeInfo {
    time_info_of(vcpu_id())
}

/// The vcpu_time_info of vCPU `vcpu` (the caller's own, so that the TSC
/// it is used with is the same vCPU's), without asking CPUID who we are.
pub fn time_info_of(vcpu: u32) -> VcpuTimeInfo {
    let me = vcpu as usize % MAX_VCPUS;
    let at = match TIME_AT[me].load(Ordering::SeqCst) {
        0 => shared_info() + me as u64 * 64 + 32,
        a => a,
    };
    read_time_info(at)
}

/// Xen system time now on vCPU `vcpu` (which must be the caller).
pub fn now_ns_of(vcpu: u32) -> u64 {
    let t = time_info_of(vcpu);
    pvclock_ns(&t, crate::rdtsc())
}

/// Points this vCPU's clock at a vcpu_info it registered at `vcpu_info`.
pub fn use_vcpu_info_at(vcpu_info: u64) {
    TIME_AT[vcpu_id() as usize % MAX_VCPUS].store(vcpu_info + 32, Ordering::SeqCst);
}

/// A consistent copy of the vcpu_time_info at `at` (Xen's version rule).
pub fn read_time_info(at: u64) -> VcpuTimeInfo {
    let p = at as *const VcpuTimeInfo;
    loop {
        // SAFETY: `at` is identity-mapped guest memory holding the
        // structure; the hypervisor may change it, hence volatile reads
        // and the version check.
        let v1 = unsafe { core::ptr::read_volatile(p as *const u32) };
        core::sync::atomic::fence(Ordering::SeqCst);
        // SAFETY: as above.
        let t = unsafe { core::ptr::read_volatile(p) };
        core::sync::atomic::fence(Ordering::SeqCst);
        // SAFETY: as above.
        let v2 = unsafe { core::ptr::read_volatile(p as *const u32) };
        if v1 & 1 == 0 && v1 == v2 {
            return t;
        }
    }
}

/// Nanoseconds of Xen system time from a vcpu_time_info and a TSC value.
pub fn pvclock_ns(t: &VcpuTimeInfo, tsc: u64) -> u64 {
    let delta = tsc.wrapping_sub(t.tsc_timestamp);
    let scaled = if t.tsc_shift >= 0 { (delta as u128) << t.tsc_shift } else { (delta as u128) >> -t.tsc_shift };
    t.system_time.wrapping_add(((scaled * t.tsc_to_system_mul as u128) >> 32) as u64)
}

/// Xen system time now, from this vCPU's pvclock.
pub fn now_ns() -> u64 {
    let t = time_info();
    pvclock_ns(&t, crate::rdtsc())
}

/// As now_ns, for interrupt handlers (same thing; kept apart for clarity).
fn now_ns_raw() -> u64 {
    if shared_info() == 0 { 0 } else { now_ns() }
}

// --- secondary vCPUs -----------------------------------------------------

/// Stacks for secondary vCPUs.
static mut AP_STACKS: [[u8; 16384]; MAX_VCPUS] = [[0; 16384]; MAX_VCPUS];

/// A VCPUOP_initialise context that starts `vcpu` in 64-bit mode on this
/// vCPU's page tables and the test guests' GDT, running `main(vcpu)` on
/// the stack that ends at `stack_top`.
pub fn ap_context(vcpu: u32, stack_top: u64, main: extern "C" fn(u32) -> !) -> xen_abi::vcpu::VcpuHvmContext {
    use xen_abi::vcpu::*;
    let regs = VcpuHvmX86_64 {
        rdi: vcpu as u64,
        rsi: main as *const () as u64,
        rsp: stack_top,
        rip: guest_ap_entry as *const () as u64,
        rflags: 2,
        cr0: read_cr0(),
        cr3: read_cr3(),
        cr4: read_cr4(),
        efer: rdmsr(0xc000_0080) & !(1 << 10),
        ..VcpuHvmX86_64::default()
    };
    let mut ctx = VcpuHvmContext { mode: VCPU_HVM_MODE_64B, ..VcpuHvmContext::default() };
    ctx.regs[..112].copy_from_slice(xen_abi::Pod::as_bytes(&regs));
    ctx
}

/// Starts `vcpu` running `main(vcpu)` on a stack of its own
/// ([`ap_context`]): VCPUOP_initialise then VCPUOP_up. Returns
/// (initialise result, up result).
pub fn start_vcpu(vcpu: u32, main: extern "C" fn(u32) -> !) -> (i64, i64) {
    use xen_abi::vcpu::*;
    // SAFETY: one stack per vCPU, used only by that vCPU.
    let top = unsafe { (&raw mut AP_STACKS[vcpu as usize % MAX_VCPUS]) as u64 + 16384 - 8 };
    let ctx = ap_context(vcpu, top, main);
    // SAFETY: `ctx` is a valid vcpu_hvm_context.
    let init = unsafe {
        crate::hypercall(xen_abi::hypercall::VCPU_OP, VCPUOP_INITIALISE, vcpu as u64, &ctx as *const _ as u64, 0, 0)
    };
    let up = vcpu_op(VCPUOP_UP, vcpu, 0);
    (init, up)
}

/// vcpu_op(cmd, vcpu, arg).
pub fn vcpu_op(cmd: u64, vcpu: u32, arg: u64) -> i64 {
    // SAFETY: the caller passes an argument valid for `cmd` (or 0).
    unsafe { crate::hypercall(xen_abi::hypercall::VCPU_OP, cmd, vcpu as u64, arg, 0, 0) }
}

/// sched_op(SCHEDOP_block).
pub fn block() -> i64 {
    // SAFETY: SCHEDOP_block takes no argument.
    unsafe { crate::hypercall(xen_abi::hypercall::SCHED_OP, xen_abi::sched::SCHEDOP_BLOCK, 0, 0, 0, 0) }
}

/// Arms this vCPU's singleshot timer at absolute system time `at`.
pub fn set_singleshot(at: u64, flags: u32) -> i64 {
    let t = xen_abi::vcpu::SetSingleshotTimer { timeout_abs_ns: at, flags, _pad: 0 };
    vcpu_op(xen_abi::vcpu::VCPUOP_SET_SINGLESHOT_TIMER, vcpu_id(), &t as *const _ as u64)
}
