//! `cargo xtask bench`: path-length figures under QEMU's
//! `-icount shift=0,sleep=off`, where one virtual nanosecond is one
//! executed instruction, so the hypervisor's nanosecond time stamps and the
//! guests' TSC deltas count instructions. Figures are reported, not asserted.

use crate::emulator::{self, Accel, End, Ending, Qemu, Serial, SerialLog};
use crate::images::{self, Images, IsoSpec, Module};
use crate::sched_report::Report;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// One measured figure.
pub struct Figure {
    pub name: &'static str,
    pub value: Option<u64>,
    pub unit: &'static str,
    pub target: &'static str,
    /// Xen 4.17's figure for the same path: a reference measured apart
    /// from this tool (see [`XEN_REFERENCE`]), not by this run.
    pub xen: &'static str,
}

/// Where the Xen column comes from.
pub const XEN_REFERENCE: &str = "The Xen 4.17 column is a reference, not measured by this tool: Xen 4.17 \
(Debian's build) with a Debian 6.1 dom0 and a PVH domU on the same emulated machine (QEMU TCG, \
-icount shift=0,sleep=off), measured on 2026-11-22 and kept in the project's performance targets \
(../shared/docs/perf-targets.md, beside this repository).";

/// The commit the images are built from, as `git describe --always
/// --dirty` gives it (a `-dirty` suffix when the work tree has changes).
pub fn commit() -> String {
    let out = std::process::Command::new("git")
        .current_dir(images::workspace_root())
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "unknown (not a git work tree)".to_string(),
    }
}

/// Boots `spec` under icount on one CPU until `stop` appears (or
/// power-off); returns the serial log and the QEMU command line.
fn run_icount(spec: &IsoSpec, name: &str, stop: &str) -> Result<(String, String), String> {
    run_qemu(spec, name, QemuRun { cpus: 1, icount: true, stop, count: 1, poweroff_ok: true })
}

/// How a benchmark boots QEMU (TCG) and when it stops.
struct QemuRun<'a> {
    cpus: u32,
    /// `-icount shift=0,sleep=off`: one virtual nanosecond per instruction.
    icount: bool,
    /// Stop once a serial line containing this has appeared `count` times.
    stop: &'a str,
    count: usize,
    /// Whether the machine powering off first is a good end too.
    poweroff_ok: bool,
}

/// Boots `spec` in QEMU as `run` says; returns the serial log (kept in
/// target/bench/`name`/) and the QEMU command line.
fn run_qemu(spec: &IsoSpec, name: &str, run: QemuRun<'_>) -> Result<(String, String), String> {
    let dir = images::target_dir().join("bench").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let iso = images::make_iso(spec, &images::target_dir().join("iso"))?;
    let serial = dir.join("serial.log");
    let mut q = Qemu::new(iso);
    q.accel = Accel::Tcg;
    q.icount = run.icount;
    q.cpus = run.cpus;
    q.memory_mib = 512;
    q.serial = Serial::File(serial.clone());
    let shutdown_log = dir.join("qemu-shutdown.log");
    q.shutdown_log = Some(shutdown_log.clone());
    let mut cmd = q.command()?;
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start QEMU: {e}"))?;
    let mut log = SerialLog::new(serial);
    let stops = [vec![(run.stop.to_string(), run.count)]];
    let end = emulator::wait(
        &mut child,
        &mut log,
        Ending::Qemu(&shutdown_log),
        &stops,
        &mut emulator::Typing::default(),
        Duration::from_secs(600),
    );
    match end {
        End::Saw(_) => Ok((log.text, shown)),
        End::PoweredOff if run.poweroff_ok => Ok((log.text, shown)),
        other => Err(format!("{name}: the run ended with {other:?}; see {}", dir.display())),
    }
}

/// Boots `spec` in Bochs (VT-x) until power-off; returns the serial log.
/// Bochs keeps time by counting instructions (`ips`, with its default
/// `clock: sync=none`), and its TSC advances one tick per instruction, so
/// a guest's RDTSC deltas count instructions here too.
fn run_bochs(spec: &IsoSpec, name: &str) -> Result<String, String> {
    let dir = images::target_dir().join("bench").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let iso = images::make_iso(spec, &images::target_dir().join("iso"))?;
    let b = emulator::Bochs::new(iso, dir.clone());
    let bochs_log = b.log_path();
    let mut child = b
        .command()?
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start Bochs: {e}"))?;
    let mut log = SerialLog::new(b.serial_log.clone());
    let end = emulator::wait(
        &mut child,
        &mut log,
        Ending::Bochs(&bochs_log),
        &[],
        &mut emulator::Typing::default(),
        Duration::from_secs(600),
    );
    match end {
        End::PoweredOff => Ok(log.text),
        other => Err(format!("{name}: the run ended with {other:?}; see {}", dir.display())),
    }
}

