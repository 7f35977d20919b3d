#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The vpnkit daemon's transports and control socket, driven by Python
# clients written from the protocol descriptions (not from our code):
#   cli          --help exits 0, unknown flags and bad values exit 2
#   vmn3t/*      hyperkit's handshake byte by byte: the 49-byte init
#                ("VMN3T", version 22), the 258-byte VIF (the configured
#                MTU, mtu+50 clamped to 65535, a locally administered
#                unicast MAC, zero padding); one UUID keeps its MAC and
#                DHCP address across reconnects; a preferred IP is
#                honoured (its LE byte order checked through DHCP); one
#                out of range, or the legacy bind command, gets a
#                disconnect reply; vmnet-client prints the VIF
#   garbage/*    a peer with an unknown first byte, or a bad QEMU length,
#                is disconnected while a connected VM carries on
#   vmn3t/handshake-timeout  peers that connect and never attach (silent,
#                a partial init, an init without its command) fill the 256
#                connection slots, so the next is refused at once; after
#                --handshake-timeout those in the handshake are closed and
#                counted, the silent ones (QEMU may be waiting for its
#                guest) stay until a newcomer finds every slot taken, when
#                the one silent for longest makes room; attached VMs
#                (VMN3T and QEMU) that stayed idle are still served
#   arp/*        an ARP request for the gateway 192.168.65.1 is answered
#                over each framing: VMN3T (u16 LE), QEMU (u32 BE),
#                SOCK_DGRAM and SOCK_SEQPACKET
#   control/*    add, list, remove; errors for bad JSON, unknown ops and
#                missing forwards; a line over 4 KiB disconnects; stats
#   backpressure a VM that stops reading while a UDP forward floods it:
#                the frames it then reads are whole and in order, and
#                after the stall traffic flows again (send -EAGAIN, then
#                EPOLLOUT and vpnkit_port_resume)
#   shutdown     SIGTERM: exit 0, socket files and pid file removed
set -u
. "$(dirname "$0")/lib.sh"
e2e_init vpnkit-transports

P=vpnkit
if ! have_cmd vpnkit; then
	not_ok "$P/built" "vpnkit is not on PATH ($UNIKIT_BUILD/bin)"
	e2e_finish
fi

# ---------------------------------------------------------------- clients

cat >"$T/vk.py" <<'EOF'
# Test clients for the vpnkit daemon: each case is a function; it raises
# (or asserts) on failure, and its name is the first argument.
import os, random, socket, struct, sys, time

GATEWAY = bytes([192, 168, 65, 1])
TIMEOUT = 5.0
UUID = "5b0f3c1e-2a4d-4e6f-8a9b-0c1d2e3f4a5b"

def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return buf

def connect(path, kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_UNIX, kind)
    s.settimeout(TIMEOUT)
    s.connect(path)
    return s

def init_msg(version=22):
    return b"VMN3T" + struct.pack("<I", version) + b"f" * 40

def command(cmd, uuid=UUID, ip=None):
    u = uuid.encode() if uuid else b"\0" * 36
    assert len(u) == 36
    tail = socket.inet_aton(ip)[::-1] if ip else b"\0" * 4
    return bytes([cmd]) + u + tail

def vmn3t_open(path, cmd=1, uuid=UUID, ip=None):
    """Handshake; returns (socket, init reply, response)."""
    s = connect(path)
    s.sendall(init_msg())
    init = recv_exact(s, 49)
    s.sendall(command(cmd, uuid, ip))
    resp = recv_exact(s, 258)
    return s, init, resp

def parse_vif(resp):
    assert resp[0] == 1, f"response type {resp[0]}, reason {resp[2:2 + resp[1]]!r}"
    mtu, maxp = struct.unpack_from("<HH", resp, 1)
    return mtu, maxp, resp[5:11]

def expect_eof(s, what):
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        try:
            if s.recv(65536) == b"":
                return
        except ConnectionResetError:
            return
    raise AssertionError(f"{what}: still connected")

