// SPDX-License-Identifier: MIT
/*
 * fuzz_dhcp: libFuzzer target feeding arbitrary bytes to the gateway's
 * DHCP server as the payload of a UDP datagram from a VM.
 *
 * Each input gets a fresh instance with one port whose frames out are
 * checked and thrown away. The first byte chooses the configuration
 * (domain and a search list long enough to need splitting or none, an MTU
 * of 576, 1500 or 65520, DNS at the gateway or off with a resolv.conf that
 * does not exist) and whether the datagram comes from 0.0.0.0 or from the
 * port's address; the rest is the BOOTP message, wrapped in Ethernet,
 * IPv4 and UDP with correct checksums (tests/frames.h) so that it reaches
 * dhcp.c through vpnkit_port_input, the real path. The answers must be
 * frames a VM's stack takes (lengths and checksums, checked with
 * frames.h) no longer than the MTU allows; anything else traps.
 *
 * The seeds (corpus/dhcp/) are a first byte followed by a DISCOVER,
 * REQUESTs in each client state, an INFORM, a RELEASE, a DECLINE and a few
 * broken ones, as busybox udhcpc and the RFCs shape them.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <base/endian.h>
#include <base/fuzz.h>
#include <vpnkit/vpnkit.h>

#include "../tests/frames.h"

#define FRAME_BUF 65600

struct sink {
	unsigned mtu;
};

/* Every frame out must fit the MTU and be one a VM's stack takes. */
static int sink_send(void *opaque, const struct vpnkit_offload *off,
		     const struct iovec *iov, int iovcnt)
{
	static uint8_t buf[FRAME_BUF];
	const struct sink *s = opaque;
	struct fr_view v;
	size_t len = 0;

	(void)off;
	for (int i = 0; i < iovcnt; i++) {
		if (len + iov[i].iov_len > sizeof(buf))
			__builtin_trap();
		memcpy(buf + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	if (len > FR_ETH_HLEN + (size_t)s->mtu || fr_parse(&v, buf, len, false))
		__builtin_trap();
	return 0;
}

static const struct vpnkit_port_ops sink_ops = { .send = sink_send };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned mtus[] = { 1500, 576, 65520, 1500 };
	static const uint8_t bcast_mac[6] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff
	};
	struct vpnkit_config cfg;
	struct vpnkit *vk = NULL;
	struct vpnkit_port *port = NULL;
	struct sink sink = { 0 };
	struct fr_l3 a;
	struct in_addr src;
	uint8_t *f;
	uint8_t sel;

	if (size < 1 || size - 1 > 65535 - 28)
		return 0;
	sel = data[0];
	data++;
	size--;

	vpnkit_config_init(&cfg);
	cfg.ipv6 = false;
	cfg.max_flows = 16;
	cfg.mtu = mtus[sel & 3];
	cfg.dns_mode = (sel & 4) ? VPNKIT_DNS_FORWARD : VPNKIT_DNS_OFF;
	cfg.resolv_conf = "/nonexistent/fuzz/resolv.conf";
	if (sel & 8) {
		cfg.domain = "fuzz.example";
		cfg.search = "a.example b.example.org c.d.e.example "
			     "a-much-longer-label-to-fill-the-option.example "
			     "another-long-one-to-need-a-second-option.example "
			     "x1.example x2.example x3.example x4.example "
			     "x5.example x6.example x7.example x8.example "
			     "and.a.last.one.with.many.labels.example";
	}
	sink.mtu = cfg.mtu;
	if (vpnkit_new(&cfg, &vk) < 0)
		return 0;
	if (vpnkit_port_new(vk, NULL, &sink_ops, &sink, &port) < 0)
		goto out_free;
	f = malloc(FR_ETH_HLEN + 28 + size);
	if (!f)
		goto out_free;
	memset(&a, 0, sizeof(a));
	vpnkit_port_mac(port, a.src_mac);
	memcpy(a.dst_mac, bcast_mac, 6);
	a.af = 4;
	src = (sel & 16) ? vpnkit_port_ip(port) : (struct in_addr){ 0 };
	memcpy(a.src, &src, 4);
	memset(a.dst, 0xff, 4);
	(void)vpnkit_port_input(port, NULL, f,
				fr_udp(f, &a, 68, 67, data, size));
	free(f);
out_free:
	vpnkit_free(vk);
	return 0;
}
