/* SPDX-License-Identifier: MIT */
/*
 * hyperkit's core internals: the VM object shared by vm.c (memory,
 * interrupts, dispatch tables, event thread), cpu.c (vCPU threads), boot.c
 * (the Linux boot protocol), mptable.c and acpi.c (tables in guest memory)
 * and uart.c (COM ports). Devices see only platform.h.
 *
 * Guest physical memory map:
 *
 *   0x0000_0500  GDT (boot)            0x0000_7000  zero page (boot_params)
 *   0x0000_9000  page tables (boot)    0x0002_0000  kernel command line
 *   0x0009_fc00 - 0x0010_0000          reserved: EBDA, ACPI tables at
 *                                      0xe0000, MP table at 0xf0000,
 *                                      SMBIOS at 0xf8000
 *   0x0010_0000 - low end              RAM: kernel, initrd at the top
 *   0xc000_0000 - 0x1_0000_0000        the MMIO hole: PCI BARs, IOAPIC,
 *                                      LAPIC, KVM's TSS; never RAM
 *   0x1_0000_0000 -                    RAM beyond the first 3 GiB
 */
#ifndef HYPERKIT_INTERNAL_H
#define HYPERKIT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/log.h"
#include "hyperkit/hyperkit.h"
#include "platform.h"

#define HK_KIB 1024ull
#define HK_MIB (1024ull * HK_KIB)
#define HK_GIB (1024ull * HK_MIB)

#define HK_LOW_MEM_MAX (3 * HK_GIB) /* start of the MMIO hole */
#define HK_HIGH_MEM_BASE (4 * HK_GIB)
#define HK_MIN_MEM (32 * HK_MIB)

#define HK_GDT_GPA 0x500ull
#define HK_ZERO_PAGE_GPA 0x7000ull
#define HK_PML4_GPA 0x9000ull /* PML4, PDPT, 4 PDs: 0x9000 - 0xefff */
#define HK_STACK_GPA 0x8ff0ull
#define HK_CMDLINE_GPA 0x20000ull
#define HK_CMDLINE_MAX 0x10000ull /* room at HK_CMDLINE_GPA */
#define HK_EBDA_GPA 0x9fc00ull
#define HK_ACPI_GPA 0xe0000ull /* RSDP first, where Linux looks */
#define HK_ACPI_MAX 0x10000ull
#define HK_MPTABLE_GPA 0xf0000ull
#define HK_MPTABLE_MAX 0x8000ull
#define HK_SMBIOS_GPA 0xf8000ull /* Linux scans 0xf0000-0xfffff */
#define HK_SMBIOS_MAX 0x8000ull
#define HK_KERNEL_MIN_GPA 0x100000ull

#define HK_IOAPIC_GPA 0xfec00000ull
#define HK_LAPIC_GPA 0xfee00000ull
#define HK_TSS_GPA 0xfffbd000ull /* 3 pages, KVM_SET_TSS_ADDR */
#define HK_IDENTITY_MAP_GPA 0xfffbc000ull /* 1 page */

#define HK_IOAPIC_PINS 24
/* The PCI INTx lines: pin of the IOAPIC for a slot's INTA#. */
#define HK_PCI_INTX_FIRST_GSI 16

/* ACPI fixed hardware (I/O ports), the SCI and the reset register. */
#define HK_ACPI_PM1_EVT_PORT 0x600 /* status (2 bytes), enable (2) */
#define HK_ACPI_PM1_CNT_PORT 0x604 /* control (2 bytes) */
#define HK_ACPI_RESET_PORT 0x606 /* write HK_ACPI_RESET_VALUE: reset */
#define HK_ACPI_RESET_VALUE 0x01
#define HK_ACPI_SCI_IRQ 9
#define HK_ACPI_S5_TYP 5 /* SLP_TYP of \_S5 in our DSDT */

/* ---------------------------------------------------------------- memory */

