//! `xen_version`: the version, extra version, compile information,
//! capabilities, changeset, platform parameters, features, page size,
//! handle and command line, with Xen 4.17's values for a PVH domain.

use super::call::{Args, Guest, GuestHandle, Outcome};
use super::perm::Perm;
use xen_abi::errno::*;
use xen_abi::features;
use xen_abi::version::{self, CompileInfo, FeatureInfo, XEN_MAJOR, XEN_MINOR};

/// What xen_version needs of the caller.
pub trait VersionEnv: Guest {
    /// The domain's handle (its UUID in Xen).
    fn handle(&self) -> [u8; 16];
    /// The hypervisor's command line.
    fn hypervisor_cmdline(&self) -> &str;
}

/// XENVER_get_features submap 0 for this domain (Xen 4.17's values for a
/// PVH domain).
pub fn feature_submap(privileged: bool) -> u32 {
    let mut f = 1 << features::WRITABLE_PAGE_TABLES
        | 1 << features::AUTO_TRANSLATED_PHYSMAP
        | 1 << features::HVM_CALLBACK_VECTOR
        | 1 << features::HVM_SAFE_PVCLOCK
        | 1 << features::MEMORY_OP_VCPU_LOCAL
        | 1 << features::NOT_DIRECT_MAPPED;
    if privileged {
        f |= 1 << features::DOM0;
    }
    f
}

pub const CAPABILITIES: &str = "hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64 ";

pub const EXTRAVERSION: &str = ".0";

/// xen_version(cmd, arg). XENVER_version, which guests use as the null
/// hypercall, is answered before anything else is set up.
pub fn xen_version<E: VersionEnv>(env: &mut E, args: &Args) -> Outcome {
    if args.a[0] == version::XENVER_VERSION {
        return Outcome::Done(((XEN_MAJOR << 16) | XEN_MINOR) as i64);
    }
    Outcome::of(version_op(env, args.a[0], args.a[1], args.long_mode))
}

