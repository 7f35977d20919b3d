// SPDX-License-Identifier: MIT
/*
 * The modern virtio 1.x PCI transport.
 *
 * Theory of operation. Everything lives in BAR 0 (64-bit memory, 32 KiB):
 *
 *   0x0000  common configuration (features, status, queue setup)
 *   0x1000  ISR status (read clears; used only without MSI-X)
 *   0x2000  device-specific configuration
 *   0x3000  notifications: queue q at 0x3000 + 4 q
 *   0x4000  MSI-X table, one vector for config changes plus one per queue
 *   0x5000  MSI-X pending bits
 *
 * and the PCI capability list points the driver at each part. A queue
 * notification is a 16-bit write that KVM turns into an eventfd signal
 * (hk_ioeventfd), so the vCPU does not leave the kernel; the event thread
 * wakes, and serves the queue under the device lock. If the ioeventfd is
 * not registered (the BAR is moving, or the core refused), the write
 * reaches hk_virtio_bar_io, which signals the same eventfd by hand.
 *
 * Interrupts: a vector is fired through its irqfd (hk_msi_fire), set up
 * lazily at the first use after the guest wrote its address and data; a
 * masked vector (per entry or function-wide) only sets its pending bit
 * and fires when unmasked, as the PCI spec asks.
 *
 * Guest errors (bad queue setup, features we did not offer, a broken
 * ring) set DEVICE_NEEDS_RESET or refuse FEATURES_OK; they never stop
 * other devices.
 */
#include "virtio_pci.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/endian.h"
#include "pci.h"

#define COMMON_LEN 0x38u

/* virtio_pci_cap.cfg_type */
enum {
	CAP_COMMON = 1,
	CAP_NOTIFY = 2,
	CAP_ISR = 3,
	CAP_DEVICE = 4,
};

static void add_vcap(struct hk_virtio *vd, uint8_t type, uint32_t off,
		     uint32_t len, bool notify)
{
	uint8_t cap[20] = { HK_PCI_CAP_ID_VNDR, 0, notify ? 20 : 16, type,
			    0 /* bar */ };

	store_le32(cap + 8, off);
	store_le32(cap + 12, len);
	if (notify)
		store_le32(cap + 16, HK_VIRTIO_NOTIFY_MULT);
	(void)hk_pci_add_cap(&vd->pci, cap, notify ? 20 : 16);
}

static uint32_t class_of(unsigned type)
{
	switch (type) {
	case HK_VIRTIO_ID_BLOCK:
		return 0x018000; /* mass storage, other */
	case HK_VIRTIO_ID_NET:
		return 0x020000;
	case HK_VIRTIO_ID_CONSOLE:
		return 0x078000; /* communication, other */
	default:
		return 0xff0000;
	}
}

