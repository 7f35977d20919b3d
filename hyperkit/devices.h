/* SPDX-License-Identifier: MIT */
/*
 * Looking up the `-s` emulations by name (the table is in devices.c).
 * The core's option parser calls hk_device_type_find and then the
 * type's create(vm, slot, func, conf) once the VM and its PCI bus exist.
 */
#ifndef HYPERKIT_DEVICES_H
#define HYPERKIT_DEVICES_H

#include <stddef.h>

#include "platform.h"

/* The type called name ("virtio-blk"), or NULL if there is none. */
const struct hk_device_type *hk_device_type_find(const char *name);

/* The i-th type (for --help), or NULL past the end. */
const struct hk_device_type *hk_device_type_at(size_t i);

#endif
