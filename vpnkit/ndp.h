/* SPDX-License-Identifier: MIT */
/*
 * Neighbour discovery (ndp.c), as icmp.c and the instance see it.
 *
 * icmp.c verifies an ICMPv6 message's length and checksum, then hands
 * router solicitations (133), neighbour solicitations (135) and neighbour
 * advertisements (136) from a VM to vk_ndp_input, which validates the rest
 * (RFC 4861: hop limit 255, code 0, options) and answers. The periodic and
 * per-port router advertisements are vk_ndp_tick and vk_ndp_port_up,
 * declared in internal.h with the other timers.
 *
 * Both modules keep a little state per instance in the slots vk_ndp_state
 * and vk_icmp_state: one flat allocation each, made on first use, which
 * vpnkit_free frees.
 */
#ifndef VPNKIT_NDP_H
#define VPNKIT_NDP_H

#include "internal.h"

/* ICMPv6 types of neighbour discovery (RFC 4861). */
#define VK_ND_ROUTER_SOLICIT 133
#define VK_ND_ROUTER_ADVERT 134
#define VK_ND_NEIGHBOR_SOLICIT 135
#define VK_ND_NEIGHBOR_ADVERT 136
#define VK_ND_REDIRECT 137

/* An RS, NS or NA from pkt->port whose ICMPv6 checksum was verified. */
void vk_ndp_input(struct vpnkit *vk, const struct vk_pkt *pkt);

#endif
