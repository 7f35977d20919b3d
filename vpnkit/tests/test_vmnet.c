// SPDX-License-Identifier: MIT
/*
 * Golden-byte tests of hyperkit's VMN3T handshake (vpnkit/vmnet.c).
 *
 * The expected bytes are written out by hand from the layout in the
 * research note (../shared/research/vpnkit.md, section 2.1), which was
 * taken from hyperkit's pci_virtio_net_vpnkit.c and vpnkit's vmnet.ml:
 * nothing here is derived from the code under test. Then each rule of
 * the decoders is broken in turn.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <base/test.h>

#include "vpnkit/vmnet.h"

static const char commit[] = "0123456789abcdef0123456789abcdef01234567";
static const char uuid[] = "c6e0b2b4-7d3a-4f4e-9f1a-0a1b2c3d4e5f";

/* Text as wire bytes, without its NUL. */
static void put_text(uint8_t *dst, const char *text, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = (uint8_t)text[i];
}

/* "VMN3T", 22 as u32 LE, then the 40 commit characters. */
static void golden_init(uint8_t out[49])
{
	static const uint8_t head[9] = { 0x56, 0x4d, 0x4e, 0x33, 0x54,
					 0x16, 0x00, 0x00, 0x00 };

	memcpy(out, head, 9);
	put_text(out + 9, commit, 40);
}

TEST(init_encode_golden)
{
	uint8_t want[49], got[49];

	golden_init(want);
	memset(got, 0xaa, sizeof(got));
	vpnkit_vmnet_init_encode(got, 22, commit);
	ASSERT_EQ_MEM(got, want, 49);
}

TEST(init_encode_short_commit_is_padded)
{
	uint8_t got[49], want[49] = { 0x56, 0x4d, 0x4e, 0x33, 0x54, 0x16,
				      0x00, 0x00, 0x00, 'a',  'b',  'c' };

	memset(got, 0xaa, sizeof(got));
	vpnkit_vmnet_init_encode(got, 22, "abc");
	ASSERT_EQ_MEM(got, want, 49);
	/* NULL: forty ASCII zeros */
	vpnkit_vmnet_init_encode(got, 22, NULL);
	for (size_t i = 9; i < 49; i++)
		ASSERT_EQ_U64(got[i], '0');
}

TEST(init_decode_golden)
{
	uint8_t buf[49];
	struct vpnkit_vmnet_init init;

	golden_init(buf);
	ASSERT_OK(vpnkit_vmnet_init_decode(buf, sizeof(buf), &init));
	ASSERT_EQ_U64(init.version, 22);
	ASSERT_EQ_STR(init.commit, commit);
	/* A NUL-padded commit ends at its first NUL. */
	memset(buf + 20, 0, 29);
	ASSERT_OK(vpnkit_vmnet_init_decode(buf, sizeof(buf), &init));
	ASSERT_EQ_STR(init.commit, "0123456789a");
}

TEST(init_decode_rejects)
{
	uint8_t buf[50];
	struct vpnkit_vmnet_init init;

	golden_init(buf);
	ASSERT_ERR(vpnkit_vmnet_init_decode(buf, 48, &init), -EMSGSIZE);
	ASSERT_ERR(vpnkit_vmnet_init_decode(buf, 50, &init), -EMSGSIZE);
	ASSERT_ERR(vpnkit_vmnet_init_decode(NULL, 0, &init), -EMSGSIZE);
	/* bad magic: "VMN3t" */
	buf[4] = 't';
	ASSERT_ERR(vpnkit_vmnet_init_decode(buf, 49, &init), -EINVAL);
	/* bad version: 21, 23 and 22 << 8 are not 22, but decoded */
	golden_init(buf);
	buf[5] = 21;
	ASSERT_ERR(vpnkit_vmnet_init_decode(buf, 49, &init), -EPROTONOSUPPORT);
	ASSERT_EQ_U64(init.version, 21);
	ASSERT_EQ_STR(init.commit, commit);
	buf[5] = 0;
	buf[6] = 22;
	ASSERT_ERR(vpnkit_vmnet_init_decode(buf, 49, &init), -EPROTONOSUPPORT);
	ASSERT_EQ_U64(init.version, 22u << 8);
	/* a control character in the commit */
	golden_init(buf);
	buf[30] = '\n';
	ASSERT_ERR(vpnkit_vmnet_init_decode(buf, 49, &init), -EINVAL);
	buf[30] = 0xc3;
	ASSERT_ERR(vpnkit_vmnet_init_decode(buf, 49, &init), -EINVAL);
}

