#!/usr/bin/env python3
"""An independent client of the Outpost wire contract, written from
../shared/spec/PROTOCOL.md alone (it imports nothing of Outpost's), used by
test/interop/interop.test.ts to check a running agent in every mode.

    contract_client.py HOST PORT MODE [--key HEX] [--ca FILE] --dir DIR
    contract_client.py HOST PORT outbound --cert FILE --keyfile FILE --agent-key KEY --dir DIR

MODE is none, ssl or aes. DIR is a temporary directory the checks may write
in (the agent's AllowedRoots). In mode outbound (§8) the roles turn: this
script is the orchestrator that *listens* (TLS with the given certificate,
on HOST PORT; PORT 0 picks one and "listening PORT" is printed first), the
agent dials it, and the same checks run over the links it opens. Prints one line per check: "ok NAME" or
"FAIL NAME: why", then "N passed, M failed"; exits non-zero on any failure.
"""
import argparse
import hashlib
import os
import socket
import ssl
import struct
import subprocess
import sys
import time

GUID = bytes.fromhex("4ED2EB6CF74A134AB9AF81D3DFC644BE")
VERSION = 1000

# ------------------------------------------------------------ §1 encoding


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def s(text):
    raw = text.encode("utf-8")
    return varint(len(raw)) + raw


def i32(n):
    return struct.pack("<i", n)


def i64(n):
    return struct.pack("<q", n)


def byts(b):
    return i32(len(b)) + b


def nullable(value, enc):
    return b"\x00" if value is None else b"\x01" + enc(value)


class Reader:
    def __init__(self, data):
        self.d = data
        self.p = 0

    def take(self, n):
        if self.p + n > len(self.d):
            raise ValueError("truncated")
        v = self.d[self.p : self.p + n]
        self.p += n
        return v

    def u8(self):
        return self.take(1)[0]

    def bool(self):
        return self.u8() != 0

    def i32(self):
        return struct.unpack("<i", self.take(4))[0]

    def i64(self):
        return struct.unpack("<q", self.take(8))[0]

    def varint(self):
        result = 0
        for i in range(5):
            b = self.u8()
            result |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                return result
        raise ValueError("varint too long")

    def string(self):
        return self.take(self.varint()).decode("utf-8")

    def bytes(self):
        return self.take(self.i32())

    def nullable(self, f):
        return f() if self.bool() else None

    def entry(self):
        return {
            "fullPath": self.string(),
            "isDirectory": self.bool(),
            "size": self.i64(),
            "ticks": self.i64(),
            "mode": self.i32(),
        }


# ------------------------------------------------------------ §3 AES-CBC


class Aes:
    """AES-CBC with PKCS#7, one call per frame; `cryptography` when present, else the openssl binary."""

    def __init__(self, key):
        self.key = key
        self.impl = None
        if os.environ.get("CONTRACT_CLIENT_OPENSSL") == "1":
            return
        try:
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

            self.impl = (Cipher, algorithms, modes)
        except ImportError:
            pass

    def _openssl(self, decrypt, iv, data):
        bits = len(self.key) * 8
        args = ["openssl", "enc", "-aes-%d-cbc" % bits, "-K", self.key.hex(), "-iv", iv.hex(), "-nosalt"]
        if decrypt:
            args.append("-d")
        r = subprocess.run(args, input=data, capture_output=True)
        if r.returncode != 0:
            raise ValueError("bad padding")
        return r.stdout

    def encrypt(self, iv, plain):
        pad = 16 - len(plain) % 16
        padded = plain + bytes([pad]) * pad
        if not self.impl:
            return self._openssl(False, iv, plain)
        Cipher, algorithms, modes = self.impl
        e = Cipher(algorithms.AES(self.key), modes.CBC(iv)).encryptor()
        return e.update(padded) + e.finalize()

    def decrypt(self, iv, data):
        if not self.impl:
            return self._openssl(True, iv, data)
        Cipher, algorithms, modes = self.impl
        d = Cipher(algorithms.AES(self.key), modes.CBC(iv)).decryptor()
        plain = d.update(data) + d.finalize()
        pad = plain[-1]
        if pad < 1 or pad > 16 or plain[-pad:] != bytes([pad]) * pad:
            raise ValueError("bad padding")
        return plain[:-pad]


# ------------------------------------------------------------ connection


