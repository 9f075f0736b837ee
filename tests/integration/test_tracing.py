"""W3C Trace Context and OTLP/HTTP span export (issue 7, item 4).

A test collector (a small HTTP server in this file) receives the gateway's
ExportTraceServiceRequest JSON on POST /v1/traces.  The spans must continue the client's
traceparent, link up right (the upstream span's parent is the gateway span; the upstream
receives a traceparent whose parent-id is the upstream span's id), obey the sampling rule,
and a dead or slow collector must not slow requests down."""

import http.server
import json
import re
import threading
import time

import pytest

from conftest import check_alive, dead_port, echoed, free_port, route, service, upstream_headers
from rawhttp import Client, request

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
PID = "00f067aa0ba902b7"
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$")


class Collector:
    """OTLP/HTTP JSON receiver: every span of every POST /v1/traces, with its resource."""

    def __init__(self, delay=0.0, status=200):
        self.spans = []
        self.requests = []
        self.lock = threading.Lock()
        self.delay = delay
        self.status = status
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.requests.append((self.path, dict(self.headers), body))
                doc = json.loads(body)
                for rs in doc["resourceSpans"]:
                    res = attrs(rs["resource"]["attributes"])
                    for ss in rs["scopeSpans"]:
                        for sp in ss["spans"]:
                            sp["_resource"] = res
                            sp["_scope"] = ss["scope"]
                            with outer.lock:
                                outer.spans.append(sp)
                if outer.delay:
                    time.sleep(outer.delay)
                out = b"{}"
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def wait_spans(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.spans) >= n:
                    break
            time.sleep(0.02)
        time.sleep(0.2)  # more than expected would show up now
        with self.lock:
            return list(self.spans)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def attrs(lst):
    out = {}
    for a in lst:
        v = a["value"]
        out[a["key"]] = int(v["intValue"]) if "intValue" in v else v.get("stringValue")
    return out


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.close()


def tracing(endpoint, **kw):
    t = {"endpoint": endpoint, "sampling": 1, "flush_interval": 100, "batch_size": 64}
    t.update(kw)
    return t


def make_gw(stack, tr, extra=None, **kw):
    be = stack.backend("echo")
    ex = {"tracing": tr} if tr else {}
    ex.update(extra or {})
    return stack.gateway([service("svc", be.url, [route("api", ["/api"])]),
                          service("down", "http://127.0.0.1:%d" % dead_port(),
                                  [route("dead", ["/dead"])], retries=0)],
                         extra=ex, **kw)


def access_docs(gw, n):
    return [json.loads(l) for l in gw.wait_access_lines(n)]


def by_kind(spans, kind):
    return [s for s in spans if s["kind"] == kind]


