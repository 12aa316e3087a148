//! `memory_op`: reservation (increase, decrease, populate; continued after
//! a bounded number of extents), add_to_physmap (shared_info, grant
//! frames), the memory map and the reservation queries.

use super::call::{Args, Guest, GuestHandle, Outcome};
use super::perm::{self, Perm};
use crate::mm::addr::Gfn;
use xen_abi::errno::*;
use xen_abi::memory::{self, AddToPhysmap, E820Entry};

/// What an extent operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// Adds pages to the domain without placing them (what
    /// increase_reservation does for a translated guest).
    Increase,
    /// Takes the domain's RAM at the extent away.
    Decrease,
    /// Gives the domain new zeroed RAM at the extent.
    Populate,
}

/// What memory_op needs of the caller. Domain ids are resolved and
/// checked before these are called.
pub trait MemoryEnv: Guest {
    /// Maps the caller's shared_info page at `gpfn` (moving it if it was
    /// mapped elsewhere, freeing a RAM page that was there).
    fn map_shared_info(&mut self, gpfn: Gfn) -> Result<(), i64>;
    /// XENMAPSPACE_grant_table: maps the caller's grant frame `idx` at
    /// `gpfn`, growing the table to it.
    fn map_grant_frame(&mut self, idx: u32, gpfn: Gfn) -> Result<(), i64>;
    /// The caller's memory map (None if it has none).
    fn memory_map(&self) -> Option<&[E820Entry]>;
    /// (pages it has, pages it may have).
    fn reservation(&self, domid: u16) -> (u64, u64);
    /// One extent of increase/decrease_reservation or populate_physmap:
    /// false stops the operation there.
    fn extent(&mut self, op: Extent, domid: u16, gfn: Gfn, order: u32) -> bool;
    /// The highest guest frame `domid` has mapped.
    fn maximum_gpfn(&self, domid: u16) -> Gfn;
    /// The highest host frame number (XENMEM_maximum_ram_page).
    fn maximum_ram_page(&self) -> u64;
}

/// Largest extent order a domU may ask for (Xen's default
/// `memop-max-order` for domUs); the control domain may use more.
const DOMU_MAX_ORDER: u32 = 9;

const CTLDOM_MAX_ORDER: u32 = 12;

/// Frames a reservation operation handles (allocates and zeroes, or
/// releases) before it continues, so that one exit stays short however
/// large the extents: 2 MiB, one domU extent of the largest order (Xen
/// checks for preemption after every extent).
const FRAMES_PER_CALL: u64 = 512;

/// memory_op(cmd, arg): the command's upper bits carry a continuation's
/// progress.
pub fn memory_op<E: MemoryEnv>(env: &mut E, args: &Args) -> Outcome {
    let (cmd, arg, long_mode) = (args.a[0], args.a[1], args.long_mode);
    let op = cmd & memory::MEMOP_CMD_MASK;
    match op {
        memory::XENMEM_INCREASE_RESERVATION | memory::XENMEM_DECREASE_RESERVATION | memory::XENMEM_POPULATE_PHYSMAP => {
            reservation_op(env, op, cmd >> memory::MEMOP_EXTENT_SHIFT, arg, long_mode)
        }
        _ => Outcome::of(other_op(env, cmd, arg, long_mode)),
    }
}

/// A reservation structure in either layout.
fn read_reservation(env: &impl Guest, arg: u64, long_mode: bool) -> Result<memory::MemoryReservation, i64> {
    if long_mode {
        return GuestHandle::<memory::MemoryReservation>::new(arg).read(env);
    }
    // 32-bit layout: a 4-byte handle, count, order, flags, then the domain.
    let b = GuestHandle::<[u8; 20]>::new(arg).read(env)?;
    let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    Ok(memory::MemoryReservation {
        extent_start: w(0) as u64,
        nr_extents: w(4) as u64,
        extent_order: w(8),
        mem_flags: w(12),
        domid: u16::from_le_bytes([b[16], b[17]]),
        _pad: [0; 3],
    })
}

