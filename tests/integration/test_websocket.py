"""Upgrade and WebSocket: CASES.md B40, B41, plus tunnel behaviour across reloads and idle limits.

/ws -> echo backend (strip_path: false).  The backend performs the RFC 6455 handshake at /ws and
echoes every frame; /ws/upgrade-NNN answers the upgrade with a final status instead.
"""

import asyncio
import base64
import hashlib
import os
import time

import pytest
import websockets

from backends import WS_GUID, ws_frame
from conftest import check_alive, route, service
from rawhttp import Client, ConnectionClosed


@pytest.fixture(scope="module")
def env(mstack):
    be = mstack.backend("ws")
    gw = mstack.gateway([service("ws", be.url, [route("ws", ["/ws"], strip_path=False)])])
    return gw, be


@pytest.fixture
def wsenv(env):
    env[1].reset()
    yield env
    check_alive(env[0])


def handshake(port, conn_lines=(b"Connection: keep-alive, Upgrade",), upgrade=b"websocket",
              target=b"/ws"):
    c = Client(port, timeout=10)
    key = base64.b64encode(os.urandom(16))
    c.send(b"GET " + target + b" HTTP/1.1\r\nHost: example.com\r\n" +
           b"".join(l + b"\r\n" for l in conn_lines) +
           b"Upgrade: " + upgrade + b"\r\nSec-WebSocket-Key: " + key +
           b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    return c, key


def expected_accept(key):
    return base64.b64encode(hashlib.sha1(key + WS_GUID.encode()).digest()).decode()


def ws_send(c, opcode, payload, fin=True):
    c.send(ws_frame(opcode, payload, fin=fin, mask=os.urandom(4)))


def ws_recv(c):
    h = c._exact(2)
    assert not (h[1] & 0x80), "server frames must not be masked"
    n = h[1] & 0x7F
    if n == 126:
        n = int.from_bytes(c._exact(2), "big")
    elif n == 127:
        n = int.from_bytes(c._exact(8), "big")
    return bool(h[0] & 0x80), h[0] & 0x0F, c._exact(n)


def open_tunnel(port, **kw):
    c, key = handshake(port, **kw)
    r = c.read_head()
    assert r.status == 101, r
    assert (r.header("upgrade") or "").lower() == "websocket"
    assert "upgrade" in [t.strip().lower() for t in (r.header("connection") or "").split(",")]
    assert r.header("sec-websocket-accept") == expected_accept(key)
    return c


@pytest.mark.parametrize("conn_lines,upgrade", [
    ((b"Connection: keep-alive, Upgrade",), b"websocket"),
    ((b"Connection: upgrade",), b"websocket"),
    ((b"Connection: Upgrade",), b"WebSocket"),
    ((b"Connection: keep-alive", b"Connection: Upgrade"), b"websocket"),
], ids=["keep-alive-upgrade", "lower-case", "WebSocket", "two-lines"])
def test_b40_upgrade_tokens(wsenv, conn_lines, upgrade):
    gw, be = wsenv
    c = open_tunnel(gw.port, conn_lines=conn_lines, upgrade=upgrade)
    try:
        ws_send(c, 1, b"hello")
        assert ws_recv(c) == (True, 1, b"hello")
    finally:
        c.close()
    reqs = [r for r in be.all_requests() if r.path == "/ws"]
    assert len(reqs) == 1
    up = reqs[0]
    assert up.conn_tokens() == ["upgrade"], "upstream Connection: %r" % up.header_all("connection")
    assert [v.lower() for v in up.header_all("upgrade")] == ["websocket"]
    assert up.header_all("keep-alive") == []
    assert up.header("sec-websocket-version") == "13"


def test_frames_flow_both_ways(wsenv):
    gw, _ = wsenv
    c = open_tunnel(gw.port)
    try:
        big = os.urandom(70000)
        ws_send(c, 2, big)
        assert ws_recv(c) == (True, 2, big)
        ws_send(c, 1, b"frag-", fin=False)
        ws_send(c, 0, b"ment", fin=True)
        assert ws_recv(c) == (False, 1, b"frag-")
        assert ws_recv(c) == (True, 0, b"ment")
        ws_send(c, 9, b"ping!")
        assert ws_recv(c) == (True, 10, b"ping!")
        for i in range(50):
            msg = ("message %d" % i).encode()
            ws_send(c, 1, msg)
            assert ws_recv(c) == (True, 1, msg)
        ws_send(c, 8, b"\x03\xe8")
        assert ws_recv(c)[1] == 8
        assert c.closed_within(5), "tunnel not closed after the backend closed"
    finally:
        c.close()


def test_websockets_library_client(wsenv):
    gw, _ = wsenv

    async def run():
        async with websockets.connect("ws://127.0.0.1:%d/ws" % gw.port, open_timeout=10) as ws:
            await ws.send("hi there")
            assert await ws.recv() == "hi there"
            await ws.send(b"\x00\x01\x02")
            assert await ws.recv() == b"\x00\x01\x02"

    asyncio.run(asyncio.wait_for(run(), 20))


def test_upgrade_header_without_connection_token_is_ordinary_request(wsenv):
    gw, be = wsenv
    c, _ = handshake(gw.port, conn_lines=(b"Connection: keep-alive",))
    try:
        r = c.read_response()
    finally:
        c.close()
    assert r.status == 200, r
    up = r.json()
    assert up["path"] == "/ws"
    assert [v for n, v in up["headers"] if n.lower() == "upgrade"] == [], \
        "stray Upgrade forwarded"


@pytest.mark.parametrize("code,body", [(426, b""), (403, b"forbidden!!\n"), (200, b"plain body")])
def test_b41_upstream_refuses_upgrade(wsenv, code, body):
    gw, _ = wsenv
    c, _ = handshake(gw.port, target=b"/ws/upgrade-%d" % code)
    try:
        r = c.read_response()
        assert r.status == code, "upstream's %d was not relayed: %r" % (code, r)
        assert r.body == body
        # the gateway stays in HTTP mode: the next request is either answered or the
        # connection is closed -- never tunnelled
        try:
            c.send(b"GET /ws/after HTTP/1.1\r\nHost: example.com\r\n\r\n")
            r2 = c.read_response()
        except (ConnectionClosed, OSError):
            r2 = None
        if r2 is not None:
            assert r2.status == 200 and r2.json()["path"] == "/ws/after", r2
    finally:
        c.close()


def test_tunnel_survives_reload(wsenv):
    gw, _ = wsenv
    c = open_tunnel(gw.port)
    try:
        ws_send(c, 1, b"before")
        assert ws_recv(c) == (True, 1, b"before")
        gw.reload()
        time.sleep(1.0)
        ws_send(c, 1, b"after")
        assert ws_recv(c) == (True, 1, b"after")
    finally:
        c.close()


def test_tunnel_idle_timeout(stack):
    be = stack.backend("ws")
    gw = stack.gateway([service("ws", be.url, [route("ws", ["/ws"], strip_path=False)])],
                       limits={"tunnel_idle_timeout": 1000, "keepalive_timeout": 500,
                               "header_timeout": 500})
    c = open_tunnel(gw.port)
    try:
        # active tunnel: neither the keep-alive nor the header timeout applies
        for i in range(6):
            ws_send(c, 1, b"tick")
            assert ws_recv(c) == (True, 1, b"tick")
            time.sleep(0.4)
        t0 = time.monotonic()
        assert c.closed_within(6), "idle tunnel not closed"
        elapsed = time.monotonic() - t0
        assert 0.5 <= elapsed <= 4.0, elapsed
    finally:
        c.close()


def test_b41_bytes_after_refused_upgrade(wsenv):
    gw, be = wsenv
    c, _ = handshake(gw.port, target=b"/ws/upgrade-426")
    try:
        c.send(b"GET /ws/next HTTP/1.1\r\nHost: example.com\r\n\r\n")
        r = c.read_response()
        assert r.status == 426
        try:
            r2 = c.read_response()
        except (ConnectionClosed, OSError):
            r2 = None
        if r2 is not None:
            assert r2.status == 200 and r2.json()["path"] == "/ws/next", r2
    finally:
        c.close()


def _no_tunnel(port, request):
    """Send an upgrade request that must be handled as a plain request: returns the response and
    the headers the upstream saw."""
    c = Client(port, timeout=10)
    c.send(request)
    r = c.read_response()
    return c, r


def test_http10_upgrade_is_ignored(wsenv):
    # RFC 9110 §7.8: Upgrade in an HTTP/1.0 request is ignored; no tunnel, no Upgrade upstream
    gw, be = wsenv
    c, r = _no_tunnel(gw.port, b"GET /ws HTTP/1.0\r\nHost: example.com\r\nConnection: Upgrade\r\n"
                               b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert r.status == 200, r
    names = [n.lower() for n, _ in r.json()["headers"]]
    assert "upgrade" not in names
    c.close()


@pytest.mark.parametrize("upgrade", [b"h2c", b"websocket, h2c", b"foo"])
def test_non_websocket_upgrade_is_not_tunnelled(wsenv, upgrade):
    # h2c through a proxy is the known way to smuggle an HTTP/2 connection past its routing
    gw, be = wsenv
    c, r = _no_tunnel(gw.port, b"GET /ws HTTP/1.1\r\nHost: example.com\r\n"
                               b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: " + upgrade +
                               b"\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
    assert r.status == 200, r
    names = [n.lower() for n, _ in r.json()["headers"]]
    assert "upgrade" not in names and "http2-settings" not in names
    # still HTTP: the same connection serves another request
    c.send(b"GET /ws/again HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert c.read_response().status == 200
    c.close()
