//! Xen's public interface as a PVH guest sees it, defined once for the
//! hypervisor, dom0 and every guest we build.
//!
//! The numbers and layouts follow Xen's `xen/include/public/` headers
//! (x86-64). Structures are `#[repr(C)]` with explicit padding so that they
//! can be copied to and from guest memory byte for byte ([`Pod`]); the tests
//! at the bottom pin every size and offset.

#![no_std]

pub mod console;
pub mod cpuid;
pub mod elfnote;
pub mod errno;
pub mod event_channel;
pub mod features;
pub mod grant_table;
pub mod hvm;
pub mod hypercall;
pub mod memory;
pub mod ring;
pub mod sched;
pub mod shared;
pub mod start_info;
pub mod vcpu;
pub mod version;

#[cfg(feature = "guest")]
pub mod guest;

/// Plain old data: every bit pattern is a valid value and there are no
/// padding bytes, so the type can be copied from and to raw bytes.
///
/// # Safety
/// Implement only for `#[repr(C)]` types whose fields are all `Pod` and
/// whose size equals the sum of their fields' sizes.
pub unsafe trait Pod: Copy + Sized {
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: Pod types have no padding and are plain bytes.
        unsafe { core::slice::from_raw_parts((self as *const Self).cast::<u8>(), core::mem::size_of::<Self>()) }
    }

    fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; any bytes written form a valid value.
        unsafe { core::slice::from_raw_parts_mut((self as *mut Self).cast::<u8>(), core::mem::size_of::<Self>()) }
    }

    fn zeroed() -> Self {
        // SAFETY: all-zero bytes are a valid value of a Pod type.
        unsafe { core::mem::zeroed() }
    }

    /// Reads a value from the start of `bytes`, if there are enough.
    fn read_from(bytes: &[u8]) -> Option<Self> {
        let mut v = Self::zeroed();
        let n = core::mem::size_of::<Self>();
        v.as_bytes_mut().copy_from_slice(bytes.get(..n)?);
        Some(v)
    }
}

macro_rules! pod {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: the type is repr(C) of Pod fields without padding,
            // which the layout tests check.
            unsafe impl $crate::Pod for $t {}
        )*
    };
}
pub(crate) use pod;

// SAFETY: integers and arrays of integers are plain bytes.
unsafe impl Pod for u8 {}
unsafe impl Pod for u16 {}
unsafe impl Pod for u32 {}
unsafe impl Pod for u64 {}
unsafe impl<const N: usize> Pod for [u8; N] {}

/// A domain's own id in hypercall arguments.
pub const DOMID_SELF: u16 = 0x7ff0;
/// The first id that is not a real domain.
pub const DOMID_FIRST_RESERVED: u16 = 0x7ff0;

pub const PAGE_SIZE: usize = 4096;

