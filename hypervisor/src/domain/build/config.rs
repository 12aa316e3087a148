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
use crate::mm::addr::Gfn;
use crate::sched::credit::{DEFAULT_WEIGHT, MAX_WEIGHT};
use crate::util::cpumask::CpuMask;
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
    /// Static event channels (`evtchn=LOCAL:PEER:REMOTE,...`), checked.
    pub evtchn: &'a str,
    /// Static grants (`grant=REF:PEER:GFN[:ro],...`), checked.
    pub grant: &'a str,
}

/// A static event channel: this domain's port `local` bound to port
/// `remote` of domain `peer` (a name or a domain id) at boot, as Xen's
/// dom0less static event channels are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticChannel<'a> {
    pub local: u32,
    pub peer: &'a str,
    pub remote: u32,
}

/// A static grant: entry `gref` of this domain's grant table grants its
/// frame `gfn` to `peer` (read-only if `readonly`), written at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticGrant<'a> {
    pub gref: u32,
    pub peer: &'a str,
    pub gfn: Gfn,
    pub readonly: bool,
}

/// Ports a static channel may use (the 2-level ABI's, port 0 excepted).
pub const MAX_STATIC_PORT: u32 = 4095;
/// Static grants live in the first grant frame.
pub const MAX_STATIC_GREF: u32 = 511;

fn valid_peer(p: &str) -> bool {
    valid_name(p) || (!p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The channels of an `evtchn=` value.
pub fn static_channels(v: &str) -> impl Iterator<Item = Option<StaticChannel<'_>>> {
    v.split(',').filter(|x| !x.is_empty()).map(|item| {
        let mut f = item.split(':');
        let local = parse_u64(f.next()?)?;
        let peer = f.next()?;
        let remote = parse_u64(f.next()?)?;
        if f.next().is_some() || !valid_peer(peer) {
            return None;
        }
        let ok = |p: u64| (1..=MAX_STATIC_PORT as u64).contains(&p);
        (ok(local) && ok(remote)).then_some(StaticChannel { local: local as u32, peer, remote: remote as u32 })
    })
}

/// The grants of a `grant=` value.
pub fn static_grants(v: &str) -> impl Iterator<Item = Option<StaticGrant<'_>>> {
    v.split(',').filter(|x| !x.is_empty()).map(|item| {
        let mut f = item.split(':');
        let gref = parse_u64(f.next()?)?;
        let peer = f.next()?;
        let gfn = parse_u64(f.next()?)?;
        let readonly = match f.next() {
            None => false,
            Some("ro") => true,
            Some(_) => return None,
        };
        if f.next().is_some() || !valid_peer(peer) || gref > MAX_STATIC_GREF as u64 || gfn > u32::MAX as u64 {
            return None;
        }
        Some(StaticGrant { gref: gref as u32, peer, gfn: Gfn(gfn), readonly })
    })
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
        evtchn: "",
        grant: "",
    };
    let mut seen = [false; 9];
    for w in words(args) {
        let slot = match w.name {
            "name" => 0,
            "memory" => 1,
            "vcpus" => 2,
            "cmdline" | "extra" => 3,
            "weight" => 4,
            "cap" => 5,
            "cpus" => 6,
            "evtchn" => 7,
            "grant" => 8,
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
            6 => match CpuMask::parse(v) {
                Some(m) if !m.is_empty() => c.cpus = m,
                _ => return Err(bad("CPUs such as 0-3,^1 or all")),
            },
            7 => {
                if static_channels(v).any(|x| x.is_none()) {
                    return Err(bad("LOCAL:PEER:REMOTE,... with ports from 1 to 4095 and a domain name or id"));
                }
                c.evtchn = v;
            }
            _ => {
                if static_grants(v).any(|x| x.is_none()) {
                    return Err(bad("REF:PEER:GFN[:ro],... with REF from 0 to 511 and a domain name or id"));
                }
                c.grant = v;
            }
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
    fn static_channels_and_grants() {
        let c = p("evtchn=10:pong:20,11:2:11 grant=0:pong:0x400,1:pong:0x401:ro").0.unwrap();
        let ch: Vec<_> = static_channels(c.evtchn).map(Option::unwrap).collect();
        assert_eq!(
            ch,
            vec![
                StaticChannel { local: 10, peer: "pong", remote: 20 },
                StaticChannel { local: 11, peer: "2", remote: 11 }
            ]
        );
        let g: Vec<_> = static_grants(c.grant).map(Option::unwrap).collect();
        assert_eq!(g[1], StaticGrant { gref: 1, peer: "pong", gfn: Gfn(0x401), readonly: true });
        for bad in [
            "evtchn=0:a:1",
            "evtchn=1:a:4096",
            "evtchn=1:a",
            "evtchn=1:a/b:2",
            "evtchn=1:a:2:3",
            "grant=512:a:1",
            "grant=1:a:1:rw",
            "grant=x:a:1",
        ] {
            assert!(matches!(p(bad).0, Err(ConfigError::Malformed { .. })), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_are_reported_not_fatal() {
        let (r, u) = p("name=a colour=blue memory=64");
        assert_eq!(r.unwrap().memory_mib, 64);
        assert_eq!(u, vec!["colour=blue"]);
    }
}
