//! The inter-domain primitives on real domains: frame references that
//! keep granted pages alive, event delivery into shared_info and
//! vcpu_info, event-channel, grant-table and reservation operations, and
//! the console ring the hypervisor serves when no backend domain does.
//!
//! Lock order: a domain's `evtchn` or `grants` lock may be taken before
//! its `inner` lock, never after; two `evtchn` locks are taken lower
//! domain id first; two `grants` locks are never held at once.

use crate::arch::x86_64::hvm::npt::{GPA_BITS, P2mType};
use crate::domain::{self, Deferred, Domain, replaceable, vflags};
use crate::event::table::{self as evtchn, Consumer, EventWords, Reply, Request, SendTarget, Table};
use crate::grant::table::{Frame, Mapping, Pinned};
use crate::sched;
use crate::mm::phys::{alloc_frames, alloc_zeroed_frame, free_frames, phys_to_virt};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use spin::Mutex;
use xen_abi::errno::*;
use xen_abi::grant_table::{self as gt, *};
use xen_abi::shared as xs;
use xen_abi::{DOMID_SELF, console as xc};

// --- Frame references ------------------------------------------------------

/// Host frames something besides their owner's p2m refers to (a grant
/// mapping or copy, a registered vcpu_info): an owner giving such a frame
/// up (ballooning it out, dying) leaves it allocated until the last
/// reference goes.
#[derive(Debug, Clone, Copy)]
struct FrameRef {
    mfn: u64,
    count: u32,
    /// The owner let go of it: free it with the last reference.
    released: bool,
}

/// Sorted by frame. A vector that keeps its capacity: references come and
/// go on every grant copy, and a search plus a short move is far cheaper
/// than a tree node allocated and freed each time.
static FRAME_REFS: Mutex<Vec<FrameRef>> = Mutex::new(Vec::new());

/// Takes a reference on `mfn` (the caller holds the owner's lock, so the
/// frame cannot be released under it).
pub fn frame_get(mfn: u64) {
    let mut refs = FRAME_REFS.lock();
    match refs.binary_search_by_key(&mfn, |r| r.mfn) {
        Ok(i) => refs[i].count += 1,
        Err(i) => refs.insert(i, FrameRef { mfn, count: 1, released: false }),
    }
}

/// Drops a reference on `mfn`, freeing it if its owner let go of it.
pub fn frame_put(mfn: u64) {
    let mut refs = FRAME_REFS.lock();
    let Ok(i) = refs.binary_search_by_key(&mfn, |r| r.mfn) else { return };
    refs[i].count -= 1;
    if refs[i].count == 0 {
        let r = refs.remove(i);
        if r.released {
            let _ = free_frames(mfn << 12, 1);
        }
    }
}

/// An owner gives `n` frames from `mfn` back: those nobody refers to are
/// freed now, the others with their last reference.
pub fn release_frames(mfn: u64, n: u64) {
    let mut refs = FRAME_REFS.lock();
    let first = refs.partition_point(|r| r.mfn < mfn);
    if refs.get(first).is_none_or(|r| r.mfn >= mfn + n) {
        let _ = free_frames(mfn << 12, n);
        return;
    }
    for f in mfn..mfn + n {
        match refs.binary_search_by_key(&f, |r| r.mfn) {
            Ok(i) => refs[i].released = true,
            Err(_) => {
                let _ = free_frames(f << 12, 1);
            }
        }
    }
}

// --- Event delivery ----------------------------------------------------------

/// `Some(ptr)` to a u64 of guest-visible memory, as an atomic.
fn atomic_u64(va: u64) -> &'static AtomicU64 {
    // SAFETY: callers pass 8-byte-aligned addresses inside the domain's
    // shared_info page or a registered (referenced) vcpu_info, which stay
    // allocated while the domain exists; the guest changes them
    // concurrently, hence atomics.
    unsafe { AtomicU64::from_ptr(va as *mut u64) }
}

fn atomic_u8(va: u64) -> &'static AtomicU8 {
    // SAFETY: as for atomic_u64.
    unsafe { AtomicU8::from_ptr(va as *mut u8) }
}

/// A domain's 2-level bitmaps.
struct Words<'a>(&'a Domain);

