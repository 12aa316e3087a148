//! `cargo xtask fuzz`: boots the hypercall fuzzer guest (two domains that
//! know each other, by default) for as many calls as asked, waits for the
//! machine to end, and says whether the hypervisor survived: the fuzzers'
//! summaries (seed, calls, calls/s, coverage), every hypervisor panic or
//! ERROR line, and the end-of-run memory check.

use crate::emulator::{self, Accel, Bochs, End, Ending, Qemu, Serial, SerialLog};
use crate::images::{self, Images, IsoSpec, Module};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// What to fuzz.
#[derive(Debug, Clone)]
pub struct FuzzOpts {
    /// Hypercalls per domain.
    pub calls: u64,
    /// Domain 1's seed; domain 2 takes seed + 1.
    pub seed: u64,
    /// Fuzzing vCPUs per domain (each domain has one spare more).
    pub vcpus: u32,
    /// Fuzzer domains: 1, or 2 that are each other's peer.
    pub domains: u32,
    pub bochs: bool,
    /// Physical CPUs of the machine.
    pub cpus: u32,
    /// Each call printed from this call index of each vCPU on.
    pub trace: Option<u64>,
    /// `poweroff`, `crash` or `down` (default: by seed).
    pub end: Option<String>,
    /// Only these families (the guest's `only=`), not these (`skip=`).
    pub only: Option<String>,
    pub skip: Option<String>,
    /// How far each fuzzer grows its grant table (the guest's default 16).
    pub grant_frames: Option<u32>,
}

impl Default for FuzzOpts {
    fn default() -> Self {
        FuzzOpts {
            calls: 100_000,
            seed: 1,
            vcpus: 2,
            domains: 2,
            bochs: false,
            cpus: 2,
            trace: None,
            end: None,
            only: None,
            skip: None,
            grant_frames: None,
        }
    }
}

/// The module lines for the fuzzer domains.
pub fn modules(imgs: &Images, o: &FuzzOpts) -> Vec<Module> {
    (1..=o.domains.clamp(1, 2))
        .map(|d| {
            let peer = if o.domains >= 2 { format!(" peer={} port=10", 3 - d) } else { String::new() };
            let channel = if d == 1 && o.domains >= 2 { " evtchn=10:fuzz-2:10" } else { "" };
            let trace = o.trace.map_or(String::new(), |t| format!(" trace={t}"));
            let end = o.end.as_ref().map_or(String::new(), |e| format!(" end={e}"))
                + &o.only.as_ref().map_or(String::new(), |f| format!(" only={f}"))
                + &o.skip.as_ref().map_or(String::new(), |f| format!(" skip={f}"))
                + &o.grant_frames.map_or(String::new(), |n| format!(" grant_frames={n}"));
            Module {
                path: imgs.guest("fuzz"),
                cmdline: format!(
                    "domu name=fuzz-{d} memory=8 vcpus={}{channel} cmdline=\"seed={:#x} calls={} fuzzers={}{peer}{trace}{end}\"",
                    o.vcpus + 1,
                    o.seed.wrapping_add(d as u64 - 1),
                    o.calls,
                    o.vcpus
                ),
            }
        })
        .collect()
}

/// What a fuzz run showed.
#[derive(Debug, Default)]
pub struct Report {
    pub end: String,
    pub summaries: Vec<String>,
    pub coverage: Vec<String>,
    /// Panics, exception reports, ERROR lines.
    pub trouble: Vec<String>,
    pub memory: Option<String>,
    /// Lines saying a fuzzer guest itself went wrong.
    pub fuzzer_bugs: Vec<String>,
    /// The hypervisor's lines saying it ended a fuzzer domain for what
    /// the domain did (a fuzzer that hurt itself, or a hypervisor that
    /// was wrong to): not the host failing.
    pub killed: Vec<String>,
    pub seconds: f64,
    /// Domains that printed no summary (the guest died first).
    pub unfinished: Vec<u32>,
}

impl Report {
    /// The hypervisor survived: no panic, no ERROR line, every domain's
    /// memory back, the machine powered off.
    pub fn survived(&self) -> bool {
        self.trouble.is_empty()
            && self.end == "PoweredOff"
            && self.memory.as_deref().is_some_and(|m| m.contains("free again"))
    }
}

