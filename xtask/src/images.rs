//! Building the bare-metal images and packing them into GRUB ISOs.

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

pub use crate::paths::{target_dir, workspace_root};

/// Every bare-metal image of the workspace.
#[derive(Debug, Clone)]
pub struct Images {
    pub hypervisor: PathBuf,
    pub dom0: PathBuf,
    /// The directory holding the test guests (one ELF per guest name).
    pub guests: PathBuf,
}

impl Images {
    pub fn guest(&self, name: &str) -> PathBuf {
        self.guests.join(name)
    }
}

/// Bare-metal packages.
const KERNEL_PACKAGES: &[&str] = &["hypervisor", "dom0-kernel-shim", "test-guests"];

/// The test guests `tests/guests` builds.
pub const GUESTS: &[&str] = &[
    "hello",
    "probe",
    "probes",
    "triple-fault",
    "ud-no-idt",
    "wild-write",
    "spin",
    "bad-hypercalls",
    "hcall-page",
    "bench",
    "smp",
    "console",
    "timers",
    "evtchn",
    "evtchn-fifo",
    "grants",
    "memory",
    "console-ring",
    "bench-events",
    "hostile",
    "isolation",
    "fuzz",
    "devices",
];

/// Builds every bare-metal image.
pub fn build(release: bool) -> Result<Images, String> {
    crate::toolchain::ensure()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args(["build", "--target", KERNEL_TARGET]);
    for pkg in KERNEL_PACKAGES {
        cmd.args(["-p", pkg]);
    }
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("building the bare-metal images failed".into());
    }
    let dir = target_dir().join(KERNEL_TARGET).join(if release { "release" } else { "debug" });
    let images = Images { hypervisor: dir.join("hypervisor"), dom0: dir.join("dom0-kernel-shim"), guests: dir.clone() };
    for p in [images.hypervisor.clone(), images.dom0.clone()].into_iter().chain(GUESTS.iter().map(|g| images.guest(g)))
    {
        if !p.exists() {
            return Err(format!("{} was not produced", p.display()));
        }
    }
    Ok(images)
}

/// One `module2` line: a file and its command line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Module {
    pub path: PathBuf,
    pub cmdline: String,
}

/// What goes on a boot ISO.
#[derive(Debug, Clone)]
pub struct IsoSpec {
    pub hypervisor: PathBuf,
    pub cmdline: String,
    pub modules: Vec<Module>,
}

/// The grub.cfg for `spec`, with the files at `/boot/<name>`.
pub fn grub_cfg(spec: &IsoSpec, names: &[String]) -> String {
    let mut s = String::new();
    // Serial and screen both, so a real machine shows the menu too.
    s.push_str("serial --unit=0 --speed=115200\n");
    s.push_str("terminal_input serial console\n");
    s.push_str("terminal_output serial console\n");
    s.push_str("set timeout=0\n");
    s.push_str("set default=0\n\n");
    s.push_str("menuentry \"hypervisor\" {\n");
    let _ = writeln!(s, "    multiboot2 /boot/hypervisor.elf {}", spec.cmdline.trim());
    for (m, name) in spec.modules.iter().zip(names) {
        let _ = writeln!(s, "    module2 /boot/{name} {}", m.cmdline.trim());
    }
    s.push_str("}\n");
    s
}

fn hash_file(h: &mut DefaultHasher, p: &Path) -> Result<(), String> {
    let bytes = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    bytes.hash(h);
    Ok(())
}

