//! What a domain reaches of the machine's devices. Started as dom0 (with
//! QEMU's `edu` device present): PCI configuration through ports
//! 0xCF8/0xCFC reaches the devices, but the MSI capability and BARs moved
//! over RAM are the hypervisor's; a BAR's registers are mapped at their
//! own address while memory decoding is on, and follow the BAR when it
//! moves; the ports of devices the hypervisor
//! keeps (COM1, the PIT, the reset register) answer nothing, the others
//! (the CMOS RTC) reach the hardware; physdev_op is let in; its RAM is
//! mapped 1:1, so edu's DMA engine, given a guest-physical address,
//! copies exactly the page the guest wrote; and a grant it maps (from the
//! domU named by `granter=`, reference `gref=`) reports the granted
//! page's machine address, which edu can DMA into; edu's MSI, mapped to a
//! pirq and bound to an event channel, arrives as events, one per
//! interrupt the device raises; an NVMe controller's admin completion
//! arrives through an MSI-X entry mapped the same way. Started as a domU: no
//! PCI, no device port, physdev_op refused with -EPERM; with `port=` it
//! then waits on that static channel until dom0 is done with its grant,
//! and checks the bytes dom0's device wrote into its page (`grant_gfn=`).

#![no_std]
#![no_main]

use test_guests::xen::{self, Args, holds};
use test_guests::*;
use xen_abi::errno::*;
use xen_abi::start_info::SIF_PRIVILEGED;

fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port input changes only the register.
    unsafe { core::arch::asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack)) };
    v
}
fn outb(port: u16, v: u8) {
    // SAFETY: port output to a port the test names; no memory is touched.
    unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack)) };
}
fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as in `inb`.
    unsafe { core::arch::asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack)) };
    v
}
fn outl(port: u16, v: u32) {
    // SAFETY: as in `outb`.
    unsafe { core::arch::asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack)) };
}

fn cfg_read(dev: u8, reg: u16) -> u32 {
    outl(0xcf8, 0x8000_0000 | (dev as u32) << 11 | reg as u32 & 0xfc);
    inl(0xcfc)
}
fn cfg_write(dev: u8, reg: u16, v: u32) {
    outl(0xcf8, 0x8000_0000 | (dev as u32) << 11 | reg as u32 & 0xfc);
    outl(0xcfc, v);
}

fn physdev_op(cmd: u64) -> i64 {
    let mut arg = [0u8; 64];
    // SAFETY: a zeroed 64-byte argument, larger than any physdev struct.
    unsafe { hypercall(xen_abi::hypercall::PHYSDEV_OP, cmd, arg.as_mut_ptr() as u64, 0, 0, 0) }
}

const PHYSDEVOP_MAP_PIRQ: u64 = 13;
const PHYSDEVOP_EOI: u64 = 12;
const EDU: u32 = 0x11e8_1234;
/// edu's identification register (BAR0 + 0): 0xRRrr00ed.
const EDU_ID_LOW: u32 = 0xed;