/// Reads a fuzz run's serial log of `domains` fuzzer domains.
pub fn report(log: &str, end: &End, seconds: f64, domains: u32) -> Report {
    let mut r = Report { end: format!("{end:?}"), seconds, ..Report::default() };
    r.unfinished = (1..=domains).filter(|d| !log.contains(&format!("(d{d}) fuzz: summary: "))).collect();
    let mut in_crash = false;
    for l in log.lines() {
        let hv = l.split_once("] CPU").map(|(_, rest)| rest);
        let level = hv.and_then(|r| r.trim_start_matches(|c: char| c.is_ascii_digit()).split_whitespace().next());
        if l.contains(" fuzz: summary: ") {
            r.summaries.push(l.to_string());
        } else if l.contains(" fuzz: coverage ") || l.contains(" fuzz: HVM params") {
            r.coverage.push(l.to_string());
        } else if l.contains("FUZZER BUG") || l.contains("guest exception") || l.contains("guest panic") {
            r.fuzzer_bugs.push(l.to_string());
        }
        if l.contains("memory: ") && (l.contains("free again") || l.contains("not returned")) {
            r.memory = Some(l.to_string());
        }
        let crash = l.contains("PANIC") || l.contains("*** ") || l.contains("exception #");
        if level == Some("ERROR") && !crash && is_domain_crash(l) {
            r.killed.push(l.to_string());
        } else if level == Some("ERROR") || crash || (in_crash && !l.contains("] CPU")) {
            in_crash |= crash;
            r.trouble.push(l.to_string());
        }
    }
    r
}

/// The hypervisor's "domain N (name) crashed: why" line.
fn is_domain_crash(l: &str) -> bool {
    l.split_once(" ERROR domain ").is_some_and(|(_, rest)| {
        rest.split_once(' ').is_some_and(|(id, rest)| id.parse::<u16>().is_ok() && rest.contains(") crashed: "))
    })
}

/// How long a run may take: a minute to boot and end, plus the calls at a
/// slow emulator's pace.
fn timeout(o: &FuzzOpts) -> Duration {
    let per_second = if o.bochs { 300 } else { 2000 };
    Duration::from_secs(120 + o.calls * o.domains as u64 / per_second)
}

pub fn run(imgs: &Images, o: &FuzzOpts) -> Result<Report, String> {
    let spec =
        IsoSpec { hypervisor: imgs.hypervisor.clone(), cmdline: "loglvl=info".into(), modules: modules(imgs, o) };
    let dir = images::target_dir().join("fuzz");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let iso = images::make_iso(&spec, &images::target_dir().join("iso"))?;
    let serial = dir.join("serial.log");
    let started = Instant::now();
    let shutdown_log = dir.join("qemu-shutdown.log");
    let (mut child, bochs_log) = if o.bochs {
        let mut b = Bochs::new(iso, dir.join("bochs"));
        b.cpus = o.cpus;
        b.serial_log = serial.clone();
        let log = b.log_path();
        let c = b.command()?.stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        (c.map_err(|e| format!("cannot start Bochs: {e}"))?, Some(log))
    } else {
        let mut q = Qemu::new(iso);
        q.one_thread = true;
        q.accel = Accel::Tcg;
        q.cpus = o.cpus;
        q.serial = Serial::File(serial.clone());
        q.shutdown_log = Some(shutdown_log.clone());
        let c = q.command()?.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        (c.map_err(|e| format!("cannot start QEMU: {e}"))?, None)
    };
    eprintln!(
        "xtask: fuzzing: {} domain(s), {} calls each on {} vCPUs, seed {:#x}, in {}; log: {}",
        o.domains,
        o.calls,
        o.vcpus,
        o.seed,
        if o.bochs { "Bochs (VT-x)" } else { "QEMU (AMD-V, TCG)" },
        serial.display()
    );
    let mut log = SerialLog::new(serial);
    let ending = match &bochs_log {
        Some(l) => Ending::Bochs(l),
        None => Ending::Qemu(&shutdown_log),
    };
    // A panic halts the machine: stop there.
    let stops = [vec![("*** System halted".to_string(), 1)], vec![("INFO  System halted.".to_string(), 1)]];
    let end = emulator::wait(&mut child, &mut log, ending, &stops, &mut emulator::Typing::default(), timeout(o));
    let _ = std::fs::write(dir.join("serial.all.log"), &log.text);
    Ok(report(&log.text.replace('\r', ""), &end, started.elapsed().as_secs_f64(), o.domains.clamp(1, 2)))
}

