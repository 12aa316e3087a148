//! Leaf data structures and formats that know nothing of the rest of the
//! hypervisor: CPU sets, a deadline queue, the ELF parser, a two-entry
//! cache.

pub mod cpumask;
pub mod elf;
pub mod pair_cache;
pub mod timer_queue;
