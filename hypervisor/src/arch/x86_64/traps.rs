//! Interrupt descriptor table, entry stubs and the exception report.
//!
//! All 256 vectors enter through one assembly path that saves every general
//! register into a [`TrapFrame`] and calls [`trap_dispatch`]. Exceptions in
//! the hypervisor itself are reported with the vector, error code, faulting
//! address, all registers and a stack walk; #BP and NMI are reported and the
//! CPU goes on, everything else is fatal and ends as `panic=` says.

use super::cpu;
use super::gdt::{IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI, KERNEL_CS};
use super::percpu;
use core::fmt::Write;
use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;

/// Registers as the entry path leaves them on the stack.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    // Pushed by the CPU.
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// Vectors for which the CPU pushes an error code: 8, 10-14, 17, 21, 29, 30.
// Each stub is 16 bytes so the IDT can compute their addresses.
core::arch::global_asm!(
    r#"
.section .text.trap_entry, "ax"
.balign 16
.global trap_stubs
trap_stubs:
.set vec, 0
.rept 256
    .balign 16
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
        push 0
    .endif
    push vec
    jmp trap_common
    .set vec, vec + 1
.endr

trap_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    cld
    mov rdi, rsp
    call {dispatch}
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq
"#,
    dispatch = sym trap_dispatch,
);

unsafe extern "C" {
    static trap_stubs: u8;
}

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

static mut IDT: [Gate; 256] =
    [Gate { offset_low: 0, selector: 0, ist: 0, type_attr: 0, offset_mid: 0, offset_high: 0, reserved: 0 }; 256];

pub const VECTOR_NMI: u64 = 2;
pub const VECTOR_BREAKPOINT: u64 = 3;
pub const VECTOR_DOUBLE_FAULT: u64 = 8;
pub const VECTOR_PAGE_FAULT: u64 = 14;
pub const VECTOR_MACHINE_CHECK: u64 = 18;
pub const VECTOR_SPURIOUS: u64 = 0xff;

/// Builds the IDT (every vector present, interrupt gates, DPL 0) and loads it.
pub fn init() {
    // trap_stubs is the start of 256 16-byte stubs defined above.
    let base = (&raw const trap_stubs) as u64;
    // SAFETY: runs on the boot CPU with interrupts off before any trap can
    // use the table; afterwards the table is only read.
    unsafe {
        let idt_ptr = &raw mut IDT;
        let idt = &mut *idt_ptr;
        for (v, gate) in idt.iter_mut().enumerate() {
            let addr = base + 16 * v as u64;
            let ist = match v as u64 {
                VECTOR_DOUBLE_FAULT => IST_DOUBLE_FAULT,
                VECTOR_NMI => IST_NMI,
                VECTOR_MACHINE_CHECK => IST_MACHINE_CHECK,
                _ => 0,
            };
            *gate = Gate {
                offset_low: addr as u16,
                selector: KERNEL_CS,
                ist: ist as u8,
                type_attr: 0x8e, // present, DPL 0, 64-bit interrupt gate
                offset_mid: (addr >> 16) as u16,
                offset_high: (addr >> 32) as u32,
                reserved: 0,
            };
        }
    }
    load();
}

/// Loads the IDT on the calling CPU.
pub fn load() {
    let ptr = DescriptorTablePointer {
        limit: (core::mem::size_of::<[Gate; 256]>() - 1) as u16,
        base: VirtAddr::new((&raw const IDT) as u64),
    };
    // SAFETY: IDT is a complete, 'static table of valid gates.
    unsafe { lidt(&ptr) };
}

pub fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        16 => "#MF x87 floating point",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD floating point",
        20 => "#VE virtualization",
        21 => "#CP control protection",
        28 => "#HV hypervisor injection",
        29 => "#VC VMM communication",
        30 => "#SX security",
        _ => "reserved",
    }
}

/// Interrupt handlers registered by later subsystems (timer, IPIs).
pub type IrqHandler = fn(&mut TrapFrame);
static IRQ_HANDLERS: spin::RwLock<[Option<IrqHandler>; 256]> = spin::RwLock::new([None; 256]);