/* Command: type, 36 UUID bytes, u32 LE address; 41 bytes. */
static void golden_command(uint8_t out[41], uint8_t type, const uint8_t ip[4])
{
	memset(out, 0, 41);
	out[0] = type;
	put_text(out + 1, uuid, 36);
	if (ip)
		memcpy(out + 37, ip, 4);
}

TEST(command_ethernet_golden)
{
	uint8_t want[41], got[41];
	struct vpnkit_vmnet_command cmd = { .type = VPNKIT_VMNET_ETHERNET };
	struct vpnkit_vmnet_command dec;

	golden_command(want, 1, NULL);
	memcpy(cmd.uuid, uuid, sizeof(uuid));
	cmd.ip.s_addr = inet_addr("10.0.0.1"); /* not written for type 1 */
	memset(got, 0xaa, sizeof(got));
	ASSERT_OK(vpnkit_vmnet_command_encode(got, &cmd));
	ASSERT_EQ_MEM(got, want, 41);

	ASSERT_OK(vpnkit_vmnet_command_decode(want, 41, &dec));
	ASSERT_EQ_U64(dec.type, VPNKIT_VMNET_ETHERNET);
	ASSERT_EQ_STR(dec.uuid, uuid);
	ASSERT_EQ_U64(dec.ip.s_addr, 0);
	/* The address bytes of a type 1 command are ignored. */
	want[37] = 0x99;
	ASSERT_OK(vpnkit_vmnet_command_decode(want, 41, &dec));
	ASSERT_EQ_U64(dec.ip.s_addr, 0);
}

TEST(command_preferred_ip_golden)
{
	/* 192.168.65.5 as a host-order integer written LE: 05 41 a8 c0 */
	static const uint8_t ip[4] = { 0x05, 0x41, 0xa8, 0xc0 };
	uint8_t want[41], got[41];
	struct vpnkit_vmnet_command cmd = {
		.type = VPNKIT_VMNET_PREFERRED_IPV4,
	};
	struct vpnkit_vmnet_command dec;

	golden_command(want, 8, ip);
	memcpy(cmd.uuid, uuid, sizeof(uuid));
	ASSERT_EQ_INT(inet_pton(AF_INET, "192.168.65.5", &cmd.ip), 1);
	ASSERT_OK(vpnkit_vmnet_command_encode(got, &cmd));
	ASSERT_EQ_MEM(got, want, 41);
	ASSERT_EQ_U64(got[37], 0x05);
	ASSERT_EQ_U64(got[40], 0xc0);

	ASSERT_OK(vpnkit_vmnet_command_decode(want, 41, &dec));
	ASSERT_EQ_U64(dec.type, VPNKIT_VMNET_PREFERRED_IPV4);
	ASSERT_EQ_STR(dec.uuid, uuid);
	ASSERT_EQ_U64(dec.ip.s_addr, inet_addr("192.168.65.5"));
}

TEST(command_decode_zero_uuid_and_case)
{
	uint8_t buf[41] = { 1 };
	struct vpnkit_vmnet_command dec;
	char upper[37];

	/* 36 NUL bytes: the server makes up an identity */
	ASSERT_OK(vpnkit_vmnet_command_decode(buf, 41, &dec));
	ASSERT_EQ_STR(dec.uuid, "");
	/* Upper-case hex is folded to lower case. */
	memcpy(upper, uuid, sizeof(upper));
	for (size_t i = 0; i < 36; i++) {
		if (upper[i] >= 'a' && upper[i] <= 'f')
			upper[i] = (char)(upper[i] - 'a' + 'A');
	}
	memcpy(buf + 1, upper, 36);
	ASSERT_OK(vpnkit_vmnet_command_decode(buf, 41, &dec));
	ASSERT_EQ_STR(dec.uuid, uuid);
	/* Legacy bind decodes (the server answers it with a disconnect). */
	buf[0] = 6;
	ASSERT_OK(vpnkit_vmnet_command_decode(buf, 41, &dec));
	ASSERT_EQ_U64(dec.type, VPNKIT_VMNET_BIND_IPV4);
}

