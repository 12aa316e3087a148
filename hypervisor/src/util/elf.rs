//! ELF image parsing for kernels given as boot modules.
//!
//! A module is untrusted input: every offset and size is checked against the
//! bytes actually present before anything is read, and every problem is an
//! error value with a message that names it. Both ELF32 and ELF64 are
//! accepted, as Xen accepts both for PVH kernels.

use core::fmt;

pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;

pub const EM_386: u16 = 3;
pub const EM_X86_64: u16 = 62;

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Elf32,
    Elf64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    TooShort {
        len: usize,
    },
    BadMagic {
        found: [u8; 4],
    },
    BadClass {
        class: u8,
    },
    NotLittleEndian,
    BadVersion,
    WrongMachine {
        machine: u16,
    },
    NotExecutable {
        kind: u16,
    },
    BadProgramHeaderTable,
    /// A segment's file bytes lie beyond the end of the module.
    Truncated {
        segment: usize,
        needs_end: u64,
        size: usize,
    },
    FileSizeExceedsMemorySize {
        segment: usize,
    },
    SegmentWraps {
        segment: usize,
    },
    NoLoadableSegment,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ElfError::TooShort { len } => write!(f, "not an ELF image: only {len} bytes"),
            ElfError::BadMagic { found } => write!(
                f,
                "not an ELF image: starts with {:02x} {:02x} {:02x} {:02x}, not 7f 45 4c 46",
                found[0], found[1], found[2], found[3]
            ),
            ElfError::BadClass { class } => write!(f, "unsupported ELF class {class}"),
            ElfError::NotLittleEndian => f.write_str("ELF image is not little-endian"),
            ElfError::BadVersion => f.write_str("unsupported ELF version"),
            ElfError::WrongMachine { machine } => {
                write!(f, "ELF image is for machine {machine}, not x86 (3) or x86-64 (62)")
            }
            ElfError::NotExecutable { kind } => write!(f, "ELF type {kind} is not an executable"),
            ElfError::BadProgramHeaderTable => {
                f.write_str("ELF program header table is missing, malformed or outside the image")
            }
            ElfError::Truncated { segment, needs_end, size } => {
                write!(f, "truncated: segment {segment} needs bytes up to {needs_end:#x} but the image has {size:#x}")
            }
            ElfError::FileSizeExceedsMemorySize { segment } => {
                write!(f, "segment {segment} has more file bytes than memory bytes")
            }
            ElfError::SegmentWraps { segment } => write!(f, "segment {segment} wraps around the address space"),
            ElfError::NoLoadableSegment => f.write_str("ELF image has no loadable segment"),
        }
    }
}

/// One program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub index: usize,
    pub kind: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

/// One note: owner name (without its NUL), type and descriptor bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note<'a> {
    pub owner: &'a [u8],
    pub kind: u32,
    pub desc: &'a [u8],
}

/// A validated ELF image.
#[derive(Debug, Clone, Copy)]
pub struct Elf<'a> {
    data: &'a [u8],
    pub class: Class,
    pub machine: u16,
    pub entry: u64,
    phoff: usize,
    phentsize: usize,
    phnum: usize,
}

fn u16_at(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(off..off.checked_add(2)?)?.try_into().ok()?))
}
fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(off..off.checked_add(4)?)?.try_into().ok()?))
}
fn u64_at(d: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(off..off.checked_add(8)?)?.try_into().ok()?))
}