impl Words<'_> {
    fn word(&self, base: usize, port: u32) -> (&'static AtomicU64, u64) {
        (atomic_u64(self.0.shared_info_va + (base + (port as usize / 64) * 8) as u64), 1 << (port % 64))
    }
}

impl EventWords for Words<'_> {
    fn test_and_set_pending(&self, port: u32) -> bool {
        let (w, b) = self.word(xs::SHARED_EVTCHN_PENDING, port);
        w.fetch_or(b, Ordering::SeqCst) & b != 0
    }
    fn test_pending(&self, port: u32) -> bool {
        let (w, b) = self.word(xs::SHARED_EVTCHN_PENDING, port);
        w.load(Ordering::SeqCst) & b != 0
    }
    fn clear_pending(&self, port: u32) {
        let (w, b) = self.word(xs::SHARED_EVTCHN_PENDING, port);
        w.fetch_and(!b, Ordering::SeqCst);
    }
    fn test_mask(&self, port: u32) -> bool {
        let (w, b) = self.word(xs::SHARED_EVTCHN_MASK, port);
        w.load(Ordering::SeqCst) & b != 0
    }
    fn test_and_clear_mask(&self, port: u32) -> bool {
        let (w, b) = self.word(xs::SHARED_EVTCHN_MASK, port);
        w.fetch_and(!b, Ordering::SeqCst) & b != 0
    }
    fn test_and_set_selector(&self, vcpu: u32, word: u32) -> bool {
        let Some(va) = self.0.vcpu_info_va(vcpu) else { return true };
        let b = 1u64 << word;
        atomic_u64(va + xs::VCPU_INFO_PENDING_SEL as u64).fetch_or(b, Ordering::SeqCst) & b != 0
    }
    fn test_and_set_upcall(&self, vcpu: u32) -> bool {
        let Some(va) = self.0.vcpu_info_va(vcpu) else { return true };
        atomic_u8(va + xs::VCPU_INFO_UPCALL_PENDING as u64).swap(1, Ordering::SeqCst) != 0
    }
}

/// `vcpu_info.evtchn_upcall_pending` of `vcpu`.
pub fn upcall_pending(dom: &Domain, vcpu: u32) -> bool {
    dom.vcpu_info_va(vcpu).is_some_and(|va| atomic_u8(va).load(Ordering::SeqCst) != 0)
}

/// Poll registrations: a port plus one, or any port.
pub const POLL_NONE: u32 = 0;
pub const POLL_ANY: u32 = u32::MAX;

impl Domain {
    /// Marks `port` pending for `vcpu` and notifies the vCPU if that
    /// raised its upcall; ends polls waiting for the port.
    pub fn raise(&self, port: u32, vcpu: u32) {
        if evtchn::set_pending(&Words(self), port, vcpu) {
            self.kick_upcall(vcpu);
        }
        if self.pollers.load(Ordering::Acquire) != 0 {
            for v in &self.vcpus {
                let p = v.poll_port.load(Ordering::Acquire);
                if (p == POLL_ANY || p == port + 1)
                    && v.poll_port.compare_exchange(p, POLL_NONE, Ordering::AcqRel, Ordering::Acquire).is_ok()
                {
                    self.pollers.fetch_sub(1, Ordering::AcqRel);
                    v.set_flag(vflags::POLL_DONE);
                    sched::notify(v);
                }
            }
        }
    }

    /// The vCPU's upcall went up: through its local APIC vector if it has
    /// one (HVMOP_set_evtchn_upcall_vector), else the domain's callback
    /// vector, checked at every entry; a blocked vCPU wakes either way.
    fn kick_upcall(&self, vcpu: u32) {
        let Some(v) = self.vcpu(vcpu) else { return };
        let vector = v.upcall_vector.load(Ordering::Acquire);
        if vector != 0 {
            v.raise_irq(vector);
        } else {
            v.irq_hint.store(true, Ordering::SeqCst);
        }
        v.set_flag(vflags::EVENT);
        sched::notify(v);
    }

    /// After the callback vector or an upcall vector was set: a pending
    /// upcall is delivered now (Xen re-asserts it).
    pub fn reassert_upcalls(&self) {
        for v in &self.vcpus {
            if upcall_pending(self, v.id) {
                self.kick_upcall(v.id);
            }
        }
    }

