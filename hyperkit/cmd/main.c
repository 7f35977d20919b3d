// SPDX-License-Identifier: MIT
/*
 * hyperkit: run a Linux VM on KVM with hyperkit's command line.
 *
 * The command parses options into a struct hk_config, creates the VM,
 * adds its devices and serial ports, starts it and waits. A signal thread
 * turns SIGUSR1/SIGUSR2 into pause/resume and SIGINT/SIGTERM/SIGHUP into a
 * stop (the ACPI power button with -A; a second signal, or none without
 * -A, ends the VM at once). Exit status: 0 when the guest powered off or
 * reset, 1 on an error, 2 on bad usage, 3 on a triple fault, 4 on a KVM
 * internal error, 5 when killed by a signal.
 *
 * Reboot: a guest's reset ends the VM (exit status 0, as hyperkit), or,
 * with --reboot=restart, the VM is freed and built again from the same
 * options, as a machine that resets boots its kernel afresh: the library
 * reports the reset as the exit reason and leaves the policy here. The
 * pidfile stays for the whole run; a stop signal ends the loop.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/log.h"
#include "hyperkit/hyperkit.h"

#define EXIT_USAGE 2

static const char usage_text[] =
	"usage: hyperkit [-AuYHPw] [-c vcpus] [-m mem] [-s slot,emulation[,conf]]...\n"
	"                [-l comN,backend]... [-U uuid] [-F pidfile]\n"
	"                [--reboot=exit|restart]\n"
	"                -f kexec,KERNEL[,INITRD][,\"CMDLINE\"]\n"
	"\n"
	"Run a Linux virtual machine on KVM (/dev/kvm), booting KERNEL (a\n"
	"bzImage) directly, hyperkit style.\n"
	"\n"
	"  -A            generate ACPI tables (lets the guest power itself off;\n"
	"                SIGTERM then presses the power button)\n"
	"  -c N          number of vCPUs (1-64; default 1)\n"
	"  -m SIZE       guest memory: a number with an optional K, M, G or T\n"
	"                suffix; no suffix means MB (default 256M)\n"
	"  -s SLOT[:FUNC],EMULATION[,CONF]\n"
	"                add a PCI device in slot 0-31 (function 0-7); the\n"
	"                emulations are listed at the end\n"
	"  -l com1|com2,BACKEND\n"
	"                add a 16550 UART at COM1 (0x3f8, IRQ 4) or COM2 (0x2f8,\n"
	"                IRQ 3). BACKEND: stdio (a raw terminal if stdin is a\n"
	"                tty), autopty (a new pty; its path is printed),\n"
	"                autopty=LINK (the same, with a symbolic link LINK to\n"
	"                it, removed at exit), or a\n"
	"                PATH: a tty or character device is used both ways, any\n"
	"                other path is a file that receives the output\n"
	"  -f kexec,KERNEL[,INITRD][,\"CMDLINE\"]\n"
	"                the kernel to boot, its initrd (may be empty) and\n"
	"                command line (the rest of the argument, commas and all)\n"
	"  -U UUID       the VM's UUID, in the SMBIOS tables (the guest's\n"
	"                /sys/class/dmi/id/product_uuid); without -U, one\n"
	"                derived from the host name\n"
	"  -F PIDFILE    write the process id to PIDFILE; removed at exit\n"
	"  -u            the CMOS RTC keeps UTC (default: the host's local\n"
	"                time, as hyperkit)\n"
	"  --reboot=exit|restart\n"
	"                what a guest's reset (reboot) does: exit, the default,\n"
	"                ends hyperkit with status 0; restart boots the same\n"
	"                configuration again (the VM and its devices are made\n"
	"                anew: an autopty gets a new pty, a file backend is\n"
	"                rewritten, the RTC's guest-set time is forgotten)\n"
	"  --kernel-cache=DIR|none|guest\n"
	"                the kernel inside the bzImage is unpacked by hyperkit\n"
	"                and entered directly (the guest skips its own\n"
	"                decompressor); the unpacked copy is kept in DIR\n"
	"                (default $XDG_CACHE_HOME/hyperkit or\n"
	"                ~/.cache/hyperkit) for the next boot; none unpacks\n"
	"                on every boot; guest leaves it to the guest\n"
	"  -Y            do not build an MP table\n"
	"  -H, -P, -w    accepted for compatibility; no effect on KVM (idle\n"
	"                vCPUs sleep in the kernel, unknown MSRs fault)\n"
	"  -v            more log messages (repeat for more)\n"
	"  -h, --help    this text\n"
	"\n"
	"Signals: SIGUSR1 pauses the vCPUs, SIGUSR2 resumes them; SIGINT,\n"
	"SIGTERM or SIGHUP stop the VM (with -A, the first presses the power\n"
	"button and a second ends it).\n"
	"\n"
	"Exit status: 0 the guest powered off or reset (with --reboot=exit),\n"
	"1 error, 2 bad usage, 3 triple fault, 4 KVM internal error, 5 stopped\n"
	"by a signal. On a triple fault or internal error the vCPU registers\n"
	"are printed.\n";

static void usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "hyperkit: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'hyperkit --help'.\n");
	exit(EXIT_USAGE);
}

/* "512", "512M", "2G", "1048576K": bytes; no suffix is MB. */
static int parse_mem(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 20;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (end == s || errno || *s == '-')
		return -EINVAL;
	if (*end) {
		switch (*end) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		case 't': case 'T': shift = 40; break;
		default: return -EINVAL;
		}
		if (end[1] && strcasecmp(end + 1, "B") != 0 &&
		    strcasecmp(end + 1, "iB") != 0)
			return -EINVAL;
	}
	if (v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_uuid(const char *s, uint8_t out[16])
{
	unsigned n = 0;

	for (; *s && n < 32; s++) {
		int d;

		if (*s == '-')
			continue;
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			return -EINVAL;
		if (n % 2 == 0)
			out[n / 2] = (uint8_t)(d << 4);
		else
			out[n / 2] |= (uint8_t)d;
		n++;
	}
	return n == 32 && !*s ? 0 : -EINVAL;
}

/* kexec,KERNEL[,INITRD][,CMDLINE]: the cmdline keeps its commas. */
static void parse_firmware(char *arg, struct hk_config *cfg)
{
	char *kernel, *initrd = NULL, *cmdline = NULL, *p;
	size_t n;

	if (strncmp(arg, "kexec,", 6) != 0)
		usage_error("-f %s: only kexec,KERNEL[,INITRD][,CMDLINE] is "
			    "supported", arg);
	kernel = arg + 6;
	p = strchr(kernel, ',');
	if (p) {
		*p++ = '\0';
		initrd = p;
		p = strchr(initrd, ',');
		if (p) {
			*p++ = '\0';
			cmdline = p;
		}
	}
	if (!*kernel)
		usage_error("-f %s: no kernel", "kexec,");
	if (initrd && !*initrd)
		initrd = NULL;
	/* A quoted command line loses its quotes, as in hyperkit. */
	if (cmdline && (n = strlen(cmdline)) >= 2 && cmdline[0] == '"' &&
	    cmdline[n - 1] == '"') {
		cmdline[n - 1] = '\0';
		cmdline++;
	}
	cfg->kernel = kernel;
	cfg->initrd = initrd;
	cfg->cmdline = cmdline;
}

/* The signal thread's view of the VM, which a restart replaces: vm is
 * NULL between two VMs, and lock keeps it from being freed under a
 * signal's action. */
struct sigctx {
	pthread_mutex_t lock;
	struct hk_vm *vm;
	sigset_t set;
	unsigned stops; /* stop signals so far (under lock) */
};

static void *signal_main(void *arg)
{
	struct sigctx *sc = arg;
	int sig;

	for (;;) {
		if (sigwait(&sc->set, &sig) != 0)
			continue;
		pthread_mutex_lock(&sc->lock);
		switch (sig) {
		case SIGUSR1:
			if (sc->vm)
				hk_vm_pause(sc->vm);
			break;
		case SIGUSR2:
			if (sc->vm)
				hk_vm_resume(sc->vm);
			break;
		default:
			if (!sc->vm)
				sc->stops++; /* no VM: the loop sees it */
			else if (sc->stops++ == 0)
				hk_vm_stop(sc->vm);
			else
				hk_vm_kill(sc->vm);
			break;
		}
		pthread_mutex_unlock(&sc->lock);
	}
	return NULL;
}

/* Hand vm to the signal thread (NULL: take it back). false if a stop
 * signal came while there was none: the VM is not to run. */
static bool sig_set_vm(struct sigctx *sc, struct hk_vm *vm)
{
	bool ok;

	pthread_mutex_lock(&sc->lock);
	ok = !vm || sc->stops == 0;
	sc->vm = ok ? vm : NULL;
	pthread_mutex_unlock(&sc->lock);
	return ok;
}

static bool sig_stopped(struct sigctx *sc)
{
	bool stopped;

	pthread_mutex_lock(&sc->lock);
	stopped = sc->stops > 0;
	pthread_mutex_unlock(&sc->lock);
	return stopped;
}

struct run_opts {
	const char **devices, **serials;
	unsigned n_dev, n_ser;
};

/* Build the VM from the options, run it until it ends and free it.
 * Returns its hk_exit, or -1 if it could not be built or started (the
 * library said why). */
static int run_once(const struct hk_config *cfg, const struct run_opts *o,
		    struct sigctx *sc)
{
	struct hk_vm *vm;
	unsigned i;
	int reason;

	if (hk_vm_new(cfg, &vm))
		return -1;
	for (i = 0; i < o->n_dev; i++)
		if (hk_vm_add_device(vm, o->devices[i]))
			goto out_free;
	for (i = 0; i < o->n_ser; i++) {
		const char *path;

		if (hk_vm_add_serial(vm, o->serials[i]))
			goto out_free;
		path = hk_vm_serial_path(vm, o->serials[i][3] == '2');
		if (path && strncmp(o->serials[i] + 5, "autopty", 7) == 0)
			fprintf(stderr, "hyperkit: COM%c connected to %s\n",
				o->serials[i][3], path);
	}
	if (!sig_set_vm(sc, vm)) {
		hk_vm_free(vm);
		return HK_EXIT_KILLED;
	}
	if (hk_vm_start(vm)) {
		sig_set_vm(sc, NULL);
		goto out_free;
	}
	reason = hk_vm_wait(vm);
	sig_set_vm(sc, NULL);
	hk_vm_free(vm);
	return reason;
out_free:
	hk_vm_free(vm);
	return -1;
}

static int exit_status(int reason)
{
	switch (reason) {
	case HK_EXIT_POWEROFF:
	case HK_EXIT_RESET:
		return 0;
	case HK_EXIT_TRIPLE_FAULT:
		return 3;
	case HK_EXIT_INTERNAL_ERROR:
		return 4;
	case HK_EXIT_KILLED:
		return 5;
	}
	return 1;
}

/* Devices keep a descriptor per connection (virtio-sock up to 1024,
 * vpnkit's flows): take the hard limit, as servers do. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	enum { OPT_REBOOT = 0x100, OPT_KERNEL_CACHE };
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "reboot", required_argument, NULL, OPT_REBOOT },
		{ "kernel-cache", required_argument, NULL, OPT_KERNEL_CACHE },
		{ NULL, 0, NULL, 0 },
	};
	struct hk_config cfg = {
		.cpus = 1,
		.mem_bytes = 256ull << 20,
		.log = { log_to_stderr, "hyperkit", LOG_LEVEL_WARN },
	};
	const char *devices[64], *serials[2], *pidfile = NULL;
	unsigned n_dev = 0, n_ser = 0, i;
	struct sigctx sc = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct run_opts ro;
	pthread_t sig_thread;
	char *end;
	int opt, reason;
	bool have_f = false, restart = false;

	while ((opt = getopt_long(argc, argv, "Ac:m:s:l:f:U:F:uYHPwvh",
				  longopts, NULL)) != -1) {
		switch (opt) {
		case 'A':
			cfg.acpi = true;
			break;
		case 'c': {
			unsigned long v;

			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || v < 1 ||
			    v > HK_MAX_CPUS)
				usage_error("-c %s: a number of vCPUs from 1 to 64",
					    optarg);
			cfg.cpus = (unsigned)v;
			break;
		}
		case 'm':
			if (parse_mem(optarg, &cfg.mem_bytes))
				usage_error("-m %s: a size such as 512, 512M or 2G",
					    optarg);
			break;
		case 's':
			if (n_dev == sizeof(devices) / sizeof(devices[0]))
				usage_error("-s %s: too many devices", optarg);
			devices[n_dev++] = optarg;
			break;
		case 'l':
			if (n_ser == 2)
				usage_error("-l %s: at most two COM ports", optarg);
			serials[n_ser++] = optarg;
			break;
		case 'f':
			parse_firmware(optarg, &cfg);
			have_f = true;
			break;
		case 'U':
			if (parse_uuid(optarg, cfg.uuid))
				usage_error("-U %s: not a UUID", optarg);
			cfg.has_uuid = true;
			break;
		case 'F':
			pidfile = optarg;
			break;
		case 'u':
			cfg.rtc_utc = true;
			break;
		case 'Y':
			cfg.no_mptable = true;
			break;
		case 'H':
		case 'P':
		case 'w':
			break;
		case OPT_KERNEL_CACHE:
			if (strcmp(optarg, "none") == 0) {
				cfg.kernel_unpack = HK_UNPACK_MEMORY;
			} else if (strcmp(optarg, "guest") == 0) {
				cfg.kernel_unpack = HK_UNPACK_GUEST;
			} else if (*optarg) {
				cfg.kernel_unpack = HK_UNPACK_CACHE;
				cfg.kernel_cache = optarg;
			} else {
				usage_error("--kernel-cache: empty");
			}
			break;
		case OPT_REBOOT:
			if (strcmp(optarg, "exit") == 0)
				restart = false;
			else if (strcmp(optarg, "restart") == 0)
				restart = true;
			else
				usage_error("--reboot=%s: exit or restart", optarg);
			break;
		case 'v':
			if (cfg.log.level < LOG_LEVEL_TRACE)
				cfg.log.level++;
			break;
		case 'h':
			fputs(usage_text, stdout);
			fputs("\nEmulations for -s:", stdout);
			for (i = 0; hk_emulation_name(i); i++)
				printf(" %s", hk_emulation_name(i));
			putchar('\n');
			return 0;
		default:
			fprintf(stderr, "Try 'hyperkit --help'.\n");
			return EXIT_USAGE;
		}
	}
	if (optind < argc)
		usage_error("unexpected argument: %s", argv[optind]);
	if (!have_f)
		usage_error("%s-f kexec,KERNEL[,INITRD][,CMDLINE] is required",
			    "");
	if (cfg.mem_bytes % (2u << 20))
		cfg.mem_bytes = (cfg.mem_bytes + (2u << 20) - 1) &
				~(uint64_t)((2u << 20) - 1);

	/* Our threads and the library's inherit this mask; only the signal
	 * thread takes these signals. */
	sigemptyset(&sc.set);
	sigaddset(&sc.set, SIGUSR1);
	sigaddset(&sc.set, SIGUSR2);
	sigaddset(&sc.set, SIGINT);
	sigaddset(&sc.set, SIGTERM);
	sigaddset(&sc.set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sc.set, NULL);

	if (pidfile) {
		FILE *f = fopen(pidfile, "w");

		if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f)) {
			fprintf(stderr, "hyperkit: %s: %s\n", pidfile,
				strerror(errno));
			return 1;
		}
	}
	raise_fd_limit();
	if (pthread_create(&sig_thread, NULL, signal_main, &sc)) {
		fprintf(stderr, "hyperkit: cannot start the signal thread\n");
		reason = -1;
		goto out_pidfile;
	}
	pthread_detach(sig_thread);
	ro = (struct run_opts){ devices, serials, n_dev, n_ser };
	for (;;) {
		reason = run_once(&cfg, &ro, &sc);
		if (reason != HK_EXIT_RESET || !restart || sig_stopped(&sc))
			break;
		logger_printf(&cfg.log, LOG_LEVEL_INFO,
			      "the guest reset: booting it again");
	}
out_pidfile:
	if (pidfile)
		unlink(pidfile);
	if (reason < 0)
		return 1;
	if (reason != HK_EXIT_POWEROFF && reason != HK_EXIT_RESET)
		fprintf(stderr, "hyperkit: guest ended: %s\n",
			hk_exit_name(reason));
	return exit_status(reason);
}
