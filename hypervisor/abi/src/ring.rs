//! The generic shared ring of split drivers (xen/include/public/io/ring.h):
//! a page holding a header of free-running producer indices and event
//! thresholds, then a power-of-two array of request/response slots.
//!
//! Both ends use the same page: the frontend produces requests and
//! consumes responses, the backend the other way round. `RING_IDX` values
//! only grow (mod 2^32); a slot is `idx & (size - 1)`.

/// Bytes before the first slot: req_prod, req_event, rsp_prod, rsp_event,
/// then 48 bytes of private and padding space.
pub const HEADER_SIZE: usize = 64;
pub const REQ_PROD: usize = 0;
pub const REQ_EVENT: usize = 4;
pub const RSP_PROD: usize = 8;
pub const RSP_EVENT: usize = 12;

/// Slots in a ring of `ring_bytes` whose slots are `slot_size` bytes
/// (`__CONST_RING_SIZE`: the largest power of two that fits).
pub const fn ring_size(ring_bytes: usize, slot_size: usize) -> u32 {
    if slot_size == 0 || ring_bytes <= HEADER_SIZE {
        return 0;
    }
    let n = (ring_bytes - HEADER_SIZE) / slot_size;
    if n == 0 {
        return 0;
    }
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// Whether the other end asked to be notified of the producer moving
/// from `old` to `new` (`RING_PUSH_*_AND_CHECK_NOTIFY`): the event
/// threshold lies in (old, new].
pub const fn needs_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// Slots free to the producer with `prod` produced and the other end's
/// responses up to `cons` consumed, in a ring of `size` slots.
pub const fn free_slots(size: u32, prod: u32, cons: u32) -> u32 {
    size.saturating_sub(prod.wrapping_sub(cons))
}

/// Whether `prod - cons` is a sane number of unconsumed entries: a peer
/// that moves its producer index further than the ring holds is broken
/// or hostile (Xen's `RING_REQUEST_PROD_OVERFLOW`).
pub const fn overflowed(size: u32, prod: u32, cons: u32) -> bool {
    prod.wrapping_sub(cons) > size
}