int hk_virtio_init(struct hk_virtio *vd, struct hk_vm *vm, unsigned slot,
		   unsigned func, unsigned type, const char *name, unsigned nq,
		   uint16_t qmax, uint64_t features, unsigned config_len,
		   const struct hk_virtio_ops *ops, void *opaque)
{
	uint8_t msix[12] = { HK_PCI_CAP_ID_MSIX };
	char qname[24];
	int r;

	if (nq == 0 || nq > HK_VIRTIO_MAX_QUEUES || qmax == 0 ||
	    qmax > HK_VQ_MAX_SIZE || (qmax & (qmax - 1)) ||
	    config_len > HK_VIRTIO_CFG_MAX)
		return -EINVAL;
	memset(vd, 0, sizeof(*vd));
	r = pthread_mutex_init(&vd->lock, NULL);
	if (r)
		return -r;
	vd->ops = ops;
	vd->opaque = opaque;
	vd->log = hk_vm_log(vm);
	vd->rl = (struct ratelimit)RATELIMIT_DEFAULT;
	snprintf(vd->name, sizeof(vd->name), "%s", name);
	vd->features = features | 1ull << HK_VIRTIO_F_VERSION_1 |
		       1ull << HK_VIRTIO_F_EVENT_IDX |
		       1ull << HK_VIRTIO_F_INDIRECT_DESC;
	vd->nq = nq;
	vd->n_vectors = nq + 1;
	vd->config_len = config_len;
	vd->config_vector = HK_VIRTIO_NO_VECTOR;
	for (unsigned q = 0; q < nq; q++) {
		snprintf(qname, sizeof(qname), "%s.q%u", vd->name, q);
		hk_vq_init(&vd->vq[q], vm, vd->log, qname);
		vd->vq[q].size = qmax;
		vd->queue_max[q] = qmax;
		vd->queue_vector[q] = HK_VIRTIO_NO_VECTOR;
		vd->notify_fd[q] = -1;
		vd->qref[q] = (struct hk_virtio_qref){ vd, q };
	}
	for (unsigned v = 0; v < vd->n_vectors; v++) {
		vd->msix[v].ctrl = 1; /* masked at reset */
		vd->msix[v].msi.gsi = -1;
		vd->msix[v].msi.efd = -1;
	}

	vd->pci.vm = vm;
	vd->pci.slot = slot;
	vd->pci.func = func;
	vd->pci.opaque = vd;
	hk_pci_init_header(&vd->pci, HK_VIRTIO_VENDOR,
			   (uint16_t)(0x1040 + type), class_of(type),
			   HK_VIRTIO_VENDOR, (uint16_t)(0x1040 + type));
	vd->pci.cfg[HK_PCI_REVISION] = 1; /* modern-only device */
	vd->pci.cfg[HK_PCI_INTERRUPT_PIN] = 0; /* MSI-X only */
	vd->pci.bar[0] = (struct hk_pci_bar){ .size = HK_VIRTIO_BAR_SIZE,
					      .mem64 = true,
					      .fn = hk_virtio_bar_io };

	store_le16(msix + 2, (uint16_t)(vd->n_vectors - 1));
	store_le32(msix + 4, HK_VIRTIO_MSIX_TABLE_OFF); /* BIR 0 */
	store_le32(msix + 8, HK_VIRTIO_MSIX_PBA_OFF);
	r = hk_pci_add_cap(&vd->pci, msix, sizeof(msix));
	if (r < 0)
		return r;
	vd->msix_cap = (unsigned)r;
	add_vcap(vd, CAP_COMMON, HK_VIRTIO_COMMON_OFF, COMMON_LEN, false);
	add_vcap(vd, CAP_NOTIFY, HK_VIRTIO_NOTIFY_OFF,
		 HK_VIRTIO_NOTIFY_MULT * nq, true);
	add_vcap(vd, CAP_ISR, HK_VIRTIO_ISR_OFF, 1, false);
	if (config_len)
		add_vcap(vd, CAP_DEVICE, HK_VIRTIO_DEVCFG_OFF, config_len,
			 false);
	return 0;
}

/* ---------------------------------------------------------------- interrupts */

static void vector_deliver(struct hk_virtio *vd, unsigned v)
{
	struct hk_virtio_msix *e = &vd->msix[v];
	int r;

	if (vd->msix_masked || (e->ctrl & 1)) {
		e->pending = true;
		return;
	}
	e->pending = false;
	if (e->dirty || e->msi.gsi < 0) {
		r = hk_msi_setup(vd->pci.vm, &e->msi, e->addr, e->data);
		if (r < 0) {
			logger_printf_limited(vd->log, &vd->rl, LOG_LEVEL_WARN,
					      "%s: MSI-X vector %u: %d",
					      vd->name, v, r);
			return;
		}
		e->dirty = false;
	}
	hk_msi_fire(&e->msi);
}

/* Raise vector v (HK_VIRTIO_NO_VECTOR: none) for isr_bit. */
static void interrupt(struct hk_virtio *vd, uint16_t v, uint8_t isr_bit)
{
	if (!vd->msix_enabled) {
		vd->isr |= isr_bit;
		if (vd->pci.irq_gsi)
			hk_irq_set(vd->pci.vm, vd->pci.irq_gsi, true);
		return;
	}
	if (v < vd->n_vectors)
		vector_deliver(vd, v);
}

void hk_virtio_config_changed(struct hk_virtio *vd)
{
	vd->config_generation++;
	if (vd->status & HK_VIRTIO_S_DRIVER_OK)
		interrupt(vd, vd->config_vector, 2);
}

