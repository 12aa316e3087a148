//! Grant tables (version 1): a domain's grant frames, pins and maptrack.

pub mod table;
