//! Command lines for the emulators that run the hypervisor: QEMU (KVM with
//! nested virtualization when the host has it, else TCG with an AMD SVM+NPT
//! CPU model) and Bochs (Intel VT-x with EPT).

use crate::host;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM if it can run a hypervisor inside, else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// Where the guest serial port goes.
#[derive(Debug, Clone)]
pub enum Serial {
    /// The terminal, with QEMU's monitor multiplexed in (Ctrl-A C; Ctrl-A X quits).
    Stdio,
    File(PathBuf),
    /// The serial line on QEMU's stdin and stdout, which the caller points
    /// at files (what a test types, and the log). QEMU 7.2's file backend
    /// cannot read input.
    Redirected,
}

#[derive(Debug, Clone)]
pub struct Qemu {
    pub iso: PathBuf,
    pub uefi: bool,
    pub cpus: u32,
    pub memory_mib: u32,
    pub accel: Accel,
    pub serial: Serial,
    /// `-icount shift=0,sleep=off`: one virtual ns per instruction.
    pub icount: bool,
    pub gdb_port: Option<u16>,
    /// `-S`: wait for the debugger before the first instruction.
    pub wait_for_gdb: bool,
    pub extra: Vec<String>,
}

/// The CPU model QEMU's software emulation runs a hypervisor with: SVM and
/// nested paging are emulated; nothing else is asked for that TCG lacks.
pub const TCG_CPU: &str = "qemu64,+svm,+npt";

impl Qemu {
    pub fn new(iso: PathBuf) -> Qemu {
        Qemu {
            iso,
            uefi: false,
            cpus: 2,
            memory_mib: 512,
            accel: Accel::Auto,
            serial: Serial::Stdio,
            icount: false,
            gdb_port: None,
            wait_for_gdb: false,
            extra: Vec::new(),
        }
    }

    /// Whether this configuration will use KVM.
    pub fn uses_kvm(&self) -> bool {
        match self.accel {
            Accel::Kvm => true,
            Accel::Tcg => false,
            Accel::Auto => !self.icount && host::kvm_with_nesting(),
        }
    }

    pub fn command(&self) -> Result<Command, String> {
        let mut c = Command::new("qemu-system-x86_64");
        if self.uses_kvm() {
            c.args(["-accel", "kvm", "-cpu", "host"]);
        } else {
            c.args(["-accel", "tcg", "-cpu", TCG_CPU]);
        }
        c.args(["-machine", "pc"]);
        c.args(["-smp", &self.cpus.to_string()]);
        c.args(["-m", &self.memory_mib.to_string()]);
        if self.uefi {
            let ovmf = host::ovmf_path().ok_or("OVMF firmware not found (package ovmf)")?;
            c.arg("-bios").arg(ovmf);
        }
        c.arg("-cdrom").arg(&self.iso);
        c.args(["-boot", "d", "-display", "none", "-vga", "none", "-no-reboot"]);
        // Lets a test end QEMU with a status: write v to port 0xf4, exit (v << 1) | 1.
        c.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        match &self.serial {
            Serial::Stdio => {
                c.args(["-serial", "mon:stdio"]);
            }
            Serial::File(p) => {
                c.arg("-serial").arg(format!("file:{}", p.display()));
                c.args(["-monitor", "none"]);
            }
            Serial::Redirected => {
                c.args(["-chardev", "stdio,id=serial0,signal=off", "-serial", "chardev:serial0", "-monitor", "none"]);
            }
        }
        if self.icount {
            c.args(["-icount", "shift=0,sleep=off"]);
        }
        if let Some(port) = self.gdb_port {
            c.args(["-gdb", &format!("tcp::{port}")]);
            if self.wait_for_gdb {
                c.arg("-S");
            }
        }
        c.args(&self.extra);
        Ok(c)
    }
}

#[derive(Debug, Clone)]
pub struct Bochs {
    pub iso: PathBuf,
    pub cpus: u32,
    pub memory_mib: u32,
    /// A Bochs CPU model with VT-x and EPT.
    pub model: String,
    pub serial_log: PathBuf,
    pub work_dir: PathBuf,
}

/// Skylake-X: VMX with EPT, VPID, unrestricted guest, x2APIC.
pub const BOCHS_CPU: &str = "corei7_skylake_x";

impl Bochs {
    pub fn new(iso: PathBuf, work_dir: PathBuf) -> Bochs {
        Bochs {
            iso,
            cpus: 1,
            memory_mib: 256,
            model: BOCHS_CPU.into(),
            serial_log: work_dir.join("serial.log"),
            work_dir,
        }
    }

