//! The integration-test harness: boots the hypervisor from a GRUB ISO in an
//! emulator under a deadline, captures the serial console to a file, and
//! checks its lines: every run for what fails any test (hypervisor errors,
//! crash reports, resets nobody expected), then what the test asks. A
//! failed check prints the tail of the log and where the whole log is.
//!
//! The images come from `cargo xtask test`, which builds them and passes
//! their paths in `HV_HYPERVISOR` and `HV_DOM0`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use std::time::{Duration, Instant};
pub use xtask::emulator::End;
use xtask::emulator::{Accel, Bochs, Ending, Qemu, Serial, SerialLog, Stop, Typing, wait};
use xtask::images::{IsoSpec, Module, make_iso};

pub use xtask::images::Images;

/// The path in environment variable `name`, which `cargo xtask test`
/// sets; `unset` says why it may not be.
fn env_path(name: &str, unset: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(p) => PathBuf::from(p),
        None => panic!("{name} is not set: {unset}"),
    }
}

/// The images `cargo xtask test` built.
pub fn images() -> Images {
    let get = |name| env_path(name, "run the integration tests through `cargo xtask test`");
    Images { hypervisor: get("HV_HYPERVISOR"), dom0: get("HV_DOM0"), guests: get("HV_GUESTS") }
}

