//! ASIDs (AMD-V) and VPIDs (VT-x): tags that keep each vCPU's cached
//! translations apart in the TLB, handed out per physical CPU with a
//! generation, as Xen's `hvm/asid.c` does.
//!
//! A tag is a CPU-local resource: each CPU hands out 1, 2, ... up to the
//! largest the hardware allows, one per vCPU that runs there, and a tag is
//! valid only on the CPU and in the generation it was handed out in. When
//! a CPU runs out it starts a new generation: every tag it gave is void,
//! and the first entry of the new generation flushes the whole TLB (every
//! tag), so tags handed out again start clean. A vCPU that comes from
//! another CPU, or whose translations must go (a p2m change, a flush
//! request), simply takes a new tag: cheaper than flushing one. A CPU with
//! no usable tags (fewer than two) runs every vCPU with tag 1 and flushes
//! it at every entry; so does one whose 64-bit generation ever wraps.
//!
//! Pure logic, host-tested; `svm` and `vmx` keep one [`AsidCore`] per CPU
//! and one [`VcpuAsid`] per vCPU and turn [`Flush`] into TLB_CONTROL or
//! INVVPID.

/// A physical CPU's allocator.
#[derive(Debug, Clone)]
pub struct AsidCore {
    /// 0 means "no generation" (a vCPU that never ran here has it).
    generation: u64,
    next: u32,
    max: u32,
    disabled: bool,
}

/// A vCPU's tag: which CPU and generation it belongs to.
#[derive(Debug, Clone, Copy, Default)]
pub struct VcpuAsid {
    asid: u32,
    generation: u64,
    /// CPU index + 1 (0: none yet).
    cpu: u32,
}

/// What the entry must flush besides using its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// The tag is clean or still the vCPU's own.
    None,
    /// Only this tag (ASIDs disabled: every vCPU shares tag 1).
    ThisTag,
    /// Every tag on this CPU: a new generation starts.
    All,
}

/// The tag and flush for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub asid: u32,
    pub flush: Flush,
}

impl AsidCore {
    /// A CPU whose hardware offers `count` tags, tag 0 being the host's
    /// (CPUID 0x8000000A EBX for ASIDs; 65536 for VPIDs).
    pub const fn new(count: u32) -> AsidCore {
        AsidCore { generation: 1, next: 1, max: count.saturating_sub(1), disabled: count <= 1 }
    }

    /// For tests: a CPU whose generation counter is at `generation`.
    #[cfg(test)]
    fn with_generation(count: u32, generation: u64) -> AsidCore {
        AsidCore { generation, ..AsidCore::new(count) }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn disabled(&self) -> bool {
        self.disabled
    }

    /// Starts a new generation (every tag handed out is void). A wrapped
    /// 64-bit counter disables tags rather than reuse generation numbers.
    fn new_generation(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.disabled = true;
        }
        self.next = 1;
    }
}

impl VcpuAsid {
    /// The tag the vCPU holds now (0 before its first entry).
    pub fn asid(&self) -> u32 {
        self.asid
    }

    /// Its cached translations must go: it takes a new tag at its next
    /// entry.
    pub fn invalidate(&mut self) {
        self.generation = 0;
    }

    /// Whether the next entry on `cpu` can use the tag as it is: the
    /// common case, checked without touching the CPU's allocator.
    #[inline]
    pub fn valid_on(&self, core: &AsidCore, cpu: u32) -> bool {
        !core.disabled && self.generation == core.generation && self.cpu == cpu + 1
    }

