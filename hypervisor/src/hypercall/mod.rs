//! Hypercalls with Xen's numbers, structures and errors: a table of
//! families (`table`), one file per family, one permission vocabulary
//! (`perm`), and typed guest handles for arguments (`call`).
//!
//! Handlers see the caller through traits (`Guest`, and one per family),
//! so their semantics (argument checks, error codes, continuations) are
//! tested on the host against fakes (`fake`); the bare-metal
//! implementation is `env`. Behaviour follows Xen 4.17 (see
//! docs/abi-coverage.md for what is implemented and how it differs).

pub mod call;
pub mod console_io;
pub mod control;
#[cfg(target_os = "none")]
pub mod env;
pub mod event_channel_op;
#[cfg(test)]
pub(crate) mod fake;
pub mod grant_table_op;
pub mod hvm_op;
pub mod memory_op;
pub mod perm;
pub mod physdev_op;
pub mod sched_op;
pub mod table;
pub mod vcpu_op;
pub mod xen_version;

pub use call::{Args, Call, Guest, GuestHandle, Outcome};
pub use table::{Env, dispatch};