/// The time stamp (ns since hypervisor entry) of the first line containing
/// `needle`.
fn stamp(log: &str, needle: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains(needle))?;
    let inner = line.trim_start().strip_prefix('[')?.split(']').next()?.trim();
    let (s, us) = inner.split_once('.')?;
    Some(s.parse::<u64>().ok()? * 1_000_000_000 + us.parse::<u64>().ok()? * 1000)
}

/// Hypervisor entry to "boot complete", only from a boot that built no
/// domain (creating one is part of the boot's time).
fn boot_without_domains(log: &str) -> Option<u64> {
    if log.contains("creating domain") {
        return None;
    }
    stamp(log, "boot complete")
}

/// The number after `key` on a `BENCH` line.
fn bench_value(log: &str, key: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("BENCH") && l.contains(key))?;
    line.split(key).nth(1)?.split_whitespace().next()?.parse().ok()
}

pub fn run(imgs: &Images) -> Result<Vec<Figure>, String> {
    let commit = commit();
    eprintln!("xtask: benchmarks of commit {commit}");
    let mut figures = Vec::new();
    let mut commands = Vec::new();

    // Hypercall and CPUID round trips, and domain creation to first line.
    let spec = IsoSpec {
        hypervisor: imgs.hypervisor.clone(),
        cmdline: "loglvl=info".into(),
        modules: vec![Module { path: imgs.guest("bench"), cmdline: "domu name=bench memory=4".into() }],
    };
    let (log, cmd) = run_icount(&spec, "guest", "Powering off.")?;
    commands.push(cmd);
    figures.push(Figure {
        name: "null hypercall round trip (xen_version) from a PVH guest",
        value: bench_value(&log, "null_hypercall_round_trip"),
        unit: "instructions",
        target: "<= 570",
        xen: "~5,660",
    });
    figures.push(Figure {
        name: "CPUID round trip from a PVH guest",
        value: bench_value(&log, "cpuid_round_trip"),
        unit: "instructions",
        target: "-",
        xen: "-",
    });
    let created = stamp(&log, "creating domain 1 (bench)");
    let first = stamp(&log, "(d1) bench: started");
    figures.push(Figure {
        name: "create a PVH domU (4 MiB) from its ELF -> its first console line",
        value: created.zip(first).map(|(a, b)| b.saturating_sub(a)),
        unit: "instructions",
        target: "<= 5 M",
        xen: "0.67-0.71 G",
    });

    // Event channels and grants between two domains, on one CPU.
    let ev_spec = IsoSpec {
        hypervisor: imgs.hypervisor.clone(),
        cmdline: "loglvl=info".into(),
        modules: vec![
            Module {
                path: imgs.guest("bench-events"),
                cmdline: "domu name=ping memory=8 evtchn=10:pong:10,11:pong:11 grant=0:pong:0x500,1:pong:0x600 \
                          cmdline=\"role=ping peer=2 rounds=2000\""
                    .into(),
            },
            Module {
                path: imgs.guest("bench-events"),
                cmdline: "domu name=pong memory=8 cmdline=\"role=pong peer=1 rounds=2000\"".into(),
            },
        ],
    };
    let (log, cmd) = run_icount(&ev_spec, "events", "Powering off.")?;
    commands.push(cmd);
    // Their checks say the operations timed really succeeded.
    for d in [1, 2] {
        if !log.contains(&format!("(d{d}) VERDICT: PASS")) {
            return Err(format!("events: domain {d} did not pass its checks; see {}", log_dir().display()));
        }
    }
    for (name, key, unit) in [
        (
            "event channel send -> other domain's upcall -> send back -> upcall (1 CPU)",
            "evtchn_round_trip",
            "instructions",
        ),
        ("grant map + unmap of one page by a PVH domain", "grant_map_unmap", "instructions"),
        ("grant copy of a whole page, grant -> local frame", "grant_copy_4k", "instructions"),
        ("grant copy throughput", "grant_copy_throughput", "bytes per 1000 instructions"),
    ] {
        figures.push(Figure { name, value: bench_value(&log, key), unit, target: "-", xen: "-" });
    }

    // The same round trips on VT-x.
    let log = run_bochs(&spec, "guest-vtx")?;
    figures.push(Figure {
        name: "null hypercall round trip on VT-x (Bochs corei7_skylake_x)",
        value: bench_value(&log, "null_hypercall_round_trip"),
        unit: "instructions",
        target: "-",
        xen: "-",
    });
    figures.push(Figure {
        name: "CPUID round trip on VT-x (Bochs)",
        value: bench_value(&log, "cpuid_round_trip"),
        unit: "instructions",
        target: "-",
        xen: "-",
    });

    // Hypervisor entry to dom0.
    let spec = IsoSpec {
        hypervisor: imgs.hypervisor.clone(),
        cmdline: "loglvl=info dom0_mem=32M".into(),
        modules: vec![Module { path: imgs.dom0.clone(), cmdline: "dom0".into() }],
    };
    let (log, cmd) = run_icount(&spec, "dom0", "(d0) dom0-kernel-shim: ready")?;
    commands.push(cmd);
    figures.push(Figure {
        name: "hypervisor entry -> dom0's first console line (dom0_mem=32M)",
        value: stamp(&log, "(d0) "),
        unit: "instructions",
        target: "<= 20 M",
        xen: "0.80-0.92 G",
    });

    // Hypervisor entry to the end of boot, with no module at all.
    let spec = IsoSpec { hypervisor: imgs.hypervisor.clone(), cmdline: "loglvl=info".into(), modules: vec![] };
    let (log, cmd) = run_icount(&spec, "boot", "Powering off.")?;
    commands.push(cmd);
    figures.push(Figure {
        name: "hypervisor entry -> boot complete (no domain)",
        value: boot_without_domains(&log),
        unit: "instructions",
        target: "-",
        xen: "-",
    });

    let shares = run_shares(imgs)?;

    println!("Commit {commit}, release build.");
    println!();
    println!("Path lengths under QEMU TCG, -cpu {} -icount shift=0,sleep=off:", emulator::TCG_CPU);
    println!();
    println!("| figure | measured | our target | Xen 4.17 (reference) |");
    println!("|---|---|---|---|");
    for f in &figures {
        let v = f.value.map_or_else(|| "not measured".to_string(), |v| format!("{} {}", group(v), f.unit));
        println!("| {} | {} | {} | {} |", f.name, v, f.target, f.xen);
    }
    println!();
    println!("{XEN_REFERENCE}");
    println!();
    println!("VT-x figures come from Bochs ({}), whose TSC counts instructions.", emulator::BOCHS_CPU);
    println!("Commands (QEMU, serial to target/bench/*/serial.log):");
    for c in commands {
        println!("  {c}");
    }
    println!();
    print!("{shares}");
    Ok(figures)
}

