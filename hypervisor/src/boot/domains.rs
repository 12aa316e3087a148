//! Domains from boot modules: every `dom0` or `domu` module that passed
//! its checks becomes a domain, with the `ramdisk` that follows it; dom0 is
//! domain 0, domUs are numbered from 1 in module order.

use super::info::BootInfo;
use super::modules::{self, Role};
use crate::cmdline::Options;
use crate::domain::Domain;
use crate::domain::build::config;
use crate::domain::lifecycle::{self, DomainSpec};
use crate::mm::phys::phys_slice;
use crate::sched::credit::DEFAULT_WEIGHT;
use crate::util::cpumask::CpuMask;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use log::{error, info, warn};

/// A kernel module ready to become a domain.
struct Planned<'a> {
    index: usize,
    role: Role,
    args: &'a str,
    kernel: &'a [u8],
    ramdisk: Option<&'a [u8]>,
}

/// Checks every module, logs what it is, and returns the kernels to build.
fn plan<'a>(info: &'a BootInfo<'a>) -> Vec<Planned<'a>> {
    let count = info.modules().count();
    if count == 0 {
        info!("modules: none");
        return Vec::new();
    }
    info!("modules: {count}");
    let mut out: Vec<Planned<'a>> = Vec::new();
    let mut previous_kernel = false;
    for m in info.modules() {
        // SAFETY: module memory is reserved for the module and
        // direct-mapped; nothing writes it.
        let bytes: &'a [u8] = unsafe { phys_slice(m.range.start, m.range.len() as usize) }.unwrap_or(&[]);
        let head = format!(
            "  module {}: {:#x} - {:#x} ({} bytes) \"{}\"",
            m.index,
            m.range.start,
            m.range.end,
            m.range.len(),
            m.cmdline
        );
        match modules::check(m, bytes, previous_kernel) {
            Ok((role, args)) => {
                info!("{head}: {}", role.name());
                match role {
                    Role::Ramdisk => {
                        if let Some(k) = out.last_mut() {
                            if k.ramdisk.is_some() {
                                warn!("  module {}: a second ramdisk for module {}; ignored", m.index, k.index);
                            } else {
                                k.ramdisk = Some(bytes);
                            }
                        }
                    }
                    _ => out.push(Planned { index: m.index, role, args, kernel: bytes, ramdisk: None }),
                }
                previous_kernel = role.is_kernel() || (previous_kernel && role == Role::Ramdisk);
            }
            Err(why) => {
                error!("{head}: refused: {why}");
                previous_kernel = false;
            }
        }
    }
    out
}

/// Builds every planned domain and queues its first vCPU (when `can_run`:
/// the CPU's virtualization is usable). Returns how many domains were
/// created.
pub fn build(info: &BootInfo<'_>, opts: &Options, can_run: bool) -> usize {
    let planned = plan(info);
    if !can_run {
        for p in &planned {
            error!("module {}: not started: no usable hardware virtualization", p.index);
        }
        return 0;
    }
    let mut built: Vec<Built<'_>> = Vec::new();
    let mut next_id: u16 = 1;
    let mut names: Vec<String> = Vec::new();
    let mut have_dom0 = false;
    for p in planned {
        let (id, name, memory_mib, vcpus, cmdline, privileged, weight, cap, cpus, evtchn, grant) = match p.role {
            Role::Dom0 => {
                if have_dom0 {
                    error!("module {}: a second dom0; refused", p.index);
                    continue;
                }
                have_dom0 = true;
                (
                    0,
                    String::from("Domain-0"),
                    opts.dom0_mem >> 20,
                    1,
                    p.args,
                    true,
                    DEFAULT_WEIGHT,
                    0,
                    CpuMask::all(),
                    "",
                    "",
                )
            }
            _ => {
                let parsed =
                    config::parse(p.args, |w| warn!("module {}: unknown domain option '{w}' ignored", p.index));
                let c = match parsed {
                    Ok(c) => c,
                    Err(e) => {
                        error!("module {}: domain refused: {e}", p.index);
                        continue;
                    }
                };
                let id = next_id;
                let name = c.name.map_or_else(|| format!("domu{id}"), String::from);
                (id, name, c.memory_mib, c.vcpus, c.cmdline, false, c.weight, c.cap, c.cpus, c.evtchn, c.grant)
            }
        };
        if names.contains(&name) {
            error!("module {}: domain name '{name}' is already used; refused", p.index);
            continue;
        }
        info!("creating domain {id} ({name}) from module {}", p.index);
        let spec = DomainSpec {
            id,
            name: name.clone(),
            privileged,
            memory_mib,
            vcpus,
            kernel: p.kernel,
            ramdisk: p.ramdisk,
            cmdline,
            weight,
            cap,
            affinity: cpus,
        };
        let online = crate::arch::x86_64::percpu::online_mask();
        if cpus.and(&online).is_empty() {
            warn!("module {}: cpus={cpus} names no CPU that is online ({online}); its vCPUs may use any", p.index);
        }
        match lifecycle::create(&spec) {
            Ok(d) => {
                info!(
                    "domain {id} ({name}): {memory_mib} MiB, {vcpus} vCPU{}, {}{}",
                    if vcpus == 1 { "" } else { "s" },
                    if privileged { "privileged, " } else { "" },
                    match p.ramdisk {
                        Some(r) => format!("ramdisk {} bytes", r.len()),
                        None => String::from("no ramdisk"),
                    }
                );
                if cap != 0 || weight != DEFAULT_WEIGHT || cpus != CpuMask::all() {
                    info!(
                        "domain {id} ({name}): weight {weight}, cap {}, cpus {cpus}",
                        if cap == 0 { String::from("none") } else { format!("{cap}%") }
                    );
                }
                built.push(Built { dom: d, module: p.index, evtchn, grant });
                names.push(name);
                if !privileged {
                    next_id += 1;
                }
            }
            Err(e) => error!("module {}: domain {id} ({name}) not created: {e}", p.index),
        }
    }
    // Static channels and grants join domains to each other before any of
    // them runs; a domain whose declarations cannot be honoured is refused.
    let refused = wire_static(&built);
    let mut created = 0;
    for b in &built {
        if refused.contains(&b.dom.id) {
            lifecycle::destroy(&b.dom);
            continue;
        }
        lifecycle::start(&b.dom);
        created += 1;
    }
    created
}

