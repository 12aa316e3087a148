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
    /// Software emulation in one host thread for all CPUs (`TCG_ONE_THREAD`)
    /// instead of QEMU's thread per CPU.
    pub one_thread: bool,
    pub gdb_port: Option<u16>,
    /// `-S`: wait for the debugger before the first instruction.
    pub wait_for_gdb: bool,
    /// Where QEMU notes the guest's power-off (`-trace
    /// qemu_system_shutdown_request -D FILE`): with `-no-reboot`, a reset
    /// or triple fault ends QEMU with status 0 as well, and only this line
    /// tells the two apart.
    pub shutdown_log: Option<PathBuf>,
    pub extra: Vec<String>,
}

/// The CPU model QEMU's software emulation runs a hypervisor with: SVM and
/// nested paging are emulated; nothing else is asked for that TCG lacks.
pub const TCG_CPU: &str = "qemu64,+svm,+npt";

/// QEMU's software emulation in one host thread for all CPUs, for the
/// test boots and the hypercall fuzzer. Debian 12's
/// QEMU 7.2 with a thread per CPU (its default) now and then resumes an
/// SVM guest with the host's own state: a VMCB read back after an exit
/// holds RIP just past the hypervisor's VMRUN, the host's CR3, GDTR and
/// stack pointer, which only the emulated VMRUN/#VMEXIT writes; or the
/// guest's next instruction fetch finds its page tables empty. Taking
/// vCPUs down and up 200,000 times (`cargo xtask fuzz --only
/// vcpu_op.down,vcpu_op.up`) did so in 5 of 6 runs with a thread per CPU
/// and in none of 14 in one thread, at the same call rate; the
/// hypervisor's own trace of both CPUs showed the VMCB used by one CPU
/// alone throughout.
///
/// It met a test too (three domains with the ASIDs used up). Boots of
/// Linux keep a thread per CPU: in one thread QEMU's other SVM flaw (an
/// EVENTINJ vector delivered a second time, see docs/architecture.md) came
/// back in one of eight runs of the two-Linux test, as an interrupt nested
/// before a handler's SWAPGS.
pub const TCG_ONE_THREAD: &str = "tcg,thread=single";

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
            one_thread: false,
            gdb_port: None,
            wait_for_gdb: false,
            shutdown_log: None,
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
            let accel = if self.one_thread { TCG_ONE_THREAD } else { "tcg" };
            c.args(["-accel", accel, "-cpu", TCG_CPU]);
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
        if let Some(p) = &self.shutdown_log {
            c.args(["-trace", "qemu_system_shutdown_request", "-D"]).arg(p);
        }
        if let Some(port) = self.gdb_port {
            c.args(["-gdb", &format!("tcp::{port}")]);
            if self.wait_for_gdb {
                c.arg("-S");
            }
        }
        c.args(&self.extra);
        // Looking into the emulated machine (README): `XTASK_QEMU_ARGS="-d
        // int,in_asm -D /tmp/q.log"` adds QEMU options to every boot.
        if let Ok(more) = std::env::var("XTASK_QEMU_ARGS") {
            c.args(more.split_whitespace());
        }
        Ok(c)
    }

    /// Whether the guest powered the machine off, by the `shutdown_log`.
    pub fn powered_off(shutdown_log: &Path) -> bool {
        std::fs::read_to_string(shutdown_log).is_ok_and(|s| s.contains(GUEST_POWER_OFF))
    }
}

/// The trace line QEMU writes when the guest asks for power-off (ACPI S5):
/// 6 is QEMU's SHUTDOWN_CAUSE_GUEST_SHUTDOWN. A reset asks for no shutdown.
pub const GUEST_POWER_OFF: &str = "qemu_system_shutdown_request reason=6";

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

    /// Machine resets after the power-on one, from the Bochs log (the
    /// serial file is not always truncated at a reset).
    pub fn resets(log: &Path) -> usize {
        std::fs::read_to_string(log).map_or(0, |s| s.matches("bx_pc_system_c::Reset(").count().saturating_sub(1))
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
    /// ACPI S5 turned the machine off (QEMU traced the guest's request,
    /// Bochs logged the soft power-off).
    PoweredOff,
    /// The machine reset: QEMU, run with -no-reboot, exited with status 0
    /// and no power-off.
    Reset,
    /// A line the caller waits for appeared, and the machine was still
    /// running a moment later (then it was stopped).
    Saw(String),
    /// The emulator exited on its own for another reason.
    Exited(Option<i32>),
    TimedOut,
}

