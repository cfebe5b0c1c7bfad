/* memdirty: tiny multiboot(v1) guest "kernel" for live-migration tests.
 * 32-bit multiboot entry -> switches to 64-bit long mode (identity-mapped
 * 4 GiB with 2 MiB pages; legacy/unpaged modes are emulated very slowly on
 * some nested KVM hosts) -> fills guest RAM with pseudo-random
 * (incompressible, non-zero) data, then keeps dirtying a working set.
 * Kernel cmdline: "wss=<MiB> rate=<MiB/s> fill=<0|1>"
 * Status block at guest-physical 0x7000 (read with HMP 'xp /8wx 0x7000'):
 *   [0]=magic 0x4d454d44 [1]=heartbeat(10ms ticks) [2]=fill_done [3]=passes
 *   [4]=unused (0) [5]=wss_mb [6]=rate_mbs [7]=mem_mb
 * Serial (COM1) prints "hb <n>" once per second.
 * Build: tests/lab/harness.py build_guest() (gcc + ld + objcopy -O elf32-i386) -> build/guest/memdirty.elf. */
typedef unsigned int u32; typedef unsigned long long u64; typedef unsigned char u8; typedef unsigned long uptr;
#define MB_MAGIC 0x1BADB002u
#define MB_FLAGS 0x00000003u
__attribute__((section(".multiboot"), used, aligned(4)))
static const u32 mbh[3] = { MB_MAGIC, MB_FLAGS, (u32)(0u - (MB_MAGIC + MB_FLAGS)) };

asm(
"  .section .bss\n  .align 4096\n"
"pml4: .skip 4096\npdpt: .skip 4096\npdir: .skip 16384\n"
"stack_bottom: .skip 16384\nstack_top:\n"
"  .section .data\n  .align 16\n"
"gdt: .quad 0\n  .quad 0x00209A0000000000\n  .quad 0x0000920000000000\n"
"gdtr: .word 23\n  .long gdt\n"
"  .section .text\n  .code32\n  .global _start\n_start:\n"
"  mov $stack_top, %esp\n  mov %eax, %edi\n  mov %ebx, %esi\n"
"  mov $pdpt, %eax\n  or $3, %eax\n  mov %eax, pml4\n"
"  xor %ecx, %ecx\n1: mov %ecx, %eax\n  shl $12, %eax\n  add $pdir, %eax\n  or $3, %eax\n  mov %eax, pdpt(,%ecx,8)\n  inc %ecx\n  cmp $4, %ecx\n  jne 1b\n"
"  xor %ecx, %ecx\n2: mov %ecx, %eax\n  shl $21, %eax\n  or $0x83, %eax\n  mov %eax, pdir(,%ecx,8)\n  inc %ecx\n  cmp $2048, %ecx\n  jne 2b\n"
"  mov $pml4, %eax\n  mov %eax, %cr3\n"
"  mov %cr4, %eax\n  or $0x20, %eax\n  mov %eax, %cr4\n"
"  mov $0xC0000080, %ecx\n  rdmsr\n  or $0x100, %eax\n  wrmsr\n"
"  mov %cr0, %eax\n  or $0x80000001, %eax\n  mov %eax, %cr0\n"
"  lgdt gdtr\n  ljmp $0x08, $long_start\n"
"  .code64\nlong_start:\n  mov $0x10, %ax\n  mov %ax, %ds\n  mov %ax, %es\n  mov %ax, %ss\n  mov %ax, %fs\n  mov %ax, %gs\n"
"  mov $stack_top, %rsp\n  call kmain\n3: hlt\n  jmp 3b\n"
"  .global isr_timer\nisr_timer:\n  push %rax\n  incl ticks(%rip)\n  mov $0x20, %al\n  out %al, $0x20\n  pop %rax\n  iretq\n"
"  .global isr_other\nisr_other:\n  push %rax\n  mov $0x20, %al\n  out %al, $0xa0\n  out %al, $0x20\n  pop %rax\n  iretq\n");

volatile u32 ticks;                      /* incremented by the PIT IRQ0 handler, 100 Hz */
extern char isr_timer[], isr_other[];
struct idt_entry { unsigned short off_lo, sel; unsigned char ist, type; unsigned short off_mid; u32 off_hi, zero; };
static struct idt_entry idt[256] __attribute__((aligned(16)));
static struct { unsigned short lim; u64 base; } __attribute__((packed)) idtr;
struct status { u32 magic, heartbeat, fill_done, passes, tsc_khz, wss_mb, rate_mbs, mem_mb; };
#define ST ((volatile struct status *)0x7000)

