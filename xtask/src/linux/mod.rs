//! A real Linux guest for the tests and for `cargo xtask run --linux`:
//! Debian's current bookworm cloud kernel, unmodified, with a small busybox
//! initramfs whose `/init` a test scripts through the kernel command line.
//!
//! Both come from Debian's archive with `apt-get download` (no root needed)
//! and are cached under `target/guests/linux/`, keyed by package version:
//! the `.deb` files, the `vmlinux` taken out of the kernel's bzImage, and the
//! initramfs. Without a network the cache is used; without either, the
//! reason is returned so that the Linux tests are reported as skipped.

pub mod bzimage;
pub mod cpio;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The metapackage that names Debian's current cloud kernel.
pub const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";
pub const BUSYBOX_PACKAGE: &str = "busybox-static";

/// The initramfs's `/init`.
pub const INIT_SCRIPT: &str = include_str!("init.sh");

/// Environment variables through which `cargo xtask test` hands the guest
/// to the integration tests.
pub const ENV_KERNEL: &str = "HV_LINUX_KERNEL";
pub const ENV_INITRAMFS: &str = "HV_LINUX_INITRAMFS";

/// A Debian package at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
}

impl std::fmt::Display for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.version)
    }
}

/// The guest, ready to boot.
#[derive(Debug, Clone)]
pub struct LinuxGuest {
    /// The uncompressed ELF kernel (a PVH kernel: it has PHYS32_ENTRY).
    pub vmlinux: PathBuf,
    pub initramfs: PathBuf,
    pub kernel: Package,
    pub busybox: Package,
    /// The kernel's PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY).
    pub entry: u64,
}

pub fn cache_dir() -> PathBuf {
    crate::paths::target_dir().join("guests").join("linux")
}

/// The record of the last guest prepared, for working offline.
const MANIFEST: &str = "current";

/// Fetches (or finds in the cache) the kernel and busybox, and builds what
/// is missing. The error says why the guest cannot be had.
pub fn prepare() -> Result<LinuxGuest, String> {
    let cache = cache_dir();
    std::fs::create_dir_all(cache.join("debs")).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let cached = read_manifest(&cache.join(MANIFEST));
    let wanted = match resolve() {
        Ok(w) => w,
        Err(e) => match &cached {
            Some(c) => {
                eprintln!("xtask: guests: {e}; using the cached {} and {}", c.0, c.1);
                c.clone()
            }
            None => return Err(e),
        },
    };
    let guest = match build(&cache, &wanted) {
        Ok(g) => g,
        Err(e) => match cached.filter(|c| *c != wanted) {
            Some(c) => {
                eprintln!("xtask: guests: {e}; using the cached {} and {}", c.0, c.1);
                build(&cache, &c)?
            }
            None => return Err(e),
        },
    };
    let manifest = format!(
        "kernel={}\nkernel-version={}\nbusybox={}\nbusybox-version={}\n",
        guest.kernel.name, guest.kernel.version, guest.busybox.name, guest.busybox.version
    );
    let _ = std::fs::write(cache.join(MANIFEST), manifest);
    prune(&cache, &guest);
    Ok(guest)
}

/// Removes what older package versions or init scripts left in the cache
/// (a kernel is 50 MB uncompressed).
fn prune(cache: &Path, keep: &LinuxGuest) {
    let stems = [deb_stem(&keep.kernel), deb_stem(&keep.busybox)];
    let files = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect())
            .unwrap_or_default()
    };
    for f in files(cache) {
        if f != keep.vmlinux && f != keep.initramfs && f.file_name().is_some_and(|n| n != MANIFEST) {
            let _ = std::fs::remove_file(f);
        }
    }
    for f in files(&cache.join("debs")) {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !stems.iter().any(|s| name.starts_with(s.as_str())) {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// How `apt-get download` names a package's file: NAME_VERSION_ARCH.deb,
/// with the epoch's ':' as %3a.
fn deb_stem(p: &Package) -> String {
    format!("{}_{}_", p.name, p.version.replace(':', "%3a"))
}

/// The kernel and busybox packages the cache last held.
fn read_manifest(path: &Path) -> Option<(Package, Package)> {
    let text = std::fs::read_to_string(path).ok()?;
    let get = |key: &str| {
        text.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('='))).map(str::to_string)
    };
    Some((
        Package { name: get("kernel")?, version: get("kernel-version")? },
        Package { name: get("busybox")?, version: get("busybox-version")? },
    ))
}

