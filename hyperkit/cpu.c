// SPDX-License-Identifier: MIT
/*
 * vCPUs: creation (CPUID, LAPIC, FPU, the boot CPU's registers) and one
 * thread per vCPU running KVM_RUN and dispatching its exits.
 *
 * CPUID is what KVM supports (KVM_GET_SUPPORTED_CPUID), patched so each
 * vCPU sees a consistent topology: N cores of one package, one thread per
 * core, APIC id = vCPU index, in leaves 1, 4, 0xB/0x1F and AMD's
 * 0x80000008/0x8000001E; the hypervisor bit and KVM's leaves
 * 0x40000000-1 are present, so Linux uses kvmclock and paravirtual EOI.
 * It is set before the first KVM_RUN, as KVM requires.
 *
 * The boot CPU starts at the kernel's entry (boot.c decides 64- or 32-
 * bit); the others stay in wait-for-SIPI in KVM's LAPIC until the guest
 * starts them. With the in-kernel irqchip, HLT never reaches us.
 *
 * Stopping and pausing: the controlling thread sets vm->stopping or
 * vm->pausing, then kicks each vCPU: run->immediate_exit = 1 and the
 * signal HK_KICK_SIGNAL, whose empty handler makes a KVM_RUN in progress
 * return EINTR; immediate_exit covers a vCPU that is about to enter it.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define CPUID_MAX_ENTRIES 256

static struct kvm_cpuid2 *cpuid_alloc(unsigned n)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

	if (c)
		c->nent = n;
	return c;
}

static struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn,
					   uint32_t index)
{
	unsigned i;

	for (i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn &&
		    (!(c->entries[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ||
		     c->entries[i].index == index))
			return &c->entries[i];
	return NULL;
}

static void cpuid_drop(struct kvm_cpuid2 *c, uint32_t fn)
{
	unsigned i = 0;

	while (i < c->nent) {
		if (c->entries[i].function == fn)
			c->entries[i] = c->entries[--c->nent];
		else
			i++;
	}
}

static void cpuid_put(struct kvm_cpuid2 *c, uint32_t fn, uint32_t index,
		      uint32_t flags, uint32_t a, uint32_t b, uint32_t cx,
		      uint32_t d)
{
	if (c->nent >= CPUID_MAX_ENTRIES)
		return;
	c->entries[c->nent++] = (struct kvm_cpuid_entry2){
		.function = fn, .index = index, .flags = flags,
		.eax = a, .ebx = b, .ecx = cx, .edx = d,
	};
}

/* Bits needed to number n things. */
static unsigned id_bits(unsigned n)
{
	unsigned b = 0;

	while ((1u << b) < n)
		b++;
	return b;
}

/* Topology leaves 0xB or 0x1F: an SMT level of 1 thread, a core level of
 * n cores, then the invalid level that ends the list. */
static void put_topology_leaf(struct kvm_cpuid2 *c, uint32_t fn, unsigned id,
			      unsigned n)
{
	uint32_t f = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;

	cpuid_drop(c, fn);
	cpuid_put(c, fn, 0, f, 0, 1, 1u << 8, id); /* level 0: SMT */
	cpuid_put(c, fn, 1, f, id_bits(n), n, 2u << 8 | 1, id);
	cpuid_put(c, fn, 2, f, 0, 0, 2, id);
}

static void cpuid_patch(struct kvm_cpuid2 *c, unsigned id, unsigned n)
{
	struct kvm_cpuid_entry2 *e;
	uint32_t max_basic = 0, max_ext = 0;
	unsigned i;

	if ((e = cpuid_find(c, 0, 0)))
		max_basic = e->eax;
	if ((e = cpuid_find(c, 0x80000000, 0)))
		max_ext = e->eax;
	if ((e = cpuid_find(c, 1, 0))) {
		e->ebx = (e->ebx & 0x0000ffff) | (uint32_t)id << 24 |
			 (uint32_t)(n > 255 ? 255 : n) << 16;
		if (n > 1)
			e->edx |= 1u << 28; /* HTT: the count above is valid */
		e->ecx |= 1u << 31; /* running under a hypervisor */
	}
	for (i = 0; i < c->nent; i++) {
		e = &c->entries[i];
		if (e->function == 4 && (e->eax & 0x1f)) {
			unsigned level = (e->eax >> 5) & 7;
			uint32_t sharing = level >= 3 ? n - 1 : 0;

			e->eax = (e->eax & 0x3fff) | sharing << 14 |
				 (uint32_t)(n - 1) << 26;
		}
	}
	if (max_basic >= 0xb)
		put_topology_leaf(c, 0xb, id, n);
	if (max_basic >= 0x1f && cpuid_find(c, 0x1f, 0))
		put_topology_leaf(c, 0x1f, id, n);
	if (max_ext >= 0x80000008 && (e = cpuid_find(c, 0x80000008, 0)))
		e->ecx = (e->ecx & ~0xf0ffu) | (n - 1) | id_bits(n) << 12;
	if (max_ext >= 0x8000001e && (e = cpuid_find(c, 0x8000001e, 0))) {
		e->eax = id;
		e->ebx = (e->ebx & ~0xffffu) | id; /* one thread per core */
		e->ecx &= ~0xffu; /* node 0 */
	}
	/* KVM's leaves: signature and features (kvmclock, PV EOI, ...). */
	if (!(e = cpuid_find(c, 0x40000000, 0))) {
		cpuid_put(c, 0x40000000, 0, 0, 0x40000001, 0x4b4d564b,
			  0x564b4d56, 0x4d);
	} else if (e->eax < 0x40000001) {
		e->eax = 0x40000001;
	}
	if (!cpuid_find(c, 0x40000001, 0))
		cpuid_put(c, 0x40000001, 0, 0, 0, 0, 0, 0);
}