fn mmio_read(addr: u64) -> u32 {
    // SAFETY: an address in the 4 GiB the entry code maps; device memory
    // or a hole (all ones), which a read does not change.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}
fn mmio_write(addr: u64, v: u32) {
    // SAFETY: edu's liveness register, which only keeps what is written.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) };
}

const DMA_BYTES: usize = 2048;

/// edu's DMA engine (QEMU docs/specs/edu.txt): source, destination,
/// count, command (bit 0 start, bit 1 edu-to-RAM); its 4 KiB buffer at
/// device address 0x40000; RAM addresses below 256 MiB.
fn edu_dma(bar: u64, src: u64, dst: u64, to_ram: bool) -> bool {
    let w64 = |off: u64, v: u64| {
        mmio_write(bar + off, v as u32);
        mmio_write(bar + off + 4, (v >> 32) as u32);
    };
    w64(0x80, src);
    w64(0x88, dst);
    // Less than the whole buffer: QEMU 7.2's range check refuses a
    // transfer that ends exactly at the buffer's end (and stops QEMU).
    w64(0x90, DMA_BYTES as u64);
    mmio_write(bar + 0x98, 1 | if to_ram { 2 } else { 0 });
    // The device finishes after 100 ms of virtual time; give it some
    // seconds of TSC (a few GHz at most).
    let start = rdtsc();
    while mmio_read(bar + 0x98) & 1 != 0 {
        if rdtsc() - start > 20_000_000_000 {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Two RAM pages below 256 MiB far from the image (the last two of the
/// highest RAM range there that ends above 4 MiB).
fn dma_pages(si_paddr: u64) -> Option<(u64, u64)> {
    let end = memmap(start_info(si_paddr))
        .iter()
        .filter(|e| e.kind == 1)
        .map(|e| (e.addr + e.size).min(0x1000_0000))
        .filter(|&end| end >= 0x40_0000)
        .max()?;
    Some((end - 0x2000, end - 0x1000))
}

fn dma_through_ram(c: &mut Checks, bar: u64, command: u32, dev: u8, si_paddr: u64) {
    let Some((p, q)) = dma_pages(si_paddr) else {
        c.check("a RAM page below 256 MiB for edu's DMA", false);
        return;
    };
    println!("DMA from guest-physical {p:#x} to {q:#x} through edu");
    // SAFETY: two pages of this domain's RAM it uses for nothing else.
    let (pp, qp) = unsafe { (&mut *(p as *mut [u8; 4096]), &mut *(q as *mut [u8; 4096])) };
    for (i, b) in pp.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    qp.fill(0);
    cfg_write(dev, 0x04, command | 4); // bus mastering
    let ok = edu_dma(bar, p, 0x40000, false) && edu_dma(bar, 0x40000, q, true);
    c.check("edu's DMA engine finished", ok);
    c.check(
        "a page DMA'd at its guest-physical address comes back whole (RAM is 1:1)",
        qp[..DMA_BYTES].iter().enumerate().all(|(i, b)| *b == (i * 7 + 3) as u8)
            && qp[DMA_BYTES..].iter().all(|b| *b == 0),
    );
    // A page given back and populated again is 1:1 again: its machine
    // frame itself comes back, zeroed.
    let r = q - 0x2000;
    let mut list = [r >> 12];
    c.eq(
        "decrease_reservation gives a page back",
        xen::reservation(xen_abi::memory::XENMEM_DECREASE_RESERVATION, xen_abi::DOMID_SELF, &mut list, 0, 0),
        1,
    );
    c.eq(
        "populate_physmap takes it again",
        xen::reservation(xen_abi::memory::XENMEM_POPULATE_PHYSMAP, xen_abi::DOMID_SELF, &mut list, 0, 0),
        1,
    );
    c.check("edu's DMA into the repopulated page", edu_dma(bar, 0x40000, r, true));
    // SAFETY: the page just populated, this domain's RAM.
    let rp = unsafe { &*(r as *const [u8; 4096]) };
    c.check(
        "the repopulated page is still 1:1 (the device's bytes are there)",
        rp[..DMA_BYTES].iter().enumerate().all(|(i, b)| *b == (i * 7 + 3) as u8),
    );
    cfg_write(dev, 0x04, command);
}

/// Where dom0 maps the domU's grant: above the 256 MiB machine's RAM,
/// below the device hole.
const GRANT_MAP_GFN: u64 = 0x80000;
const GRANT_PATTERN: u8 = 0x5a;

/// Maps the domU's grant, checks its machine address, has edu write into
/// the granted page through that address, and tells the domU.
fn dma_into_grant(c: &mut Checks, bar: u64, command: u32, dev: u8, args: &Args, si_paddr: u64) {
    let (Some(granter), Some(gref), Some(port)) = (args.num("granter"), args.num("gref"), args.num("port")) else {
        return;
    };
    let mut m = [xen::map_op(granter as u16, gref as u32, GRANT_MAP_GFN, xen_abi::grant_table::GNTMAP_HOST_MAP)];
    let rc = xen::grant_table_op(xen_abi::grant_table::GNTTABOP_MAP_GRANT_REF, &mut m);
    c.eq("dom0 maps the domU's grant", rc * 1000 + m[0].status as i64, 0);
    let machine = m[0].dev_bus_addr;
    println!("the grant's machine address: {machine:#x}");
    c.check("the map reports a page-aligned machine address", machine != 0 && machine & 0xfff == 0);
    // A page of dom0's own RAM full of the pattern, DMA'd into the
    // granted page at its machine address.
    let Some((p, _)) = dma_pages(si_paddr) else { return };
    // SAFETY: a page of this domain's RAM it uses for nothing else.
    unsafe { core::ptr::write_bytes(p as *mut u8, GRANT_PATTERN, 4096) };
    cfg_write(dev, 0x04, command | 4);
    let ok = edu_dma(bar, p, 0x40000, false) && edu_dma(bar, 0x40000, machine, true);
    cfg_write(dev, 0x04, command);
    c.check("edu wrote the granted page at its machine address", ok);
    // SAFETY: the granted page, mapped at GRANT_MAP_GFN just above.
    let seen = unsafe { core::ptr::read_volatile((GRANT_MAP_GFN << 12) as *const u8) };
    c.eq("dom0 sees the device's bytes through its mapping", seen as i64, GRANT_PATTERN as i64);
    let (rc, st) = xen::unmap_grant(GRANT_MAP_GFN, m[0].handle);
    c.eq("dom0 unmaps the grant", rc * 1000 + st as i64, 0);
    c.eq("dom0 tells the domU", xen::send(port as u32), 0);
}

fn physdev<T: xen_abi::Pod>(cmd: u64, arg: &mut T) -> i64 {
    // SAFETY: `arg` is the structure `cmd` takes, writable.
    unsafe { hypercall(xen_abi::hypercall::PHYSDEV_OP, cmd, arg as *mut T as u64, 0, 0, 0) }
}

/// edu's MSI as a pirq on an event channel: each interrupt edu raises
/// (its register 0x60) is one event; unbinding and unmapping turn it off.
/// map_pirq's argument for function `dev` of bus 0: its MSI, or (with a
/// `table_base`) entry `entry_nr` of its MSI-X table; any pirq.
fn map_pirq_arg(dev: u8, entry_nr: i32, table_base: u64) -> xen_abi::physdev::MapPirq {
    xen_abi::physdev::MapPirq {
        domid: xen_abi::DOMID_SELF,
        kind: xen_abi::physdev::MAP_PIRQ_TYPE_MSI,
        index: -1,
        pirq: -1,
        bus: 0,
        devfn: (dev as i32) << 3,
        entry_nr,
        table_base,
        ..Default::default()
    }
}

fn msi_as_events(c: &mut Checks, bar: u64, dev: u8, msi: u16) {
    use xen_abi::physdev::*;
    let timer = xen::start(c, xen::Upcall::ApicVector);
    let _ = timer;
    let mut m = map_pirq_arg(dev, 1, 0);
    c.eq("map_pirq maps edu's MSI", physdev(PHYSDEVOP_MAP_PIRQ, &mut m), 0);
    let pirq = m.pirq;
    println!("edu's MSI is pirq {pirq}");
    c.check("a pirq was given", pirq >= 0);
    c.eq(
        "the hypervisor wrote the MSI address (a local APIC's)",
        (cfg_read(dev, msi + 4) & 0xfff0_0000) as i64,
        0xfee0_0000,
    );
    c.eq("MSI stays off until bound", ((cfg_read(dev, msi) >> 16) & 1) as i64, 0);
    let mut nodev = MapPirq { devfn: 31 << 3, ..m };
    nodev.pirq = -1;
    c.eq("no function at 00:1f.0: -ENODEV", physdev(PHYSDEVOP_MAP_PIRQ, &mut nodev), -ENODEV);
    let mut stray = xen_abi::event_channel::BindPirq { pirq: 999, flags: 0, port: 0 };
    c.eq(
        "bind_pirq of a pirq not mapped: -EINVAL",
        xen::evtchn_op(xen_abi::event_channel::EVTCHNOP_BIND_PIRQ, &mut stray),
        -EINVAL,
    );
    let mut big = MapPirq { pirq: 5000, ..m };
    c.eq("map_pirq asking for a pirq out of range: -EINVAL", physdev(PHYSDEVOP_MAP_PIRQ, &mut big), -EINVAL);
    let mut b = xen_abi::event_channel::BindPirq { pirq: pirq as u32, flags: 0, port: 0 };
    c.eq("bind_pirq gives a port", xen::evtchn_op(xen_abi::event_channel::EVTCHNOP_BIND_PIRQ, &mut b), 0);
    let mut again = xen_abi::event_channel::BindPirq { pirq: pirq as u32, flags: 0, port: 0 };
    c.eq("bind_pirq twice: -EBUSY", xen::evtchn_op(xen_abi::event_channel::EVTCHNOP_BIND_PIRQ, &mut again), -EBUSY);
    let port = b.port;
    c.eq("MSI is on once bound", ((cfg_read(dev, msi) >> 16) & 1) as i64, 1);
    let mut q = IrqStatusQuery { irq: pirq as u32, flags: 0xff };
    c.eq("irq_status_query answers", physdev(PHYSDEVOP_IRQ_STATUS_QUERY, &mut q), 0);
    c.eq("an MSI needs no EOI", q.flags as i64, 0);
    // Three interrupts, each acknowledged at the device before the next.
    // An MSI is a write by the device: bus mastering on.
    let command = cfg_read(dev, 0x04) & 0xffff;
    cfg_write(dev, 0x04, command | 4);
    for i in 1..=3u32 {
        mmio_write(bar + 0x60, 1 << i);
        let got = xen::wait_until(xen::after_ms(2000), || xen::events(port) >= i);
        c.check("an event for each interrupt edu raises", got);
        c.eq("edu's interrupt status says which", mmio_read(bar + 0x24) as i64, 1 << i);
        mmio_write(bar + 0x64, 1 << i);
        let mut e = PhysdevEoi { irq: pirq as u32 };
        c.eq("eoi of an MSI pirq", physdev(PHYSDEVOP_EOI, &mut e), 0);
    }
    c.eq("events counted", xen::events(port) as i64, 3);
    let mut u = UnmapPirq { domid: xen_abi::DOMID_SELF, pirq, ..Default::default() };
    c.eq("unmap while bound: -EBUSY", physdev(PHYSDEVOP_UNMAP_PIRQ, &mut u), -EBUSY);
    c.eq("close the port", xen::close(port), 0);
    c.eq("MSI is off once unbound", ((cfg_read(dev, msi) >> 16) & 1) as i64, 0);
    c.eq("unmap_pirq", physdev(PHYSDEVOP_UNMAP_PIRQ, &mut u), 0);
    // An interrupt raised now reaches nobody.
    mmio_write(bar + 0x60, 1);
    mmio_write(bar + 0x64, 1);
    cfg_write(dev, 0x04, command);
}

fn find_class(class: u32) -> Option<u8> {
    (0..32).find(|&d| cfg_read(d, 0) & 0xffff != 0xffff && cfg_read(d, 0x08) >> 8 == class)
}

fn find_cap(dev: u8, id: u8) -> Option<u16> {
    let mut at = (cfg_read(dev, 0x34) & 0xfc) as u16;
    for _ in 0..48 {
        if at < 0x40 {
            return None;
        }
        let head = cfg_read(dev, at);
        if head as u8 == id {
            return Some(at);
        }
        at = ((head >> 8) & 0xfc) as u16;
    }
    None
}

/// An NVMe controller's Identify Controller on its admin queues, its
/// completion announced by MSI-X entry 0 as a pirq on an event channel;
/// the queues and the data in dom0's 1:1 RAM.
fn nvme_identify_by_msix(c: &mut Checks, si_paddr: u64) {
    use xen_abi::physdev::*;
    let Some(dev) = find_class(0x01_08_02) else {
        c.check("an NVMe controller on bus 0", false);
        return;
    };
    let bar = ((cfg_read(dev, 0x14) as u64) << 32) | (cfg_read(dev, 0x10) & !0xf) as u64;
    let Some(cap) = find_cap(dev, 0x11) else {
        c.check("the NVMe controller has MSI-X", false);
        return;
    };
    let table = cfg_read(dev, cap + 4);
    let bir = (table & 7) as u16;
    let table_base = ((cfg_read(dev, 0x14 + 4 * bir) as u64) << 32 * (bir == 0) as u64)
        | (cfg_read(dev, 0x10 + 4 * bir) & !0xf) as u64;
    println!(
        "NVMe at 00:{dev:02x}.0, registers at {bar:#x}, MSI-X table in BAR{bir} at {table_base:#x} + {:#x}",
        table & !7
    );
    let mut m = map_pirq_arg(dev, 0, table_base);
    c.eq("map_pirq maps MSI-X entry 0", physdev(PHYSDEVOP_MAP_PIRQ, &mut m), 0);
    let mut bad = MapPirq { table_base: table_base + 0x1000, pirq: -1, entry_nr: 1, ..m };
    c.eq("a table_base that is not the BAR's: -EINVAL", physdev(PHYSDEVOP_MAP_PIRQ, &mut bad), -EINVAL);
    c.eq("MSI-X is on (entries masked)", ((cfg_read(dev, cap) >> 31) & 1) as i64, 1);
    let mut b = xen_abi::event_channel::BindPirq { pirq: m.pirq as u32, flags: 0, port: 0 };
    c.eq("bind_pirq of the MSI-X pirq", xen::evtchn_op(xen_abi::event_channel::EVTCHNOP_BIND_PIRQ, &mut b), 0);
    let port = b.port;
    // Three pages of RAM: submission queue, completion queue, data.
    let Some((p, _)) = dma_pages(si_paddr) else { return };
    let (sq, cq, data) = (p - 0x8000, p - 0x7000, p - 0x6000);
    for pg in [sq, cq, data] {
        // SAFETY: pages of this domain's RAM it uses for nothing else.
        unsafe { core::ptr::write_bytes(pg as *mut u8, 0, 4096) };
    }
    let command = cfg_read(dev, 0x04) & 0xffff;
    cfg_write(dev, 0x04, command | 4 | 2);
    let r32 = |off: u64| mmio_read(bar + off);
    let w64 = |off: u64, v: u64| {
        mmio_write(bar + off, v as u32);
        mmio_write(bar + off + 4, (v >> 32) as u32);
    };
    let stride = 4u64 << ((r32(0x04) & 0xf) as u64);
    let ready = |want: u32| {
        let start = rdtsc();
        while r32(0x1c) & 1 != want {
            if rdtsc() - start > 20_000_000_000 {
                return false;
            }
        }
        true
    };
    mmio_write(bar + 0x14, 0);
    c.check("the controller stops", ready(0));
    mmio_write(bar + 0x24, 1 << 16 | 1);
    w64(0x28, sq);
    w64(0x30, cq);
    mmio_write(bar + 0x14, 1 | 6 << 16 | 4 << 20);
    c.check("the controller starts", ready(1));
    // Identify Controller, command id 0x1234, data into `data`.
    // SAFETY: the submission queue page, 64-byte entry 0.
    unsafe {
        let e = sq as *mut u32;
        core::ptr::write_volatile(e, 0x06 | 0x1234 << 16);
        core::ptr::write_volatile(e.add(6), data as u32);
        core::ptr::write_volatile(e.add(7), (data >> 32) as u32);
        core::ptr::write_volatile(e.add(10), 1);
    }
    mmio_write(bar + 0x1000, 1);
    let got = xen::wait_until(xen::after_ms(2000), || xen::events(port) >= 1);
    c.check("the completion arrives as an event (MSI-X)", got);
    // SAFETY: completion queue entry 0, written by the controller.
    let dw3 = unsafe { core::ptr::read_volatile((cq + 12) as *const u32) };
    c.eq("the completion is for our command, phase 1, success", dw3 as i64, (0x1234 | 1 << 16) as i64);
    // SAFETY: the Identify data page, written by the controller.
    let serial = unsafe { core::slice::from_raw_parts((data + 4) as *const u8, 8) };
    c.check("Identify names the controller's serial", serial == b"msixtest");
    mmio_write(bar + 0x1000 + stride, 1);
    c.eq("close the MSI-X pirq's port", xen::close(port), 0);
    let mut u = UnmapPirq { domid: xen_abi::DOMID_SELF, pirq: m.pirq, ..Default::default() };
    c.eq("unmap the MSI-X pirq", physdev(PHYSDEVOP_UNMAP_PIRQ, &mut u), 0);
    c.eq("MSI-X off with its last pirq", ((cfg_read(dev, cap) >> 31) & 1) as i64, 0);
    mmio_write(bar + 0x14, 0);
    cfg_write(dev, 0x04, command);
}

/// dom0's ports: the configuration address port as Xen keeps it, the
/// CMOS RTC reached (or, with `cmos=denied` after
/// `dom0_ioports_disable=70-71`, not), the hypervisor's devices not.
fn dom0_ports(c: &mut Checks, args: &Args) {
    // 0xCF8 holds a whole dword; a byte there reads all ones.
    outl(0xcf8, 0x8000_1234);
    c.eq("0xCF8 reads back what was written", inl(0xcf8) as i64, 0x8000_1234);
    c.eq("a byte of 0xCF8 reads 0xff", inb(0xcf8) as i64, 0xff);
    // Status register A has its divider set, never all ones.
    outb(0x70, 0x0a);
    let status_a = inb(0x71);
    if args.get("cmos") == Some("denied") {
        c.eq("dom0_ioports_disable takes the CMOS RTC away", status_a as i64, 0xff);
    } else {
        c.check("the CMOS RTC's ports reach the hardware", status_a != 0xff && status_a & 0x70 != 0);
    }
    c.eq("COM1's line status is the hypervisor's", inb(0x3fd) as i64, 0xff);
    c.eq("the PIT is the hypervisor's", inb(0x40) as i64, 0xff);
    c.eq("the reset register is the hypervisor's", inb(0xcf9) as i64, 0xff);
    c.eq("physdev_op is let in (eoi of a pirq it has not: -EINVAL)", physdev_op(PHYSDEVOP_EOI), -EINVAL);
}

fn as_dom0(c: &mut Checks, si_paddr: u64) {
    let args = Args::from_start_info(si_paddr);
    if args.get("only") == Some("ports") {
        dom0_ports(c, &args);
        return;
    }
    let Some(dev) = (0..32).find(|&d| cfg_read(d, 0) == EDU) else {
        c.check("the edu device is on bus 0", false);
        return;
    };
    println!("edu at 00:{dev:02x}.0");
    c.check("the edu device is on bus 0", true);
    // Its MSI capability (edu has one, and no MSI-X).
    let Some(msi) = find_cap(dev, 0x05) else {
        c.check("edu has an MSI capability", false);
        return;
    };
    let msi_cap = msi;
    let head = cfg_read(dev, msi);
    cfg_write(dev, msi, head | 1 << 16);
    c.eq("an MSI enable write is refused", cfg_read(dev, msi) as i64, head as i64);
    let addr = cfg_read(dev, msi + 4);
    cfg_write(dev, msi + 4, 0xfee0_0000);
    c.eq("an MSI address write is refused", cfg_read(dev, msi + 4) as i64, addr as i64);

    // BAR0's registers, where the firmware put them.
    let bar = cfg_read(dev, 0x10) & !0xf;
    let command = cfg_read(dev, 0x04) & 0xffff;
    c.check("the firmware left memory decoding on", command & 2 != 0);
    c.eq("edu's registers are mapped at their own address", (mmio_read(bar as u64) & 0xff) as i64, EDU_ID_LOW as i64);
    mmio_write(bar as u64 + 4, 0x1234_5678);
    c.eq("a write reaches the device (liveness: inverted)", mmio_read(bar as u64 + 4) as i64, !0x1234_5678u32 as i64);
    // Decoding off: the registers are gone from dom0's memory.
    cfg_write(dev, 0x04, command & !2);
    c.eq("decoding off unmaps them", mmio_read(bar as u64) as i64, 0xffff_ffff);
    // Moved with decoding on: they follow.
    cfg_write(dev, 0x10, 0xe000_0000);
    cfg_write(dev, 0x04, command);
    c.eq("a moved BAR's registers are at the new address", (mmio_read(0xe000_0000) & 0xff) as i64, EDU_ID_LOW as i64);
    c.eq("and gone from the old one", mmio_read(bar as u64) as i64, 0xffff_ffff);
    cfg_write(dev, 0x04, command & !2);
    cfg_write(dev, 0x10, bar);
    cfg_write(dev, 0x04, command);
    c.eq("back where they were", (mmio_read(bar as u64) & 0xff) as i64, EDU_ID_LOW as i64);
    dma_through_ram(c, bar as u64, command, dev, si_paddr);
    dma_into_grant(c, bar as u64, command, dev, &Args::from_start_info(si_paddr), si_paddr);
    msi_as_events(c, bar as u64, dev, msi_cap);
    nvme_identify_by_msix(c, si_paddr);

    // BAR0 (1 MiB of registers), with memory decoding off meanwhile.
    cfg_write(dev, 0x04, command & !2);
    let bar = cfg_read(dev, 0x10);
    cfg_write(dev, 0x10, u32::MAX);
    c.eq("sizing BAR0 reads its size back", cfg_read(dev, 0x10) as i64, 0xfff0_0000);
    cfg_write(dev, 0x10, 0x0010_0000);
    c.eq("BAR0 moved over RAM is refused", cfg_read(dev, 0x10) as i64, 0xfff0_0000);
    cfg_write(dev, 0x10, 0xe000_0000);
    c.eq("BAR0 moved to free space moves", cfg_read(dev, 0x10) as i64, 0xe000_0000);
    cfg_write(dev, 0x10, bar);
    c.eq("BAR0 is put back", cfg_read(dev, 0x10) as i64, bar as i64);
    cfg_write(dev, 0x04, command);
    dom0_ports(c, &args);
}

fn as_domu(c: &mut Checks, args: &Args) {
    c.eq("physdev_op map_pirq is refused", physdev_op(PHYSDEVOP_MAP_PIRQ), -EPERM);
    c.eq("physdev_op eoi is refused", physdev_op(PHYSDEVOP_EOI), -EPERM);
    c.eq("no PCI function answers", cfg_read(0, 0) as i64, 0xffff_ffff);
    outb(0x70, 0x0a);
    c.eq("the CMOS RTC is out of reach", inb(0x71) as i64, 0xff);
    if let (Some(port), Some(gfn)) = (args.num("port"), args.num("grant_gfn")) {
        // Until dom0 has written our granted page through its device.
        c.eq("dom0 says it is done with the grant", xen::poll(&[port as u32], 0), 0);
        c.check("dom0's device wrote our granted page", holds(gfn, 0..DMA_BYTES, |_| GRANT_PATTERN));
    }
}

#[unsafe(no_mangle)]
extern "C" fn pvh_main(si_paddr: u64) -> ! {
    let dom0 = start_info(si_paddr).flags & SIF_PRIVILEGED != 0;
    println!("devices: started as {}", if dom0 { "dom0" } else { "a domU" });
    let mut c = Checks::new();
    if dom0 {
        as_dom0(&mut c, si_paddr)
    } else {
        as_domu(&mut c, &Args::from_start_info(si_paddr))
    }
    c.finish()
}