    /// Raises VIRQ `virq` of `vcpu` if the domain bound it.
    pub fn send_virq(&self, vcpu: u32, virq: u32) {
        let bound = self.evtchn.lock().virq_port(vcpu, virq);
        if let Some((port, notify)) = bound {
            self.raise(port, notify);
        }
    }

    /// Whether `port` is pending (SCHEDOP_poll): -EINVAL for a port bound
    /// to nothing.
    pub fn port_pending(&self, port: u32) -> Result<bool, i64> {
        // Only a port bound to something can be polled (Xen's
        // evtchn_port_poll).
        if !self.evtchn.lock().in_use(port) {
            return Err(-EINVAL);
        }
        Ok(Words(self).test_pending(port))
    }
}

/// Locks two domains' port tables, lower id first.
fn lock_two<'a>(a: &'a Domain, b: &'a Domain) -> (spin::MutexGuard<'a, Table>, spin::MutexGuard<'a, Table>) {
    if a.id < b.id {
        let ga = a.evtchn.lock();
        (ga, b.evtchn.lock())
    } else {
        let gb = b.evtchn.lock();
        (a.evtchn.lock(), gb)
    }
}

/// `me` for its own id or DOMID_SELF, else the domain with that id.
pub fn domain_or_self(me: &Arc<Domain>, id: u16) -> Option<Arc<Domain>> {
    if id == me.id || id == DOMID_SELF { Some(me.clone()) } else { domain::find(id) }
}

/// One event-channel operation by domain `me` (`common::evtchn_op` has
/// resolved and checked the domains).
pub fn evtchn_op(me: &Arc<Domain>, req: Request) -> Result<Reply, i64> {
    match req {
        Request::AllocUnbound { dom, remote, permitted } => {
            let d = domain_or_self(me, dom).ok_or(-ESRCH)?;
            let mut t = d.evtchn.lock();
            let port = t.alloc_unbound(remote)?;
            if !permitted {
                let _ = t.close(port);
                return Err(-EPERM);
            }
            Ok(Reply::Port(port))
        }
        Request::BindInterdomain { remote_dom, remote_port } => {
            let port = if remote_dom == me.id {
                evtchn::bind_loopback(&mut me.evtchn.lock(), me.id, remote_port)?
            } else {
                let rd = domain::find(remote_dom).ok_or(-ESRCH)?;
                let (mut mine, mut theirs) = lock_two(me, &rd);
                evtchn::bind_interdomain(&mut mine, me.id, &mut theirs, rd.id, remote_port)?
            };
            // Events sent to the unbound port may have been lost: the new
            // port starts pending (Xen).
            let notify = me.evtchn.lock().get(port).map_or(0, |c| c.notify_vcpu);
            me.raise(port, notify);
            Ok(Reply::Port(port))
        }
        Request::BindVirq { virq, vcpu } => me.evtchn.lock().bind_virq(virq, vcpu).map(Reply::Port),
        Request::BindIpi { vcpu } => me.evtchn.lock().bind_ipi(vcpu).map(Reply::Port),
        Request::Close { port } => {
            close_port(me, port)?;
            Ok(Reply::Done)
        }
        Request::Send { port } => {
            send(me, port)?;
            Ok(Reply::Done)
        }
        Request::Status { dom, port } => {
            let d = domain_or_self(me, dom).ok_or(-ESRCH)?;
            let s = d.evtchn.lock().status(port)?;
            Ok(Reply::Status(s))
        }
        Request::Unmask { port } => {
            let (vcpu, usable) = {
                let t = me.evtchn.lock();
                (t.get(port).ok_or(-EINVAL)?.notify_vcpu, t.in_use(port))
            };
            // A free or reserved port is left alone, mask bit and all (Xen).
            if usable && evtchn::unmask(&Words(me), port, vcpu) {
                me.kick_upcall(vcpu);
            }
            Ok(Reply::Done)
        }
        Request::BindVcpu { port, vcpu } => me.evtchn.lock().bind_vcpu(port, vcpu).map(|_| Reply::Done),
        Request::Reset { .. } => {
            // Every port, the console's included: it is an ordinary port
            // to the guest (Xen's toolstack made it), so it goes too.
            let ports: Vec<u32> = me.evtchn.lock().bound_ports().collect();
            for p in ports {
                let _ = close_port(me, p);
            }
            Ok(Reply::Done)
        }
    }
}