static struct kvm_cpuid2 *supported_cpuid(struct hk_vm *vm)
{
	struct kvm_cpuid2 *c = cpuid_alloc(CPUID_MAX_ENTRIES);

	if (!c)
		return NULL;
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		free(c);
		return NULL;
	}
	return c;
}

static void set_seg(struct kvm_segment *s, uint16_t sel, uint8_t type,
		    bool l, bool db)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = db, .s = 1, .l = l, .g = 1,
	};
}

static int boot_regs(struct hk_vcpu *c)
{
	struct hk_vm *vm = c->vm;
	const struct hk_boot_plan *p = &vm->boot;
	struct kvm_sregs sr;
	struct kvm_regs r = { 0 };

	if (ioctl(c->fd, KVM_GET_SREGS, &sr) < 0)
		return -errno;
	set_seg(&sr.cs, 0x10, 11, p->entry64, !p->entry64);
	set_seg(&sr.ds, 0x18, 3, false, true);
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
	sr.tr.type = 11; /* a busy TSS, as VMX requires in long mode */
	sr.tr.present = 1;
	sr.gdt.base = HK_GDT_GPA;
	sr.gdt.limit = 31;
	sr.idt.base = 0;
	sr.idt.limit = 0;
	if (p->entry64) {
		sr.cr0 = 0x80000011; /* PG | ET | PE */
		sr.cr3 = HK_PML4_GPA;
		sr.cr4 = 0x20; /* PAE */
		sr.efer = 0x500; /* LMA | LME */
	} else {
		sr.cr0 = 0x11; /* ET | PE */
		sr.cr4 = 0;
		sr.efer = 0;
	}
	if (ioctl(c->fd, KVM_SET_SREGS, &sr) < 0)
		return -errno;
	r.rflags = 2;
	r.rip = p->entry;
	r.rsi = HK_ZERO_PAGE_GPA;
	r.rsp = HK_STACK_GPA;
	if (ioctl(c->fd, KVM_SET_REGS, &r) < 0)
		return -errno;
	return 0;
}

/* LINT0 delivers the PICs' interrupts (ExtINT), LINT1 is the NMI. */
static int set_lint(struct hk_vcpu *c)
{
	struct kvm_lapic_state la;
	uint32_t v;

	if (ioctl(c->fd, KVM_GET_LAPIC, &la) < 0)
		return -errno;
	memcpy(&v, la.regs + 0x350, 4);
	v = (v & ~0x700u) | 0x700u;
	memcpy(la.regs + 0x350, &v, 4);
	memcpy(&v, la.regs + 0x360, 4);
	v = (v & ~0x700u) | 0x400u;
	memcpy(la.regs + 0x360, &v, 4);
	if (ioctl(c->fd, KVM_SET_LAPIC, &la) < 0)
		return -errno;
	return 0;
}

