/* SPDX-License-Identifier: MIT */
/*
 * The capture file: every frame to and from the VMs, in the classic
 * pcap format (microsecond timestamps, link type Ethernet) that tcpdump
 * and Wireshark read. Frames are written as they pass, through stdio's
 * buffer, flushed at least every second so a live `tail -f | tcpdump`
 * sees them; frames longer than 65535 bytes are cut there.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "internal.h"

struct pcap_state {
	FILE *f;
	uint64_t last_flush;
};

int vk_pcap_open(struct vpnkit *vk, const char *path)
{
	struct pcap_state *ps = calloc(1, sizeof(*ps));
	struct {
		uint32_t magic;
		uint16_t major, minor;
		int32_t zone;
		uint32_t sigfigs, snaplen, linktype;
	} hdr = { 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1 };

	if (!ps)
		return -ENOMEM;
	ps->f = fopen(path, "we");
	if (!ps->f) {
		int err = -errno;

		free(ps);
		return err;
	}
	if (fwrite(&hdr, sizeof(hdr), 1, ps->f) != 1) {
		fclose(ps->f);
		free(ps);
		return -EIO;
	}
	fflush(ps->f);
	*vk_pcap_state(vk) = ps;
	return 0;
}

void vk_pcap_close(struct vpnkit *vk)
{
	struct pcap_state *ps = *vk_pcap_state(vk);

	if (!ps)
		return;
	fclose(ps->f);
	free(ps);
	*vk_pcap_state(vk) = NULL;
}

void vk_pcap_frame(struct vpnkit *vk, const struct iovec *iov, int iovcnt)
{
	struct pcap_state *ps = *vk_pcap_state(vk);
	struct timeval tv;
	struct {
		uint32_t sec, usec, incl, orig;
	} rec;
	size_t len = 0, left;
	uint64_t now;
	int i;

	if (!ps)
		return;
	for (i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	gettimeofday(&tv, NULL);
	rec.sec = (uint32_t)tv.tv_sec;
	rec.usec = (uint32_t)tv.tv_usec;
	rec.incl = (uint32_t)(len > 65535 ? 65535 : len);
	rec.orig = (uint32_t)len;
	fwrite(&rec, sizeof(rec), 1, ps->f);
	left = rec.incl;
	for (i = 0; i < iovcnt && left; i++) {
		size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;

		fwrite(iov[i].iov_base, 1, n, ps->f);
		left -= n;
	}
	now = vk_now_ns();
	if (now - ps->last_flush > 1000000000ull) {
		fflush(ps->f);
		ps->last_flush = now;
	}
}