    pub fn bochsrc(&self) -> String {
        // Headless: the rfb display never waits for a client; the debugger
        // is told to continue by the -rc file; no sound.
        format!(
            "megs: {mem}\n\
             cpu: model={model}, count={cpus}, ips=200000000\n\
             romimage: file=/usr/share/bochs/BIOS-bochs-latest\n\
             vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest\n\
             ata0-master: type=cdrom, path={iso}, status=inserted\n\
             boot: cdrom\n\
             com1: enabled=1, mode=file, dev={serial}\n\
             display_library: rfb, options=\"timeout=0\"\n\
             speaker: enabled=0\n\
             sound: driver=dummy\n\
             log: {log}\n",
            mem = self.memory_mib,
            model = self.model,
            cpus = self.cpus,
            iso = self.iso.display(),
            serial = self.serial_log.display(),
            log = self.log_path().display(),
        )
    }

    pub fn log_path(&self) -> PathBuf {
        self.work_dir.join("bochs.log")
    }

    /// Writes the configuration files and returns the command to run.
    pub fn command(&self) -> Result<Command, String> {
        std::fs::create_dir_all(&self.work_dir).map_err(|e| e.to_string())?;
        let rc = self.work_dir.join("bochsrc");
        std::fs::write(&rc, self.bochsrc()).map_err(|e| e.to_string())?;
        // Bochs's debugger stops at every machine reset and reads its next
        // command from this file: enough "continue"s for any test's resets.
        let cont = self.work_dir.join("continue.rc");
        std::fs::write(&cont, "c\n".repeat(16)).map_err(|e| e.to_string())?;
        let mut c = Command::new("bochs");
        c.arg("-q").arg("-f").arg(&rc).arg("-rc").arg(&cont).current_dir(&self.work_dir);
        c.stdin(std::process::Stdio::null());
        Ok(c)
    }

    /// Bochs logs ACPI soft-off as a "panic" line and exits with status 1.
    pub fn powered_off(log: &Path) -> bool {
        std::fs::read_to_string(log).map(|s| s.contains("ACPI control: soft power off")).unwrap_or(false)
    }
}

/// The serial output seen so far. Bochs reopens its serial file when the
/// machine resets, so output is accumulated here and a shrinking file
/// starts a new section.
pub struct SerialLog {
    path: PathBuf,
    pub text: String,
    seen: usize,
}

impl SerialLog {
    pub fn new(path: PathBuf) -> SerialLog {
        SerialLog { path, text: String::new(), seen: 0 }
    }

    pub fn poll(&mut self) {
        let Ok(bytes) = std::fs::read(&self.path) else { return };
        if bytes.len() < self.seen {
            self.text.push_str("\n--- serial port reopened (machine reset) ---\n");
            self.seen = 0;
        }
        if bytes.len() > self.seen {
            self.text.push_str(&String::from_utf8_lossy(&bytes[self.seen..]));
            self.seen = bytes.len();
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// ACPI S5 turned the machine off.
    PoweredOff,
    /// The machine reset (QEMU runs with -no-reboot, so it exits).
    Reset,
    /// A line the caller waits for appeared (the machine was then stopped).
    Saw(String),
    /// The emulator exited on its own for another reason.
    Exited(Option<i32>),
    TimedOut,
}

/// Waits for a running emulator: until a stop text has appeared the given
/// number of times (then the emulator is killed), it exits, or the
/// deadline passes.
pub fn wait(
    child: &mut std::process::Child,
    log: &mut SerialLog,
    bochs_log: Option<&Path>,
    stop_on: &[(String, usize)],
    timeout: std::time::Duration,
) -> End {
    let started = std::time::Instant::now();
    loop {
        log.poll();
        if let Some((s, _)) = stop_on.iter().find(|(s, n)| log.text.matches(s.as_str()).count() >= *n) {
            // Give the line time to finish, then stop the machine.
            std::thread::sleep(std::time::Duration::from_millis(200));
            log.poll();
            let _ = child.kill();
            let _ = child.wait();
            return End::Saw(s.clone());
        }
        if let Ok(Some(status)) = child.try_wait() {
            log.poll();
            let text = &log.text;
            if bochs_log.is_some_and(Bochs::powered_off)
                || (bochs_log.is_none() && text.contains("Powering off.") && status.success())
            {
                return End::PoweredOff;
            }
            if text.contains("Rebooting") && status.success() {
                return End::Reset;
            }
            return End::Exited(status.code());
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return End::TimedOut;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_log_survives_the_file_being_reopened() {
        let dir = std::env::temp_dir().join(format!("serial-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s.log");
        std::fs::write(&p, "first boot\nRebooting.\n").unwrap();
        let mut log = SerialLog::new(p.clone());
        log.poll();
        std::fs::write(&p, "second\n").unwrap(); // shorter: truncated and rewritten
        log.poll();
        std::fs::write(&p, "second\nboot\n").unwrap(); // the new boot goes on appending
        log.poll();
        assert_eq!(log.text, "first boot\nRebooting.\n\n--- serial port reopened (machine reset) ---\nsecond\nboot\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
