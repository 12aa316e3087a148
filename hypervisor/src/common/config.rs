//! A domain's configuration from its boot module's command line, with
//! xl.cfg's names and units:
//!
//! ```text
//! domu name=web memory=256 vcpus=2 cmdline="console=hvc0 root=/dev/xvda"
//! ```
//!
//! A malformed value refuses the domain with a message naming it (a domain
//! built from a typo is worse than no domain); an unknown key is reported
//! and ignored, as xl does.

use crate::cmdline::{parse_u64, words};
use crate::common::cpumask::CpuMask;
use crate::common::credit::{DEFAULT_WEIGHT, MAX_WEIGHT};
use core::fmt;

pub const MAX_NAME: usize = 64;
pub const MAX_VCPUS: u32 = 128;
/// xl's default.
pub const DEFAULT_MEMORY_MIB: u64 = 128;
/// Upper bound accepted for `memory=` (1 TiB).
pub const MAX_MEMORY_MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainConfig<'a> {
    /// `None` means "make one up from the domain id".
    pub name: Option<&'a str>,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub cmdline: &'a str,
    /// Credit scheduler weight (xl's `weight=`, 1-65535, default 256).
    pub weight: u32,
    /// Percent of one CPU the domain may use at most (`cap=`, 0 = none).
    pub cap: u32,
    /// CPUs the domain's vCPUs may run on (`cpus=`, xl's syntax).
    pub cpus: CpuMask,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError<'a> {
    Malformed { key: &'a str, value: &'a str, expected: &'static str },
    Missing { key: &'a str },
    Duplicate { key: &'a str },
}

impl fmt::Display for ConfigError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Malformed { key, value, expected } => {
                write!(f, "{key}={value:?} is not valid: expected {expected}")
            }
            ConfigError::Missing { key } => write!(f, "{key}= needs a value"),
            ConfigError::Duplicate { key } => write!(f, "{key}= is given twice"),
        }
    }
}

/// A valid domain name: letters, digits, `-`, `_`, `.`; not all digits (it
/// would read as a domain id).
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NAME
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !n.bytes().all(|b| b.is_ascii_digit())
}

/// Parses the words after `domu`. Unknown keys go to `unknown`.
pub fn parse<'a>(args: &'a str, mut unknown: impl FnMut(&'a str)) -> Result<DomainConfig<'a>, ConfigError<'a>> {
    let mut c = DomainConfig {
        name: None,
        memory_mib: DEFAULT_MEMORY_MIB,
        vcpus: 1,
        cmdline: "",
        weight: DEFAULT_WEIGHT,
        cap: 0,
        cpus: CpuMask::all(),
    };
    let mut seen = [false; 7];
    for w in words(args) {
        let slot = match w.name {
            "name" => 0,
            "memory" => 1,
            "vcpus" => 2,
            "cmdline" | "extra" => 3,
            "weight" => 4,
            "cap" => 5,
            "cpus" => 6,
            _ => {
                unknown(w.text);
                continue;
            }
        };
        if seen[slot] {
            return Err(ConfigError::Duplicate { key: w.name });
        }
        seen[slot] = true;
        let Some(v) = w.value else { return Err(ConfigError::Missing { key: w.name }) };
        let bad = |expected| ConfigError::Malformed { key: w.name, value: v, expected };
        match slot {
            0 => {
                if !valid_name(v) {
                    return Err(bad("1-64 letters, digits, '-', '_' or '.', not only digits"));
                }
                c.name = Some(v);
            }
            1 => match parse_u64(v) {
                Some(m) if (1..=MAX_MEMORY_MIB).contains(&m) => c.memory_mib = m,
                _ => return Err(bad("a size in MiB from 1 to 1048576")),
            },
            2 => match parse_u64(v) {
                Some(n) if (1..=MAX_VCPUS as u64).contains(&n) => c.vcpus = n as u32,
                _ => return Err(bad("a number of vCPUs from 1 to 128")),
            },
            3 => c.cmdline = v,
            4 => match parse_u64(v) {
                Some(w) if (1..=MAX_WEIGHT as u64).contains(&w) => c.weight = w as u32,
                _ => return Err(bad("a weight from 1 to 65535")),
            },
            5 => match parse_u64(v) {
                Some(p) if p <= 100 * MAX_VCPUS as u64 => c.cap = p as u32,
                _ => return Err(bad("a percentage of one CPU from 0 (no cap) to 100 per vCPU")),
            },
            _ => match CpuMask::parse(v) {
                Some(m) if !m.is_empty() => c.cpus = m,
                _ => return Err(bad("CPUs such as 0-3,^1 or all")),
            },
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> (Result<DomainConfig<'_>, ConfigError<'_>>, Vec<&str>) {
        let mut u = Vec::new();
        let r = parse(s, |w| u.push(w));
        (r, u)
    }

    #[test]
    fn defaults_and_every_key() {
        let d = p("").0.unwrap();
        assert_eq!((d.name, d.memory_mib, d.vcpus, d.cmdline), (None, 128, 1, ""));
        assert_eq!((d.weight, d.cap, d.cpus), (256, 0, CpuMask::all()));
        let c = p("name=web memory=256 vcpus=2 cmdline=\"console=hvc0 root=/dev/xvda\" weight=512 cap=150 cpus=1-2")
            .0
            .unwrap();
        assert_eq!((c.name, c.memory_mib, c.vcpus, c.cmdline), (Some("web"), 256, 2, "console=hvc0 root=/dev/xvda"));
        assert_eq!((c.weight, c.cap), (512, 150));
        assert_eq!(c.cpus.iter().collect::<Vec<_>>(), vec![1, 2]);
        // GRUB's way of quoting the whole word.
        let c = p("\"cmdline=a b\" name=x").0.unwrap();
        assert_eq!(c.cmdline, "a b");
    }

    #[test]
    fn malformed_values_refuse_the_domain_with_their_name() {
        for (s, key) in [
            ("memory=lots", "memory"),
            ("memory=0", "memory"),
            ("vcpus=0", "vcpus"),
            ("vcpus=129", "vcpus"),
            ("name=a/b", "name"),
            ("name=42", "name"),
            ("weight=0", "weight"),
            ("weight=70000", "weight"),
            ("cap=-1", "cap"),
            ("cpus=x", "cpus"),
            ("cpus=^0-255", "cpus"),
        ] {
            match p(s).0 {
                Err(ConfigError::Malformed { key: k, .. }) => assert_eq!(k, key, "{s}"),
                other => panic!("{s}: {other:?}"),
            }
        }
        assert_eq!(p("memory").0, Err(ConfigError::Missing { key: "memory" }));
        assert_eq!(p("name=a name=b").0, Err(ConfigError::Duplicate { key: "name" }));
        let msg = p("memory=lots").0.unwrap_err().to_string();
        assert_eq!(msg, "memory=\"lots\" is not valid: expected a size in MiB from 1 to 1048576");
    }

    #[test]
    fn unknown_keys_are_reported_not_fatal() {
        let (r, u) = p("name=a colour=blue memory=64");
        assert_eq!(r.unwrap().memory_mib, 64);
        assert_eq!(u, vec!["colour=blue"]);
    }
}
