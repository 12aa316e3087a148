//! A guest's registers as the backends and the run loop exchange them:
//! general registers (shared with the world-switch assembly) and segment
//! names.

/// Segment registers, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
}

/// Guest general registers. The layout is shared with the world-switch
/// assembly of both backends (rsp lives in the VMCB/VMCS, and on SVM rax
/// too; the backend syncs them).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rsp: u64,
}

impl GuestRegs {
    /// Hypercall arguments: rdi, rsi, rdx, r10, r8 in 64-bit mode; ebx,
    /// ecx, edx, esi, edi in 32-bit mode (Xen's conventions).
    pub fn hypercall_args(&self, long_mode: bool) -> [u64; 5] {
        if long_mode {
            [self.rdi, self.rsi, self.rdx, self.r10, self.r8]
        } else {
            [self.rbx, self.rcx, self.rdx, self.rsi, self.rdi].map(|r| r & 0xffff_ffff)
        }
    }

    /// Puts updated arguments back (a hypercall continuation).
    pub fn set_hypercall_args(&mut self, long_mode: bool, a: [u64; 5]) {
        if long_mode {
            [self.rdi, self.rsi, self.rdx, self.r10, self.r8] = a;
        } else {
            [self.rbx, self.rcx, self.rdx, self.rsi, self.rdi] = a;
        }
    }

    /// The return value: sign-extended 32-bit for 32-bit callers.
    pub fn set_hypercall_result(&mut self, long_mode: bool, v: i64) {
        self.rax = if long_mode { v as u64 } else { v as i32 as u32 as u64 };
    }
}

/// Assembly for the world switches: loads every general register but rax
/// and rsp from the `GuestRegs` that rax points at (rax is loaded last by
/// the caller, rsp lives in the VMCB/VMCS).
#[macro_export]
macro_rules! guest_gprs_load {
    () => {
        concat!(
            "mov rbx, [rax + 8]\n",
            "mov rcx, [rax + 16]\n",
            "mov rdx, [rax + 24]\n",
            "mov rsi, [rax + 32]\n",
            "mov rdi, [rax + 40]\n",
            "mov rbp, [rax + 48]\n",
            "mov r8, [rax + 56]\n",
            "mov r9, [rax + 64]\n",
            "mov r10, [rax + 72]\n",
            "mov r11, [rax + 80]\n",
            "mov r12, [rax + 88]\n",
            "mov r13, [rax + 96]\n",
            "mov r14, [rax + 104]\n",
            "mov r15, [rax + 112]\n",
        )
    };
}

/// The reverse of `guest_gprs_load!`: stores them to the `GuestRegs` at rax.
#[macro_export]
macro_rules! guest_gprs_store {
    () => {
        concat!(
            "mov [rax + 8], rbx\n",
            "mov [rax + 16], rcx\n",
            "mov [rax + 24], rdx\n",
            "mov [rax + 32], rsi\n",
            "mov [rax + 40], rdi\n",
            "mov [rax + 48], rbp\n",
            "mov [rax + 56], r8\n",
            "mov [rax + 64], r9\n",
            "mov [rax + 72], r10\n",
            "mov [rax + 80], r11\n",
            "mov [rax + 88], r12\n",
            "mov [rax + 96], r13\n",
            "mov [rax + 104], r14\n",
            "mov [rax + 112], r15\n",
        )
    };
}

impl GuestRegs {
    /// A register by its x86 encoding number (0 rax, 1 rcx, 2 rdx, 3 rbx,
    /// 4 rsp, 5 rbp, 6 rsi, 7 rdi, 8-15 r8-r15), as exit information
    /// names them.
    pub fn by_number(&self, n: u8) -> u64 {
        match n & 15 {
            0 => self.rax,
            1 => self.rcx,
            2 => self.rdx,
            3 => self.rbx,
            4 => self.rsp,
            5 => self.rbp,
            6 => self.rsi,
            7 => self.rdi,
            8 => self.r8,
            9 => self.r9,
            10 => self.r10,
            11 => self.r11,
            12 => self.r12,
            13 => self.r13,
            14 => self.r14,
            _ => self.r15,
        }
    }