/// Closes `port` of `me`; the far end of an interdomain channel waits for
/// `me` again.
pub fn close_port(me: &Domain, port: u32) -> Result<(), i64> {
    let other = me.evtchn.lock().close(port)?;
    // Xen clears the closed port's pending bit (never its mask).
    Words(me).clear_pending(port);
    if let Some((rd, rport)) = other {
        if rd == me.id {
            me.evtchn.lock().unbind_remote_end(rport, me.id, port);
        } else if let Some(d) = domain::find(rd) {
            d.evtchn.lock().unbind_remote_end(rport, me.id, port);
        }
    }
    Ok(())
}

/// EVTCHNOP_send.
pub fn send(me: &Domain, port: u32) -> Result<(), i64> {
    let target = me.evtchn.lock().send_target(port)?;
    match target {
        SendTarget::Remote { dom, port: rport } => {
            let far;
            let d: &Domain = if dom == me.id {
                me
            } else {
                match domain::find(dom) {
                    Some(x) => {
                        far = x;
                        &far
                    }
                    None => return Ok(()),
                }
            };
            // The far end must still point back here (it may have been
            // closed and reused meanwhile).
            let notify = {
                let t = d.evtchn.lock();
                match t.get(rport) {
                    Some(c) if c.state == (evtchn::State::Interdomain { remote_dom: me.id, remote_port: port }) => {
                        Some(c.notify_vcpu)
                    }
                    _ => None,
                }
            };
            if let Some(v) = notify {
                d.raise(rport, v);
            }
        }
        SendTarget::Local { port, vcpu } => me.raise(port, vcpu),
        SendTarget::Console => drain_console(me),
        SendTarget::Nothing => {}
    }
    Ok(())
}

/// A dying domain's channels: every port closed, so that peers see their
/// ends unbound.
pub fn close_all_ports(me: &Domain) {
    let ports: Vec<u32> = me.evtchn.lock().bound_ports().collect();
    for p in ports {
        let _ = close_port(me, p);
    }
}

// --- Grant tables ------------------------------------------------------------

/// A zeroed frame for a grant table.
fn grant_frame() -> Option<Frame> {
    let phys = alloc_zeroed_frame()?;
    let va = phys_to_virt(phys)? as usize;
    Some(Frame { mfn: phys >> 12, va })
}

/// Frees a grant table's frames (when its domain is gone for good).
pub fn free_grant_frames(frames: Vec<Frame>) {
    for f in frames {
        let _ = free_frames(f.mfn << 12, 1);
    }
}

/// Takes a reference on the frame behind `gfn` of `owner` if it is the
/// owner's RAM (writable RAM unless `readonly`).
fn owned_frame(owner: &Domain, gfn: u64, readonly: bool) -> Option<u64> {
    let i = owner.inner.lock();
    let (mfn, t) = i.p2m.as_ref()?.lookup(gfn)?;
    let ok = match t {
        P2mType::Ram => true,
        P2mType::RamReadOnly => readonly,
        _ => false,
    };
    if !ok {
        return None;
    }
    frame_get(mfn);
    Some(mfn)
}

/// Pins grant `gref` of `granter` for `me` and takes a reference on its
/// frame: the host frame, or a GNTST_* status.
fn acquire(granter: &Domain, gref: u32, me: u16, readonly: bool, for_copy: bool) -> Result<u64, i16> {
    let mut g = granter.grants.lock();
    match g.pin(gref, me, readonly, for_copy)? {
        Pinned::Frame(mfn) => {
            frame_get(mfn);
            Ok(mfn)
        }
        Pinned::Translate(gfn) => match owned_frame(granter, gfn, readonly) {
            Some(mfn) => {
                g.set_frame(gref, mfn);
                Ok(mfn)
            }
            None => {
                // Its frame cannot be used: the first pin is undone.
                g.unpin(gref, readonly);
                Err(GNTST_BAD_PAGE)
            }
        },
    }
}

/// Undoes [`acquire`].
fn release(granter: Option<&Domain>, gref: u32, readonly: bool, mfn: u64) {
    if let Some(g) = granter {
        g.grants.lock().unpin(gref, readonly);
    }
    frame_put(mfn);
}