/// Which emulator a run is in, with the file that tells how it ended.
#[derive(Debug, Clone, Copy)]
pub enum Ending<'a> {
    /// QEMU with its `Qemu::shutdown_log`.
    Qemu(&'a Path),
    /// Bochs with its log file.
    Bochs(&'a Path),
}

impl Ending<'_> {
    /// How the machine ended, now that the emulator exited with `status`.
    fn classify(self, status: std::process::ExitStatus) -> End {
        match self {
            Ending::Qemu(shutdown_log) if status.success() && Qemu::powered_off(shutdown_log) => End::PoweredOff,
            Ending::Qemu(_) if status.success() => End::Reset,
            Ending::Bochs(log) if Bochs::powered_off(log) => End::PoweredOff,
            _ => End::Exited(status.code()),
        }
    }

    /// How long the machine is watched after a stop line, so that a panic
    /// or reset right after it is seen. Bochs runs about ten times slower.
    pub fn grace(self) -> std::time::Duration {
        std::time::Duration::from_millis(match self {
            Ending::Qemu(_) => 1000,
            Ending::Bochs(_) => 2000,
        })
    }
}

/// When to stop a machine that runs on: once each text has appeared in the
/// serial log at least its number of times.
pub type Stop = Vec<(String, usize)>;

fn reached(stop: &Stop, text: &str) -> bool {
    stop.iter().all(|(s, n)| text.matches(s.as_str()).count() >= *n)
}

/// What to type on the serial line during a run: each step's bytes once
/// all of its texts have appeared in the log after where the step before
/// it matched (no text matches at once), like an expect script.
#[derive(Default)]
pub struct Typing {
    steps: Vec<(Vec<String>, Vec<u8>)>,
    next: usize,
    /// Where in the log the next step's texts are looked for from.
    from: usize,
    input: Option<std::process::ChildStdin>,
}

impl Typing {
    /// Typing into `input` (the emulator's stdin, its serial line).
    pub fn new(steps: Vec<(Vec<String>, Vec<u8>)>, input: Option<std::process::ChildStdin>) -> Typing {
        Typing { steps, next: 0, from: 0, input }
    }

    /// Types every step whose texts the log now shows.
    pub fn poll(&mut self, log: &str) {
        use std::io::Write;
        while let Some((after, bytes)) = self.steps.get(self.next) {
            let rest = log.get(self.from..).unwrap_or("");
            let mut end = 0;
            for text in after {
                match rest.find(text.as_str()) {
                    Some(at) => end = end.max(at + text.len()),
                    None => return,
                }
            }
            if let Some(input) = &mut self.input {
                // A machine that stopped reading ends the run anyway.
                let _ = input.write_all(bytes).and_then(|_| input.flush());
            }
            self.from += end;
            self.next += 1;
        }
    }

    /// The steps not typed yet, by the texts each waits for.
    pub fn pending(&self) -> Vec<String> {
        self.steps[self.next..].iter().map(|(after, _)| after.join(" + ")).collect()
    }
}

