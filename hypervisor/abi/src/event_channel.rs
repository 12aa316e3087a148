//! `event_channel_op(cmd, arg)` (xen/include/public/event_channel.h) and
//! the virtual IRQs (xen.h).

use crate::pod;

pub const EVTCHNOP_BIND_INTERDOMAIN: u64 = 0;
pub const EVTCHNOP_BIND_VIRQ: u64 = 1;
pub const EVTCHNOP_BIND_PIRQ: u64 = 2;
pub const EVTCHNOP_CLOSE: u64 = 3;
pub const EVTCHNOP_SEND: u64 = 4;
pub const EVTCHNOP_STATUS: u64 = 5;
pub const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
pub const EVTCHNOP_BIND_IPI: u64 = 7;
pub const EVTCHNOP_BIND_VCPU: u64 = 8;
pub const EVTCHNOP_UNMASK: u64 = 9;
pub const EVTCHNOP_RESET: u64 = 10;
pub const EVTCHNOP_INIT_CONTROL: u64 = 11;
pub const EVTCHNOP_EXPAND_ARRAY: u64 = 12;
pub const EVTCHNOP_SET_PRIORITY: u64 = 13;
pub const EVTCHNOP_RESET_CONT: u64 = 14;

/// `EVTCHNSTAT_*`: what EVTCHNOP_status reports.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
pub const EVTCHNSTAT_PIRQ: u32 = 3;
pub const EVTCHNSTAT_VIRQ: u32 = 4;
pub const EVTCHNSTAT_IPI: u32 = 5;

/// Virtual IRQs (`VIRQ_*`).
pub const VIRQ_TIMER: u32 = 0;
pub const VIRQ_DEBUG: u32 = 1;
pub const VIRQ_CONSOLE: u32 = 2;
pub const VIRQ_DOM_EXC: u32 = 3;
pub const VIRQ_TBUF: u32 = 4;
pub const VIRQ_DEBUGGER: u32 = 6;
pub const VIRQ_XENOPROF: u32 = 7;
pub const VIRQ_CON_RING: u32 = 8;
pub const VIRQ_PCPU_STATE: u32 = 9;
pub const VIRQ_MEM_EVENT: u32 = 10;
pub const VIRQ_ARGO: u32 = 11;
pub const VIRQ_ENOMEM: u32 = 12;
pub const VIRQ_XENPMU: u32 = 13;
pub const VIRQ_ARCH_0: u32 = 16;
pub const NR_VIRQS: u32 = 24;

/// Ports of the 2-level ABI for a 64-bit guest: 64 selector bits of 64
/// pending bits each.
pub const EVTCHN_2L_NR_CHANNELS: u32 = 64 * 64;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct AllocUnbound {
    pub dom: u16,
    pub remote_dom: u16,
    /// Out.
    pub port: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct BindInterdomain {
    pub remote_dom: u16,
    pub _pad: u16,
    pub remote_port: u32,
    /// Out.
    pub local_port: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct BindVirq {
    pub virq: u32,
    pub vcpu: u32,
    /// Out.
    pub port: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct BindPirq {
    pub pirq: u32,
    pub flags: u32,
    pub port: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct BindIpi {
    pub vcpu: u32,
    /// Out.
    pub port: u32,
}

/// `evtchn_close`, `evtchn_send` and `evtchn_unmask`: a port alone.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Port {
    pub port: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Status {
    pub dom: u16,
    pub _pad: u16,
    pub port: u32,
    /// Out: `EVTCHNSTAT_*`.
    pub status: u32,
    /// Out: the vCPU notified.
    pub vcpu: u32,
    /// Out, by status: unbound: remote domain (u16); interdomain: domain
    /// (u16 at 0) and port (u32 at 4); pirq or virq: the number (u32 at 0).
    pub u: [u8; 8],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct BindVcpu {
    pub port: u32,
    pub vcpu: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Reset {
    pub dom: u16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct InitControl {
    pub control_gfn: u64,
    pub offset: u32,
    pub vcpu: u32,
    pub link_bits: u8,
    pub _pad: [u8; 7],
}

/// `evtchn_expand_array`: one more page of the FIFO event array.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ExpandArray {
    pub array_gfn: u64,
}

/// `evtchn_set_priority`: a FIFO port's queue, 0 (highest) to 15.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SetPriority {
    pub port: u32,
    pub priority: u32,
}

pod!(
    AllocUnbound,
    BindInterdomain,
    BindVirq,
    BindPirq,
    BindIpi,
    Port,
    Status,
    BindVcpu,
    Reset,
    InitControl,
    ExpandArray,
    SetPriority
);

// --- the FIFO ABI ------------------------------------------------------------

/// Priorities: 0 is the highest, 15 the lowest; a new port gets 7.
pub const EVTCHN_FIFO_PRIORITY_MAX: u32 = 0;
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u32 = 7;
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;
/// One queue per priority, per vCPU.
pub const EVTCHN_FIFO_MAX_QUEUES: usize = EVTCHN_FIFO_PRIORITY_MIN as usize + 1;

/// Bits of a port's 32-bit event word (`event_word_t`).
pub const EVTCHN_FIFO_PENDING: u32 = 31;
pub const EVTCHN_FIFO_MASKED: u32 = 30;
pub const EVTCHN_FIFO_LINKED: u32 = 29;
pub const EVTCHN_FIFO_BUSY: u32 = 28;
/// The low bits of an event word link it to the next port of its queue.
pub const EVTCHN_FIFO_LINK_BITS: u32 = 17;
pub const EVTCHN_FIFO_LINK_MASK: u32 = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
pub const EVTCHN_FIFO_NR_CHANNELS: u32 = 1 << EVTCHN_FIFO_LINK_BITS;

/// Event words in a page of the event array, and pages the array can have.
pub const EVTCHN_FIFO_EVENT_WORDS_PER_PAGE: u32 = 4096 / 4;
pub const EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES: u32 = EVTCHN_FIFO_NR_CHANNELS / EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;

/// `evtchn_fifo_control_block`, one per vCPU, in a guest page at the
/// offset init_control names: `ready` has bit q set while queue q has
/// events; `head[q]` is the port queue q starts at.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct FifoControlBlock {
    pub ready: u32,
    pub _rsvd: u32,
    pub head: [u32; EVTCHN_FIFO_MAX_QUEUES],
}

/// Byte offsets in the control block.
pub const FIFO_CONTROL_READY: usize = 0;
pub const FIFO_CONTROL_HEAD: usize = 8;
pub const FIFO_CONTROL_BLOCK_SIZE: usize = core::mem::size_of::<FifoControlBlock>();
