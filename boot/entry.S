/*
 * Multiboot2 header and the 32-bit entry point GRUB jumps to.
 *
 * Assembled by the hypervisor crate (global_asm!, Intel syntax). On entry
 * (Multiboot2 spec, "Machine state"): 32-bit protected mode, paging off,
 * EAX = 0x36d76289, EBX = physical address of the boot information, flat CS
 * and DS, no usable stack, interrupts off.
 *
 * The image may have been relocated by GRUB (relocatable tag below), so this
 * code never relies on its link address: it reads the real load base from
 * the MBI "load base address" tag (type 21) and adds the difference (kept in
 * EDI) to every address it uses.
 *
 * Steps: check the magic and that the CPU has long mode, build boot page
 * tables (identity map of the first 4 GiB plus the image at KERNEL_VBASE),
 * enable PAE, LME, NXE (when present), paging and write protection, load a
 * 64-bit GDT, jump to 64-bit code, switch to the high-half stack and call
 * hv_start(mbi_phys, load_delta).
 */

.set MB2_MAGIC,          0xE85250D6
.set MB2_ARCH_I386,      0
.set MB2_BOOT_MAGIC,     0x36d76289
.set MB2_TAG_LOAD_BASE,  21

.set COM1,               0x3f8

.set CR0_PE,             1 << 0
.set CR0_WP,             1 << 16
.set CR0_PG,             1 << 31
.set CR4_PAE,            1 << 5
.set MSR_EFER,           0xC0000080
.set EFER_LME,           1 << 8
.set EFER_NXE,           1 << 11

.set PTE_PRESENT_RW,     0x003
.set BOOT_PT_PAGES,      8     /* PML4, two PDPTs, five page directories */
.set PTE_LARGE_RW,       0x083

/* ------------------------------------------------------------------------ */
.section .multiboot2, "a"
.balign 8
mb2_header:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header
    .long -(MB2_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header))

    /* Relocatable-image tag (type 10), optional: load anywhere from 2 MiB to
       4 GiB on a 2 MiB boundary, preferring low addresses. */
    .balign 8
    .short 10
    .short 1
    .long 24
    .long 0x00200000            /* min_addr */
    .long 0xFFFFFFFF            /* max_addr */
    .long 0x00200000            /* align */
    .long 1                     /* preference: low */

    /* Information request (type 1), optional: the tags the boot code needs. */
    .balign 8
    .short 1
    .short 1
    .long 8 + 4 * 7
    .long 1                     /* command line */
    .long 3                     /* modules */
    .long 6                     /* memory map */
    .long 14                    /* ACPI old RSDP */
    .long 15                    /* ACPI new RSDP */
    .long 17                    /* EFI memory map */
    .long 21                    /* load base address */

    /* End tag. */
    .balign 8
    .short 0
    .short 0
    .long 8
mb2_header_end:

/* ------------------------------------------------------------------------ */
.section .boot.text, "ax"
.code32
.global _start
_start:
    cli
    cld
    cmp eax, MB2_BOOT_MAGIC
    jne .Lnot_multiboot2

    /* EBP = where we really are: the load-base tag if GRUB relocated us,
       else the link address. The scan is bounded by the MBI's total size
       and stops on a tag shorter than its own header. */
    mov ebp, offset __image_phys_link
    mov ecx, ebx
    add ecx, 8
    mov edx, [ebx]
    add edx, ebx                /* EDX = end of the MBI */
.Lscan:
    lea eax, [ecx + 8]
    cmp eax, edx
    ja .Lscan_done
    mov eax, [ecx]              /* tag type */
    test eax, eax
    jz .Lscan_done
    cmp eax, MB2_TAG_LOAD_BASE
    jne .Lscan_next
    mov ebp, [ecx + 8]
    jmp .Lscan_done
.Lscan_next:
    mov eax, [ecx + 4]          /* tag size */
    cmp eax, 8
    jb .Lscan_done
    add eax, 7
    and eax, -8
    add ecx, eax
    jmp .Lscan
.Lscan_done:
    mov edi, ebp
    sub edi, offset __image_phys_link      /* EDI = load delta */
    mov esi, ebx                            /* ESI = MBI */

    lea esp, [edi + boot_stack32_top]

    /* Long mode present? (CPUID 0x80000001 EDX bit 29) */
    pushfd
    pop eax
    mov ecx, eax
    xor eax, 1 << 21            /* can EFLAGS.ID be toggled, i.e. is there CPUID? */
    push eax
    popfd
    pushfd
    pop eax
    push ecx
    popfd
    cmp eax, ecx
    je .Lno_long_mode
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb .Lno_long_mode
    mov eax, 0x80000001
    cpuid
    test edx, 1 << 29
    jz .Lno_long_mode
    mov [edi + boot_cpu_ext_edx], edx

    /* Zero the boot page tables (the loader zero-fills, but do not rely on it). */
    push edi
    lea edi, [edi + boot_page_tables]
    mov ecx, BOOT_PT_PAGES * 1024
    xor eax, eax
    rep stosd
    pop edi

    /* PML4[0] -> identity PDPT, PML4[511] -> high PDPT */
    lea eax, [edi + boot_pdpt_low]
    or eax, PTE_PRESENT_RW
    mov [edi + boot_pml4], eax
    lea eax, [edi + boot_pdpt_high]
    or eax, PTE_PRESENT_RW
    mov [edi + boot_pml4 + 511 * 8], eax

    /* Identity PDPT[0..4] -> four page directories of 2 MiB pages: 0..4 GiB */
    xor ecx, ecx
