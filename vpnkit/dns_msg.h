/* SPDX-License-Identifier: MIT */
/*
 * DNS helpers without instance state, shared by dns.c and dhcp.c: reading
 * the parts of a DNS message the gateway needs (header, first question,
 * the EDNS OPT record), building the small answers it gives itself, the
 * RFC 1035 encoding of names (also DHCP option 119), and the host's
 * resolv.conf.
 *
 * Messages come from VMs and from upstream servers and are untrusted: they
 * are read through base/cursor.h, counts are never trusted beyond the
 * bytes present, and compression pointers are never followed (the gateway
 * only ever needs the first name of a message, which cannot be
 * compressed, and steps over other names without resolving them), so a
 * loop of pointers cannot cost anything. Functions return 0 or -errno
 * (-EINVAL for a malformed input, -ENOSPC for a full output buffer).
 */
#ifndef VPNKIT_DNS_MSG_H
#define VPNKIT_DNS_MSG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define VK_DNS_HDR_LEN 12
#define VK_DNS_NAME_MAX 255 /* wire form, root label included */
#define VK_DNS_TEXT_MAX 253 /* text form, no trailing dot */
#define VK_DNS_UDP_MIN 512 /* a UDP answer may always be this long */

/* Header flags (second 16-bit word). */
#define VK_DNS_QR 0x8000u
#define VK_DNS_AA 0x0400u
#define VK_DNS_TC 0x0200u
#define VK_DNS_RD 0x0100u
#define VK_DNS_RA 0x0080u
#define VK_DNS_OPCODE(flags) (((flags) >> 11) & 0xfu)
#define VK_DNS_RCODE(flags) ((flags)&0xfu)

#define VK_DNS_NOERROR 0
#define VK_DNS_FORMERR 1
#define VK_DNS_SERVFAIL 2
#define VK_DNS_NXDOMAIN 3
#define VK_DNS_NOTIMP 4
#define VK_DNS_REFUSED 5
#define VK_DNS_BADVERS 16 /* extended (EDNS) rcode */

#define VK_DNS_TYPE_A 1
#define VK_DNS_TYPE_AAAA 28
#define VK_DNS_TYPE_OPT 41
#define VK_DNS_TYPE_ANY 255
#define VK_DNS_CLASS_IN 1
#define VK_DNS_CLASS_ANY 255

/* What the gateway knows of a query after vk_dns_query_parse. */
struct vk_dns_query {
	uint16_t id, flags;
	uint16_t qdcount, ancount, nscount, arcount;
	/* The first question, if qdcount > 0. */
	bool has_question;
	uint16_t qtype, qclass;
	size_t question_len; /* wire bytes from offset 12: name, type, class */
	/* The name in text form, lower case, no trailing dot ("" is the
	 * root), valid only if name_ok: false when a label holds a dot or a
	 * byte outside printable ASCII (such a name cannot be asked of
	 * getaddrinfo or match a built-in name). */
	bool name_ok;
	char name[VK_DNS_TEXT_MAX + 1];
	/* EDNS (RFC 6891), from an OPT record in the additional section,
	 * when the sections after the question could be walked. */
	bool has_opt;
	uint16_t udp_size; /* as the requester gave it */
	uint8_t edns_version;
	bool edns_do; /* DNSSEC OK */
};

/*
 * Read a query's header, first question and OPT record. Returns 0, or
 * -EINVAL if the message is shorter than a header or its first question
 * is malformed (the caller answers FORMERR when there is a header). A
 * malformed answer, authority or additional section is not an error:
 * has_opt is then false. Does not look at QR or the opcode.
 */
int vk_dns_query_parse(const uint8_t *msg, size_t len, struct vk_dns_query *q);

/*
 * Whether an answer's first question is the query's (names compared
 * without regard to ASCII case, as servers may change it). A query with
 * no question matches any answer with none.
 */
bool vk_dns_question_match(const uint8_t *query, size_t query_len,
			   const uint8_t *answer, size_t answer_len);

/* The largest UDP answer this query may get: 512, or its EDNS size. */
size_t vk_dns_udp_limit(const struct vk_dns_query *q);

/* One address record of an answer built by the gateway. */
struct vk_dns_rr {
	uint16_t type; /* VK_DNS_TYPE_A or _AAAA */
	uint32_t ttl;
	uint8_t addr[16]; /* 4 or 16 bytes used */
};

/*
 * Build the answer to a query parsed into q from msg: the query's header
 * ID, opcode and RD, QR and RA set, AA if aa, the (12-bit) rcode, the
 * query's own first question, the records in rr[] (named by a pointer to
 * the question) and, if the query had an OPT record, one of ours offering
 * udp_size. rcode above 15 needs EDNS: without an OPT in the query it
 * becomes SERVFAIL. Returns the length, or -ENOSPC if cap is too small.
 */
ssize_t vk_dns_answer_build(uint8_t *out, size_t cap, const uint8_t *msg,
			    const struct vk_dns_query *q, unsigned rcode,
			    bool aa, const struct vk_dns_rr *rr, size_t n_rr,
			    uint16_t udp_size);

/*
 * A header-only answer (no question) with this rcode, for a query whose
 * question could not be read: the first 12 bytes of msg must be there.
 */
size_t vk_dns_header_answer(uint8_t out[VK_DNS_HDR_LEN], const uint8_t *msg,
			    unsigned rcode);

/*
 * Cut an answer down to its header and first question with TC set, in
 * place, so the requester retries over TCP. Returns the new length, or 0
 * if the answer's question cannot be read.
 */
size_t vk_dns_truncate(uint8_t *msg, size_t len);

/*
 * Encode a text name ("docker.internal", trailing dot optional, "." or ""
 * for the root) in wire form. Returns its length, or -EINVAL for an empty
 * or over-long label or name, -ENOSPC if cap is too small.
 */
ssize_t vk_dns_name_encode(const char *text, size_t text_len, uint8_t *out,
			   size_t cap);

/* ---------------------------------------------------------------- resolv.conf */

#define VK_RESOLV_MAX 8

/* The nameservers of a resolv.conf, in order. */
struct vk_resolv {
	unsigned n;
	struct sockaddr_storage ns[VK_RESOLV_MAX];
	socklen_t ns_len[VK_RESOLV_MAX];
};

/*
 * Parse resolv.conf text: the "nameserver ADDR" lines, IPv4 or IPv6 (with
 * a %scope for a link-local address), port 53, at most VK_RESOLV_MAX of
 * them; everything else is ignored. As an extension that glibc skips as an
 * unparsable line, a port may follow: "nameserver 127.0.0.1:5353",
 * "nameserver [::1]:5353". Never fails: out->n may be 0.
 */
void vk_resolv_parse(const char *text, size_t len, struct vk_resolv *out);

/* Read and parse the file at path (first 64 KiB). Returns 0 or -errno
 * (out->n is then 0). */
int vk_resolv_load(const char *path, struct vk_resolv *out);

#endif
