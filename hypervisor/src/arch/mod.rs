//! Architecture-specific code. Only x86-64 exists; common code reaches it
//! through the interfaces each module exports.

pub mod x86_64;
