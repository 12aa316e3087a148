//! `xen_version(cmd, arg)` (xen/include/public/version.h).

/// The Xen release whose interface this crate mirrors (what
/// XENVER_version answers, and CPUID leaf 0x40000001).
pub const XEN_MAJOR: u32 = 4;
pub const XEN_MINOR: u32 = 17;

use crate::pod;

pub const XENVER_VERSION: u64 = 0;
pub const XENVER_EXTRAVERSION: u64 = 1;
pub const XENVER_COMPILE_INFO: u64 = 2;
pub const XENVER_CAPABILITIES: u64 = 3;
pub const XENVER_CHANGESET: u64 = 4;
pub const XENVER_PLATFORM_PARAMETERS: u64 = 5;
pub const XENVER_GET_FEATURES: u64 = 6;
pub const XENVER_PAGESIZE: u64 = 7;
pub const XENVER_GUEST_HANDLE: u64 = 8;
pub const XENVER_COMMANDLINE: u64 = 9;
pub const XENVER_BUILD_ID: u64 = 10;

pub type Extraversion = [u8; 16];
pub type Capabilities = [u8; 1024];
pub type Changeset = [u8; 64];
pub type DomainHandle = [u8; 16];
pub type Commandline = [u8; 1024];

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CompileInfo {
    pub compiler: [u8; 64],
    pub compile_by: [u8; 16],
    pub compile_domain: [u8; 32],
    pub compile_date: [u8; 32],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PlatformParameters {
    pub virt_start: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct FeatureInfo {
    pub submap_idx: u32,
    pub submap: u32,
}

pod!(CompileInfo, PlatformParameters, FeatureInfo);

/// Copies `s` into a NUL-padded fixed-size field (truncating, always
/// NUL-terminated).
pub fn fixed<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let n = s.len().min(N - 1);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}
