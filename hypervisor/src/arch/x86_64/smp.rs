//! Starting the other CPUs (application processors) and stopping them.
//!
//! Each CPU the MADT lists as enabled gets INIT, then STARTUP (twice if it
//! does not answer), and begins in real mode in a trampoline copied below
//! 1 MiB. The trampoline enters protected mode, then long mode on a small
//! page table of its own (the low 2 MiB identity-mapped for itself, the
//! hypervisor's upper half shared), and jumps to `ap_entry64` in the
//! hypervisor image, which switches to the real page tables and the CPU's
//! own stack and calls [`ap_main`]. CPUs are started one at a time; one
//! that does not come up within a second is reported and left out.

use super::cpu;
use super::lapic;
use super::percpu::{self};
use crate::mm::phys::{alloc_cpu_stack, phys_to_virt};
use crate::mm::ranges::Range;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Pages the trampoline needs below 1 MiB: code and data, then the PML4,
/// PDPT and page directory of its temporary page table.
pub const TRAMPOLINE_PAGES: u64 = 4;

// Offsets in the trampoline's data block (`ap_tramp_data`).
const D_GDT_PTR_BASE: usize = 34;
const D_PM_PTR: usize = 40;
const D_LM_PTR: usize = 48;
const D_CR3: usize = 56;
const D_EFER: usize = 60;
const D_ENTRY: usize = 64;
const D_REAL_CR3: usize = 72;
const D_STACK: usize = 80;
const D_CPU: usize = 88;
const D_ALIVE: usize = 96;
const D_CR4: usize = 104;