class Link:
    """One port's frames, in the framing of its transport."""
    def __init__(self, kind, sock, peer=None):
        self.kind, self.s, self.peer, self.buf = kind, sock, peer, b""

    def send(self, frame):
        if self.kind == "le16":
            self.s.sendall(struct.pack("<H", len(frame)) + frame)
        elif self.kind == "be32":
            self.s.sendall(struct.pack(">I", len(frame)) + frame)
        elif self.kind == "dgram":
            self.s.sendto(frame, self.peer)
        else:
            self.s.send(frame)

    def recv(self):
        if self.kind in ("dgram", "seqpacket"):
            return self.s.recv(70000)
        hl, fmt = (2, "<H") if self.kind == "le16" else (4, ">I")
        while True:
            if len(self.buf) >= hl:
                (n,) = struct.unpack_from(fmt, self.buf)
                if len(self.buf) >= hl + n:
                    frame = self.buf[hl:hl + n]
                    self.buf = self.buf[hl + n:]
                    return frame
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("link closed")
            self.buf += chunk

    def wait_for(self, match, what):
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            frame = self.recv()
            r = match(frame)
            if r is not None:
                return r
        raise AssertionError(f"no {what} within {TIMEOUT} s")

def random_mac():
    return bytes([0x02] + [random.randrange(256) for _ in range(5)])

def arp_gateway(link, mac):
    frame = (b"\xff" * 6 + mac + b"\x08\x06" +
             struct.pack(">HHBBH", 1, 0x0800, 6, 4, 1) +
             mac + b"\0\0\0\0" + b"\0" * 6 + GATEWAY)
    link.send(frame)

    def match(f):
        if len(f) < 42 or f[12:14] != b"\x08\x06":
            return None
        op, = struct.unpack_from(">H", f, 20)
        if op != 2 or f[28:32] != GATEWAY:
            return None
        assert f[32:38] == mac, f"ARP reply to {f[32:38].hex()}, not {mac.hex()}"
        return f[22:28]
    gw_mac = link.wait_for(match, "ARP reply for 192.168.65.1")
    assert gw_mac[0] & 1 == 0, f"gateway MAC {gw_mac.hex()} is multicast"
    return gw_mac

def ip_checksum(h):
    s = sum(struct.unpack(f">{len(h) // 2}H", h))
    s = (s & 0xffff) + (s >> 16)
    s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff

def dhcp_offer(link, mac):
    """DHCPDISCOVER from mac; returns the offered address (dotted)."""
    xid = random.randrange(1 << 32)
    bootp = (struct.pack(">BBBBIHH", 1, 1, 6, 0, xid, 0, 0x8000) +
             b"\0" * 16 + mac + b"\0" * 10 + b"\0" * 192 +
             b"\x63\x82\x53\x63" + b"\x35\x01\x01" + b"\x37\x02\x01\x03" +
             b"\xff")
    udp = struct.pack(">HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17,
                     0, b"\0" * 4, b"\xff" * 4)
    ip = ip[:10] + struct.pack(">H", ip_checksum(ip)) + ip[12:]
    link.send(b"\xff" * 6 + mac + b"\x08\x00" + ip + udp)

    def match(f):
        if len(f) < 14 + 20 + 8 + 240 or f[12:14] != b"\x08\x00":
            return None
        ihl = (f[14] & 15) * 4
        if f[14 + 9] != 17:
            return None
        u = 14 + ihl
        sport, dport = struct.unpack_from(">HH", f, u)
        b = u + 8
        if sport != 67 or dport != 68 or f[b] != 2:
            return None
        if struct.unpack_from(">I", f, b + 4)[0] != xid:
            return None
        return socket.inet_ntoa(f[b + 16:b + 20])
    return link.wait_for(match, "DHCP offer")

# ------------------------------------------------------------ cases