/// GNTTABOP_map_grant_ref by `me` (a PVH domain: host_addr is where in
/// its guest-physical space).
pub fn grant_map(me: &Arc<Domain>, op: &MapGrantRef, deferred: &mut Vec<Deferred>) -> (i16, u32) {
    if op.flags & (GNTMAP_HOST_MAP | GNTMAP_DEVICE_MAP) == 0 {
        return (GNTST_BAD_GNTREF, 0);
    }
    if op.flags & (GNTMAP_DEVICE_MAP | GNTMAP_APPLICATION_MAP | GNTMAP_CONTAINS_PTE) != 0 {
        return (GNTST_GENERAL_ERROR, 0);
    }
    // By id only: DOMID_SELF is not a domain here (Xen's
    // rcu_lock_domain_by_id).
    if op.dom == DOMID_SELF {
        return (GNTST_BAD_DOMAIN, 0);
    }
    let Some(granter) = domain_or_self(me, op.dom) else { return (GNTST_BAD_DOMAIN, 0) };
    let readonly = op.flags & GNTMAP_READONLY != 0;
    let gfn = op.host_addr >> 12;
    // A handle first (Xen: GNTST_no_space before the reference is looked at).
    let placeholder = Mapping { granter: granter.id, gref: op.gref, readonly, gfn, mfn: 0 };
    let Some(handle) = me.grants.lock().add_mapping(placeholder) else { return (GNTST_NO_SPACE, 0) };
    let mfn = match acquire(&granter, op.gref, me.id, readonly, false) {
        Ok(mfn) => mfn,
        Err(st) => {
            me.grants.lock().remove_mapping(handle);
            return (st, 0);
        }
    };
    // Into the mapper's p2m: over nothing or its own RAM (which it gives
    // up, as Xen's physmap replacement does), never over another mapping
    // or a hypervisor page.
    let placed = {
        let mut i = me.inner.lock();
        let t = if readonly { P2mType::GrantRo } else { P2mType::GrantRw };
        match i.p2m.as_mut() {
            Some(p2m) if gfn >> (GPA_BITS - 12) == 0 && replaceable(p2m.lookup(gfn)) => match p2m.set(gfn, mfn, t) {
                Ok(old) => {
                    if let Some((old_mfn, ot)) = old
                        && ot.owned()
                    {
                        deferred.push(Deferred::Release(old_mfn));
                        i.ram_pages -= 1;
                    }
                    i.p2m_gen += 1;
                    true
                }
                Err(_) => false,
            },
            _ => false,
        }
    };
    if !placed {
        release(Some(&granter), op.gref, readonly, mfn);
        me.grants.lock().remove_mapping(handle);
        return (GNTST_GENERAL_ERROR, 0);
    }
    me.grants.lock().set_mapping(handle, Mapping { granter: granter.id, gref: op.gref, readonly, gfn, mfn });
    (GNTST_OKAY, handle)
}

/// GNTTABOP_unmap_grant_ref: the mapping goes at once; the pin and the
/// frame reference after every vCPU of `me` has dropped its translations.
pub fn grant_unmap(me: &Domain, op: &UnmapGrantRef, deferred: &mut Vec<Deferred>) -> i16 {
    let Some(m) = me.grants.lock().mapping(op.handle) else { return GNTST_BAD_HANDLE };
    // No address: Xen unmaps nothing and says it is fine (the mapping and
    // its handle stay).
    if op.host_addr == 0 {
        return GNTST_OKAY;
    }
    if op.host_addr >> 12 != m.gfn {
        return GNTST_GENERAL_ERROR;
    }
    {
        let mut i = me.inner.lock();
        let Some(p2m) = i.p2m.as_mut() else { return GNTST_GENERAL_ERROR };
        match p2m.lookup(m.gfn) {
            Some((mfn, t)) if t.is_grant() && mfn == m.mfn => {}
            _ => return GNTST_GENERAL_ERROR,
        }
        if p2m.clear(m.gfn).is_err() {
            return GNTST_GENERAL_ERROR;
        }
        i.p2m_gen += 1;
    }
    me.grants.lock().remove_mapping(op.handle);
    deferred.push(Deferred::Unpin { granter: m.granter, gref: m.gref, readonly: m.readonly, mfn: m.mfn });
    GNTST_OKAY
}