static void needs_reset(struct hk_virtio *vd)
{
	if (vd->status & HK_VIRTIO_S_NEEDS_RESET)
		return;
	vd->status |= HK_VIRTIO_S_NEEDS_RESET;
	hk_virtio_config_changed(vd);
}

bool hk_virtio_queue_done(struct hk_virtio *vd, unsigned q)
{
	struct hk_vq *vq = &vd->vq[q];

	if (vq->broken) {
		needs_reset(vd);
		return false;
	}
	if (hk_vq_should_interrupt(vq))
		interrupt(vd, vd->queue_vector[q], 1);
	return hk_vq_rearm(vq);
}

/* ---------------------------------------------------------------- notify */

void hk_virtio_notify(struct hk_virtio *vd, unsigned q)
{
	if (q >= vd->nq)
		return;
	pthread_mutex_lock(&vd->lock);
	if ((vd->status & HK_VIRTIO_S_DRIVER_OK) && vd->vq[q].enabled &&
	    vd->ops->queue_notify)
		vd->ops->queue_notify(vd, q);
	pthread_mutex_unlock(&vd->lock);
}

static void notify_cb(void *opaque, uint32_t events)
{
	struct hk_virtio_qref *ref = opaque;
	uint64_t n;

	(void)events;
	if (read(ref->vd->notify_fd[ref->q], &n, sizeof(n)) != sizeof(n))
		return;
	hk_virtio_notify(ref->vd, ref->q);
}

/* Register the ioeventfds where BAR 0 decodes now (lock held). */
static void ioeventfds_update(struct hk_virtio *vd)
{
	uint64_t bar = hk_pci_bar_mapped(&vd->pci, 0);
	uint64_t want = bar ? bar + HK_VIRTIO_NOTIFY_OFF : 0;

	if (want == vd->notify_gpa)
		return;
	for (unsigned q = 0; q < vd->nq; q++) {
		if (vd->notify_fd[q] < 0)
			continue;
		if (vd->notify_gpa)
			hk_ioeventfd(vd->pci.vm, vd->notify_fd[q],
				     vd->notify_gpa + HK_VIRTIO_NOTIFY_MULT * q,
				     2, true);
		if (want && hk_ioeventfd(vd->pci.vm, vd->notify_fd[q],
					 want + HK_VIRTIO_NOTIFY_MULT * q, 2,
					 false) < 0)
			logger_printf_limited(vd->log, &vd->rl, LOG_LEVEL_WARN,
					      "%s: no ioeventfd for queue %u",
					      vd->name, q);
	}
	vd->notify_gpa = want;
}

/* ---------------------------------------------------------------- common cfg */

static void device_reset(struct hk_virtio *vd)
{
	for (unsigned q = 0; q < vd->nq; q++) {
		hk_vq_reset(&vd->vq[q]);
		vd->vq[q].size = vd->queue_max[q];
		vd->queue_vector[q] = HK_VIRTIO_NO_VECTOR;
	}
	vd->status = 0;
	vd->driver_features = 0;
	vd->dfselect = vd->gfselect = 0;
	vd->queue_select = 0;
	vd->config_vector = HK_VIRTIO_NO_VECTOR;
	vd->isr = 0;
	if (vd->pci.irq_gsi)
		hk_irq_set(vd->pci.vm, vd->pci.irq_gsi, false);
	if (vd->ops->reset)
		vd->ops->reset(vd);
}

static void common_snapshot(struct hk_virtio *vd, uint8_t *c)
{
	unsigned q = vd->queue_select;
	bool valid = q < vd->nq;
	const struct hk_vq *vq = valid ? &vd->vq[q] : NULL;

	memset(c, 0, COMMON_LEN);
	store_le32(c + 0x00, vd->dfselect);
	store_le32(c + 0x04,
		   vd->dfselect == 0 ? (uint32_t)vd->features :
		   vd->dfselect == 1 ? (uint32_t)(vd->features >> 32) :
				       0);
	store_le32(c + 0x08, vd->gfselect);
	store_le32(c + 0x0c,
		   vd->gfselect == 0 ? (uint32_t)vd->driver_features :
		   vd->gfselect == 1 ? (uint32_t)(vd->driver_features >> 32) :
				       0);
	store_le16(c + 0x10, vd->config_vector);
	store_le16(c + 0x12, (uint16_t)vd->nq);
	c[0x14] = vd->status;
	c[0x15] = vd->config_generation;
	store_le16(c + 0x16, vd->queue_select);
	if (!valid) {
		store_le16(c + 0x1a, HK_VIRTIO_NO_VECTOR);
		return;
	}
	store_le16(c + 0x18, vq->size);
	store_le16(c + 0x1a, vd->queue_vector[q]);
	store_le16(c + 0x1c, vq->enabled);
	store_le16(c + 0x1e, (uint16_t)q);
	store_le64(c + 0x20, vq->desc_gpa);
	store_le64(c + 0x28, vq->avail_gpa);
	store_le64(c + 0x30, vq->used_gpa);
}