class Closed(Exception):
    pass


class Conn:
    def __init__(self, args, session_id=0, key=None, hello=None, sock=None):
        self.args = args
        # Outbound (§8): the agent dialed us; the link is TLS already and we speak first all the same.
        self.sock = sock if sock is not None else socket.create_connection((args.host, args.port), timeout=20)
        self.sock.sendall(hello if hello is not None else GUID + i32(VERSION) + i32(session_id))
        mode = self.recv_exact(1)[0]
        self.iv = self.recv_exact(16) if mode == 2 else None
        rest = Reader(self.recv_exact(8))
        self.mode = mode
        self.session_id = rest.i32()
        self.version = rest.i32() & 0xFFFFFFFF
        self.aes = Aes(key or bytes.fromhex(args.key)) if mode == 2 else None
        self.send_iv = self.recv_iv = self.iv
        self.sent_frames = []
        if mode == 1:
            ctx = ssl.create_default_context(cafile=args.ca)
            ctx.check_hostname = False
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self.sock = ctx.wrap_socket(self.sock)

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise Closed("closed after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return buf

    def send(self, agent_type, command, data):
        if self.aes is None:
            frame = i32(len(data)) + bytes([agent_type]) + i32(command) + data
        else:
            next_iv = os.urandom(16)
            cipher = self.aes.encrypt(self.send_iv, next_iv + bytes([agent_type]) + i32(command) + data)
            self.send_iv = next_iv
            frame = i32(len(cipher)) + cipher
        self.sent_frames.append(frame)
        self.sock.sendall(frame)

    def send_raw(self, frame):
        self.sock.sendall(frame)

    def recv(self):
        """One agent message: (command, data)."""
        length = struct.unpack("<i", self.recv_exact(4))[0]
        if self.aes is None:
            command = struct.unpack("<i", self.recv_exact(4))[0]
            return command, self.recv_exact(length)
        plain = self.aes.decrypt(self.recv_iv, self.recv_exact(length))
        self.recv_iv = plain[:16]
        return struct.unpack("<i", plain[16:20])[0], plain[20:]

    def meta(self, command, data=b""):
        self.send(0, command, data)
        return self.recv()

    def request(self, agent_type, command, token, data=b""):
        """Sends a product request and returns (code, reader after token) of the first reply for the token."""
        self.send(agent_type, command, i32(token) + data)
        while True:
            code, body = self.recv()
            r = Reader(body)
            if code in (100, 101, 102) and r.i32() == token:
                return code, r

    def expect_closed_silently(self):
        self.sock.settimeout(10)
        try:
            data = self.sock.recv(1)
        except (ConnectionResetError, ssl.SSLError):
            return True
        return data == b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def error_of(r):
    kind = r.string()
    message = r.string()
    r.nullable(r.string)
    return kind, message


# ------------------------------------------------------------ checks

results = []


def check(name):
    def wrap(fn):
        try:
            fn()
            results.append((name, None))
            print("ok " + name, flush=True)
        except Exception as e:  # noqa: BLE001 - a check reports whatever failed
            results.append((name, repr(e)))
            print("FAIL %s: %r" % (name, e), flush=True)
        return fn

    return wrap


def run(args):
    mode_byte = {"none": 0, "ssl": 1, "aes": 2}[args.mode]
    d = args.dir
    OTTER = 1

    @check("handshake: reply mode, session granted, version packed")
    def _():
        c = Conn(args)
        assert c.mode == mode_byte, c.mode
        assert c.session_id > 0, c.session_id
        assert c.version >> 24 <= 255
        c.close()

    @check("handshake: wrong protocol ID is closed with nothing written")
    def _():
        sock = socket.create_connection((args.host, args.port), timeout=10)
        sock.sendall(b"\x00" * 16 + i32(VERSION) + i32(0))
        assert sock.recv(1) == b""
        sock.close()

    @check("handshake: version 999 is closed with nothing written")
    def _():
        sock = socket.create_connection((args.host, args.port), timeout=10)
        sock.sendall(GUID + i32(999) + i32(0))
        assert sock.recv(1) == b""
        sock.close()

    c = Conn(args)

    @check("meta: Ping echoes its token")
    def _():
        code, data = c.meta(3, i32(0x01020304))
        assert code == 3 and Reader(data).i32() == 0x01020304, (code, data)

    @check("meta: GetAgentInfo")
    def _():
        code, data = c.meta(4)
        assert code == 4, code
        r = Reader(data)
        product, version, proto = r.string(), r.string(), r.i32()
        assert proto == 1000, proto
        host, platform, release, arch = r.string(), r.string(), r.string(), r.string()
        pid, uptime, types, enc = r.i32(), r.i64(), r.bytes(), r.u8()
        assert types == b"\x00\x01\x02\x03", types
        assert enc == mode_byte, enc
        assert product and version and host and platform and arch and pid > 0 and uptime >= 0

    @check("meta: GetAgentRootPath for Otter")
    def _():
        code, data = c.meta(2, bytes([OTTER]))
        assert code == 2 and Reader(data).string(), (code, data)

    @check("meta: unknown meta command gets MetaError with its code")
    def _():
        code, data = c.meta(77)
        r = Reader(data)
        assert code == 9 and r.i32() == 77, (code, data)

    @check("meta: unknown agent type gets MetaError, connection kept")
    def _():
        c.send(9, 2, i32(1) + s("x"))
        code, data = c.recv()
        assert code == 9 and Reader(data).i32() == 2, (code, data)
        code, _ = c.meta(3, i32(5))
        assert code == 3

    @check("meta: replies are in order")
    def _():
        c.send(0, 3, i32(1))
        c.send(0, 4, b"")
        c.send(0, 3, i32(2))
        got = [c.recv()[0] for _ in range(3)]
        assert got == [3, 4, 3], got

    path = os.path.join(d, "interop-%s.txt" % args.mode)
    content = b"hello from python\n" * 100

    @check("files: WriteAllBytes, FileExists, GetFileInfo, ReadAllBytes, GetFileHash")
    def _():
        code, r = c.request(OTTER, 13, 1, s(path) + byts(content) + nullable(None, i64) + nullable(0o640, i32))
        assert code == 100, (code, error_of(r) if code == 101 else None)
        code, r = c.request(OTTER, 2, 2, s(path))
        assert code == 100 and r.bool() is True
        code, r = c.request(OTTER, 3, 3, s(path))
        assert code == 100 and r.bool() is False, "a file is not a directory"
        code, r = c.request(OTTER, 4, 4, s(path))
        e = r.nullable(r.entry)
        assert code == 100 and e and e["fullPath"] == path and not e["isDirectory"], e
        assert e["size"] == len(content) and e["mode"] & 0o777 == 0o640 and e["mode"] & 0o170000 == 0o100000, e
        code, r = c.request(OTTER, 12, 5, s(path))
        assert code == 100 and r.bytes() == content
        code, r = c.request(OTTER, 18, 6, s(path) + s("sha256"))
        assert code == 100 and r.string() == hashlib.sha256(content).hexdigest()
        code, r = c.request(OTTER, 18, 7, s(path) + s("md5"))
        assert code == 100 and r.string() == hashlib.md5(content).hexdigest()

    @check("files: ListDirectory with a glob, handles, delete, GetFileInfo of nothing is null")
    def _():
        code, r = c.request(OTTER, 5, 8, s(d) + b"\x00" + i32(1) + s("*.txt") + i32(0))
        assert code == 100
        entries = [r.entry() for _ in range(r.i32())]
        assert path in [e["fullPath"] for e in entries], entries
        code, r = c.request(OTTER, 14, 9, s(path) + bytes([3, 1]))  # Open, Read
        assert code == 100
        handle = r.i32()
        code, r = c.request(OTTER, 15, 10, i32(handle) + i64(6) + i32(4))
        assert code == 100 and r.bytes() == b"from"
        code, r = c.request(OTTER, 17, 11, i32(handle))
        assert code == 100
        code, r = c.request(OTTER, 17, 12, i32(handle))
        assert code == 101 and error_of(r)[0] == "InvalidArgument", "an unknown handle"
        code, r = c.request(OTTER, 7, 13, s(path))
        assert code == 100
        code, r = c.request(OTTER, 4, 14, s(path))
        assert code == 100 and r.nullable(r.entry) is None
        code, r = c.request(OTTER, 12, 15, s(path))
        assert code == 101 and error_of(r)[0] == "NotFound"

    @check("files: the preserve-root guard refuses deleting an AllowedRoots entry")
    def _():
        root = os.path.dirname(d)
        code, r = c.request(OTTER, 8, 16, s(root) + b"\x01")
        assert code == 101 and error_of(r)[0] == "AccessDenied", (code, r.d)
        code, r = c.request(OTTER, 9, 17, s(root + "/"))
        assert code == 101 and error_of(r)[0] == "AccessDenied", (code, r.d)
        code, r = c.request(OTTER, 8, 24, s("/") + b"\x01")
        assert code == 101 and error_of(r)[0] == "AccessDenied", (code, r.d)
        assert os.path.isdir(d)

    @check("product: unknown command is Unsupported, malformed arguments InvalidArgument")
    def _():
        code, r = c.request(OTTER, 98, 18)
        assert code == 101 and error_of(r)[0] == "Unsupported"
        code, r = c.request(OTTER, 2, 19, b"\x05ab")
        assert code == 101 and error_of(r)[0] == "InvalidArgument"

    @check("processes: Response before events, output, Exited with the code")
    def _():
        data = s("/bin/sh") + i32(2) + s("-c") + s("echo hi; echo err >&2; exit 3") + nullable(d, s) + i32(0) + b"\x00"
        code, r = c.request(2, 40, 20, data)
        assert code == 100, (code, error_of(r) if code == 101 else None)
        assert r.i32() > 0
        out, err, exited = b"", b"", None
        while exited is None:
            code, body = c.recv()
            r = Reader(body)
            assert code == 102 and r.i32() == 20, code
            kind = r.u8()
            if kind == 1:
                out += r.bytes()
            elif kind == 2:
                err += r.bytes()
            elif kind == 3:
                exited = (r.i32(), r.nullable(r.string))
        assert (out, err, exited) == (b"hi\n", b"err\n", (3, None)), (out, err, exited)

    @check("processes: stdin, TerminateProcess gives exit code -1 and the signal")
    def _():
        data = s("cat") + i32(0) + nullable(d, s) + i32(0) + b"\x01"
        code, r = c.request(1, 40, 21, data)
        assert code == 100, (code, error_of(r) if code == 101 else None)
        code, r = c.request(1, 41, 22, i32(21) + byts(b"ping\n") + b"\x00")
        assert code == 100
        seen = b""
        while seen != b"ping\n":
            code, body = c.recv()
            r = Reader(body)
            assert code == 102 and r.i32() == 21 and r.u8() == 1
            seen += r.bytes()
        code, r = c.request(1, 42, 23, i32(21) + b"\x01")
        assert code == 100
        while True:
            code, body = c.recv()
            r = Reader(body)
            if code == 102 and r.i32() == 21 and r.u8() == 3:
                assert (r.i32(), r.nullable(r.string)) == (-1, "SIGTERM")
                break

    @check("sessions: a running process's output waits for the resumed connection")
    def _():
        c2 = Conn(args)
        sid = c2.session_id
        code, _ = c2.meta(3, i32(1))  # the first valid frame creates the session
        assert code == 3
        data = s("/bin/sh") + i32(2) + s("-c") + s("sleep 1; echo late") + nullable(d, s) + i32(0) + b"\x00"
        code, r = c2.request(1, 40, 30, data)
        assert code == 100, (code, error_of(r) if code == 101 else None)
        c2.close()
        time.sleep(2)
        c3 = Conn(args, session_id=sid)
        assert c3.session_id == sid, (c3.session_id, sid)
        c3.send(0, 3, i32(9))
        got, exited = b"", None
        while exited is None:
            code, body = c3.recv()
            r = Reader(body)
            if code == 3:
                continue
            assert code == 102 and r.i32() == 30, code
            kind = r.u8()
            if kind == 1:
                got += r.bytes()
            elif kind == 3:
                exited = r.i32()
        assert got == b"late\n" and exited == 0, (got, exited)
        c3.send(1, 40, i32(30) + data)  # the token stays reserved until Exited was delivered: now free
        code, _ = c3.recv()
        assert code == 100
        c3.meta(5)
        c3.close()

    if args.mode == "aes":

        @check("aes: a captured frame replayed on another connection is closed, nothing written")
        def _():
            a = Conn(args)
            a.send(0, 3, i32(77))
            assert a.recv()[0] == 3
            frame = a.sent_frames[-1]
            b = Conn(args)
            b.send_raw(frame)
            assert b.expect_closed_silently()
            altered = bytearray(frame)
            altered[4] ^= 0x01  # first cipher block: only nextIV is garbled
            e = Conn(args)
            e.send_raw(bytes(altered))
            assert e.expect_closed_silently()
            a.send_raw(frame)  # and on its own connection
            assert a.expect_closed_silently()

        @check("aes: a wrong key never gets an answer")
        def _():
            for _ in range(40):
                w = Conn(args, key=os.urandom(32))
                w.send(0, 3, i32(1))
                assert w.expect_closed_silently()

    c.meta(5)
    c.close()


# ------------------------------------------------------------ §8 outbound: we listen, the agent dials


def read_preface(tls):
    """Guid | int32 1000 | string key, read bounded (a key of at most 1024 bytes)."""

    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = tls.recv(n - len(buf))
            if not chunk:
                raise Closed("closed in the preface")
            buf += chunk
        return buf

    head = exact(20)
    assert head[:16] == GUID, head[:16].hex()
    assert struct.unpack("<i", head[16:20])[0] == VERSION
    length, shift = 0, 0
    for _ in range(5):
        b = exact(1)[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    assert 0 <= length <= 1024, length
    return exact(length).decode("utf-8")


def run_outbound(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.keyfile)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((args.host, args.port))
    server.listen(16)
    server.settimeout(30)
    print("listening %d" % server.getsockname()[1], flush=True)
    links = []

    def accept():
        raw, _ = server.accept()
        raw.settimeout(20)
        tls = ctx.wrap_socket(raw, server_side=True)
        links.append(tls)
        return tls

    state = {}

    @check("outbound: the agent dials over TLS >= 1.2 and sends GUID | 1000 | its key")
    def _():
        tls = accept()
        assert tls.version() in ("TLSv1.2", "TLSv1.3"), tls.version()
        assert read_preface(tls) == args.agent_key
        state["first"] = tls

    @check("outbound: we send the 24-byte handshake; the agent answers mode 0 with a session")
    def _():
        c = Conn(args, sock=state["first"])
        assert c.mode == 0, c.mode
        assert c.session_id > 0
        state["c"] = c

    @check("outbound: once a link is used the agent dials the next one")
    def _():
        nxt = accept()
        assert read_preface(nxt) == args.agent_key
        state["idle"] = nxt

    c = state.get("c")
    if c is None:
        return

    @check("outbound: meta over the link: Ping and GetAgentInfo (mode 0 reported)")
    def _():
        code, data = c.meta(3, i32(77))
        assert code == 3 and Reader(data).i32() == 77
        code, data = c.meta(4)
        r = Reader(data)
        assert code == 4 and r.string()
        r.string(), r.i32(), r.string(), r.string(), r.string(), r.string(), r.i32(), r.i64(), r.bytes()

    @check("outbound: a product request over the link (CreateDirectory, DirectoryExists)")
    def _():
        target = os.path.join(args.dir, "outbound-made")
        code, _r = c.request(2, 6, 11, s(target))
        assert code == 100, code
        code, r = c.request(2, 3, 12, s(target))
        assert code == 100 and r.bool() is True
        assert os.path.isdir(target)

    @check("outbound: the link dropped, the session resumes on the agent's next link")
    def _():
        sid = c.session_id
        c.close()
        r = Conn(args, session_id=sid, sock=state.pop("idle"))
        assert r.session_id == sid, (r.session_id, sid)
        code, data = r.meta(3, i32(5))
        assert code == 3
        state["r"] = r
        # Using that link made the agent dial another.
        nxt = accept()
        assert read_preface(nxt) == args.agent_key
        state["idle"] = nxt

    @check("outbound: every link dropped, the agent dials again (backoff with jitter)")
    def _():
        state["r"].meta(5)  # CloseSession
        for t in links:
            try:
                t.close()
            except OSError:
                pass
        again = accept()
        assert read_preface(again) == args.agent_key
        again.close()

    server.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("mode", choices=["none", "ssl", "aes", "outbound"])
    p.add_argument("--key")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--keyfile")
    p.add_argument("--agent-key")
    p.add_argument("--dir", required=True)
    args = p.parse_args()
    if args.mode == "outbound":
        run_outbound(args)
    else:
        run(args)
    failed = [n for n, e in results if e]
    print("%d passed, %d failed" % (len(results) - len(failed), len(failed)))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