def case_handshake(sock, mtu):
    mtu = int(mtu)
    s, init, resp = vmn3t_open(sock)
    assert len(init) == 49
    assert init[:9] == b"VMN3T\x16\0\0\0", f"init starts {init[:9].hex()}"
    assert all(0x20 <= c < 0x7f or c == 0 for c in init[9:]), "commit not ASCII"
    assert len(resp) == 258
    got_mtu, maxp, mac = parse_vif(resp)
    assert got_mtu == mtu, f"mtu {got_mtu}, want {mtu}"
    assert maxp == min(mtu + 50, 65535), f"max_packet_size {maxp} for mtu {mtu}"
    assert mac[0] & 1 == 0, f"MAC {mac.hex()} is multicast"
    assert mac[0] & 2 == 2, f"MAC {mac.hex()} is not locally administered"
    assert resp[11:] == b"\0" * 247, "VIF padding is not zero"
    s.close()

def case_identity(sock):
    s, _, resp = vmn3t_open(sock, uuid=UUID)
    mac1 = parse_vif(resp)[2]
    ip1 = dhcp_offer(Link("le16", s), mac1)
    s.close()
    # hyperkit reconnects at once: no pause here
    s, _, resp = vmn3t_open(sock, uuid=UUID)
    mac2 = parse_vif(resp)[2]
    assert mac1 == mac2, f"MAC {mac1.hex()} then {mac2.hex()}"
    ip2 = dhcp_offer(Link("le16", s), mac2)
    assert ip1 == ip2, f"IP {ip1} then {ip2}"
    # a different UUID is a different VM
    s2, _, resp = vmn3t_open(sock, uuid="00000000-1111-4222-8333-444444444444")
    mac3 = parse_vif(resp)[2]
    assert mac3 != mac1, "two UUIDs share a MAC"
    ip3 = dhcp_offer(Link("le16", s2), mac3)
    assert ip3 != ip1, "two UUIDs share an IP"
    s.close()
    s2.close()

def case_same_uuid_twice(sock):
    # the UUID of a connected VM is refused with a disconnect reply
    s, _, resp = vmn3t_open(sock, uuid="aaaaaaaa-1111-4222-8333-444444444444")
    parse_vif(resp)
    s2, _, resp2 = vmn3t_open(sock, uuid="aaaaaaaa-1111-4222-8333-444444444444")
    assert resp2[0] == 2, f"second attach got type {resp2[0]}"
    expect_eof(s2, "refused VM")
    s.close()

def case_preferred_ip(sock):
    s, _, resp = vmn3t_open(sock, cmd=8,
                            uuid="bbbbbbbb-1111-4222-8333-444444444444",
                            ip="192.168.65.77")
    mac = parse_vif(resp)[2]
    ip = dhcp_offer(Link("le16", s), mac)
    assert ip == "192.168.65.77", f"offered {ip}"
    s.close()

def case_out_of_range(sock):
    s, _, resp = vmn3t_open(sock, cmd=8,
                            uuid="cccccccc-1111-4222-8333-444444444444",
                            ip="10.1.2.3")
    assert resp[0] == 2, f"response type {resp[0]}"
    n = resp[1]
    reason = resp[2:2 + n]
    assert n > 0 and all(0x20 <= c < 0x7f for c in reason), f"reason {reason!r}"
    assert resp[2 + n:] == b"\0" * (256 - n), "disconnect padding is not zero"
    print(f"reason: {reason.decode()}", file=sys.stderr)
    expect_eof(s, "refused VM")

def case_bind_legacy(sock):
    s, _, resp = vmn3t_open(sock, cmd=6)
    assert resp[0] == 2, f"legacy bind got type {resp[0]}"
    expect_eof(s, "legacy bind")

def case_bad_version(sock):
    s = connect(sock)
    s.sendall(init_msg(version=21))
    init = recv_exact(s, 49)
    assert init[:9] == b"VMN3T\x16\0\0\0"
    expect_eof(s, "version 21 client")

