/* SPDX-License-Identifier: MIT */
/*
 * The modern virtio 1.x PCI transport, shared by every virtio device
 * model (virtio_blk.c, virtio_rnd.c, virtio_console.c ...).
 *
 * A device model embeds a struct hk_virtio, fills in its ops, queue count
 * and config space, and calls hk_virtio_attach. The transport presents
 * vendor 0x1af4, device 0x1040 + type, one 64-bit memory BAR holding the
 * common, ISR, device and notify structures and the MSI-X table and PBA,
 * and the matching capabilities. It negotiates features (VERSION_1 is
 * required), runs the status machine, enables and resets queues, routes
 * each queue's notifications through an eventfd registered with
 * hk_ioeventfd (so they go straight to the event thread), and raises
 * MSI-X vectors with hk_msi_* (INTx when MSI-X is off).
 *
 * Threading: BAR accesses run on vCPU threads, queue callbacks on the
 * event thread; both hold vd->lock while they run, so a device's ops are
 * always called with the lock held and must not take it again.
 */
#ifndef HYPERKIT_VIRTIO_PCI_H
#define HYPERKIT_VIRTIO_PCI_H

#include <pthread.h>
#include <stdint.h>

#include "platform.h"
#include "virtqueue.h"

#define HK_VIRTIO_VENDOR 0x1af4
#define HK_VIRTIO_MAX_QUEUES 8
#define HK_VIRTIO_CFG_MAX 256 /* bytes of device config space */

/* Device types (virtio 1.x, 5). */
#define HK_VIRTIO_ID_NET 1
#define HK_VIRTIO_ID_BLOCK 2
#define HK_VIRTIO_ID_CONSOLE 3
#define HK_VIRTIO_ID_RNG 4
#define HK_VIRTIO_ID_9P 9
#define HK_VIRTIO_ID_VSOCK 19

/* Device status bits. */
#define HK_VIRTIO_S_ACKNOWLEDGE 1u
#define HK_VIRTIO_S_DRIVER 2u
#define HK_VIRTIO_S_DRIVER_OK 4u
#define HK_VIRTIO_S_FEATURES_OK 8u
#define HK_VIRTIO_S_NEEDS_RESET 0x40u
#define HK_VIRTIO_S_FAILED 0x80u

/* BAR 0 layout. */
#define HK_VIRTIO_BAR_SIZE 0x8000u
#define HK_VIRTIO_COMMON_OFF 0x0000u
#define HK_VIRTIO_ISR_OFF 0x1000u
#define HK_VIRTIO_DEVCFG_OFF 0x2000u
#define HK_VIRTIO_NOTIFY_OFF 0x3000u
#define HK_VIRTIO_NOTIFY_MULT 4u
#define HK_VIRTIO_MSIX_TABLE_OFF 0x4000u
#define HK_VIRTIO_MSIX_PBA_OFF 0x5000u
#define HK_VIRTIO_NO_VECTOR 0xffffu

struct hk_virtio;

struct hk_virtio_ops {
	/* Queue q has buffers (event thread). Pop, serve, push, then call
	 * hk_virtio_queue_done. */
	void (*queue_notify)(struct hk_virtio *vd, unsigned q);
	/* The driver reset the device: drop in-flight state. Optional. */
	void (*reset)(struct hk_virtio *vd);
	/* The driver wrote device config bytes (already stored in
	 * vd->config). Optional: without it, config space is read-only. */
	void (*config_write)(struct hk_virtio *vd, unsigned off, unsigned size);
	/* DRIVER_OK was set: the device may start (e.g. fill rx queues). */
	void (*driver_ok)(struct hk_virtio *vd);
};

struct hk_virtio_msix {
	uint64_t addr;
	uint32_t data;
	uint32_t ctrl; /* bit 0: masked */
	bool pending;
	bool dirty; /* addr/data changed since the route was set */
	struct hk_msi msi;
};

/* What a queue's eventfd callback needs to find its queue. */
struct hk_virtio_qref {
	struct hk_virtio *vd;
	unsigned q;
};