TEST(command_decode_rejects)
{
	uint8_t buf[42];
	struct vpnkit_vmnet_command dec;

	golden_command(buf, 1, NULL);
	ASSERT_ERR(vpnkit_vmnet_command_decode(buf, 40, &dec), -EMSGSIZE);
	ASSERT_ERR(vpnkit_vmnet_command_decode(buf, 42, &dec), -EMSGSIZE);
	/* unknown commands, including 0 and the other legacy numbers */
	static const uint8_t bad_types[] = { 0, 2, 3, 4, 5, 7, 9, 0xff };
	for (size_t i = 0; i < sizeof(bad_types); i++) {
		buf[0] = bad_types[i];
		ASSERT_ERR(vpnkit_vmnet_command_decode(buf, 41, &dec),
			   -EOPNOTSUPP);
	}
	/* non-ASCII, non-hex, misplaced dash, partly NUL */
	golden_command(buf, 1, NULL);
	buf[1] = 0xc3;
	ASSERT_ERR(vpnkit_vmnet_command_decode(buf, 41, &dec), -EINVAL);
	golden_command(buf, 1, NULL);
	buf[2] = 'g';
	ASSERT_ERR(vpnkit_vmnet_command_decode(buf, 41, &dec), -EINVAL);
	golden_command(buf, 1, NULL);
	buf[1 + 8] = '0';
	ASSERT_ERR(vpnkit_vmnet_command_decode(buf, 41, &dec), -EINVAL);
	golden_command(buf, 1, NULL);
	buf[1 + 35] = 0;
	ASSERT_ERR(vpnkit_vmnet_command_decode(buf, 41, &dec), -EINVAL);
	ASSERT_EQ_STR(dec.uuid, "");
}

TEST(command_encode_rejects_bad_uuid)
{
	uint8_t out[41];
	struct vpnkit_vmnet_command cmd = { .type = 1 };

	snprintf(cmd.uuid, sizeof(cmd.uuid), "not-a-uuid");
	ASSERT_ERR(vpnkit_vmnet_command_encode(out, &cmd), -EINVAL);
	cmd.uuid[0] = '\0';
	ASSERT_OK(vpnkit_vmnet_command_encode(out, &cmd));
	for (size_t i = 1; i < 41; i++)
		ASSERT_EQ_U64(out[i], 0);
}

/* A VIF's first bytes: type 1, mtu 1500 = dc 05, max 1550 = 0e 06. */
static const uint8_t vif_1500[5] = { 0x01, 0xdc, 0x05, 0x0e, 0x06 };

TEST(vif_golden)
{
	static const uint8_t mac[6] = { 0x02, 0x50, 0x00, 0x00, 0x00, 0x03 };
	uint8_t want[258] = { 0 }, got[258];
	struct vpnkit_vmnet_response r;

	/* Those, then the MAC, then zeros. */
	memcpy(want, vif_1500, sizeof(vif_1500));
	memcpy(want + 5, mac, 6);
	memset(got, 0xaa, sizeof(got));
	vpnkit_vmnet_vif_encode(got, 1500, vpnkit_vmnet_max_packet_size(1500),
				mac);
	ASSERT_EQ_MEM(got, want, 258);

	ASSERT_OK(vpnkit_vmnet_response_decode(want, 258, &r));
	ASSERT_EQ_U64(r.type, VPNKIT_VMNET_VIF);
	ASSERT_EQ_U64(r.mtu, 1500);
	ASSERT_EQ_U64(r.max_packet_size, 1550);
	ASSERT_EQ_MEM(r.mac, mac, 6);
}

TEST(max_packet_size_clamps)
{
	ASSERT_EQ_U64(vpnkit_vmnet_max_packet_size(1500), 1550);
	ASSERT_EQ_U64(vpnkit_vmnet_max_packet_size(65484), 65534);
	ASSERT_EQ_U64(vpnkit_vmnet_max_packet_size(65485), 65535);
	ASSERT_EQ_U64(vpnkit_vmnet_max_packet_size(65486), 65535);
	ASSERT_EQ_U64(vpnkit_vmnet_max_packet_size(65520), 65535);
	ASSERT_EQ_U64(vpnkit_vmnet_max_packet_size(1u << 20), 65535);
}

