//! The devices `cargo xtask run` gives dom0 in QEMU: by default a virtio
//! disk (an image kept under `target/run/`) and a virtio NIC on QEMU's user
//! network, so that the first boot shows dom0 finding real devices; more
//! with `--disk` and `--nic`, none with `--no-devices`.

use std::path::{Path, PathBuf};

/// The bus a disk sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    Virtio,
    Nvme,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    pub bus: DiskBus,
}

/// A NIC model on QEMU's user network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nic {
    Virtio,
    E1000e,
    E1000,
}

/// `--disk PATH[:virtio|:nvme]`.
pub fn parse_disk(s: &str) -> Result<Disk, String> {
    let (path, bus) = match s.rsplit_once(':') {
        Some((p, "virtio")) => (p, DiskBus::Virtio),
        Some((p, "nvme")) => (p, DiskBus::Nvme),
        _ => (s, DiskBus::Virtio),
    };
    if path.is_empty() {
        return Err("--disk takes PATH[:virtio|:nvme]".into());
    }
    Ok(Disk { path: PathBuf::from(path), bus })
}

/// `--nic virtio|e1000e|e1000`.
pub fn parse_nic(s: &str) -> Result<Nic, String> {
    match s {
        "virtio" => Ok(Nic::Virtio),
        "e1000e" => Ok(Nic::E1000e),
        "e1000" => Ok(Nic::E1000),
        _ => Err(format!("--nic takes virtio, e1000e or e1000, not {s:?}")),
    }
}

/// QEMU's format for an image: qcow2 by its name, raw otherwise.
fn format(path: &Path) -> &'static str {
    if path.extension().is_some_and(|e| e == "qcow2") { "qcow2" } else { "raw" }
}

/// The QEMU options for `disks` and `nics`.
pub fn qemu_args(disks: &[Disk], nics: &[Nic]) -> Vec<String> {
    let mut a = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        a.push("-drive".into());
        a.push(format!("file={},if=none,id=disk{i},format={}", d.path.display(), format(&d.path)));
        a.push("-device".into());
        a.push(match d.bus {
            DiskBus::Virtio => format!("virtio-blk-pci,drive=disk{i}"),
            DiskBus::Nvme => format!("nvme,drive=disk{i},serial=dom0disk{i}"),
        });
    }
    for (i, n) in nics.iter().enumerate() {
        a.push("-netdev".into());
        a.push(format!("user,id=net{i}"));
        a.push("-device".into());
        let model = match n {
            Nic::Virtio => "virtio-net-pci",
            Nic::E1000e => "e1000e",
            Nic::E1000 => "e1000",
        };
        a.push(format!("{model},netdev=net{i}"));
    }
    a
}

/// The default disk's image: 64 MiB, sparse, made if missing (its
/// contents are kept from run to run).
pub fn default_disk(dir: &Path) -> Result<Disk, String> {
    let path = dir.join("dom0-disk0.img");
    if !path.exists() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        f.set_len(64 << 20).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(Disk { path, bus: DiskBus::Virtio })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_and_nics_parse_and_become_qemu_options() {
        assert_eq!(parse_disk("a.img").unwrap(), Disk { path: "a.img".into(), bus: DiskBus::Virtio });
        assert_eq!(parse_disk("/x/b.qcow2:nvme").unwrap().bus, DiskBus::Nvme);
        assert_eq!(parse_disk("c:d.img").unwrap().path, PathBuf::from("c:d.img"), "a colon not before a bus");
        assert!(parse_disk(":nvme").is_err());
        assert_eq!(parse_nic("e1000e"), Ok(Nic::E1000e));
        assert!(parse_nic("rtl8139").is_err());
        let a = qemu_args(
            &[Disk { path: "a.img".into(), bus: DiskBus::Virtio }, Disk { path: "b.qcow2".into(), bus: DiskBus::Nvme }],
            &[Nic::Virtio, Nic::E1000e],
        );
        assert_eq!(
            a,
            [
                "-drive",
                "file=a.img,if=none,id=disk0,format=raw",
                "-device",
                "virtio-blk-pci,drive=disk0",
                "-drive",
                "file=b.qcow2,if=none,id=disk1,format=qcow2",
                "-device",
                "nvme,drive=disk1,serial=dom0disk1",
                "-netdev",
                "user,id=net0",
                "-device",
                "virtio-net-pci,netdev=net0",
                "-netdev",
                "user,id=net1",
                "-device",
                "e1000e,netdev=net1",
            ]
        );
    }

    #[test]
    fn the_default_disk_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("xtask-devices-{}", std::process::id()));
        let d = default_disk(&dir).unwrap();
        assert_eq!(std::fs::metadata(&d.path).unwrap().len(), 64 << 20);
        std::fs::write(&d.path, b"kept").unwrap();
        let again = default_disk(&dir).unwrap();
        assert_eq!(std::fs::read(&again.path).unwrap(), b"kept");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
