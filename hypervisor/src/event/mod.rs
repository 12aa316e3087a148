//! Event channels: each domain's port table and Xen's 2-level rules.

pub mod table;