/// Work left for after the TLB flush that an unmap needs.
pub fn unpin_after_flush(granter: u16, gref: u32, readonly: bool, mfn: u64) {
    let g = domain::find(granter);
    release(g.as_deref(), gref, readonly, mfn);
}

/// A dying domain's mappings of other domains' grants: removed from its
/// p2m (which is being torn down) and their pins dropped.
pub fn release_mappings(me: &Domain) {
    let maps = me.grants.lock().take_mappings();
    for m in maps {
        unpin_after_flush(m.granter, m.gref, m.readonly, m.mfn);
    }
}

/// One side of a copy, acquired: host frame, and the grant to release.
struct CopySide {
    mfn: u64,
    grant: Option<(Arc<Domain>, u32)>,
    readonly: bool,
}

fn copy_side(me: &Arc<Domain>, p: &CopyPtr, is_gref: bool, readonly: bool) -> Result<CopySide, i16> {
    if !is_gref {
        // Only DOMID_SELF may name a frame (Xen).
        if p.domid != DOMID_SELF {
            return Err(GNTST_PERMISSION_DENIED);
        }
        let mfn = owned_frame(me, p.u, readonly).ok_or(GNTST_BAD_PAGE)?;
        return Ok(CopySide { mfn, grant: None, readonly });
    }
    let d = domain_or_self(me, p.domid).ok_or(GNTST_BAD_DOMAIN)?;
    let gref = p.u as u32;
    let mfn = acquire(&d, gref, me.id, readonly, true)?;
    Ok(CopySide { mfn, grant: Some((d, gref)), readonly })
}

fn drop_side(s: CopySide) {
    match s.grant {
        Some((d, gref)) => release(Some(&d), gref, s.readonly, s.mfn),
        None => frame_put(s.mfn),
    }
}

/// GNTTABOP_copy: checks in Xen's order (domains, source, destination,
/// then the bounds).
pub fn grant_copy(me: &Arc<Domain>, op: &gt::Copy) -> i16 {
    let src_gref = op.flags & GNTCOPY_SOURCE_GREF != 0;
    let dst_gref = op.flags & GNTCOPY_DEST_GREF != 0;
    for (p, is_gref) in [(&op.source, src_gref), (&op.dest, dst_gref)] {
        if !is_gref && p.domid != DOMID_SELF {
            return GNTST_PERMISSION_DENIED;
        }
        if is_gref && domain_or_self(me, p.domid).is_none() {
            return GNTST_BAD_DOMAIN;
        }
    }
    let src = match copy_side(me, &op.source, src_gref, true) {
        Ok(s) => s,
        Err(st) => return st,
    };
    let dst = match copy_side(me, &op.dest, dst_gref, false) {
        Ok(s) => s,
        Err(st) => {
            drop_side(src);
            return st;
        }
    };
    let (so, doff, len) = (op.source.offset as u64, op.dest.offset as u64, op.len as u64);
    let st = if so + len > 4096 || doff + len > 4096 {
        GNTST_BAD_COPY_ARG
    } else {
        match (phys_to_virt((src.mfn << 12) + so), phys_to_virt((dst.mfn << 12) + doff)) {
            (Some(s), Some(d)) => {
                // SAFETY: both ranges lie inside 4 KiB frames referenced for
                // the copy (they cannot be freed meanwhile); `copy` allows
                // the same frame on both sides.
                unsafe { core::ptr::copy(s as *const u8, d as *mut u8, len as usize) };
                GNTST_OKAY
            }
            _ => GNTST_GENERAL_ERROR,
        }
    };
    drop_side(src);
    drop_side(dst);
    st
}

/// Grows `d`'s grant table to `n` frames.
pub fn grant_grow(d: &Domain, n: u32) -> bool {
    d.grants.lock().grow(n, &mut grant_frame)
}

/// XENMAPSPACE_grant_table: grant frame `idx` of `me` at `gpfn`.
pub fn map_grant_frame(me: &Domain, idx: u32, gpfn: u64, deferred: &mut Vec<Deferred>) -> Result<bool, i64> {
    let mut g = me.grants.lock();
    if idx >= g.max_frames() || !g.grow(idx + 1, &mut grant_frame) {
        return Err(-EINVAL);
    }
    let Some(frame) = g.frame(idx) else { return Err(-EINVAL) };
    let placed = me.inner.lock().place_hypervisor_page(gpfn, frame.mfn, g.frame_gfn(idx), deferred)?;
    if placed {
        g.set_frame_gfn(idx, Some(gpfn));
    }
    Ok(placed)
}

