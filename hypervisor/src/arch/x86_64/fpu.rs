//! Guest floating-point and SSE state. The hypervisor itself never touches
//! these registers (it is built soft-float), so they hold the running
//! vCPU's state and are switched only when another vCPU takes the CPU.

/// An FXSAVE area (x87, MMX, SSE: 512 bytes).
#[repr(C, align(16))]
#[derive(Clone)]
pub struct FxArea([u8; 512]);

impl FxArea {
    /// The state a CPU has after reset: FCW 0x37f, MXCSR 0x1f80.
    pub fn new() -> FxArea {
        let mut a = [0u8; 512];
        a[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        a[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        // MXCSR_MASK: the bits this CPU supports (0xffbf is the default).
        a[28..32].copy_from_slice(&0xffbfu32.to_le_bytes());
        FxArea(a)
    }

    pub fn save(&mut self) {
        // SAFETY: a 16-byte aligned 512-byte area; CR4.OSFXSR is set in init.
        unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) self.0.as_mut_ptr(), options(nostack)) };
    }

    pub fn restore(&self) {
        // SAFETY: the area holds state saved by fxsave64 or built by new().
        unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) self.0.as_ptr(), options(nostack, readonly)) };
    }
}

impl Default for FxArea {
    fn default() -> Self {
        Self::new()
    }
}

/// Lets FXSAVE/FXRSTOR cover SSE state: CR4.OSFXSR and OSXMMEXCPT on,
/// CR0.EM and TS off, CR0.MP on.
pub fn init() {
    // SAFETY: only enables SSE state handling on this CPU.
    unsafe {
        core::arch::asm!(
            "mov rax, cr4", "or rax, 0x600", "mov cr4, rax",
            "mov rax, cr0", "and rax, ~0xc", "or rax, 0x2", "mov cr0, rax",
            out("rax") _, options(nostack)
        );
    }
}
