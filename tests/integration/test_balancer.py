"""Load balancing: smooth weighted round robin (CASES.md B38), round robin, least connections,
retries over refused targets, and all targets down."""

import collections
import threading
import time

from conftest import dead_port, route, service
from rawhttp import Client, assert_json_error, request


def make(stack, weights, algorithm, workers=1, retries=None, extra_targets=()):
    backends = [stack.backend(chr(ord("A") + i)) for i in range(len(weights))]
    targets = [{"target": "127.0.0.1:%d" % b.port, "weight": w} for b, w in zip(backends, weights)]
    targets += [{"target": "127.0.0.1:%d" % p, "weight": 100} for p in extra_targets]
    svc_kw = {} if retries is None else {"retries": retries}
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/lb"])], **svc_kw)],
                       upstreams=[{"name": "pool", "algorithm": algorithm, "targets": targets}],
                       workers=workers)
    return gw, backends


def sequence(gw, n, path="/lb/x"):
    out = []
    with Client(gw.port) as c:
        for _ in range(n):
            r = c.request("GET", path)
            assert r.status == 200, r
            out.append(r.json()["backend"])
    return out


def test_b38_smooth_weighted_round_robin(stack):
    gw, _ = make(stack, [5, 1, 1, 1, 1], "weighted-round-robin")
    first = sequence(gw, 9)
    counts = collections.Counter(first)
    assert counts == {"A": 5, "B": 1, "C": 1, "D": 1, "E": 1}, first
    assert "AAA" not in "".join(first), "bursts instead of interleaving: %s" % "".join(first)
    more = sequence(gw, 900)
    assert collections.Counter(more) == {"A": 500, "B": 100, "C": 100, "D": 100, "E": 100}
    assert "AAA" not in "".join(more)


def test_b38_small_weight_never_starved(stack):
    gw, _ = make(stack, [100, 100, 25], "weighted-round-robin")
    seq = "".join(sequence(gw, 225))
    for i in range(len(seq) - 8):
        assert "C" in seq[i:i + 9], "no C in window %d: %s" % (i, seq[i:i + 9])
    assert collections.Counter(seq) == {"A": 100, "B": 100, "C": 25}


def test_round_robin_equal(stack):
    gw, _ = make(stack, [1, 1, 1], "round-robin")
    seq = sequence(gw, 300)
    assert collections.Counter(seq) == {"A": 100, "B": 100, "C": 100}
    # strictly cyclic with one worker and sequential requests
    assert all(seq[i] != seq[i + 1] for i in range(len(seq) - 1)), "".join(seq[:30])


def test_b38_several_workers(stack):
    gw, _ = make(stack, [100] * 10, "weighted-round-robin", workers=2)
    counts = collections.Counter()
    lock = threading.Lock()
    errors = []

    def worker():
        try:
            for _ in range(250):
                r = request(gw.port, "GET", "/lb/x")
                with lock:
                    counts[r.json()["backend"]] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert sum(counts.values()) == 1000
    for name in "ABCDEFGHIJ":
        assert 90 <= counts[name] <= 110, counts


def test_least_connections_prefers_idle_target(stack):
    gw, _ = make(stack, [1, 1], "least-connections")
    slow = {}

    def slow_req():
        slow["r"] = request(gw.port, "GET", "/lb/sleep/2000", timeout=20)

    t = threading.Thread(target=slow_req)
    t.start()
    time.sleep(0.5)
    quick = sequence(gw, 6)
    t.join(20)
    busy = slow["r"].json()["backend"]
    assert all(b != busy for b in quick), "sent to the busy target %s: %s" % (busy, quick)


def test_retries_skip_refusing_target(stack):
    gw, _ = make(stack, [100], "round-robin", retries=5, extra_targets=[dead_port()])
    seq = sequence(gw, 10)
    assert seq == ["A"] * 10


def test_retries_zero_exposes_refusing_target(stack):
    gw, _ = make(stack, [100], "round-robin", retries=0, extra_targets=[dead_port()])
    statuses = []
    for _ in range(6):
        r = request(gw.port, "GET", "/lb/x")
        statuses.append(r.status)
        if r.status != 200:
            assert_json_error(r, 502)
    assert 502 in statuses and 200 in statuses, statuses


def test_all_targets_down_502(stack):
    ports = [dead_port(), dead_port()]
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/lb"])], retries=3)],
                       upstreams=[{"name": "pool", "algorithm": "round-robin",
                                   "targets": [{"target": "127.0.0.1:%d" % p, "weight": 1}
                                               for p in ports]}])
    t0 = time.monotonic()
    r = request(gw.port, "GET", "/lb/x")
    assert_json_error(r, 502)
    assert time.monotonic() - t0 < 10


def test_retry_sends_the_new_targets_host(stack):
    # the head is built for the first target; a retry on another one must not carry its Host
    be = stack.backend("B")
    dead = dead_port()
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/lb"])], retries=3)],
                       upstreams=[{"name": "pool", "algorithm": "round-robin",
                                   "targets": [{"target": "127.0.0.1:%d" % dead, "weight": 1},
                                               {"target": "127.0.0.1:%d" % be.port,
                                                "weight": 1}]}])
    for _ in range(4):
        r = request(gw.port, "GET", "/lb/x")
        assert r.status == 200, r
        hosts = [v for n, v in r.json()["headers"] if n.lower() == "host"]
        assert hosts == ["127.0.0.1:%d" % be.port]