pub fn register_irq(vector: u8, handler: IrqHandler) {
    IRQ_HANDLERS.write()[vector as usize] = Some(handler);
}

extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let v = frame.vector;
    if v >= 32 {
        let handler = IRQ_HANDLERS.read()[v as usize];
        match handler {
            Some(h) => h(frame),
            None if v == VECTOR_SPURIOUS => {}
            None => log::warn!("unexpected interrupt on vector {v:#x}"),
        }
        return;
    }
    if v == VECTOR_NMI && super::power::nmi_should_stop() {
        // Another CPU is stopping the machine (panic, power-off).
        cpu::halt_forever();
    }
    let depth = percpu::enter_trap();
    if depth > 2 {
        // Faulting while reporting a fault while reporting a fault: say as
        // little as possible and stop.
        crate::console::serial::emergency_write("\n*** recursive fault in the exception handler; CPU halted\n");
        cpu::halt_forever();
    }
    let fatal = !matches!(v, VECTOR_BREAKPOINT | VECTOR_NMI);
    report(frame, depth > 1);
    percpu::leave_trap();
    if fatal {
        crate::console::panic::fatal_stop(format_args!("fatal exception {} in the hypervisor", exception_name(v)));
    }
}

fn describe_page_fault(code: u64) -> &'static str {
    match (code & 1 != 0, code & 2 != 0, code & 16 != 0) {
        (_, _, true) => "instruction fetch",
        (false, false, _) => "read of a not-present page",
        (false, true, _) => "write to a not-present page",
        (true, false, _) => "read protection violation",
        (true, true, _) => "write protection violation",
    }
}

/// Prints the full report of an exception.
fn report(f: &TrapFrame, nested: bool) {
    crate::console::serial::go_sync();
    let mut out = crate::console::serial::LockedWriter::new();
    let cpu = percpu::cpu_index();
    let _ = writeln!(
        out,
        "\n*** CPU{cpu}: exception {} (vector {}) in the hypervisor at rip {:#018x}{}",
        exception_name(f.vector),
        f.vector,
        f.rip,
        if nested { " [while handling another exception]" } else { "" }
    );
    let _ = write!(out, "    error code {:#x}", f.error_code);
    if f.vector == VECTOR_PAGE_FAULT {
        let _ = write!(
            out,
            " ({}, {} mode{})",
            describe_page_fault(f.error_code),
            if f.error_code & 4 != 0 { "user" } else { "supervisor" },
            if f.error_code & 8 != 0 { ", reserved bit set" } else { "" }
        );
    }
    let _ = writeln!(out);
    let cr2 = cpu::read_cr2();
    let _ = writeln!(out, "    faulting address (cr2) {cr2:#018x}");
    let _ = writeln!(out, "    rax {:016x} rbx {:016x} rcx {:016x} rdx {:016x}", f.rax, f.rbx, f.rcx, f.rdx);
    let _ = writeln!(out, "    rsi {:016x} rdi {:016x} rbp {:016x} rsp {:016x}", f.rsi, f.rdi, f.rbp, f.rsp);
    let _ = writeln!(out, "    r8  {:016x} r9  {:016x} r10 {:016x} r11 {:016x}", f.r8, f.r9, f.r10, f.r11);
    let _ = writeln!(out, "    r12 {:016x} r13 {:016x} r14 {:016x} r15 {:016x}", f.r12, f.r13, f.r14, f.r15);
    let _ = writeln!(out, "    rip {:016x} rflags {:08x} cs {:04x} ss {:04x}", f.rip, f.rflags, f.cs, f.ss);
    let _ = writeln!(
        out,
        "    cr0 {:016x} cr3 {:016x} cr4 {:016x} efer {:016x}",
        cpu::read_cr0(),
        cpu::read_cr3(),
        cpu::read_cr4(),
        cpu::rdmsr(cpu::MSR_EFER)
    );
    crate::console::panic::write_backtrace(&mut out, f.rbp);
}