impl<'a> Elf<'a> {
    /// Checks the header, the program header table and that every segment's
    /// file bytes are present.
    pub fn parse(data: &'a [u8]) -> Result<Elf<'a>, ElfError> {
        if data.len() < 52 {
            if data.len() >= 4 && data[..4] != *b"\x7fELF" {
                return Err(ElfError::BadMagic { found: [data[0], data[1], data[2], data[3]] });
            }
            return Err(ElfError::TooShort { len: data.len() });
        }
        if data[..4] != *b"\x7fELF" {
            return Err(ElfError::BadMagic { found: [data[0], data[1], data[2], data[3]] });
        }
        let class = match data[4] {
            1 => Class::Elf32,
            2 => Class::Elf64,
            c => return Err(ElfError::BadClass { class: c }),
        };
        if data[5] != 1 {
            return Err(ElfError::NotLittleEndian);
        }
        if data[6] != 1 {
            return Err(ElfError::BadVersion);
        }
        let short = ElfError::TooShort { len: data.len() };
        let kind = u16_at(data, 16).ok_or(short)?;
        let machine = u16_at(data, 18).ok_or(short)?;
        if machine != EM_386 && machine != EM_X86_64 {
            return Err(ElfError::WrongMachine { machine });
        }
        if kind != ET_EXEC && kind != ET_DYN {
            return Err(ElfError::NotExecutable { kind });
        }
        let (entry, phoff, phentsize, phnum, min_phent) = match class {
            Class::Elf32 => (
                u32_at(data, 24).ok_or(short)? as u64,
                u32_at(data, 28).ok_or(short)? as u64,
                u16_at(data, 42).ok_or(short)?,
                u16_at(data, 44).ok_or(short)?,
                32,
            ),
            Class::Elf64 => {
                if data.len() < 64 {
                    return Err(short);
                }
                (
                    u64_at(data, 24).ok_or(short)?,
                    u64_at(data, 32).ok_or(short)?,
                    u16_at(data, 54).ok_or(short)?,
                    u16_at(data, 56).ok_or(short)?,
                    56,
                )
            }
        };
        let phentsize = phentsize as usize;
        let phnum = phnum as usize;
        // PN_XNUM (extended numbering) is not used by kernels; refuse it.
        if phnum == 0 || phnum == 0xffff || phentsize < min_phent {
            return Err(ElfError::BadProgramHeaderTable);
        }
        let table_end = (phentsize as u64).checked_mul(phnum as u64).and_then(|n| n.checked_add(phoff));
        match table_end {
            Some(end) if end <= data.len() as u64 => {}
            _ => return Err(ElfError::BadProgramHeaderTable),
        }
        let elf = Elf { data, class, machine, entry, phoff: phoff as usize, phentsize, phnum };
        let mut loadable = false;
        for s in elf.segments() {
            if s.kind != PT_LOAD && s.kind != PT_NOTE {
                continue;
            }
            if s.kind == PT_LOAD {
                loadable |= s.memsz > 0;
                if s.filesz > s.memsz {
                    return Err(ElfError::FileSizeExceedsMemorySize { segment: s.index });
                }
                if s.paddr.checked_add(s.memsz).is_none() || s.vaddr.checked_add(s.memsz).is_none() {
                    return Err(ElfError::SegmentWraps { segment: s.index });
                }
            }
            let end = s.offset.checked_add(s.filesz).ok_or(ElfError::SegmentWraps { segment: s.index })?;
            if end > data.len() as u64 {
                return Err(ElfError::Truncated { segment: s.index, needs_end: end, size: data.len() });
            }
        }
        if !loadable {
            return Err(ElfError::NoLoadableSegment);
        }
        Ok(elf)
    }

    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    pub fn segments(&self) -> impl Iterator<Item = Segment> + 'a {
        let Elf { data, class, phoff, phentsize, phnum, .. } = *self;
        (0..phnum).filter_map(move |i| {
            let b = phoff + i * phentsize;
            // In bounds: checked by parse().
            Some(match class {
                Class::Elf32 => Segment {
                    index: i,
                    kind: u32_at(data, b)?,
                    offset: u32_at(data, b + 4)? as u64,
                    vaddr: u32_at(data, b + 8)? as u64,
                    paddr: u32_at(data, b + 12)? as u64,
                    filesz: u32_at(data, b + 16)? as u64,
                    memsz: u32_at(data, b + 20)? as u64,
                    flags: u32_at(data, b + 24)?,
                    align: u32_at(data, b + 28)? as u64,
                },
                Class::Elf64 => Segment {
                    index: i,
                    kind: u32_at(data, b)?,
                    flags: u32_at(data, b + 4)?,
                    offset: u64_at(data, b + 8)?,
                    vaddr: u64_at(data, b + 16)?,
                    paddr: u64_at(data, b + 24)?,
                    filesz: u64_at(data, b + 32)?,
                    memsz: u64_at(data, b + 40)?,
                    align: u64_at(data, b + 48)?,
                },
            })
        })
    }

    /// The file bytes of a segment (bounds checked by `parse`).
    pub fn segment_data(&self, s: &Segment) -> &'a [u8] {
        let start = s.offset as usize;
        self.data.get(start..start + s.filesz as usize).unwrap_or(&[])
    }

    /// Every note in every PT_NOTE segment. A malformed note ends the walk of
    /// its segment (as Xen's libelf does) rather than failing the image.
    pub fn notes(&self) -> impl Iterator<Item = Note<'a>> + 'a {
        let elf = *self;
        self.segments().filter(|s| s.kind == PT_NOTE).flat_map(move |s| NoteIter { bytes: elf.segment_data(&s) })
    }
}

struct NoteIter<'a> {
    bytes: &'a [u8],
}

