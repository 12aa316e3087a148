//! Power-off (ACPI S5), reboot (FADT reset register, then the keyboard
//! controller, then a triple fault) and halt.

use super::cpu::{self, inb, outb};
use crate::acpi;
use crate::cmdline::ExitAction;
use crate::time::delay_us;
use core::sync::atomic::{AtomicBool, Ordering};

const SLP_EN: u64 = 1 << 13;
const SCI_EN: u64 = 1;

/// Puts the firmware in ACPI mode if it is not (needed on legacy platforms
/// before PM1 control writes take effect).
fn enable_acpi_mode(p: &acpi::PowerInfo) {
    let Some(pm1a) = p.pm1a_control else { return };
    if pm1a.read() & SCI_EN != 0 || p.smi_command == 0 || p.acpi_enable == 0 {
        return;
    }
    if let Ok(port) = u16::try_from(p.smi_command) {
        outb(port, p.acpi_enable);
        for _ in 0..300 {
            if pm1a.read() & SCI_EN != 0 {
                return;
            }
            delay_us(10_000);
        }
    }
    log::warn!("ACPI: firmware did not enter ACPI mode");
}

/// Turns the machine off through ACPI S5. Returns only if that failed.
fn acpi_power_off() {
    let Some(p) = acpi::power_info() else {
        log::error!("power-off: no ACPI FADT");
        return;
    };
    let Some(s5) = p.s5 else {
        log::error!("power-off: the DSDT declares no \\_S5 sleep state");
        return;
    };
    if p.hw_reduced {
        if let Some(sc) = p.sleep_control {
            sc.write(((s5.a as u64 & 7) << 2) | (1 << 5));
        }
    } else {
        enable_acpi_mode(p);
        for (reg, typ) in [(p.pm1a_control, s5.a), (p.pm1b_control, s5.b)] {
            if let Some(r) = reg {
                let v = (r.read() & !(0x7 << 10 | SLP_EN)) | ((typ as u64 & 7) << 10);
                r.write(v);
                r.write(v | SLP_EN);
            }
        }
    }
    delay_us(1_000_000);
    log::error!("power-off: the machine is still running after ACPI S5");
}

pub fn power_off() -> ! {
    log::info!("Powering off.");
    crate::console::serial::flush();
    acpi_power_off();
    halt()
}

pub fn reboot() -> ! {
    log::info!("Rebooting.");
    crate::console::serial::flush();
    if let Some((reg, value)) = acpi::power_info().and_then(|p| p.reset) {
        reg.write(value as u64);
        delay_us(100_000);
    }
    // Keyboard controller: wait for its input buffer, then pulse reset.
    for _ in 0..100_000 {
        if inb(0x64) & 0x02 == 0 {
            break;
        }
        delay_us(10);
    }
    outb(0x64, 0xfe);
    delay_us(100_000);
    // Triple fault: no IDT at all, then an exception.
    let null = x86_64::structures::DescriptorTablePointer { limit: 0, base: x86_64::VirtAddr::new(0) };
    // SAFETY: deliberately makes every exception unrecoverable; the int3
    // then resets the CPU.
    unsafe {
        x86_64::instructions::tables::lidt(&null);
        core::arch::asm!("int3", options(nomem, nostack));
    }
    halt()
}

pub fn halt() -> ! {
    log::info!("System halted.");
    cpu::halt_forever()
}

/// Stops every other CPU (panic, power-off, reboot): each takes an NMI and
/// halts for good.
pub fn stop_others() {
    if super::percpu::online_count() <= 1 {
        return;
    }
    STOPPING.store(true, Ordering::SeqCst);
    super::lapic::send_nmi_all_but_self();
    delay_us(10_000);
}

static STOPPING: AtomicBool = AtomicBool::new(false);

/// Called by the NMI handler: a CPU told to stop does not come back.
pub fn nmi_should_stop() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// Ends the machine: every other CPU stops, then this one powers off,
/// halts or reboots.
pub fn end_machine(action: ExitAction) -> ! {
    stop_others();
    match action {
        ExitAction::PowerOff => power_off(),
        ExitAction::Halt => halt(),
        ExitAction::Reboot => reboot(),
    }
}