/// increase/decrease_reservation and populate_physmap: they return how
/// many extents were done, stopping at the first that cannot be (errors
/// included, as in Xen, except a bad flag).
fn reservation_op(env: &mut impl MemoryEnv, op: u64, start: u64, arg: u64, long_mode: bool) -> Outcome {
    let Ok(r) = read_reservation(env, arg, long_mode) else { return Outcome::Done(start as i64) };
    if r.nr_extents > (u32::MAX >> memory::MEMOP_EXTENT_SHIFT) as u64 || start >= r.nr_extents {
        return Outcome::Done(start as i64);
    }
    // Populate-on-demand is for HVM guests started ballooned, not offered:
    // nothing is done, as Xen does for a domain without a PoD pool.
    if op == memory::XENMEM_POPULATE_PHYSMAP && r.mem_flags & memory::XENMEMF_POPULATE_ON_DEMAND != 0 {
        return Outcome::Done(start as i64);
    }
    // An address limit of a page or less can never be met (Xen).
    let address_bits = r.mem_flags & 0xff;
    if address_bits != 0 && address_bits <= 12 {
        return Outcome::Done(start as i64);
    }
    // Xen's xsm_memory_adjust_reservation.
    let Ok(target) = perm::target(env, r.domid, Perm::Target) else { return Outcome::Done(start as i64) };
    let max_order = if env.caller().may(Perm::Control, None) { CTLDOM_MAX_ORDER } else { DOMU_MAX_ORDER };
    if r.extent_order > max_order {
        return Outcome::Done(start as i64);
    }
    let kind = match op {
        memory::XENMEM_INCREASE_RESERVATION => Extent::Increase,
        memory::XENMEM_DECREASE_RESERVATION => Extent::Decrease,
        _ => Extent::Populate,
    };
    let frames_per_extent = 1u64 << r.extent_order;
    let mut i = start;
    while i < r.nr_extents {
        if i > start && (i - start) * frames_per_extent >= FRAMES_PER_CALL {
            let next = op | i << memory::MEMOP_EXTENT_SHIFT;
            return Outcome::Continue([next, arg, 0, 0, 0]);
        }
        let gfn = if kind == Extent::Increase {
            0
        } else {
            // Frame numbers are unsigned longs: 4 bytes for a 32-bit caller.
            let list = if long_mode {
                GuestHandle::<u64>::new(r.extent_start).at(i).read(env)
            } else {
                GuestHandle::<u32>::new(r.extent_start).at(i).read(env).map(u64::from)
            };
            match list {
                Ok(gfn) => gfn,
                Err(_) => break,
            }
        };
        if !env.extent(kind, target, Gfn(gfn), r.extent_order) {
            break;
        }
        i += 1;
    }
    Outcome::Done(i as i64)
}

/// add_to_physmap in either layout.
fn read_add_to_physmap(env: &impl Guest, arg: u64, long_mode: bool) -> Result<AddToPhysmap, i64> {
    if long_mode {
        return GuestHandle::<AddToPhysmap>::new(arg).read(env);
    }
    // 32-bit layout: domid, size, space, then 32-bit idx and gpfn.
    let b = GuestHandle::<[u8; 16]>::new(arg).read(env)?;
    Ok(AddToPhysmap {
        domid: u16::from_le_bytes([b[0], b[1]]),
        size: u16::from_le_bytes([b[2], b[3]]),
        space: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        idx: u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as u64,
        gpfn: u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as u64,
    })
}