static int vcpu_create(struct hk_vm *vm, unsigned id,
		       const struct kvm_cpuid2 *base)
{
	struct hk_vcpu *c = &vm->vcpu[id];
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	struct kvm_cpuid2 *cpuid;
	void *run;
	int err;

	c->vm = vm;
	c->id = id;
	c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (c->fd < 0) {
		logger_printf(&vm->log, LOG_LEVEL_ERR, "KVM_CREATE_VCPU %u: %s",
			      id, strerror(errno));
		return -errno;
	}
	run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   c->fd, 0);
	if (run == MAP_FAILED) {
		err = -errno;
		logger_printf(&vm->log, LOG_LEVEL_ERR, "vCPU %u: mmap: %s", id,
			      strerror(errno));
		return err;
	}
	c->run = run;
	cpuid = cpuid_alloc(CPUID_MAX_ENTRIES);
	if (!cpuid)
		return -ENOMEM;
	memcpy(cpuid->entries, base->entries,
	       base->nent * sizeof(base->entries[0]));
	cpuid->nent = base->nent;
	cpuid_patch(cpuid, id, vm->cfg.cpus);
	err = ioctl(c->fd, KVM_SET_CPUID2, cpuid) < 0 ? -errno : 0;
	free(cpuid);
	if (err) {
		logger_printf(&vm->log, LOG_LEVEL_ERR, "vCPU %u: KVM_SET_CPUID2: %s",
			      id, strerror(-err));
		return err;
	}
	if ((err = set_lint(c)) ||
	    (err = ioctl(c->fd, KVM_SET_FPU, &fpu) < 0 ? -errno : 0) ||
	    (id == 0 && (err = boot_regs(c)))) {
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "vCPU %u: setting registers: %s", id,
			      strerror(-err));
		return err;
	}
	return 0;
}

int hk_cpu_create_all(struct hk_vm *vm)
{
	struct kvm_cpuid2 *base = supported_cpuid(vm);
	unsigned i;
	int err = 0;

	if (!base)
		return -ENOTSUP;
	for (i = 0; i < vm->cfg.cpus && !err; i++)
		err = vcpu_create(vm, i, base);
	free(base);
	return err;
}

void hk_cpu_destroy_all(struct hk_vm *vm)
{
	unsigned i;

	for (i = 0; i < HK_MAX_CPUS; i++) {
		struct hk_vcpu *c = &vm->vcpu[i];

		if (c->run)
			munmap(c->run, vm->run_size);
		if (c->fd >= 0)
			close(c->fd);
		c->run = NULL;
		c->fd = -1;
	}
}

void hk_cpu_dump(struct hk_vcpu *c)
{
	struct logger *lg = &c->vm->log;
	struct kvm_regs r;
	struct kvm_sregs s;

	if (ioctl(c->fd, KVM_GET_REGS, &r) < 0 ||
	    ioctl(c->fd, KVM_GET_SREGS, &s) < 0) {
		logger_printf(lg, LOG_LEVEL_ERR, "vCPU %u: cannot read registers",
			      c->id);
		return;
	}
	logger_printf(lg, LOG_LEVEL_ERR,
		      "vCPU %u: rip %016llx rsp %016llx rflags %08llx", c->id,
		      r.rip, r.rsp, r.rflags);
	logger_printf(lg, LOG_LEVEL_ERR,
		      "vCPU %u: rax %016llx rbx %016llx rcx %016llx rdx %016llx",
		      c->id, r.rax, r.rbx, r.rcx, r.rdx);
	logger_printf(lg, LOG_LEVEL_ERR,
		      "vCPU %u: rsi %016llx rdi %016llx rbp %016llx r8  %016llx",
		      c->id, r.rsi, r.rdi, r.rbp, r.r8);
	logger_printf(lg, LOG_LEVEL_ERR,
		      "vCPU %u: cr0 %016llx cr2 %016llx cr3 %016llx cr4 %016llx "
		      "efer %llx",
		      c->id, s.cr0, s.cr2, s.cr3, s.cr4, s.efer);
	logger_printf(lg, LOG_LEVEL_ERR,
		      "vCPU %u: cs %04x base %llx l %u db %u; ss %04x; gdt %llx/%x "
		      "idt %llx/%x",
		      c->id, s.cs.selector, s.cs.base, s.cs.l, s.cs.db,
		      s.ss.selector, s.gdt.base, s.gdt.limit, s.idt.base,
		      s.idt.limit);
}

static void count_port(struct hk_exit_stats *st, uint16_t port)
{
	unsigned i;

	for (i = 0; i < st->nports; i++) {
		if (st->ports[i].port == port) {
			st->ports[i].n++;
			return;
		}
	}
	if (st->nports < HK_EXIT_PORTS) {
		st->ports[st->nports].port = port;
		st->ports[st->nports++].n = 1;
	} else {
		st->other_ports++;
	}
}