/// Builds (or reuses) a GRUB rescue ISO that boots under BIOS and UEFI.
/// ISOs are named by a hash of their contents, so identical requests from
/// parallel tests share one file.
pub fn make_iso(spec: &IsoSpec, out_dir: &Path) -> Result<PathBuf, String> {
    let names: Vec<String> = spec
        .modules
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let base = m.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "module".into());
            format!("m{i}-{base}")
        })
        .collect();
    let cfg = grub_cfg(spec, &names);
    let mut h = DefaultHasher::new();
    cfg.hash(&mut h);
    hash_file(&mut h, &spec.hypervisor)?;
    for m in &spec.modules {
        hash_file(&mut h, &m.path)?;
    }
    let key = format!("{:016x}", h.finish());
    std::fs::create_dir_all(out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let iso = out_dir.join(format!("hv-{key}.iso"));
    if iso.exists() {
        return Ok(iso);
    }
    // Unique per call: tests in one process may build the same ISO at once.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let unique = format!("{}-{call}", std::process::id());
    let stage = out_dir.join(format!("stage-{key}-{unique}"));
    let boot = stage.join("boot");
    std::fs::create_dir_all(boot.join("grub")).map_err(|e| e.to_string())?;
    // Without its debug information: GRUB reads the whole file into memory
    // before loading it, and the symbols stay in target/ for GDB.
    let strip = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&spec.hypervisor)
        .arg(boot.join("hypervisor.elf"))
        .status()
        .map_err(|e| format!("cannot run objcopy (binutils): {e}"))?;
    if !strip.success() {
        return Err(format!("objcopy could not copy {}", spec.hypervisor.display()));
    }
    for (m, name) in spec.modules.iter().zip(&names) {
        std::fs::copy(&m.path, boot.join(name)).map_err(|e| format!("cannot copy {}: {e}", m.path.display()))?;
    }
    std::fs::write(boot.join("grub/grub.cfg"), &cfg).map_err(|e| e.to_string())?;
    let tmp = out_dir.join(format!("hv-{key}.iso.{unique}.tmp"));
    let out = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&tmp)
        .arg(&stage)
        // Only what booting needs: keeps the ISO small and the build fast.
        .args([
            "--install-modules=multiboot2 normal serial terminal part_msdos part_gpt iso9660 all_video",
            "--fonts=",
            "--locales=",
            "--themes=",
        ])
        .output()
        .map_err(|e| format!("cannot run grub-mkrescue: {e}"))?;
    let _ = std::fs::remove_dir_all(&stage);
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("grub-mkrescue failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    std::fs::rename(&tmp, &iso).map_err(|e| e.to_string())?;
    Ok(iso)
}

/// Where the integration-test harness records how long each boot took.
pub const TIMINGS_FILE: &str = "timings.tsv";

/// One line per emulator from the timings file: boots, total and longest.
pub fn summarize_timings(tsv: &str) -> Vec<String> {
    let mut per: Vec<(String, usize, f64, String, f64)> = Vec::new();
    for line in tsv.lines() {
        let mut f = line.split('\t');
        let (Some(name), Some(emu), Some(secs)) = (f.next(), f.next(), f.next()) else { continue };
        let Ok(secs) = secs.parse::<f64>() else { continue };
        let i = match per.iter().position(|p| p.0 == emu) {
            Some(i) => i,
            None => {
                per.push((emu.to_string(), 0, 0.0, String::new(), 0.0));
                per.len() - 1
            }
        };
        let p = &mut per[i];
        p.1 += 1;
        p.2 += secs;
        if secs > p.4 {
            p.3 = name.to_string();
            p.4 = secs;
        }
    }
    per.sort_by(|a, b| a.0.cmp(&b.0));
    per.iter()
        .map(|(emu, n, total, longest, max)| {
            let boots = if *n == 1 { "boot" } else { "boots" };
            format!("{emu}: {n} {boots}, {total:.0} s of emulator time in all, longest {longest} ({max:.0} s)")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_are_summed_per_emulator() {
        let t = "a\tqemu\t2.0\nb\tbochs\t10.5\nc\tqemu\t3.5\nbroken line\n";
        assert_eq!(
            summarize_timings(t),
            [
                "bochs: 1 boot, 10 s of emulator time in all, longest b (10 s)",
                "qemu: 2 boots, 6 s of emulator time in all, longest c (4 s)"
            ]
        );
    }

    #[test]
    fn grub_cfg_lists_the_hypervisor_and_every_module_in_order() {
        let spec = IsoSpec {
            hypervisor: "hv".into(),
            cmdline: " loglvl=all ".into(),
            modules: vec![
                Module { path: "/x/dom0".into(), cmdline: "dom0".into() },
                Module { path: "/y/initrd".into(), cmdline: "ramdisk".into() },
            ],
        };
        let cfg = grub_cfg(&spec, &["m0-dom0".into(), "m1-initrd".into()]);
        assert!(cfg.starts_with("serial --unit=0 --speed=115200\n"));
        assert!(cfg.contains("set timeout=0\n"));
        let hv = cfg.find("    multiboot2 /boot/hypervisor.elf loglvl=all\n").expect("multiboot2 line");
        let m0 = cfg.find("    module2 /boot/m0-dom0 dom0\n").expect("first module");
        let m1 = cfg.find("    module2 /boot/m1-initrd ramdisk\n").expect("second module");
        assert!(hv < m0 && m0 < m1);
    }
}
