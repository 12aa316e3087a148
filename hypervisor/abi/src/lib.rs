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
pub mod physdev;
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

    /// Asserts a structure's size and the offset of each field named, as
    /// Xen 4.17's `xen/include/public/` headers lay them out for x86-64
    /// (the figures are what gcc gives for those headers).
    macro_rules! layout {
        ($t:ty, $size:expr $(, $field:ident @ $off:expr)* $(,)?) => {{
            assert_eq!(size_of::<$t>(), $size, "size of {}", stringify!($t));
            $(assert_eq!(offset_of!($t, $field), $off, "offset of {}.{}", stringify!($t), stringify!($field));)*
        }};
    }

    /// xen.h: vcpu_time_info, vcpu_info and shared_info (by offsets).
    #[test]
    fn shared_info_and_vcpu_info() {
        use shared::*;
        layout!(VcpuTimeInfo, 32, version @ 0, pad0 @ 4, tsc_timestamp @ 8, system_time @ 16,
            tsc_to_system_mul @ 24, tsc_shift @ 28, flags @ 29, pad1 @ 30);
        assert_eq!(
            (VCPU_INFO_SIZE, VCPU_INFO_UPCALL_PENDING, VCPU_INFO_UPCALL_MASK, VCPU_INFO_PENDING_SEL, VCPU_INFO_TIME),
            (64, 0, 1, 8, 32)
        );
        assert_eq!((SHARED_EVTCHN_PENDING, SHARED_EVTCHN_MASK), (2048, 2560));
        assert_eq!((SHARED_WC_VERSION, SHARED_WC_SEC, SHARED_WC_NSEC, SHARED_WC_SEC_HI), (3072, 3076, 3080, 3084));
    }

    /// vcpu.h and hvm/hvm_vcpu.h.
    #[test]
    fn vcpu_op_arguments() {
        use vcpu::*;
        layout!(RunstateInfo, 48, state @ 0, state_entry_time @ 8, time @ 16);
        layout!(SetPeriodicTimer, 8, period_ns @ 0);
        layout!(SetSingleshotTimer, 16, timeout_abs_ns @ 0, flags @ 8);
        layout!(RegisterVcpuInfo, 16, mfn @ 0, offset @ 8, rsvd @ 12);
        layout!(RegisterArea, 8, addr @ 0);
        layout!(VcpuHvmX86_32, 120, eax @ 0, ecx @ 4, edx @ 8, ebx @ 12, esp @ 16, ebp @ 20, esi @ 24,
            edi @ 28, eip @ 32, eflags @ 36, cr0 @ 40, cr3 @ 44, cr4 @ 48, pad1 @ 52, efer @ 56,
            cs_base @ 64, ds_base @ 68, ss_base @ 72, es_base @ 76, tr_base @ 80, cs_limit @ 84,
            ds_limit @ 88, ss_limit @ 92, es_limit @ 96, tr_limit @ 100, cs_ar @ 104, ds_ar @ 106,
            ss_ar @ 108, es_ar @ 110, tr_ar @ 112, pad2 @ 114);
        layout!(VcpuHvmX86_64, 112, rax @ 0, rcx @ 8, rdx @ 16, rbx @ 24, rsp @ 32, rbp @ 40, rsi @ 48,
            rdi @ 56, rip @ 64, rflags @ 72, cr0 @ 80, cr3 @ 88, cr4 @ 96, efer @ 104);
        layout!(VcpuHvmContext, 128, mode @ 0, pad @ 4, regs @ 8);
    }

    /// arch-x86/hvm/start_info.h.
    #[test]
    fn start_info() {
        use start_info::*;
        layout!(HvmStartInfo, 56, magic @ 0, version @ 4, flags @ 8, nr_modules @ 12, modlist_paddr @ 16,
            cmdline_paddr @ 24, rsdp_paddr @ 32, memmap_paddr @ 40, memmap_entries @ 48, reserved @ 52);
        layout!(HvmModlistEntry, 32, paddr @ 0, size @ 8, cmdline_paddr @ 16, reserved @ 24);
        layout!(HvmMemmapEntry, 24, addr @ 0, size @ 8, kind @ 16, reserved @ 20);
    }

    /// hvm/hvm_op.h, memory.h, sched.h, version.h.
    #[test]
    fn hypercall_arguments() {
        layout!(hvm::HvmParam, 16, domid @ 0, index @ 4, value @ 8);
        layout!(hvm::EvtchnUpcallVector, 8, vcpu @ 0, vector @ 4);
        layout!(hvm::PagetableDying, 16, domid @ 0, gpa @ 8);
        layout!(memory::AddToPhysmap, 24, domid @ 0, size @ 2, space @ 4, idx @ 8, gpfn @ 16);
        layout!(memory::MemoryMap, 16, nr_entries @ 0, buffer @ 8);
        // The e820 entries memory_map writes are packed (Xen's and Linux's
        // `struct e820entry`).
        layout!(memory::E820Entry, 20, addr @ 0, size @ 8, kind @ 16);
        layout!(memory::MemoryReservation, 32, extent_start @ 0, nr_extents @ 8, extent_order @ 16,
            mem_flags @ 20, domid @ 24);
        layout!(sched::SchedShutdown, 4, reason @ 0);
        layout!(sched::SchedRemoteShutdown, 8, domain_id @ 0, reason @ 4);
        layout!(sched::SchedPoll, 24, ports @ 0, nr_ports @ 8, timeout @ 16);
        layout!(version::CompileInfo, 144, compiler @ 0, compile_by @ 64, compile_domain @ 80,
            compile_date @ 112);
        layout!(version::PlatformParameters, 8, virt_start @ 0);
        layout!(version::FeatureInfo, 8, submap_idx @ 0, submap @ 4);
    }

    /// event_channel.h.
    #[test]
    fn event_channel_structures() {
        use event_channel::*;
        layout!(AllocUnbound, 8, dom @ 0, remote_dom @ 2, port @ 4);
        layout!(BindInterdomain, 12, remote_dom @ 0, remote_port @ 4, local_port @ 8);
        layout!(BindVirq, 12, virq @ 0, vcpu @ 4, port @ 8);
        layout!(BindPirq, 12, pirq @ 0, flags @ 4, port @ 8);
        layout!(BindIpi, 8, vcpu @ 0, port @ 4);
        layout!(Port, 4, port @ 0);
        layout!(Status, 24, dom @ 0, port @ 4, status @ 8, vcpu @ 12, u @ 16);
        layout!(BindVcpu, 8, port @ 0, vcpu @ 4);
        layout!(Reset, 2, dom @ 0);
        layout!(InitControl, 24, control_gfn @ 0, offset @ 8, vcpu @ 12, link_bits @ 16, _pad @ 17);
        layout!(ExpandArray, 8, array_gfn @ 0);
        layout!(SetPriority, 8, port @ 0, priority @ 4);
        layout!(FifoControlBlock, 72, ready @ 0, _rsvd @ 4, head @ 8);
        assert_eq!(EVTCHN_2L_NR_CHANNELS, 4096);
        assert_eq!((FIFO_CONTROL_BLOCK_SIZE, FIFO_CONTROL_HEAD), (72, 8));
        assert_eq!((EVTCHN_FIFO_NR_CHANNELS, EVTCHN_FIFO_LINK_MASK), (131072, 0x1ffff));
        assert_eq!(EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES, 128);
    }

    /// grant_table.h.
    #[test]
    fn grant_table_structures() {
        use grant_table::*;
        layout!(GrantEntryV1, 8, flags @ 0, domid @ 2, frame @ 4);
        layout!(MapGrantRef, 32, host_addr @ 0, flags @ 8, gref @ 12, dom @ 16, status @ 18, handle @ 20,
            dev_bus_addr @ 24);
        layout!(UnmapGrantRef, 24, host_addr @ 0, dev_bus_addr @ 8, handle @ 16, status @ 20);
        layout!(SetupTable, 24, dom @ 0, nr_frames @ 4, status @ 8, frame_list @ 16);
        layout!(CopyPtr, 16, u @ 0, domid @ 8, offset @ 10);
        layout!(Copy, 40, source @ 0, dest @ 16, len @ 32, flags @ 34, status @ 36);
        layout!(QuerySize, 16, dom @ 0, nr_frames @ 4, max_nr_frames @ 8, status @ 12);
        layout!(SetVersion, 4, version @ 0);
        layout!(GetVersion, 8, dom @ 0, version @ 4);
        layout!(DumpTable, 4, dom @ 0, status @ 2);
        layout!(Transfer, 24, mfn @ 0, domid @ 8, gref @ 12, status @ 16);
    }

    /// io/ring.h's arithmetic and io/console.h's `xencons_interface`.
    #[test]
    fn rings_and_the_console_page() {
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
        use console::*;
        assert_eq!((IN_OFFSET, IN_SIZE, OUT_OFFSET, OUT_SIZE), (0, 1024, 1024, 2048));
        assert_eq!((IN_CONS, IN_PROD, OUT_CONS, OUT_PROD), (3072, 3076, 3080, 3084));
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