def test_continues_client_trace_with_right_parent_links(stack, collector):
    gw = make_gw(stack, tracing(collector.endpoint, service_name="edge-gw"))
    r = request(gw.port, "GET", "/api/items?x=1",
                headers=[("traceparent", "00-%s-%s-01" % (TID, PID)),
                         ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
                         ("User-Agent", "trace-test/1.0")])
    echo = echoed(r)
    # the upstream gets exactly one traceparent: same trace, a new parent-id, sampled
    tps = upstream_headers(echo, "traceparent")
    assert len(tps) == 1, echo["headers"]
    m = TRACEPARENT_RE.match(tps[0])
    assert m and m.group(1) == TID and m.group(2) != PID and m.group(3) == "01", tps
    assert upstream_headers(echo, "tracestate") == ["congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"]

    spans = collector.wait_spans(2)
    assert len(spans) == 2, spans
    server, client = by_kind(spans, 2), by_kind(spans, 3)
    assert len(server) == 1 and len(client) == 1, spans
    server, client = server[0], client[0]
    # trace id continued; gateway span's parent is the client's span
    assert server["traceId"] == TID and client["traceId"] == TID
    assert server["parentSpanId"] == PID
    # upstream span is the gateway span's child, and it is what the upstream saw as its parent
    assert client["parentSpanId"] == server["spanId"]
    assert client["spanId"] == m.group(2)
    assert server["spanId"] != client["spanId"] and re.match("^[0-9a-f]{16}$", server["spanId"])
    # times: the upstream call lies within the gateway span
    s0, s1 = int(server["startTimeUnixNano"]), int(server["endTimeUnixNano"])
    c0, c1 = int(client["startTimeUnixNano"]), int(client["endTimeUnixNano"])
    assert s0 <= c0 <= c1 <= s1
    assert abs(s0 / 1e9 - time.time()) < 60
    # semantic-convention attributes
    sa, ca = attrs(server["attributes"]), attrs(client["attributes"])
    assert server["name"] == "GET /api"
    assert sa["http.request.method"] == "GET"
    assert sa["url.path"] == "/api/items"
    assert sa["url.scheme"] == "http"
    assert sa["http.route"] == "/api"
    assert sa["http.response.status_code"] == 200
    assert sa["server.address"] == "example.com"
    assert sa["server.port"] == gw.port
    assert sa["network.peer.address"] == "127.0.0.1"
    assert sa["client.address"] == "127.0.0.1"
    assert sa["network.protocol.version"] == "1.1"
    assert sa["user_agent.original"] == "trace-test/1.0"
    assert sa["turnpike.route"] == "api" and sa["turnpike.service"] == "svc"
    assert sa["turnpike.request_id"] == r.header("x-request-id")
    assert "url.query" not in sa          # queries may carry secrets: not exported
    assert "status" not in server         # a 200 is not an error
    assert client["name"] == "GET"
    assert ca["http.request.method"] == "GET"
    assert ca["http.response.status_code"] == 200
    assert ca["server.address"] == "127.0.0.1"
    assert ca["network.peer.address"] == "127.0.0.1"
    assert ca["server.port"] == stack.backends[0].port
    assert server["_resource"]["service.name"] == "edge-gw"
    assert server["_scope"]["name"] == "turnpike"
    # the access log line carries the trace and the gateway span
    doc = access_docs(gw, 1)[-1]
    assert doc["trace_id"] == TID
    # the export request itself is OTLP/HTTP JSON
    path, headers, _ = collector.requests[0]
    assert path == "/v1/traces"
    assert headers["Content-Type"] == "application/json"


def test_new_trace_when_absent_or_invalid(stack, collector):
    gw = make_gw(stack, tracing(collector.endpoint))
    cases = [
        [],                                                             # absent
        [("traceparent", "00-%s-%s-01" % (TID.upper(), PID))],          # upper-case hex
        [("traceparent", "00-%s-%s-01" % ("0" * 32, PID))],             # all-zero trace id
        [("traceparent", "00-%s-%s-01" % (TID, "0" * 16))],             # all-zero parent id
        [("traceparent", "ff-%s-%s-01" % (TID, PID))],                  # version ff
        [("traceparent", "00-%s-%s-01-x" % (TID, PID))],                # 00 must be 55 chars
        [("traceparent", "00-%s-%s-01" % (TID, PID))] * 2,              # two fields
    ]
    seen = set()
    for hdrs in cases:
        echo = echoed(request(gw.port, "GET", "/api/x",
                              headers=hdrs + [("tracestate", "congo=t61rcWkgMzE")]))
        tps = upstream_headers(echo, "traceparent")
        assert len(tps) == 1, (hdrs, echo["headers"])
        m = TRACEPARENT_RE.match(tps[0])
        assert m, tps
        assert m.group(1) != TID and m.group(1) != "0" * 32 and m.group(3) == "01", (hdrs, tps)
        seen.add(m.group(1))
        # a restarted trace drops the tracestate that belonged to the invalid traceparent
        assert upstream_headers(echo, "tracestate") == [], (hdrs, echo["headers"])
    assert len(seen) == len(cases)           # a new trace id each time
    spans = collector.wait_spans(2 * len(cases))
    assert len(spans) == 2 * len(cases)
    for s in by_kind(spans, 2):
        assert "parentSpanId" not in s and s["traceId"] in seen
    # a future version is parsed by its first fields and continued (W3C §3.2.4)
    echo = echoed(request(gw.port, "GET", "/api/x", headers=[
        ("traceparent", "cc-%s-%s-01-future-things" % (TID, PID)),
        ("tracestate", "congo=t61rcWkgMzE")]))
    m = TRACEPARENT_RE.match(upstream_headers(echo, "traceparent")[0])
    assert m.group(1) == TID and m.group(2) != PID
    assert upstream_headers(echo, "tracestate") == ["congo=t61rcWkgMzE"]