// --- Memory reservation --------------------------------------------------------

/// One extent of a reservation operation on `d`; false stops the
/// operation.
pub fn extent(
    d: &Domain,
    op: crate::hypercall::Extent,
    gfn: u64,
    order: u32,
    deferred: &mut Vec<Deferred>,
) -> bool {
    use crate::hypercall::Extent;
    let n = 1u64 << order;
    if op != Extent::Increase && (gfn & (n - 1) != 0 || (gfn + n) >> (GPA_BITS - 12) != 0) {
        return false;
    }
    let mut i = d.inner.lock();
    match op {
        Extent::Decrease => {
            let Some(p2m) = i.p2m.as_mut() else { return false };
            for g in gfn..gfn + n {
                match p2m.lookup(g) {
                    Some((_, t)) if t.owned() => {}
                    _ => return false,
                }
            }
            for g in gfn..gfn + n {
                if let Ok(Some((mfn, _))) = p2m.clear(g) {
                    deferred.push(Deferred::Release(mfn));
                }
            }
            i.ram_pages -= n;
            i.p2m_gen += 1;
            true
        }
        Extent::Increase | Extent::Populate => {
            if i.ram_pages + n > i.max_pages {
                return false;
            }
            let Some(phys) = alloc_frames(order as usize) else { return false };
            let Some(va) = phys_to_virt(phys) else {
                let _ = free_frames(phys, n);
                return false;
            };
            // SAFETY: freshly allocated frames, not yet visible to a guest.
            unsafe { core::ptr::write_bytes(va as *mut u8, 0, (n << 12) as usize) };
            let mfn = phys >> 12;
            if op == Extent::Increase {
                // Owned but placed nowhere (a translated guest's increase,
                // as in Xen); freed with the domain.
                i.unplaced.push((mfn, n));
                i.ram_pages += n;
                return true;
            }
            let Some(p2m) = i.p2m.as_mut() else {
                let _ = free_frames(phys, n);
                return false;
            };
            if !(gfn..gfn + n).all(|g| replaceable(p2m.lookup(g))) {
                let _ = free_frames(phys, n);
                return false;
            }
            let mut replaced = 0;
            for (k, g) in (gfn..gfn + n).enumerate() {
                match p2m.set(g, mfn + k as u64, P2mType::Ram) {
                    Ok(Some((old, t))) if t.owned() => {
                        deferred.push(Deferred::Release(old));
                        replaced += 1;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        // Out of p2m table budget: undo this extent.
                        for g2 in gfn..g {
                            let _ = p2m.clear(g2);
                        }
                        let _ = free_frames(phys, n);
                        i.ram_pages -= replaced;
                        i.p2m_gen += 1;
                        return false;
                    }
                }
            }
            i.ram_pages = i.ram_pages - replaced + n;
            i.p2m_gen += 1;
            true
        }
    }
}

// --- Console ring ----------------------------------------------------------------

/// Where the console ring page is in every domain (libxl's special page
/// for the console: the last of the 8 at 0xfeff8000).
pub const CONSOLE_GFN: u64 = 0xfefff;

fn ring_u32(va: u64, off: usize) -> &'static AtomicU32 {
    // SAFETY: `va` is the domain's console page (hypervisor-owned, alive as
    // long as the domain) and `off` one of its 4-byte-aligned indices.
    unsafe { AtomicU32::from_ptr((va + off as u64) as *mut u32) }
}

/// Whether no backend domain has taken the console ring over.
fn hypervisor_serves_console(d: &Domain) -> bool {
    let port = d.console_port.load(Ordering::Acquire);
    port != 0 && d.evtchn.lock().get(port).is_some_and(|c| c.consumer == Consumer::HvConsole)
}