/// What the shares runs boot: spin guests (CPU-bound, interrupts off) on
/// two CPUs, with a scheduler report every REPORT_MS.
const REPORT_MS: u32 = 500;
/// Reports before the window (every domain is up by then) and in it.
const SKIP_REPORTS: usize = 3;
const WINDOW_REPORTS: usize = 10;

/// The reports a share is measured between: the first complete one after
/// SKIP_REPORTS, and WINDOW_REPORTS complete ones later (the run goes on
/// a little after its last stop line, so later reports are left out).
fn share_window<'a>(reports: &'a [Report], names: &[&str]) -> Option<(&'a Report, &'a Report)> {
    let mut full = reports.iter().skip(SKIP_REPORTS).filter(|r| names.iter().all(|n| r.domain(n).is_some()));
    let from = full.next()?;
    let to = full.nth(WINDOW_REPORTS - 1)?;
    Some((from, to))
}

/// CPU shares from the scheduler's own accounting (`sched_report=`): four
/// domains with weights 1:1:2:4, then a 25% cap beside a pinned and a free
/// domain, each on two CPUs. Returns the tables to print.
fn run_shares(imgs: &Images) -> Result<String, String> {
    use crate::sched_report;
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "CPU shares on 2 CPUs (QEMU TCG, -smp 2, real time), from the scheduler's accounting \
         (sched_report={REPORT_MS}) over {WINDOW_REPORTS} report intervals; the window is the \
         scheduler's time between the two reports:"
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| run | window | domain | options | CPUs used | share of the busy time | expected | ran on CPUs |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let runs: [(&str, &[(&str, &str, f64)]); 2] = [
        (
            "weights 1:1:2:4",
            &[
                ("w1a", "weight=64", 0.125),
                ("w1b", "weight=64", 0.125),
                ("w2", "weight=128", 0.25),
                ("w4", "weight=256", 0.5),
            ],
        ),
        // Expected: a quarter CPU for the capped one; the pinned and the free
        // one split the remaining 1.75 CPUs.
        ("cap and pinning", &[("capped", "cap=25", 0.25 / 2.0), ("pinned", "cpus=1", 0.4375), ("free", "", 0.4375)]),
    ];
    for (run, doms) in runs {
        let spec = IsoSpec {
            hypervisor: imgs.hypervisor.clone(),
            cmdline: format!("loglvl=info sched_report={REPORT_MS}"),
            modules: doms
                .iter()
                .map(|(name, opts, _)| Module {
                    path: imgs.guest("spin"),
                    cmdline: format!("domu name={name} memory=4 {opts}"),
                })
                .collect(),
        };
        let tag = run.replace([' ', ':'], "-");
        // Real time on two CPUs: shares come from the scheduler's accounting.
        let how = QemuRun {
            cpus: 2,
            icount: false,
            stop: "sched: report at",
            count: SKIP_REPORTS + WINDOW_REPORTS + 2,
            poweroff_ok: false,
        };
        let (log, _) = run_qemu(&spec, &tag, how)?;
        let reports = sched_report::parse(&log);
        let names: Vec<&str> = doms.iter().map(|d| d.0).collect();
        let Some((from, to)) = share_window(&reports, &names) else {
            return Err(format!("{run}: only {} scheduler reports", reports.len()));
        };
        let window_s = (to.at_us - from.at_us) as f64 / 1e6;
        let used = sched_report::cpu_fractions(from, to, &names).map_err(|e| format!("{run}: {e}"))?;
        let shares = sched_report::shares(from, to, &names).map_err(|e| format!("{run}: {e}"))?;
        for (i, (name, opts, expected)) in doms.iter().enumerate() {
            let cpus = to.domain(name).map_or("?", |d| d.cpus.as_str());
            let _ = writeln!(
                out,
                "| {run} | {window_s:.2} s | {name} | {} | {:.3} | {:.3} | {expected:.3} | {cpus} |",
                if opts.is_empty() { "-" } else { opts },
                used[i],
                shares[i]
            );
        }
    }
    Ok(out)
}

