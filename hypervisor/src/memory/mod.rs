//! Guest memory: the only door into a domain's memory (`guest_mem`).

pub mod guest_mem;