/// Prints a report; Err if the hypervisor did not survive.
pub fn print(r: &Report, o: &FuzzOpts) -> Result<(), String> {
    for l in r.coverage.iter().chain(&r.summaries) {
        println!("{}", l.split_once("INFO  ").map_or(l.as_str(), |(_, t)| t));
    }
    for l in &r.fuzzer_bugs {
        println!("fuzzer bug (not the hypervisor's): {l}");
    }
    for l in &r.killed {
        println!("domain ended by the hypervisor (a fuzzer bug, unless the hypervisor was wrong to): {l}");
    }
    for l in &r.trouble {
        println!("{l}");
    }
    println!("{}", r.memory.as_deref().unwrap_or("memory: no end-of-run memory check (the machine did not end)"));
    println!("machine ended: {} after {:.0} s", r.end, r.seconds);
    for d in &r.unfinished {
        println!(
            "domain {d} ended before its summary (see its last lines: a guest panic or exception is a fuzzer bug)"
        );
    }
    let seeds = (0..o.domains.clamp(1, 2)).map(|d| format!("{:#x}", o.seed.wrapping_add(d as u64))).collect::<Vec<_>>();
    if r.survived() {
        println!("host survived: yes (seeds {})", seeds.join(", "));
        if r.unfinished.is_empty() { Ok(()) } else { Err("a fuzzer domain did not finish".into()) }
    } else {
        println!("host survived: NO (seeds {}; repeat with --seed {:#x})", seeds.join(", "), o.seed);
        Err("the hypervisor did not survive the fuzzer".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_finds_panics_errors_and_the_memory_check() {
        let log = "\
[    1.0] CPU0 INFO  (d1) fuzz: summary: seed 0x1: 10 calls
[    1.1] CPU0 INFO  memory: every domain's memory is free again (100 KiB)
";
        let r = report(log, &End::PoweredOff, 1.0, 2);
        assert!(r.survived());
        assert_eq!(r.unfinished, [2]);
        assert_eq!(r.summaries.len(), 1);
        let bad =
            format!("{log}[    1.2] CPU1 ERROR memory: 8 KiB given to domains were not returned when they ended\n");
        assert!(!report(&bad, &End::PoweredOff, 1.0, 1).survived());
        let panicked = "*** PANIC on CPU0: boom\n  at hypervisor::x\n[ 2.0] CPU0 INFO  next\n";
        let r = report(panicked, &End::Saw("*** System halted".into()), 1.0, 1);
        assert_eq!(r.trouble, ["*** PANIC on CPU0: boom", "  at hypervisor::x"]);
        assert!(!r.survived());
    }

    #[test]
    fn a_domain_the_hypervisor_ended_is_not_the_host_failing() {
        let log = "\
[    3.4] CPU0 ERROR domain 1 (fuzz-1) crashed: read of unbacked guest-physical 0x0 at rip 0x1000d0
[    3.5] CPU0 INFO  memory: every domain's memory is free again (100 KiB)
";
        let r = report(log, &End::PoweredOff, 1.0, 1);
        assert!(r.survived());
        assert_eq!(r.killed.len(), 1);
        assert_eq!(r.unfinished, [1]);
        // Other ERROR lines about domains still count against the host.
        let other = "[    3.4] CPU0 ERROR domain 1 (fuzz-1): grant table frame leaked\n";
        let r = report(other, &End::PoweredOff, 1.0, 1);
        assert!(r.killed.is_empty() && !r.survived());
    }

    #[test]
    fn two_domains_are_each_others_peer_with_consecutive_seeds() {
        let imgs = Images { hypervisor: "hv".into(), dom0: "d0".into(), guests: "/g".into() };
        let m = modules(&imgs, &FuzzOpts { calls: 5, seed: 0x10, ..FuzzOpts::default() });
        assert_eq!(m.len(), 2);
        assert!(
            m[0].cmdline.contains("evtchn=10:fuzz-2:10") && m[0].cmdline.contains("seed=0x10 calls=5 fuzzers=2 peer=2")
        );
        assert!(
            m[1].cmdline.contains("seed=0x11") && m[1].cmdline.contains("peer=1") && m[1].cmdline.contains("vcpus=3")
        );
    }
}
