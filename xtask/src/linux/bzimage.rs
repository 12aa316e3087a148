//! The ELF `vmlinux` inside a Linux bzImage.
//!
//! A bzImage is a real-mode setup part followed by a self-decompressing
//! protected-mode part whose compressed payload is the ELF `vmlinux` (boot
//! protocol 2.08 and later tell where it is: `Documentation/arch/x86/boot.rst`).
//! A PVH guest is started at that ELF's `XEN_ELFNOTE_PHYS32_ENTRY`, so the
//! payload is what the hypervisor loads. Debian builds it with LZ4 in the
//! legacy frame format (`lz4 -l`): a magic number, then blocks of a
//! little-endian u32 compressed size and one LZ4 block of at most 8 MiB out;
//! the kernel's build appends the u32 total uncompressed size.

/// Setup-header fields (offsets from the image's start).
const SETUP_SECTS: usize = 0x1f1;
const BOOT_FLAG: usize = 0x1fe;
const HEADER_MAGIC: usize = 0x202;
const PROTOCOL_VERSION: usize = 0x206;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;

/// `lz4 -l`'s magic number, and the most one legacy block decompresses to.
const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;
const LZ4_LEGACY_BLOCK_MAX: usize = 8 << 20;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The compressed payload of a bzImage, as the setup header locates it.
pub fn payload(bz: &[u8]) -> Result<&[u8], String> {
    if u16_at(bz, BOOT_FLAG) != Some(0xaa55) || bz.get(HEADER_MAGIC..HEADER_MAGIC + 4) != Some(b"HdrS") {
        return Err("not a bzImage (no 0xAA55 boot flag and \"HdrS\" setup header)".into());
    }
    let version = u16_at(bz, PROTOCOL_VERSION).unwrap_or(0);
    if version < 0x0208 {
        return Err(format!(
            "boot protocol {}.{:02} has no payload fields (2.08 needed)",
            version >> 8,
            version & 0xff
        ));
    }
    // setup_sects 0 means 4, for images older than the field.
    let setup_sects = match bz[SETUP_SECTS] {
        0 => 4,
        n => n as usize,
    };
    let offset = u32_at(bz, PAYLOAD_OFFSET).unwrap_or(0) as usize;
    let length = u32_at(bz, PAYLOAD_LENGTH).unwrap_or(0) as usize;
    let start = (setup_sects + 1) * 512 + offset;
    start
        .checked_add(length)
        .and_then(|end| bz.get(start..end))
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("the payload ({length} bytes at {start:#x}) lies outside the {}-byte image", bz.len()))
}

/// The name of a payload's compression, from its magic bytes.
fn compression(p: &[u8]) -> &'static str {
    match p {
        [0x02, 0x21, 0x4c, 0x18, ..] => "LZ4 (legacy frames)",
        [0x1f, 0x8b, ..] => "gzip",
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => "xz",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        [b'B', b'Z', b'h', ..] => "bzip2",
        [0x89, b'L', b'Z', b'O', ..] => "lzo",
        [0x5d, 0, 0, ..] => "lzma",
        [0x7f, b'E', b'L', b'F', ..] => "none (a plain ELF)",
        _ => "unknown",
    }
}

/// Decompresses an LZ4 legacy-frame stream. When the stream ends with the
/// kernel's 4-byte size trailer, that size must match what came out.
pub fn lz4_legacy(data: &[u8]) -> Result<Vec<u8>, String> {
    if u32_at(data, 0) != Some(LZ4_LEGACY_MAGIC) {
        return Err("not an LZ4 legacy stream (bad magic)".into());
    }
    let mut out = Vec::new();
    let mut at = 4;
    while at < data.len() {
        let rest = data.len() - at;
        let Some(size) = u32_at(data, at) else {
            return Err(format!("{rest} stray bytes at offset {at} after the last block"));
        };
        if rest == 4 {
            // The trailer: the total size, which a block size cannot be here
            // (a block needs at least one byte after its size).
            if size as usize != out.len() {
                return Err(format!("the trailer says {size} bytes, the blocks gave {}", out.len()));
            }
            return Ok(out);
        }
        if size == LZ4_LEGACY_MAGIC {
            // Concatenated streams repeat the magic.
            at += 4;
            continue;
        }
        let block = data
            .get(at + 4..at + 4 + size as usize)
            .ok_or_else(|| format!("the block at offset {at} says {size} bytes; only {} are left", rest - 4))?;
        let decoded = lz4_flex::block::decompress(block, LZ4_LEGACY_BLOCK_MAX)
            .map_err(|e| format!("the block at offset {at} is corrupt: {e}"))?;
        out.extend_from_slice(&decoded);
        at += 4 + size as usize;
    }
    Ok(out)
}