impl<'a> Iterator for NoteIter<'a> {
    type Item = Note<'a>;

    fn next(&mut self) -> Option<Note<'a>> {
        let b = self.bytes;
        let namesz = u32_at(b, 0)? as usize;
        let descsz = u32_at(b, 4)? as usize;
        let kind = u32_at(b, 8)?;
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = name_end.checked_add(3)? & !3;
        let desc_end = desc_start.checked_add(descsz)?;
        let next = desc_end.checked_add(3)? & !3;
        if desc_end > b.len() {
            self.bytes = &[];
            return None;
        }
        let mut owner = &b[12..name_end];
        if let [rest @ .., 0] = owner {
            owner = rest;
        }
        let desc = &b[desc_start..desc_end];
        self.bytes = b.get(next..).unwrap_or(&[]);
        Some(Note { owner, kind, desc })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 image: one PT_LOAD of `payload` at `paddr`, and one
    /// PT_NOTE with the given notes.
    pub fn build_elf64(paddr: u64, entry: u64, payload: &[u8], notes: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut note_bytes = Vec::new();
        for (owner, kind, desc) in notes {
            let name = [owner.as_bytes(), &[0]].concat();
            note_bytes.extend((name.len() as u32).to_le_bytes());
            note_bytes.extend((desc.len() as u32).to_le_bytes());
            note_bytes.extend(kind.to_le_bytes());
            note_bytes.extend(&name);
            while note_bytes.len() % 4 != 0 {
                note_bytes.push(0);
            }
            note_bytes.extend(*desc);
            while note_bytes.len() % 4 != 0 {
                note_bytes.push(0);
            }
        }
        let phoff = 64u64;
        let phnum = 2u16;
        let notes_off = phoff + 56 * phnum as u64;
        let load_off = (notes_off + note_bytes.len() as u64 + 15) & !15;
        let mut e = vec![0u8; 64];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[6] = 1;
        e[16..18].copy_from_slice(&2u16.to_le_bytes());
        e[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        e[20..24].copy_from_slice(&1u32.to_le_bytes());
        e[24..32].copy_from_slice(&entry.to_le_bytes());
        e[32..40].copy_from_slice(&phoff.to_le_bytes());
        e[52..54].copy_from_slice(&64u16.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&phnum.to_le_bytes());
        let ph = |kind: u32, off: u64, addr: u64, filesz: u64, memsz: u64| {
            let mut p = vec![0u8; 56];
            p[0..4].copy_from_slice(&kind.to_le_bytes());
            p[4..8].copy_from_slice(&7u32.to_le_bytes());
            p[8..16].copy_from_slice(&off.to_le_bytes());
            p[16..24].copy_from_slice(&addr.to_le_bytes());
            p[24..32].copy_from_slice(&addr.to_le_bytes());
            p[32..40].copy_from_slice(&filesz.to_le_bytes());
            p[40..48].copy_from_slice(&memsz.to_le_bytes());
            p[48..56].copy_from_slice(&16u64.to_le_bytes());
            p
        };
        e.extend(ph(PT_LOAD, load_off, paddr, payload.len() as u64, payload.len() as u64 + 0x100));
        e.extend(ph(PT_NOTE, notes_off, 0, note_bytes.len() as u64, note_bytes.len() as u64));
        e.extend(&note_bytes);
        e.resize(load_off as usize, 0);
        e.extend(payload);
        e
    }

    #[test]
    fn parses_a_good_image_with_notes() {
        let img = build_elf64(
            0x100000,
            0x100010,
            &[0x90; 64],
            &[("Xen", 18, &0x100010u32.to_le_bytes()), ("GNU", 3, b"abcdef")],
        );
        let elf = Elf::parse(&img).unwrap();
        assert_eq!(elf.class, Class::Elf64);
        assert_eq!(elf.entry, 0x100010);
        let loads: Vec<_> = elf.segments().filter(|s| s.kind == PT_LOAD).collect();
        assert_eq!(loads.len(), 1);
        assert_eq!(loads[0].paddr, 0x100000);
        assert_eq!(elf.segment_data(&loads[0]), &[0x90; 64]);
        let notes: Vec<_> = elf.notes().collect();
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0].owner, b"Xen");
        assert_eq!(notes[0].kind, 18);
        assert_eq!(notes[0].desc, &0x100010u32.to_le_bytes());
        assert_eq!(notes[1].desc, b"abcdef");
    }

    #[test]
    fn refuses_what_is_not_elf() {
        assert_eq!(
            Elf::parse(b"MZ\x90\x00 this is a PE file...........................................").unwrap_err(),
            ElfError::BadMagic { found: *b"MZ\x90\x00" }
        );
        assert_eq!(Elf::parse(b"").unwrap_err(), ElfError::TooShort { len: 0 });
        assert_eq!(Elf::parse(b"\x7fELF").unwrap_err(), ElfError::TooShort { len: 4 });
        assert!(Elf::parse(b"hello").unwrap_err().to_string().starts_with("not an ELF image: starts with 68 65 6c 6c"));
    }

    #[test]
    fn truncated_image_names_the_segment() {
        let img = build_elf64(0x100000, 0x100000, &[1; 4096], &[]);
        let cut = &img[..img.len() - 100];
        match Elf::parse(cut).unwrap_err() {
            ElfError::Truncated { segment: 0, needs_end, size } => {
                assert_eq!(needs_end as usize, img.len());
                assert_eq!(size, cut.len());
            }
            e => panic!("wrong error {e:?}"),
        }
        // Cut inside the program header table.
        assert_eq!(Elf::parse(&img[..100]).unwrap_err(), ElfError::BadProgramHeaderTable);
    }

    #[test]
    fn header_field_checks() {
        let good = build_elf64(0x100000, 0x100000, &[1; 16], &[]);
        let mut b = good.clone();
        b[4] = 3;
        assert_eq!(Elf::parse(&b).unwrap_err(), ElfError::BadClass { class: 3 });
        let mut b = good.clone();
        b[5] = 2;
        assert_eq!(Elf::parse(&b).unwrap_err(), ElfError::NotLittleEndian);
        let mut b = good.clone();
        b[18] = 183; // aarch64
        assert_eq!(Elf::parse(&b).unwrap_err(), ElfError::WrongMachine { machine: 183 });
        let mut b = good.clone();
        b[16] = 1; // ET_REL
        assert_eq!(Elf::parse(&b).unwrap_err(), ElfError::NotExecutable { kind: 1 });
        let mut b = good.clone();
        b[56] = 0; // no program headers
        assert_eq!(Elf::parse(&b).unwrap_err(), ElfError::BadProgramHeaderTable);
        let mut b = good.clone();
        b[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // phoff overflow
        assert_eq!(Elf::parse(&b).unwrap_err(), ElfError::BadProgramHeaderTable);
        let mut b = good.clone();
        // filesz > memsz in the PT_LOAD
        b[64 + 32..64 + 40].copy_from_slice(&0x10000u64.to_le_bytes());
        assert_eq!(Elf::parse(&b).unwrap_err(), ElfError::FileSizeExceedsMemorySize { segment: 0 });
        let mut b = good;
        b[64 + 24..64 + 32].copy_from_slice(&(u64::MAX - 8).to_le_bytes()); // paddr + memsz wraps
        assert_eq!(Elf::parse(&b).unwrap_err(), ElfError::SegmentWraps { segment: 0 });
    }

    #[test]
    fn malformed_notes_end_the_walk_without_failing() {
        let mut img = build_elf64(0x100000, 0x100000, &[1; 16], &[("Xen", 18, &[1, 2, 3, 4])]);
        // Make the note's descsz huge.
        let notes_off = 64 + 2 * 56;
        img[notes_off + 4..notes_off + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        let elf = Elf::parse(&img).unwrap();
        assert_eq!(elf.notes().count(), 0);
    }

    #[test]
    fn elf32_images_are_accepted() {
        let mut e = vec![0u8; 52 + 32];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 1;
        e[5] = 1;
        e[6] = 1;
        e[16..18].copy_from_slice(&2u16.to_le_bytes());
        e[18..20].copy_from_slice(&EM_386.to_le_bytes());
        e[24..28].copy_from_slice(&0x100000u32.to_le_bytes());
        e[28..32].copy_from_slice(&52u32.to_le_bytes());
        e[42..44].copy_from_slice(&32u16.to_le_bytes());
        e[44..46].copy_from_slice(&1u16.to_le_bytes());
        let p = 52;
        e[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        e[p + 4..p + 8].copy_from_slice(&0u32.to_le_bytes());
        e[p + 12..p + 16].copy_from_slice(&0x100000u32.to_le_bytes());
        e[p + 16..p + 20].copy_from_slice(&84u32.to_le_bytes());
        e[p + 20..p + 24].copy_from_slice(&0x1000u32.to_le_bytes());
        let elf = Elf::parse(&e).unwrap();
        assert_eq!(elf.class, Class::Elf32);
        assert_eq!(elf.machine, EM_386);
        assert_eq!(elf.segments().next().unwrap().memsz, 0x1000);
    }
}