static inline void outb(unsigned short p, u8 v) { asm volatile("outb %0,%1" :: "a"(v), "Nd"(p)); }
static inline u8 inb(unsigned short p) { u8 v; asm volatile("inb %1,%0" : "=a"(v) : "Nd"(p)); return v; }
static void putc_(char c) { outb(0x3f8, c); }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void putu(u32 v) { char b[12]; int i = 0; if (!v) { putc_('0'); return; } while (v) { b[i++] = '0' + v % 10; v /= 10; } while (i) putc_(b[--i]); }
static u32 getarg(const char *cl, const char *key, u32 dflt) {
    if (!cl) return dflt;
    for (const char *p = cl; *p; p++) {
        const char *k = key, *q = p;
        while (*k && *q == *k) { k++; q++; }
        if (!*k && *q == '=' && (p == cl || p[-1] == ' ')) {
            u32 v = 0; q++; while (*q >= '0' && *q <= '9') v = v * 10 + (*q++ - '0'); return v;
        }
    }
    return dflt;
}
static void set_gate(int v, void *h) {
    uptr a = (uptr)h; idt[v].off_lo = a; idt[v].sel = 0x08; idt[v].ist = 0; idt[v].type = 0x8E;
    idt[v].off_mid = a >> 16; idt[v].off_hi = a >> 32; idt[v].zero = 0;
}
static void timer_init(void) {                 /* PIC remap to 0x20/0x28, only IRQ0 unmasked; PIT 100 Hz */
    for (int v = 0; v < 256; v++) set_gate(v, isr_other);
    set_gate(0x20, isr_timer);
    idtr.lim = sizeof(idt) - 1; idtr.base = (uptr)idt;
    asm volatile("lidt %0" :: "m"(idtr));
    outb(0x20, 0x11); outb(0xA0, 0x11); outb(0x21, 0x20); outb(0xA1, 0x28);
    outb(0x21, 4); outb(0xA1, 2); outb(0x21, 1); outb(0xA1, 1);
    outb(0x21, 0xFE); outb(0xA1, 0xFF);
    u32 div = 1193182 / 100; outb(0x43, 0x34); outb(0x40, div & 0xff); outb(0x40, div >> 8);
    asm volatile("sti");
}
void kmain(u32 magic, u32 mbi_addr) {
    u32 *mbi = (u32 *)(uptr)mbi_addr;
    const char *cl = (mbi[0] & 4) ? (const char *)(uptr)mbi[4] : 0;
    u32 mem_mb = (mbi[0] & 1) ? (mbi[2] / 1024 + 1) : 64;
    u32 wss = getarg(cl, "wss", 16), rate = getarg(cl, "rate", 0), fill = getarg(cl, "fill", 1);
    ST->magic = 0x4d454d44; ST->heartbeat = 0; ST->fill_done = 0; ST->passes = 0;
    ST->wss_mb = wss; ST->rate_mbs = rate; ST->mem_mb = mem_mb;
    puts_("memdirty: mem_mb="); putu(mem_mb); puts_(" wss="); putu(wss); puts_(" rate="); putu(rate); puts_("\n");
    ST->tsc_khz = 0;
    uptr start = 2ul << 20, end = (uptr)(mem_mb - 1) << 20;
    if (wss > (end - start) >> 20) wss = (end - start) >> 20;
    u64 x = 0x123456789abcdefull;
    if (fill) {
        for (volatile u64 *p = (u64 *)start; p < (u64 *)end; p++) { x = x * 6364136223846793005ull + 1442695040888963407ull; *p = x; }
        ST->fill_done = 1; puts_("fill done\n");
    }
    timer_init();
    u32 pages_per_tick = rate * 256 / 100;        /* MiB/s -> 4K pages per 10 ms */
    u32 wss_pages = wss * 256, pg = 0;
    u32 done = ticks;
    for (;;) {
        asm volatile("hlt");                      /* idle until the next PIT tick: guest uses ~no host CPU at rate=0 */
        if (ticks == done) continue;
        done++;
        for (u32 i = 0; i < pages_per_tick; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            *(volatile u64 *)(start + ((uptr)pg << 12) + ((x >> 40) & 0xff8)) = x;
            if (++pg >= wss_pages) { pg = 0; ST->passes++; }
        }
        u32 hb = ++ST->heartbeat;
        if (hb % 100 == 0) { puts_("hb "); putu(hb / 100); puts_("\n"); }
    }
}
