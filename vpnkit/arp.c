/* SPDX-License-Identifier: MIT */
/*
 * ARP: the gateway answers for its own address, for the host address and
 * for every address outside the subnet it carries (a VM that asks for any
 * of them gets the gateway's MAC), and for other VMs' addresses with
 * their MACs (proxy ARP, so the switch never floods). Requests for the
 * asker's own address (gratuitous ARP, address conflict probes) and for
 * unassigned addresses get no answer.
 */
#include <string.h>

#include "base/endian.h"
#include "internal.h"

void vk_arp_input(struct vk_port *port, const uint8_t *frame, size_t len)
{
	struct vpnkit *vk = port->vk;
	const uint8_t *a = frame + VK_ETH_HLEN;
	uint8_t reply[VK_ETH_HLEN + 28], *r = reply + VK_ETH_HLEN;
	struct in6_addr target;
	struct in_addr tip, sip;
	const uint8_t *mac;
	struct vk_port *owner;
	struct iovec iov;

	if (len < VK_ETH_HLEN + 28 || load_be16(a) != 1 ||
	    load_be16(a + 2) != VK_ETHERTYPE_IP || a[4] != 6 || a[5] != 4) {
		vk_drop_bad(vk, "ARP header");
		return;
	}
	if (load_be16(a + 6) != 1) { /* replies are not needed */
		vk_drop(vk, "ARP reply");
		return;
	}
	memcpy(&sip, a + 14, 4);
	memcpy(&tip, a + 24, 4);
	if (memcmp(a + 8, frame + 6, 6) != 0 ||
	    (sip.s_addr && sip.s_addr != port->ip4.s_addr)) {
		vk_drop_bad(vk, "ARP sender is not the VM");
		return;
	}
	if (tip.s_addr == port->ip4.s_addr || tip.s_addr == sip.s_addr) {
		vk_drop(vk, "ARP for own address");
		return;
	}
	vk_addr_from_v4(&target, tip);
	owner = vk_port_by_addr(vk, &target);
	if (owner) {
		mac = owner->mac;
	} else if (vk_addr_is_gateway(vk, &target) ||
		   vk_addr_is_host(vk, &target) ||
		   !vk_addr_is_local(vk, &target)) {
		mac = vk_gateway_mac;
	} else {
		vk_drop(vk, "ARP for an unassigned address");
		return;
	}
	vk_eth_header(port, VK_ETHERTYPE_ARP, reply);
	memcpy(reply + 6, mac, 6);
	store_be16(r, 1);
	store_be16(r + 2, VK_ETHERTYPE_IP);
	r[4] = 6;
	r[5] = 4;
	store_be16(r + 6, 2);
	memcpy(r + 8, mac, 6);
	memcpy(r + 14, &tip, 4);
	memcpy(r + 18, a + 8, 6);
	memcpy(r + 24, a + 14, 4);
	iov.iov_base = reply;
	iov.iov_len = sizeof(reply);
	vk_port_send(port, NULL, &iov, 1);
}
