//! A PCI function's MSI capability, as the hypervisor programs it for a
//! pirq: one message, fixed delivery, edge-triggered, to one CPU's local
//! APIC in physical destination mode, on the host vector the hypervisor
//! chose. The domain that owns the device never writes these registers
//! (`passthrough::vpci` refuses it).

use crate::passthrough::pci::{self, Bdf};

const CAP_MSI: u8 = 0x05;
const CONTROL_ENABLE: u16 = 1 << 0;
const CONTROL_MME: u16 = 7 << 4;
const CONTROL_64BIT: u16 = 1 << 7;
const CONTROL_MASKABLE: u16 = 1 << 8;

/// The function's MSI capability: its offset and control word.
pub fn find(bdf: Bdf) -> Option<(u16, u16)> {
    pci::find_capability(bdf, CAP_MSI).map(|(at, head)| (at, (head >> 16) as u16))
}

/// Points the function's MSI at `vector` on the CPU with local APIC id
/// `apic_id`, one message, disabled (enabled when the pirq is bound).
pub fn program(bdf: Bdf, cap: u16, control: u16, vector: u8, apic_id: u32) {
    let control = control & !(CONTROL_ENABLE | CONTROL_MME);
    pci::write(bdf, cap + 2, 2, control as u32);
    // Fixed delivery, physical destination, no redirection hint.
    let address = 0xfee0_0000u32 | (apic_id & 0xff) << 12;
    pci::write(bdf, cap + 4, 4, address);
    let data_at = if control & CONTROL_64BIT != 0 {
        pci::write(bdf, cap + 8, 4, 0);
        cap + 12
    } else {
        cap + 8
    };
    // Edge-triggered, fixed delivery mode, the vector.
    pci::write(bdf, data_at, 2, vector as u32);
    if control & CONTROL_MASKABLE != 0 {
        // The mask bits follow the data (and its padding).
        let mask_at = data_at + 4;
        pci::write(bdf, mask_at, 4, 0);
    }
}

/// Turns the function's MSI on or off (INTx is off while it is on, as
/// the PCI specification has it).
pub fn set_enabled(bdf: Bdf, cap: u16, on: bool) {
    let control = pci::read(bdf, cap + 2, 2) as u16 & !CONTROL_MME;
    let control = if on { control | CONTROL_ENABLE } else { control & !CONTROL_ENABLE };
    pci::write(bdf, cap + 2, 2, control as u32);
}