static void set_status(struct hk_virtio *vd, uint8_t val)
{
	uint8_t old = vd->status;

	if (val == 0) {
		device_reset(vd);
		return;
	}
	if ((val & HK_VIRTIO_S_FEATURES_OK) &&
	    !(old & HK_VIRTIO_S_FEATURES_OK)) {
		bool ok = !(vd->driver_features & ~vd->features) &&
			  hk_virtio_has(vd, HK_VIRTIO_F_VERSION_1);

		if (!ok) {
			logger_printf_limited(
				vd->log, &vd->rl, LOG_LEVEL_WARN,
				"%s: driver features 0x%llx "
				"refused",
				vd->name,
				(unsigned long long)vd->driver_features);
			val &= (uint8_t)~HK_VIRTIO_S_FEATURES_OK;
		}
		for (unsigned q = 0; q < vd->nq; q++)
			vd->vq[q].event_idx =
				hk_virtio_has(vd, HK_VIRTIO_F_EVENT_IDX);
	}
	/* NEEDS_RESET is ours; the driver cannot clear it or set it. */
	vd->status = (uint8_t)((val & ~HK_VIRTIO_S_NEEDS_RESET) |
			       (old & HK_VIRTIO_S_NEEDS_RESET));
	if ((val & HK_VIRTIO_S_DRIVER_OK) && !(old & HK_VIRTIO_S_DRIVER_OK) &&
	    vd->ops->driver_ok)
		vd->ops->driver_ok(vd);
}

static void set_u64_half(uint64_t *p, unsigned half, uint32_t v)
{
	if (half)
		*p = (*p & 0xffffffffull) | (uint64_t)v << 32;
	else
		*p = (*p & ~0xffffffffull) | v;
}

static void common_write(struct hk_virtio *vd, unsigned off, unsigned size,
			 uint64_t val)
{
	unsigned q = vd->queue_select;
	struct hk_vq *vq = q < vd->nq ? &vd->vq[q] : NULL;
	bool features_locked = vd->status & HK_VIRTIO_S_FEATURES_OK;

	if (off >= 0x20 && off < COMMON_LEN && size == 8 && off % 8 == 0) {
		common_write(vd, off, 4, (uint32_t)val);
		common_write(vd, off + 4, 4, val >> 32);
		return;
	}
	switch (off) {
	case 0x00:
		if (size == 4)
			vd->dfselect = (uint32_t)val;
		return;
	case 0x08:
		if (size == 4)
			vd->gfselect = (uint32_t)val;
		return;
	case 0x0c:
		if (size == 4 && !features_locked && vd->gfselect < 2)
			set_u64_half(&vd->driver_features, vd->gfselect,
				     (uint32_t)val);
		return;
	case 0x10:
		if (size == 2)
			vd->config_vector = val < vd->n_vectors ?
						    (uint16_t)val :
						    HK_VIRTIO_NO_VECTOR;
		return;
	case 0x14:
		if (size == 1)
			set_status(vd, (uint8_t)val);
		return;
	case 0x16:
		if (size == 2)
			vd->queue_select = (uint16_t)val;
		return;
	default:
		break;
	}
	if (!vq)
		return;
	switch (off) {
	case 0x18:
		if (size == 2 && !vq->enabled)
			vq->size = val <= vd->queue_max[q] ? (uint16_t)val : 0;
		return;
	case 0x1a:
		if (size == 2)
			vd->queue_vector[q] = val < vd->n_vectors ?
						      (uint16_t)val :
						      HK_VIRTIO_NO_VECTOR;
		return;
	case 0x1c:
		if (size == 2 && val == 1 && !vq->enabled &&
		    hk_vq_enable(vq) < 0)
			needs_reset(vd);
		return;
	case 0x20:
	case 0x24:
	case 0x28:
	case 0x2c:
	case 0x30:
	case 0x34:
		if (size != 4 || vq->enabled)
			return;
		set_u64_half(off < 0x28 ? &vq->desc_gpa :
			     off < 0x30 ? &vq->avail_gpa :
					  &vq->used_gpa,
			     off % 8 == 4, (uint32_t)val);
		return;
	default:
		return; /* read-only or unknown: ignored */
	}
}

