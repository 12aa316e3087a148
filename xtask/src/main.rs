//! `cargo xtask <command>`: build, iso, run, test.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use xtask::emulator::{Accel, Bochs, Qemu, Serial};
use xtask::host;
use xtask::images::{self, IsoSpec, Module};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  build              build every bare-metal image
  iso                build a GRUB rescue ISO (BIOS and UEFI); prints its path last
  run                build, then boot in QEMU (or Bochs) with the serial console here
  test               host unit tests, then integration tests in QEMU and Bochs
  guests             fetch Debian's cloud kernel and busybox, build the test initramfs (cached
                     under target/guests/); prints the kernel's and the initramfs's paths
  bench              path-length figures under QEMU -icount (release build)
  fuzz               the hypercall fuzzer: boots two fuzzer domains for --calls N hypercalls each
                     (--seed S), says whether the hypervisor survived and every frame came back
  layers [--edges]   check the hypervisor's layers (hypervisor/layers.toml); --edges lists every use

options for build, iso and run:
  --release          optimised images (default: dev profile, with debug assertions)
  --hv-args \"...\"    hypervisor boot options (see README), e.g. \"loglvl=debug\"
  --module PATH=CMDLINE
                     add a module2 line (repeatable), e.g. --module guest.elf='domu name=a'
  --no-dom0          leave out the dom0 module
  --linux            add Debian's cloud kernel as domain `linux` (256 MiB, 2 vCPUs) with a busybox
                     shell on its console, which gets serial input (see `cargo xtask guests`)

options for run:
  --uefi             boot through OVMF (UEFI GRUB) instead of SeaBIOS
  --bochs            run in Bochs (Intel VT-x with EPT) instead of QEMU
  --cpus N           number of CPUs (default 2; Bochs 1)
  --memory MIB       RAM in MiB (default 512)
  --tcg | --kvm      force QEMU's accelerator (default: KVM when it can nest, else TCG with SVM+NPT)
  --gdb[=PORT]       QEMU GDB stub on PORT (default 1234)
  --gdb-wait         like --gdb, and wait for the debugger before the first instruction
  --disk PATH[:virtio|:nvme]
                     another disk image for dom0 (raw, or qcow2 by its name), on virtio (default) or NVMe
  --nic virtio|e1000e|e1000
                     another NIC for dom0 on QEMU's user network
  --no-devices       leave out dom0's default devices (a virtio disk, target/run/dom0-disk0.img,
                     and a virtio NIC)