fn other_op(env: &mut impl MemoryEnv, cmd: u64, arg: u64, long_mode: bool) -> Result<i64, i64> {
    match cmd & memory::MEMOP_CMD_MASK {
        memory::XENMEM_ADD_TO_PHYSMAP => {
            let x = read_add_to_physmap(env, arg, long_mode)?;
            // Xen's xsm_add_to_physmap.
            let target = perm::target(env, x.domid, Perm::Target)?;
            if target != env.domid() {
                // Another domain's physmap (the control domain's right): not
                // implemented yet.
                return Err(-EOPNOTSUPP);
            }
            if x.gpfn == u64::MAX || (!long_mode && x.gpfn == 0xffff_ffff) {
                return Err(-EINVAL);
            }
            match x.space {
                memory::XENMAPSPACE_SHARED_INFO if x.idx != 0 => Err(-EINVAL),
                memory::XENMAPSPACE_SHARED_INFO => env.map_shared_info(Gfn(x.gpfn)).map(|_| 0),
                memory::XENMAPSPACE_GMFN_FOREIGN => Err(-ENOSYS),
                // Status frames belong to grant tables v2, not offered.
                memory::XENMAPSPACE_GRANT_TABLE if x.idx & memory::XENMAPIDX_GRANT_TABLE_STATUS != 0 => Err(-EINVAL),
                memory::XENMAPSPACE_GRANT_TABLE if x.idx > u32::MAX as u64 => Err(-EINVAL),
                memory::XENMAPSPACE_GRANT_TABLE => env.map_grant_frame(x.idx as u32, Gfn(x.gpfn)).map(|_| 0),
                // Moving RAM around the physmap is not offered yet.
                memory::XENMAPSPACE_GMFN | memory::XENMAPSPACE_GMFN_RANGE => Err(-EOPNOTSUPP),
                _ => Err(-EINVAL),
            }
        }
        memory::XENMEM_MEMORY_MAP => {
            let (nr, buf) = if long_mode {
                let m = GuestHandle::<memory::MemoryMap>::new(arg).read(env)?;
                (m.nr_entries, m.buffer)
            } else {
                let b = GuestHandle::<[u8; 8]>::new(arg).read(env)?;
                (u32::from_le_bytes([b[0], b[1], b[2], b[3]]), u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as u64)
            };
            let Some(map) = env.memory_map() else { return Err(-ENOSYS) };
            // A buffer too small for the whole map gets what fits (Xen).
            let n = (nr as usize).min(map.len()).min(32);
            let mut entries = [E820Entry::default(); 32];
            entries[..n].copy_from_slice(&map[..n]);
            let out = GuestHandle::<E820Entry>::new(buf);
            for (i, e) in entries[..n].iter().enumerate() {
                out.at(i as u64).write(env, e)?;
            }
            GuestHandle::<u32>::new(arg).write(env, &(n as u32))?;
            Ok(0)
        }
        // These take no continuation: bits above the command are refused.
        memory::XENMEM_CURRENT_RESERVATION
        | memory::XENMEM_MAXIMUM_RESERVATION
        | memory::XENMEM_MAXIMUM_GPFN
        | memory::XENMEM_MAXIMUM_RAM_PAGE
            if cmd >> memory::MEMOP_EXTENT_SHIFT != 0 =>
        {
            Err(-EINVAL)
        }
        memory::XENMEM_CURRENT_RESERVATION | memory::XENMEM_MAXIMUM_RESERVATION | memory::XENMEM_MAXIMUM_GPFN => {
            let dom = GuestHandle::<u16>::new(arg).read(env)?;
            // Xen's xsm_memory_stat_reservation.
            let target = perm::target(env, dom, Perm::Target)?;
            let (cur, max) = env.reservation(target);
            Ok(match cmd & memory::MEMOP_CMD_MASK {
                memory::XENMEM_CURRENT_RESERVATION => cur,
                memory::XENMEM_MAXIMUM_RESERVATION => max,
                _ => env.maximum_gpfn(target).0,
            } as i64)
        }
        memory::XENMEM_MAXIMUM_RAM_PAGE => Ok(env.maximum_ram_page() as i64),
        // Not for HVM guests in Xen either.
        memory::XENMEM_MACHINE_MEMORY_MAP | memory::XENMEM_MACHPHYS_MAPPING => Err(-ENOSYS),
        _ => Err(-ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::fake::{Fake, call};
    use crate::hypercall::{Call, dispatch};
    use xen_abi::{DOMID_SELF, Pod, hypercall as nr};

    #[test]
    fn add_to_physmap_shared_info() {
        let mut f = Fake::new(5);
        let x = AddToPhysmap { domid: DOMID_SELF, size: 0, space: 0, idx: 0, gpfn: 0x1234 };
        f.put(0x300, x.as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [7, 0x300, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.shared_info_at, Some(0x1234));
        for (x, want) in [
            (AddToPhysmap { domid: DOMID_SELF, size: 0, space: 0, idx: 1, gpfn: 1 }, -EINVAL),
            (AddToPhysmap { domid: DOMID_SELF, size: 0, space: 9, idx: 0, gpfn: 1 }, -EINVAL),
            (AddToPhysmap { domid: DOMID_SELF, size: 0, space: 0, idx: 0, gpfn: u64::MAX }, -EINVAL),
            (AddToPhysmap { domid: 7, size: 0, space: 0, idx: 0, gpfn: 1 }, -EPERM),
            (AddToPhysmap { domid: 99, size: 0, space: 0, idx: 0, gpfn: 1 }, -ESRCH),
            (AddToPhysmap { domid: DOMID_SELF, size: 0, space: 4, idx: 0, gpfn: 1 }, -ENOSYS),
            (AddToPhysmap { domid: DOMID_SELF, size: 0, space: 2, idx: 0, gpfn: 1 }, -EOPNOTSUPP),
        ] {
            f.put(0x300, x.as_bytes());
            assert_eq!(call(&mut f, nr::MEMORY_OP, [7, 0x300, 0, 0, 0]), Outcome::Done(want), "{x:?}");
        }
        // 32-bit callers use the compact layout.
        let mut b = [0u8; 16];
        b[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
        b[12..16].copy_from_slice(&0x777u32.to_le_bytes());
        f.put(0x300, &b);
        let r = dispatch(&mut f, Call { nr: nr::MEMORY_OP, args: [7, 0x300, 0, 0, 0], long_mode: false }, 0);
        assert_eq!(r, Outcome::Done(0));
        assert_eq!(f.shared_info_at, Some(0x777));
    }

    #[test]
    fn memory_map_truncates_and_reports_missing_maps() {
        let mut f = Fake::new(5);
        let m = memory::MemoryMap { nr_entries: 1, _pad: 0, buffer: 0x600 };
        f.put(0x500, m.as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [9, 0x500, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(u32::from_le_bytes(f.get(0x500, 4).try_into().unwrap()), 1);
        let e = E820Entry::read_from(f.get(0x600, 20)).unwrap();
        assert_eq!({ e.size }, 0x800_0000);
        assert_eq!(f.get(0x614, 4), &[0; 4], "nothing past the one entry asked for");
        let m = memory::MemoryMap { nr_entries: 10, _pad: 0, buffer: 0x600 };
        f.put(0x500, m.as_bytes());
        call(&mut f, nr::MEMORY_OP, [9, 0x500, 0, 0, 0]);
        assert_eq!(u32::from_le_bytes(f.get(0x500, 4).try_into().unwrap()), 2);
        let m = memory::MemoryMap { nr_entries: 2, _pad: 0, buffer: 0xffff_0000_0000 };
        f.put(0x500, m.as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [9, 0x500, 0, 0, 0]), Outcome::Done(-EFAULT));
        f.map = None;
        assert_eq!(call(&mut f, nr::MEMORY_OP, [9, 0x500, 0, 0, 0]), Outcome::Done(-ENOSYS));
        assert_eq!(call(&mut f, nr::MEMORY_OP, [10, 0x500, 0, 0, 0]), Outcome::Done(-ENOSYS));
        assert_eq!(call(&mut f, nr::MEMORY_OP, [63, 0x500, 0, 0, 0]), Outcome::Done(-ENOSYS));
    }

    #[test]
    fn reservation_ops_count_extents_and_continue() {
        let mut f = Fake::new(5);
        for i in 0..4u64 {
            f.put(0x900 + 8 * i, &(0x100 + i).to_le_bytes());
        }
        let r = |n, order, domid| memory::MemoryReservation {
            extent_start: 0x900,
            nr_extents: n,
            extent_order: order,
            mem_flags: 0,
            domid,
            _pad: [0; 3],
        };
        f.put(0x800, r(4, 0, DOMID_SELF).as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [1, 0x800, 0, 0, 0]), Outcome::Done(4));
        assert_eq!(f.extents[3], (Extent::Decrease, 5, 0x103, 0));
        // Stops at the first extent that fails, saying how many were done.
        f.extents_left = 2;
        assert_eq!(call(&mut f, nr::MEMORY_OP, [6, 0x800, 0, 0, 0]), Outcome::Done(2));
        f.extents_left = u32::MAX;
        // A continued call starts where the command's upper bits say.
        f.extents.clear();
        assert_eq!(call(&mut f, nr::MEMORY_OP, [6 | 3 << 6, 0x800, 0, 0, 0]), Outcome::Done(4));
        assert_eq!(f.extents, vec![(Extent::Populate, 5, 0x103, 0)]);
        // Too large an order, another domain, a bad buffer: nothing done.
        f.put(0x800, r(4, 10, DOMID_SELF).as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [6, 0x800, 0, 0, 0]), Outcome::Done(0));
        f.put(0x800, r(4, 0, 7).as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [1, 0x800, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(call(&mut f, nr::MEMORY_OP, [1, 0xffff_0000, 0, 0, 0]), Outcome::Done(0));
        // Many extents continue after a bounded number of frames: 512
        // single frames, or one extent of order 9 (at least one is done).
        f.put(0x800, r(600, 0, DOMID_SELF).as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [0, 0x800, 0, 0, 0]), Outcome::Continue([512 << 6, 0x800, 0, 0, 0]));
        f.put(0x800, r(600, 4, DOMID_SELF).as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [0, 0x800, 0, 0, 0]), Outcome::Continue([32 << 6, 0x800, 0, 0, 0]));
        f.put(0x800, r(3, 9, DOMID_SELF).as_bytes());
        assert_eq!(
            call(&mut f, nr::MEMORY_OP, [0 | 1 << 6, 0x800, 0, 0, 0]),
            Outcome::Continue([2 << 6, 0x800, 0, 0, 0])
        );
        // Reservation queries.
        f.put(0xa00, &DOMID_SELF.to_le_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [3, 0xa00, 0, 0, 0]), Outcome::Done(2000));
        assert_eq!(call(&mut f, nr::MEMORY_OP, [4, 0xa00, 0, 0, 0]), Outcome::Done(2048));
        assert_eq!(call(&mut f, nr::MEMORY_OP, [14, 0xa00, 0, 0, 0]), Outcome::Done(0x7ff));
        assert_eq!(call(&mut f, nr::MEMORY_OP, [2, 0, 0, 0, 0]), Outcome::Done(0x12345));
        assert_eq!(call(&mut f, nr::MEMORY_OP, [3 | 1 << 6, 0xa00, 0, 0, 0]), Outcome::Done(-EINVAL));
        f.put(0xa00, &7u16.to_le_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [3, 0xa00, 0, 0, 0]), Outcome::Done(-EPERM));
        f.put(0xa00, &9u16.to_le_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [3, 0xa00, 0, 0, 0]), Outcome::Done(-ESRCH));
        // Grant frames through add_to_physmap.
        let x = AddToPhysmap { domid: DOMID_SELF, size: 0, space: 1, idx: 3, gpfn: 0x2000 };
        f.put(0x300, x.as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [7, 0x300, 0, 0, 0]), Outcome::Done(0));
        let x = AddToPhysmap { domid: DOMID_SELF, size: 0, space: 1, idx: 1 << 31, gpfn: 0x2000 };
        f.put(0x300, x.as_bytes());
        assert_eq!(call(&mut f, nr::MEMORY_OP, [7, 0x300, 0, 0, 0]), Outcome::Done(-EINVAL));
    }
}
