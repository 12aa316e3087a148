//! `console_io` (xen/include/public/xen.h): `console_io(cmd, count, buffer)`.

pub const CONSOLEIO_WRITE: u64 = 0;
pub const CONSOLEIO_READ: u64 = 1;
