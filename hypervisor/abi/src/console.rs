//! `console_io` (xen/include/public/xen.h): `console_io(cmd, count, buffer)`,
//! and the console ring page (xen/include/public/io/console.h).

pub const CONSOLEIO_WRITE: u64 = 0;
pub const CONSOLEIO_READ: u64 = 1;

/// `struct xencons_interface`: input from the backend, output from the
/// guest, each a ring with free-running indices (the index mod the size
/// is the position).
pub const IN_OFFSET: usize = 0;
pub const IN_SIZE: u32 = 1024;
pub const OUT_OFFSET: usize = 1024;
pub const OUT_SIZE: u32 = 2048;
pub const IN_CONS: usize = 3072;
pub const IN_PROD: usize = 3076;
pub const OUT_CONS: usize = 3080;
pub const OUT_PROD: usize = 3084;