/// The Linux guest `cargo xtask test` prepared.
pub struct Linux {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

/// The Linux guest (Debian's cloud kernel and the busybox initramfs) that
/// `cargo xtask test` fetched; without it a Linux test fails (xtask skips
/// them, saying why, when the guest cannot be had).
pub fn linux() -> Linux {
    let get =
        |name| env_path(name, "the Linux guest was not prepared (`cargo xtask guests` fetches it and says why not)");
    Linux { kernel: get(xtask::linux::ENV_KERNEL), initramfs: get(xtask::linux::ENV_INITRAMFS) }
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
    /// Stop once any of these is reached (each text in that many lines).
    stop_on: Vec<Stop>,
    /// What to type on the serial line, each after some texts (QEMU only).
    typing: Vec<(Vec<String>, Vec<u8>)>,
    expected: Provoked,
    /// CPU features added to QEMU's model (`+pku,+rdtscp`), QEMU only.
    qemu_cpu_flags: String,
    /// QEMU's software emulation in one host thread (`Qemu::one_thread`):
    /// every boot but Linux ones (`linux`).
    qemu_one_thread: bool,
    /// More QEMU options: devices for dom0 (`qemu_devices`).
    qemu_extra: Vec<String>,
}

/// What fails every run unless its test provokes it on purpose, says so
/// beforehand, and then sees it happen.
#[derive(Debug, Clone, Default)]
struct Provoked {
    /// A hypervisor ERROR line containing each of these texts; no other.
    errors: Vec<String>,
    /// A panic, an exception report or a fatal stop (`*** ` lines).
    crash_report: bool,
    /// A machine reset.
    reset: bool,
}

/// What the hypervisor prints when it halts for good (a guest's own
/// "reboot: System halted" is not it).
pub const HALTED: &str = "INFO  System halted.";
/// What the hypervisor prints when a panic halts it.
pub const PANIC_HALTED: &str = "*** System halted";
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
            stop_on: vec![vec![(HALTED.to_string(), 1)], vec![(PANIC_HALTED.to_string(), 1)]],
            typing: Vec::new(),
            expected: Provoked::default(),
            qemu_cpu_flags: String::new(),
            qemu_one_thread: true,
            qemu_extra: Vec::new(),
        }
    }

    /// Adds QEMU options (devices, their back ends), QEMU only.
    pub fn qemu_devices(mut self, args: &[&str]) -> Boot {
        self.qemu_extra.extend(args.iter().map(|a| a.to_string()));
        self
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

    /// Types `bytes` on the serial line from the start (QEMU reads them as
    /// the machine takes them).
    pub fn serial_input(self, bytes: &[u8]) -> Boot {
        self.type_after_all(&[], bytes)
    }

    /// Types `bytes` on the serial line once `text` has appeared in the log
    /// after what the previous `type_after` waited for (QEMU only). A run
    /// that ends before every step was typed fails.
    pub fn type_after(self, text: &str, bytes: &[u8]) -> Boot {
        self.type_after_all(&[text], bytes)
    }

    /// Like [`Boot::type_after`], once every one of `texts` has appeared
    /// (in any order).
    pub fn type_after_all(mut self, texts: &[&str], bytes: &[u8]) -> Boot {
        self.typing.push((texts.iter().map(|t| t.to_string()).collect(), bytes.to_vec()));
        self
    }

    /// The Linux guest (`cargo xtask guests`) as a `domu` module with
    /// `options` (xl's names), followed by its initramfs.
    pub fn linux(self, options: &str) -> Boot {
        let g = linux();
        // Linux met QEMU's EVENTINJ re-delivery in one thread (see
        // `xtask::emulator::TCG_ONE_THREAD`): a thread per CPU for it.
        let mut b = self.module(&g.kernel, &format!("domu {options}")).module(&g.initramfs, "ramdisk");
        b.qemu_one_thread = false;
        b
    }

    pub fn cpus(mut self, n: u32) -> Boot {
        self.cpus = n;
        self
    }

    /// Adds CPU features to QEMU's CPU model (`"+pku,+rdtscp"`): the
    /// features the software emulation has but the default model leaves
    /// out. QEMU only.
    pub fn qemu_cpu_flags(mut self, flags: &str) -> Boot {
        self.qemu_cpu_flags = flags.to_string();
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
    pub fn stop_on_count(self, text: &str, count: usize) -> Boot {
        self.stop_when_all(&[(text, count)])
    }

    /// Stop the machine once every text has appeared in that many serial
    /// lines; the run ends with `End::Saw` of the first text.
    pub fn stop_when_all(mut self, texts: &[(&str, usize)]) -> Boot {
        self.stop_on.push(texts.iter().map(|(t, n)| (t.to_string(), *n)).collect());
        self
    }

    /// The run must print a hypervisor ERROR line containing `text` (a bad
    /// module, a misbehaving guest). Any ERROR line no test expects fails
    /// the test, and so does a boot summary counting other errors.
    pub fn expect_error(mut self, text: &str) -> Boot {
        self.expected.errors.push(text.to_string());
        self
    }

    /// The run must print a crash report: a panic, an exception report or
    /// a fatal stop. Without this, any of them fails the test.
    pub fn expect_crash_report(mut self) -> Boot {
        self.expected.crash_report = true;
        self
    }

    /// The machine must reset. Without this, a reset fails the test.
    pub fn expect_reset(mut self) -> Boot {
        self.expected.reset = true;
        self
    }

    /// Boots and waits for the end, then fails the test if the run did
    /// what no test asked for: a hypervisor ERROR line, a boot summary that
    /// counts errors, a crash report, a machine reset (see
    /// [`Boot::expect_error`] and the like). Panics for harness problems
    /// too (no ISO, no emulator).
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
                q.one_thread = self.qemu_one_thread;
                q.shutdown_log = Some(shutdown_log.clone());
                if !self.qemu_cpu_flags.is_empty() {
                    // The last -cpu option is the one QEMU takes.
                    q.extra = vec!["-cpu".into(), format!("{},{}", xtask::emulator::TCG_CPU, self.qemu_cpu_flags)];
                }
                q.extra.extend(self.qemu_extra.iter().cloned());
                let (stdin, stdout) = if self.typing.is_empty() {
                    q.serial = Serial::File(serial.clone());
                    (Stdio::null(), Stdio::null())
                } else {
                    q.serial = Serial::Redirected;
                    let o = std::fs::File::create(&serial).expect("create the serial log");
                    (Stdio::piped(), Stdio::from(o))
                };
                let mut cmd = q.command().unwrap_or_else(|e| panic!("{}: {e}", self.name));
                let child = cmd.stdin(stdin).stdout(stdout).stderr(stderr).spawn();
                (child.unwrap_or_else(|e| panic!("{}: cannot start QEMU: {e}", self.name)), None)
            }
            Machine::Bochs => {
                assert!(self.typing.is_empty(), "{}: typing on the serial line needs QEMU", self.name);
                assert!(self.qemu_extra.is_empty(), "{}: QEMU devices need QEMU", self.name);
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
        let mut typing = Typing::new(self.typing.clone(), child.stdin.take());
        let end = wait(&mut child, &mut log, ending, &self.stop_on, &mut typing, self.timeout);
        let untyped = typing.pending();
        let whole = dir.join("serial.all.log");
        let _ = std::fs::write(&whole, &log.text);
        let elapsed = started.elapsed();
        record_timing(&self.name, self.machine, elapsed);
        let resets = bochs_log.as_deref().map_or(0, Bochs::resets);
        let o = Outcome { name: self.name, log: log.text.replace('\r', ""), log_path: whole, end, elapsed };
        if let Err(why) = unprovoked(&o.log, &o.end, resets, &self.expected) {
            o.fail(&why);
        }
        if let Some(first) = untyped.first() {
            o.fail(&format!(
                "the run ended before {first:?} appeared, so {} typing step(s) were never typed",
                untyped.len()
            ));
        }
        o
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

    /// Asserts that some line starts with `start` (output written as is,
    /// without a `(dN)` prefix, is told apart from prefixed lines this way).
    /// What the domain holding the serial input wrote, as it wrote it:
    /// the log with the hypervisor's own lines taken out, also those
    /// printed in the middle of one of its lines (its output goes out as
    /// it comes, the hypervisor's a whole line at a time).
    pub fn raw_console(&self) -> String {
        without_hypervisor_lines(&self.log)
    }

    /// A line of [`Outcome::raw_console`] starts with `start`.
    pub fn expect_raw_line_start(&self, start: &str) -> &Self {
        if !self.raw_console().lines().any(|l| l.starts_with(start)) {
            self.fail(&format!("no line of the raw console output starts with {start:?}"));
        }
        self
    }

    pub fn expect_line_start(&self, start: &str) -> &Self {
        if !self.log.lines().any(|l| l.starts_with(start)) {
            self.fail(&format!("no line starts with {start:?}"));
        }
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

    /// Asserts that the hypervisor line right after the first one
    /// containing `a` contains `b` (what happened next, and nothing else).
    pub fn expect_next_line(&self, a: &str, b: &str) -> &Self {
        let mut lines = self.log.lines().filter(|l| level(l).is_some()).skip_while(|l| !l.contains(a));
        match (lines.next(), lines.next()) {
            (Some(_), Some(next)) if next.contains(b) => self,
            (Some(_), next) => self.fail(&format!("after {a:?} came {next:?}, not {b:?}")),
            (None, _) => self.fail(&format!("no line contains {a:?}")),
        }
    }
}

/// The level of a hypervisor log line (`[    0.021276] CPU0 INFO  ...`);
/// None for other lines (firmware, GRUB, crash reports).
fn level(line: &str) -> Option<&str> {
    let rest = line.split_once("] CPU")?.1;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit()).strip_prefix(' ')?;
    rest.split_whitespace().next()
}

/// The lines that say the hypervisor crashed or stopped for good.
const CRASH_MARKS: [&str; 3] = ["PANIC", "exception #", "*** "];
/// What Bochs's serial log shows at a reset (xtask's `SerialLog`).
const REOPENED: &str = "--- serial port reopened";

/// Whether the run printed or did anything that fails every test unless it
/// was `expected`: the reason if it did.
fn unprovoked(log: &str, end: &End, resets: usize, expected: &Provoked) -> Result<(), String> {
    let errors: Vec<&str> = log.lines().filter(|l| level(l) == Some("ERROR")).collect();
    for e in &errors {
        if !expected.errors.iter().any(|t| e.contains(t.as_str())) {
            return Err(format!("unexpected hypervisor error line {e:?}"));
        }
    }
    if let Some(t) = expected.errors.iter().find(|t| !errors.iter().any(|e| e.contains(t.as_str()))) {
        return Err(format!("no hypervisor error line contains {t:?}"));
    }
    // "boot complete in N ms (W warnings, E errors)": every error the boot
    // counted was printed (and so was expected) before it.
    if let Some((at, summary)) = log.lines().enumerate().find(|(_, l)| l.contains("boot complete in ")) {
        let counted: Option<usize> =
            summary.split("warnings, ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok());
        let printed = log.lines().take(at).filter(|l| level(l) == Some("ERROR")).count();
        match counted {
            Some(n) if n == printed => {}
            Some(n) => return Err(format!("the boot counted {n} errors but printed {printed}: {summary:?}")),
            None => return Err(format!("cannot read the error count in {summary:?}")),
        }
    }
    let crash = log.lines().find(|l| CRASH_MARKS.iter().any(|m| l.contains(m)));
    match (crash, expected.crash_report) {
        (Some(l), false) => return Err(format!("unexpected crash line {l:?}")),
        (None, true) => return Err("expected a crash report, and none came".into()),
        _ => {}
    }
    let reset = *end == End::Reset || resets > 0 || log.contains(REOPENED);
    match (reset, expected.reset) {
        (true, false) => Err(format!("the machine reset (ended: {end:?}, resets in the emulator's log: {resets})")),
        (false, true) => Err("expected the machine to reset, and it did not".into()),
        _ => Ok(()),
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
/// `log` without the hypervisor's lines (`[    1.234567] CPU0 INFO  ...`
/// up to the end of the line), wherever they start.
pub fn without_hypervisor_lines(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut rest = log;
    while let Some(at) = rest.find('[') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if is_hypervisor_line(tail) {
            rest = tail.find('\n').map_or("", |n| &tail[n + 1..]);
        } else {
            out.push('[');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Whether `s` starts with the hypervisor's line prefix: `[`, a time in
/// seconds with six decimals, `] CPU`, a number, a space.
fn is_hypervisor_line(s: &str) -> bool {
    let Some(close) = s.find(']').filter(|&c| c < 24) else { return false };
    let time = s[1..close].trim_start();
    let Some((secs, frac)) = time.split_once('.') else { return false };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(secs) || frac.len() != 6 || !digits(frac) {
        return false;
    }
    let after = &s[close + 1..];
    after.strip_prefix(" CPU").is_some_and(|r| {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        n > 0 && r[n..].starts_with(' ')
    })
}

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
    fn the_raw_console_is_the_log_without_the_hypervisors_lines() {
        // A hypervisor line printed in the middle of the focus domain's
        // line (as a linux_crash run showed), and whole ones.
        let log = "[    0.000000] L[    3.142057] CPU0 INFO  (d1) [    2.068192] ACPI: No IOAPIC\n\
inux version 6.1.0\n\
[   12.000001] CPU13 WARN  something\n\
/ # [6nexit\n\
[    4.682185] reboot: System halted\n";
        assert_eq!(
            without_hypervisor_lines(log),
            "[    0.000000] Linux version 6.1.0\n/ # [6nexit\n[    4.682185] reboot: System halted\n"
        );
        assert!(!is_hypervisor_line("[    4.682185] reboot"));
        assert!(!is_hypervisor_line("[ 1.5] CPU0 INFO"), "six decimals");
        assert!(!is_hypervisor_line("[    1.000000] CPUx INFO"));
        assert!(!is_hypervisor_line("["));
    }

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

    const BOOT: &str = "\
[    0.01] CPU0 INFO  hypervisor starting
[    0.02] CPU0 ERROR module 0: refused: not an ELF image
[    0.03] CPU0 INFO  boot complete in 30 ms (0 warnings, 1 errors)
[    0.04] CPU0 INFO  (d1) ERROR is only a word a guest printed
[    0.05] CPU0 INFO  Powering off.
";

    fn refused() -> Provoked {
        Provoked { errors: vec!["refused: not an ELF image".into()], ..Provoked::default() }
    }

    #[test]
    fn error_lines_fail_a_run_unless_expected_and_seen() {
        let off = End::PoweredOff;
        assert_eq!(unprovoked(BOOT, &off, 0, &refused()), Ok(()));
        let why = unprovoked(BOOT, &off, 0, &Provoked::default()).unwrap_err();
        assert!(why.contains("unexpected hypervisor error line") && why.contains("not an ELF image"), "{why}");
        let mut two = refused();
        two.errors.push("truncated".into());
        assert!(unprovoked(BOOT, &off, 0, &two).unwrap_err().contains("no hypervisor error line contains"));
        // An error the boot counted but did not show.
        let hidden = BOOT.replace("1 errors", "2 errors");
        assert!(unprovoked(&hidden, &off, 0, &refused()).unwrap_err().contains("counted 2 errors but printed 1"));
        let quiet = BOOT.replace("[    0.02] CPU0 ERROR module 0: refused: not an ELF image\n", "");
        assert!(unprovoked(&quiet, &off, 0, &Provoked::default()).unwrap_err().contains("counted 1 errors"));
    }

    #[test]
    fn crash_reports_and_resets_fail_a_run_unless_expected() {
        let off = End::PoweredOff;
        let panicked = format!("{BOOT}*** PANIC on CPU0: late\n");
        assert!(unprovoked(&panicked, &off, 0, &refused()).unwrap_err().contains("unexpected crash line"));
        let asked = Provoked { crash_report: true, ..refused() };
        assert_eq!(unprovoked(&panicked, &off, 0, &asked), Ok(()));
        assert!(unprovoked(BOOT, &off, 0, &asked).unwrap_err().contains("expected a crash report"));
        // QEMU's reset, Bochs's log, Bochs's serial file shrinking.
        let reopened = format!("{BOOT}\n{REOPENED} (machine reset) ---\n");
        for (log, end, resets) in [(BOOT, End::Reset, 0), (BOOT, off.clone(), 1), (reopened.as_str(), off.clone(), 0)] {
            let why = unprovoked(log, &end, resets, &refused()).unwrap_err();
            assert!(why.contains("the machine reset"), "{why}");
            assert_eq!(unprovoked(log, &end, resets, &Provoked { reset: true, ..refused() }), Ok(()));
        }
        let want_reset = Provoked { reset: true, ..refused() };
        assert!(unprovoked(BOOT, &off, 0, &want_reset).unwrap_err().contains("expected the machine to reset"));
    }

    #[test]
    fn the_next_line_is_the_next_hypervisor_line() {
        let o = Outcome {
            name: "t".into(),
            log: "[ 1] CPU0 INFO  all domains have shut down\n*** PANIC on CPU0: x\n[ 2] CPU0 INFO  System halted.\n"
                .into(),
            log_path: "x".into(),
            end: End::Saw(HALTED.into()),
            elapsed: Duration::ZERO,
        };
        // Lines that are not the hypervisor's log lines are passed over (the
        // run check catches crash reports).
        o.expect_next_line("all domains have shut down", "INFO  System halted.");
        let panicked = Outcome { log: o.log.replace("[ 2] CPU0 INFO  System", "[ 2] CPU1 ERROR x\nSystem"), ..o };
        let r = std::panic::catch_unwind(|| {
            panicked.expect_next_line("all domains have shut down", "INFO  System halted.");
        });
        assert!(r.is_err());
    }

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
