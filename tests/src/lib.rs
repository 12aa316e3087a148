//! The integration-test harness: boots the hypervisor from a GRUB ISO in an
//! emulator under a deadline, captures the serial console to a file, and
//! checks its lines. A failed check prints the tail of the log and where the
//! whole log is.
//!
//! The images come from `cargo xtask test`, which builds them and passes
//! their paths in `HV_HYPERVISOR` and `HV_DOM0`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use std::time::{Duration, Instant};
pub use xtask::emulator::End;
use xtask::emulator::{Accel, Bochs, Ending, Qemu, Serial, SerialLog, wait};
use xtask::images::{IsoSpec, Module, make_iso};

pub use xtask::images::Images;

fn env_path(name: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(p) => PathBuf::from(p),
        None => panic!("{name} is not set: run the integration tests through `cargo xtask test`"),
    }
}

/// The images `cargo xtask test` built.
pub fn images() -> Images {
    Images { hypervisor: env_path("HV_HYPERVISOR"), dom0: env_path("HV_DOM0"), guests: env_path("HV_GUESTS") }
}

/// Where tests keep ISOs, logs and scratch files.
pub fn out_dir() -> PathBuf {
    std::env::var_os("HV_TEST_OUT").map(PathBuf::from).unwrap_or_else(|| xtask::images::target_dir().join("itest"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// QEMU with SeaBIOS and BIOS GRUB.
    QemuBios,
    /// QEMU with OVMF and UEFI GRUB.
    QemuUefi,
    /// Bochs (Intel VT-x with EPT) with its BIOS.
    Bochs,
}

/// One boot to run.
pub struct Boot {
    name: String,
    machine: Machine,
    cmdline: String,
    modules: Vec<Module>,
    cpus: u32,
    memory_mib: u32,
    timeout: Duration,
    /// Stop once a serial line containing the text has appeared this often.
    stop_on: Vec<(String, usize)>,
    /// Bytes typed on the serial line (QEMU only).
    input: Option<Vec<u8>>,
}

/// The line the hypervisor prints when it halts for good.
pub const HALTED: &str = "System halted";
/// dom0's last line once it is up (it then waits for events, as Xen's
/// dom0 does, so runs with dom0 stop here).
pub const DOM0_READY: &str = "(d0) dom0-kernel-shim: ready";

impl Boot {
    pub fn new(name: &str, machine: Machine) -> Boot {
        let timeout = match machine {
            Machine::QemuBios => 90,
            Machine::QemuUefi => 180,
            Machine::Bochs => 300,
        };
        Boot {
            name: name.to_string(),
            machine,
            cmdline: String::new(),
            modules: Vec::new(),
            cpus: if machine == Machine::Bochs { 1 } else { 2 },
            memory_mib: if machine == Machine::Bochs { 256 } else { 512 },
            timeout: Duration::from_secs(timeout),
            stop_on: vec![(HALTED.to_string(), 1)],
            input: None,
        }
    }

    pub fn cmdline(mut self, c: &str) -> Boot {
        self.cmdline = c.to_string();
        self
    }

    /// One of the test guests in tests/guests as a `domu` module.
    pub fn guest(self, guest: &str, options: &str) -> Boot {
        let path = images().guest(guest);
        self.module(path, &format!("domu {options}"))
    }

    pub fn module(mut self, path: impl AsRef<Path>, cmdline: &str) -> Boot {
        self.modules.push(Module { path: path.as_ref().to_path_buf(), cmdline: cmdline.to_string() });
        self
    }

    /// Types `bytes` on the serial line (QEMU reads them as the machine
    /// takes them).
    pub fn serial_input(mut self, bytes: &[u8]) -> Boot {
        self.input = Some(bytes.to_vec());
        self
    }

    pub fn cpus(mut self, n: u32) -> Boot {
        self.cpus = n;
        self
    }

    pub fn memory(mut self, mib: u32) -> Boot {
        self.memory_mib = mib;
        self
    }

    pub fn timeout(mut self, d: Duration) -> Boot {
        self.timeout = d;
        self
    }

    /// Stop the machine as soon as a serial line contains `text`.
    pub fn stop_on(self, text: &str) -> Boot {
        self.stop_on_count(text, 1)
    }

    /// Stop the machine once `count` serial lines contain `text`.
    pub fn stop_on_count(mut self, text: &str, count: usize) -> Boot {
        self.stop_on.push((text.to_string(), count));
        self
    }

    /// Boots and waits for the end. Panics only for harness problems (no
    /// ISO, no emulator), never for what the hypervisor did.
    pub fn run(self) -> Outcome {
        let imgs = images();
        let dir = out_dir().join(&self.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        let spec = IsoSpec {
            hypervisor: imgs.hypervisor.clone(),
            cmdline: self.cmdline.clone(),
            modules: self.modules.clone(),
        };
        let iso = make_iso(&spec, &out_dir().join("iso")).unwrap_or_else(|e| panic!("{}: {e}", self.name));
        let serial = dir.join("serial.log");
        let stderr = std::fs::File::create(dir.join("emulator.stderr")).expect("stderr file");
        let started = Instant::now();
        let shutdown_log = dir.join("qemu-shutdown.log");
        let (mut child, bochs_log) = match self.machine {
            Machine::QemuBios | Machine::QemuUefi => {
                let mut q = Qemu::new(iso);
                q.uefi = self.machine == Machine::QemuUefi;
                q.cpus = self.cpus;
                q.memory_mib = self.memory_mib;
                q.accel = Accel::Tcg;
                q.shutdown_log = Some(shutdown_log.clone());
                let (stdin, stdout) = match &self.input {
                    Some(bytes) => {
                        let input = dir.join("serial.in");
                        std::fs::write(&input, bytes).expect("write the serial input");
                        q.serial = Serial::Redirected;
                        let i = std::fs::File::open(&input).expect("open the serial input");
                        let o = std::fs::File::create(&serial).expect("create the serial log");
                        (Stdio::from(i), Stdio::from(o))
                    }
                    None => {
                        q.serial = Serial::File(serial.clone());
                        (Stdio::null(), Stdio::null())
                    }
                };
                let mut cmd = q.command().unwrap_or_else(|e| panic!("{}: {e}", self.name));
                let child = cmd.stdin(stdin).stdout(stdout).stderr(stderr).spawn();
                (child.unwrap_or_else(|e| panic!("{}: cannot start QEMU: {e}", self.name)), None)
            }
            Machine::Bochs => {
                let mut b = Bochs::new(iso, dir.join("bochs"));
                b.cpus = self.cpus;
                b.memory_mib = self.memory_mib;
                b.serial_log = serial.clone();
                let log = b.log_path();
                let mut cmd = b.command().unwrap_or_else(|e| panic!("{}: {e}", self.name));
                let child = cmd.stdout(Stdio::null()).stderr(stderr).spawn();
                (child.unwrap_or_else(|e| panic!("{}: cannot start Bochs: {e}", self.name)), Some(log))
            }
        };
        let mut log = SerialLog::new(serial.clone());
        let ending = match &bochs_log {
            Some(l) => Ending::Bochs(l),
            None => Ending::Qemu(&shutdown_log),
        };
        let end = wait(&mut child, &mut log, ending, &self.stop_on, self.timeout);
        let whole = dir.join("serial.all.log");
        let _ = std::fs::write(&whole, &log.text);
        let elapsed = started.elapsed();
        record_timing(&self.name, self.machine, elapsed);
        Outcome { name: self.name, log: log.text.replace('\r', ""), log_path: whole, end, elapsed }
    }
}

/// Appends one line, `name<TAB>emulator<TAB>seconds`, to the timings file
/// `cargo xtask test` sums up per emulator.
fn record_timing(name: &str, machine: Machine, elapsed: Duration) {
    use std::io::Write;
    let emulator = match machine {
        Machine::QemuBios | Machine::QemuUefi => "qemu",
        Machine::Bochs => "bochs",
    };
    let path = out_dir().join(xtask::images::TIMINGS_FILE);
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        // One write per line, so parallel tests do not interleave.
        let _ = f.write_all(format!("{name}\t{emulator}\t{:.1}\n", elapsed.as_secs_f64()).as_bytes());
    }
}

/// What a boot printed and how it ended.
pub struct Outcome {
    pub name: String,
    pub log: String,
    pub log_path: PathBuf,
    pub end: End,
    pub elapsed: Duration,
}

impl Outcome {
    /// Fails the test with `what` and the tail of the log.
    pub fn fail(&self, what: &str) -> ! {
        let lines: Vec<&str> = self.log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        panic!(
            "{}: {what}\nended: {:?} after {:.1} s\n--- last {} lines of {} ---\n{}\n---",
            self.name,
            self.end,
            self.elapsed.as_secs_f64(),
            tail.len(),
            self.log_path.display(),
            tail.join("\n")
        );
    }

    /// Asserts that some line contains `needle`; returns the first such line.
    pub fn line(&self, needle: &str) -> &str {
        match self.log.lines().find(|l| l.contains(needle)) {
            Some(l) => l,
            None => self.fail(&format!("no line contains {needle:?}")),
        }
    }

    pub fn expect(&self, needle: &str) -> &Self {
        self.line(needle);
        self
    }

    pub fn expect_absent(&self, needle: &str) -> &Self {
        if let Some(l) = self.log.lines().find(|l| l.contains(needle)) {
            self.fail(&format!("unexpected line {l:?}"));
        }
        self
    }

    /// Asserts that `b` appears somewhere after the first `a`.
    pub fn expect_order(&self, a: &str, b: &str) -> &Self {
        let pa = self.log.find(a);
        let pb = self.log.rfind(b);
        match (pa, pb) {
            (Some(x), Some(y)) if x < y => self,
            _ => self.fail(&format!("expected {a:?} before {b:?}")),
        }
    }

    /// Asserts that test guest `d` ended with `VERDICT: PASS` (its one
    /// verdict line, with no FAIL line before it) and then powered its
    /// domain off. Otherwise fails with the verdict it printed (the first
    /// failed check, or why it skipped) and its FAIL lines, or says that it
    /// printed none (it crashed, hung or was cut short).
    pub fn expect_verdict_pass(&self, d: u32) -> &Self {
        if let Err(why) = verdict_pass(&self.log, d) {
            self.fail(&why);
        }
        self
    }

    pub fn lines_containing(&self, needle: &str) -> Vec<&str> {
        self.log.lines().filter(|l| l.contains(needle)).collect()
    }

    pub fn expect_end(&self, end: End) -> &Self {
        if self.end != end {
            self.fail(&format!("expected the run to end with {end:?}"));
        }
        self
    }

    /// The run must not have died in a way nobody asked for.
    pub fn expect_no_crash(&self) -> &Self {
        for bad in ["PANIC", "exception #", "*** "] {
            if let Some(l) = self.log.lines().find(|l| l.contains(bad)) {
                self.fail(&format!("unexpected crash line {l:?}"));
            }
        }
        self
    }
}

/// Whether domain `d`'s verdict in `log` is PASS, and if not, why.
fn verdict_pass(log: &str, d: u32) -> Result<(), String> {
    let tag = format!("(d{d}) ");
    let verdict_tag = format!("{tag}VERDICT: ");
    let mut verdicts = Vec::new();
    let mut failed = Vec::new();
    let mut shut_down = false;
    for l in log.lines() {
        if let Some((_, v)) = l.split_once(&verdict_tag) {
            verdicts.push(v.trim());
            shut_down = false;
        } else if l.contains(&format!("{tag}FAIL ")) {
            failed.push(l);
        } else if l.contains(&format!("domain {d} (")) && l.ends_with(") shut down: poweroff") {
            shut_down = true;
        }
    }
    let fail_lines = if failed.is_empty() { String::new() } else { format!("\n{}", failed.join("\n")) };
    match verdicts.as_slice() {
        [] => Err(format!("domain {d} printed no verdict: it crashed, hung or was stopped first{fail_lines}")),
        ["PASS"] if !failed.is_empty() => Err(format!("domain {d} says PASS after failed checks{fail_lines}")),
        ["PASS"] if !shut_down => Err(format!("domain {d} passed but did not power off after its verdict")),
        ["PASS"] => Ok(()),
        [v] => Err(format!("domain {d}: VERDICT: {v}{fail_lines}")),
        many => Err(format!("domain {d} printed {} verdicts: {many:?}", many.len())),
    }
}

/// A scratch file for a test.
pub fn scratch(test: &str, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = out_dir().join("files").join(test);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write scratch file");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_pass_and_fail_on_the_log() {
        let o = Outcome {
            name: "t".into(),
            log: "a one\nb two\na three\n".into(),
            log_path: "x".into(),
            end: End::PoweredOff,
            elapsed: Duration::ZERO,
        };
        assert_eq!(o.line("two"), "b two");
        assert_eq!(o.lines_containing("a ").len(), 2);
        o.expect_order("b two", "a three").expect_absent("zzz").expect_end(End::PoweredOff);
        let missing = std::panic::catch_unwind(|| {
            o.expect("four");
        });
        assert!(missing.is_err());
        let wrong_order = std::panic::catch_unwind(|| {
            o.expect_order("a three", "b two");
        });
        assert!(wrong_order.is_err());
    }

    const PASSED: &str = "\
[    0.1] CPU0 INFO  (d1) PASS one
[    0.2] CPU0 INFO  (d1) 1 checks, 0 failed
[    0.2] CPU0 INFO  (d1) VERDICT: PASS
[    0.3] CPU0 INFO  domain 1 (a) shut down: poweroff
";

    #[test]
    fn a_domain_passes_only_on_its_pass_verdict_then_poweroff() {
        assert_eq!(verdict_pass(PASSED, 1), Ok(()));
        // Domain 11's verdict is not domain 1's.
        assert!(verdict_pass(&PASSED.replace("(d1)", "(d11)"), 1).unwrap_err().contains("no verdict"));
        let failed =
            PASSED.replace("PASS one", "FAIL one: got 0, want 1").replace("VERDICT: PASS", "VERDICT: FAIL one");
        let why = verdict_pass(&failed, 1).unwrap_err();
        assert!(why.contains("VERDICT: FAIL one") && why.contains("FAIL one: got 0, want 1"), "{why}");
        let skipped = PASSED.replace("VERDICT: PASS", "VERDICT: SKIP needs two vCPUs");
        assert!(verdict_pass(&skipped, 1).unwrap_err().contains("SKIP needs two vCPUs"));
        let crashed = PASSED.replace("shut down: poweroff", "shut down: crash");
        assert!(verdict_pass(&crashed, 1).unwrap_err().contains("did not power off"));
        let cut_short: String = PASSED.lines().take(1).map(|l| format!("{l}\n")).collect();
        assert!(verdict_pass(&cut_short, 1).unwrap_err().contains("no verdict"));
        let twice = format!("{PASSED}{PASSED}");
        assert!(verdict_pass(&twice, 1).unwrap_err().contains("2 verdicts"));
        let inconsistent = PASSED.replace("PASS one", "FAIL one: got 0, want 1");
        assert!(verdict_pass(&inconsistent, 1).unwrap_err().contains("after failed checks"));
    }
}