def case_garbage(sock):
    a, _, resp = vmn3t_open(sock, uuid="dddddddd-1111-4222-8333-444444444444")
    mac = parse_vif(resp)[2]
    link = Link("le16", a)
    arp_gateway(link, mac)
    for junk in (b"\xff" + os.urandom(100),            # unknown framing
                 b"GET / HTTP/1.0\r\n\r\n",            # a lost web client
                 struct.pack(">I", 5) + b"x" * 5,      # QEMU length < 14
                 struct.pack(">I", 70000)):            # QEMU length > 65535
        g = connect(sock)
        g.sendall(junk)
        expect_eof(g, f"peer sending {junk[:8]!r}")
        g.close()
    # an LE16 frame longer than the announced max_packet_size
    b, _, resp = vmn3t_open(sock, uuid="eeeeeeee-1111-4222-8333-444444444444")
    maxp = parse_vif(resp)[1]
    b.sendall(struct.pack("<H", maxp + 1) + b"\0" * (maxp + 1))
    expect_eof(b, "peer sending an oversized u16 frame")
    # the first VM still works
    arp_gateway(link, mac)
    a.close()

def case_arp(kind, path):
    mac = random_mac()
    if kind == "le16":
        s, _, resp = vmn3t_open(path, uuid=None)
        mac = parse_vif(resp)[2]
        link = Link("le16", s)
    elif kind == "be32":
        link = Link("be32", connect(path))
    elif kind == "dgram":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.settimeout(TIMEOUT)
        s.bind(path + f".client{os.getpid()}")
        link = Link("dgram", s, path)
    else:
        link = Link("seqpacket", connect(path, socket.SOCK_SEQPACKET))
    gw = arp_gateway(link, mac)
    print(f"gateway MAC {gw.hex()}", file=sys.stderr)
    if kind == "dgram":
        os.unlink(path + f".client{os.getpid()}")

def control(path, lines):
    s = connect(path)
    f = s.makefile("rwb")
    out = []
    for line in lines:
        f.write(line.encode() + b"\n")
        f.flush()
        reply = f.readline()
        assert reply.endswith(b"\n"), f"no reply to {line!r}"
        import json
        out.append(json.loads(reply))
    s.close()
    return out

def case_control(path, port):
    import json
    fwd = f"tcp:127.0.0.1:{port}:192.168.65.9:80"
    r = control(path, [
        '{"op":"list"}',
        json.dumps({"op": "add", "forward": fwd}),
        json.dumps({"op": "add", "forward": fwd}),
        '{"op":"list"}',
        json.dumps({"op": "remove", "forward": f"tcp:127.0.0.1:{port}"}),
        '{"op":"list"}',
        json.dumps({"op": "remove", "forward": f"tcp:127.0.0.1:{port}"}),
    ])
    assert r[0] == {"ok": True, "forwards": []}, r[0]
    assert r[1] == {"ok": True}, r[1]
    assert r[2]["ok"] is False and r[2]["error"], r[2]
    assert r[3] == {"ok": True, "forwards": [fwd]}, r[3]
    assert r[4] == {"ok": True}, r[4]
    assert r[5] == {"ok": True, "forwards": []}, r[5]
    assert r[6]["ok"] is False, r[6]

def case_control_port_freed(path, port):
    import json
    port = int(port)
    fwd = f"tcp:127.0.0.1:{port}:192.168.65.9:80"
    assert control(path, [json.dumps({"op": "add", "forward": fwd})])[0]["ok"]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", port))
        raise AssertionError("the forward does not hold its host port")
    except OSError:
        pass
    t.close()
    assert control(path, [json.dumps({"op": "remove",
                                      "forward": fwd})])[0]["ok"]
    t = socket.socket()
    t.bind(("127.0.0.1", port))   # free at once after remove
    t.close()

def case_control_errors(path):
    r = control(path, [
        'not json',
        '{"op":"add"}',
        '{"op":"add","forward":"tcp:nonsense"}',
        '{"op":"frobnicate"}',
        '{"op":"list","extra":1}',
        '{"op":"list",}',
        '{"op":["list"]}',
        '{"op":"li\\u0073t"}',
        '{"op":"remove","forward":"udp:127.0.0.1:1"}',
        '{"op":"stats"}',
    ])
    for i in range(7):
        assert r[i]["ok"] is False and isinstance(r[i]["error"], str), (i, r[i])
    assert r[7]["ok"] is True and r[7]["forwards"] == [], r[7]
    assert r[8]["ok"] is False, r[8]
    st = r[9]
    for k in ("frames_in", "frames_out", "bytes_in", "bytes_out", "dropped",
              "bad", "refused", "ports", "tcp_flows", "udp_flows",
              "icmp_flows", "fds", "transport_peers_bad"):
        assert isinstance(st.get(k), int), f"stats lacks {k}: {st}"
    assert st["transport_peers_bad"] >= 1, st
    # a line over 4 KiB: disconnected
    s = connect(path)
    s.sendall(b'{"op":"' + b"x" * 8192)
    expect_eof(s, "control client with a long line")