options for fuzz:
  --calls N          hypercalls per domain (default 100000)
  --seed S           domain 1's seed, decimal or 0x hex (default 1; domain 2 takes S + 1)
  --vcpus V          fuzzing vCPUs per domain (default 2, at most 4; each domain has a spare more)
  --domains D        1, or 2 fuzzer domains that are each other's peer (default 2)
  --trace N          print every call from each vCPU's call N on (to find the one that hurt)
  --end E            how the domains end: poweroff, crash or down (default: by seed)
  --only F,...       only these hypercall families (memory_op, grant_table_op, event_channel_op,
                     sched_op, vcpu_op, hvm_op, xen_version, set_timer_op, console_io, control, other)
                     or sub-operations (memory_op.populate_physmap)
  --skip F,...       not these families or sub-operations
  --grant-frames N   how far each fuzzer grows its grant table (2-64, default 64, Xen's limit)
  --bochs, --cpus N, --release as for run (default 2 CPUs)

options for test:
  --filter TEXT      run only integration tests whose name contains TEXT (none: an error)
  --unit             host unit tests only
  --integration      integration tests only
";

#[derive(Default, Debug)]
struct Opts {
    release: bool,
    hv_args: String,
    modules: Vec<Module>,
    no_dom0: bool,
    linux: bool,
    uefi: bool,
    bochs: bool,
    cpus: Option<u32>,
    memory: Option<u32>,
    accel: Option<Accel>,
    gdb: Option<u16>,
    gdb_wait: bool,
    disks: Vec<xtask::devices::Disk>,
    nics: Vec<xtask::devices::Nic>,
    no_devices: bool,
    filter: Option<String>,
    unit_only: bool,
    integration_only: bool,
    fuzz: xtask::fuzz::FuzzOpts,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut i = 0;
    let value = |i: &mut usize, name: &str| -> Result<String, String> {
        *i += 1;
        args.get(*i).cloned().ok_or(format!("{name} needs a value"))
    };
    while i < args.len() {
        let a = args[i].as_str();
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a, None),
        };
        let mut val = |name: &str| -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => value(&mut i, name),
            }
        };
        match flag {
            "--release" => o.release = true,
            "--hv-args" => o.hv_args = val("--hv-args")?,
            "--module" => {
                let v = val("--module")?;
                let (path, cmdline) = v.split_once('=').ok_or("--module takes PATH=CMDLINE")?;
                o.modules.push(Module { path: PathBuf::from(path), cmdline: cmdline.to_string() });
            }
            "--no-dom0" => o.no_dom0 = true,
            "--linux" => o.linux = true,
            "--uefi" => o.uefi = true,
            "--bochs" => o.bochs = true,
            "--cpus" | "--smp" => o.cpus = Some(val(flag)?.parse().map_err(|_| "--cpus takes a number")?),
            "--memory" => o.memory = Some(val("--memory")?.parse().map_err(|_| "--memory takes MiB")?),
            "--disk" => o.disks.push(xtask::devices::parse_disk(&val(flag)?)?),
            "--nic" => o.nics.push(xtask::devices::parse_nic(&val(flag)?)?),
            "--no-devices" => o.no_devices = true,
            "--tcg" => o.accel = Some(Accel::Tcg),
            "--kvm" => o.accel = Some(Accel::Kvm),
            "--gdb" => o.gdb = Some(inline.as_deref().map_or(Ok(1234), str::parse).map_err(|_| "--gdb=PORT")?),
            "--gdb-wait" => {
                o.gdb_wait = true;
                o.gdb.get_or_insert(1234);
            }
            "--filter" => o.filter = Some(val("--filter")?),
            "--calls" => o.fuzz.calls = number(&val(flag)?).ok_or("--calls takes a number")?,
            "--seed" => o.fuzz.seed = number(&val(flag)?).ok_or("--seed takes a number (or 0x...)")?,
            "--vcpus" => {
                o.fuzz.vcpus = number(&val(flag)?).filter(|v| (1..=4).contains(v)).ok_or("--vcpus takes 1-4")? as u32
            }
            "--domains" => {
                o.fuzz.domains =
                    number(&val(flag)?).filter(|v| (1..=2).contains(v)).ok_or("--domains takes 1 or 2")? as u32
            }
            "--only" => o.fuzz.only = Some(val(flag)?),
            "--skip" => o.fuzz.skip = Some(val(flag)?),
            "--grant-frames" => {
                let n = number(&val(flag)?).filter(|n| (2..=64).contains(n)).ok_or("--grant-frames takes 2-64")?;
                o.fuzz.grant_frames = Some(n as u32);
            }
            "--trace" => o.fuzz.trace = Some(number(&val(flag)?).ok_or("--trace takes a number")?),
            "--end" => {
                let e = val(flag)?;
                if !["poweroff", "crash", "down"].contains(&e.as_str()) {
                    return Err("--end takes poweroff, crash or down".into());
                }
                o.fuzz.end = Some(e);
            }
            "--unit" => o.unit_only = true,
            "--integration" => o.integration_only = true,
            other => return Err(format!("unknown option {other}\n\n{USAGE}")),
        }
        i += 1;
    }
    Ok(o)
}

/// A number in decimal or 0x hexadecimal.
fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `cargo xtask fuzz`.
fn fuzz(o: &Opts) -> Result<(), String> {
    host::ensure_packages(host::PACKAGES)?;
    let imgs = images::build(o.release)?;
    let mut f = o.fuzz.clone();
    f.bochs = o.bochs;
    f.cpus = o.cpus.unwrap_or(2);
    let r = xtask::fuzz::run(&imgs, &f)?;
    xtask::fuzz::print(&r, &f)
}

/// `--linux`: the Linux domain's module line.
const LINUX_DOMAIN: &str = "domu name=linux memory=256 vcpus=2 cmdline=\"console=hvc0\"";

