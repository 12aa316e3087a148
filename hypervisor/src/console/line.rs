//! A domain's console output as the hypervisor prints it: line-buffered,
//! printable characters only, as Xen's guest_console_write does.

/// Xen's DOMAIN_PBUF_SIZE.
pub const LINE_MAX: usize = 200;

pub struct LineBuffer {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuffer {
    pub const fn new() -> LineBuffer {
        LineBuffer { buf: [0; LINE_MAX], len: 0 }
    }

    /// Adds one byte; returns a complete line (without the newline) when
    /// the byte ends one or the buffer is full. Control characters other
    /// than tab are dropped, so a guest cannot move the cursor or clear the
    /// screen of the hypervisor console.
    pub fn put(&mut self, b: u8) -> Option<&str> {
        if b == b'\n' {
            let n = core::mem::take(&mut self.len);
            return Some(core::str::from_utf8(&self.buf[..n]).unwrap_or("(non-UTF-8 line)"));
        }
        if !(b == b'\t' || (0x20..0x7f).contains(&b)) {
            return None;
        }
        self.buf[self.len] = b;
        self.len += 1;
        if self.len == LINE_MAX - 1 {
            let n = core::mem::take(&mut self.len);
            return Some(core::str::from_utf8(&self.buf[..n]).unwrap_or("(non-UTF-8 line)"));
        }
        None
    }

    /// Whether `b` would end a line (put would return one).
    pub fn completes(&self, b: u8) -> bool {
        b == b'\n' || ((b == b'\t' || (0x20..0x7f).contains(&b)) && self.len == LINE_MAX - 2)
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What is left without a newline (printed when the domain dies).
    pub fn take_rest(&mut self) -> Option<&str> {
        if self.len == 0 {
            return None;
        }
        let n = core::mem::take(&mut self.len);
        core::str::from_utf8(&self.buf[..n]).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(l: &mut LineBuffer, s: &[u8]) -> Vec<String> {
        s.iter().filter_map(|&b| l.put(b).map(str::to_string)).collect()
    }

    #[test]
    fn lines_are_cut_at_newlines_and_control_characters_dropped() {
        let mut l = LineBuffer::new();
        assert_eq!(
            feed(&mut l, b"hello\x1b[2J world\r\nsecond\tline\npartial"),
            vec!["hello[2J world", "second\tline"]
        );
        assert_eq!(l.take_rest(), Some("partial"));
        assert_eq!(l.take_rest(), None);
    }

    #[test]
    fn long_lines_are_split() {
        let mut l = LineBuffer::new();
        let lines = feed(&mut l, &[b'x'; 450]);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|s| s.len() == LINE_MAX - 1));
        assert_eq!(l.take_rest().unwrap().len(), 450 - 2 * (LINE_MAX - 1));
    }
}