/* At debug level: how many exits of each kind, the busiest ports first. */
static void log_stats(struct hk_vcpu *c)
{
	struct hk_exit_stats *st = &c->stats;
	char line[512];
	size_t len = 0;
	bool done[HK_EXIT_PORTS] = { false };

	if (!logger_enabled(&c->vm->log, LOG_LEVEL_DEBUG))
		return;
	for (unsigned k = 0; k < 8 && k < st->nports; k++) {
		unsigned best = HK_EXIT_PORTS;

		for (unsigned i = 0; i < st->nports; i++) {
			if (!done[i] && (best == HK_EXIT_PORTS ||
					 st->ports[i].n > st->ports[best].n))
				best = i;
		}
		done[best] = true;
		len += (size_t)snprintf(line + len, sizeof(line) - len,
					" %#x:%llu", st->ports[best].port,
					(unsigned long long)st->ports[best].n);
		if (len >= sizeof(line))
			break;
	}
	logger_printf(&c->vm->log, LOG_LEVEL_DEBUG,
		      "vCPU %u: %llu exits: %llu port, %llu MMIO, %llu halt, "
		      "%llu interrupted; %llu queued writes; busiest ports%s",
		      c->id, (unsigned long long)st->exits,
		      (unsigned long long)st->io, (unsigned long long)st->mmio,
		      (unsigned long long)st->hlt, (unsigned long long)st->intr,
		      (unsigned long long)st->coalesced, len ? line : " none");
}

static void do_io(struct hk_vcpu *c)
{
	struct kvm_run *run = c->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool write = run->io.direction == KVM_EXIT_IO_OUT;
	unsigned size = run->io.size, i;

	c->stats.io++;
	count_port(&c->stats, run->io.port);
	if (size != 1 && size != 2 && size != 4)
		return;
	for (i = 0; i < run->io.count; i++, data += size) {
		uint64_t v = 0;

		if (write)
			memcpy(&v, data, size); /* x86: little-endian host */
		hk_vm_pio(c->vm, run->io.port, size, write, &v);
		if (!write)
			memcpy(data, &v, size);
	}
}

static void do_mmio(struct hk_vcpu *c)
{
	struct kvm_run *run = c->run;
	unsigned len = run->mmio.len;
	uint64_t v = 0;

	c->stats.mmio++;
	if (len == 0 || len > 8)
		return;
	if (run->mmio.is_write)
		memcpy(&v, run->mmio.data, len);
	hk_vm_mmio(c->vm, run->mmio.phys_addr, len, run->mmio.is_write, &v);
	if (!run->mmio.is_write)
		memcpy(run->mmio.data, &v, len);
}

/* Park while the VM is paused; false if it is stopping. */
static bool park(struct hk_vcpu *c)
{
	struct hk_vm *vm = c->vm;

	pthread_mutex_lock(&vm->state_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->state_cond);
	while (atomic_load(&vm->pausing) && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->state_cond, &vm->state_lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->state_lock);
	return !atomic_load(&vm->stopping);
}

/*
 * Apply the port writes KVM queued without exits (vm.c's coalesce_setup),
 * in order, before the exit that follows them. The ring is one page shared
 * by every vCPU's mapping: KVM fills it at last, we empty it at first.
 */
static void drain_ring(struct hk_vcpu *c)
{
	struct hk_vm *vm = c->vm;
	struct kvm_coalesced_mmio_ring *ring;
	const uint32_t max = (4096 - sizeof(*ring)) / sizeof(ring->coalesced_mmio[0]);

	if (!vm->ring_page)
		return;
	ring = (void *)((uint8_t *)c->run + (size_t)vm->ring_page * 4096);
	if (__atomic_load_n(&ring->first, __ATOMIC_ACQUIRE) ==
	    __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&vm->ring_lock);
	for (;;) {
		uint32_t first = __atomic_load_n(&ring->first, __ATOMIC_RELAXED);
		struct kvm_coalesced_mmio *e;
		uint64_t v = 0;

		if (first == __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE))
			break;
		if (first >= max) { /* never from KVM: start over */
			__atomic_store_n(&ring->first, 0, __ATOMIC_RELEASE);
			continue;
		}
		e = &ring->coalesced_mmio[first];
		if (e->len >= 1 && e->len <= 8) {
			memcpy(&v, e->data, e->len);
			c->stats.coalesced++;
			if (e->pio)
				hk_vm_pio(vm, (uint16_t)e->phys_addr, e->len,
					  true, &v);
			else
				hk_vm_mmio(vm, e->phys_addr, e->len, true, &v);
		}
		__atomic_store_n(&ring->first, (first + 1) % max,
				 __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&vm->ring_lock);
}

