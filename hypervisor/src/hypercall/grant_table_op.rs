//! `grant_table_op(cmd, arg, count)`: batches of map, unmap and copy
//! operations read from and written back to guest memory (continued
//! after a bounded number, as Xen does), and the table-wide operations.
//! Arguments are checked here in Xen's order; what each operation does on
//! real domains is `grant::map` and `grant::copy`'s.

use super::call::{Args, Guest, GuestHandle, Outcome};
use super::perm::{self, Perm};
use crate::mm::addr::Gfn;
use xen_abi::errno::*;
use xen_abi::grant_table::{self as gt, *};
use xen_abi::{DOMID_SELF, Pod};

/// What grant_table_op needs of the caller. Domains are resolved and
/// checked here first; each returns a GNTST_* status.
pub trait GrantEnv: Guest {
    /// Maps grant `op.gref` of `granter`; the handle on success.
    /// (status, handle, the machine address of the granted frame).
    fn grant_map(&mut self, op: &MapGrantRef, granter: u16) -> (i16, u32, u64);
    fn grant_unmap(&mut self, op: &UnmapGrantRef) -> i16;
    /// A copy whose grant sides name `source` and `dest` (the caller's own
    /// id for a frame side).
    fn grant_copy(&mut self, op: &gt::Copy, source: u16, dest: u16) -> i16;
    /// Frames and maximum frames of `domid`'s table, grown to `grow_to`
    /// frames first if asked.
    fn grant_table_size(&mut self, domid: u16, grow_to: Option<u32>) -> Result<(u32, u32), i16>;
    /// Where grant frame `idx` of `domid` is mapped, if it is.
    fn grant_frame_gfn(&self, domid: u16, idx: u32) -> Option<Gfn>;
}

/// Operations of a batch handled before the hypercall continues.
const BATCH: u32 = 256;
/// `INVALID_GFN` as setup_table reports a frame that is not mapped.
pub const INVALID_GFN: u64 = u64::MAX;

/// The domain a table-wide operation names, if the caller may act on it
/// (Xen's xsm_grant_setup / xsm_grant_query_size, XSM_TARGET), else the
/// status to report.
fn table_target(env: &impl Guest, dom: u16) -> Result<u16, i16> {
    let d = perm::lookup(env, dom).map_err(|_| GNTST_BAD_DOMAIN)?;
    env.caller().check(Perm::Target, Some(d)).map_err(|_| GNTST_PERMISSION_DENIED)?;
    Ok(d)
}

/// grant_table_op(cmd, arg, count).
pub fn grant_table_op<E: GrantEnv>(env: &mut E, args: &Args) -> Outcome {
    let [cmd, arg, count, ..] = args.a;
    let count = count & 0xffff_ffff;
    if (count as u32 as i32) < 0 {
        return Outcome::Done(-EINVAL);
    }
    match cmd {
        gt::GNTTABOP_MAP_GRANT_REF => batch(env, cmd, arg, count, |env, op: &mut MapGrantRef| {
            let (status, handle, machine) = match map_args(env, op) {
                Ok(granter) => env.grant_map(op, granter),
                Err(status) => (status, 0, 0),
            };
            op.status = status;
            op.handle = handle;
            op.dev_bus_addr = if status == GNTST_OKAY { machine } else { 0 };
        }),
        gt::GNTTABOP_UNMAP_GRANT_REF => batch(env, cmd, arg, count, |env, op: &mut UnmapGrantRef| {
            op.status = env.grant_unmap(op);
        }),
        gt::GNTTABOP_COPY => batch(env, cmd, arg, count, |env, op: &mut gt::Copy| {
            op.status = match copy_args(env, op) {
                Ok((source, dest)) => env.grant_copy(op, source, dest),
                Err(status) => status,
            };
        }),
        gt::GNTTABOP_SETUP_TABLE => Outcome::of(setup_table(env, arg, count, args.long_mode)),
        gt::GNTTABOP_QUERY_SIZE => Outcome::of((|| {
            if count != 1 {
                return Err(-EINVAL);
            }
            let h = GuestHandle::<QuerySize>::new(arg);
            let mut q = h.read(env)?;
            q.status = match table_target(env, q.dom).and_then(|d| env.grant_table_size(d, None)) {
                Ok((nr, max)) => {
                    q.nr_frames = nr;
                    q.max_nr_frames = max;
                    GNTST_OKAY
                }
                Err(s) => s,
            };
            h.write(env, &q)?;
            Ok(0)
        })()),
        gt::GNTTABOP_SET_VERSION => Outcome::of((|| {
            let v = GuestHandle::<SetVersion>::new(arg).read(env)?;
            match v.version {
                1 => Ok(0),
                // Version 2 is not offered: what Xen says to a domain whose
                // max_grant_version is 1.
                2 => Err(-ENOSYS),
                _ => Err(-EINVAL),
            }
        })()),
        gt::GNTTABOP_GET_VERSION => Outcome::of((|| {
            if count != 1 {
                return Err(-EINVAL);
            }
            let h = GuestHandle::<GetVersion>::new(arg);
            let mut v = h.read(env)?;
            perm::target(env, v.dom, Perm::Target)?;
            v.version = 1;
            h.write(env, &v)?;
            Ok(0)
        })()),
        // Transfers are for PV guests; the rest are not offered (yet).
        _ => Outcome::Done(-ENOSYS),
    }
}