def test_sampling_ratio_zero_exports_nothing(stack, collector):
    gw = make_gw(stack, tracing(collector.endpoint, sampling=0, parent_based=False))
    for hdrs in ([], [("traceparent", "00-%s-%s-01" % (TID, PID))]):
        for _ in range(20):
            echo = echoed(request(gw.port, "GET", "/api/x", headers=hdrs))
            m = TRACEPARENT_RE.match(upstream_headers(echo, "traceparent")[0])
            # still propagated, with the not-sampled flag
            assert m and m.group(3) == "00", echo["headers"]
    time.sleep(0.6)  # six flush intervals
    assert collector.spans == [] and collector.requests == []
    docs = access_docs(gw, 40)
    assert len(docs) == 40 and all(re.match("^[0-9a-f]{32}$", d["trace_id"]) for d in docs)


def test_parent_based_sampling_rule(stack, collector):
    # ratio 0, parent-based (the default): a sampled caller is followed, an unsampled one too
    gw = make_gw(stack, tracing(collector.endpoint, sampling=0))
    echo = echoed(request(gw.port, "GET", "/api/x",
                          headers=[("traceparent", "00-%s-%s-01" % (TID, PID))]))
    assert upstream_headers(echo, "traceparent")[0].endswith("-01")
    assert len(collector.wait_spans(2)) == 2
    gw2 = make_gw(stack, tracing(collector.endpoint, sampling=1))
    other = "0af7651916cd43dd8448eb211c80319c"
    echo = echoed(request(gw2.port, "GET", "/api/x",
                          headers=[("traceparent", "00-%s-%s-00" % (other, PID))]))
    assert upstream_headers(echo, "traceparent")[0].endswith("-00")
    time.sleep(0.5)
    assert all(s["traceId"] != other for s in collector.spans)


def test_ratio_samples_its_share(stack, collector):
    gw = make_gw(stack, tracing(collector.endpoint, sampling=0.25, batch_size=512))
    n = 400
    sampled = 0
    with Client(gw.port) as c:
        for _ in range(n):
            echo = echoed(c.request("GET", "/api/x"))
            sampled += upstream_headers(echo, "traceparent")[0].endswith("-01")
    spans = collector.wait_spans(2 * sampled)
    assert len(spans) == 2 * sampled
    assert 0.15 * n < sampled < 0.35 * n, sampled


def test_local_answers_and_upstream_failure_spans(stack, collector):
    gw = make_gw(stack, tracing(collector.endpoint))
    assert request(gw.port, "GET", "/nowhere").status == 404
    assert request(gw.port, "GET", "/dead/x").status == 502
    spans = collector.wait_spans(3)
    assert len(spans) == 3, spans
    servers = {attrs(s["attributes"])["http.response.status_code"]: s for s in by_kind(spans, 2)}
    assert set(servers) == {404, 502}
    assert "status" not in servers[404]                 # 4xx: not a server error
    assert servers[502]["status"] == {"code": 2}
    assert attrs(servers[502]["attributes"])["error.type"] == "502"
    (client,) = by_kind(spans, 3)
    assert client["parentSpanId"] == servers[502]["spanId"]
    ca = attrs(client["attributes"])
    assert "http.response.status_code" not in ca and ca["error.type"] == "no_response"
    assert client["status"] == {"code": 2}


def status_doc(port):
    r = request(port, "GET", "/status")
    assert r.status == 200
    return json.loads(r.body)


