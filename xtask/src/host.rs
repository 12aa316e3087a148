//! What the host machine needs, and installing it.
//!
//! `cargo xtask run` and `cargo xtask test` must work on a fresh Debian
//! machine: missing packages are installed with apt-get when running as
//! root; otherwise the exact command to run is printed and xtask stops.
//! Installing never removes a package the machine has.

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

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

pub fn apt_get(args: &[&str]) -> bool {
    eprintln!("xtask: apt-get {}", args.join(" "));
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `apt-get -s install` of `items`: what apt prints, or None when apt
/// cannot plan it (no package lists yet, an unknown package).
fn simulate(items: &[String]) -> Option<String> {
    let out = Command::new("apt-get")
        .args(["-s", "install", "-y", "--no-install-recommends", "--allow-downgrades"])
        .args(items)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The packages a simulated install would remove (its `Remv NAME [...]` lines).
pub fn removed_by(simulation: &str) -> Vec<String> {
    simulation
        .lines()
        .filter_map(|l| l.strip_prefix("Remv "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The versions of a package the configured repositories offer, best first,
/// from `apt-cache madison` (`name | version | source`).
pub fn repository_versions(madison: &str) -> Vec<String> {
    let mut versions: Vec<String> = Vec::new();
    for line in madison.lines() {
        let mut cols = line.split('|').map(str::trim);
        if let (Some(_), Some(v), Some(_)) = (cols.next(), cols.next(), cols.next())
            && !v.is_empty()
            && !versions.iter().any(|seen| seen == v)
        {
            versions.push(v.to_string());
        }
    }
    versions
}

fn versions_of(pkg: &str) -> Vec<String> {
    Command::new("apt-cache")
        .args(["madison", pkg])
        .env("LC_ALL", "C")
        .stderr(Stdio::null())
        .output()
        .map(|o| repository_versions(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default()
}

/// What to hand apt-get so that `missing` gets installed and nothing is
/// removed. A package the machine has in a version the new ones do not
/// accept (a backported qemu-utils beside Debian's qemu-system-x86, say)
/// would be removed by a plain install; it is kept by installing the
/// repositories' version of it alongside, the newest one that removes
/// nothing. `simulate` answers for apt (a parameter so that tests can fake it).
pub fn install_plan(
    missing: &[&str],
    simulate: &mut dyn FnMut(&[String]) -> Option<String>,
    versions_of: &mut dyn FnMut(&str) -> Vec<String>,
) -> Result<Vec<String>, String> {
    let mut items: Vec<String> = missing.iter().map(|p| p.to_string()).collect();
    let Some(sim) = simulate(&items) else {
        return Err(format!("apt-get cannot plan installing {}", missing.join(" ")));
    };
    let removed = removed_by(&sim);
    for pkg in &removed {
        let kept = versions_of(pkg).into_iter().find(|v| {
            let mut trial = items.clone();
            trial.push(format!("{pkg}={v}"));
            simulate(&trial).is_some_and(|s| !removed_by(&s).contains(pkg))
        });
        match kept {
            Some(v) => {
                eprintln!(
                    "xtask: installing {} would remove {pkg}; keeping it with the repositories' version {v}",
                    missing.join(" ")
                );
                items.push(format!("{pkg}={v}"));
            }
            None => {
                return Err(format!(
                    "installing {} would remove {pkg}, and no version of {pkg} in the configured repositories \
                     fits beside them; install them by hand and decide what to do with {pkg}",
                    missing.join(" ")
                ));
            }
        }
    }
    if !removed.is_empty() {
        let sim = simulate(&items).unwrap_or_default();
        let still = removed_by(&sim);
        if !still.is_empty() {
            return Err(format!(
                "installing {} would remove {}; install them by hand and decide what to keep",
                missing.join(" "),
                still.join(", ")
            ));
        }
    }
    Ok(items)
}

/// Makes sure every package in `wanted` is installed, never removing one.
pub fn ensure_packages(wanted: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = wanted.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let root = is_root();
    let mut plan = install_plan(&missing, &mut simulate, &mut versions_of);
    if plan.is_err() && root {
        // A fresh machine may have no package lists yet.
        if !apt_get(&["update"]) {
            return Err("apt-get update failed; look at its output".into());
        }
        plan = install_plan(&missing, &mut simulate, &mut versions_of);
    }
    let line = match &plan {
        Ok(items) => format!("apt-get install -y --no-install-recommends --allow-downgrades {}", items.join(" ")),
        Err(_) => format!("apt-get install -y --no-install-recommends {}", missing.join(" ")),
    };
    if !root {
        let note = plan.as_ref().err().map(|e| format!("\n(note: {e})")).unwrap_or_default();
        return Err(format!(
            "missing host packages: {}\nInstall them with:\n    sudo {line}\nthen run the command again.{note}",
            missing.join(", ")
        ));
    }
    let items = plan?;
    eprintln!("xtask: installing missing host packages: {}", missing.join(", "));
    let mut args = vec!["install", "-y", "--no-install-recommends", "--allow-downgrades"];
    args.extend(items.iter().map(String::as_str));
    if !apt_get(&args) {
        return Err(format!("apt-get failed; run `{line}` by hand and look at its output"));
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

#[cfg(test)]
mod tests {
    use super::*;

    const REMOVES_QEMU_UTILS: &str = "NOTE: This is only a simulation!\n\
        The following packages will be REMOVED:\n  qemu-utils\n\
        Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]\n\
        Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b2 Debian:12.12/stable [amd64])\n";

    const MADISON: &str = "qemu-utils | 1:7.2+dfsg-7+deb12u18+b2 | http://deb.debian.org/debian bookworm/main amd64 Packages\n\
        qemu-utils | 1:7.2+dfsg-7+deb12u15 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages\n";

    #[test]
    fn removals_and_versions_are_read_from_apts_output() {
        assert_eq!(removed_by(REMOVES_QEMU_UTILS), ["qemu-utils"]);
        assert!(removed_by("Inst a (1 Debian)\nConf a (1 Debian)\n").is_empty());
        assert_eq!(repository_versions(MADISON), ["1:7.2+dfsg-7+deb12u18+b2", "1:7.2+dfsg-7+deb12u15"]);
    }

    #[test]
    fn a_package_the_install_would_remove_is_kept_in_a_version_that_fits() {
        let mut asked = Vec::new();
        let mut sim = |items: &[String]| {
            asked.push(items.join(" "));
            // Only Debian's older qemu-utils fits beside qemu-system-x86.
            if items.iter().any(|i| i == "qemu-utils=1:7.2+dfsg-7+deb12u15") {
                Some("Inst qemu-utils [1:10] (1:7.2+dfsg-7+deb12u15 Debian)\n".to_string())
            } else {
                Some(REMOVES_QEMU_UTILS.to_string())
            }
        };
        let plan =
            install_plan(&["qemu-system-x86", "bochs"], &mut sim, &mut |_| repository_versions(MADISON)).unwrap();
        assert_eq!(plan, ["qemu-system-x86", "bochs", "qemu-utils=1:7.2+dfsg-7+deb12u15"]);
        // The newest version was tried first.
        assert!(asked.iter().any(|a| a.ends_with("qemu-utils=1:7.2+dfsg-7+deb12u18+b2")));
    }

    #[test]
    fn an_install_that_must_remove_something_is_refused_with_the_reason() {
        let mut sim = |_: &[String]| Some(REMOVES_QEMU_UTILS.to_string());
        let err = install_plan(&["qemu-system-x86"], &mut sim, &mut |_| repository_versions(MADISON)).unwrap_err();
        assert!(err.contains("would remove qemu-utils"), "{err}");
        let mut none = |_: &[String]| None;
        assert!(install_plan(&["nonexistent"], &mut none, &mut |_| Vec::new()).is_err());
    }

    #[test]
    fn an_install_that_removes_nothing_is_the_missing_list_itself() {
        let mut sim = |_: &[String]| Some("Inst bochs (2.7 Debian)\n".to_string());
        assert_eq!(install_plan(&["bochs"], &mut sim, &mut |_| Vec::new()).unwrap(), ["bochs"]);
    }
}