/* ---------------------------------------------------------------- MSI-X */

static uint64_t msix_table_read(struct hk_virtio *vd, unsigned off,
				unsigned size)
{
	unsigned v = off / 16, field = off % 16;
	const struct hk_virtio_msix *e;

	if (v >= vd->n_vectors || size != 4 || field % 4)
		return size == 4 ? 0xffffffffu : 0;
	e = &vd->msix[v];
	switch (field) {
	case 0:
		return (uint32_t)e->addr;
	case 4:
		return (uint32_t)(e->addr >> 32);
	case 8:
		return e->data;
	default:
		return e->ctrl;
	}
}

static void msix_table_write(struct hk_virtio *vd, unsigned off, unsigned size,
			     uint32_t val)
{
	unsigned v = off / 16, field = off % 16;
	struct hk_virtio_msix *e;

	if (v >= vd->n_vectors || size != 4 || field % 4)
		return;
	e = &vd->msix[v];
	switch (field) {
	case 0:
		set_u64_half(&e->addr, 0, val);
		e->dirty = true;
		break;
	case 4:
		set_u64_half(&e->addr, 1, val);
		e->dirty = true;
		break;
	case 8:
		e->data = val;
		e->dirty = true;
		break;
	default:
		e->ctrl = val & 1;
		if (!(e->ctrl & 1) && e->pending && vd->msix_enabled)
			vector_deliver(vd, v);
		break;
	}
}

static void pci_cfg_write(struct hk_pci_dev *d, unsigned off, unsigned size,
			  uint32_t val)
{
	struct hk_virtio *vd = d->opaque;
	unsigned ctl = vd->msix_cap + 2;

	(void)val;
	pthread_mutex_lock(&vd->lock);
	if (off < ctl + 2 && ctl < off + size) {
		uint16_t flags = load_le16(d->cfg + ctl);
		bool was_live = vd->msix_enabled && !vd->msix_masked;

		vd->msix_enabled = flags & HK_PCI_MSIX_FLAGS_ENABLE;
		vd->msix_masked = flags & HK_PCI_MSIX_FLAGS_MASKALL;
		if (!was_live && vd->msix_enabled && !vd->msix_masked) {
			for (unsigned v = 0; v < vd->n_vectors; v++) {
				if (vd->msix[v].pending)
					vector_deliver(vd, v);
			}
		}
	}
	if (off < HK_PCI_BAR0 + 8 && HK_PCI_COMMAND < off + size)
		ioeventfds_update(vd);
	pthread_mutex_unlock(&vd->lock);
}

/* ---------------------------------------------------------------- BAR 0 */