core::arch::global_asm!(
    r#"
    .pushsection .rodata.ap_trampoline, "a"
    .balign 16
    .global ap_trampoline_start
ap_trampoline_start:
    .code16
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    movzwl %ax, %ebx
    shll $4, %ebx                               /* EBX = trampoline base */
    lgdtl (ap_tramp_data + 32 - ap_trampoline_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl *(ap_tramp_data + 40 - ap_trampoline_start)

    .code32
    .global ap_tramp_pm
ap_tramp_pm:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov (ap_tramp_data + 104 - ap_trampoline_start)(%ebx), %eax
    mov %eax, %cr4                              /* PAE and the rest */
    mov (ap_tramp_data + 56 - ap_trampoline_start)(%ebx), %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or (ap_tramp_data + 60 - ap_trampoline_start)(%ebx), %eax
    wrmsr                                       /* LME, NXE */
    mov %cr0, %eax
    or $0x80010001, %eax                        /* PG, WP, PE */
    mov %eax, %cr0
    ljmpl *(ap_tramp_data + 48 - ap_trampoline_start)(%ebx)

    .code64
    .global ap_tramp_lm
ap_tramp_lm:
    movl %ebx, %ebx                             /* upper half undefined */
    mov (ap_tramp_data + 64 - ap_trampoline_start)(%rbx), %rax
    jmp *%rax

    .balign 64
    .global ap_tramp_data
ap_tramp_data:
    .quad 0
    .quad 0x00cf9a000000ffff                    /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff                    /* 0x10: data */
    .quad 0x00af9a000000ffff                    /* 0x18: 64-bit code */
    .word 31                                    /* +32 GDT pointer: limit */
    .long 0                                     /* +34 base */
    .word 0
    .long 0                                     /* +40 protected-mode entry */
    .word 0x08, 0
    .long 0                                     /* +48 long-mode entry */
    .word 0x18, 0
    .long 0                                     /* +56 temporary CR3 */
    .long 0                                     /* +60 EFER bits */
    .quad 0                                     /* +64 ap_entry64 */
    .quad 0                                     /* +72 real CR3 */
    .quad 0                                     /* +80 stack top */
    .quad 0                                     /* +88 CPU index */
    .quad 0                                     /* +96 alive */
    .quad 0                                     /* +104 CR4 */
    .global ap_trampoline_end
ap_trampoline_end:
    .popsection

    .pushsection .text.ap_entry64, "ax"
    .global ap_entry64
ap_entry64:
    mov (ap_tramp_data + 72 - ap_trampoline_start)(%rbx), %rax
    mov (ap_tramp_data + 80 - ap_trampoline_start)(%rbx), %rsp
    mov (ap_tramp_data + 88 - ap_trampoline_start)(%rbx), %rdi
    mov %rax, %cr3
    xor %ebp, %ebp
    call {main}
    ud2
    .popsection
"#,
    main = sym ap_main,
    options(att_syntax)
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_tramp_data: u8;
    static ap_tramp_pm: u8;
    static ap_tramp_lm: u8;
    fn ap_entry64();
}

static TRAMPOLINE: AtomicU64 = AtomicU64::new(0);
/// Set once a CPU has finished its own set-up.
static STARTED: AtomicBool = AtomicBool::new(false);
/// What every started CPU runs when it is ready (the scheduler's loop).
static AP_WORK: spin::Once<fn(u32) -> !> = spin::Once::new();

/// Picks `TRAMPOLINE_PAGES` pages of RAM below 1 MiB that nothing else
/// uses; `ram` lists the RAM ranges below 1 MiB, `avoid` what to keep out.
pub fn choose_trampoline(ram: &[Range], avoid: &[Range]) -> Option<u64> {
    let len = TRAMPOLINE_PAGES << 12;
    for r in ram {
        let mut at = r.start.max(0x1000).next_multiple_of(0x1000);
        while at + len <= r.end.min(0xa_0000) {
            let cand = Range::from_len(at, len);
            if !avoid.iter().any(|a| a.overlaps(&cand)) {
                return Some(at);
            }
            at += 0x1000;
        }
    }
    None
}

pub fn set_trampoline(phys: u64) {
    TRAMPOLINE.store(phys, Ordering::Relaxed);
}

/// The boot CPU is online from the start.
pub fn init_bsp() {
    percpu::mark_online(0);
}

fn tramp_data(base: u64) -> *mut u8 {
    let off = (&raw const ap_tramp_data) as u64 - (&raw const ap_trampoline_start) as u64;
    phys_to_virt(base + off).map_or(core::ptr::null_mut(), |v| v as *mut u8)
}

fn put<T: Copy>(data: *mut u8, off: usize, v: T) {
    // SAFETY: `data` is the trampoline's data block in low memory, which
    // only the boot CPU writes while no other CPU runs the trampoline.
    unsafe { core::ptr::write_unaligned(data.add(off) as *mut T, v) };
}

fn get_u64(data: *mut u8, off: usize) -> u64 {
    // SAFETY: as in put; the starting CPU writes `alive` concurrently,
    // hence the volatile read.
    unsafe { core::ptr::read_volatile(data.add(off) as *const u64) }
}

/// Copies the trampoline and builds its page table; returns false if
/// there is no trampoline memory.
fn prepare(base: u64) -> bool {
    let Some(dst) = phys_to_virt(base) else { return false };
    // The symbols bound the trampoline blob in the image.
    let (start, end) = ((&raw const ap_trampoline_start) as u64, (&raw const ap_trampoline_end) as u64);
    let len = (end - start) as usize;
    if len > 4096 {
        return false;
    }
    // SAFETY: copies the blob into the low page reserved for it.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, dst as *mut u8, len) };
    let data = tramp_data(base);
    let (pm, lm, data_off) = (
        (&raw const ap_tramp_pm) as u64 - start,
        (&raw const ap_tramp_lm) as u64 - start,
        (&raw const ap_tramp_data) as u64 - start,
    );
    put(data, D_GDT_PTR_BASE, (base + data_off) as u32);
    put(data, D_PM_PTR, (base + pm) as u32);
    put(data, D_LM_PTR, (base + lm) as u32);
    // Temporary page table: PML4 -> PDPT -> PD with one 2 MiB identity
    // page for the trampoline; the upper half is the hypervisor's.
    let (pml4, pdpt, pd) = (base + 0x1000, base + 0x2000, base + 0x3000);
    let table = |p: u64| phys_to_virt(p).map(|v| v as *mut u64);
    let (Some(t4), Some(t3), Some(t2)) = (table(pml4), table(pdpt), table(pd)) else { return false };
    let real = cpu::read_cr3() & !0xfff;
    let Some(real4) = table(real) else { return false };
    // SAFETY: four low pages reserved for the trampoline; the real PML4 is
    // direct-mapped and only read.
    unsafe {
        core::ptr::write_bytes(t4, 0, 512);
        core::ptr::write_bytes(t3, 0, 512);
        core::ptr::write_bytes(t2, 0, 512);
        *t4 = pdpt | 3;
        *t3 = pd | 3;
        *t2 = 0x83; // 2 MiB page at 0, present, writable
        for i in 256..512 {
            *t4.add(i) = *real4.add(i);
        }
    }
    put(data, D_CR3, pml4 as u32);
    let nxe = if cpu::features().nx { 1u32 << 11 } else { 0 };
    put(data, D_EFER, (1u32 << 8) | nxe);
    put(data, D_ENTRY, ap_entry64 as *const () as u64);
    put(data, D_REAL_CR3, cpu::read_cr3());
    // The boot CPU's CR4 without VMXE (the new CPU's VT-x set-up adds it).
    put(data, D_CR4, cpu::read_cr4() & !(1 << 13));
    true
}

/// Why a CPU did not start.
#[derive(Debug, Clone, Copy)]
pub enum StartError {
    NoTrampoline,
    NoMemory,
    NoAnswer,
    NoSetup,
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            StartError::NoTrampoline => "no free memory below 1 MiB for the start-up trampoline",
            StartError::NoMemory => "no memory for its stack",
            StartError::NoAnswer => "it did not answer INIT and STARTUP",
            StartError::NoSetup => "it started but did not finish its set-up",
        })
    }
}

