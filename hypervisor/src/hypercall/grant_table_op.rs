//! `grant_table_op(cmd, arg, count)`: batches of map, unmap and copy
//! operations read from and written back to guest memory (continued
//! after a bounded number, as Xen does), and the table-wide operations.
//! What each operation does is the [`Env`]'s (`common::grant` underneath).

use crate::hypercall::{Env, Outcome, fault, read_arg};
use xen_abi::errno::*;
use xen_abi::grant_table::{self as gt, *};
use xen_abi::{DOMID_SELF, Pod};

/// Operations of a batch handled before the hypercall continues.
const BATCH: u32 = 256;
/// `INVALID_GFN` as setup_table reports a frame that is not mapped.
pub const INVALID_GFN: u64 = u64::MAX;

/// The domain a table-wide operation names, and whether the caller may
/// act on it (Xen's XSM_TARGET): Err(status) if it does not exist.
fn target(env: &impl Env, dom: u16) -> Result<(u16, bool), i16> {
    let d = if dom == DOMID_SELF { env.domid() } else { dom };
    if !env.domain_exists(d) {
        return Err(GNTST_BAD_DOMAIN);
    }
    Ok((d, d == env.domid() || env.privileged()))
}

pub fn grant_table_op(env: &mut impl Env, cmd: u64, arg: u64, count: u64, long_mode: bool) -> Outcome {
    let count = count & 0xffff_ffff;
    if (count as u32 as i32) < 0 {
        return Outcome::Done(-EINVAL);
    }
    let done = |r: Result<i64, i64>| Outcome::Done(r.unwrap_or_else(|e| e));
    match cmd {
        gt::GNTTABOP_MAP_GRANT_REF => batch(env, cmd, arg, count, |env, op: &mut MapGrantRef| {
            let (status, handle) = env.grant_map(op);
            op.status = status;
            op.handle = handle;
            op.dev_bus_addr = 0;
        }),
        gt::GNTTABOP_UNMAP_GRANT_REF => batch(env, cmd, arg, count, |env, op: &mut UnmapGrantRef| {
            op.status = env.grant_unmap(op);
        }),
        gt::GNTTABOP_COPY => batch(env, cmd, arg, count, |env, op: &mut gt::Copy| {
            op.status = env.grant_copy(op);
        }),
        gt::GNTTABOP_SETUP_TABLE => done(setup_table(env, arg, count, long_mode)),
        gt::GNTTABOP_QUERY_SIZE => done((|| {
            if count != 1 {
                return Err(-EINVAL);
            }
            let mut q: QuerySize = read_arg(env, arg)?;
            q.status = match target(env, q.dom) {
                Err(s) => s,
                Ok((_, false)) => GNTST_PERMISSION_DENIED,
                Ok((d, true)) => match env.grant_table_size(d, None) {
                    Ok((nr, max)) => {
                        q.nr_frames = nr;
                        q.max_nr_frames = max;
                        GNTST_OKAY
                    }
                    Err(s) => s,
                },
            };
            env.write(arg, q.as_bytes()).map_err(fault)?;
            Ok(0)
        })()),
        gt::GNTTABOP_SET_VERSION => done((|| {
            let v: SetVersion = read_arg(env, arg)?;
            match v.version {
                1 => Ok(0),
                // Version 2 is not offered: what Xen says to a domain whose
                // max_grant_version is 1.
                2 => Err(-ENOSYS),
                _ => Err(-EINVAL),
            }
        })()),
        gt::GNTTABOP_GET_VERSION => done((|| {
            if count != 1 {
                return Err(-EINVAL);
            }
            let mut v: GetVersion = read_arg(env, arg)?;
            let d = if v.dom == DOMID_SELF { env.domid() } else { v.dom };
            if !env.domain_exists(d) {
                return Err(-ESRCH);
            }
            if d != env.domid() && !env.privileged() {
                return Err(-EPERM);
            }
            v.version = 1;
            env.write(arg, v.as_bytes()).map_err(fault)?;
            Ok(0)
        })()),
        // Transfers are for PV guests; the rest are not offered (yet).
        _ => Outcome::Done(-ENOSYS),
    }
}

/// Runs `one` on each of `count` operations of type `T` at `arg`, writing
/// each back; continues the hypercall after BATCH of them.
fn batch<E: Env, T: Pod>(env: &mut E, cmd: u64, arg: u64, count: u64, mut one: impl FnMut(&mut E, &mut T)) -> Outcome {
    let size = core::mem::size_of::<T>() as u64;
    for i in 0..count {
        if i == BATCH as u64 {
            return Outcome::Continue([cmd, arg.wrapping_add(i * size), count - i, 0, 0]);
        }
        let at = arg.wrapping_add(i * size);
        let mut op: T = match read_arg(env, at) {
            Ok(op) => op,
            Err(e) => return Outcome::Done(e),
        };
        one(env, &mut op);
        if env.write(at, op.as_bytes()).is_err() {
            return Outcome::Done(-EFAULT);
        }
    }
    Outcome::Done(0)
}

fn setup_table(env: &mut impl Env, arg: u64, count: u64, long_mode: bool) -> Result<i64, i64> {
    if count != 1 {
        return Err(-EINVAL);
    }
    let mut s: SetupTable = if long_mode {
        read_arg(env, arg)?
    } else {
        // 32-bit layout: the frame list handle is 4 bytes at offset 12.
        let mut b = [0u8; 16];
        env.read(arg, &mut b).map_err(fault)?;
        SetupTable {
            dom: u16::from_le_bytes([b[0], b[1]]),
            nr_frames: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            frame_list: u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as u64,
            ..SetupTable::default()
        }
    };
    s.status = match target(env, s.dom) {
        Err(st) => st,
        Ok((_, false)) => GNTST_PERMISSION_DENIED,
        Ok((d, true)) => match env.grant_table_size(d, Some(s.nr_frames)) {
            Err(st) => st,
            Ok(_) => {
                let width = if long_mode { 8 } else { 4 };
                for i in 0..s.nr_frames {
                    let gfn = env.grant_frame_gfn(d, i);
                    let at = s.frame_list.wrapping_add(i as u64 * width);
                    let r = if long_mode {
                        env.write(at, &gfn.to_le_bytes())
                    } else {
                        env.write(at, &(gfn as u32).to_le_bytes())
                    };
                    // Xen reports a frame list it cannot write in the
                    // status (a PVH guest's handle always looks fine).
                    if r.is_err() {
                        s.status = GNTST_BAD_VIRT_ADDR;
                    }
                }
                if s.status == GNTST_BAD_VIRT_ADDR { s.status } else { GNTST_OKAY }
            }
        },
    };
    let status_at = arg.wrapping_add(8);
    env.write(status_at, &s.status.to_le_bytes()).map_err(fault)?;
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