void hk_virtio_bar_io(void *opaque, uint64_t off, unsigned size, bool is_write,
		      uint64_t *val)
{
	struct hk_virtio *vd = opaque;
	uint8_t snap[COMMON_LEN];

	if (size != 1 && size != 2 && size != 4 && size != 8)
		return;
	if (off >= HK_VIRTIO_NOTIFY_OFF &&
	    off < HK_VIRTIO_NOTIFY_OFF + HK_VIRTIO_NOTIFY_MULT * vd->nq) {
		unsigned q = (unsigned)(off - HK_VIRTIO_NOTIFY_OFF) /
			     HK_VIRTIO_NOTIFY_MULT;
		uint64_t one = 1;

		if (!is_write) {
			*val = 0;
			return;
		}
		/* Hand the work to the event thread, as KVM would have. */
		if (vd->notify_fd[q] < 0 ||
		    write(vd->notify_fd[q], &one, sizeof(one)) != sizeof(one))
			hk_virtio_notify(vd, q);
		return;
	}

	if (!is_write)
		*val = 0;
	pthread_mutex_lock(&vd->lock);
	if (off < COMMON_LEN && off + size <= COMMON_LEN) {
		if (is_write) {
			common_write(vd, (unsigned)off, size, *val);
		} else {
			common_snapshot(vd, snap);
			for (unsigned i = 0; i < size; i++)
				*val |= (uint64_t)snap[off + i] << (8 * i);
		}
	} else if (off == HK_VIRTIO_ISR_OFF && size == 1) {
		if (!is_write) {
			*val = vd->isr;
			vd->isr = 0;
			if (vd->pci.irq_gsi)
				hk_irq_set(vd->pci.vm, vd->pci.irq_gsi, false);
		}
	} else if (off >= HK_VIRTIO_DEVCFG_OFF &&
		   off + size <= HK_VIRTIO_DEVCFG_OFF + vd->config_len) {
		unsigned c = (unsigned)(off - HK_VIRTIO_DEVCFG_OFF);

		if (!is_write) {
			for (unsigned i = 0; i < size; i++)
				*val |= (uint64_t)vd->config[c + i] << (8 * i);
		} else if (vd->ops->config_write) {
			for (unsigned i = 0; i < size; i++)
				vd->config[c + i] = (uint8_t)(*val >> (8 * i));
			vd->ops->config_write(vd, c, size);
		}
	} else if (off >= HK_VIRTIO_MSIX_TABLE_OFF &&
		   off < HK_VIRTIO_MSIX_TABLE_OFF + 16 * vd->n_vectors) {
		unsigned t = (unsigned)(off - HK_VIRTIO_MSIX_TABLE_OFF);

		if (is_write)
			msix_table_write(vd, t, size, (uint32_t)*val);
		else
			*val = msix_table_read(vd, t, size);
	} else if (off == HK_VIRTIO_MSIX_PBA_OFF && !is_write) {
		for (unsigned v = 0; v < vd->n_vectors && v < 8 * size; v++)
			*val |= (uint64_t)vd->msix[v].pending << v;
	}
	pthread_mutex_unlock(&vd->lock);
}

/* ---------------------------------------------------------------- lifecycle */

void hk_virtio_release(struct hk_virtio *vd)
{
	for (unsigned q = 0; q < vd->nq; q++) {
		if (vd->notify_fd[q] < 0)
			continue;
		if (vd->notify_gpa)
			hk_ioeventfd(vd->pci.vm, vd->notify_fd[q],
				     vd->notify_gpa + HK_VIRTIO_NOTIFY_MULT * q,
				     2, true);
		hk_loop_del(vd->pci.vm, vd->notify_fd[q]);
		close(vd->notify_fd[q]);
		vd->notify_fd[q] = -1;
	}
	vd->notify_gpa = 0;
	for (unsigned v = 0; v < vd->n_vectors; v++) {
		if (vd->msix[v].msi.gsi >= 0)
			hk_msi_release(vd->pci.vm, &vd->msix[v].msi);
	}
}

static void pci_release(struct hk_pci_dev *d)
{
	struct hk_virtio *vd = d->opaque;

	hk_virtio_release(vd);
	if (vd->release)
		vd->release(vd);
}

int hk_virtio_attach(struct hk_virtio *vd,
		     void (*release)(struct hk_virtio *vd))
{
	struct hk_vm *vm = vd->pci.vm;
	int r;

	for (unsigned q = 0; q < vd->nq; q++) {
		vd->notify_fd[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (vd->notify_fd[q] < 0) {
			r = -errno;
			goto out_release;
		}
		r = hk_loop_add(vm, vd->notify_fd[q], EPOLLIN, notify_cb,
				&vd->qref[q]);
		if (r < 0) {
			close(vd->notify_fd[q]);
			vd->notify_fd[q] = -1;
			goto out_release;
		}
	}
	vd->pci.cfg_write = pci_cfg_write;
	r = hk_pci_attach_owned(vm, &vd->pci, pci_release);
	if (r < 0)
		goto out_release;
	vd->release = release;
	pthread_mutex_lock(&vd->lock);
	ioeventfds_update(vd);
	pthread_mutex_unlock(&vd->lock);
	return 0;

out_release:
	hk_virtio_release(vd);
	return r;
}
