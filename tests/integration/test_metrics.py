"""Metrics on status_listen (issue 7): Prometheus text at /metrics, percentiles at
/status/latency, usage at /status/usage.

A known traffic mix gives exact counter values and histogram bucket counts; percentiles match
the test's own timings of a backend with known delays; label cardinality stays bounded under
hostile traffic (CASES.md B56); counters survive a reload by name; plugin outcomes and
per-consumer counts (with the max_consumers cap); connection and upstream gauges; the memory of
a 10,000-route configuration stays within the documented figure.
"""

import json
import math
import os
import random
import re
import socket
import threading
import time
import uuid

from conftest import binary_is_sanitized, check_alive, dead_port, free_port, route, service
from rawhttp import Client, build, request

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')

# Documented figures (README "Metrics"): bytes per series per worker, with percentiles on.
CELL_BYTES = 6072
LATENCY_BYTES = 46328


def parse_prom(text):
    """Parse the exposition text; checks the format as it goes (every sample belongs to a
    family announced by # TYPE, no duplicate series, histogram buckets cumulative with
    +Inf == _count). Returns {(name, frozenset(labels)): float}."""
    types = {}
    out = {}
    for line in text.split("\n"):
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            assert name not in types, "family announced twice: " + name
            types[name] = typ
            continue
        if line.startswith("# HELP "):
            continue
        assert not line.startswith("#"), line
        m = SAMPLE.match(line)
        assert m, "bad sample line: %r" % line
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        fam = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in types:
                fam = name[: -len(suffix)]
        assert fam in types, "sample before its # TYPE: %r" % line
        lab = {}
        rest = labels
        while rest:
            lm = LABEL.match(rest)
            assert lm, "bad labels: %r" % labels
            lab[lm.group(1)] = lm.group(2).replace('\\"', '"').replace("\\n", "\n") \
                .replace("\\\\", "\\")
            rest = rest[lm.end():]
        key = (name, frozenset(lab.items()))
        assert key not in out, "duplicate series: %r" % line
        out[key] = float(value)
    # histograms: cumulative, +Inf == count
    for (name, labs), v in out.items():
        if name.endswith("_count") and types.get(name[:-6]) == "histogram":
            base = name[:-6]
            lab = dict(labs)
            buckets = sorted(((float(dict(l)["le"]), val) for (n, l), val in out.items()
                              if n == base + "_bucket" and
                              {k: x for k, x in dict(l).items() if k != "le"} == lab))
            assert buckets and buckets[-1][0] == math.inf and buckets[-1][1] == v, (name, lab)
            assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), (name, lab)
    return out


def scrape(sport):
    r = request(sport, "GET", "/metrics")
    assert r.status == 200, r
    assert r.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
    return parse_prom(r.body.decode("utf-8"))


def get_json(sport, path):
    r = request(sport, "GET", path)
    assert r.status == 200, r
    assert r.header("content-type") == "application/json"
    return json.loads(r.body)


def series(m, name, **labels):
    """Samples of family `name` whose labels include `labels`: {frozenset(labels): value}."""
    want = set(labels.items())
    return {l: v for (n, l), v in m.items() if n == name and want <= set(l)}


def value(m, name, **labels):
    return m.get((name, frozenset(labels.items())))