    /// The tag and flush for an entry on `cpu`, whose allocator is `core`.
    pub fn enter(&mut self, core: &mut AsidCore, cpu: u32) -> Entry {
        if self.valid_on(core, cpu) {
            return Entry { asid: self.asid, flush: Flush::None };
        }
        if !core.disabled && core.next > core.max {
            core.new_generation();
        }
        if core.disabled {
            *self = VcpuAsid { asid: 1, generation: 0, cpu: cpu + 1 };
            return Entry { asid: 1, flush: Flush::ThisTag };
        }
        let asid = core.next;
        core.next += 1;
        *self = VcpuAsid { asid, generation: core.generation, cpu: cpu + 1 };
        // The first tag of a generation flushes every tag: those handed
        // out in the last one may still have entries.
        Entry { asid, flush: if asid == 1 { Flush::All } else { Flush::None } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_vcpu_gets_its_own_tag_and_keeps_it() {
        let mut core = AsidCore::new(16);
        let mut v: [VcpuAsid; 3] = Default::default();
        assert_eq!(v[0].enter(&mut core, 0), Entry { asid: 1, flush: Flush::All });
        assert_eq!(v[1].enter(&mut core, 0), Entry { asid: 2, flush: Flush::None });
        assert_eq!(v[2].enter(&mut core, 0), Entry { asid: 3, flush: Flush::None });
        for (i, x) in v.iter_mut().enumerate() {
            assert_eq!(x.enter(&mut core, 0), Entry { asid: i as u32 + 1, flush: Flush::None });
        }
    }

    /// QEMU offers 16 ASIDs: 15 for guests. The 16th vCPU starts a new
    /// generation, flushes everything and takes tag 1; the first vCPU,
    /// which held tag 1 before, must not keep using it unflushed.
    #[test]
    fn exhaustion_starts_a_new_generation_that_flushes_all() {
        let mut core = AsidCore::new(16);
        let mut v: [VcpuAsid; 16] = Default::default();
        for (i, x) in v.iter_mut().take(15).enumerate() {
            assert_eq!(x.enter(&mut core, 0).asid, i as u32 + 1);
        }
        let g = core.generation();
        assert_eq!(v[15].enter(&mut core, 0), Entry { asid: 1, flush: Flush::All });
        assert_eq!(core.generation(), g + 1);
        // Every tag of the old generation is void: vCPU 0 gets a new one,
        // never tag 1 again without a flush.
        let e = v[0].enter(&mut core, 0);
        assert_eq!(e, Entry { asid: 2, flush: Flush::None });
        // No two valid holders of one tag, ever.
        let holders = v.iter().filter(|x| x.valid_on(&core, 0)).map(|x| x.asid()).collect::<Vec<_>>();
        let mut sorted = holders.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(holders.len(), sorted.len(), "{holders:?}");
    }

    /// Many rounds of more vCPUs than tags: at every entry the tag in use
    /// is held by no other vCPU with a valid tag, and whenever a tag is
    /// reused within a CPU's life a flush of everything came between.
    #[test]
    fn tags_are_never_shared_across_generations_without_a_flush() {
        let mut core = AsidCore::new(16);
        let mut v: Vec<VcpuAsid> = vec![VcpuAsid::default(); 40];
        // For each tag: the vCPU that used it since the last full flush.
        let mut owner: [Option<usize>; 16] = [None; 16];
        for round in 0..50 {
            for i in 0..v.len() {
                let i = (i * 7 + round) % v.len();
                let e = v[i].enter(&mut core, 0);
                assert!(e.asid >= 1 && e.asid <= 15, "tag {} out of range", e.asid);
                if e.flush == Flush::All {
                    owner = [None; 16];
                }
                if let Some(o) = owner[e.asid as usize] {
                    assert_eq!(o, i, "tag {} reused by vCPU {i} after vCPU {o} without a flush", e.asid);
                }
                owner[e.asid as usize] = Some(i);
            }
        }
    }

    #[test]
    fn a_vcpu_that_moves_cpus_takes_a_new_tag_there() {
        let mut cores = [AsidCore::new(16), AsidCore::new(16)];
        let mut a = VcpuAsid::default();
        let mut b = VcpuAsid::default();
        assert_eq!(a.enter(&mut cores[0], 0).asid, 1);
        assert_eq!(b.enter(&mut cores[1], 1).asid, 1);
        assert_eq!(b.enter(&mut cores[1], 1).asid, 2 - 1, "b keeps its tag on CPU 1");
        // a moves to CPU 1: same generation number, other CPU: not valid.
        assert!(!a.valid_on(&cores[1], 1));
        assert_eq!(a.enter(&mut cores[1], 1), Entry { asid: 2, flush: Flush::None });
        // And back: CPU 0's tag 1 is void for it now (it took CPU 1's).
        assert!(!a.valid_on(&cores[0], 0));
        assert_eq!(a.enter(&mut cores[0], 0), Entry { asid: 2, flush: Flush::None });
    }

    #[test]
    fn invalidate_gives_a_fresh_tag() {
        let mut core = AsidCore::new(16);
        let mut a = VcpuAsid::default();
        assert_eq!(a.enter(&mut core, 0).asid, 1);
        a.invalidate();
        assert_eq!(a.enter(&mut core, 0), Entry { asid: 2, flush: Flush::None });
        assert_eq!(a.enter(&mut core, 0), Entry { asid: 2, flush: Flush::None });
    }

    #[test]
    fn too_few_tags_share_tag_1_and_flush_every_entry() {
        for count in [0, 1] {
            let mut core = AsidCore::new(count);
            assert!(core.disabled());
            let mut a = VcpuAsid::default();
            let mut b = VcpuAsid::default();
            for _ in 0..3 {
                assert_eq!(a.enter(&mut core, 0), Entry { asid: 1, flush: Flush::ThisTag });
                assert_eq!(b.enter(&mut core, 0), Entry { asid: 1, flush: Flush::ThisTag });
            }
        }
        // Two tags: one for guests, a new generation at every other vCPU.
        let mut core = AsidCore::new(2);
        let mut a = VcpuAsid::default();
        let mut b = VcpuAsid::default();
        assert_eq!(a.enter(&mut core, 0), Entry { asid: 1, flush: Flush::All });
        assert_eq!(b.enter(&mut core, 0), Entry { asid: 1, flush: Flush::All });
        assert_eq!(a.enter(&mut core, 0), Entry { asid: 1, flush: Flush::All });
    }

    #[test]
    fn a_wrapped_generation_disables_tags_instead_of_reusing_numbers() {
        let mut core = AsidCore::with_generation(3, u64::MAX);
        let mut v: [VcpuAsid; 3] = Default::default();
        assert_eq!(v[0].enter(&mut core, 0).asid, 1);
        assert_eq!(v[1].enter(&mut core, 0).asid, 2);
        // Out of tags: the generation would wrap to 0 ("none").
        assert_eq!(v[2].enter(&mut core, 0), Entry { asid: 1, flush: Flush::ThisTag });
        assert!(core.disabled());
        assert_eq!(v[0].enter(&mut core, 0), Entry { asid: 1, flush: Flush::ThisTag });
        assert_eq!(v[1].enter(&mut core, 0), Entry { asid: 1, flush: Flush::ThisTag });
    }

    #[test]
    fn vpids_use_the_same_rules_with_65536_tags() {
        let mut core = AsidCore::new(65536);
        let mut a = VcpuAsid::default();
        let mut others = VcpuAsid::default();
        assert_eq!(a.enter(&mut core, 3).asid, 1);
        for _ in 0..65534 {
            others.invalidate();
            others.enter(&mut core, 3);
        }
        assert_eq!(others.asid(), 65535);
        assert!(a.valid_on(&core, 3));
        others.invalidate();
        assert_eq!(others.enter(&mut core, 3), Entry { asid: 1, flush: Flush::All });
        assert!(!a.valid_on(&core, 3), "its tag went with the generation");
    }
}