fn iso_for(o: &Opts) -> Result<(PathBuf, images::Images), String> {
    let imgs = images::build(o.release)?;
    let mut modules = Vec::new();
    if !o.no_dom0 {
        modules.push(Module { path: imgs.dom0.clone(), cmdline: "dom0".into() });
    }
    modules.extend(o.modules.iter().cloned());
    let mut cmdline = o.hv_args.clone();
    if o.linux {
        let g = guests()?;
        // Domains are numbered in module order: dom0 is 0, the first domU 1.
        let id = modules.iter().filter(|m| m.cmdline.starts_with("domu")).count() + 1;
        modules.push(Module { path: g.vmlinux, cmdline: LINUX_DOMAIN.into() });
        modules.push(Module { path: g.initramfs, cmdline: "ramdisk".into() });
        cmdline = format!("serial_input={id} {cmdline}").trim().to_string();
    }
    let spec = IsoSpec { hypervisor: imgs.hypervisor.clone(), cmdline, modules };
    Ok((images::make_iso(&spec, &images::target_dir().join("iso"))?, imgs))
}

fn run(o: &Opts) -> Result<(), String> {
    host::ensure_packages(host::PACKAGES)?;
    let (iso, imgs) = iso_for(o)?;
    if o.bochs {
        if !o.disks.is_empty() || !o.nics.is_empty() {
            return Err("--disk and --nic are for QEMU (Bochs has its own IDE and e1000)".into());
        }
        let mut b = Bochs::new(iso, images::target_dir().join("bochs-run"));
        b.cpus = o.cpus.unwrap_or(1);
        b.memory_mib = o.memory.unwrap_or(512);
        let _ = std::fs::remove_file(&b.serial_log);
        eprintln!("xtask: Bochs ({} CPU model); serial output: {}", b.model, b.serial_log.display());
        let mut child = b.command()?.spawn().map_err(|e| format!("cannot start bochs: {e}"))?;
        // Follow the serial log on this terminal until Bochs exits.
        let mut shown = 0;
        loop {
            if let Ok(s) = std::fs::read(&b.serial_log)
                && s.len() > shown
            {
                use std::io::Write;
                let _ = std::io::stdout().write_all(&s[shown..]);
                let _ = std::io::stdout().flush();
                shown = s.len();
            }
            if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        return Ok(());
    }
    let mut q = Qemu::new(iso);
    q.uefi = o.uefi;
    q.cpus = o.cpus.unwrap_or(2);
    q.memory_mib = o.memory.unwrap_or(512);
    q.accel = o.accel.unwrap_or(Accel::Auto);
    q.serial = Serial::Stdio;
    q.gdb_port = o.gdb;
    q.wait_for_gdb = o.gdb_wait;
    // dom0's devices: the defaults, then what was asked for.
    let (mut disks, mut nics) = (Vec::new(), Vec::new());
    if !o.no_dom0 && !o.no_devices {
        disks.push(xtask::devices::default_disk(&images::target_dir().join("run"))?);
        nics.push(xtask::devices::Nic::Virtio);
    }
    for d in &o.disks {
        if !d.path.exists() {
            return Err(format!("--disk {}: no such file", d.path.display()));
        }
    }
    disks.extend(o.disks.iter().cloned());
    nics.extend(o.nics.iter().copied());
    q.extra.extend(xtask::devices::qemu_args(&disks, &nics));
    eprintln!(
        "xtask: QEMU with {} ({} CPUs, {} MiB{}); Ctrl-A X quits",
        if q.uses_kvm() { "KVM, -cpu host".to_string() } else { format!("TCG, -cpu {}", xtask::emulator::TCG_CPU) },
        q.cpus,
        q.memory_mib,
        if q.uefi { ", UEFI" } else { "" }
    );
    if let Some(p) = q.gdb_port {
        eprintln!("xtask: GDB stub on port {p}: gdb {} -ex 'target remote :{p}'", imgs.hypervisor.display());
    }
    let status = q.command()?.status().map_err(|e| format!("cannot start QEMU: {e}"))?;
    // isa-debug-exit and a normal exit both end here; report non-zero codes.
    match status.code() {
        Some(0) | None => Ok(()),
        Some(code) => {
            eprintln!("xtask: QEMU exited with status {code}");
            Ok(())
        }
    }
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(images::workspace_root());
    c
}

fn check(c: &mut Command, what: &str) -> Result<(), String> {
    let st = c.status().map_err(|e| format!("{what}: {e}"))?;
    if st.success() { Ok(()) } else { Err(format!("{what} failed")) }
}

/// The integration tests that boot the Linux guest are named `linux_…`.
const LINUX_TESTS: &str = "linux_";

fn test(o: &Opts) -> Result<(), String> {
    let started = std::time::Instant::now();
    let mut linux_skipped: Option<String> = None;
    host::ensure_packages(host::PACKAGES)?;
    if !o.integration_only {
        layers(false)?;
        eprintln!("xtask: host unit tests");
        check(cargo().args(["test", "-p", "hypervisor", "-p", "xen-abi", "--lib"]), "hypervisor unit tests")?;
        // Apart: built with xen-abi's guest entry code, which the
        // hypervisor's tests must not get.
        check(cargo().args(["test", "-p", "dom0-kernel-shim", "--lib"]), "dom0 unit tests")?;
        check(cargo().args(["test", "-p", "xtask"]), "xtask unit tests")?;
        check(cargo().args(["test", "-p", "integration-tests", "--lib"]), "harness unit tests")?;
    }
    if !o.unit_only {
        if let Some(f) = &o.filter {
            let out = cargo()
                .args(["test", "-p", "integration-tests", "--test", "*", "--", "--list", f])
                .output()
                .map_err(|e| format!("listing the integration tests: {e}"))?;
            if !out.status.success() {
                eprint!("{}", String::from_utf8_lossy(&out.stderr));
                return Err("listing the integration tests failed".into());
            }
            if listed_tests(&String::from_utf8_lossy(&out.stdout)) == 0 {
                return Err(format!("--filter {f:?} matches no integration test"));
            }
        }
        eprintln!("xtask: building images");
        let imgs = images::build(o.release)?;
        eprintln!("xtask: integration tests");
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut c = cargo();
        c.args(["test", "-p", "integration-tests", "--test", "*", "--"]);
        if let Some(f) = &o.filter {
            c.arg(f);
        }
        match xtask::linux::prepare() {
            Ok(g) => {
                eprintln!("xtask: Linux guest: {}, initramfs with {}", g.kernel, g.busybox);
                c.env(xtask::linux::ENV_KERNEL, &g.vmlinux).env(xtask::linux::ENV_INITRAMFS, &g.initramfs);
            }
            Err(why) => {
                eprintln!("xtask: the Linux tests are SKIPPED: {why}");
                c.args(["--skip", LINUX_TESTS]);
                linux_skipped = Some(why);
            }
        }
        c.arg(format!("--test-threads={threads}"));
        c.env("HV_HYPERVISOR", &imgs.hypervisor).env("HV_DOM0", &imgs.dom0).env("HV_GUESTS", &imgs.guests);
        let out = images::target_dir().join("itest");
        let timings = out.join(images::TIMINGS_FILE);
        let _ = std::fs::create_dir_all(&out);
        let _ = std::fs::remove_file(&timings);
        c.env("HV_TEST_OUT", &out);
        let result = check(&mut c, "integration tests");
        if let Ok(t) = std::fs::read_to_string(&timings) {
            for line in images::summarize_timings(&t) {
                eprintln!("xtask: {line}");
            }
        }
        result?;
    }
    eprintln!("xtask: all tests passed in {:.0} s", started.elapsed().as_secs_f64());
    if let Some(why) = linux_skipped {
        eprintln!("xtask: except the Linux tests, which were SKIPPED: {why}");
    }
    Ok(())
}

/// `cargo xtask guests`: the Linux guest, fetched or from the cache.
fn guests() -> Result<xtask::linux::LinuxGuest, String> {
    let g = xtask::linux::prepare()?;
    eprintln!("xtask: guests: {} (PVH entry {:#x}), initramfs with {}", g.kernel, g.entry, g.busybox);
    Ok(g)
}

/// `cargo xtask layers`: the layering check, with every use when asked.
fn layers(show_edges: bool) -> Result<(), String> {
    let root = images::workspace_root();
    if show_edges {
        let mods = xtask::layers::read_crate(&root.join("hypervisor/src"))?;
        for (from, to, name) in xtask::layers::edges(&mods) {
            println!("{from} -> {to} ({name})");
        }
    }
    let report = xtask::layers::check_hypervisor(&root)?;
    for p in &report.problems {
        eprintln!("xtask: layers: {p}");
    }
    if report.problems.is_empty() {
        eprintln!(
            "xtask: layers: {} modules, {} uses, none upward, no circle, no file or folder too large",
            report.modules, report.edges
        );
        Ok(())
    } else {
        Err(format!("{} layering problems (hypervisor/layers.toml, docs/architecture.md)", report.problems.len()))
    }
}

/// How many tests `cargo test -- --list` printed (one `name: test` line each).
fn listed_tests(list: &str) -> usize {
    list.lines().filter(|l| l.ends_with(": test")).count()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest: Vec<String> = if cmd == "layers" { Vec::new() } else { args[1..].to_vec() };
    let opts = match parse(&rest) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("xtask: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd.as_str() {
        "build" => images::build(opts.release).map(|i| {
            println!("{}", i.hypervisor.display());
            println!("{}", i.dom0.display());
        }),
        "iso" => {
            host::ensure_packages(host::PACKAGES).and_then(|_| iso_for(&opts)).map(|(p, _)| println!("{}", p.display()))
        }
        "guests" => guests().map(|g| {
            println!("{}", g.vmlinux.display());
            println!("{}", g.initramfs.display());
        }),
        "run" => run(&opts),
        "test" => test(&opts),
        "bench" => host::ensure_packages(host::PACKAGES)
            .and_then(|_| images::build(true))
            .and_then(|imgs| xtask::bench::run(&imgs))
            .map(|_| ()),
        "layers" => layers(args.iter().any(|a| a == "--edges")),
        "fuzz" => fuzz(&opts),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command {other}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn options_in_both_spellings() {
        let o =
            parse(&args(&["--uefi", "--cpus", "4", "--memory=1024", "--hv-args", "loglvl=all", "--gdb", "--release"]))
                .unwrap();
        assert!(o.uefi && o.release);
        assert_eq!((o.cpus, o.memory, o.gdb), (Some(4), Some(1024), Some(1234)));
        assert_eq!(o.hv_args, "loglvl=all");
        let o = parse(&args(&["--gdb=4321", "--module", "a.elf=domu name=a b", "--tcg"])).unwrap();
        assert_eq!(o.gdb, Some(4321));
        assert_eq!(o.modules[0].path, PathBuf::from("a.elf"));
        assert_eq!(o.modules[0].cmdline, "domu name=a b");
        assert_eq!(o.accel, Some(Accel::Tcg));
    }

    #[test]
    fn listed_tests_are_counted_from_cargos_list() {
        let list = "boots_in_bochs_on_an_intel_vtx_cpu: test\nboots_under_bios_grub: test\n\n2 tests, 0 benchmarks\n";
        assert_eq!(listed_tests(list), 2);
        assert_eq!(listed_tests("0 tests, 0 benchmarks\n"), 0);
    }

    #[test]
    fn bad_options_are_refused_with_a_reason() {
        assert!(parse(&args(&["--frobnicate"])).unwrap_err().starts_with("unknown option --frobnicate"));
        assert!(parse(&args(&["--cpus"])).unwrap_err().contains("needs a value"));
        assert!(parse(&args(&["--cpus", "many"])).is_err());
        assert!(parse(&args(&["--module", "no-equals-sign"])).is_err());
        assert!(parse(&args(&["--vcpus", "5"])).is_err());
        assert!(parse(&args(&["--end", "explode"])).is_err());
    }

    #[test]
    fn fuzz_options() {
        let o = parse(&args(&["--calls", "1000000", "--seed=0x2a", "--vcpus", "3", "--domains", "1", "--end", "down"]))
            .unwrap();
        assert_eq!((o.fuzz.calls, o.fuzz.seed, o.fuzz.vcpus, o.fuzz.domains), (1_000_000, 42, 3, 1));
        assert_eq!(o.fuzz.end.as_deref(), Some("down"));
    }
}
