"""Consistent hashing on a header, a cookie, a query argument and the client address: the same
key always reaches the same backend, different keys spread over all of them, and disabling one
backend (weight 0, by a reload) moves only that backend's keys.  Random two choices: a slow
backend gets fewer requests than the fast ones under concurrent load."""

import collections
import threading
import time

import pytest

from conftest import route, service
from rawhttp import Client, request

NAMES = "ABC"

# kind -> (upstream settings, how a request carries key k)
KINDS = {
    "header": ({"hash_on": "header", "hash_on_header": "X-User"},
               lambda k: dict(target="/h/x", headers=[("X-User", "user-%d" % k)])),
    "cookie": ({"hash_on": "cookie", "hash_on_cookie": "session"},
               lambda k: dict(target="/h/x",
                              headers=[("Cookie", "theme=dark; session=s%d; lang=en" % k)])),
    "query_arg": ({"hash_on": "query_arg", "hash_on_query_arg": "uid"},
                  lambda k: dict(target="/h/x?a=1&uid=%d&z=2" % k)),
    # 127.0.0.0/8 is all loopback on Linux: one source address per key
    "ip": ({"hash_on": "ip"}, lambda k: dict(target="/h/x", source="127.0.0.%d" % (k % 250 + 2))),
}


def upstreams(backends, settings, weights=None):
    weights = weights or [100] * len(backends)
    up = {"name": "pool", "algorithm": "consistent-hashing",
          "targets": [{"target": "127.0.0.1:%d" % b.port, "weight": w}
                      for b, w in zip(backends, weights)]}
    up.update(settings)
    return [up]


def services(extra_route=False):
    routes = [route("r", ["/h"])]
    if extra_route:
        routes.append(route("marker", ["/reloaded"]))
    return [service("s", "http://pool", routes)]


def backend_for(gw, how):
    r = request(gw.port, "GET", how["target"], headers=how.get("headers"),
                source=how.get("source"))
    assert r.status == 200, r
    return r.json()["backend"]


def wait_for(cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_consistent_hashing(stack, kind):
    settings, key = KINDS[kind]
    backends = [stack.backend(n) for n in NAMES]
    gw = stack.gateway(services(), upstreams=upstreams(backends, settings), workers=2)

    # the same key always reaches the same backend (fresh connections: both workers serve it)
    for k in (7, 8, 9):
        seen = {backend_for(gw, key(k)) for _ in range(50)}
        assert len(seen) == 1, "key %d reached %s" % (k, seen)

    # 200 distinct keys reach all three backends
    before = {k: backend_for(gw, key(k)) for k in range(200)}
    counts = collections.Counter(before.values())
    assert set(counts) == set(NAMES), counts

    # weight 0 for B (by a reload): only B's keys move, and none of them to B
    gw.write_config(services=services(extra_route=True),
                    upstreams=upstreams(backends, settings, weights=[100, 0, 100]))
    gw.reload()
    assert wait_for(lambda: request(gw.port, "GET", "/reloaded").status == 200, 10), gw.logs()
    after = {k: backend_for(gw, key(k)) for k in range(200)}
    moved = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert all(b == "B" for b, _ in moved.values()), "keys moved between survivors: %s" % moved
    assert "B" not in after.values()
    assert len(moved) == counts["B"]


def test_no_key_falls_back(stack):
    """Without the header, hash_fallback (ip) decides; with neither, round-robin."""
    backends = [stack.backend(n) for n in NAMES]
    settings = {"hash_on": "header", "hash_on_header": "X-User", "hash_fallback": "ip"}
    gw = stack.gateway(services(), upstreams=upstreams(backends, settings))
    for src in ("127.0.0.5", "127.0.0.6", "127.0.0.7"):
        seen = {backend_for(gw, dict(target="/h/x", source=src)) for _ in range(20)}
        assert len(seen) == 1, seen
    gw.write_config(services=services(extra_route=True),
                    upstreams=upstreams(backends, {"hash_on": "header",
                                                   "hash_on_header": "X-User"}))
    gw.reload()
    assert wait_for(lambda: request(gw.port, "GET", "/reloaded").status == 200, 10), gw.logs()
    with Client(gw.port) as c:
        seq = [c.request("GET", "/h/x").json()["backend"] for _ in range(30)]
    assert collections.Counter(seq) == {"A": 10, "B": 10, "C": 10}, seq


def test_random_two_choices_avoids_slow_backend(stack):
    backends = [stack.backend(n) for n in NAMES]
    slow = backends[1]
    fast_respond = slow.respond

    def slow_respond(req, sock, rd):
        time.sleep(0.3)  # this backend only: as if every request were /sleep/300
        return fast_respond(req, sock, rd)

    slow.respond = slow_respond
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/p"])])],
                       upstreams=[{"name": "pool", "algorithm": "random-two-choices",
                                   "targets": [{"target": "127.0.0.1:%d" % b.port}
                                               for b in backends]}],
                       workers=2)
    counts = collections.Counter()
    errors = []
    lock = threading.Lock()

    def client():
        try:
            with Client(gw.port, timeout=20) as c:
                for _ in range(15):
                    r = c.request("GET", "/p/x")
                    assert r.status == 200, r
                    with lock:
                        counts[r.json()["backend"]] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert sum(counts.values()) == 300, counts
    assert counts["B"] < counts["A"] and counts["B"] < counts["C"], counts
    # in-flight requests pile up on the slow backend, so it loses almost every comparison
    assert counts["B"] < min(counts["A"], counts["C"]) / 2, counts


def test_repeated_header_fields_hash_like_one_joined_field(stack):
    # RFC 9110 §5.3: "X-K: a" + "X-K: b" is the same field as "X-K: a, b"
    backends = [stack.backend(n) for n in "ABCD"]
    gw = stack.gateway(services(), upstreams=upstreams(backends, {"hash_on": "header",
                                                                 "hash_on_header": "X-K"}))
    for k in range(20):
        a, b = "u%d" % k, "v%d" % k
        joined = backend_for(gw, {"target": "/h/x", "headers": [("X-K", "%s, %s" % (a, b))]})
        tight = backend_for(gw, {"target": "/h/x", "headers": [("X-K", "%s,%s" % (a, b))]})
        split = backend_for(gw, {"target": "/h/x", "headers": [("X-K", a), ("X-K", b)]})
        assert joined == tight == split