def test_dead_collector_does_not_slow_requests(stack):
    sport = free_port()
    gw = make_gw(stack, tracing("http://127.0.0.1:%d" % dead_port(), flush_interval=50,
                                batch_size=8, queue_size=32),
                 extra={"status_listen": "127.0.0.1:%d" % sport})
    t0 = time.monotonic()
    with Client(gw.port) as c:
        for _ in range(300):
            assert c.request("GET", "/api/x").status == 200
    elapsed = time.monotonic() - t0
    assert elapsed < 15, elapsed
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        tr = status_doc(sport)["tracing"]
        if tr["failed"] + tr["dropped"] >= 600:
            break
        time.sleep(0.05)
    tr = status_doc(sport)["tracing"]
    assert tr["exported"] == 0
    assert tr["failed"] + tr["dropped"] == 600, tr
    check_alive(gw)


def test_slow_collector_drops_instead_of_blocking(stack):
    slow = Collector(delay=1.5)
    try:
        sport = free_port()
        gw = make_gw(stack, tracing(slow.endpoint, flush_interval=20, batch_size=4,
                                    queue_size=16, timeout=5000),
                     extra={"status_listen": "127.0.0.1:%d" % sport})
        worst = 0.0
        with Client(gw.port) as c:
            for _ in range(300):
                t = time.monotonic()
                assert c.request("GET", "/api/x").status == 200
                worst = max(worst, time.monotonic() - t)
        assert worst < 1.0, worst       # never waited for the 1.5 s collector
        tr = status_doc(sport)["tracing"]
        assert tr["dropped"] > 0, tr
        check_alive(gw)
    finally:
        slow.close()


def test_tracing_off_passes_trace_context_through(stack):
    gw = make_gw(stack, None)
    tp = "00-%s-%s-01" % (TID, PID)
    echo = echoed(request(gw.port, "GET", "/api/x",
                          headers=[("traceparent", tp), ("tracestate", "congo=1")]))
    assert upstream_headers(echo, "traceparent") == [tp]
    assert upstream_headers(echo, "tracestate") == ["congo=1"]
    bad = "00-%s-%s-01" % (TID.upper(), PID)
    echo = echoed(request(gw.port, "GET", "/api/x", headers=[("traceparent", bad)]))
    assert upstream_headers(echo, "traceparent") == [bad]
    echo = echoed(request(gw.port, "GET", "/api/x"))
    assert upstream_headers(echo, "traceparent") == []
    docs = access_docs(gw, 3)
    assert [d["trace_id"] for d in docs] == [TID, None, None]


def test_reload_turns_tracing_on(stack, collector):
    gw = make_gw(stack, None)
    echo = echoed(request(gw.port, "GET", "/api/x"))
    assert upstream_headers(echo, "traceparent") == []
    gw.write_config(extra={"tracing": tracing(collector.endpoint)})
    gw.reload()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        echo = echoed(request(gw.port, "GET", "/api/x"))
        if upstream_headers(echo, "traceparent"):
            break
        time.sleep(0.05)
    tid = TRACEPARENT_RE.match(upstream_headers(echo, "traceparent")[0]).group(1)
    spans = collector.wait_spans(2)
    assert {s["traceId"] for s in spans} == {tid}


def test_config_errors(tmp_path):
    from conftest import check_config, config_errors
    base = 'listen: ["127.0.0.1:1"]\nservices: []\n'
    for text, msg in [
        ("tracing: {sampling: 0.5}\n", 'missing required key "endpoint"'),
        ('tracing: {endpoint: "https://c:4318"}\n', "only http:// endpoints"),
        ('tracing: {endpoint: "http://c:4318", sampling: 1.5}\n', "from 0 to 1"),
        ('tracing: {endpoint: "http://c:4318", sampling: abc}\n', "from 0 to 1"),
        ('tracing: {endpoint: "http://c:4318", batch_size: 0}\n', "batch_size"),
    ]:
        rc, err = check_config(tmp_path, base + text)
        assert rc == 1 and msg in err, (text, err)
        assert config_errors(err), err
    rc, err = check_config(tmp_path, base + 'tracing: {endpoint: "http://c:4318/base"}\n')
    assert rc == 0, err
