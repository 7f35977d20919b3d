// SPDX-License-Identifier: MIT
/*
 * The kernel inside a bzImage, unpacked by us instead of by the guest.
 *
 * Theory of operation. A bzImage's protected-mode part is a small
 * decompressor followed by the real kernel, an ELF vmlinux compressed
 * with gzip, xz or zstd (setup header fields payload_offset and
 * payload_length; the build appends the uncompressed size as 4 bytes,
 * little-endian). Booted the usual way, the guest runs that decompressor
 * first: tens of megabytes of output on every boot, the largest single
 * cost before the kernel's first instruction. Instead we decompress the
 * payload on the host, once, keep the ELF in a cache directory under a
 * name derived from the payload's bytes, and on every boot copy its
 * PT_LOAD segments to their physical addresses and enter the kernel's
 * own 64-bit entry point (e_entry is physical: the linker script's
 * phys_startup_64), with the zero page in %rsi as before. That is the
 * state the decompressor would have left; the kernel runs at its link
 * address, so there is nothing to relocate (and no KASLR).
 *
 * Everything here is input we did not write: sizes are bounded, every
 * segment must lie in low RAM above 1 MiB, and any doubt sends the caller
 * back to the ordinary bzImage entry. The cache is only a cache: a file
 * that is missing, short or not an ELF is unpacked again, and a directory
 * we cannot write costs only the unpacking.
 */
#include <errno.h>
#include <fcntl.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "base/endian.h"
#include "internal.h"

#define HDR_PAYLOAD_OFFSET 0x248
#define HDR_PAYLOAD_LENGTH 0x24c
#define VMLINUX_MAX (512u << 20)

#define EHDR_SIZE 64u
#define PHDR_SIZE 56u
#define PT_LOAD 1u

/* A 64-bit hash of the payload, a word at a time (not cryptographic: it
 * names a cache file, which is checked again when read). */
