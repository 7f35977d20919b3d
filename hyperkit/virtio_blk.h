/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk's request path without the transport, so unit tests and the
 * fuzz target can drive it with a fake guest memory: a disk backend (a
 * raw file or a qcow2 image through libqcow) and the function that serves
 * one descriptor chain against it.
 *
 * A request that is malformed (short header, lengths not a multiple of
 * the sector, a range past the end, too many or bad discard segments) or
 * that fails on the host gets VIRTIO_BLK_S_IOERR or VIRTIO_BLK_S_UNSUPP
 * in its status byte, which is written last. Nothing here allocates per
 * request. Not locked: the device's lock covers it.
 */
#ifndef HYPERKIT_VIRTIO_BLK_H
#define HYPERKIT_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "base/log.h"
#include "virtqueue.h"

#define HK_VBLK_SECTOR 512u

/* Request types and status values (virtio 1.x, 5.2.6). */
#define HK_VBLK_T_IN 0u
#define HK_VBLK_T_OUT 1u
#define HK_VBLK_T_FLUSH 4u
#define HK_VBLK_T_GET_ID 8u
#define HK_VBLK_T_DISCARD 11u
#define HK_VBLK_T_WRITE_ZEROES 13u
#define HK_VBLK_S_OK 0u
#define HK_VBLK_S_IOERR 1u
#define HK_VBLK_S_UNSUPP 2u
#define HK_VBLK_ID_BYTES 20u

/* Feature bits (5.2.3). */
#define HK_VBLK_F_SEG_MAX 2
#define HK_VBLK_F_RO 5
#define HK_VBLK_F_BLK_SIZE 6
#define HK_VBLK_F_FLUSH 9
#define HK_VBLK_F_DISCARD 13
#define HK_VBLK_F_WRITE_ZEROES 14

#define HK_VBLK_MAX_SEGS 16u /* discard / write-zeroes segments */
#define HK_VBLK_MAX_SECTORS (1u << 22) /* per discard segment: 2 GiB */
#define HK_VBLK_CONFIG_LEN 60u

struct hk_vblk;

/*
 * Open the disk that hyperkit's `virtio-blk,CONF` names: "PATH[,ro]" for
 * a raw file, "file://PATH,format=qcow[,ro]" for a qcow2 image (also
 * format=raw); "nocache", "direct" and "sectorsize=512" are accepted.
 * Returns 0 with *out set, or -errno with a message logged.
 */
int hk_vblk_open(struct hk_vblk **out, const char *conf,
		 const struct logger *log);
void hk_vblk_close(struct hk_vblk *b);

/* Virtual size in sectors, and the features and config space to offer
 * (cfg has room for HK_VBLK_CONFIG_LEN bytes; seg_max as given). */
uint64_t hk_vblk_sectors(const struct hk_vblk *b);
uint64_t hk_vblk_features(const struct hk_vblk *b);
void hk_vblk_config(const struct hk_vblk *b, uint8_t *cfg, uint32_t seg_max);

/* Serve one chain; returns the bytes written into its writable part (the
 * used ring's len). Never fails: the outcome is in the status byte. */
uint32_t hk_vblk_request(struct hk_vblk *b, const struct hk_vq_chain *c);

#endif