def case_backpressure(sock, ctl, hport):
    """A VM that stops reading: vpnkit's buffer fills, it must hold the
    rest back (not corrupt the stream) and carry on once the VM reads."""
    import json
    hport = int(hport)
    gip = "192.168.65.50"
    s, _, resp = vmn3t_open(sock, cmd=8,
                            uuid="ffffffff-1111-4222-8333-444444444444",
                            ip=gip)
    parse_vif(resp)
    link = Link("le16", s)
    fwd = f"udp:127.0.0.1:{hport}:{gip}:9999"
    assert control(ctl, [json.dumps({"op": "add", "forward": fwd})])[0]["ok"]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    # 56 MB, paced so that vpnkit keeps up with the host socket: far
    # more than the socket buffers and vpnkit's own buffer hold
    total = 40000
    for i in range(total):
        u.sendto(struct.pack(">I", i) + b"p" * 1396, ("127.0.0.1", hport))
        if i % 50 == 49:
            time.sleep(0.001)
    time.sleep(0.5)

    def udp_seq(f):
        if len(f) < 42 or f[12:14] != b"\x08\x00" or f[23] != 17:
            return None
        ihl = (f[14] & 15) * 4
        u4 = 14 + ihl
        dport, ulen = struct.unpack_from(">HH", f, u4 + 2)
        if dport != 9999:
            return None
        payload = f[u4 + 8:u4 + ulen]
        assert len(payload) == 1400 and payload[4:] == b"p" * 1396, \
            f"datagram damaged: {len(payload)} bytes"
        return struct.unpack_from(">I", payload)[0]

    got, last = 0, -1
    s.settimeout(2.0)
    try:
        while True:
            n = udp_seq(link.recv())
            if n is None:
                continue
            assert n > last, f"datagram {n} after {last}"
            last, got = n, got + 1
    except socket.timeout:
        pass
    print(f"{got} of {total} datagrams arrived while the VM was slow",
          file=sys.stderr)
    assert got > 1000, f"only {got} datagrams"
    # after the stall, traffic flows again
    s.settimeout(TIMEOUT)
    for i in range(total, total + 10):
        u.sendto(struct.pack(">I", i) + b"p" * 1396, ("127.0.0.1", hport))
    for i in range(total, total + 10):
        n = link.wait_for(udp_seq, f"datagram {i} after the stall")
        assert n == i, f"datagram {n}, want {i}"
    assert control(ctl, [json.dumps({"op": "remove",
                                     "forward": fwd})])[0]["ok"]
    s.close()

def stats(ctl):
    return control(ctl, ['{"op":"stats"}'])[0]