/* Handle one exit; false when the vCPU is done. */
static bool handle_exit(struct hk_vcpu *c)
{
	struct hk_vm *vm = c->vm;
	struct kvm_run *run = c->run;

	c->stats.exits++;
	drain_ring(c);
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		do_io(c);
		return true;
	case KVM_EXIT_MMIO:
		do_mmio(c);
		return true;
	case KVM_EXIT_INTR:
		c->stats.intr++;
		return true;
	case KVM_EXIT_HLT:
		c->stats.hlt++;
		return true;
	case KVM_EXIT_SHUTDOWN:
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "vCPU %u: shutdown (triple fault)", c->id);
		hk_cpu_dump(c);
		hk_vm_finish(vm, HK_EXIT_TRIPLE_FAULT);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		switch (run->system_event.type) {
		case KVM_SYSTEM_EVENT_SHUTDOWN:
			hk_vm_finish(vm, HK_EXIT_POWEROFF);
			return false;
		case KVM_SYSTEM_EVENT_RESET:
			hk_vm_finish(vm, HK_EXIT_RESET);
			return false;
		default:
			break;
		}
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "vCPU %u: system event %u", c->id,
			      run->system_event.type);
		hk_cpu_dump(c);
		hk_vm_finish(vm, HK_EXIT_INTERNAL_ERROR);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "vCPU %u: entry failed, reason 0x%llx", c->id,
			      (unsigned long long)run->fail_entry
				      .hardware_entry_failure_reason);
		hk_cpu_dump(c);
		hk_vm_finish(vm, HK_EXIT_INTERNAL_ERROR);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "vCPU %u: KVM internal error, suberror %u", c->id,
			      run->internal.suberror);
		hk_cpu_dump(c);
		hk_vm_finish(vm, HK_EXIT_INTERNAL_ERROR);
		return false;
	default:
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "vCPU %u: unexpected exit %u", c->id,
			      run->exit_reason);
		hk_cpu_dump(c);
		hk_vm_finish(vm, HK_EXIT_INTERNAL_ERROR);
		return false;
	}
}

static void *vcpu_main(void *arg)
{
	struct hk_vcpu *c = arg;
	struct hk_vm *vm = c->vm;
	sigset_t kick;

	sigemptyset(&kick);
	sigaddset(&kick, HK_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	for (;;) {
		if (atomic_load(&vm->stopping))
			break;
		if (atomic_load(&vm->pausing) && !park(c))
			break;
		if (ioctl(c->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				c->run->immediate_exit = 0;
				continue;
			}
			logger_printf(&vm->log, LOG_LEVEL_ERR,
				      "vCPU %u: KVM_RUN: %s", c->id,
				      strerror(errno));
			hk_cpu_dump(c);
			hk_vm_finish(vm, HK_EXIT_INTERNAL_ERROR);
			break;
		}
		if (!handle_exit(c))
			break;
	}
	log_stats(c);
	pthread_mutex_lock(&vm->state_lock);
	c->running = false;
	pthread_mutex_unlock(&vm->state_lock);
	return NULL;
}

static void kick_handler(int sig)
{
	(void)sig;
}

int hk_cpu_start_all(struct hk_vm *vm)
{
	struct sigaction sa;
	pthread_attr_t attr;
	unsigned i;
	int err = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(HK_KICK_SIGNAL, &sa, NULL) < 0)
		return -errno;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (i = 0; i < vm->cfg.cpus; i++) {
		struct hk_vcpu *c = &vm->vcpu[i];

		pthread_mutex_lock(&vm->state_lock);
		err = pthread_create(&c->thread, &attr, vcpu_main, c);
		c->running = err == 0;
		pthread_mutex_unlock(&vm->state_lock);
		if (err) {
			logger_printf(&vm->log, LOG_LEVEL_ERR,
				      "cannot start vCPU %u: %s", i,
				      strerror(err));
			err = -err;
			break;
		}
		c->started = true;
	}
	pthread_attr_destroy(&attr);
	return err;
}

void hk_cpu_kick_all(struct hk_vm *vm)
{
	unsigned i;

	pthread_mutex_lock(&vm->state_lock);
	for (i = 0; i < vm->cfg.cpus; i++) {
		struct hk_vcpu *c = &vm->vcpu[i];

		if (!c->running)
			continue;
		__atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		if (!pthread_equal(c->thread, pthread_self()))
			pthread_kill(c->thread, HK_KICK_SIGNAL);
	}
	pthread_mutex_unlock(&vm->state_lock);
}

void hk_cpu_join_all(struct hk_vm *vm)
{
	unsigned i;

	for (i = 0; i < vm->cfg.cpus; i++) {
		struct hk_vcpu *c = &vm->vcpu[i];

		if (!c->started)
			continue;
		pthread_join(c->thread, NULL);
		c->started = false;
	}
}
