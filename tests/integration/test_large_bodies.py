"""Large bodies stream through with bounded memory: 1 GiB upload and 1 GiB download (byte count and
sha256 checked end to end), and the gateway's peak RSS (VmHWM) stays under 16 MiB.

Data is generated on the fly in 1 MiB blocks (backends.pattern_stream); nothing holds 1 GiB.
The RSS limit is not applied to a sanitizer build (ASan shadow memory and quarantine make RSS
meaningless there); everything else is.
"""

import hashlib
import socket
import time

import pytest

from backends import BLOCK, pattern_sha256, pattern_stream
from conftest import binary_is_sanitized, check_alive, route, service
from rawhttp import Client

GIB = 1 << 30
RSS_LIMIT_KIB = 16 * 1024   # measured: about 3 MiB


@pytest.fixture
def env(stack):
    be = stack.backend("big")
    gw = stack.gateway([service("s", be.url, [route("r", ["/big"])], read_timeout=120000,
                                write_timeout=120000)])
    yield gw, be
    check_alive(gw)


def check_rss(gw):
    hwm = gw.vm_hwm_kib()
    print("turnpike peak RSS (VmHWM): %s KiB" % hwm)
    if binary_is_sanitized():
        return
    assert hwm is not None and hwm < RSS_LIMIT_KIB, "peak RSS %d KiB" % hwm


def test_upload_1gib_content_length(env):
    gw, be = env
    expected = pattern_sha256(GIB)
    with Client(gw.port, timeout=120) as c:
        c.send(b"PUT /big/upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n"
               b"Content-Type: application/octet-stream\r\n\r\n" % GIB)
        for blk in pattern_stream(GIB):
            c.sock.sendall(blk)
        r = c.read_response()
    assert r.status == 200, r
    doc = r.json()
    assert doc["body_len"] == GIB
    assert doc["body_sha256"] == expected
    check_rss(gw)


def test_download_1gib(env):
    gw, be = env
    expected = pattern_sha256(GIB)
    with Client(gw.port, timeout=120) as c:
        c.send(b"GET /big/bytes/%d HTTP/1.1\r\nHost: example.com\r\n\r\n" % GIB)
        r = c.read_head()
        assert r.status == 200, r
        assert r.header("content-length") == str(GIB) or r.header("transfer-encoding")
        h = hashlib.sha256()
        got = len(c.buf)
        h.update(c.buf)
        c.buf.clear()
        buf = bytearray(BLOCK)
        mv = memoryview(buf)
        assert r.header("transfer-encoding") is None, "1 GiB with a known length was re-chunked"
        while got < GIB:
            n = c.sock.recv_into(mv, min(BLOCK, GIB - got))
            assert n > 0, "connection closed after %d bytes" % got
            h.update(mv[:n])
            got += n
        assert got == GIB
        assert h.hexdigest() == expected
        # the connection is still usable
        r2 = c.request("GET", "/big/x")
        assert r2.status == 200
    check_rss(gw)


def test_upload_256mib_chunked(env):
    gw, be = env
    total = 256 * BLOCK
    expected = pattern_sha256(total)
    with Client(gw.port, timeout=120) as c:
        c.send(b"POST /big/upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n")
        size_line = b"%x\r\n" % BLOCK
        for blk in pattern_stream(total):
            c.sock.sendall(size_line + blk + b"\r\n")
        c.send(b"0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200, r
    assert r.json()["body_len"] == total
    assert r.json()["body_sha256"] == expected
    check_rss(gw)


def test_slow_reader_download_bounded_memory(env):
    """The client reads slowly: the gateway must apply back-pressure, not buffer the response."""
    gw, be = env
    total = 256 * BLOCK
    with Client(gw.port, timeout=120) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        c.send(b"GET /big/bytes/%d HTTP/1.1\r\nHost: example.com\r\n\r\n" % total)
        r = c.read_head()
        assert r.status == 200
        time.sleep(2.0)   # the backend keeps writing; the gateway must not buffer it all
        check_rss(gw)
        got = len(c.buf)
        c.buf.clear()
        buf = bytearray(BLOCK)
        while got < total:
            n = c.sock.recv_into(buf, min(BLOCK, total - got))
            assert n > 0
            got += n
    assert got == total