/// Prints what the domain wrote to its console ring, with its prefix,
/// and tells it the ring has room again.
pub fn drain_console(d: &Domain) {
    let va = d.console_va;
    if va == 0 || !hypervisor_serves_console(d) {
        return;
    }
    let cons = ring_u32(va, xc::OUT_CONS).load(Ordering::Acquire);
    let prod = ring_u32(va, xc::OUT_PROD).load(Ordering::Acquire);
    let mut n = prod.wrapping_sub(cons);
    if n > xc::OUT_SIZE {
        log::warn!(
            "domain {} ({}): console ring indices are corrupt ({cons:#x}, {prod:#x}); output dropped",
            d.id,
            d.name
        );
        ring_u32(va, xc::OUT_CONS).store(prod, Ordering::Release);
        return;
    }
    let mut c = cons;
    while n > 0 {
        let at = xc::OUT_OFFSET as u64 + (c % xc::OUT_SIZE) as u64;
        // SAFETY: inside the console page (offset below OUT_OFFSET + OUT_SIZE).
        let b = unsafe { core::ptr::read_volatile((va + at) as *const u8) };
        d.console_put(b);
        c = c.wrapping_add(1);
        n -= 1;
    }
    ring_u32(va, xc::OUT_CONS).store(c, Ordering::Release);
    let port = d.console_port.load(Ordering::Acquire);
    if port != 0 {
        d.raise(port, 0);
    }
}

/// Serial input for domain `d`'s console: what fits in its input ring.
pub fn console_input(d: &Domain, bytes: &[u8]) {
    let va = d.console_va;
    if va == 0 || !hypervisor_serves_console(d) {
        return;
    }
    let cons = ring_u32(va, xc::IN_CONS).load(Ordering::Acquire);
    let mut prod = ring_u32(va, xc::IN_PROD).load(Ordering::Acquire);
    for &b in bytes {
        if prod.wrapping_sub(cons) >= xc::IN_SIZE {
            break;
        }
        let at = xc::IN_OFFSET as u64 + (prod % xc::IN_SIZE) as u64;
        // SAFETY: inside the console page.
        unsafe { core::ptr::write_volatile((va + at) as *mut u8, b) };
        prod = prod.wrapping_add(1);
    }
    ring_u32(va, xc::IN_PROD).store(prod, Ordering::Release);
    let port = d.console_port.load(Ordering::Acquire);
    if port != 0 {
        d.raise(port, 0);
    }
}

/// Which domain serial input goes to (Xen's console switching: Ctrl-A
/// three times moves it to the next domain, then back to the hypervisor).
static INPUT_FOCUS: Mutex<(Option<u16>, u8)> = Mutex::new((None, 0));
const CTRL_A: u8 = 0x01;

/// Takes what was typed on the serial line (called periodically).
pub fn poll_serial_input() {
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < buf.len() {
        match crate::console::serial::read_byte() {
            Some(b) => {
                buf[n] = b;
                n += 1;
            }
            None => break,
        }
    }
    if n == 0 {
        return;
    }
    let mut focus = INPUT_FOCUS.lock();
    let mut out: Vec<u8> = Vec::new();
    for &b in &buf[..n] {
        if b == CTRL_A {
            focus.1 += 1;
            if focus.1 == 3 {
                // What was typed so far goes where it was typed.
                deliver_input(focus.0, &core::mem::take(&mut out));
                focus.1 = 0;
                focus.0 = next_focus(focus.0);
                match focus.0 {
                    Some(id) => log::info!("serial input to domain {id} (type Ctrl-A three times to switch)"),
                    None => log::info!("serial input to the hypervisor (type Ctrl-A three times to switch)"),
                }
            }
            continue;
        }
        // Ctrl-A typed fewer than three times goes through as typed.
        let held = core::mem::take(&mut focus.1) as usize;
        out.resize(out.len() + held, CTRL_A);
        out.push(b);
    }
    deliver_input(focus.0, &out);
}

fn deliver_input(focus: Option<u16>, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    if let Some(id) = focus
        && let Some(d) = domain::find(id)
    {
        console_input(&d, bytes);
    }
}

fn next_focus(cur: Option<u16>) -> Option<u16> {
    let mut ids: Vec<u16> = domain::all().iter().filter(|d| d.console_va != 0).map(|d| d.id).collect();
    ids.sort_unstable();
    match cur {
        None => ids.first().copied(),
        Some(c) => ids.into_iter().find(|&i| i > c),
    }
}