#[cfg(test)]
mod layout_tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn vcpu_op_and_shared_info() {
        use shared::*;
        use vcpu::*;
        assert_eq!(size_of::<VcpuTimeInfo>(), 32);
        assert_eq!(offset_of!(VcpuTimeInfo, tsc_timestamp), 8);
        assert_eq!(offset_of!(VcpuTimeInfo, system_time), 16);
        assert_eq!(offset_of!(VcpuTimeInfo, tsc_to_system_mul), 24);
        assert_eq!(offset_of!(VcpuTimeInfo, tsc_shift), 28);
        assert_eq!(offset_of!(VcpuTimeInfo, flags), 29);
        assert_eq!(size_of::<RunstateInfo>(), 48);
        assert_eq!(offset_of!(RunstateInfo, state_entry_time), 8);
        assert_eq!(offset_of!(RunstateInfo, time), 16);
        assert_eq!(size_of::<SetSingleshotTimer>(), 16);
        assert_eq!(size_of::<RegisterVcpuInfo>(), 16);
        assert_eq!(size_of::<VcpuHvmX86_32>(), 120);
        assert_eq!(offset_of!(VcpuHvmX86_32, efer), 56);
        assert_eq!(offset_of!(VcpuHvmX86_32, cs_base), 64);
        assert_eq!(offset_of!(VcpuHvmX86_32, cs_limit), 84);
        assert_eq!(offset_of!(VcpuHvmX86_32, cs_ar), 104);
        assert_eq!(size_of::<VcpuHvmX86_64>(), 112);
        assert_eq!(offset_of!(VcpuHvmX86_64, rip), 64);
        assert_eq!(offset_of!(VcpuHvmX86_64, efer), 104);
        assert_eq!(size_of::<VcpuHvmContext>(), 128);
        assert_eq!(offset_of!(VcpuHvmContext, regs), 8);
        assert_eq!(size_of::<sched::SchedPoll>(), 24);
        assert_eq!(offset_of!(sched::SchedPoll, timeout), 16);
    }

    #[test]
    fn start_info() {
        use start_info::*;
        assert_eq!(size_of::<HvmStartInfo>(), 56);
        assert_eq!(offset_of!(HvmStartInfo, nr_modules), 12);
        assert_eq!(offset_of!(HvmStartInfo, modlist_paddr), 16);
        assert_eq!(offset_of!(HvmStartInfo, cmdline_paddr), 24);
        assert_eq!(offset_of!(HvmStartInfo, rsdp_paddr), 32);
        assert_eq!(offset_of!(HvmStartInfo, memmap_paddr), 40);
        assert_eq!(offset_of!(HvmStartInfo, memmap_entries), 48);
        assert_eq!(size_of::<HvmModlistEntry>(), 32);
        assert_eq!(offset_of!(HvmModlistEntry, cmdline_paddr), 16);
        assert_eq!(size_of::<HvmMemmapEntry>(), 24);
        assert_eq!(offset_of!(HvmMemmapEntry, kind), 16);
    }

    #[test]
    fn hypercall_arguments() {
        assert_eq!(size_of::<hvm::HvmParam>(), 16);
        assert_eq!(offset_of!(hvm::HvmParam, index), 4);
        assert_eq!(offset_of!(hvm::HvmParam, value), 8);
        assert_eq!(size_of::<hvm::EvtchnUpcallVector>(), 8);
        assert_eq!(size_of::<hvm::PagetableDying>(), 16);
        assert_eq!(size_of::<memory::AddToPhysmap>(), 24);
        assert_eq!(offset_of!(memory::AddToPhysmap, size), 2);
        assert_eq!(offset_of!(memory::AddToPhysmap, space), 4);
        assert_eq!(offset_of!(memory::AddToPhysmap, idx), 8);
        assert_eq!(offset_of!(memory::AddToPhysmap, gpfn), 16);
        assert_eq!(size_of::<memory::MemoryMap>(), 16);
        assert_eq!(offset_of!(memory::MemoryMap, buffer), 8);
        assert_eq!(size_of::<memory::E820Entry>(), 20);
        assert_eq!(size_of::<sched::SchedShutdown>(), 4);
        assert_eq!(size_of::<sched::SchedRemoteShutdown>(), 8);
        assert_eq!(size_of::<version::CompileInfo>(), 144);
        assert_eq!(size_of::<version::FeatureInfo>(), 8);
        assert_eq!(size_of::<version::PlatformParameters>(), 8);
    }

    #[test]
    fn event_channel_structures() {
        use event_channel::*;
        assert_eq!(size_of::<AllocUnbound>(), 8);
        assert_eq!(offset_of!(AllocUnbound, remote_dom), 2);
        assert_eq!(offset_of!(AllocUnbound, port), 4);
        assert_eq!(size_of::<BindInterdomain>(), 12);
        assert_eq!(offset_of!(BindInterdomain, remote_port), 4);
        assert_eq!(offset_of!(BindInterdomain, local_port), 8);
        assert_eq!(size_of::<BindVirq>(), 12);
        assert_eq!(offset_of!(BindVirq, port), 8);
        assert_eq!(size_of::<BindPirq>(), 12);
        assert_eq!(size_of::<BindIpi>(), 8);
        assert_eq!(size_of::<Port>(), 4);
        assert_eq!(size_of::<Status>(), 24);
        assert_eq!(offset_of!(Status, port), 4);
        assert_eq!(offset_of!(Status, status), 8);
        assert_eq!(offset_of!(Status, vcpu), 12);
        assert_eq!(offset_of!(Status, u), 16);
        assert_eq!(size_of::<BindVcpu>(), 8);
        assert_eq!(size_of::<Reset>(), 2);
        assert_eq!(size_of::<InitControl>(), 24);
        assert_eq!(offset_of!(InitControl, link_bits), 16);
        assert_eq!(EVTCHN_2L_NR_CHANNELS, 4096);
    }

    #[test]
    fn grant_table_structures() {
        use grant_table::*;
        assert_eq!(size_of::<GrantEntryV1>(), 8);
        assert_eq!(offset_of!(GrantEntryV1, domid), 2);
        assert_eq!(offset_of!(GrantEntryV1, frame), 4);
        assert_eq!(size_of::<MapGrantRef>(), 32);
        assert_eq!(offset_of!(MapGrantRef, flags), 8);
        assert_eq!(offset_of!(MapGrantRef, gref), 12);
        assert_eq!(offset_of!(MapGrantRef, dom), 16);
        assert_eq!(offset_of!(MapGrantRef, status), 18);
        assert_eq!(offset_of!(MapGrantRef, handle), 20);
        assert_eq!(offset_of!(MapGrantRef, dev_bus_addr), 24);
        assert_eq!(size_of::<UnmapGrantRef>(), 24);
        assert_eq!(offset_of!(UnmapGrantRef, dev_bus_addr), 8);
        assert_eq!(offset_of!(UnmapGrantRef, handle), 16);
        assert_eq!(offset_of!(UnmapGrantRef, status), 20);
        assert_eq!(size_of::<SetupTable>(), 24);
        assert_eq!(offset_of!(SetupTable, nr_frames), 4);
        assert_eq!(offset_of!(SetupTable, status), 8);
        assert_eq!(offset_of!(SetupTable, frame_list), 16);
        assert_eq!(size_of::<CopyPtr>(), 16);
        assert_eq!(offset_of!(CopyPtr, domid), 8);
        assert_eq!(offset_of!(CopyPtr, offset), 10);
        assert_eq!(size_of::<Copy>(), 40);
        assert_eq!(offset_of!(Copy, dest), 16);
        assert_eq!(offset_of!(Copy, len), 32);
        assert_eq!(offset_of!(Copy, flags), 34);
        assert_eq!(offset_of!(Copy, status), 36);
        assert_eq!(size_of::<QuerySize>(), 16);
        assert_eq!(offset_of!(QuerySize, nr_frames), 4);
        assert_eq!(offset_of!(QuerySize, max_nr_frames), 8);
        assert_eq!(offset_of!(QuerySize, status), 12);
        assert_eq!(size_of::<GetVersion>(), 8);
        assert_eq!(offset_of!(GetVersion, version), 4);
        assert_eq!(size_of::<Transfer>(), 24);
        assert_eq!(offset_of!(Transfer, gref), 12);
        assert_eq!(offset_of!(Transfer, status), 16);
    }

    #[test]
    fn memory_reservation_and_rings() {
        assert_eq!(size_of::<memory::MemoryReservation>(), 32);
        assert_eq!(offset_of!(memory::MemoryReservation, nr_extents), 8);
        assert_eq!(offset_of!(memory::MemoryReservation, extent_order), 16);
        assert_eq!(offset_of!(memory::MemoryReservation, mem_flags), 20);
        assert_eq!(offset_of!(memory::MemoryReservation, domid), 24);
        // blkif: 112-byte slots give 32 of them in a page; netif tx 12-byte
        // slots 256.
        assert_eq!(ring::ring_size(4096, 112), 32);
        assert_eq!(ring::ring_size(4096, 12), 256);
        assert_eq!(ring::ring_size(4096, 8), 256);
        assert_eq!(ring::ring_size(64, 8), 0);
        assert!(ring::needs_notify(4, 6, 5));
        assert!(ring::needs_notify(4, 6, 6));
        assert!(!ring::needs_notify(4, 6, 7));
        assert!(!ring::needs_notify(4, 6, 4));
        assert!(ring::needs_notify(u32::MAX, 1, 0), "indices wrap");
        assert_eq!(ring::free_slots(32, 40, 10), 2);
        assert!(ring::overflowed(32, 50, 10));
        assert!(!ring::overflowed(32, 42, 10));
        assert_eq!(console::OUT_PROD, 3084);
    }

    #[test]
    fn pod_round_trip() {
        let p = hvm::HvmParam { domid: DOMID_SELF, _pad: 0, index: 17, value: 0x1234 };
        let b = p.as_bytes();
        assert_eq!(b.len(), 16);
        assert_eq!(&b[..2], &0x7ff0u16.to_le_bytes());
        let q = hvm::HvmParam::read_from(b).unwrap();
        assert_eq!((q.index, q.value), (17, 0x1234));
        assert!(hvm::HvmParam::read_from(&b[..15]).is_none());
    }

    #[test]
    fn fixed_strings_are_nul_terminated() {
        let s: version::Extraversion = version::fixed(".0-this-is-far-too-long");
        assert_eq!(s[15], 0);
        assert_eq!(&s[..15], b".0-this-is-far-");
    }
}
