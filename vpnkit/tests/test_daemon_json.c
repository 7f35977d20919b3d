// SPDX-License-Identifier: MIT
/*
 * Unit tests for the control socket's JSON (vpnkit/daemon/json.c,
 * included here: it is part of the program, not of the library).
 *
 * Valid requests parse with their escapes decoded; each rule of RFC 8259
 * that the reader enforces is broken in turn and must be refused with a
 * reason; a seeded stream of random and mutated inputs must never crash
 * and must always end in 0 or -EINVAL with a reason. Reply strings are
 * escaped so that any text makes valid JSON.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <base/test.h>

/* The program's source, not the library's: the test builds it in. */
#include "../daemon/json.c" /* NOLINT(bugprone-suspicious-include) */

static struct json_flat obj;

/* Put text's characters (not its NUL) at dst. */
static void put_text(char *dst, const char *text)
{
	while (*text)
		*dst++ = *text++;
}

static void parse_ok(const char *text)
{
	const char *why = "unset";

	if (json_flat_parse(text, strlen(text), &obj, &why) != 0)
		TEST_FAIL("refused %s: %s", text, why);
	ASSERT_NULL(why);
}

static void parse_bad(const char *text, size_t len)
{
	const char *why = NULL;
	int r = json_flat_parse(text, len, &obj, &why);

	if (r != -EINVAL)
		TEST_FAIL("accepted (%d) %.*s", r, (int)len, text);
	ASSERT_NOT_NULL(why);
	ASSERT_EQ_U64(obj.n, 0);
}

#define BAD(s) parse_bad(s, sizeof(s) - 1)

TEST(requests)
{
	const struct json_member *m;

	parse_ok(
		"{\"op\":\"add\",\"forward\":\"tcp:127.0.0.1:8080:192.168.65.3:80\"}");
	ASSERT_EQ_U64(obj.n, 2);
	m = json_flat_get(&obj, "op");
	ASSERT_NOT_NULL(m);
	ASSERT_EQ_INT(m->kind, JSON_STRING);
	ASSERT_EQ_STR(m->value, "add");
	ASSERT_EQ_STR(json_flat_get(&obj, "forward")->value,
		      "tcp:127.0.0.1:8080:192.168.65.3:80");
	ASSERT_NULL(json_flat_get(&obj, "missing"));

	parse_ok(" \t{ \"op\" : \"list\" }\r\n ");
	ASSERT_EQ_STR(json_flat_get(&obj, "op")->value, "list");
	parse_ok("{}");
	ASSERT_EQ_U64(obj.n, 0);
}

TEST(values)
{
	parse_ok("{\"a\":0,\"b\":-12,\"c\":1.5e+3,\"d\":2E-2,\"e\":true,"
		 "\"f\":false,\"g\":null,\"h\":-0.0}");
	ASSERT_EQ_U64(obj.n, 8);
	ASSERT_EQ_INT(json_flat_get(&obj, "a")->kind, JSON_NUMBER);
	ASSERT_EQ_STR(json_flat_get(&obj, "c")->value, "1.5e+3");
	ASSERT_EQ_STR(json_flat_get(&obj, "b")->value, "-12");
	ASSERT_EQ_INT(json_flat_get(&obj, "e")->kind, JSON_TRUE);
	ASSERT_EQ_INT(json_flat_get(&obj, "f")->kind, JSON_FALSE);
	ASSERT_EQ_INT(json_flat_get(&obj, "g")->kind, JSON_NULL);
}