#[inline(never)]
fn version_op(env: &mut impl VersionEnv, cmd: u64, arg: u64, long_mode: bool) -> Result<i64, i64> {
    let out = GuestHandle::<u8>::new(arg);
    let put = |env: &mut _, bytes: &[u8]| out.write_bytes(env, bytes).map(|_| 0);
    match cmd {
        version::XENVER_VERSION => Ok(((XEN_MAJOR << 16) | XEN_MINOR) as i64),
        version::XENVER_EXTRAVERSION => put(env, &version::fixed::<16>(EXTRAVERSION)),
        version::XENVER_COMPILE_INFO => {
            let ci = CompileInfo {
                compiler: version::fixed(concat!("rustc (hypervisor ", env!("CARGO_PKG_VERSION"), ")")),
                compile_by: version::fixed("hypervisor"),
                compile_domain: version::fixed("localdomain"),
                compile_date: version::fixed("unknown"),
            };
            GuestHandle::<CompileInfo>::new(arg).write(env, &ci).map(|_| 0)
        }
        version::XENVER_CAPABILITIES => {
            let mut caps = [0u8; 1024];
            caps[..CAPABILITIES.len()].copy_from_slice(CAPABILITIES.as_bytes());
            put(env, &caps)
        }
        version::XENVER_CHANGESET => put(env, &version::fixed::<64>(concat!("hypervisor ", env!("CARGO_PKG_VERSION")))),
        version::XENVER_PLATFORM_PARAMETERS => {
            if long_mode {
                put(env, &0xffff_8000_0000_0000u64.to_le_bytes())
            } else {
                put(env, &0xffff_ffffu32.to_le_bytes())
            }
        }
        version::XENVER_GET_FEATURES => {
            let h = GuestHandle::<FeatureInfo>::new(arg);
            let mut fi = h.read(env)?;
            if fi.submap_idx != 0 {
                return Err(-EINVAL);
            }
            fi.submap = feature_submap(env.caller().privileged);
            h.write(env, &fi).map(|_| 0)
        }
        version::XENVER_PAGESIZE if arg != 0 => Err(-EINVAL),
        version::XENVER_PAGESIZE => Ok(4096),
        version::XENVER_GUEST_HANDLE => {
            let h = env.handle();
            put(env, &h)
        }
        // The command line is the control domain's to see (Xen's
        // xsm_xen_version); others read a placeholder.
        version::XENVER_COMMANDLINE => {
            if !env.caller().may(Perm::Control, None) {
                return put(env, b"<denied>\0");
            }
            let mut line = [0u8; 1024];
            let c = env.hypervisor_cmdline().as_bytes();
            let n = c.len().min(1023);
            line[..n].copy_from_slice(&c[..n]);
            put(env, &line)
        }
        version::XENVER_BUILD_ID => env.caller().check(Perm::Control, None).and(Err(-ENODATA)),
        _ => Err(-ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::fake::FakeGuest;

    /// A caller with nothing but its memory, a handle and a command line:
    /// xen_version needs no more.
    struct VersionFake(FakeGuest);

    crate::hypercall::fake::guest_via!(VersionFake, 0);

    impl VersionEnv for VersionFake {
        fn handle(&self) -> [u8; 16] {
            [0xab; 16]
        }
        fn hypervisor_cmdline(&self) -> &str {
            "loglvl=all"
        }
    }

    impl VersionFake {
        fn put(&mut self, at: u64, bytes: &[u8]) {
            self.0.put(at, bytes)
        }
        fn get(&self, at: u64, n: usize) -> &[u8] {
            self.0.get(at, n)
        }
    }

    fn call(f: &mut VersionFake, a: [u64; 5]) -> Outcome {
        xen_version(f, &Args { a, long_mode: true })
    }

    #[test]
    fn xen_version_values() {
        let mut f = VersionFake(FakeGuest::new(1));
        assert_eq!(call(&mut f, [0, 0, 0, 0, 0]), Outcome::Done(0x40011));
        assert_eq!(call(&mut f, [1, 0x200, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.get(0x200, 3), b".0\0");
        assert_eq!(call(&mut f, [3, 0x300, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.get(0x300, CAPABILITIES.len()), CAPABILITIES.as_bytes());
        // get_features: submap 0 is the PVH domU value; other submaps refused.
        f.put(0x2000, &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(call(&mut f, [6, 0x2000, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.get(0x2004, 4), &0x12305u32.to_le_bytes());
        f.put(0x2000, &1u32.to_le_bytes());
        assert_eq!(call(&mut f, [6, 0x2000, 0, 0, 0]), Outcome::Done(-EINVAL));
        assert_eq!(call(&mut f, [7, 0, 0, 0, 0]), Outcome::Done(4096));
        assert_eq!(call(&mut f, [7, 0x10, 0, 0, 0]), Outcome::Done(-EINVAL));
        assert_eq!(call(&mut f, [5, 0x400, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.get(0x400, 8), &0xffff_8000_0000_0000u64.to_le_bytes());
        assert_eq!(call(&mut f, [9, 0x500, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.get(0x500, 9), b"<denied>\0");
        assert_eq!(call(&mut f, [10, 0x500, 0, 0, 0]), Outcome::Done(-EPERM));
        assert_eq!(call(&mut f, [11, 0x500, 0, 0, 0]), Outcome::Done(-ENOSYS));
        assert_eq!(call(&mut f, [1, 0xffff_0000_0000, 0, 0, 0]), Outcome::Done(-EFAULT));
        // dom0 sees the real command line and the dom0 feature bit.
        f.0.privileged = true;
        assert_eq!(call(&mut f, [9, 0x500, 0, 0, 0]), Outcome::Done(0));
        assert_eq!(f.get(0x500, 11), b"loglvl=all\0");
        f.put(0x2000, &0u32.to_le_bytes());
        call(&mut f, [6, 0x2000, 0, 0, 0]);
        assert_eq!(f.get(0x2004, 4), &(0x12305u32 | 1 << 11).to_le_bytes());
    }
}
