//! What the host machine needs, and installing it.
//!
//! `cargo xtask run` and `cargo xtask test` must work on a fresh Debian
//! machine: missing packages are installed with apt-get when running as
//! root; otherwise the exact command to run is printed and xtask stops.

use std::path::Path;
use std::process::{Command, Stdio};

/// Debian packages the build, the ISO and the emulators need.
pub const PACKAGES: &[&str] = &[
    "binutils",
    "qemu-system-x86",
    "grub-common",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "xorriso",
    "mtools",
    "ovmf",
    "bochs",
    "bochsbios",
    "vgabios",
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn apt_get(args: &[&str]) -> bool {
    eprintln!("xtask: apt-get {}", args.join(" "));
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Makes sure every package in `wanted` is installed.
pub fn ensure_packages(wanted: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = wanted.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let line = format!("apt-get install -y --no-install-recommends {}", missing.join(" "));
    if !is_root() {
        return Err(format!(
            "missing host packages: {}\nInstall them with:\n    sudo {line}\nthen run the command again.",
            missing.join(", ")
        ));
    }
    eprintln!("xtask: installing missing host packages: {}", missing.join(", "));
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&missing);
    if !apt_get(&args) {
        // A fresh machine may have no package lists yet.
        if !apt_get(&["update"]) || !apt_get(&args) {
            return Err(format!("apt-get failed; run `{line}` by hand and look at its output"));
        }
    }
    let still: Vec<&str> = missing.iter().copied().filter(|p| !installed(p)).collect();
    if !still.is_empty() {
        return Err(format!("still missing after apt-get: {}", still.join(", ")));
    }
    Ok(())
}

/// Whether QEMU can use KVM with a CPU that itself has VT-x or AMD-V, so a
/// hypervisor can run inside (`-accel kvm -cpu host`).
pub fn kvm_with_nesting() -> bool {
    let kvm_ok = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has_virt = flags
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    kvm_ok && has_virt
}

/// The OVMF firmware image for UEFI boots.
pub fn ovmf_path() -> Option<&'static Path> {
    ["/usr/share/ovmf/OVMF.fd", "/usr/share/OVMF/OVMF.fd", "/usr/share/qemu/OVMF.fd"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
}