    pub fn set_by_number(&mut self, n: u8, v: u64) {
        *match n & 15 {
            0 => &mut self.rax,
            1 => &mut self.rcx,
            2 => &mut self.rdx,
            3 => &mut self.rbx,
            4 => &mut self.rsp,
            5 => &mut self.rbp,
            6 => &mut self.rsi,
            7 => &mut self.rdi,
            8 => &mut self.r8,
            9 => &mut self.r9,
            10 => &mut self.r10,
            11 => &mut self.r11,
            12 => &mut self.r12,
            13 => &mut self.r13,
            14 => &mut self.r14,
            _ => &mut self.r15,
        } = v;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuState {
    /// Not started yet (secondary vCPUs until brought up).
    Down,
    Runnable,
    /// Waiting for an event (SCHEDOP_block, HLT).
    Blocked,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypercall_register_conventions() {
        let mut r =
            GuestRegs { rdi: 1, rsi: 2, rdx: 3, r10: 4, r8: 5, rbx: 0x1_0000_0006, rcx: 7, ..Default::default() };
        assert_eq!(r.hypercall_args(true), [1, 2, 3, 4, 5]);
        r.rsi = 0xffff_ffff_0000_0008;
        r.rdi = 9;
        assert_eq!(r.hypercall_args(false), [6, 7, 3, 8, 9], "32-bit: ebx ecx edx esi edi, upper halves dropped");
        r.set_hypercall_result(false, -38);
        assert_eq!(r.rax, 0xffff_ffda);
        r.set_hypercall_result(true, -38);
        assert_eq!(r.rax as i64, -38);
        r.set_hypercall_args(true, [10, 20, 30, 40, 50]);
        assert_eq!((r.rdi, r.rsi, r.rdx, r.r10, r.r8), (10, 20, 30, 40, 50));
    }

    #[test]
    fn registers_by_encoding_number() {
        let mut r = GuestRegs::default();
        for n in 0..16u8 {
            r.set_by_number(n, 100 + n as u64);
        }
        assert_eq!((r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi), (100, 101, 102, 103, 104, 105, 106, 107));
        assert_eq!((r.r8, r.r15), (108, 115));
        assert_eq!(r.by_number(11), 111);
    }

    /// The world-switch assembly addresses fields by fixed offsets.
    #[test]
    fn the_assembly_offsets_match_the_struct() {
        use core::mem::offset_of;
        let fields = [
            ("rbx", offset_of!(GuestRegs, rbx)),
            ("rcx", offset_of!(GuestRegs, rcx)),
            ("rdx", offset_of!(GuestRegs, rdx)),
            ("rsi", offset_of!(GuestRegs, rsi)),
            ("rdi", offset_of!(GuestRegs, rdi)),
            ("rbp", offset_of!(GuestRegs, rbp)),
            ("r8", offset_of!(GuestRegs, r8)),
            ("r9", offset_of!(GuestRegs, r9)),
            ("r10", offset_of!(GuestRegs, r10)),
            ("r11", offset_of!(GuestRegs, r11)),
            ("r12", offset_of!(GuestRegs, r12)),
            ("r13", offset_of!(GuestRegs, r13)),
            ("r14", offset_of!(GuestRegs, r14)),
            ("r15", offset_of!(GuestRegs, r15)),
        ];
        let load: &str = guest_gprs_load!();
        let store: &str = guest_gprs_store!();
        for (name, off) in fields {
            assert!(load.contains(&format!("mov {name}, [rax + {off}]\n")), "load {name}");
            assert!(store.contains(&format!("mov [rax + {off}], {name}\n")), "store {name}");
        }
        assert_eq!(load.lines().count(), 14);
        assert_eq!(offset_of!(GuestRegs, rax), 0);
    }
}
