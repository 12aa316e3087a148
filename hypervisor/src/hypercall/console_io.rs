//! `console_io`: a guest's text on the hypervisor console (CONSOLEIO_write,
//! continued after a bounded amount), and reading it (control domain only).

use super::call::{Args, Guest, GuestHandle, Outcome};
use super::perm::Perm;
use xen_abi::console;
use xen_abi::errno::*;

/// What console_io needs of the caller.
pub trait ConsoleEnv: Guest {
    /// One character of the caller's console output (line-buffered by the
    /// callee); false when the serial line has no room for the line it
    /// would end (offer it again later).
    fn console_put(&mut self, byte: u8) -> bool;
}

/// Bytes of `console_io` output handled per call before it continues.
const CONSOLE_CHUNK: usize = 127;

const CONSOLE_CHUNKS_PER_CALL: usize = 32;

/// console_io(cmd, count, buffer). Writing is open to every guest here (as
/// in a Xen built with verbose debugging, or for a domain marked as a
/// console); reading the hypervisor console is the control domain's.
pub fn console_io<E: ConsoleEnv>(env: &mut E, args: &Args) -> Outcome {
    let a = args.a;
    let (cmd, count, buf) = (a[0], a[1] & 0xffff_ffff, GuestHandle::<u8>::new(a[2]));
    match cmd {
        console::CONSOLEIO_WRITE => {}
        console::CONSOLEIO_READ => return Outcome::of(env.caller().check(Perm::Control, None).map(|_| 0)),
        _ => return Outcome::Done(-ENOSYS),
    }
    let mut done = 0u64;
    let mut chunk = [0u8; CONSOLE_CHUNK];
    for _ in 0..CONSOLE_CHUNKS_PER_CALL {
        if done == count {
            return Outcome::Done(0);
        }
        let n = ((count - done) as usize).min(CONSOLE_CHUNK);
        if let Err(e) = buf.at(done).read_bytes(env, &mut chunk[..n]) {
            return Outcome::Done(e);
        }
        for (k, &c) in chunk[..n].iter().enumerate() {
            if !env.console_put(c) {
                // The serial line is full: continue from this byte, so the
                // guest waits in its hypercall, not holding the CPU.
                let at = done + k as u64;
                return Outcome::Continue([cmd, count - at, buf.at(at).addr().0, a[3], a[4]]);
            }
        }
        done += n as u64;
    }
    if done == count {
        return Outcome::Done(0);
    }
    // The rest in a continuation, as Xen does for long writes.
    Outcome::Continue([cmd, count - done, buf.at(done).addr().0, a[3], a[4]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::Outcome;
    use crate::hypercall::fake::{Fake, call};
    use xen_abi::hypercall as nr;

    #[test]
    fn console_write_returns_zero_and_continues_long_writes() {
        let mut f = Fake::new(1);
        f.put(0x100, b"hello\n");
        assert_eq!(call(&mut f, nr::CONSOLE_IO, [0, 6, 0x100, 0, 0]), Outcome::Done(0));
        assert_eq!(f.console, b"hello\n");
        // 10 KB: more than one call's worth, so it continues with the rest.
        let n = 10_000u64;
        let r = call(&mut f, nr::CONSOLE_IO, [0, n, 0x1000, 0, 0]);
        let done = (CONSOLE_CHUNK * CONSOLE_CHUNKS_PER_CALL) as u64;
        assert_eq!(r, Outcome::Continue([0, n - done, 0x1000 + done, 0, 0]));
        assert_eq!(
            call(&mut f, nr::CONSOLE_IO, [0, n - done, 0x1000 + done, 0, 0]),
            Outcome::Continue([0, n - 2 * done, 0x1000 + 2 * done, 0, 0])
        );
        // A full serial line: the call continues from the first byte not
        // taken (the guest waits in its hypercall).
        f.console.clear();
        f.console_room = 3;
        f.put(0x100, b"hello\n");
        assert_eq!(call(&mut f, nr::CONSOLE_IO, [0, 6, 0x100, 0, 0]), Outcome::Continue([0, 3, 0x103, 0, 0]));
        assert_eq!(f.console, b"hel");
        f.console_room = usize::MAX;
        assert_eq!(call(&mut f, nr::CONSOLE_IO, [0, 3, 0x103, 0, 0]), Outcome::Done(0));
        assert_eq!(f.console, b"hello\n");
        // Bad pointer, read for a domU, unknown command.
        assert_eq!(call(&mut f, nr::CONSOLE_IO, [0, 16, 0xffff_ffff_0000, 0, 0]), Outcome::Done(-EFAULT));
        assert_eq!(call(&mut f, nr::CONSOLE_IO, [1, 16, 0x100, 0, 0]), Outcome::Done(-EPERM));
        assert_eq!(call(&mut f, nr::CONSOLE_IO, [7, 16, 0x100, 0, 0]), Outcome::Done(-ENOSYS));
        // count is an unsigned int: the upper half is ignored.
        f.console.clear();
        assert_eq!(call(&mut f, nr::CONSOLE_IO, [0, 0xdead_0000_0000_0002, 0x100, 0, 0]), Outcome::Done(0));
        assert_eq!(f.console, b"he");
    }
}
