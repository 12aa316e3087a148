//! Global descriptor table and task-state segment.
//!
//! The TSS exists for its interrupt stack table: a double fault, an NMI or a
//! machine check each switch to a stack of their own, so they are reported
//! even when the current stack is the problem (a stack overflow into the
//! guard page faults again on every push, which only a fresh stack survives).

use core::sync::atomic::Ordering;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, FS, GS, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

pub const IST_DOUBLE_FAULT: u16 = 1;
pub const IST_NMI: u16 = 2;
pub const IST_MACHINE_CHECK: u16 = 3;

const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct Stack([u8; IST_STACK_SIZE]);

static mut IST_STACKS: [Stack; 3] = [const { Stack([0; IST_STACK_SIZE]) }; 3];
static mut TSS: TaskStateSegment = TaskStateSegment::new();
static mut GDT: GlobalDescriptorTable = GlobalDescriptorTable::new();

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const TSS_SELECTOR: u16 = 0x18;

/// Where this CPU's TSS is (for VMX host state).
pub fn tss_base() -> u64 {
    match super::percpu::this_cpu().map(|p| p.tss_base.load(Ordering::Relaxed)) {
        Some(t) if t != 0 => t,
        _ => (&raw const TSS) as u64,
    }
}

/// The GDT's and IDT's base addresses, as loaded on this CPU.
pub fn table_bases() -> (u64, u64) {
    let gdt = x86_64::instructions::tables::sgdt();
    let idt = x86_64::instructions::tables::sidt();
    (gdt.base.as_u64(), idt.base.as_u64())
}

/// The address range of this CPU's IST stacks, for stack walks.
pub fn ist_stack_bounds() -> (u64, u64) {
    if let Some(p) = super::percpu::this_cpu() {
        let (s, e) = (p.ist_stacks.0.load(Ordering::Relaxed), p.ist_stacks.1.load(Ordering::Relaxed));
        if s != 0 {
            return (s, e);
        }
    }
    let start = (&raw const IST_STACKS) as u64;
    (start, start + 3 * IST_STACK_SIZE as u64)
}

/// Another CPU's GDT, TSS and interrupt stacks.
struct CpuTables {
    gdt: GlobalDescriptorTable,
    tss: TaskStateSegment,
    ist: [Stack; 3],
}

/// Builds and loads the GDT and TSS of a starting CPU (the same layout as
/// the boot CPU's), recording them in its per-CPU data.
pub fn init_ap(p: &super::percpu::PerCpu) {
    let t: &'static mut CpuTables = alloc::boxed::Box::leak(alloc::boxed::Box::new(CpuTables {
        gdt: GlobalDescriptorTable::new(),
        tss: TaskStateSegment::new(),
        ist: [const { Stack([0; IST_STACK_SIZE]) }; 3],
    }));
    for (i, slot) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK].into_iter().enumerate() {
        let top = (&raw const t.ist[i]) as u64 + IST_STACK_SIZE as u64;
        t.tss.interrupt_stack_table[slot as usize - 1] = VirtAddr::new(top);
    }
    let ist_start = (&raw const t.ist) as u64;
    p.ist_stacks.0.store(ist_start, Ordering::Relaxed);
    p.ist_stacks.1.store(ist_start + 3 * IST_STACK_SIZE as u64, Ordering::Relaxed);
    p.tss_base.store((&raw const t.tss) as u64, Ordering::Relaxed);
    let tss: &'static TaskStateSegment = &t.tss;
    let cs = t.gdt.append(Descriptor::kernel_code_segment());
    let ds = t.gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = t.gdt.append(Descriptor::tss_segment(tss));
    debug_assert_eq!((cs.0, ds.0, tss_sel.0), (KERNEL_CS, KERNEL_DS, TSS_SELECTOR));
    let gdt: &'static GlobalDescriptorTable = &t.gdt;
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded.
    unsafe {
        CS::set_reg(cs);
        DS::set_reg(ds);
        ES::set_reg(ds);
        SS::set_reg(ds);
        FS::set_reg(SegmentSelector(0));
        GS::set_reg(SegmentSelector(0));
        load_tss(tss_sel);
    }
}

/// Loads the boot CPU's GDT and TSS and reloads every segment register.
pub fn init_bsp() {
    // SAFETY: runs once on the boot CPU with interrupts off, before anything
    // else uses these statics; afterwards the CPU only reads them.
    unsafe {
        let stacks = &raw mut IST_STACKS;
        let tss_ptr = &raw mut TSS;
        let tss = &mut *tss_ptr;
        for (i, slot) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK].into_iter().enumerate() {
            let top = (&raw mut (*stacks)[i]) as u64 + IST_STACK_SIZE as u64;
            tss.interrupt_stack_table[slot as usize - 1] = VirtAddr::new(top);
        }
        let gdt_ptr = &raw mut GDT;
        let gdt = &mut *gdt_ptr;
        let cs = gdt.append(Descriptor::kernel_code_segment());
        let ds = gdt.append(Descriptor::kernel_data_segment());
        let tss_sel = gdt.append(Descriptor::tss_segment(&*tss_ptr));
        debug_assert_eq!(cs.0, KERNEL_CS);
        debug_assert_eq!(ds.0, KERNEL_DS);
        debug_assert_eq!(tss_sel.0, TSS_SELECTOR);
        (*gdt_ptr).load();
        CS::set_reg(cs);
        DS::set_reg(ds);
        ES::set_reg(ds);
        SS::set_reg(ds);
        FS::set_reg(SegmentSelector(0));
        // Writing GS clears the GS base: per-CPU data is set up after this.
        GS::set_reg(SegmentSelector(0));
        load_tss(tss_sel);
    }
}
