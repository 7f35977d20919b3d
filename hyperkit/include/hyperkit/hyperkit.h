/* SPDX-License-Identifier: MIT */
/*
 * libhyperkit: a virtual machine on Linux KVM, as a library.
 *
 * A program describes a VM with a struct hk_config, creates it with
 * hk_vm_new, adds devices (hyperkit's `-s SLOT[:FUNC],EMULATION[,CONF]`
 * syntax) and serial ports (`com1,stdio`), and starts it. hk_vm_start
 * returns at once: one thread per vCPU and one event thread run the guest
 * until it powers off, resets, faults or is stopped; hk_vm_wait collects
 * the outcome. The guest is a Linux bzImage booted directly by the x86
 * boot protocol (no firmware), with an in-kernel interrupt controller,
 * an MP table for SMP, SMBIOS tables, a CMOS real-time clock and, if
 * asked, the ACPI tables a guest needs to power itself off. A guest's
 * reset ends the VM with HK_EXIT_RESET: to reboot it, a program frees the
 * VM and makes it again from the same configuration.
 *
 * Errors: functions return 0 (or a count) or -errno; the reason is sent
 * through the config's logger. The library never exits the process and
 * never prints. What a guest can trigger is logged with a rate limit.
 *
 * Threads: one thread creates, starts, waits for and frees a VM; pause,
 * resume and stop may be called from any thread (not from a signal
 * handler). The state callback runs on whichever thread changed the state
 * (a vCPU thread for a guest power-off) and must not call back into the
 * library except hk_vm_stop and hk_vm_kill.
 *
 * Signals: vCPU threads are interrupted with the real-time signal
 * HK_KICK_SIGNAL, for which hk_vm_start installs an empty handler; the
 * program must not use that signal for anything else. A program may block
 * its other signals before hk_vm_start: the library's threads inherit the
 * mask and unblock only HK_KICK_SIGNAL.
 *
 * Ownership: the config's strings are copied by hk_vm_new.
 */
#ifndef HYPERKIT_HYPERKIT_H
#define HYPERKIT_HYPERKIT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/log.h"

struct hk_vm;

/* The signal that interrupts a running vCPU (see above). */
#define HK_KICK_SIGNAL (SIGRTMIN + 3)

/* At most this many vCPUs (APIC ids stay below the IOAPIC's). */
#define HK_MAX_CPUS 64

enum hk_state {
	HK_STATE_CREATED, /* hk_vm_new done, not started */
	HK_STATE_RUNNING, /* started, or resumed */
	HK_STATE_PAUSED, /* every vCPU parked by hk_vm_pause */
	HK_STATE_STOPPED, /* the guest ended; hk_vm_wait returns */
};

/* How the guest ended: hk_vm_wait's value. */
enum hk_exit {
	HK_EXIT_POWEROFF, /* the guest powered off (ACPI S5) */
	HK_EXIT_RESET, /* the guest asked for a reset (reboot) */
	HK_EXIT_TRIPLE_FAULT, /* a vCPU shut down (triple fault) */
	HK_EXIT_INTERNAL_ERROR, /* KVM could not run a vCPU; registers logged */
	HK_EXIT_KILLED, /* hk_vm_kill, or hk_vm_stop without ACPI */
};

struct hk_config {
	unsigned cpus; /* 1 .. HK_MAX_CPUS */
	uint64_t mem_bytes; /* guest RAM; at least 32 MiB, 2 MiB granules */
	const char *kernel; /* a bzImage (required) */
	const char *initrd; /* may be NULL */
	const char *cmdline; /* may be NULL */
	bool acpi; /* build ACPI tables (and the power button) */
	bool no_mptable; /* leave out the MP table (hyperkit's -Y) */
	bool rtc_utc; /* the RTC keeps UTC, not the host's local time (-u) */
	bool has_uuid;
	/* The VM's identity (RFC 4122 byte order), the SMBIOS system UUID;
	 * without has_uuid, one derived from the host name. */
	uint8_t uuid[16];
	/*
	 * The kernel inside the bzImage (an ELF vmlinux compressed with
	 * gzip, xz or zstd) is unpacked by the library and entered directly,
	 * which spares the guest its decompressor on every boot. With
	 * HK_UNPACK_CACHE the unpacked copy is kept in kernel_cache (NULL:
	 * $XDG_CACHE_HOME/hyperkit, else ~/.cache/hyperkit) and read from
	 * there next time; HK_UNPACK_MEMORY unpacks on every boot;
	 * HK_UNPACK_GUEST leaves it to the guest, as a boot loader does.
	 * Any kernel the library cannot unpack is booted the usual way.
	 */
	enum hk_unpack {
		HK_UNPACK_CACHE,
		HK_UNPACK_MEMORY,
		HK_UNPACK_GUEST
	} kernel_unpack;
	const char *kernel_cache;
	struct logger log; /* where errors and notices go */
	/* Called on every state change; may be NULL. */
	void (*on_state)(void *opaque, enum hk_state state);
	void *opaque;
};

/*
 * Create a VM: open /dev/kvm, make the VM, its memory and interrupt
 * controller, and load the kernel, initrd and tables. Devices and serial
 * ports are added afterwards. Returns 0 and *out, or -errno.
 */
int hk_vm_new(const struct hk_config *cfg, struct hk_vm **out);

/* Add a device from hyperkit's `SLOT[:FUNC],EMULATION[,CONF]`; before
 * hk_vm_start. -EINVAL for bad syntax or an unknown emulation. */
int hk_vm_add_device(struct hk_vm *vm, const char *spec);

/* Add an 8250 UART from hyperkit's `com1|com2,stdio|autopty|PATH`
 * (before hk_vm_start). PATH: a tty or character device is used both
 * ways; anything else is a file the guest's output is written to. */
int hk_vm_add_serial(struct hk_vm *vm, const char *spec);

/* The terminal a serial port (0: COM1, 1: COM2) is connected to, e.g.
 * the pty made for autopty; NULL if none. Owned by the VM. */
const char *hk_vm_serial_path(struct hk_vm *vm, unsigned port);

/* Start the vCPU and event threads; returns once they run. */
int hk_vm_start(struct hk_vm *vm);

/* Wait until the guest has ended and every thread is joined; returns an
 * enum hk_exit, or -errno if the VM was never started. */
int hk_vm_wait(struct hk_vm *vm);

/* Ask the guest to stop: with ACPI, press the power button (the guest
 * decides); without, the same as hk_vm_kill. */
void hk_vm_stop(struct hk_vm *vm);
/* End the VM now (HK_EXIT_KILLED unless it had already ended). */
void hk_vm_kill(struct hk_vm *vm);

/* Park every vCPU / let them run again. 0, or -EINVAL if not running. */
int hk_vm_pause(struct hk_vm *vm);
int hk_vm_resume(struct hk_vm *vm);

/* Release everything; the VM must not be running (hk_vm_wait first, or
 * never started). NULL does nothing. */
void hk_vm_free(struct hk_vm *vm);

/* The name of the i-th `-s` emulation ("virtio-blk"), or NULL past the
 * last: for a command's help text. */
const char *hk_emulation_name(size_t i);

/* A name for an exit reason: "poweroff", "reset", ... */
const char *hk_exit_name(int reason);

#endif
