// SPDX-License-Identifier: MIT
/*
 * The `-s SLOT[:FUNC],EMULATION[,CONF]` emulations: one table entry per
 * device type, looked up by name. Adding a device is adding a line here.
 */
#include <stddef.h>
#include <string.h>

#include "devices.h"
#include "pci.h"
#include "virtio_net.h"
#include "virtio_9p.h"
#include "virtio_pci.h"
#include "virtio_sock.h"

static const struct hk_device_type device_types[] = {
	{ "hostbridge", hk_hostbridge_create },
	{ "amd_hostbridge", hk_hostbridge_create },
	{ "lpc", hk_lpc_create },
	{ "virtio-blk", hk_virtio_blk_create },
	{ "virtio-rnd", hk_virtio_rnd_create },
	{ "virtio-console", hk_virtio_console_create },
	{ "virtio-9p", hk_virtio_9p_create },
	{ "virtio-net", hk_virtio_net_create },
	{ "virtio-vpnkit", hk_virtio_vpnkit_create },
	{ "virtio-tap", hk_virtio_tap_create },
	{ "virtio-sock", hk_virtio_sock_create },
};

const struct hk_device_type *hk_device_type_find(const char *name)
{
	for (size_t i = 0; i < sizeof(device_types) / sizeof(device_types[0]);
	     i++) {
		if (strcmp(device_types[i].name, name) == 0)
			return &device_types[i];
	}
	return NULL;
}

const struct hk_device_type *hk_device_type_at(size_t i)
{
	if (i >= sizeof(device_types) / sizeof(device_types[0]))
		return NULL;
	return &device_types[i];
}
