// SPDX-License-Identifier: MIT
/*
 * hyperkit's VMN3T handshake messages (see vpnkit/vmnet.h for the byte
 * layout). The layout follows moby/hyperkit's pci_virtio_net_vpnkit.c
 * and moby/vpnkit's vmnet.ml as described in the project's research
 * note; nothing here is shared with them.
 *
 * Encoders write every byte of their fixed-size message (padding is
 * zero). Decoders take exactly one message, read it through a cursor and
 * check each field before deriving anything from it.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <base/cursor.h>
#include <base/endian.h>

#include "vpnkit/vmnet.h"

/* Offsets inside the messages. */
enum {
	INIT_MAGIC = 0,
	INIT_VERSION = 5,
	INIT_COMMIT = 9,
	CMD_TYPE = 0,
	CMD_UUID = 1,
	CMD_IP = 37,
	RESP_TYPE = 0,
	VIF_MTU = 1,
	VIF_MAX_PACKET = 3,
	VIF_MAC = 5,
	DISC_LEN = 1,
	DISC_REASON = 2,
};

_Static_assert(INIT_COMMIT + VPNKIT_VMNET_COMMIT_LEN == VPNKIT_VMNET_INIT_SIZE,
	       "init layout");
_Static_assert(CMD_IP + 4 == VPNKIT_VMNET_COMMAND_SIZE, "command layout");
_Static_assert(DISC_REASON + VPNKIT_VMNET_REASON_MAX <
		       VPNKIT_VMNET_RESPONSE_SIZE,
	       "response layout");

/* The magic as bytes: it is not a C string on the wire. */
static const uint8_t vmnet_magic[5] = { 'V', 'M', 'N', '3', 'T' };

void vpnkit_vmnet_init_encode(uint8_t out[VPNKIT_VMNET_INIT_SIZE],
			      uint32_t version, const char *commit)
{
	size_t n;

	memset(out, 0, VPNKIT_VMNET_INIT_SIZE);
	memcpy(out + INIT_MAGIC, vmnet_magic, sizeof(vmnet_magic));
	store_le32(out + INIT_VERSION, version);
	if (!commit) {
		memset(out + INIT_COMMIT, '0', VPNKIT_VMNET_COMMIT_LEN);
		return;
	}
	n = strnlen(commit, VPNKIT_VMNET_COMMIT_LEN);
	memcpy(out + INIT_COMMIT, commit, n);
}

int vpnkit_vmnet_init_decode(const void *buf, size_t len,
			     struct vpnkit_vmnet_init *out)
{
	struct cursor c;
	const uint8_t *magic, *commit;
	size_t n;

	memset(out, 0, sizeof(*out));
	if (len != VPNKIT_VMNET_INIT_SIZE)
		return -EMSGSIZE;
	cursor_init(&c, buf, len);
	magic = cursor_ptr(&c, 5);
	out->version = cursor_le32(&c);
	commit = cursor_ptr(&c, VPNKIT_VMNET_COMMIT_LEN);
	if (cursor_failed(&c))
		return -EMSGSIZE;
	if (memcmp(magic, vmnet_magic, sizeof(vmnet_magic)) != 0)
		return -EINVAL;
	n = strnlen((const char *)commit, VPNKIT_VMNET_COMMIT_LEN);
	for (size_t i = 0; i < n; i++) {
		if (commit[i] < 0x20 || commit[i] > 0x7e)
			return -EINVAL;
	}
	memcpy(out->commit, commit, n);
	out->commit[n] = '\0';
	if (out->version != VPNKIT_VMNET_VERSION)
		return -EPROTONOSUPPORT;
	return 0;
}

static int hex_digit(uint8_t ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * Check 36 bytes of UUID text: 8-4-4-4-12 hex digits with dashes at 8,
 * 13, 18 and 23. Writes the lower-case form (and a NUL) to out, or ""
 * for 36 NUL bytes. Returns 0 or -EINVAL.
 */
static int uuid_check(const uint8_t *in, char out[VPNKIT_VMNET_UUID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	bool all_zero = true;

	for (size_t i = 0; i < VPNKIT_VMNET_UUID_LEN; i++)
		all_zero = all_zero && in[i] == 0;
	out[0] = '\0';
	if (all_zero)
		return 0;
	for (size_t i = 0; i < VPNKIT_VMNET_UUID_LEN; i++) {
		int d;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (in[i] != '-')
				goto bad;
			out[i] = '-';
			continue;
		}
		d = hex_digit(in[i]);
		if (d < 0)
			goto bad;
		out[i] = hex[d];
	}
	out[VPNKIT_VMNET_UUID_LEN] = '\0';
	return 0;
bad:
	out[0] = '\0';
	return -EINVAL;
}

int vpnkit_vmnet_command_encode(uint8_t out[VPNKIT_VMNET_COMMAND_SIZE],
				const struct vpnkit_vmnet_command *cmd)
{
	char norm[VPNKIT_VMNET_UUID_LEN + 1];
	size_t n = strnlen(cmd->uuid, sizeof(cmd->uuid));

	memset(out, 0, VPNKIT_VMNET_COMMAND_SIZE);
	if (n != 0 && (n != VPNKIT_VMNET_UUID_LEN ||
		       uuid_check((const uint8_t *)cmd->uuid, norm) != 0))
		return -EINVAL;
	out[CMD_TYPE] = cmd->type;
	memcpy(out + CMD_UUID, cmd->uuid, n);
	if (cmd->type == VPNKIT_VMNET_PREFERRED_IPV4)
		store_le32(out + CMD_IP, ntohl(cmd->ip.s_addr));
	return 0;
}

int vpnkit_vmnet_command_decode(const void *buf, size_t len,
				struct vpnkit_vmnet_command *out)
{
	struct cursor c;
	const uint8_t *uuid;
	uint32_t ip;

	memset(out, 0, sizeof(*out));
	if (len != VPNKIT_VMNET_COMMAND_SIZE)
		return -EMSGSIZE;
	cursor_init(&c, buf, len);
	out->type = cursor_u8(&c);
	uuid = cursor_ptr(&c, VPNKIT_VMNET_UUID_LEN);
	ip = cursor_le32(&c);
	if (cursor_failed(&c))
		return -EMSGSIZE;
	switch (out->type) {
	case VPNKIT_VMNET_ETHERNET:
	case VPNKIT_VMNET_BIND_IPV4:
	case VPNKIT_VMNET_PREFERRED_IPV4:
		break;
	default:
		return -EOPNOTSUPP;
	}
	if (uuid_check(uuid, out->uuid) != 0)
		return -EINVAL;
	if (out->type == VPNKIT_VMNET_PREFERRED_IPV4)
		out->ip.s_addr = htonl(ip);
	return 0;
}

uint16_t vpnkit_vmnet_max_packet_size(unsigned mtu)
{
	return mtu >= VPNKIT_VMNET_FRAME_MAX - 50 ? VPNKIT_VMNET_FRAME_MAX :
						    (uint16_t)(mtu + 50);
}

void vpnkit_vmnet_vif_encode(uint8_t out[VPNKIT_VMNET_RESPONSE_SIZE],
			     unsigned mtu, uint16_t max_packet_size,
			     const uint8_t mac[6])
{
	memset(out, 0, VPNKIT_VMNET_RESPONSE_SIZE);
	out[RESP_TYPE] = VPNKIT_VMNET_VIF;
	store_le16(out + VIF_MTU, mtu > VPNKIT_VMNET_FRAME_MAX ?
					  VPNKIT_VMNET_FRAME_MAX :
					  (uint16_t)mtu);
	store_le16(out + VIF_MAX_PACKET, max_packet_size);
	memcpy(out + VIF_MAC, mac, 6);
}

void vpnkit_vmnet_disconnect_encode(uint8_t out[VPNKIT_VMNET_RESPONSE_SIZE],
				    const char *reason)
{
	size_t n = reason ? strnlen(reason, VPNKIT_VMNET_REASON_MAX) : 0;

	memset(out, 0, VPNKIT_VMNET_RESPONSE_SIZE);
	out[RESP_TYPE] = VPNKIT_VMNET_DISCONNECT;
	out[DISC_LEN] = (uint8_t)n;
	memcpy(out + DISC_REASON, reason ? reason : "", n);
}

int vpnkit_vmnet_response_decode(const void *buf, size_t len,
				 struct vpnkit_vmnet_response *out)
{
	struct cursor c;
	const uint8_t *reason;
	uint8_t n;

	memset(out, 0, sizeof(*out));
	if (len != VPNKIT_VMNET_RESPONSE_SIZE)
		return -EMSGSIZE;
	cursor_init(&c, buf, len);
	out->type = cursor_u8(&c);
	switch (out->type) {
	case VPNKIT_VMNET_VIF:
		out->mtu = cursor_le16(&c);
		out->max_packet_size = cursor_le16(&c);
		cursor_copy(&c, out->mac, 6);
		if (cursor_failed(&c))
			return -EMSGSIZE;
		if (out->mtu == 0 || out->max_packet_size < 14)
			return -EINVAL;
		return 0;
	case VPNKIT_VMNET_DISCONNECT:
		n = cursor_u8(&c);
		reason = cursor_ptr(&c, n);
		if (cursor_failed(&c))
			return -EMSGSIZE;
		for (size_t i = 0; i < n; i++) {
			char ch = '?';

			if (reason[i] >= 0x20 && reason[i] < 0x7f)
				ch = (char)reason[i];
			out->reason[i] = ch;
		}
		out->reason[n] = '\0';
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}