/* Guest RAM: low part at 0, high part at 4 GiB, one host mapping. */
struct hk_mem {
	uint8_t *host; /* low bytes, then high bytes */
	uint64_t low; /* bytes at [0, low) */
	uint64_t high; /* bytes at [4 GiB, 4 GiB + high) */
};

/* Split a RAM size into low and high parts (low at most 3 GiB). */
void hk_mem_split(uint64_t size, uint64_t *low, uint64_t *high);
/* The checked translation behind hk_gpa. */
void *hk_mem_gpa(const struct hk_mem *m, uint64_t gpa, uint64_t len);

/* ---------------------------------------------------------------- boot */

/* The e820 map the guest gets. */
enum {
	HK_E820_RAM = 1,
	HK_E820_RESERVED = 2,
};
struct hk_e820 {
	uint64_t addr, size;
	uint32_t type;
};
#define HK_E820_MAX 8
/* Fill e (room for HK_E820_MAX) for a memory split; returns the count. */
unsigned hk_e820_build(struct hk_e820 *e, uint64_t low, uint64_t high);

/* What boot.c needs from a bzImage's setup header, validated. */
struct hk_setup {
	uint16_t version;
	uint8_t setup_sects; /* 0 read as 4 */
	uint8_t loadflags;
	uint16_t xloadflags;
	bool relocatable;
	uint32_t kernel_alignment;
	uint64_t pref_address;
	uint32_t init_size;
	uint32_t initrd_addr_max;
	uint32_t cmdline_size; /* without the NUL */
	size_t setup_bytes; /* (setup_sects + 1) * 512 */
	size_t payload_bytes; /* the protected-mode part in the file */
	size_t header_end; /* file offset just past the setup header */
	bool entry64; /* 64-bit entry point at load + 0x200 */
};

/* Validate the setup header of a bzImage of len bytes. 0 or -ENOEXEC
 * with the reason logged. */
int hk_boot_parse(const uint8_t *img, size_t len, struct hk_setup *s,
		  const struct logger *lg);

/* Where things go, decided from the header and the memory. */
struct hk_boot_plan {
	uint64_t kernel_gpa;
	uint64_t kernel_end; /* kernel_gpa + init_size */
	uint64_t initrd_gpa; /* 0 without an initrd */
	uint64_t initrd_size;
	uint64_t entry; /* RIP */
	bool entry64;
};
int hk_boot_plan(const struct hk_setup *s, const struct hk_mem *m,
		 uint64_t initrd_size, struct hk_boot_plan *p,
		 const struct logger *lg);

/* Load a bzImage (with initrd and cmdline) into guest memory: kernel,
 * initrd, zero page, cmdline, GDT and page tables. acpi_rsdp is the RSDP's
 * address or 0. unpack and cache_dir: hk_config's kernel_unpack and
 * kernel_cache. Fills *p (the entry for cpu.c). */
int hk_boot_load(const struct hk_mem *m, const char *kernel,
		 const char *initrd, const char *cmdline, uint64_t acpi_rsdp,
		 int unpack, const char *cache_dir, struct hk_boot_plan *p,
		 const struct logger *lg);

/* vmlinux.c: the ELF kernel inside a bzImage (img, parsed into s), from
 * the cache (if use_cache) or decompressed, into a malloc'd *elf. 0, or
 * -errno when the guest must decompress it itself (-ENOTSUP: a format or
 * protocol we do not unpack). */
#define PATH_MAX_HK 4096
int hk_vmlinux_get(const uint8_t *img, size_t img_len,
		   const struct hk_setup *s, const char *cache_dir,
		   bool use_cache, uint8_t **elf, size_t *elf_len,
		   const struct logger *lg);

/* Copy elf's PT_LOAD segments to their physical addresses (each in low
 * RAM above 1 MiB, checked before anything is copied); *entry is the ELF
 * entry, [*lo, *hi) what the segments cover. 0 or -ENOEXEC. */
int hk_vmlinux_load(const struct hk_mem *m, const uint8_t *elf, size_t len,
		    uint64_t *entry, uint64_t *lo, uint64_t *hi,
		    const struct logger *lg);

