//! Writing a cpio archive in the "newc" format, the one the Linux kernel
//! unpacks as an initramfs (`Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Each entry is a 110-byte ASCII header (`070701` and thirteen 8-digit hex
//! fields), the NUL-terminated name padded to a multiple of four bytes from
//! the header's start, then the data padded to four bytes. A `TRAILER!!!`
//! entry ends the archive.

/// File-type bits of `st_mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// An archive being written, in memory.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl Archive {
    pub fn new() -> Archive {
        Archive { bytes: Vec::new(), next_inode: 1 }
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        assert!(!name.is_empty() && !name.starts_with('/'), "cpio names are relative: {name:?}");
        let ino = self.next_inode;
        self.next_inode += 1;
        let fields = [
            ino,
            mode,
            0, // uid: root
            0, // gid: root
            nlink,
            0, // mtime: fixed, so the archive depends only on its contents
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check: only for the "070702" variant
        ];
        self.bytes.extend_from_slice(b"070701");
        for f in fields {
            self.bytes.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    pub fn dir(&mut self, name: &str, perm: u32) {
        self.entry(name, S_IFDIR | perm, 2, (0, 0), b"");
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | perm, 1, (0, 0), data);
    }

    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | perm, 1, (major, minor), b"");
    }

    /// Ends the archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.next_inode = 0;
        self.entry("TRAILER!!!", 0, 1, (0, 0), b"");
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads an archive back: (name, mode, rdev major, rdev minor, data).
    fn entries(mut b: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut consumed = 0;
        loop {
            assert_eq!(&b[..6], b"070701", "magic at offset {consumed}");
            let field =
                |i: usize| u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap();
            let (mode, size, major, minor, namesize) = (field(1), field(6), field(9), field(10), field(11));
            let name = std::str::from_utf8(&b[110..110 + namesize as usize - 1]).unwrap().to_string();
            assert_eq!(b[110 + namesize as usize - 1], 0, "the name is NUL-terminated");
            let data_at = (110 + namesize as usize).next_multiple_of(4);
            let data = b[data_at..data_at + size as usize].to_vec();
            let next = (data_at + size as usize).next_multiple_of(4);
            consumed += next;
            b = &b[next..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty(), "nothing after the trailer");
                return out;
            }
            out.push((name, mode, major, minor, data));
        }
    }

    #[test]
    fn entries_read_back_with_their_types_and_padding() {
        let mut a = Archive::new();
        a.dir("bin", 0o755);
        a.file("bin/busybox", 0o755, b"\x7fELF12345");
        a.symlink("bin/sh", "busybox");
        a.char_device("dev/console", 0o600, 5, 1);
        a.file("init", 0o755, b"#!/bin/sh\n");
        let bytes = a.finish();
        assert_eq!(bytes.len() % 4, 0);
        let e = entries(&bytes);
        let names: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(names, ["bin", "bin/busybox", "bin/sh", "dev/console", "init"]);
        assert_eq!(e[0].1, 0o040755);
        assert_eq!((e[1].1, e[1].4.as_slice()), (0o100755, &b"\x7fELF12345"[..]));
        assert_eq!((e[2].1, e[2].4.as_slice()), (0o120777, &b"busybox"[..]));
        assert_eq!((e[3].1, e[3].2, e[3].3), (0o020600, 5, 1));
    }

    #[test]
    fn the_first_header_is_byte_exact() {
        let mut a = Archive::new();
        a.file("init", 0o755, b"x");
        let bytes = a.finish();
        let header = "070701\
                      00000001\
                      000081ed\
                      00000000\
                      00000000\
                      00000001\
                      00000000\
                      00000001\
                      00000000\
                      00000000\
                      00000000\
                      00000000\
                      00000005\
                      00000000";
        assert_eq!(&bytes[..110], header.as_bytes());
        // 110 + "init\0" = 115, padded to 116; then "x" padded to 120.
        assert_eq!(&bytes[110..120], b"init\0\0x\0\0\0");
        assert_eq!(&bytes[120..126], b"070701");
    }
}
