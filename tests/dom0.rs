//! dom0 owns the machine's devices: it finds them on the PCI bus through
//! the configuration ports the hypervisor serves it, reaches their I/O
//! ports directly, and cannot take interrupt delivery or memory over
//! through them. Other domains reach none of it.

use integration_tests::{Boot, DOM0_READY, End, Machine, images};

/// QEMU devices dom0 must find: a NIC of each kind, a disk of each kind
/// (on null back ends: nothing is read yet), and `edu`, which has no
/// driver anywhere.
const DEVICES: &[&str] = &[
    "-device",
    "e1000e,netdev=n0",
    "-netdev",
    "user,id=n0",
    "-device",
    "virtio-net-pci,netdev=n1",
    "-netdev",
    "user,id=n1",
    "-blockdev",
    "driver=null-co,node-name=disk0,size=67108864",
    "-device",
    "virtio-blk-pci,drive=disk0",
    "-blockdev",
    "driver=null-co,node-name=disk1,size=67108864",
    "-device",
    "nvme,serial=dom0test,drive=disk1",
    "-device",
    "edu",
];

/// dom0 lists every function, with the ids, class and BAR sizes the
/// devices really have: read (and sized) through the hypervisor's
/// mediated configuration ports, so a hypervisor that answered all ones
/// or dropped the sizing writes would list nothing or no BAR.
#[test]
fn dom0_lists_the_machines_pci_functions() {
    let o = Boot::new("dom0_lists_pci", Machine::QemuBios)
        .module(images().dom0, "dom0")
        .qemu_devices(DEVICES)
        .stop_on(DOM0_READY)
        .run();
    o.expect_end(End::Saw(DOM0_READY.into()));
    let pci = |what: &str| format!("(d0) dom0-kernel-shim: pci {what}");
    o.expect(&pci("00:00.0 [0600] Host bridge: 8086:1237"))
        .expect(&pci("00:01.1 [0101] IDE interface: 8086:7010"))
        .expect("[0200] Ethernet controller: 8086:10d3 (rev 00) INTx MSI MSI-X")
        .expect("[0200] Ethernet controller: 1af4:1000")
        .expect("[0100] SCSI storage controller: 1af4:1001")
        .expect("[0108] Non-Volatile memory controller: 1b36:0010")
        .expect("[00ff] Unclassified device: 1234:11e8 (rev 10) INTx MSI")
        .expect("BAR0: memory 0xfea00000 (1 MiB, 32-bit)")
        .expect("(128 KiB, 32-bit)")
        .expect("(16 KiB, 64-bit)")
        .expect("(d0) dom0-kernel-shim: pci: 9 functions; no drivers yet, all left as found")
        .expect("dom0 devices: I/O ports in")
        .expect_absent(" refused: ");
    // The e1000e's BARs: two of 128 KiB, 32 ports, 16 KiB.
    let e1000e = o.line("Ethernet controller: 8086:10d3");
    let bdf = e1000e.split("pci ").nth(1).and_then(|s| s.split(' ').next()).unwrap_or("?");
    let bars = o.lines_containing(&format!("pci {bdf}   BAR"));
    assert_eq!(bars.len(), 4, "e1000e BARs: {bars:?}");
    assert!(bars[0].ends_with("BAR0: memory 0xfeb80000 (128 KiB, 32-bit)"), "{bars:?}");
    assert!(bars[2].contains("BAR2: I/O") && bars[2].ends_with("(32 ports)"), "{bars:?}");
}

/// A test guest started as dom0 tries to enable MSI on `edu`, move its
/// BAR over RAM and reach the hypervisor's ports: each is refused (and
/// reported), while a BAR moved to free space moves and the CMOS RTC is
/// reached; edu's DMA engine proves dom0's RAM 1:1 and writes a domU's
/// granted page at the machine address the grant map reported. The same
/// guest as a domU reaches no PCI function, no device port, and
/// physdev_op refuses it.
#[test]
fn dom0_cannot_take_interrupts_or_memory_through_pci() {
    let o = Boot::new("dom0_pci_mediation", Machine::QemuBios)
        .cmdline("dom0_mem=64M")
        .module(images().guest("devices"), "dom0 granter=1 gref=0 port=10")
        .guest(
            "devices",
            "name=domu memory=16 evtchn=10:Domain-0:10 grant=0:Domain-0:0x500 cmdline=\"port=10 grant_gfn=0x500\"",
        )
        .qemu_devices(&[
            "-device",
            "edu",
            "-blockdev",
            "driver=null-co,node-name=disk0,size=67108864",
            "-device",
            "nvme,serial=msixtest,drive=disk0",
        ])
        // edu's DMA reaches the first 256 MiB only.
        .memory(256)
        .run();
    o.expect_end(End::PoweredOff);
    o.expect("(d0) devices: started as dom0")
        .expect("(d1) devices: started as a domU")
        .expect_verdict_pass(0)
        .expect_verdict_pass(1)
        .expect("refused: MSI is the hypervisor's")
        .expect("refused: a memory BAR over RAM or the hypervisor's memory")
        .expect("(d0) PASS a page DMA'd at its guest-physical address comes back whole (RAM is 1:1)")
        .expect("(d0) PASS the repopulated page is still 1:1 (the device's bytes are there)")
        .expect("(d0) PASS edu wrote the granted page at its machine address")
        .expect("(d1) PASS dom0's device wrote our granted page")
        .expect("(d0) PASS events counted")
        .expect("(d0) PASS MSI is off once unbound")
        .expect("(d0) PASS the completion arrives as an event (MSI-X)")
        .expect("(d0) PASS Identify names the controller's serial");
    // Each interrupt edu raised arrived as one event.
    assert_eq!(o.lines_containing("(d0) PASS an event for each interrupt edu raises").len(), 3);
}

/// `dom0_ioports_disable=` takes ports from dom0 (Xen's option): the CMOS
/// RTC answers nothing then, and the hypervisor's own ports stay its own.
#[test]
fn dom0_ioports_disable_takes_ports_from_dom0() {
    let o = Boot::new("dom0_ioports_disable", Machine::QemuBios)
        .cmdline("dom0_mem=32M dom0_ioports_disable=70-71")
        .module(images().guest("devices"), "dom0 only=ports cmos=denied")
        .run();
    o.expect_end(End::PoweredOff);
    o.expect("(d0) PASS dom0_ioports_disable takes the CMOS RTC away").expect_verdict_pass(0);
}