static uint64_t payload_hash(const uint8_t *p, size_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		h ^= load_le64(p + i);
		h *= 0xff51afd7ed558ccdull;
		h ^= h >> 32;
	}
	for (; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

static int unpack_xz(const uint8_t *in, size_t in_len, uint8_t *out,
		     size_t out_len, size_t *got)
{
	lzma_stream z = LZMA_STREAM_INIT;
	lzma_ret r;

	if (lzma_stream_decoder(&z, UINT64_MAX, 0) != LZMA_OK)
		return -ENOMEM;
	z.next_in = in;
	z.avail_in = in_len;
	z.next_out = out;
	z.avail_out = out_len;
	r = lzma_code(&z, LZMA_FINISH);
	*got = out_len - z.avail_out;
	lzma_end(&z);
	return r == LZMA_STREAM_END ? 0 : -EBADMSG;
}

static int unpack_gzip(const uint8_t *in, size_t in_len, uint8_t *out,
		       size_t out_len, size_t *got)
{
	z_stream z = { 0 };
	int r;

	if (in_len > UINT32_MAX || out_len > UINT32_MAX ||
	    inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
		return -EBADMSG;
	z.next_in = (uint8_t *)(uintptr_t)in;
	z.avail_in = (uInt)in_len;
	z.next_out = out;
	z.avail_out = (uInt)out_len;
	r = inflate(&z, Z_FINISH);
	*got = out_len - z.avail_out;
	inflateEnd(&z);
	return r == Z_STREAM_END ? 0 : -EBADMSG;
}

static int unpack_zstd(const uint8_t *in, size_t in_len, uint8_t *out,
		       size_t out_len, size_t *got)
{
	size_t frame = ZSTD_findFrameCompressedSize(in, in_len), r;

	if (ZSTD_isError(frame))
		return -EBADMSG;
	r = ZSTD_decompress(out, out_len, in, frame);
	if (ZSTD_isError(r))
		return -EBADMSG;
	*got = r;
	return 0;
}

/* Decompress payload (with its 4-byte size trailer) into a new buffer. */
static int unpack(const uint8_t *p, size_t n, uint8_t **out, size_t *out_len)
{
	static const uint8_t xz[6] = { 0xfd, '7', 'z', 'X', 'Z', 0 };
	static const uint8_t zst[4] = { 0x28, 0xb5, 0x2f, 0xfd };
	size_t want, got = 0;
	uint8_t *buf;
	int err;

	if (n < 16)
		return -ENOEXEC;
	want = load_le32(p + n - 4);
	if (want < EHDR_SIZE || want > VMLINUX_MAX)
		return -ENOEXEC;
	buf = malloc(want);
	if (!buf)
		return -ENOMEM;
	if (memcmp(p, xz, sizeof(xz)) == 0)
		err = unpack_xz(p, n - 4, buf, want, &got);
	else if (p[0] == 0x1f && p[1] == 0x8b)
		err = unpack_gzip(p, n - 4, buf, want, &got);
	else if (memcmp(p, zst, sizeof(zst)) == 0)
		err = unpack_zstd(p, n - 4, buf, want, &got);
	else
		err = -ENOTSUP; /* lz4, lzo, lzma, bzip2: the guest's job */
	if (!err && got != want)
		err = -EBADMSG;
	if (err) {
		free(buf);
		return err;
	}
	*out = buf;
	*out_len = want;
	return 0;
}

/* The cache file for this payload, or "" when there is no directory. */
static void cache_path(char *path, size_t len, const char *dir,
		       const uint8_t *p, size_t n)
{
	const char *base = dir, *sub = "";

	if (!base || !*base) {
		base = getenv("XDG_CACHE_HOME");
		sub = "/hyperkit";
	}
	if (!base || !*base) {
		base = getenv("HOME");
		sub = "/.cache/hyperkit";
	}
	path[0] = '\0';
	if (base && *base)
		snprintf(path, len, "%s%s/vmlinux-%016llx-%zu", base, sub,
			 (unsigned long long)payload_hash(p, n), n);
}

/* mkdir -p of path's directory part, 0700 for what we create. */
static void make_dirs(const char *path)
{
	char buf[PATH_MAX_HK];
	char *s;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return;
	for (s = buf + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		mkdir(buf, 0700);
		*s = '/';
	}
}

/* Whether path's directory exists (made if need be) and takes files. */
static bool cache_writable(const char *path)
{
	char dir[PATH_MAX_HK];
	char *slash;

	make_dirs(path);
	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return false;
	slash = strrchr(dir, '/');
	if (!slash)
		return false;
	*slash = '\0';
	return access(dir[0] ? dir : "/", W_OK) == 0;
}

static int read_cache(const char *path, size_t want, uint8_t **out)
{
	struct stat st;
	uint8_t *buf;
	size_t off = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != want) {
		close(fd);
		return -ESTALE;
	}
	buf = malloc(want);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (off < want) {
		ssize_t r = read(fd, buf + off, want - off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(buf);
			close(fd);
			return -EIO;
		}
		off += (size_t)r;
	}
	close(fd);
	*out = buf;
	return 0;
}

/* Write the ELF under a temporary name and rename it into place, so a
 * reader never sees half a file (cache_writable made the directory).
 * Failures only cost the next boot. */
static void write_cache(const char *path, const uint8_t *elf, size_t len,
			const struct logger *lg)
{
	char tmp[PATH_MAX_HK + 16];
	size_t off = 0;
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		logger_printf(lg, LOG_LEVEL_DEBUG, "kernel cache %s: %s", tmp,
			      strerror(errno));
		return;
	}
	while (off < len) {
		ssize_t r = write(fd, elf + off, len - off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		off += (size_t)r;
	}
	if (close(fd) < 0 || off < len || rename(tmp, path) < 0) {
		logger_printf(lg, LOG_LEVEL_DEBUG, "kernel cache %s: not written",
			      path);
		unlink(tmp);
	}
}

int hk_vmlinux_get(const uint8_t *img, size_t img_len,
		   const struct hk_setup *s, const char *cache_dir,
		   bool use_cache, uint8_t **elf, size_t *elf_len,
		   const struct logger *lg)
{
	char path[PATH_MAX_HK];
	uint64_t off, len;
	const uint8_t *p;
	int err;

	if (s->version < 0x208 ||
	    img_len < HDR_PAYLOAD_LENGTH + 4 || !s->entry64)
		return -ENOTSUP;
	off = load_le32(img + HDR_PAYLOAD_OFFSET);
	len = load_le32(img + HDR_PAYLOAD_LENGTH);
	if (off + len > s->payload_bytes || len < 16)
		return -ENOEXEC;
	p = img + s->setup_bytes + off;
	*elf_len = load_le32(p + len - 4);
	if (use_cache) {
		cache_path(path, sizeof(path), cache_dir, p, (size_t)len);
		if (path[0] && read_cache(path, *elf_len, elf) == 0) {
			logger_printf(lg, LOG_LEVEL_DEBUG,
				      "kernel: unpacked copy from %s", path);
			return 0;
		}
		/* Nowhere to keep a copy (a read-only home, as in a
		 * container): unpacking on every boot would gain nothing
		 * over the guest's own decompressor. */
		if (!path[0] || !cache_writable(path)) {
			logger_printf(lg, LOG_LEVEL_DEBUG,
				      "kernel: no writable cache directory "
				      "for %s; the guest decompresses",
				      path[0] ? path : "the kernel");
			return -EROFS;
		}
	}
	err = unpack(p, (size_t)len, elf, elf_len);
	if (err) {
		logger_printf(lg, LOG_LEVEL_DEBUG,
			      "kernel: payload not unpacked (%s); the guest "
			      "decompresses it",
			      strerror(-err));
		return err;
	}
	logger_printf(lg, LOG_LEVEL_DEBUG, "kernel: unpacked %zu bytes",
		      *elf_len);
	if (use_cache && path[0])
		write_cache(path, *elf, *elf_len, lg);
	return 0;
}

int hk_vmlinux_load(const struct hk_mem *m, const uint8_t *elf, size_t len,
		    uint64_t *entry, uint64_t *lo, uint64_t *hi,
		    const struct logger *lg)
{
	uint64_t phoff, e_entry;
	unsigned phnum, i, loads = 0;

	*lo = UINT64_MAX;
	*hi = 0;
	if (len < EHDR_SIZE || memcmp(elf, "\177ELF", 4) != 0 ||
	    elf[4] != 2 /* 64-bit */ || elf[5] != 1 /* little-endian */ ||
	    load_le16(elf + 18) != 62 /* x86-64 */ ||
	    load_le16(elf + 54) != PHDR_SIZE)
		goto bad;
	e_entry = load_le64(elf + 24);
	phoff = load_le64(elf + 32);
	phnum = load_le16(elf + 56);
	if (phnum == 0 || phnum > 64 || phoff > len ||
	    (uint64_t)phnum * PHDR_SIZE > len - phoff)
		goto bad;
	/* First check every segment, then copy: nothing half-loaded. */
	for (int pass = 0; pass < 2; pass++) {
		for (i = 0; i < phnum; i++) {
			const uint8_t *ph = elf + phoff + (uint64_t)i * PHDR_SIZE;
			uint64_t off = load_le64(ph + 8);
			uint64_t paddr = load_le64(ph + 24);
			uint64_t filesz = load_le64(ph + 32);
			uint64_t memsz = load_le64(ph + 40);
			uint8_t *dst;

			if (load_le32(ph) != PT_LOAD)
				continue;
			if (pass == 0) {
				if (filesz > memsz || off > len ||
				    filesz > len - off ||
				    paddr < HK_KERNEL_MIN_GPA ||
				    memsz > m->low || paddr > m->low - memsz)
					goto bad;
				if (paddr < *lo)
					*lo = paddr;
				if (paddr + memsz > *hi)
					*hi = paddr + memsz;
				loads++;
				continue;
			}
			dst = hk_mem_gpa(m, paddr, memsz);
			if (!dst)
				goto bad;
			memcpy(dst, elf + off, filesz);
			memset(dst + filesz, 0, memsz - filesz);
		}
		if (pass == 0 && (loads == 0 || e_entry < *lo || e_entry >= *hi))
			goto bad;
	}
	*entry = e_entry;
	return 0;
bad:
	logger_printf(lg, LOG_LEVEL_DEBUG,
		      "kernel: the unpacked kernel is not an ELF we can load");
	return -ENOEXEC;
}