/// Starts CPU `index` with APIC id `apic_id`; it runs `work` when ready.
pub fn start_cpu(index: u32, apic_id: u32, work: fn(u32) -> !) -> Result<(), StartError> {
    AP_WORK.call_once(|| work);
    let base = TRAMPOLINE.load(Ordering::Relaxed);
    if base == 0 || !prepare(base) {
        return Err(StartError::NoTrampoline);
    }
    let (bottom, top) = alloc_cpu_stack(index).map_err(|_| StartError::NoMemory)?;
    let p = percpu::create(index, apic_id);
    p.stack.0.store(bottom, Ordering::Relaxed);
    p.stack.1.store(top, Ordering::Relaxed);
    let data = tramp_data(base);
    put(data, D_STACK, top);
    put(data, D_CPU, index as u64);
    put(data, D_ALIVE, 0u64);
    STARTED.store(false, Ordering::Release);
    let page = (base >> 12) as u8;
    lapic::send_init(apic_id);
    crate::time::delay_us(10_000);
    lapic::send_startup(apic_id, page);
    crate::time::delay_us(200);
    if get_u64(data, D_ALIVE) == 0 {
        lapic::send_startup(apic_id, page);
    }
    let waited = |us: u64, cond: &dyn Fn() -> bool| {
        for _ in 0..us / 100 {
            if cond() {
                return true;
            }
            crate::time::delay_us(100);
        }
        cond()
    };
    if !waited(1_000_000, &|| get_u64(data, D_ALIVE) != 0) {
        return Err(StartError::NoAnswer);
    }
    if !waited(1_000_000, &|| STARTED.load(Ordering::Acquire)) {
        return Err(StartError::NoSetup);
    }
    Ok(())
}

/// The first Rust code of a started CPU (on its own stack, real page
/// tables, interrupts off).
extern "C" fn ap_main(index: u64) -> ! {
    let index = index as u32;
    let base = TRAMPOLINE.load(Ordering::Relaxed);
    // Tell the boot CPU the trampoline is no longer needed.
    put(tramp_data(base), D_ALIVE, 1u64);
    let Some(p) = percpu::get(index as usize) else { cpu::halt_forever() };
    super::gdt::init_ap(p);
    // Loading the segment registers cleared the GS base: set it now.
    percpu::enter(p);
    super::traps::load();
    ap_setup();
    percpu::mark_online(index);
    STARTED.store(true, Ordering::Release);
    match AP_WORK.get() {
        Some(work) => work(index),
        None => cpu::halt_forever(),
    }
}

fn ap_setup() {
    super::fpu::init();
    lapic::init_this_cpu();
}