fn build(cache: &Path, (kernel, busybox): &(Package, Package)) -> Result<LinuxGuest, String> {
    let vmlinux = cache.join(file_name(&format!("{}_{}.vmlinux", kernel.name, kernel.version)));
    if !vmlinux.exists() {
        let deb = deb(cache, kernel)?;
        eprintln!("xtask: guests: taking vmlinux out of {kernel}");
        let bz = extract(&deb, "./boot/vmlinuz-*")?;
        let elf = bzimage::vmlinux(&bz).map_err(|e| format!("{kernel}'s bzImage: {e}"))?;
        write_atomically(&vmlinux, &elf)?;
    }
    let elf = std::fs::read(&vmlinux).map_err(|e| format!("cannot read {}: {e}", vmlinux.display()))?;
    let entry = match hypervisor::domain::build::pvh::parse_kernel(&elf) {
        Ok(k) => k.entry,
        Err(e) => {
            let _ = std::fs::remove_file(&vmlinux);
            return Err(format!("{kernel}'s vmlinux cannot start as a PVH guest: {e}"));
        }
    };
    let initramfs =
        cache.join(file_name(&format!("initramfs_{}_{:016x}.cpio", busybox.version, fnv1a(INIT_SCRIPT.as_bytes()))));
    if !initramfs.exists() {
        let deb = deb(cache, busybox)?;
        let bin = extract(&deb, "./bin/busybox")?;
        write_atomically(&initramfs, &initramfs_with(&bin))?;
    }
    Ok(LinuxGuest { vmlinux, initramfs, kernel: kernel.clone(), busybox: busybox.clone(), entry })
}

/// The test initramfs around a static busybox.
pub fn initramfs_with(busybox: &[u8]) -> Vec<u8> {
    let mut a = cpio::Archive::new();
    for d in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root"] {
        a.dir(d, 0o755);
    }
    a.file("bin/busybox", 0o755, busybox);
    a.symlink("bin/sh", "busybox");
    // The kernel opens /dev/console for init before anything mounts /dev.
    a.char_device("dev/console", 0o600, 5, 1);
    a.file("init", 0o755, INIT_SCRIPT.as_bytes());
    a.finish()
}

/// A file name without the characters (a version's epoch colon) that
/// some tools take as separators.
fn file_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "._+-".contains(c) { c } else { '_' }).collect()
}

/// FNV-1a: a hash that stays the same across builds, for cache names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let what = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let out = cmd.env("LC_ALL", "C").stdin(Stdio::null()).output().map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!("{what} failed: {}", err.trim().lines().last().unwrap_or("no message")))
    }
}

/// The concrete kernel package the metapackage depends on, from a
/// `apt-cache depends` listing.
pub fn kernel_dependency(depends: &str) -> Option<String> {
    depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && !p.starts_with('<'))
        .map(str::to_string)
}

/// The candidate version from `apt-cache policy`, if there is one.
pub fn policy_candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "(none)")
        .map(str::to_string)
}

fn candidate(name: &str) -> Option<Package> {
    let policy = run(Command::new("apt-cache").args(["policy", name])).ok()?;
    policy_candidate(&policy).map(|version| Package { name: name.to_string(), version })
}

/// The packages to use now: the cloud kernel the metapackage names
/// (unsigned when Debian has it: the same kernel without the Secure Boot
/// signature), and busybox-static.
fn resolve() -> Result<(Package, Package), String> {
    let mut depends = run(Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]));
    if depends.as_ref().map_or(true, |d| kernel_dependency(d).is_none()) && crate::host::is_root() {
        // A fresh machine may have no package lists yet.
        crate::host::apt_get(&["update"]);
        depends = run(Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]));
    }
    let kernel_name = depends.ok().as_deref().and_then(kernel_dependency).ok_or_else(|| {
        format!(
            "apt knows no {KERNEL_METAPACKAGE} (are Debian's package lists there? `sudo apt-get update` fetches them)"
        )
    })?;
    let kernel = candidate(&format!("{kernel_name}-unsigned"))
        .or_else(|| candidate(&kernel_name))
        .ok_or_else(|| format!("apt has no installable version of {kernel_name}"))?;
    let busybox =
        candidate(BUSYBOX_PACKAGE).ok_or_else(|| format!("apt has no installable version of {BUSYBOX_PACKAGE}"))?;
    Ok((kernel, busybox))
}