/* The zero page for an image whose header is s and plan p (exposed for
 * tests); zp is 4096 bytes. -E2BIG if the cmdline is too long. */
int hk_boot_zero_page(uint8_t *zp, const uint8_t *img, const struct hk_setup *s,
		      const struct hk_boot_plan *p, const struct hk_mem *m,
		      size_t cmdline_len, uint64_t acpi_rsdp,
		      const struct logger *lg);

/* ---------------------------------------------------------------- tables */

/* Build an MP table (floating pointer first) into buf, which the guest
 * sees at gpa. Returns its length or -ENOSPC. */
ssize_t hk_mptable_build(uint8_t *buf, size_t len, uint64_t gpa,
			 unsigned cpus);

/* Build the ACPI tables (RSDP first) into buf, seen at gpa. Returns the
 * length or -ENOSPC. */
ssize_t hk_acpi_build(uint8_t *buf, size_t len, uint64_t gpa, unsigned cpus);

/* What the SMBIOS tables describe. uuid is in RFC 4122 byte order (as
 * -U is written); the builder stores it in SMBIOS order. */
struct hk_smbios_info {
	unsigned cpus;
	uint64_t mem_low, mem_high; /* RAM below 3 GiB and at 4 GiB */
	uint8_t uuid[16];
};

/* Build the SMBIOS 2.8 entry point (at buf) and structure table (at buf +
 * 0x20) into buf, which the guest sees at gpa (below 4 GiB). Returns the
 * length or -ENOSPC. */
ssize_t hk_smbios_build(uint8_t *buf, size_t len, uint64_t gpa,
			const struct hk_smbios_info *info);
/* The UUID of a VM without -U: derived from the host name, so it stays
 * the same from run to run (RFC 4122 byte order). */
void hk_smbios_default_uuid(uint8_t uuid[16]);

/* The sum of len bytes (tables are valid when it is 0 mod 256). */
uint8_t hk_checksum(const uint8_t *p, size_t len);

/* ACPI fixed hardware: register the PM1 and reset ports. */
int hk_acpi_hw_init(struct hk_vm *vm);
/* Press the power button (sets PWRBTN_STS, raises the SCI if enabled). */
void hk_acpi_power_button(struct hk_vm *vm);

/* ---------------------------------------------------------------- uart */

struct hk_uart;
/* Make COM port index (0: COM1 at 0x3f8 IRQ 4, 1: COM2 at 0x2f8 IRQ 3)
 * with backend "stdio", "autopty" or a path. */
int hk_uart_new(struct hk_vm *vm, unsigned index, const char *backend,
		struct hk_uart **out);
const char *hk_uart_path(const struct hk_uart *u);
void hk_uart_free(struct hk_uart *u);

/* ---------------------------------------------------------------- the VM */

struct hk_io_range {
	uint64_t base, len;
	hk_io_fn *fn;
	void *opaque;
};

#define HK_LOOP_MAX 128
struct hk_loop_entry {
	int fd; /* -1: free */
	uint32_t gen;
	hk_loop_fn *cb;
	void *opaque;
};

#define HK_EXIT_PORTS 32 /* distinct ports counted per vCPU */

/* Exit counts, for -vv: what the guest makes us do, and where. */
struct hk_exit_stats {
	uint64_t exits, io, mmio, hlt, intr, coalesced;
	struct {
		uint16_t port;
		uint64_t n;
	} ports[HK_EXIT_PORTS];
	unsigned nports;
	uint64_t other_ports;
};

struct hk_vcpu {
	struct hk_vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started; /* a thread was created (to join) */
	bool running; /* the thread may be kicked (state_lock) */
	struct hk_exit_stats stats; /* this vCPU's thread only */
};

#define HK_MSI_GSI_MAX 1024 /* GSIs 24 .. HK_MSI_GSI_MAX-1 for MSI */

struct hk_msi_route {
	bool used;
	uint64_t addr;
	uint32_t data;
};