/// The ELF `vmlinux` inside a bzImage.
pub fn vmlinux(bz: &[u8]) -> Result<Vec<u8>, String> {
    let p = payload(bz)?;
    match compression(p) {
        "LZ4 (legacy frames)" => lz4_legacy(p),
        other => Err(format!("the payload's compression is {other}; only LZ4 (Debian's choice) is handled")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An LZ4 legacy stream of `chunks`, one block each, with the trailer.
    fn stream(chunks: &[&[u8]], trailer: bool) -> Vec<u8> {
        let mut s = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        let mut total = 0;
        for c in chunks {
            let block = lz4_flex::block::compress(c);
            s.extend_from_slice(&(block.len() as u32).to_le_bytes());
            s.extend_from_slice(&block);
            total += c.len();
        }
        if trailer {
            s.extend_from_slice(&(total as u32).to_le_bytes());
        }
        s
    }

    /// A minimal bzImage: `setup_sects` sectors of setup after the boot
    /// sector, then `payload` at `offset` into the protected-mode part.
    fn bzimage(setup_sects: u8, offset: usize, payload: &[u8]) -> Vec<u8> {
        let sects = if setup_sects == 0 { 4 } else { setup_sects as usize };
        let start = (sects + 1) * 512 + offset;
        let mut b = vec![0u8; start + payload.len() + 16];
        b[SETUP_SECTS] = setup_sects;
        b[BOOT_FLAG..BOOT_FLAG + 2].copy_from_slice(&0xaa55u16.to_le_bytes());
        b[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        b[PROTOCOL_VERSION..PROTOCOL_VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        b[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&(offset as u32).to_le_bytes());
        b[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b[start..start + payload.len()].copy_from_slice(payload);
        b
    }

    fn sample(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| ((i / 7) as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn blocks_decompress_in_order_and_the_trailer_is_checked() {
        let (a, b) = (sample(5000, 1), sample(3000, 9));
        let mut want = a.clone();
        want.extend_from_slice(&b);
        assert_eq!(lz4_legacy(&stream(&[&a, &b], true)).unwrap(), want);
        assert_eq!(lz4_legacy(&stream(&[&a, &b], false)).unwrap(), want);
        let mut lying = stream(&[&a, &b], true);
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&7u32.to_le_bytes());
        assert!(lz4_legacy(&lying).unwrap_err().contains("trailer says 7 bytes"));
    }

    #[test]
    fn corrupt_streams_are_refused_with_where() {
        assert!(lz4_legacy(b"\x04\x22\x4d\x18rest").unwrap_err().contains("bad magic"));
        let s = stream(&[&sample(4000, 3)], false);
        assert!(lz4_legacy(&s[..s.len() - 10]).unwrap_err().contains("only"));
        let mut bad = s.clone();
        for byte in &mut bad[8..] {
            *byte = 0xff;
        }
        assert!(lz4_legacy(&bad).unwrap_err().contains("corrupt"));
    }

    #[test]
    fn the_payload_is_found_from_the_setup_header() {
        let data = sample(20_000, 5);
        let lz = stream(&[&data], true);
        for (sects, offset) in [(0u8, 0usize), (39, 716), (4, 3)] {
            let bz = bzimage(sects, offset, &lz);
            assert_eq!(payload(&bz).unwrap(), &lz[..], "setup_sects {sects}, offset {offset}");
            assert_eq!(vmlinux(&bz).unwrap(), data);
        }
    }

    #[test]
    fn images_that_are_not_lz4_bzimages_are_named() {
        let lz = stream(&[&sample(100, 0)], true);
        let mut bz = bzimage(4, 0, &lz);
        bz[HEADER_MAGIC] = b'X';
        assert!(payload(&bz).unwrap_err().contains("not a bzImage"));
        let mut old = bzimage(4, 0, &lz);
        old[PROTOCOL_VERSION..PROTOCOL_VERSION + 2].copy_from_slice(&0x0206u16.to_le_bytes());
        assert!(payload(&old).unwrap_err().contains("2.06"));
        let mut long = bzimage(4, 0, &lz);
        long[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(payload(&long).unwrap_err().contains("outside"));
        let gz = bzimage(4, 0, &[0x1f, 0x8b, 8, 0, 0, 0]);
        assert!(vmlinux(&gz).unwrap_err().contains("gzip"));
    }
}