/// A domain built from a module, not yet running.
struct Built<'a> {
    dom: Arc<Domain>,
    module: usize,
    evtchn: &'a str,
    grant: &'a str,
}

fn find_peer<'b>(built: &'b [Built<'_>], refused: &[u16], peer: &str) -> Option<&'b Arc<Domain>> {
    let by_id = peer.parse::<u16>().ok();
    built.iter().map(|b| &b.dom).find(|d| !refused.contains(&d.id) && (Some(d.id) == by_id || d.name == peer))
}

/// Checks every static declaration, then makes them; returns the ids of
/// domains refused.
fn wire_static(built: &[Built<'_>]) -> Vec<u16> {
    let mut refused: Vec<u16> = Vec::new();
    // Refusing one domain can make a peer's declarations impossible: check
    // until nothing changes.
    loop {
        let mut newly = Vec::new();
        for b in built.iter().filter(|b| !refused.contains(&b.dom.id)) {
            let mut why = None;
            for c in config::static_channels(b.evtchn).flatten() {
                match find_peer(built, &refused, c.peer) {
                    None => why = Some(format!("evtchn={}:{}:{}: no domain '{}'", c.local, c.peer, c.remote, c.peer)),
                    Some(p) if p.id == b.dom.id => {
                        why = Some(format!(
                            "evtchn={}:{}:{}: a static channel joins two domains",
                            c.local, c.peer, c.remote
                        ))
                    }
                    Some(_) => {}
                }
            }
            for g in config::static_grants(b.grant).flatten() {
                if find_peer(built, &refused, g.peer).is_none() {
                    why = Some(format!("grant={}:{}:{:#x}: no domain '{}'", g.gref, g.peer, g.gfn, g.peer));
                }
            }
            if let Some(why) = why {
                error!("module {}: domain {} ({}) refused: {why}", b.module, b.dom.id, b.dom.name);
                newly.push(b.dom.id);
            }
        }
        if newly.is_empty() {
            break;
        }
        refused.extend(newly);
    }
    for b in built.iter().filter(|b| !refused.contains(&b.dom.id)) {
        for c in config::static_channels(b.evtchn).flatten() {
            let Some(peer) = find_peer(built, &refused, c.peer) else { continue };
            // Declared on both sides: made once.
            let already = peer.evtchn.lock().get(c.remote).map(|ch| ch.state)
                == Some(crate::event::table::State::Interdomain { remote_dom: b.dom.id, remote_port: c.local });
            if already {
                continue;
            }
            let (mut a, mut z) = if b.dom.id < peer.id {
                let a = b.dom.evtchn.lock();
                (a, peer.evtchn.lock())
            } else {
                let z = peer.evtchn.lock();
                (b.dom.evtchn.lock(), z)
            };
            match crate::event::table::bind_static(&mut a, b.dom.id, c.local, &mut z, peer.id, c.remote) {
                Ok(()) => info!(
                    "domain {} ({}): static event channel {} <-> domain {} ({}) port {}",
                    b.dom.id, b.dom.name, c.local, peer.id, peer.name, c.remote
                ),
                Err(_) => error!(
                    "domain {} ({}): static event channel {}:{}:{}: a port is already in use; not made",
                    b.dom.id, b.dom.name, c.local, c.peer, c.remote
                ),
            }
        }
        for g in config::static_grants(b.grant).flatten() {
            let Some(peer) = find_peer(built, &refused, g.peer) else { continue };
            let e = xen_abi::grant_table::GrantEntryV1 {
                flags: xen_abi::grant_table::GTF_PERMIT_ACCESS
                    | if g.readonly { xen_abi::grant_table::GTF_READONLY } else { 0 },
                domid: peer.id,
                frame: g.gfn.0 as u32,
            };
            if b.dom.grants.lock().write_entry(g.gref, e) {
                info!(
                    "domain {} ({}): static grant {} of frame {:#x} to domain {} ({}){}",
                    b.dom.id,
                    b.dom.name,
                    g.gref,
                    g.gfn,
                    peer.id,
                    peer.name,
                    if g.readonly { ", read-only" } else { "" }
                );
            }
        }
    }
    refused
}