def connect_waiting(path):
    """Connect even when the backlog is full (blocking until there is
    room), then use the usual timeout."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(TIMEOUT)
    return s

def still_open(s):
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        s.settimeout(TIMEOUT)

def wait_connections(ctl, n, until):
    """The daemon may still be accepting what waits in the backlog."""
    while stats(ctl)["connections"] != n and time.time() < until:
        time.sleep(0.01)
    st = stats(ctl)
    assert st["connections"] == n, (n, st)

def case_handshake_timeout(sock, ctl, timeout):
    timeout = float(timeout)
    vm, _, resp = vmn3t_open(sock, uuid="12345678-1111-4222-8333-444444444444")
    mac = parse_vif(resp)[2]
    vm_link = Link("le16", vm)
    qemu_mac = random_mac()
    qemu = Link("be32", connect(sock))
    arp_gateway(qemu, qemu_mac)
    bad0 = stats(ctl)["transport_peers_bad"]
    # Every other slot taken by a peer that never attaches.
    t0 = time.time()
    idle = []
    for i in range(256 - 2):
        s = connect_waiting(sock)
        if i % 3 == 1:
            s.sendall(b"VMN3")           # a slow loris
        elif i % 3 == 2:
            s.sendall(init_msg())        # an init, never a command
        idle.append(s)
    # (the control socket has slots of its own)
    wait_connections(ctl, 256, t0 + timeout / 2)
    extra = connect_waiting(sock)
    extra.settimeout(timeout / 2)
    assert extra.recv(1) == b"", "connection 257 was not refused at once"
    assert time.time() - t0 < timeout / 2, "too slow to fill the slots in time"
    assert still_open(idle[1]), "a slow loris was closed early"
    # Those in the handshake are closed after the timeout (an init gets
    # its answer first); the silent ones stay.
    for i, s in enumerate(idle):
        if i % 3 == 0:
            continue
        s.settimeout(timeout + TIMEOUT)
        if i % 3 == 2:
            assert recv_exact(s, 49)[:5] == b"VMN3T"
        expect_eof(s, f"peer {i} in the handshake")
    assert time.time() - t0 >= timeout * 0.9, "closed before the deadline"
    silent = [s for i, s in enumerate(idle) if i % 3 == 0]
    assert all(still_open(s) for s in silent), "a silent peer was closed"
    st = stats(ctl)
    assert st["connections"] == 2 + len(silent), st
    assert st["transport_peers_bad"] == bad0 + 254 - len(silent), (bad0, st)
    # Fill the slots again with fresh silent peers: a newcomer now takes
    # the slot of the one silent for longest, and attaches.
    t1 = time.time()
    fresh = [connect_waiting(sock) for _ in range(256 - 2 - len(silent))]
    wait_connections(ctl, 256, t1 + timeout / 2)
    s, _, resp = vmn3t_open(sock, uuid="87654321-1111-4222-8333-444444444444")
    parse_vif(resp)
    closed = [x for x in silent if not still_open(x)]
    assert len(closed) == 1, f"{len(closed)} silent peers made room"
    assert closed[0] is silent[0], "not the one silent for longest"
    assert all(still_open(x) for x in fresh), "a fresh silent peer went"
    # The attached VMs carried on.
    arp_gateway(vm_link, mac)
    arp_gateway(qemu, qemu_mac)
    s.close()
    vm.close()

if __name__ == "__main__":
    globals()["case_" + sys.argv[1]](*sys.argv[2:])
EOF

vk() {
	"$PYTHON" "$T/vk.py" "$@"
}

# start_daemon NAME ARGS...: run vpnkit in the background, wait for its
# pid file; sets $PID.
start_daemon() {
	local name=$1 i
	shift
	vpnkit --pidfile "$T/$name.pid" "$@" >"$T/$name.log" 2>&1 &
	PID=$!
	for ((i = 0; i < 100; i++)); do
		[ -s "$T/$name.pid" ] && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.05
	done
	return 1
}

# ---------------------------------------------------------------- cli

cli() {
	local out=$T/cli.out
	vpnkit --help >"$out" 2>&1 || return 1
	grep -q -- '--listen-seqpacket' "$out" || return 1
	grep -q -- '--handshake-timeout' "$out" || return 1
	for args in "--bogus" "--mtu 12" "--mtu 1500x" "--listen" \
		"--subnet 10.0.0.1/24 --listen $T/x" "--dns maybe --listen $T/x" \
		"--forward tcp:1.2.3.4 --listen $T/x" "--host-ip 1.2.3 --listen $T/x" \
		"--handshake-timeout 0 --listen $T/x" \
		"" "extra"; do
		# shellcheck disable=SC2086
		vpnkit $args >"$out" 2>&1
		local rc=$?
		if [ "$rc" -ne 2 ] || ! [ -s "$out" ]; then
			echo "vpnkit $args: exit $rc (want 2 and a message)"
			cat "$out"
			return 1
		fi
	done
}
check "$P/cli" cli

# ---------------------------------------------------------------- daemon

S=$T/vk.sock
if ! start_daemon main --listen "$S" --listen-dgram "$T/vk.dgram" \
	--listen-seqpacket "$T/vk.seq" --control "$T/vk.ctl" --dns off -v; then
	not_ok "$P/start" "$T/main.log"
	e2e_finish
fi
MAIN_PID=$PID
ok "$P/start"

check "$P/vmn3t/handshake" vk handshake "$S" 1500
check "$P/vmn3t/same-uuid-same-mac-and-ip" vk identity "$S"
check "$P/vmn3t/uuid-in-use-refused" vk same_uuid_twice "$S"
check "$P/vmn3t/preferred-ip" vk preferred_ip "$S"
check "$P/vmn3t/preferred-ip-out-of-range" vk out_of_range "$S"
check "$P/vmn3t/legacy-bind-refused" vk bind_legacy "$S"
check "$P/vmn3t/bad-version-closed" vk bad_version "$S"

vif_client() {
	local out
	out=$(vmnet-client --socket "$S" --print-vif) || return 1
	echo "$out"
	[[ $out =~ ^mtu=1500\ max_packet_size=1550\ mac=([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]]
}
if have_cmd vmnet-client; then
	check "$P/vmn3t/vmnet-client" vif_client
else
	not_ok "$P/vmn3t/vmnet-client" "vmnet-client is not built"
fi

check "$P/garbage/peers-disconnected-others-carry-on" vk garbage "$S"

check "$P/arp/vmn3t" vk arp le16 "$S"
check "$P/arp/qemu-stream" vk arp be32 "$S"
check "$P/arp/dgram" vk arp dgram "$T/vk.dgram"
check "$P/arp/seqpacket" vk arp seqpacket "$T/vk.seq"

FWD_PORT=$((20000 + RANDOM % 20000))
check "$P/control/add-list-remove" vk control "$T/vk.ctl" "$FWD_PORT"
check "$P/control/host-port-freed" vk control_port_freed "$T/vk.ctl" \
	$((FWD_PORT + 1))
check "$P/control/errors-and-stats" vk control_errors "$T/vk.ctl"
check "$P/vmn3t/backpressure-then-resume" vk backpressure "$S" "$T/vk.ctl" \
	$((FWD_PORT + 2))

clamp() {
	start_daemon big --listen "$T/big.sock" --mtu 65520 --dns off ||
		return 1
	local pid=$PID rc=0
	vk handshake "$T/big.sock" 65520 || rc=1
	kill "$pid"
	wait "$pid" || rc=1
	return $rc
}
check "$P/vmn3t/mtu-65520-clamps-max-packet-size" clamp

handshake_timeout() {
	start_daemon hs --listen "$T/hs.sock" --control "$T/hs.ctl" \
		--dns off --handshake-timeout 2 || return 1
	local pid=$PID rc=0
	vk handshake_timeout "$T/hs.sock" "$T/hs.ctl" 2 || rc=1
	grep -q 'handshake not done within 2 s' "$T/hs.log" || {
		echo "no log line for the timeout"
		rc=1
	}
	kill "$pid"
	wait "$pid" || rc=1
	return $rc
}
check "$P/vmn3t/handshake-timeout-frees-slots" handshake_timeout

shutdown() {
	kill -0 "$MAIN_PID" || return 1
	kill -TERM "$MAIN_PID"
	wait "$MAIN_PID"
	local rc=$?
	[ "$rc" -eq 0 ] || { echo "exit $rc"; return 1; }
	for f in "$T/vk.sock" "$T/vk.dgram" "$T/vk.seq" "$T/vk.ctl" \
		"$T/main.pid"; do
		[ -e "$f" ] && { echo "$f left behind"; return 1; }
	done
	if grep -E 'ERROR|AddressSanitizer|runtime error' "$T/main.log"; then
		return 1
	fi
	return 0
}
check "$P/shutdown" shutdown
if [ "$E2E_FAILED" -ne 0 ]; then
	echo "# daemon log (last lines):"
	tail -n 30 "$T/main.log" | sed 's/^/#   /'
fi

e2e_finish