/// map_grant_ref's checks before any table is touched, in Xen's order:
/// the flags, then the granter, by id only (DOMID_SELF names no domain
/// here).
fn map_args(env: &impl Guest, op: &MapGrantRef) -> Result<u16, i16> {
    if op.flags & (GNTMAP_HOST_MAP | GNTMAP_DEVICE_MAP) == 0 {
        return Err(GNTST_BAD_GNTREF);
    }
    // A PVH mapper maps into its p2m: no device, application or PTE maps.
    if op.flags & (GNTMAP_DEVICE_MAP | GNTMAP_APPLICATION_MAP | GNTMAP_CONTAINS_PTE) != 0 {
        return Err(GNTST_GENERAL_ERROR);
    }
    perm::lookup_by_id(env, op.dom).map_err(|_| GNTST_BAD_DOMAIN)
}

/// A copy's sides: a frame must be the caller's own (DOMID_SELF), a
/// grant's domain must exist. The domains of the two sides.
fn copy_args(env: &impl Guest, op: &gt::Copy) -> Result<(u16, u16), i16> {
    let mut doms = [0u16; 2];
    for (slot, (p, is_gref)) in doms
        .iter_mut()
        .zip([(&op.source, op.flags & GNTCOPY_SOURCE_GREF != 0), (&op.dest, op.flags & GNTCOPY_DEST_GREF != 0)])
    {
        *slot = if is_gref {
            perm::lookup(env, p.domid).map_err(|_| GNTST_BAD_DOMAIN)?
        } else if p.domid == DOMID_SELF {
            env.domid()
        } else {
            return Err(GNTST_PERMISSION_DENIED);
        };
    }
    Ok((doms[0], doms[1]))
}

/// Runs `one` on each of `count` operations of type `T` at `arg`, writing
/// each back; continues the hypercall after BATCH of them.
fn batch<E: GrantEnv, T: Pod>(
    env: &mut E,
    cmd: u64,
    arg: u64,
    count: u64,
    mut one: impl FnMut(&mut E, &mut T),
) -> Outcome {
    let ops = GuestHandle::<T>::new(arg);
    for i in 0..count {
        if i == BATCH as u64 {
            return Outcome::Continue([cmd, ops.at(i).addr().0, count - i, 0, 0]);
        }
        let mut op = match ops.at(i).read(env) {
            Ok(op) => op,
            Err(e) => return Outcome::Done(e),
        };
        one(env, &mut op);
        if let Err(e) = ops.at(i).write(env, &op) {
            return Outcome::Done(e);
        }
    }
    Outcome::Done(0)
}