.Lfill_pdpt_low:
    mov eax, ecx
    shl eax, 12
    lea eax, [edi + eax + boot_pd_low]
    or eax, PTE_PRESENT_RW
    mov [edi + boot_pdpt_low + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jb .Lfill_pdpt_low

    xor ecx, ecx
.Lfill_pd_low:
    mov eax, ecx
    shl eax, 21
    or eax, PTE_LARGE_RW
    mov [edi + boot_pd_low + ecx * 8], eax
    mov eax, ecx
    shr eax, 11                 /* bits 32+ of the physical address */
    mov [edi + boot_pd_low + ecx * 8 + 4], eax
    inc ecx
    cmp ecx, 2048
    jb .Lfill_pd_low

    /* High PDPT[510] -> one directory mapping KERNEL_VBASE + x -> x + delta
       for x in [0, 1 GiB). */
    lea eax, [edi + boot_pd_high]
    or eax, PTE_PRESENT_RW
    mov [edi + boot_pdpt_high + 510 * 8], eax
    xor ecx, ecx
.Lfill_pd_high:
    mov eax, ecx
    shl eax, 21
    add eax, edi
    or eax, PTE_LARGE_RW
    mov [edi + boot_pd_high + ecx * 8], eax
    inc ecx
    cmp ecx, 512
    jb .Lfill_pd_high

    /* PAE, then CR3, then EFER.LME (+NXE), then paging. */
    mov eax, cr4
    or eax, CR4_PAE
    mov cr4, eax
    lea eax, [edi + boot_pml4]
    mov cr3, eax
    mov ecx, MSR_EFER
    rdmsr
    or eax, EFER_LME
    test dword ptr [edi + boot_cpu_ext_edx], 1 << 20
    jz .Lno_nx
    or eax, EFER_NXE
.Lno_nx:
    wrmsr
    mov eax, cr0
    or eax, CR0_PG | CR0_PE | CR0_WP
    mov cr0, eax

    /* Point the GDT descriptor at where the GDT really is, load it. */
    lea eax, [edi + boot_gdt]
    mov [edi + boot_gdt_ptr + 2], eax
    lgdt [edi + boot_gdt_ptr]

    lea eax, [edi + .Llong_mode]
    push 0x08
    push eax
    retf

.Lnot_multiboot2:
    /* No stack yet and maybe relocated: compute our base the only way left. */
    mov esp, 0x7c00             /* conventional low memory, below 1 MiB */
    call .Lwhere
.Lwhere:
    pop edi
    sub edi, offset .Lwhere
    lea esi, [edi + msg_not_multiboot2]
    jmp .Lfatal32
.Lno_long_mode:
    lea esi, [edi + msg_no_long_mode]
.Lfatal32:
    /* Print the NUL-terminated string at ESI on COM1 (bounded wait per byte
       so that a machine without a UART still reaches the halt). */
    mov al, [esi]
    test al, al
    jz .Lhalt32
    mov ecx, 100000
.Lwait_thre:
    mov dx, COM1 + 5
    in al, dx
    test al, 0x20
    jnz .Lsend
    loop .Lwait_thre
.Lsend:
    mov al, [esi]
    mov dx, COM1
    out dx, al
    inc esi
    jmp .Lfatal32
.Lhalt32:
    cli
    hlt
    jmp .Lhalt32

.code64
.Llong_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax

    movabs rsp, offset __boot_stack_top
    xor ebp, ebp
    mov eax, edi                /* load delta (zero-extended) */
    mov edi, esi                /* rdi = MBI physical address */
    mov esi, eax                /* rsi = load delta */
    movabs rax, offset hv_start
    call rax
.Lhalt64:
    cli
    hlt
    jmp .Lhalt64

/* ------------------------------------------------------------------------ */
.section .boot.data, "aw"
.balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF    /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00CF92000000FFFF    /* 0x10: data, DPL 0 */
boot_gdt_end:
.balign 8
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .long 0
boot_cpu_ext_edx:
    .long 0
msg_not_multiboot2:
    .asciz "hypervisor: not started by a Multiboot2 loader (bad magic in EAX); load it with GRUB's multiboot2 command.\r\n"
msg_no_long_mode:
    .asciz "hypervisor: this CPU has no 64-bit long mode; the hypervisor needs an x86-64 CPU.\r\n"

.section .boot.bss, "aw", @nobits
.balign 4096
boot_page_tables:
boot_pml4:       .skip 4096
boot_pdpt_low:   .skip 4096
boot_pdpt_high:  .skip 4096
boot_pd_high:    .skip 4096
boot_pd_low:     .skip 4096 * 4
boot_page_tables_end:
boot_stack32:    .skip 1024
boot_stack32_top:
