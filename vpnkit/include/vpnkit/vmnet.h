/* SPDX-License-Identifier: MIT */
/*
 * hyperkit's "VMN3T" protocol, the handshake that opens a virtio-vpnkit
 * link, as pure encode and decode functions over byte buffers. Both ends
 * use them: the vpnkit daemon (server) and hyperkit's virtio-vpnkit device
 * or a test client (client).
 *
 * On a Unix stream socket, all integers little-endian:
 *
 *   client -> server  init, 49 bytes: "VMN3T", u32 version (22), 40-byte
 *                     commit id (ASCII, not NUL-terminated)
 *   server -> client  init, 49 bytes, the same layout
 *   client -> server  command, 41 bytes: u8 command, 36-byte UUID
 *                     (ASCII 8-4-4-4-12, or 36 NUL bytes for "make one
 *                     up"), u32 IPv4 address (command 8 only, the address
 *                     as a host-order integer stored little-endian, so
 *                     192.168.65.5 is 05 41 a8 c0; zero otherwise)
 *   server -> client  response, 258 bytes: u8 type, then for a VIF (1):
 *                     u16 mtu, u16 max_packet_size, 6-byte MAC; for a
 *                     disconnect (2): u8 length and that many bytes of
 *                     reason; the rest is zero
 *
 * after which both sides send frames, each a u16 length and that many
 * bytes of Ethernet (no FCS, no virtio header).
 *
 * Decoders need the exact message size and reject anything that does not
 * follow the layout; they read through base/cursor.h. Errors: -EMSGSIZE
 * (wrong length), -EINVAL (bad magic, UUID or field), -EPROTONOSUPPORT
 * (another version: the decoded fields are still filled in, so a lenient
 * client may carry on), -EOPNOTSUPP (unknown command or response type).
 * No state, no allocation; safe from any thread.
 */
#ifndef VPNKIT_VMNET_H
#define VPNKIT_VMNET_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define VPNKIT_VMNET_MAGIC "VMN3T"
#define VPNKIT_VMNET_VERSION 22u
#define VPNKIT_VMNET_COMMIT_LEN 40
#define VPNKIT_VMNET_UUID_LEN 36
#define VPNKIT_VMNET_INIT_SIZE 49
#define VPNKIT_VMNET_COMMAND_SIZE 41
#define VPNKIT_VMNET_RESPONSE_SIZE 258
#define VPNKIT_VMNET_REASON_MAX 255 /* a u8 length */
/* Each frame after the handshake: u16 LE length, then the frame. */
#define VPNKIT_VMNET_FRAME_HDR 2
#define VPNKIT_VMNET_FRAME_MAX 65535u

enum vpnkit_vmnet_command_type {
	VPNKIT_VMNET_ETHERNET = 1, /* attach with a UUID */
	VPNKIT_VMNET_BIND_IPV4 = 6, /* legacy; servers answer disconnect */
	VPNKIT_VMNET_PREFERRED_IPV4 = 8, /* attach, asking for an address */
};

enum vpnkit_vmnet_response_type {
	VPNKIT_VMNET_VIF = 1,
	VPNKIT_VMNET_DISCONNECT = 2,
};

struct vpnkit_vmnet_init {
	uint32_t version;
	char commit[VPNKIT_VMNET_COMMIT_LEN + 1]; /* NUL-terminated */
};

struct vpnkit_vmnet_command {
	uint8_t type; /* enum vpnkit_vmnet_command_type */
	/* Lower-case 8-4-4-4-12, or "" for the all-NUL UUID. */
	char uuid[VPNKIT_VMNET_UUID_LEN + 1];
	struct in_addr ip; /* network order; 0 unless PREFERRED_IPV4 */
};

struct vpnkit_vmnet_response {
	uint8_t type; /* enum vpnkit_vmnet_response_type */
	/* VPNKIT_VMNET_VIF */
	uint16_t mtu;
	uint16_t max_packet_size;
	uint8_t mac[6];
	/* VPNKIT_VMNET_DISCONNECT: NUL-terminated; bytes outside printable
	 * ASCII are replaced by '?' (the reason is for a log line) */
	char reason[VPNKIT_VMNET_REASON_MAX + 1];
};

/*
 * The init message: "VMN3T", version, and commit padded with NUL bytes or
 * cut to 40 bytes (NULL: 40 '0' characters).
 */
void vpnkit_vmnet_init_encode(uint8_t out[VPNKIT_VMNET_INIT_SIZE],
			      uint32_t version, const char *commit);

/*
 * Decode an init message of exactly len == 49 bytes. The commit is taken
 * up to its first NUL and must be printable ASCII. Returns 0,
 * -EPROTONOSUPPORT for a version other than 22 (out filled in), or as
 * above.
 */
int vpnkit_vmnet_init_decode(const void *buf, size_t len,
			     struct vpnkit_vmnet_init *out);

/*
 * Encode a command. cmd->uuid must be "" or a UUID in 8-4-4-4-12 form
 * (either case); ip is written only for PREFERRED_IPV4. Returns 0 or
 * -EINVAL (bad UUID).
 */
int vpnkit_vmnet_command_encode(uint8_t out[VPNKIT_VMNET_COMMAND_SIZE],
				const struct vpnkit_vmnet_command *cmd);

/*
 * Decode a command of exactly 41 bytes: a known type (1, 6 or 8), a UUID
 * of 36 NUL bytes or 8-4-4-4-12 hex digits (folded to lower case). The
 * address bytes are ignored unless the type is PREFERRED_IPV4. Returns 0
 * or -errno as above.
 */
int vpnkit_vmnet_command_decode(const void *buf, size_t len,
				struct vpnkit_vmnet_command *out);

/*
 * The max_packet_size a server announces for an MTU: vpnkit's mtu + 50,
 * clamped to the 65535 a u16 frame length can carry.
 */
uint16_t vpnkit_vmnet_max_packet_size(unsigned mtu);

/* A VIF response; the MTU is clamped to 65535 like max_packet_size. */
void vpnkit_vmnet_vif_encode(uint8_t out[VPNKIT_VMNET_RESPONSE_SIZE],
			     unsigned mtu, uint16_t max_packet_size,
			     const uint8_t mac[6]);

/* A disconnect response; reason is cut to 255 bytes. */
void vpnkit_vmnet_disconnect_encode(uint8_t out[VPNKIT_VMNET_RESPONSE_SIZE],
				    const char *reason);

/*
 * Decode a response of exactly 258 bytes. The padding after the fields
 * is not inspected (the original implementations zero it, but a client
 * has nothing to gain by refusing a peer that does not). A VIF must have
 * a nonzero MTU and a max_packet_size that holds an Ethernet header (14).
 * Returns 0 or -errno as above.
 */
int vpnkit_vmnet_response_decode(const void *buf, size_t len,
				 struct vpnkit_vmnet_response *out);

#endif