struct hk_virtio {
	struct hk_pci_dev pci; /* first: the bus hands it back */
	pthread_mutex_t lock;
	const struct hk_virtio_ops *ops;
	void *opaque; /* for the device model */
	struct logger *log;
	struct ratelimit rl;
	char name[16];

	uint64_t features; /* offered (device-specific + transport) */
	uint64_t driver_features;
	uint32_t dfselect, gfselect;
	uint8_t status;
	uint8_t config_generation;
	uint8_t isr;
	uint16_t config_vector;
	uint16_t queue_select;

	unsigned nq;
	struct hk_vq vq[HK_VIRTIO_MAX_QUEUES];
	uint16_t queue_max[HK_VIRTIO_MAX_QUEUES];
	uint16_t queue_vector[HK_VIRTIO_MAX_QUEUES];
	int notify_fd[HK_VIRTIO_MAX_QUEUES];
	struct hk_virtio_qref qref[HK_VIRTIO_MAX_QUEUES];
	void (*release)(struct hk_virtio *vd);
	uint64_t notify_gpa; /* where ioeventfds are registered, 0: none */

	unsigned n_vectors; /* nq + 1 */
	bool msix_enabled, msix_masked;
	struct hk_virtio_msix msix[HK_VIRTIO_MAX_QUEUES + 1];
	unsigned msix_cap; /* offset of the MSI-X capability */

	uint8_t config[HK_VIRTIO_CFG_MAX];
	unsigned config_len;
};

/*
 * Prepare vd: PCI header for device type `type` at slot/func, nq queues
 * of at most qmax entries each, device features (the transport adds
 * VERSION_1, EVENT_IDX and INDIRECT_DESC), config_len bytes of config
 * space (fill vd->config afterwards). Returns 0 or -errno.
 */
int hk_virtio_init(struct hk_virtio *vd, struct hk_vm *vm, unsigned slot,
		   unsigned func, unsigned type, const char *name, unsigned nq,
		   uint16_t qmax, uint64_t features, unsigned config_len,
		   const struct hk_virtio_ops *ops, void *opaque);

/* Put vd on the PCI bus and hook its notifications into the event loop.
 * The bus calls release(vd) when the VM goes away (after
 * hk_virtio_release). Returns 0 or -errno. */
int hk_virtio_attach(struct hk_virtio *vd,
		     void (*release)(struct hk_virtio *vd));

/* Close the eventfds and MSI routes (not the memory of vd). */
void hk_virtio_release(struct hk_virtio *vd);

/* After serving queue q: rearm notifications and raise its vector if the
 * driver wants an interrupt. Returns true if buffers arrived meanwhile
 * (serve again). A broken queue sets NEEDS_RESET and raises the config
 * vector. Lock held. */
bool hk_virtio_queue_done(struct hk_virtio *vd, unsigned q);

/* The config space changed under the driver: bump the generation and
 * raise the config vector. Lock held. */
void hk_virtio_config_changed(struct hk_virtio *vd);

/* True if feature bit was negotiated. */
static inline bool hk_virtio_has(const struct hk_virtio *vd, unsigned bit)
{
	return (vd->driver_features >> bit) & 1;
}

/* The transport's BAR handler and notification path, for tests: the
 * same code a vCPU's access and an ioeventfd wake-up run. */
void hk_virtio_bar_io(void *opaque, uint64_t off, unsigned size, bool write,
		      uint64_t *val);
void hk_virtio_notify(struct hk_virtio *vd, unsigned q);

/* The `-s` emulations built on this transport. Return 0 or -errno. */
int hk_virtio_blk_create(struct hk_vm *vm, unsigned slot, unsigned func,
			 const char *conf);
int hk_virtio_rnd_create(struct hk_vm *vm, unsigned slot, unsigned func,
			 const char *conf);
int hk_virtio_console_create(struct hk_vm *vm, unsigned slot, unsigned func,
			     const char *conf);

#endif
