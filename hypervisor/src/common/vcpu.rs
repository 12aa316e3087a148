//! A virtual CPU: guest registers, run state and the hardware backend's
//! per-vCPU state.

/// Guest general registers. The layout is shared with the VMRUN assembly
/// (rax and rsp also live in the VMCB; the backend syncs them).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
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
}