TEST(vif_mtu_65520)
{
	static const uint8_t mac[6] = { 0x02, 1, 2, 3, 4, 5 };
	uint8_t got[258];

	/* 65520 = f0 ff; max_packet_size 65535 = ff ff */
	vpnkit_vmnet_vif_encode(got, 65520, vpnkit_vmnet_max_packet_size(65520),
				mac);
	ASSERT_EQ_U64(got[1], 0xf0);
	ASSERT_EQ_U64(got[2], 0xff);
	ASSERT_EQ_U64(got[3], 0xff);
	ASSERT_EQ_U64(got[4], 0xff);
}

TEST(disconnect_golden)
{
	static const char reason[] = "Preferred IP address out of range.";
	uint8_t want[258] = { 0 }, got[258];
	struct vpnkit_vmnet_response r;
	char longer[400];

	want[0] = 0x02;
	want[1] = (uint8_t)strlen(reason); /* 34 */
	put_text(want + 2, reason, strlen(reason));
	memset(got, 0xaa, sizeof(got));
	vpnkit_vmnet_disconnect_encode(got, reason);
	ASSERT_EQ_MEM(got, want, 258);
	ASSERT_OK(vpnkit_vmnet_response_decode(want, 258, &r));
	ASSERT_EQ_U64(r.type, VPNKIT_VMNET_DISCONNECT);
	ASSERT_EQ_STR(r.reason, reason);

	/* A reason longer than a u8 is cut to 255 bytes. */
	memset(longer, 'x', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	vpnkit_vmnet_disconnect_encode(got, longer);
	ASSERT_EQ_U64(got[1], 255);
	ASSERT_EQ_U64(got[2 + 254], 'x');
	ASSERT_EQ_U64(got[2 + 255], 0);
	ASSERT_OK(vpnkit_vmnet_response_decode(got, 258, &r));
	ASSERT_EQ_U64(strlen(r.reason), 255);
}

TEST(response_decode_rejects)
{
	uint8_t buf[259] = { 0 };
	struct vpnkit_vmnet_response r;

	memcpy(buf, vif_1500, sizeof(vif_1500));
	ASSERT_OK(vpnkit_vmnet_response_decode(buf, 258, &r));
	ASSERT_ERR(vpnkit_vmnet_response_decode(buf, 257, &r), -EMSGSIZE);
	ASSERT_ERR(vpnkit_vmnet_response_decode(buf, 259, &r), -EMSGSIZE);
	/* a VIF with mtu 0, or a max_packet_size below an Ethernet header */
	buf[1] = buf[2] = 0;
	ASSERT_ERR(vpnkit_vmnet_response_decode(buf, 258, &r), -EINVAL);
	buf[1] = 0xdc;
	buf[2] = 0x05;
	buf[3] = 13;
	buf[4] = 0;
	ASSERT_ERR(vpnkit_vmnet_response_decode(buf, 258, &r), -EINVAL);
	/* unknown types */
	buf[0] = 0;
	ASSERT_ERR(vpnkit_vmnet_response_decode(buf, 258, &r), -EOPNOTSUPP);
	buf[0] = 3;
	ASSERT_ERR(vpnkit_vmnet_response_decode(buf, 258, &r), -EOPNOTSUPP);
	/* a disconnect's reason is made printable */
	memset(buf, 0, sizeof(buf));
	buf[0] = 2;
	buf[1] = 3;
	buf[2] = 'o';
	buf[3] = '\n';
	buf[4] = 0xff;
	ASSERT_OK(vpnkit_vmnet_response_decode(buf, 258, &r));
	ASSERT_EQ_STR(r.reason, "o??");
}

static const struct test_case tests[] = {
	TEST_CASE(init_encode_golden),
	TEST_CASE(init_encode_short_commit_is_padded),
	TEST_CASE(init_decode_golden),
	TEST_CASE(init_decode_rejects),
	TEST_CASE(command_ethernet_golden),
	TEST_CASE(command_preferred_ip_golden),
	TEST_CASE(command_decode_zero_uuid_and_case),
	TEST_CASE(command_decode_rejects),
	TEST_CASE(command_encode_rejects_bad_uuid),
	TEST_CASE(vif_golden),
	TEST_CASE(max_packet_size_clamps),
	TEST_CASE(vif_mtu_65520),
	TEST_CASE(disconnect_golden),
	TEST_CASE(response_decode_rejects),
};

TEST_MAIN(tests);