fn setup_table(env: &mut impl GrantEnv, arg: u64, count: u64, long_mode: bool) -> Result<i64, i64> {
    if count != 1 {
        return Err(-EINVAL);
    }
    let s = if long_mode {
        GuestHandle::<SetupTable>::new(arg).read(env)?
    } else {
        // 32-bit layout: the frame list handle is 4 bytes at offset 12.
        let b = GuestHandle::<[u8; 16]>::new(arg).read(env)?;
        SetupTable {
            dom: u16::from_le_bytes([b[0], b[1]]),
            nr_frames: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            frame_list: u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as u64,
            ..SetupTable::default()
        }
    };
    let status = match table_target(env, s.dom).and_then(|d| env.grant_table_size(d, Some(s.nr_frames)).map(|_| d)) {
        Err(st) => st,
        Ok(d) => {
            let mut status = GNTST_OKAY;
            for i in 0..s.nr_frames {
                let gfn = env.grant_frame_gfn(d, i).map_or(INVALID_GFN, |g| g.0);
                let r = if long_mode {
                    GuestHandle::<u64>::new(s.frame_list).at(i as u64).write(env, &gfn)
                } else {
                    GuestHandle::<u32>::new(s.frame_list).at(i as u64).write(env, &(gfn as u32))
                };
                // Xen reports a frame list it cannot write in the status (a
                // PVH guest's handle always looks fine).
                if r.is_err() {
                    status = GNTST_BAD_VIRT_ADDR;
                }
            }
            status
        }
    };
    // The status sits at offset 8 in both layouts.
    GuestHandle::<SetupTable>::new(arg).cast::<u16>(8).write(env, &(status as u16))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use crate::hypercall::fake::Fake;
    use crate::hypercall::{Call, Outcome, dispatch};
    use xen_abi::Pod;
    use xen_abi::errno::*;
    use xen_abi::grant_table::*;
    use xen_abi::hypercall as nr;

    fn op(f: &mut Fake, cmd: u64, arg: u64, count: u64) -> Outcome {
        dispatch(f, Call { nr: nr::GRANT_TABLE_OP, args: [cmd, arg, count, 0, 0], long_mode: true }, 0)
    }

    #[test]
    fn map_batches_write_status_and_handle_back_and_continue() {
        let mut f = Fake::new(4);
        for i in 0..3u64 {
            let m = MapGrantRef {
                host_addr: 0x1000 * i,
                flags: GNTMAP_HOST_MAP,
                gref: i as u32,
                dom: 7,
                ..Default::default()
            };
            f.put(0x100 + 32 * i, m.as_bytes());
        }
        assert_eq!(op(&mut f, GNTTABOP_MAP_GRANT_REF, 0x100, 3), Outcome::Done(0));
        assert_eq!(f.grant_maps.len(), 3);
        let m = MapGrantRef::read_from(f.get(0x140, 32)).unwrap();
        assert_eq!((m.status, m.handle), (GNTST_OKAY, 2));
        assert_eq!(m.dev_bus_addr, 0x1234_5000, "the granted frame's machine address, as Xen reports it");
        // A failed map reports no address.
        f.grant_status = GNTST_BAD_GNTREF;
        assert_eq!(op(&mut f, GNTTABOP_MAP_GRANT_REF, 0x100, 1), Outcome::Done(0));
        let m = MapGrantRef::read_from(f.get(0x100, 32)).unwrap();
        assert_eq!((m.status, m.dev_bus_addr), (GNTST_BAD_GNTREF, 0));
        f.grant_status = GNTST_OKAY;
        // A batch larger than one go continues where it stopped.
        assert_eq!(op(&mut f, GNTTABOP_MAP_GRANT_REF, 0x100, 300), Outcome::Continue([0, 0x100 + 256 * 32, 44, 0, 0]));
        // An unreadable operation ends the batch with -EFAULT.
        assert_eq!(op(&mut f, GNTTABOP_MAP_GRANT_REF, 0xfff0, 2), Outcome::Done(-EFAULT));
        f.put(0x200, UnmapGrantRef { host_addr: 0x1000, handle: 1, ..Default::default() }.as_bytes());
        f.grant_status = GNTST_BAD_HANDLE;
        assert_eq!(op(&mut f, GNTTABOP_UNMAP_GRANT_REF, 0x200, 1), Outcome::Done(0));
        assert_eq!(UnmapGrantRef::read_from(f.get(0x200, 24)).unwrap().status, GNTST_BAD_HANDLE);
    }

    #[test]
    fn table_wide_operations_follow_xens_checks() {
        let mut f = Fake::new(4);
        let q = QuerySize { dom: 0x7ff0, ..Default::default() };
        f.put(0x300, q.as_bytes());
        assert_eq!(op(&mut f, GNTTABOP_QUERY_SIZE, 0x300, 1), Outcome::Done(0));
        let q = QuerySize::read_from(f.get(0x300, 16)).unwrap();
        assert_eq!((q.nr_frames, q.max_nr_frames, q.status), (1, 64, GNTST_OKAY));
        f.put(0x300, QuerySize { dom: 7, ..Default::default() }.as_bytes());
        op(&mut f, GNTTABOP_QUERY_SIZE, 0x300, 1);
        assert_eq!(QuerySize::read_from(f.get(0x300, 16)).unwrap().status, GNTST_PERMISSION_DENIED);
        f.put(0x300, QuerySize { dom: 99, ..Default::default() }.as_bytes());
        op(&mut f, GNTTABOP_QUERY_SIZE, 0x300, 1);
        assert_eq!(QuerySize::read_from(f.get(0x300, 16)).unwrap().status, GNTST_BAD_DOMAIN);
        assert_eq!(op(&mut f, GNTTABOP_QUERY_SIZE, 0x300, 2), Outcome::Done(-EINVAL));
        // setup_table writes one frame number per frame.
        let s = SetupTable { dom: 0x7ff0, nr_frames: 2, frame_list: 0x400, ..Default::default() };
        f.put(0x380, s.as_bytes());
        assert_eq!(op(&mut f, GNTTABOP_SETUP_TABLE, 0x380, 1), Outcome::Done(0));
        assert_eq!(SetupTable::read_from(f.get(0x380, 24)).unwrap().status, GNTST_OKAY);
        assert_eq!(f.get(0x400, 16), [0x1000u64.to_le_bytes(), u64::MAX.to_le_bytes()].concat());
        let s = SetupTable { dom: 0x7ff0, nr_frames: 65, frame_list: 0x400, ..Default::default() };
        f.put(0x380, s.as_bytes());
        op(&mut f, GNTTABOP_SETUP_TABLE, 0x380, 1);
        assert_eq!(SetupTable::read_from(f.get(0x380, 24)).unwrap().status, GNTST_GENERAL_ERROR);
        let s = SetupTable { dom: 0x7ff0, nr_frames: 1, frame_list: 0xffff_0000, ..Default::default() };
        f.put(0x380, s.as_bytes());
        assert_eq!(op(&mut f, GNTTABOP_SETUP_TABLE, 0x380, 1), Outcome::Done(0));
        assert_eq!(SetupTable::read_from(f.get(0x380, 24)).unwrap().status, GNTST_BAD_VIRT_ADDR);
        // Versions: 1 only.
        f.put(0x500, &1u32.to_le_bytes());
        assert_eq!(op(&mut f, GNTTABOP_SET_VERSION, 0x500, 1), Outcome::Done(0));
        f.put(0x500, &2u32.to_le_bytes());
        assert_eq!(op(&mut f, GNTTABOP_SET_VERSION, 0x500, 1), Outcome::Done(-ENOSYS));
        f.put(0x500, GetVersion { dom: 0x7ff0, ..Default::default() }.as_bytes());
        assert_eq!(op(&mut f, GNTTABOP_GET_VERSION, 0x500, 1), Outcome::Done(0));
        assert_eq!(GetVersion::read_from(f.get(0x500, 8)).unwrap().version, 1);
        f.put(0x500, GetVersion { dom: 7, ..Default::default() }.as_bytes());
        assert_eq!(op(&mut f, GNTTABOP_GET_VERSION, 0x500, 1), Outcome::Done(-EPERM));
        assert_eq!(op(&mut f, GNTTABOP_TRANSFER, 0x500, 1), Outcome::Done(-ENOSYS));
    }
}