def wait_for(fn, timeout=5.0):
    """Poll fn() until it returns something true (requests are counted as they are logged,
    just after the answer is sent)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def send(port, method, target, body=b"", headers=None, host="example.com"):
    """One request on its own connection; returns (request bytes, response, response bytes)."""
    hdrs = list(headers or []) + [("Connection", "close")]
    data = build(method, target, hdrs, body, host=host)
    with Client(port) as c:
        c.send(data)
        r = c.read_final(head=(method == "HEAD"))[1]
    return len(data), r, len(r.raw_head) + len(r.body)


def gw_with_status(stack, services, **kw):
    sport = free_port()
    extra = kw.pop("extra", {})
    extra["status_listen"] = "127.0.0.1:%d" % sport
    gw = stack.gateway(services, extra=extra, **kw)
    # the public listeners open first; the status listener a moment later
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", sport), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "status_listen did not open"
            time.sleep(0.02)
    return gw, sport


def total_requests(m):
    return sum(series(m, "turnpike_http_requests_total").values())


# ---------------------------------------------------------------------------------------------

def test_exact_counters_histograms_and_usage(stack):
    b = stack.backend()
    gw, sport = gw_with_status(stack, [service("a", b.url, [route("ra", ["/a"])]),
                                       service("b", b.url, [route("rb", ["/b"])])], workers=2)
    sent = {"a": [0, 0], "b": [0, 0], "unmatched": [0, 0]}

    def go(key, method, target, status, body=b""):
        n_in, r, n_out = send(gw.port, method, target, body)
        assert r.status == status, r
        sent[key][0] += n_in
        sent[key][1] += n_out

    for _ in range(5):
        go("a", "GET", "/a/x", 200)
    for _ in range(3):
        go("a", "POST", "/a/x", 200, body=b"hello world")
    for _ in range(2):
        go("a", "GET", "/a/status/503", 503)
    go("a", "GET", "/a/status/418", 418)
    go("a", "HEAD", "/a/x", 200)
    go("a", "FOO", "/a/x", 200)
    for _ in range(2):
        go("unmatched", "GET", "/nope/x", 404)
    for _ in range(4):
        go("b", "GET", "/b/sleep/100", 200)

    m = wait_for(lambda: (lambda m: m if total_requests(m) == 19 else None)(scrape(sport)))
    assert m, scrape(sport)
    req = series(m, "turnpike_http_requests_total")
    want = {
        ("a", "ra", "GET", "200"): 5, ("a", "ra", "POST", "200"): 3,
        ("a", "ra", "GET", "503"): 2, ("a", "ra", "GET", "4xx"): 1,
        ("a", "ra", "HEAD", "200"): 1, ("a", "ra", "other", "200"): 1,
        ("", "unmatched", "GET", "404"): 2, ("b", "rb", "GET", "200"): 4,
    }
    got = {(d["service"], d["route"], d["method"], d["code"]): v
           for d, v in ((dict(l), v) for l, v in req.items())}
    assert got == want

    # request duration histograms: route b waited 100 ms upstream, so nothing below 0.1 s
    for fam in ("turnpike_http_request_duration_seconds", "turnpike_upstream_duration_seconds"):
        assert value(m, fam + "_count", service="b", route="rb") == 4
        assert value(m, fam + "_bucket", service="b", route="rb", le="0.1") == 0
        assert value(m, fam + "_bucket", service="b", route="rb", le="5") == 4
        assert value(m, fam + "_bucket", service="b", route="rb", le="+Inf") == 4
        assert value(m, fam + "_sum", service="b", route="rb") >= 0.4
    assert value(m, "turnpike_http_request_duration_seconds_count", service="a", route="ra") == 13
    assert value(m, "turnpike_upstream_duration_seconds_count", service="a", route="ra") == 13
    assert value(m, "turnpike_http_request_duration_seconds_count", service="",
                 route="unmatched") == 2
    # unmatched requests never reached an upstream
    assert value(m, "turnpike_upstream_duration_seconds_count", service="",
                 route="unmatched") is None

    # sizes: exactly the bytes on the wire, heads included
    for key, svc, rt in (("a", "a", "ra"), ("b", "b", "rb"), ("unmatched", "", "unmatched")):
        assert value(m, "turnpike_http_request_size_bytes_sum", service=svc, route=rt) == \
            sent[key][0], key
        assert value(m, "turnpike_http_response_size_bytes_sum", service=svc, route=rt) == \
            sent[key][1], key
    # every request of a is under 1 KiB in, every answer of b (echo JSON) over 256 B
    assert value(m, "turnpike_http_request_size_bytes_bucket", service="a", route="ra",
                 le="1024") == 13
    assert value(m, "turnpike_http_response_size_bytes_bucket", service="b", route="rb",
                 le="256") == 0

    # the log writer's counters: one access-log line per request, none dropped
    assert wait_for(lambda: value(scrape(sport), "turnpike_log_lines_total", log="access") == 19)
    assert value(scrape(sport), "turnpike_log_dropped_total", log="access") == 0

    # usage: the same totals, and the per-minute buckets add up to them
    u = get_json(sport, "/status/usage")
    assert u["minutes"] == 60 and u["consumers"] == []
    routes = {(r["service"], r["route"]): r for r in u["routes"]}
    assert set(routes) == {("a", "ra"), ("b", "rb"), ("", "unmatched")}
    for key, svc, rt, n in (("a", "a", "ra", 13), ("b", "b", "rb", 4),
                            ("unmatched", "", "unmatched", 2)):
        r = routes[(svc, rt)]
        assert r["total"] == {"requests": n, "bytes_in": sent[key][0],
                              "bytes_out": sent[key][1]}
        assert sum(p["requests"] for p in r["per_minute"]) == n
        assert sum(p["bytes_in"] for p in r["per_minute"]) == sent[key][0]
        assert sum(p["bytes_out"] for p in r["per_minute"]) == sent[key][1]
        for p in r["per_minute"]:
            assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:00Z$", p["start"]), p
    check_alive(gw)


def test_percentiles_match_client_timings(stack):
    """P50/P95/P99/P99.9 from /status/latency against the test's own timings of a backend with
    known delays: within the sketch's 1 % plus timing noise (the client's clock also counts
    loopback and Python time)."""
    b = stack.backend()
    gw, sport = gw_with_status(stack, [service("s", b.url, [route("r", ["/s"])])], workers=2)
    delays = [5] * 140 + [20] * 40 + [50] * 16 + [100] * 4
    random.Random(7).shuffle(delays)
    client = []
    for d in delays:
        with Client(gw.port) as c:
            data = build("GET", "/s/sleep/%d" % d, [("Connection", "close")])
            t0 = time.monotonic()
            c.send(data)
            r = c.read_final()[1]
            client.append((time.monotonic() - t0) * 1000.0)
        assert r.status == 200
    doc = wait_for(lambda: (lambda d: d if d["routes"] and
                            d["routes"][0]["total"]["count"] == 200 else None)(
        get_json(sport, "/status/latency")))
    assert doc, get_json(sport, "/status/latency")
    assert doc["window_ms"] == 60000 and doc["relative_error"] == 0.01 and doc["unit"] == "ms"
    (rt,) = doc["routes"]
    (svc,) = doc["services"]
    assert rt["service"] == "s" and rt["route"] == "r" and svc["service"] == "s"
    assert svc["total"] == rt["total"] and svc["upstream"] == rt["upstream"]

    def nearest_rank(values, q):
        s = sorted(values)
        return s[max(1, math.ceil(q * len(s))) - 1]

    # Per request, backend sleep <= upstream time <= gateway total <= the client's time, so
    # the same holds for values of equal rank: a percentile the gateway reports lies between
    # the backend's and the client's of the same rank, give or take the sketch's 1 % (and 2 ms:
    # the gateway's clock stops just after the last byte is handed to the socket).
    noise_ms = 10.0
    for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p99_9", 0.999)):
        exact_delay = nearest_rank(delays, q)
        mine = nearest_rank(client, q)
        for kind in ("total", "upstream"):
            got = rt[kind][key]
            assert got >= exact_delay * 0.99, (kind, key, got, exact_delay)
            assert got <= mine * 1.01 + 2.0, (kind, key, got, mine)
            if q <= 0.95:  # the tail is where a scheduling hiccup of the client lands
                assert abs(got - mine) <= mine * 0.01 + noise_ms, (kind, key, got, mine)
        assert rt["upstream"][key] <= rt["total"][key] * 1.01 + 0.01
    assert rt["upstream"]["count"] == 200

    # the same figures as Prometheus summaries (seconds)
    m = scrape(sport)
    for key, q in (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99"), ("p99_9", "0.999")):
        s = value(m, "turnpike_http_request_latency_seconds", service="s", route="r", quantile=q)
        assert abs(s * 1000.0 - rt["total"][key]) <= 0.002, (q, s, rt["total"][key])
        s = value(m, "turnpike_service_upstream_latency_seconds", service="s", quantile=q)
        assert abs(s * 1000.0 - svc["upstream"][key]) <= 0.002
    assert value(m, "turnpike_http_request_latency_seconds_count", service="s", route="r") == 200
    check_alive(gw)


def test_window_slides_and_empty_window_is_null(stack):
    b = stack.backend()
    gw, sport = gw_with_status(stack, [service("s", b.url, [route("r", ["/s"])])],
                               extra={"metrics": {"latency_window": 1000}})
    assert send(gw.port, "GET", "/s/x")[1].status == 200
    doc = wait_for(lambda: (lambda d: d if d["routes"] else None)(
        get_json(sport, "/status/latency")))
    assert doc["window_ms"] == 1000 and doc["routes"][0]["total"]["count"] == 1
    time.sleep(1.3)
    doc = get_json(sport, "/status/latency")
    total = doc["routes"][0]["total"]
    assert total == {"count": 0, "p50": None, "p95": None, "p99": None, "p99_9": None}
    m = scrape(sport)
    assert math.isnan(value(m, "turnpike_http_request_latency_seconds", service="s", route="r",
                            quantile="0.5"))
    # cumulative figures do not slide
    assert value(m, "turnpike_http_request_latency_seconds_count", service="s", route="r") == 1
    check_alive(gw)


def test_b56_label_cardinality_is_bounded(stack):
    """CASES.md B56: random ids, unmatched scanner paths, random hosts and methods add no
    series; unmatched requests share route="unmatched", unknown methods are "other"."""
    b = stack.backend(recorder=True)
    gw, sport = gw_with_status(stack, [service("api", b.url, [
        route("users", ["/users/{id}"]), route("public", ["/public"])])], workers=2)
    rng = random.Random(56)

    def batch(reqs):
        with Client(gw.port) as c:
            for i in range(0, len(reqs), 100):
                chunk = reqs[i:i + 100]
                c.send(b"".join(chunk))
                for _ in chunk:
                    r = c.read_response()
                    assert r.status in (200, 404), r

    def hostile(n_users, n_nope, n_weird):
        reqs = [build("GET", "/users/%d" % rng.randrange(10 ** 9)) for _ in range(n_users)]
        reqs += [build("GET", "/nope/%s" % uuid.UUID(int=rng.getrandbits(128)))
                 for _ in range(n_nope)]
        for _ in range(n_weird):
            method = rng.choice(["FOO", "BAR1", "X%d" % rng.randrange(10 ** 6)])
            path = rng.choice(["/users/%d" % rng.randrange(10 ** 6), "/public/x",
                               "/nope/%d" % rng.randrange(10 ** 6)])
            host = "h%d.example" % rng.randrange(10 ** 9)
            reqs.append(build(method, path, host=host))
        rng.shuffle(reqs)
        return reqs

    # every kind of request once, then count the series
    warm = [build("GET", "/users/1"), build("GET", "/nope/1"), build("GET", "/public/x")]
    warm += [build("FOO", p) for p in ("/users/1", "/nope/1", "/public/x")]
    batch(warm)
    m0 = wait_for(lambda: (lambda m: m if total_requests(m) == 6 else None)(scrape(sport)))
    assert m0
    rss0 = rss_kib(gw.pid)
    threads = [threading.Thread(target=batch, args=(hostile(5000, 5000, 500),))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m1 = wait_for(lambda: (lambda m: m if total_requests(m) == 6 + 21000 else None)(
        scrape(sport)))
    assert m1, total_requests(scrape(sport))
    assert set(m1) == set(m0), set(m1) ^ set(m0)
    routes = {dict(l)["route"] for l in series(m1, "turnpike_http_requests_total")}
    assert routes == {"users", "public", "unmatched"}
    methods = {dict(l)["method"] for l in series(m1, "turnpike_http_requests_total")}
    assert methods == {"GET", "other"}
    text = request(sport, "GET", "/metrics").body.decode()
    assert "example" not in text and "FOO" not in text and "/nope" not in text
    # memory stays flat: no metric state per path, host or method value (ASan's quarantine
    # keeps every freed request buffer: not measurable there)
    if not binary_is_sanitized():
        assert rss_kib(gw.pid) - rss0 < 8 * 1024
    check_alive(gw)


def test_reload_keeps_counters_by_name(stack):
    b = stack.backend()
    gw, sport = gw_with_status(stack, [service("s", b.url, [route("r1", ["/one"])])])
    for _ in range(3):
        assert send(gw.port, "GET", "/one/x")[1].status == 200
    assert wait_for(lambda: value(scrape(sport), "turnpike_http_requests_total", service="s",
                                  route="r1", method="GET", code="200") == 3)
    # a reload that adds a route: r1 goes on counting where it was
    gw.write_config(services=[service("s", b.url, [route("r1", ["/one"]),
                                                   route("r2", ["/two"])])])
    gw.reload()
    assert wait_for(lambda: send(gw.port, "GET", "/two/x")[1].status == 200)
    assert send(gw.port, "GET", "/one/x")[1].status == 200
    m = wait_for(lambda: (lambda m: m if value(m, "turnpike_http_requests_total", service="s",
                                               route="r1", method="GET", code="200") == 4
                          else None)(scrape(sport)))
    assert m, scrape(sport)
    assert value(m, "turnpike_http_request_duration_seconds_count", service="s", route="r1") == 4
    # renaming r1: its series is no longer exported; the new name starts from zero
    gw.write_config(services=[service("s", b.url, [route("r3", ["/one"]),
                                                   route("r2", ["/two"])])])
    gw.reload()
    assert wait_for(lambda: not series(scrape(sport), "turnpike_http_requests_total",
                                       route="r1"))
    assert send(gw.port, "GET", "/one/x")[1].status == 200
    m = wait_for(lambda: (lambda m: m if value(m, "turnpike_http_requests_total", service="s",
                                               route="r3", method="GET", code="200") == 1
                          else None)(scrape(sport)))
    assert m, scrape(sport)
    assert value(m, "turnpike_http_requests_total", service="s", route="r2", method="GET",
                 code="200") >= 1
    check_alive(gw)


def test_plugin_outcomes_and_consumer_cap(stack):
    b = stack.backend()
    plugins = [{"name": "key-auth"}, {"name": "acl", "config": {"allow": ["gold"]}},
               {"name": "rate-limiting", "config": {"minute": 3}}]
    consumers = [{"username": "c%d" % i, "groups": ["silver" if i == 3 else "gold"],
                  "keyauth_credentials": [{"key": "key-%d" % i}]} for i in (1, 2, 3, 4)]
    gw, sport = gw_with_status(stack, [service("s", b.url, [route("r", ["/r"],
                                                                  plugins=plugins)])],
                               workers=2,
                               extra={"consumers": consumers, "metrics": {"max_consumers": 2}})
    sent = {}

    def go(key, status):
        hdrs = [("apikey", key)] if key else []
        n_in, r, n_out = send(gw.port, "GET", "/r/x", headers=hdrs)
        assert r.status == status, r
        who = {"key-1": "c1", "key-3": "c3", "key-2": "other", "key-4": "other"}.get(key)
        if who:
            s = sent.setdefault(who, [0, 0, 0])
            s[0] += 1
            s[1] += n_in
            s[2] += n_out

    go(None, 401)
    go(None, 401)
    go("wrong-key", 401)
    go("key-3", 403)           # acl: silver is not allowed (c3 is the first consumer seen)
    for _ in range(3):
        go("key-1", 200)
    go("key-1", 429)           # rate-limiting: 3 per minute per consumer
    go("key-2", 200)           # past max_consumers: 2 -> "other"
    go("key-4", 200)
    go("key-4", 200)
    m = wait_for(lambda: (lambda m: m if total_requests(m) == 11 else None)(scrape(sport)))
    assert m
    assert series(m, "turnpike_auth_failures_total") == {
        frozenset({"service": "s", "route": "r", "plugin": "key-auth"}.items()): 3}
    assert series(m, "turnpike_authz_denials_total") == {
        frozenset({"service": "s", "route": "r", "plugin": "acl"}.items()): 1}
    assert series(m, "turnpike_ratelimit_rejections_total") == {
        frozenset({"service": "s", "route": "r", "plugin": "rate-limiting"}.items()): 1}
    assert value(m, "turnpike_http_requests_total", service="s", route="r", method="GET",
                 code="401") == 3
    assert value(m, "turnpike_http_requests_total", service="s", route="r", method="GET",
                 code="429") == 1
    got = {dict(l)["consumer"]: v for l, v in series(m, "turnpike_consumer_requests_total").items()}
    assert got == {"c3": 1, "c1": 4, "other": 3}
    for who, (n, n_in, n_out) in sent.items():
        assert value(m, "turnpike_consumer_request_bytes_total", consumer=who) == n_in
        assert value(m, "turnpike_consumer_response_bytes_total", consumer=who) == n_out
    u = get_json(sport, "/status/usage")
    cons = {c["consumer"]: c for c in u["consumers"]}
    assert set(cons) == {"c1", "c3", "other"}
    for who, (n, n_in, n_out) in sent.items():
        assert cons[who]["total"] == {"requests": n, "bytes_in": n_in, "bytes_out": n_out}
        assert sum(p["requests"] for p in cons[who]["per_minute"]) == n
    check_alive(gw)


def test_connection_and_upstream_gauges(stack):
    b = stack.backend()
    dead = dead_port()
    gw, sport = gw_with_status(
        stack, [service("s", "http://pool", [route("r", ["/s"])], retries=0,
                        circuit_breaker={})],
        upstreams=[{"name": "pool",
                    "healthchecks": {"active": {"interval": 100, "type": "tcp",
                                                "unhealthy_threshold": 1}},
                    "circuit_breaker": {},
                    "targets": [{"target": "127.0.0.1:%d" % b.port},
                                {"target": "127.0.0.1:%d" % dead}]}],
        workers=2)
    live_t, dead_t = "127.0.0.1:%d" % b.port, "127.0.0.1:%d" % dead
    assert wait_for(lambda: value(scrape(sport), "turnpike_upstream_target_health",
                                  upstream="pool", target=dead_t) == 0)
    idle1, idle2, reading = Client(gw.port), Client(gw.port), Client(gw.port)
    reading.send(b"GET /s/x HTTP/1.1\r\nHost: x\r\n")
    slow = threading.Thread(target=lambda: send(gw.port, "GET", "/s/sleep/2500"))
    slow.start()
    try:
        time.sleep(1.4)  # the workers take their census once a second
        m = scrape(sport)
        conns = {dict(l)["state"]: v for l, v in series(m, "turnpike_connections").items()}
        assert conns == {"idle": 2, "reading": 1, "waiting": 0, "proxying": 1, "tunnel": 0,
                         "closing": 0}, conns
        assert value(m, "turnpike_connections_open") == 4
    finally:
        slow.join()
        for c in (idle1, idle2, reading):
            c.close()
    assert value(m, "turnpike_upstream_target_health", upstream="pool", target=live_t) == 1
    assert value(m, "turnpike_upstream_target_circuit_state", upstream="pool", target=live_t,
                 state="closed") == 1
    assert value(m, "turnpike_upstream_target_circuit_state", upstream="pool", target=live_t,
                 state="open") == 0
    assert value(m, "turnpike_service_circuit_state", service="s", state="closed") == 1
    # the slow request's upstream connection went back to the pool
    time.sleep(1.2)
    m = scrape(sport)
    assert value(m, "turnpike_upstream_connections", upstream="pool", target=live_t,
                 state="open") == 1
    assert value(m, "turnpike_upstream_connections", upstream="pool", target=live_t,
                 state="idle") == 1
    assert value(m, "turnpike_connections_open") == 0
    assert value(m, "turnpike_connections_accepted_total") >= 4
    check_alive(gw)


def test_metrics_off_and_status_listener_routes(stack):
    b = stack.backend()
    gw, sport = gw_with_status(stack, [service("s", b.url, [route("r", ["/s"])])],
                               extra={"metrics": {"enabled": False}})
    assert send(gw.port, "GET", "/s/x")[1].status == 200
    for path in ("/metrics", "/status/latency", "/status/usage"):
        r = request(sport, "GET", path)
        assert r.status == 404 and json.loads(r.body)["message"].startswith("metrics are off")
    assert request(sport, "GET", "/status").status == 200
    # the public port does not serve them
    assert request(gw.port, "GET", "/metrics").status == 404
    gw2, sport2 = gw_with_status(stack, [service("s", b.url, [route("r", ["/s"])])],
                                 extra={"metrics": {"latency_window": 0}})
    assert send(gw2.port, "GET", "/s/x")[1].status == 200
    assert request(sport2, "GET", "/status/latency").status == 404
    m = wait_for(lambda: (lambda m: m if total_requests(m) == 1 else None)(scrape(sport2)))
    assert not series(m, "turnpike_http_request_latency_seconds")
    r = request(sport2, "HEAD", "/metrics")
    assert r.status == 200 and r.body == b"" and int(r.header("content-length")) > 0
    check_alive(gw)
    check_alive(gw2)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_10k_routes_memory_within_documented_bound(stack):
    """10,000 configured routes with traffic on 5 of them: the metrics' memory is what README
    documents (per route with traffic and per worker: CELL_BYTES + LATENCY_BYTES; per
    configured route: 4 bytes per worker in the snapshot binding), not per configured route."""
    b = stack.backend(recorder=True)
    routes = [route("r%d" % i, ["/r%d" % i]) for i in range(10000)]
    gws = {}
    for on in (True, False):
        gw, sport = gw_with_status(stack, [service("s", b.url, routes)], workers=2,
                                   extra={"metrics": {"enabled": on}})
        gws[on] = (gw, sport)
    rss = {}
    for on, (gw, sport) in gws.items():
        request(sport, "GET", "/metrics")
        before = rss_kib(gw.pid)
        for k in range(10):  # several connections: both workers count
            with Client(gw.port) as c:
                for i in range(50):
                    assert c.request("GET", "/r%d/x" % (i % 5 * 1999)).status == 200
        for _ in range(3):
            request(sport, "GET", "/metrics")
            request(sport, "GET", "/status/usage")
        rss[on] = (before, rss_kib(gw.pid))
    workers, active = 2, 5
    documented_kib = (workers * active * (CELL_BYTES + LATENCY_BYTES) + workers * 10000 * 4) / 1024
    # allocator and scrape-buffer slack (ASan keeps freed blocks in quarantine)
    slack_kib = 16384 if binary_is_sanitized() else 2048
    bound_kib = documented_kib + slack_kib
    grew_on = rss[True][1] - rss[True][0]
    grew_off = rss[False][1] - rss[False][0]
    print("RSS KiB (before, after) metrics on / off:", rss, "documented KiB", documented_kib)
    if not binary_is_sanitized():
        assert grew_on <= bound_kib, (rss, documented_kib)
    # against the same gateway without metrics: at start, and what the traffic added
    assert rss[True][0] - rss[False][0] <= slack_kib, rss
    assert grew_on - grew_off <= documented_kib + 2048, (rss, documented_kib)
    m = scrape(gws[True][1])
    assert len(series(m, "turnpike_http_requests_total")) == active
    for gw, _ in gws.values():
        check_alive(gw)