/// The package's `.deb` in the cache, downloaded when missing.
fn deb(cache: &Path, p: &Package) -> Result<PathBuf, String> {
    let dir = cache.join("debs");
    let stem = deb_stem(p);
    let find = || {
        std::fs::read_dir(&dir).ok()?.flatten().map(|e| e.path()).find(|f| {
            f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&stem) && n.ends_with(".deb"))
        })
    };
    if let Some(f) = find()
        && deb_is(&f, p)
    {
        return Ok(f);
    }
    eprintln!("xtask: guests: apt-get download {}={}", p.name, p.version);
    run(Command::new("apt-get").args(["download", "-q", &format!("{}={}", p.name, p.version)]).current_dir(&dir))
        .map_err(|e| format!("cannot download {p}: {e}"))?;
    let f = find().ok_or_else(|| format!("apt-get download left no {stem}*.deb in {}", dir.display()))?;
    if !deb_is(&f, p) {
        let _ = std::fs::remove_file(&f);
        return Err(format!("{} is not a complete {p} package", f.display()));
    }
    Ok(f)
}

/// Whether `deb` is a readable package file of exactly `p`.
fn deb_is(deb: &Path, p: &Package) -> bool {
    run(Command::new("dpkg-deb").arg("-f").arg(deb).args(["Package", "Version"])).is_ok_and(|f| {
        f.contains(&format!("Package: {}\n", p.name)) && f.contains(&format!("Version: {}\n", p.version))
    })
}

/// The contents of the files in a `.deb` that match a tar wildcard.
fn extract(deb: &Path, pattern: &str) -> Result<Vec<u8>, String> {
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
    let tar_in = dpkg.stdout.take().ok_or("dpkg-deb gave no output pipe")?;
    let mut tar = Command::new("tar")
        .args(["-x", "-O", "--wildcards", pattern])
        .stdin(tar_in)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    let mut bytes = Vec::new();
    let read = tar.stdout.take().map(|mut o| o.read_to_end(&mut bytes));
    let tar_ok = tar.wait().is_ok_and(|s| s.success());
    let dpkg_ok = dpkg.wait().is_ok_and(|s| s.success());
    if !tar_ok || !dpkg_ok || !matches!(read, Some(Ok(_))) || bytes.is_empty() {
        return Err(format!("no {pattern} could be taken out of {}", deb.display()));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_concrete_kernel_comes_from_the_metapackage() {
        let depends = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-48-cloud-amd64\n";
        assert_eq!(kernel_dependency(depends).as_deref(), Some("linux-image-6.1.0-48-cloud-amd64"));
        let virtual_only = "linux-image-cloud-amd64\n  Depends: <linux-image-6.1.0-9-cloud-amd64>\n";
        assert_eq!(kernel_dependency(virtual_only), None);
        assert_eq!(kernel_dependency("linux-image-cloud-amd64\n  Recommends: foo\n"), None);
    }

    #[test]
    fn the_candidate_version_is_read_from_apt_cache_policy() {
        let p = "busybox-static:\n  Installed: (none)\n  Candidate: 1:1.35.0-4+deb12u1+b1\n  Version table:\n";
        assert_eq!(policy_candidate(p).as_deref(), Some("1:1.35.0-4+deb12u1+b1"));
        assert_eq!(policy_candidate("x:\n  Installed: (none)\n  Candidate: (none)\n"), None);
        assert_eq!(policy_candidate(""), None);
    }

    #[test]
    fn the_manifest_round_trips() {
        let dir = std::env::temp_dir().join(format!("linux-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("current");
        std::fs::write(&p, "kernel=k\nkernel-version=1\nbusybox=b\nbusybox-version=1:2\n").unwrap();
        let (k, b) = read_manifest(&p).unwrap();
        assert_eq!((k.name.as_str(), k.version.as_str(), b.name.as_str(), b.version.as_str()), ("k", "1", "b", "1:2"));
        std::fs::write(&p, "kernel=k\n").unwrap();
        assert!(read_manifest(&p).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_initramfs_has_init_busybox_and_a_console() {
        let cpio = initramfs_with(b"\x7fELF-busybox");
        let text = String::from_utf8_lossy(&cpio);
        for name in ["init\0", "bin/busybox\0", "bin/sh\0", "dev/console\0", "TRAILER!!!\0"] {
            assert!(text.contains(name), "{name} is in the archive");
        }
        assert!(text.contains("hvtest=") && text.contains("poweroff -f"), "the init script is in the archive");
    }

    #[test]
    fn cache_names_hash_stably() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