TEST(escapes)
{
	parse_ok("{\"s\":\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t\"}");
	ASSERT_EQ_STR(json_flat_get(&obj, "s")->value, "q\" b\\ s/ \b\f\n\r\t");
	/* BMP and astral code points become UTF-8 */
	parse_ok("{\"s\":\"\\u00e9\\u20AC\\ud83d\\ude00\"}");
	ASSERT_EQ_STR(json_flat_get(&obj, "s")->value,
		      "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	/* escaped keys are decoded before comparison */
	parse_ok("{\"\\u006fp\":\"list\"}");
	ASSERT_NOT_NULL(json_flat_get(&obj, "op"));
	/* raw UTF-8 passes */
	parse_ok("{\"s\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}");
	ASSERT_EQ_STR(json_flat_get(&obj, "s")->value,
		      "caf\xc3\xa9 \xf0\x9f\x98\x80");
}

TEST(refusals)
{
	BAD("");
	BAD("   ");
	BAD("[]");
	BAD("\"op\"");
	BAD("{");
	BAD("{\"a\"}");
	BAD("{\"a\":}");
	BAD("{\"a\":1,}");
	BAD("{,}");
	BAD("{\"a\":1 \"b\":2}");
	BAD("{a:1}");
	BAD("{'a':1}");
	BAD("{\"a\":01}");
	BAD("{\"a\":1.}");
	BAD("{\"a\":.5}");
	BAD("{\"a\":-}");
	BAD("{\"a\":1e}");
	BAD("{\"a\":+1}");
	BAD("{\"a\":tru}");
	BAD("{\"a\":True}");
	BAD("{\"a\":nul}");
	BAD("{\"a\":{}}");
	BAD("{\"a\":[1]}");
	BAD("{\"a\":1}x");
	BAD("{\"a\":1}{}");
	BAD("{\"a\":1,\"a\":2}");
	BAD("{\"a\":\"x\\u0041\",\"\\u0061\":1}"); /* duplicate once decoded */
	/* strings */
	BAD("{\"a\":\"unterminated}");
	BAD("{\"a\":\"tab\there\"}");
	BAD("{\"a\":\"\\x41\"}");
	BAD("{\"a\":\"\\u12\"}");
	BAD("{\"a\":\"\\u12g4\"}");
	BAD("{\"a\":\"\\u0000\"}");
	BAD("{\"a\":\"\\ud83d\"}");
	BAD("{\"a\":\"\\ud83dx\"}");
	BAD("{\"a\":\"\\ud83d\\u0041\"}");
	BAD("{\"a\":\"\\ude00\"}");
	BAD("{\"a\":\"\\");
	/* UTF-8: bad continuation, overlong, surrogate, beyond U+10FFFF,
	 * truncated, stray continuation */
	BAD("{\"a\":\"\xc3\x28\"}");
	BAD("{\"a\":\"\xc0\xaf\"}");
	BAD("{\"a\":\"\xe0\x80\xaf\"}");
	BAD("{\"a\":\"\xed\xa0\x80\"}");
	BAD("{\"a\":\"\xf4\x90\x80\x80\"}");
	BAD("{\"a\":\"\xe2\x82\"}");
	BAD("{\"a\":\"\x80\"}");
	BAD("{\"a\":\"\xff\"}");
	/* a NUL byte in the text */
	parse_bad("{\"a\":\"x\0y\"}", 11);
}

TEST(limits)
{
	char text[JSON_MAX_TEXT + 64];
	size_t n = 0;

	/* 16 members pass, 17 do not */
	n += (size_t)sprintf(text, "{");
	for (int i = 0; i < 16; i++)
		n += (size_t)sprintf(text + n, "%s\"k%d\":%d", i ? "," : "", i,
				     i);
	snprintf(text + n, sizeof(text) - n, "}");
	parse_ok(text);
	ASSERT_EQ_U64(obj.n, 16);
	snprintf(text + n, sizeof(text) - n, ",\"k16\":16}");
	parse_bad(text, strlen(text));

	/* a string filling the whole limit passes; one byte more fails */
	memset(text, 'x', sizeof(text));
	put_text(text, "{\"a\":\"");
	put_text(text + JSON_MAX_TEXT - 2, "\"}");
	ASSERT_OK(json_flat_parse(text, JSON_MAX_TEXT, &obj,
				  &(const char *){ NULL }));
	ASSERT_EQ_U64(strlen(json_flat_get(&obj, "a")->value),
		      JSON_MAX_TEXT - 8);
	put_text(text + JSON_MAX_TEXT - 2, "x\"}");
	parse_bad(text, JSON_MAX_TEXT + 1);
}

/* xorshift, so the random inputs are the same on every run */
static uint32_t rng(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

TEST(random_inputs_never_crash)
{
	static const char seed[] =
		"{\"op\":\"add\",\"forward\":\"tcp:[::1]:80:[fd00::3]:80\","
		"\"n\":-1.5e3,\"t\":true,\"s\":\"\\u00e9\\n\"}";
	static const char alphabet[] =
		"{}[]\":,\\u0123456789abcdefe.+-tnl \t\x80\xc3\xff";
	char buf[256];
	uint32_t s = 12345;
	unsigned accepted = 0;

	for (int iter = 0; iter < 200000; iter++) {
		size_t len;
		const char *why = NULL;
		int r;

		if (iter % 2) {
			/* mutate the valid seed */
			len = sizeof(seed) - 1;
			memcpy(buf, seed, len);
			for (int k = 0; k < 1 + (int)(rng(&s) % 4) && len;
			     k++) {
				size_t at = rng(&s) % len;

				switch (rng(&s) % 3) {
				case 0:
					buf[at] =
						alphabet[rng(&s) %
							 (sizeof(alphabet) - 1)];
					break;
				case 1:
					len = at;
					break;
				default:
					buf[at] = (char)rng(&s);
				}
			}
		} else {
			len = rng(&s) % sizeof(buf);
			for (size_t i = 0; i < len; i++)
				buf[i] = alphabet[rng(&s) %
						  (sizeof(alphabet) - 1)];
		}
		r = json_flat_parse(buf, len, &obj, &why);
		if (r == 0) {
			accepted++;
			ASSERT_NULL(why);
			for (unsigned i = 0; i < obj.n; i++) {
				ASSERT_NOT_NULL(obj.m[i].key);
				ASSERT_NOT_NULL(obj.m[i].value);
			}
		} else {
			ASSERT_EQ_INT(r, -EINVAL);
			ASSERT_NOT_NULL(why);
		}
	}
	test_note("%u of 200000 random inputs were valid objects", accepted);
	ASSERT_GT_U64(accepted, 0);
}

TEST(reply_strings)
{
	struct strbuf sb = { 0 };

	strbuf_add_json(&sb, "a\"b\\c\n\t\x01\x7f caf\xc3\xa9 \xff!");
	ASSERT_FALSE(sb.failed);
	ASSERT_EQ_STR(sb.s,
		      "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f caf\xc3\xa9 ?!\"");
	strbuf_release(&sb);

	/* what we write, we read back */
	strbuf_addf(&sb, "{\"e\":");
	strbuf_add_json(&sb, "x\"y\\z\r\x02");
	strbuf_addf(&sb, ",\"n\":%d}", 42);
	parse_ok(sb.s);
	ASSERT_EQ_STR(json_flat_get(&obj, "e")->value, "x\"y\\z\r\x02");
	ASSERT_EQ_STR(json_flat_get(&obj, "n")->value, "42");
	strbuf_release(&sb);

	/* growth past the first allocation */
	for (int i = 0; i < 1000; i++)
		strbuf_addf(&sb, "%04d", i);
	ASSERT_EQ_U64(sb.len, 4000);
	ASSERT_EQ_MEM(sb.s + 3996, "0999", 4);
	strbuf_release(&sb);
}

static const struct test_case tests[] = {
	TEST_CASE(requests),	  TEST_CASE(values),
	TEST_CASE(escapes),	  TEST_CASE(refusals),
	TEST_CASE(limits),	  TEST_CASE(random_inputs_never_crash),
	TEST_CASE(reply_strings),
};

TEST_MAIN(tests);
