#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Peers for the vpnkit namespace rig (tests/e2e/vpnkit_netns.sh).

One program, one subcommand per role, so that the rig starts each server or
client with a single line. Servers bind, then write their port to the file
given with --ready (the rig waits for it) and run until killed. Clients
print what they saw and exit 0 only if it was what the rig expects.

  http       HTTP/1.0 on --bind: GET serves --dir, PUT hashes the body and
             answers "SHA256 LENGTH"
  tcp-echo   echoes every connection until EOF (thousands at once)
  udp-echo   echoes every datagram
  banner     sends --text to each connection and closes it
  dns        a fake upstream DNS server (UDP and TCP) with a few fixed names
  conns      opens N connections at once, echoes a line on each, closes all
  udp-client datagrams of many sizes against an echo server
  probe      one TCP connection: prints what came back, or "refused"
  udp-probe  one datagram: prints the echo, or "timeout"
  ctl        one request to vpnkit's control socket, prints the reply
  fdwatch    samples the number of open descriptors of a process
  freeport   prints a free port on 127.0.0.1 (tcp or udp)
  canbind    exits 0 if the address and port can be bound now
"""

import argparse
import asyncio
import hashlib
import http.server
import json
import os
import random
import resource
import socket
import socketserver
import struct
import sys
import threading
import time


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def announce(path, port):
    """Write the bound port to path atomically (the rig polls for it)."""
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.rename(tmp, path)


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, n)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ------------------------------------------------------------------ servers

def cmd_http(a):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kw):
            super().__init__(*args, directory=a.dir, **kw)

        def log_message(self, fmt, *args):
            pass

        def do_PUT(self):
            left = int(self.headers.get("Content-Length", "0"))
            h = hashlib.sha256()
            total = 0
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                h.update(chunk)
                total += len(chunk)
                left -= len(chunk)
            body = f"{h.hexdigest()} {total}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(http.server.ThreadingHTTPServer):
        address_family = family_of(a.bind)
        request_queue_size = 128

    srv = Server((a.bind, a.port), Handler)
    announce(a.ready, srv.server_address[1])
    srv.serve_forever()


def cmd_tcp_echo(a):
    raise_nofile(16384)

    async def echo(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def main():
        srv = await asyncio.start_server(echo, a.bind, a.port, backlog=4096,
                                         family=family_of(a.bind))
        announce(a.ready, srv.sockets[0].getsockname()[1])
        await srv.serve_forever()

    asyncio.run(main())


def cmd_udp_echo(a):
    s = socket.socket(family_of(a.bind), socket.SOCK_DGRAM)
    s.bind((a.bind, a.port))
    announce(a.ready, s.getsockname()[1])
    while True:
        data, peer = s.recvfrom(65536)
        s.sendto(data, peer)


def cmd_banner(a):
    s = socket.socket(family_of(a.bind), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.bind, a.port))
    s.listen(16)
    announce(a.ready, s.getsockname()[1])
    while True:
        c, _ = s.accept()
        try:
            c.sendall(a.text.encode() + b"\n")
        except OSError:
            pass
        c.close()


# A fake upstream resolver for vpnkit's forward mode. Names (lower case):
#   fwd-test.unikit.example  A 198.51.100.42, TXT "unikit forward"
#   tc-test.unikit.example   over UDP only a truncated (TC) empty answer,
#                            over TCP A 198.51.100.43: a relay that falls
#                            back to TCP gets the address
# anything else: NXDOMAIN. Each query is logged to --log as
# "udp|tcp NAME TYPE edns|noedns".
DNS_A, DNS_TXT, DNS_OPT = 1, 16, 41


def dns_parse(msg):
    """(id, flags, qname, qtype, question_end, has_opt) or None."""
    if len(msg) < 12:
        return None
    qid, flags, qd, an, ns, ar = struct.unpack("!6H", msg[:12])
    if qd != 1:
        return None
    off, labels = 12, []
    while True:
        if off >= len(msg):
            return None
        n = msg[off]
        off += 1
        if n == 0:
            break
        if n > 63 or off + n > len(msg):
            return None
        labels.append(msg[off:off + n].decode("ascii", "replace").lower())
        off += n
    if off + 4 > len(msg):
        return None
    qtype, _ = struct.unpack("!HH", msg[off:off + 4])
    qend = off + 4
    # An OPT record in the additional section: EDNS came through.
    has_opt = False
    if ar and an == 0 and ns == 0 and qend + 11 <= len(msg):
        has_opt = msg[qend] == 0 and \
            struct.unpack("!H", msg[qend + 1:qend + 3])[0] == DNS_OPT
    return qid, flags, ".".join(labels), qtype, qend, has_opt


def dns_answer(msg, transport, log):
    q = dns_parse(msg)
    if q is None:
        return None
    qid, flags, name, qtype, qend, has_opt = q
    if log:
        with open(log, "a") as f:
            f.write(f"{transport} {name} {qtype} "
                    f"{'edns' if has_opt else 'noedns'}\n")
    rrs, rcode, tc = [], 0, False
    if name == "fwd-test.unikit.example":
        if qtype == DNS_A:
            rrs.append((DNS_A, socket.inet_aton("198.51.100.42")))
        elif qtype == DNS_TXT:
            txt = b"unikit forward"
            rrs.append((DNS_TXT, bytes([len(txt)]) + txt))
    elif name == "tc-test.unikit.example":
        if transport == "udp":
            tc = True
        elif qtype == DNS_A:
            rrs.append((DNS_A, socket.inet_aton("198.51.100.43")))
    else:
        rcode = 3
    out_flags = 0x8000 | 0x0400 | 0x0080 | (flags & 0x0100) | rcode
    if tc:
        out_flags |= 0x0200
    arcount = 1 if has_opt else 0
    out = struct.pack("!6H", qid, out_flags, 1, len(rrs), 0, arcount)
    out += msg[12:qend]
    for rtype, rdata in rrs:
        out += b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, 60, len(rdata))
        out += rdata
    if has_opt:
        out += b"\x00" + struct.pack("!HHIH", DNS_OPT, 1232, 0, 0)
    return out


def cmd_dns(a):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((a.bind, a.port))
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((a.bind, a.port))
    t.listen(16)

    def tcp_loop():
        while True:
            c, _ = t.accept()
            c.settimeout(5)
            try:
                buf = b""
                while True:
                    while len(buf) < 2 or len(buf) < 2 + \
                            struct.unpack("!H", buf[:2])[0]:
                        d = c.recv(4096)
                        if not d:
                            raise EOFError
                        buf += d
                    n = struct.unpack("!H", buf[:2])[0]
                    msg, buf = buf[2:2 + n], buf[2 + n:]
                    r = dns_answer(msg, "tcp", a.log)
                    if r is not None:
                        c.sendall(struct.pack("!H", len(r)) + r)
            except (EOFError, OSError):
                pass
            c.close()

    threading.Thread(target=tcp_loop, daemon=True).start()
    announce(a.ready, a.port)
    while True:
        msg, peer = u.recvfrom(65536)
        r = dns_answer(msg, "udp", a.log)
        if r is not None:
            u.sendto(r, peer)


# ------------------------------------------------------------------ clients

def cmd_conns(a):
    """N connections at once; each sends a line and reads it back."""
    raise_nofile(a.n * 2 + 64)

    async def open_one(i):
        return await asyncio.wait_for(
            asyncio.open_connection(a.host, a.port), a.timeout)

    async def talk(i, rw):
        r, w = rw
        line = f"conn {i} {'x' * (i % 50)}\n".encode()
        w.write(line)
        await w.drain()
        got = await asyncio.wait_for(r.readexactly(len(line)), a.timeout)
        return got == line

    async def main():
        t0 = time.monotonic()
        opened = await asyncio.gather(*[open_one(i) for i in range(a.n)],
                                      return_exceptions=True)
        t_open = time.monotonic() - t0
        errors = {}
        live = []
        for i, o in enumerate(opened):
            if isinstance(o, BaseException):
                k = type(o).__name__
                errors[k] = errors.get(k, 0) + 1
            else:
                live.append((i, o))
        results = await asyncio.gather(*[talk(i, rw) for i, rw in live],
                                       return_exceptions=True)
        echoed = sum(1 for r in results if r is True)
        for r in results:
            if isinstance(r, BaseException):
                k = "echo-" + type(r).__name__
                errors[k] = errors.get(k, 0) + 1
            elif r is False:
                errors["echo-mismatch"] = errors.get("echo-mismatch", 0) + 1
        if a.hold:
            await asyncio.sleep(a.hold)
        for _, (r, w) in live:
            w.close()
        for _, (r, w) in live:
            try:
                await asyncio.wait_for(w.wait_closed(), a.timeout)
            except (asyncio.TimeoutError, OSError):
                pass
        return {"wanted": a.n, "connected": len(live), "echoed": echoed,
                "errors": errors, "open_seconds": round(t_open, 2),
                "total_seconds": round(time.monotonic() - t0, 2)}

    res = asyncio.run(main())
    print(json.dumps(res))
    need = a.n if a.min is None else a.min
    return 0 if res["echoed"] >= need else 1


def cmd_udp_client(a):
    """100 datagrams of 1..1400 bytes must all come back intact; then a
    few of --big bytes (IP fragments at MTU 1500) are reported only."""
    rnd = random.Random(20240601)
    fam = family_of(a.host)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.connect((a.host, a.port))
    s.settimeout(a.timeout)
    sizes = [1, 2, 3, 64, 512, 1000, 1399, 1400] + \
        [rnd.randint(1, 1400) for _ in range(92)]

    def roundtrip(n, tries):
        data = rnd.randbytes(n)
        for _ in range(tries):
            try:
                s.send(data)
            except OSError as e:
                return f"send: {e}"
            deadline = time.monotonic() + a.timeout
            while time.monotonic() < deadline:
                try:
                    got = s.recv(65536)
                except socket.timeout:
                    break
                except OSError as e:
                    return f"recv: {e}"
                if got == data:
                    return None
                # A late echo of an earlier try: keep reading.
        return "no echo"

    bad = []
    for n in sizes:
        err = roundtrip(n, 2)
        if err:
            bad.append(f"{n}:{err}")
    big_ok = 0
    big_err = []
    for _ in range(a.big_count):
        err = roundtrip(a.big, 1)
        if err:
            big_err.append(err)
        else:
            big_ok += 1
    print(json.dumps({"small": len(sizes), "small_ok": len(sizes) - len(bad),
                      "small_bad": bad[:10], "big_size": a.big,
                      "big": a.big_count, "big_ok": big_ok,
                      "big_errors": sorted(set(big_err))}))
    return 0 if not bad else 1


def cmd_probe(a):
    s = socket.socket(family_of(a.host), socket.SOCK_STREAM)
    s.settimeout(a.timeout)
    try:
        s.connect((a.host, a.port))
        data = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
        print("data " + data.decode("utf-8", "replace").strip())
    except ConnectionRefusedError:
        print("refused")
    except socket.timeout:
        print("timeout")
    except OSError as e:
        print(f"error {e}")
    return 0


def cmd_udp_probe(a):
    s = socket.socket(family_of(a.host), socket.SOCK_DGRAM)
    s.settimeout(a.timeout)
    try:
        s.sendto(a.msg.encode(), (a.host, a.port))
        data, _ = s.recvfrom(65536)
        print("data " + data.decode("utf-8", "replace"))
    except socket.timeout:
        print("timeout")
    except OSError as e:
        print(f"error {e}")
    return 0


def cmd_ctl(a):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(a.timeout)
    s.connect(a.sock)
    s.sendall(a.request.encode() + b"\n")
    buf = b""
    while b"\n" not in buf:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    line = buf.split(b"\n", 1)[0].decode("utf-8", "replace")
    print(line)
    try:
        return 0 if json.loads(line).get("ok") is True else 1
    except ValueError:
        return 1


def cmd_fdwatch(a):
    """Sample /proc/PID/fd until --stop exists; print the largest count."""
    peak, samples = 0, 0
    path = f"/proc/{a.pid}/fd"
    while not os.path.exists(a.stop):
        try:
            n = len(os.listdir(path))
        except OSError:
            print(f"max {peak} samples {samples} gone")
            return 1
        peak = max(peak, n)
        samples += 1
        time.sleep(a.interval)
    print(f"max {peak} samples {samples}")
    return 0


def cmd_freeport(a):
    kind = socket.SOCK_DGRAM if a.proto == "udp" else socket.SOCK_STREAM
    s = socket.socket(family_of(a.bind), kind)
    s.bind((a.bind, 0))
    print(s.getsockname()[1])


def cmd_canbind(a):
    kind = socket.SOCK_DGRAM if a.proto == "udp" else socket.SOCK_STREAM
    s = socket.socket(family_of(a.bind), kind)
    if kind == socket.SOCK_STREAM:
        # As servers do: connections of the old listener that linger in
        # TIME_WAIT must not count, only a listener still there.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((a.bind, a.port))
        if kind == socket.SOCK_STREAM:
            s.listen(1)
    except OSError as e:
        print(f"cannot bind {a.proto} {a.bind}:{a.port}: {e}")
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def server(name, fn, **extra):
        sp = sub.add_parser(name)
        sp.add_argument("--bind", default="127.0.0.1")
        sp.add_argument("--port", type=int, default=0)
        sp.add_argument("--ready")
        for k, v in extra.items():
            sp.add_argument("--" + k, **v)
        sp.set_defaults(fn=fn)

    server("http", cmd_http, dir={"required": True})
    server("tcp-echo", cmd_tcp_echo)
    server("udp-echo", cmd_udp_echo)
    server("banner", cmd_banner, text={"default": "hello from the guest"})
    server("dns", cmd_dns, log={"default": None})

    sp = sub.add_parser("conns")
    sp.add_argument("host")
    sp.add_argument("port", type=int)
    sp.add_argument("-n", type=int, default=1000)
    sp.add_argument("--timeout", type=float, default=20)
    sp.add_argument("--hold", type=float, default=0)
    sp.add_argument("--min", type=int)
    sp.set_defaults(fn=cmd_conns)

    sp = sub.add_parser("udp-client")
    sp.add_argument("host")
    sp.add_argument("port", type=int)
    sp.add_argument("--timeout", type=float, default=1)
    sp.add_argument("--big", type=int, default=8000)
    sp.add_argument("--big-count", type=int, default=5)
    sp.set_defaults(fn=cmd_udp_client)

    sp = sub.add_parser("probe")
    sp.add_argument("host")
    sp.add_argument("port", type=int)
    sp.add_argument("--timeout", type=float, default=5)
    sp.set_defaults(fn=cmd_probe)

    sp = sub.add_parser("udp-probe")
    sp.add_argument("host")
    sp.add_argument("port", type=int)
    sp.add_argument("msg")
    sp.add_argument("--timeout", type=float, default=3)
    sp.set_defaults(fn=cmd_udp_probe)

    sp = sub.add_parser("ctl")
    sp.add_argument("sock")
    sp.add_argument("request")
    sp.add_argument("--timeout", type=float, default=5)
    sp.set_defaults(fn=cmd_ctl)

    sp = sub.add_parser("fdwatch")
    sp.add_argument("pid", type=int)
    sp.add_argument("--stop", required=True)
    sp.add_argument("--interval", type=float, default=0.01)
    sp.set_defaults(fn=cmd_fdwatch)

    for name, fn in (("freeport", cmd_freeport), ("canbind", cmd_canbind)):
        sp = sub.add_parser(name)
        sp.add_argument("proto", choices=("tcp", "udp"))
        sp.add_argument("--bind", default="127.0.0.1")
        if name == "canbind":
            sp.add_argument("port", type=int)
        sp.set_defaults(fn=fn)

    a = p.parse_args()
    sys.exit(a.fn(a) or 0)


if __name__ == "__main__":
    main()