/// Waits for a running emulator: until one of the `stops` is reached and
/// the machine has run on for `ending.grace()` (then the emulator is
/// killed and the run ends with the first text of the first listed stop
/// reached by then), it exits, or the
/// deadline passes.
pub fn wait(
    child: &mut std::process::Child,
    log: &mut SerialLog,
    ending: Ending<'_>,
    stops: &[Stop],
    typing: &mut Typing,
    timeout: std::time::Duration,
) -> End {
    let started = std::time::Instant::now();
    let mut seen: Option<(String, std::time::Instant)> = None;
    loop {
        log.poll();
        typing.poll(&log.text);
        if let Ok(Some(status)) = child.try_wait() {
            log.poll();
            return ending.classify(status);
        }
        match &seen {
            None => {
                let hit = stops.iter().find(|stop| reached(stop, &log.text)).and_then(|stop| stop.first());
                seen = hit.map(|(s, _)| (s.clone(), std::time::Instant::now()));
            }
            Some((s, at)) if at.elapsed() >= ending.grace() => {
                let _ = child.kill();
                let _ = child.wait();
                log.poll();
                // A stop listed earlier that was reached during the grace
                // time wins (a halt's own line after its panic banner).
                let first = stops.iter().find(|stop| reached(stop, &log.text)).and_then(|stop| stop.first());
                return End::Saw(first.map_or_else(|| s.clone(), |(t, _)| t.clone()));
            }
            Some(_) => {}
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            log.poll();
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

    #[test]
    fn typing_waits_for_each_text_in_turn() {
        let dir = std::env::temp_dir().join(format!("typing-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("typed");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("cat > {}", out.display()))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let texts = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let steps = vec![
            (texts(&[]), b"first ".to_vec()),
            (texts(&["prompt$"]), b"second ".to_vec()),
            (texts(&["prompt$"]), b"third ".to_vec()),
            (texts(&["crashed", "ready"]), b"fourth".to_vec()),
        ];
        let mut t = Typing::new(steps, child.stdin.take());
        t.poll("booting");
        assert_eq!(t.pending(), ["prompt$", "prompt$", "crashed + ready"], "no text matches at once");
        t.poll("booting prompt$");
        assert_eq!(t.pending(), ["prompt$", "crashed + ready"], "one prompt answers one step");
        t.poll("booting prompt$ second");
        assert_eq!(t.pending(), ["prompt$", "crashed + ready"], "the same prompt again is needed");
        t.poll("booting prompt$ second prompt$ ready");
        assert_eq!(t.pending(), ["crashed + ready"], "every text of a step is needed");
        t.poll("booting prompt$ second prompt$ ready crashed");
        assert!(t.pending().is_empty(), "in any order");
        drop(t);
        child.wait().unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "first second third fourth");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Runs `script` with `sh` as a stand-in for QEMU, in a fresh directory
    /// holding its serial log `serial` and its shutdown log `shutdown`.
    fn fake_qemu(name: &str, script: &str, stop_on: &str) -> (End, String) {
        let dir = std::env::temp_dir().join(format!("fake-qemu-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new("sh").arg("-c").arg(script).current_dir(&dir).spawn().unwrap();
        let mut log = SerialLog::new(dir.join("serial"));
        let stops = [vec![(stop_on.to_string(), 1)]];
        let shutdown = dir.join("shutdown");
        let mut typing = Typing::default();
        let end = wait(
            &mut child,
            &mut log,
            Ending::Qemu(&shutdown),
            &stops,
            &mut typing,
            std::time::Duration::from_secs(30),
        );
        let _ = std::fs::remove_dir_all(&dir);
        (end, log.text)
    }

    #[test]
    fn qemu_tells_a_power_off_from_a_reset_and_an_error_exit() {
        let off = format!("echo 'Powering off.' > serial; echo '{GUEST_POWER_OFF}' > shutdown");
        assert_eq!(fake_qemu("off", &off, "never").0, End::PoweredOff);
        // Status 0 and the same last line, but no power-off request: a reset.
        assert_eq!(fake_qemu("reset", "echo 'Powering off.' > serial", "never").0, End::Reset);
        assert_eq!(fake_qemu("error", "exit 3", "never").0, End::Exited(Some(3)));
    }

    #[test]
    fn a_panic_soon_after_the_stop_line_is_still_seen() {
        let script = "echo ready > serial; sleep 0.5; echo '*** PANIC on CPU0' >> serial; sleep 30";
        let (end, text) = fake_qemu("late-panic", script, "ready");
        assert_eq!(end, End::Saw("ready".into()));
        assert!(text.contains("PANIC"), "{text:?}");
    }

    #[test]
    fn a_stop_of_several_texts_waits_for_all_of_them() {
        let stop = vec![("a".to_string(), 2), ("b".to_string(), 1)];
        assert!(!reached(&stop, "a\nb\n"));
        assert!(!reached(&stop, "a\na\n"));
        assert!(reached(&stop, "a\nb\na\n"));
    }

    #[test]
    fn a_machine_that_ends_right_after_the_stop_line_reports_how() {
        let (end, _) = fake_qemu("ends", "echo ready > serial; sleep 0.2", "ready");
        assert_eq!(end, End::Reset);
    }
}
