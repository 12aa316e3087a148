//! What each boot module is for, from the first word of its command line,
//! and whether its contents are usable.
//!
//! ```text
//! module2 /boot/dom0.elf    dom0 [args...]
//! module2 /boot/guest.elf   domu name=web memory=256 vcpus=2 cmdline="..."
//! module2 /boot/initrd.img  ramdisk
//! ```
//!
//! A `ramdisk` belongs to the kernel module listed just before it.

use super::info::Module;
use crate::cmdline::strip_image_path;
use crate::util::elf::{Elf, ElfError};
use core::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The privileged control domain's kernel.
    Dom0,
    /// An unprivileged domain's kernel.
    DomU,
    /// A ramdisk for the kernel module before it.
    Ramdisk,
}

impl Role {
    pub fn is_kernel(self) -> bool {
        matches!(self, Role::Dom0 | Role::DomU)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Dom0 => "dom0",
            Role::DomU => "domu",
            Role::Ramdisk => "ramdisk",
        }
    }
}

/// Why a module is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    NoRole,
    UnknownRole(&'a str),
    Empty,
    Defect(&'static str),
    /// A ramdisk with no kernel module before it.
    OrphanRamdisk,
    BadImage(ElfError),
}

impl fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoRole => f.write_str("no role: its command line must start with dom0, domu or ramdisk"),
            Refusal::UnknownRole(w) => write!(f, "unknown role '{w}' (expected dom0, domu or ramdisk)"),
            Refusal::Empty => f.write_str("the module is empty"),
            Refusal::Defect(why) => f.write_str(why),
            Refusal::OrphanRamdisk => f.write_str("a ramdisk must follow the kernel module it belongs to"),
            Refusal::BadImage(e) => write!(f, "{e}"),
        }
    }
}

/// A module's role and the arguments after the role word.
pub fn classify(cmdline: &str) -> Result<(Role, &str), Refusal<'_>> {
    let line = strip_image_path(cmdline).trim_start();
    let (first, rest) = match line.find([' ', '\t']) {
        Some(i) => (&line[..i], &line[i..]),
        None => (line, ""),
    };
    let role = match first {
        "" => return Err(Refusal::NoRole),
        "dom0" => Role::Dom0,
        "domu" => Role::DomU,
        "ramdisk" => Role::Ramdisk,
        other => return Err(Refusal::UnknownRole(other)),
    };
    Ok((role, rest.trim()))
}

/// Checks a module: role, contents, and (for kernels) the ELF image.
/// `previous_kernel` says whether an accepted kernel module came before it.
pub fn check<'a>(module: &Module<'a>, bytes: &[u8], previous_kernel: bool) -> Result<(Role, &'a str), Refusal<'a>> {
    if let Some(why) = module.defect {
        return Err(Refusal::Defect(why));
    }
    let (role, args) = classify(module.cmdline)?;
    if bytes.is_empty() {
        return Err(Refusal::Empty);
    }
    match role {
        Role::Dom0 | Role::DomU => {
            Elf::parse(bytes).map_err(Refusal::BadImage)?;
        }
        Role::Ramdisk if !previous_kernel => return Err(Refusal::OrphanRamdisk),
        Role::Ramdisk => {}
    }
    Ok((role, args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::ranges::Range;
    use crate::util::elf::tests::build_elf64;

    fn module(cmdline: &str) -> Module<'_> {
        Module { index: 0, range: Range::new(0x100000, 0x200000), cmdline, defect: None }
    }

    #[test]
    fn roles_with_and_without_a_leading_path() {
        assert_eq!(classify("dom0"), Ok((Role::Dom0, "")));
        assert_eq!(classify("/boot/g.elf domu name=a memory=64"), Ok((Role::DomU, "name=a memory=64")));
        assert_eq!(classify("  ramdisk  "), Ok((Role::Ramdisk, "")));
        assert_eq!(classify(""), Err(Refusal::NoRole));
        assert_eq!(classify("/boot/x.elf"), Err(Refusal::NoRole));
        assert_eq!(classify("domU name=x"), Err(Refusal::UnknownRole("domU")));
    }

    #[test]
    fn kernels_must_be_valid_elf() {
        let good = build_elf64(0x100000, 0x100000, &[0xf4; 32], &[]);
        assert_eq!(check(&module("domu name=a"), &good, false), Ok((Role::DomU, "name=a")));
        let err =
            check(&module("domu"), b"MZ\x90\0garbage garbage garbage garbage garbage garbage!", false).unwrap_err();
        assert!(matches!(err, Refusal::BadImage(ElfError::BadMagic { .. })));
        let err = check(&module("dom0"), &good[..good.len() - 8], false).unwrap_err();
        assert!(matches!(err, Refusal::BadImage(ElfError::Truncated { .. })), "{err}");
        assert!(err.to_string().starts_with("truncated: segment 0"));
    }

    #[test]
    fn ramdisks_need_a_kernel_before_them_and_any_bytes_do() {
        assert_eq!(check(&module("ramdisk"), b"anything", true), Ok((Role::Ramdisk, "")));
        assert_eq!(check(&module("ramdisk"), b"anything", false), Err(Refusal::OrphanRamdisk));
        assert_eq!(check(&module("ramdisk"), b"", true), Err(Refusal::Empty));
    }

    #[test]
    fn loader_defects_are_reported() {
        let mut m = module("domu");
        m.defect = Some("its end address lies below its start address");
        assert_eq!(check(&m, b"", false), Err(Refusal::Defect("its end address lies below its start address")));
    }
}