struct hk_vm {
	struct hk_config cfg; /* strings point to copies below */
	char *kernel, *initrd, *cmdline, *kernel_cache;
	struct logger log;
	struct ratelimit io_rl; /* unhandled port and MMIO accesses */

	int kvm_fd, vm_fd;
	size_t run_size;
	/* Port writes KVM queued without an exit (the PCI address port,
	 * 0xCF8): a page of every vCPU's run mapping, at this page offset,
	 * or 0 without KVM_CAP_COALESCED_PIO. Drained under ring_lock
	 * before any exit is handled. */
	unsigned ring_page;
	pthread_mutex_t ring_lock;
	struct hk_mem mem;
	size_t map_size; /* of mem.host */

	/* Port and MMIO handlers; read-mostly, so a rwlock. */
	pthread_rwlock_t io_lock;
	struct hk_io_range *pio, *mmio;
	size_t n_pio, n_mmio, cap_pio, cap_mmio;

	/* GSI routes for MSI (the IOAPIC/PIC ones are implied). */
	pthread_mutex_t gsi_lock;
	struct hk_msi_route msi[HK_MSI_GSI_MAX];

	/* The event thread. */
	int epoll_fd, wake_fd;
	pthread_t loop_thread;
	bool loop_started;
	pthread_mutex_t loop_lock; /* recursive */
	pthread_cond_t loop_cond;
	struct hk_loop_entry loop[HK_LOOP_MAX];
	int loop_dispatching; /* slot being run, or -1 */

	struct hk_vcpu vcpu[HK_MAX_CPUS];
	struct hk_boot_plan boot;

	/* Run state, under state_lock. */
	pthread_mutex_t state_lock;
	pthread_cond_t state_cond;
	enum hk_state state;
	atomic_bool stopping; /* the guest ended: vCPUs leave */
	atomic_bool pausing; /* vCPUs park */
	unsigned parked; /* vCPUs parked now */
	int exit_reason; /* first reason wins; -1: none yet */
	bool started;

	/* ACPI PM1 registers, under state_lock. */
	uint16_t pm1_sts, pm1_en, pm1_cnt;
	bool sci_level;

	struct hk_uart *uart[2];
	struct hk_rtc *rtc; /* the CMOS clock (rtc.c) */
	struct hk_pci_bus *pci; /* bus 0 (pci.c) */
};

/*
 * Stacks of the threads we start besides the vCPUs (the event thread,
 * in-process vpnkit): room for the largest stack buffers (64 KiB) many
 * times over, and under 2 MiB, so that a kernel with transparent huge
 * pages always on does not back a mostly idle 8 MiB default stack with a
 * 2 MiB page (that alone was half of the VMM's own memory).
 */
#define HK_THREAD_STACK ((size_t)1 << 20)

/* cpu.c: create the vCPUs (CPUID, registers) and run them. */
int hk_cpu_create_all(struct hk_vm *vm);
int hk_cpu_start_all(struct hk_vm *vm);
void hk_cpu_join_all(struct hk_vm *vm);
void hk_cpu_destroy_all(struct hk_vm *vm);
/* Interrupt every vCPU's KVM_RUN so it looks at the run state. */
void hk_cpu_kick_all(struct hk_vm *vm);
/* Log a vCPU's registers at error level. */
void hk_cpu_dump(struct hk_vcpu *c);

/* vm.c: end the VM with reason (the first reason wins). */
void hk_vm_finish(struct hk_vm *vm, enum hk_exit reason);
/* vm.c: dispatch an exit to the registered handler (unhandled ones read
 * as all ones and are logged with a rate limit). */
void hk_vm_pio(struct hk_vm *vm, uint16_t port, unsigned size, bool write,
	       uint64_t *val);
void hk_vm_mmio(struct hk_vm *vm, uint64_t gpa, unsigned size, bool write,
		uint64_t *val);
/* vm.c: notify the state callback. */
void hk_vm_set_state(struct hk_vm *vm, enum hk_state st);

#endif