fn group(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Where the last run's logs are.
pub fn log_dir() -> PathBuf {
    images::target_dir().join("bench")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stamps_and_bench_lines() {
        let log = "[    0.010015] CPU0 INFO  x\n[    1.000250] CPU0 INFO  (d1) BENCH null_hypercall_round_trip 538 per call\n";
        assert_eq!(stamp(log, "(d1)"), Some(1_000_250_000));
        assert_eq!(stamp(log, "nothing"), None);
        assert_eq!(bench_value(log, "null_hypercall_round_trip"), Some(538));
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(group(12), "12");
    }

    #[test]
    fn boot_time_comes_only_from_a_boot_without_domains() {
        let bare = "[    0.018000] CPU0 INFO  boot complete in 18 ms (0 warnings, 0 errors)\n";
        assert_eq!(boot_without_domains(bare), Some(18_000_000));
        let dom0 = format!("[    0.017000] CPU0 INFO  creating domain 0 (Domain-0) from module 0\n{bare}");
        assert_eq!(boot_without_domains(&dom0), None);
    }

    #[test]
    fn shares_are_measured_over_exactly_the_window_reports() {
        // Reports every 500 ms; the run went on for two more after the
        // window, and the first report is incomplete.
        let mut log = String::new();
        for i in 0..16u64 {
            log.push_str(&format!("sched: report at {} us\n", 500_000 * (i + 1)));
            if i > 0 {
                log.push_str(&format!("sched: domain 1 (a) weight 256 cap 0 cpu time {} us on cpus 0\n", i * 1000));
            }
        }
        let r = crate::sched_report::parse(&log);
        let (from, to) = share_window(&r, &["a"]).unwrap();
        assert_eq!((from.at_us, to.at_us), (2_000_000, 7_000_000));
        assert!(share_window(&r[..13], &["a"]).is_none(), "too few reports");
    }
}
