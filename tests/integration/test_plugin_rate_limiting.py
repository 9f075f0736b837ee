"""rate-limiting plugin (docs/plugins/rate-limiting.md): exact limits across workers, B34 and B35
header values, headers on every response and in every style, several limits (the most
restrictive reports), per-consumer and composite keys with key-auth, a Kong block unchanged,
the leaky bucket's even spacing, the concurrency limit, configuration errors, and Redis: two
gateways sharing one real redis-server (exact with `redis`, within the documented bound with
`redis-batched`), Redis stopped and restarted mid-test (fail-open, fail-closed, recovery)."""

import json
import math
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import check_alive, free_port, route, service, to_yaml, turnpike_bin
from rawhttp import Client, assert_json_error, request

KEY_ALICE = "rl-alice-key-7Q2"
KEY_BOB = "rl-bob-key-9Z4"
CONSUMERS = [
    {"username": "alice", "keyauth_credentials": [{"key": KEY_ALICE}]},
    {"username": "bob", "keyauth_credentials": [{"key": KEY_BOB}]},
]
HAVE_REDIS = shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None
needs_redis = pytest.mark.skipif(not HAVE_REDIS, reason="redis-server not installed")


# ---- helpers -------------------------------------------------------------------------------

def rl(config, **kw):
    return dict({"name": "rate-limiting", "config": config}, **kw)


def start(stack, plugins, workers=1, consumers=None, paths=("/r",), url=None, extra=None):
    url = url or stack.backend("echo").url
    svc = service("s", url, [route("r", list(paths), plugins=plugins)])
    ex = dict(extra or {})
    if consumers:
        ex["consumers"] = consumers
    return stack.gateway([svc], workers=workers, extra=ex or None)


def get(gw, target="/r/x", headers=None):
    return request(gw.port, "GET", target, headers=headers)


def statuses(gw, n, target="/r/x", headers=None):
    return [get(gw, target, headers).status for _ in range(n)]


def parallel(fn, n, threads=8):
    """Call fn(i) for i in range(n) from `threads` threads; results in call order."""
    out = [None] * n
    lock = threading.Lock()
    todo = list(range(n))

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop(0)
            out[i] = fn(i)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def avoid_edge(period, margin):
    """Windows are aligned to the epoch: wait while the current one ends within `margin` s."""
    left = period - time.time() % period
    if left < margin:
        time.sleep(left + 0.05)


def error_log_count(gw, text, want, timeout=5.0):
    """How often text is in the error log, waiting up to timeout for it to reach want."""
    deadline = time.monotonic() + timeout
    while True:
        n = gw.read(gw.error_log).decode(errors="replace").count(text)
        if n >= want or time.monotonic() >= deadline:
            return n
        time.sleep(0.05)


def sf_item(value):
    """The first item of a structured-field list: (name, {param: int})."""
    item = value.split(",")[0].strip()
    parts = item.split(";")
    name = parts[0].strip().strip('"')
    return name, {k: int(v) for k, v in (p.split("=") for p in parts[1:])}


# ---- a backend that notes when each request arrived ----------------------------------------

class Stamped:
    def __init__(self, sleep=0.0):
        self.times = []
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with outer.lock:
                    outer.times.append(time.monotonic())
                if "/slow" in self.path:
                    time.sleep(1.0)
                body = b"ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stamped():
    s = Stamped()
    yield s
    s.close()


# ---- a real redis-server -------------------------------------------------------------------

class Redis:
    def __init__(self, tmp, password=None):
        self.port = free_port()
        self.dir = str(tmp)
        self.password = password
        self.proc = None
        self.start()

    def start(self):
        extra = ["--requirepass", self.password] if self.password else []
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir] + extra,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.cli("PING") == "PONG":
                    return
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def cli(self, *args):
        auth = ["--no-auth-warning", "-a", self.password] if self.password else []
        return subprocess.check_output(["redis-cli", "-p", str(self.port)] + auth + list(args),
                                       stderr=subprocess.DEVNULL, timeout=10).decode().strip()

    def counts(self, pattern="turnpike:rl:*"):
        """Sum of the integer counters under pattern."""
        total = 0
        for k in self.cli("--scan", "--pattern", pattern).split("\n"):
            if k and self.cli("TYPE", k) == "string":
                total += int(self.cli("GET", k))
        return total


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path)
    yield r
    r.stop()


def redis_conf(r, **kw):
    return dict({"redis": {"host": "127.0.0.1", "port": r.port, "timeout": 500}}, **kw)


# ---- exactness across workers ----------------------------------------------------------------

def test_limit_is_exact_across_workers(stack):
    avoid_edge(3600, 10)
    gw = start(stack, [rl({"hour": 30, "limit_by": "service"})], workers=2)
    got = parallel(lambda i: get(gw).status, 80)
    assert got.count(200) == 30 and got.count(429) == 50, got
    check_alive(gw)


def test_security_log_and_body_of_refusals(stack):
    gw = start(stack, [rl({"limits": [{"count": 1, "period": "1h"}], "key": "global"})])
    assert get(gw).status == 200
    resp = get(gw)
    doc = assert_json_error(resp, 429)
    assert doc["message"] == "API rate limit exceeded"
    lines = gw.security_lines(1)
    assert [(l["event"], l["status"], l["reason"], l["plugin"]) for l in lines] == [
        ("rate_limit", 429, "rate limit exceeded", "rate-limiting")]


# ---- B34: 5 per 5 s, 6 requests within 1 s, one more 5.1 s after the first -------------------

def b34_run(gw, aligned):
    if aligned:
        time.sleep(5 - time.time() % 5 + 0.05)  # the start of a 5-s window
    h = [("apikey", KEY_ALICE)]
    first = time.monotonic()
    for want in (4, 3, 2, 1, 0):
        resp = get(gw, headers=h)
        assert resp.status == 200, resp
        assert resp.header("x-ratelimit-limit") == "5"
        assert resp.header("x-ratelimit-remaining") == str(want)
    resp = get(gw, headers=h)
    assert resp.status == 429, resp
    retry = int(resp.header("retry-after"))
    assert 1 <= retry <= 5
    assert resp.header("x-ratelimit-remaining") == "0"
    assert time.monotonic() - first < 1.0
    time.sleep(max(0.0, first + 5.1 - time.monotonic()))
    assert get(gw, headers=h).status == 200


@pytest.mark.parametrize("algorithm", ["fixed-window", "sliding-log"])
def test_b34_off_by_one_at_the_limit(stack, algorithm):
    conf = {"limits": [{"count": 5, "period": "5s"}], "limit_by": "consumer"}
    if algorithm == "sliding-log":
        conf.update(algorithm="sliding-window", sliding_exact=True)
    gw = start(stack, [{"name": "key-auth"}, rl(conf)], consumers=CONSUMERS)
    b34_run(gw, aligned=algorithm == "fixed-window")
    # the other consumer was never limited
    assert get(gw, headers=[("apikey", KEY_BOB)]).header("x-ratelimit-remaining") == "4"


# ---- B35: headers of refused requests --------------------------------------------------------

def test_b35_headers_on_limited_responses(stack):
    be = stack.backend("echo")
    plug = lambda n: [{"name": "key-auth"}, rl({"limits": [{"count": n, "period": "60s"}]})]
    svc = service("s", be.url, [route("a", ["/a"], plugins=plug(2)),
                                route("b", ["/b"], plugins=plug(10))])
    gw = stack.gateway([svc], extra={"consumers": CONSUMERS})
    h = [("apikey", KEY_ALICE)]
    avoid_edge(60, 6)
    got = []
    for i in range(4):
        if i:
            time.sleep(1)
        resp = get(gw, "/a/x", h)
        end = math.ceil(60 - time.time() % 60)
        got.append(resp)
        assert resp.header("x-ratelimit-limit") == "2"
        name, rlp = sf_item(resp.header("ratelimit"))
        assert name == "default" and resp.header("ratelimit-policy") == '"default";q=2;w=60'
        assert int(resp.header("x-ratelimit-remaining")) == rlp["r"]
        assert int(resp.header("x-ratelimit-reset")) == rlp["t"]
        assert abs(rlp["t"] - end) <= 1, (rlp, end)
        assert rlp["t"] >= 1
    assert [r.status for r in got] == [200, 200, 429, 429]
    assert [r.header("x-ratelimit-remaining") for r in got] == ["1", "0", "0", "0"]
    for r in got[2:]:
        assert r.header("retry-after") == r.header("x-ratelimit-reset")
    # one second later, one second less (give or take the rounding up)
    assert int(got[2].header("retry-after")) - int(got[3].header("retry-after")) in (0, 1, 2)
    b = get(gw, "/b/x", h)
    assert b.status == 200
    assert b.header("x-ratelimit-limit") == "10" and b.header("x-ratelimit-remaining") == "9"
    assert sf_item(b.header("ratelimit"))[1]["r"] == 9


# ---- headers on every response, in every style ---------------------------------------------

def test_header_styles_and_local_answers(stack):
    be = stack.backend("echo")
    dead = "http://127.0.0.1:%d" % free_port()
    lim = lambda style: [rl({"limits": [{"count": 2, "period": "1h", "name": "hourly"}],
                             "key": "route", "header_style": style})]
    svc = service("s", be.url, [route("ietf", ["/ietf"], plugins=lim("ietf")),
                                route("legacy", ["/legacy"], plugins=lim("legacy")),
                                route("none", ["/none"], plugins=lim("none"))])
    down = service("down", dead, [route("dead", ["/dead"], plugins=lim("both"))])
    gw = stack.gateway([svc, down])
    avoid_edge(3600, 5)
    r = get(gw, "/ietf/x")
    assert r.header("ratelimit-policy") == '"hourly";q=2;w=3600'
    assert sf_item(r.header("ratelimit"))[0] == "hourly"
    assert sf_item(r.header("ratelimit"))[1]["r"] == 1
    assert r.header("x-ratelimit-limit") is None and r.header("ratelimit-limit") is None
    r = get(gw, "/legacy/x")
    assert (r.header("x-ratelimit-limit"), r.header("x-ratelimit-remaining")) == ("2", "1")
    assert r.header("ratelimit") is None and r.header("ratelimit-policy") is None
    assert r.header("x-ratelimit-limit-hour") is None  # no Kong-style period configured
    assert statuses(gw, 2, "/none/x") == [200, 200]
    r = get(gw, "/none/x")
    assert r.status == 429 and r.header("retry-after") is not None
    assert not [n for n, _ in r.headers if "ratelimit" in n.lower()]
    # a local answer (502 from a dead upstream) carries the headers too
    r = get(gw, "/dead/x")
    assert r.status == 502
    assert r.header("x-ratelimit-remaining") == "1" and r.header("ratelimit") is not None
    get(gw, "/dead/x")
    r = get(gw, "/dead/x")
    assert r.status == 429 and r.header("x-ratelimit-remaining") == "0"


def test_most_restrictive_limit_reports(stack):
    conf = {"algorithm": "sliding-window", "sliding_exact": True, "key": "global",
            "limits": [{"count": 5, "period": "hour", "name": "long"},
                       {"count": 3, "period": "minute", "name": "short"}]}
    gw = start(stack, [rl(conf)])
    want = [("short", 2), ("short", 1), ("short", 0)]
    for name, r in want:
        resp = get(gw)
        assert resp.status == 200
        assert resp.header("ratelimit-policy") == '"long";q=5;w=3600, "short";q=3;w=60'
        assert sf_item(resp.header("ratelimit"))[:1] == (name,)
        assert sf_item(resp.header("ratelimit"))[1]["r"] == r
    resp = get(gw)
    assert resp.status == 429
    name, p = sf_item(resp.header("ratelimit"))
    assert name == "short" and p["r"] == 0 and 55 <= p["t"] <= 60
    assert resp.header("retry-after") == str(p["t"])


# ---- keys --------------------------------------------------------------------------------------

def test_per_consumer_and_composite_keys(stack):
    be = stack.backend("echo")
    per_consumer = [{"name": "key-auth"},
                    rl({"limits": [{"count": 2, "period": "1h"}], "limit_by": "consumer"})]
    composite = [{"name": "key-auth"},
                 rl({"limits": [{"count": 1, "period": "1h"}],
                     "key": ["consumer", "header:X-Tenant"]})]
    by_param = [rl({"limits": [{"count": 1, "period": "1h"}], "key": "path:id"})]
    svc = service("s", be.url, [route("c", ["/c"], plugins=per_consumer),
                                route("t", ["/t"], plugins=composite),
                                route("p", ["/p/{id}"], plugins=by_param)])
    gw = stack.gateway([svc], extra={"consumers": CONSUMERS})
    avoid_edge(3600, 5)
    a, b = [("apikey", KEY_ALICE)], [("apikey", KEY_BOB)]
    assert statuses(gw, 3, "/c/x", a) == [200, 200, 429]
    assert statuses(gw, 2, "/c/x", b) == [200, 200]
    assert statuses(gw, 1, "/c/x", b) == [429]
    ta, tb = a + [("X-Tenant", "one")], a + [("X-Tenant", "two")]
    assert statuses(gw, 2, "/t/x", ta) == [200, 429]
    assert statuses(gw, 1, "/t/x", tb) == [200]
    assert statuses(gw, 1, "/t/x", b + [("X-Tenant", "one")]) == [200]
    assert statuses(gw, 2, "/p/7", None) == [200, 429]
    assert statuses(gw, 1, "/p/8", None) == [200]


def test_jwt_claim_key(stack):
    jwt = pytest.importorskip("jwt")
    secret = "rl-jwt-secret-0123456789abcdef0123"
    consumers = [{"username": "issuer", "jwt_secrets": [{"key": "iss-1", "secret": secret}]}]
    gw = start(stack, [{"name": "jwt"},
                       rl({"limits": [{"count": 1, "period": "1h"}], "key": "claim:tenant"})],
               consumers=consumers)
    avoid_edge(3600, 5)
    tok = lambda tenant: [("Authorization", "Bearer " + jwt.encode(
        {"iss": "iss-1", "tenant": tenant}, secret, algorithm="HS256"))]
    assert statuses(gw, 2, headers=tok("t1")) == [200, 429]
    assert statuses(gw, 1, headers=tok("t2")) == [200]
    assert statuses(gw, 2, headers=tok(7)) == [200, 429]          # an integer claim,
    assert statuses(gw, 1, headers=tok("7")) == [429]             # in decimal
    assert statuses(gw, 1, headers=tok(["a"])) == [200]           # not a scalar: by IP


def test_instances_do_not_share_counters(stack):
    be = stack.backend("echo")
    one = lambda: [rl({"limits": [{"count": 1, "period": "1h"}], "key": "global"})]
    shared = lambda: [rl({"limits": [{"count": 1, "period": "1h"}], "key": "global",
                          "namespace": "plan-gold"})]
    svc = service("s", be.url, [route("x", ["/x"], plugins=one()),
                                route("y", ["/y"], plugins=one()),
                                route("u", ["/u"], plugins=shared()),
                                route("v", ["/v"], plugins=shared())])
    gw = stack.gateway([svc])
    avoid_edge(3600, 5)
    assert [get(gw, "/x/1").status, get(gw, "/y/1").status] == [200, 200]
    assert [get(gw, "/u/1").status, get(gw, "/v/1").status] == [200, 429]
    # counters survive a reload
    gw.reload()
    time.sleep(0.5)
    assert get(gw, "/x/1").status == 429


# ---- Kong --------------------------------------------------------------------------------------

KONG_BLOCK = {
    "second": None, "minute": 3, "hour": 100, "day": None, "month": None, "year": None,
    "limit_by": "ip", "header_name": None, "path": None, "policy": "local",
    "fault_tolerant": True, "hide_client_headers": False, "error_code": 429,
    "error_message": "API rate limit exceeded", "sync_rate": -1,
    "redis": {"host": None, "port": 6379, "timeout": 2000, "username": None, "password": None,
              "database": 0, "ssl": False, "ssl_verify": False, "server_name": None},
    "redis_host": None, "redis_port": 6379, "redis_password": None, "redis_timeout": 2000,
    "redis_database": 0, "redis_ssl": False,
}


def kong_yaml(port, be_url, block):
    lines = ["_format_version: \"3.0\"", "listen: [\"127.0.0.1:%d\"]" % port, "services:",
             "  - name: s", "    url: %s" % be_url, "    routes:",
             "      - name: r", "        paths: [/r]", "plugins:", "  - name: rate-limiting",
             "    enabled: true", "    protocols: [http, https]", "    config:"]
    for k, v in block.items():
        lines.append("      %s: %s" % (k, json.dumps(v) if not isinstance(v, str) else v))
    return "\n".join(lines) + "\n"


def test_kong_block_works_unchanged(stack):
    be = stack.backend("echo")
    gw = stack.gateway([service("s", be.url, [route("r", ["/r"])])], start=False)
    text = kong_yaml(gw.port, be.url, KONG_BLOCK)
    text = text.replace("listen:", "error_log: %s\nsecurity_log: %s\nlisten:" % (
        gw.error_log, gw.security_log), 1)
    gw.write_text(text)
    gw.start()
    avoid_edge(60, 3)
    got = [get(gw) for _ in range(4)]
    assert [r.status for r in got] == [200, 200, 200, 429]
    assert [r.header("x-ratelimit-remaining-minute") for r in got] == ["2", "1", "0", "0"]
    assert [r.header("x-ratelimit-remaining-hour") for r in got] == ["99", "98", "97", "97"]
    assert got[0].header("x-ratelimit-limit-minute") == "3"
    assert got[0].header("x-ratelimit-limit-hour") == "100"
    assert got[0].header("ratelimit-limit") == "3" and got[0].header("ratelimit-remaining") == "2"
    assert got[3].json()["message"] == "API rate limit exceeded"
    assert got[3].header("retry-after") == got[3].header("ratelimit-reset")
    assert int(got[3].header("retry-after")) >= 1


def test_kong_hide_headers_and_custom_error(stack):
    gw = start(stack, [rl({"minute": 1, "limit_by": "ip", "hide_client_headers": True,
                           "error_code": 403, "error_message": "Slow down"})])
    avoid_edge(60, 3)
    r = get(gw)
    assert r.status == 200 and not [n for n, _ in r.headers if "ratelimit" in n.lower()]
    r = get(gw)
    assert assert_json_error(r, 403)["message"] == "Slow down"
    assert r.header("retry-after") is not None
    assert not [n for n, _ in r.headers if "ratelimit" in n.lower()]


# ---- configuration errors ------------------------------------------------------------------

@pytest.mark.parametrize("config,message", [
    ({"minute": 5, "hour": 3},
     "The limit for hour(3) cannot be lower than the limit for minute(5)"),
    ({"limit_by": "header", "minute": 1}, '"header_name" is required when "limit_by" is header'),
    ({"minute": 1, "key": ["consumer", "cookie:x"]}, 'unknown key part "cookie:x"'),
    ({"minute": 1, "policy": "redis"}, 'Redis storage needs "redis.host"'),
    ({"minute": 1, "storage": "redis-batched", "redis": {"host": "127.0.0.1"},
      "algorithm": "token-bucket"}, "redis-batched supports fixed-window and sliding-window"),
    ({"minute": 1, "max_delay": 60000}, '"max_delay" must be between 0 and 25000'),
    ({"limits": [{"count": 5}]}, '"limits[0]": "period" is required'),
    ({"limits": [{"count": 5, "period": "fortnight"}]}, '"period": expected second, minute'),
    ({}, 'at least one of "second"'),
    ({"minute": 1, "storage": "redis", "redis": {"host": "127.0.0.1", "ssl": True}},
     "TLS to Redis is not supported"),
    ({"limits": [{"count": 20000, "period": "1m"}], "algorithm": "sliding-window",
      "sliding_exact": True}, "count must be at most 10000"),
])
def test_config_errors(tmp_path, config, message):
    plugin = {"name": "rate-limiting", "config": config}
    text = to_yaml({"listen": ["127.0.0.1:1"], "services": [
        {"name": "s", "url": "http://127.0.0.1:1",
         "routes": [{"name": "r", "paths": ["/r"], "plugins": [plugin]}]}]}) + "\n"
    path = os.path.join(str(tmp_path), "bad.yaml")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([turnpike_bin(), "-t", "-c", path], capture_output=True, text=True,
                       timeout=30)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    hit = [l for l in out.splitlines() if message in l]
    assert hit, out
    # FILE:LINE:COLUMN: field path: message
    prefix = hit[0].split(": ")[0]
    f, line, col = prefix.rsplit(":", 2)
    assert f.endswith("bad.yaml") and int(line) >= 1 and int(col) >= 1, hit[0]
    assert "plugins[0](rate-limiting).config" in hit[0]


# ---- leaky bucket and concurrency -----------------------------------------------------------

def test_leaky_bucket_spaces_requests_evenly(stack, stamped):
    conf = {"algorithm": "leaky-bucket", "limits": [{"count": 10, "period": "1s"}],
            "key": "global", "max_delay": 1000}
    gw = start(stack, [rl(conf)], workers=2, url=stamped.url)
    got = parallel(lambda i: get(gw).status, 8, threads=8)
    assert got == [200] * 8
    t = sorted(stamped.times)
    gaps = [b - a for a, b in zip(t, t[1:])]
    # one every 100 ms (7 gaps: 0.7 s): generous bounds, no tight timing
    assert min(gaps) >= 0.02, gaps
    assert 0.5 <= t[-1] - t[0] <= 2.5, gaps
    assert 0.06 <= sorted(gaps)[len(gaps) // 2] <= 0.3, gaps
    # a queue longer than max_delay is refused
    time.sleep(1.2)
    got = parallel(lambda i: get(gw).status, 20, threads=20)
    assert 8 <= got.count(200) <= 13 and got.count(429) == 20 - got.count(200), got


def test_leaky_bucket_drops_held_requests_whose_client_left(stack, stamped):
    """A request held by the leaky bucket whose client closes is never sent upstream."""
    conf = {"algorithm": "leaky-bucket", "limits": [{"count": 1, "period": "1s"}],
            "key": "global", "max_delay": 5000}
    gw = start(stack, [rl(conf)], url=stamped.url)
    assert get(gw).status == 200  # uses the slot: the next ones are held
    held = []
    for _ in range(3):
        c = Client(gw.port)
        c.send(b"GET /r/held HTTP/1.1\r\nHost: x\r\n\r\n")
        held.append(c)
    time.sleep(0.3)
    for c in held:
        c.close()
    time.sleep(3.5)  # their turns (1 s apart) have passed
    assert len(stamped.times) == 1, stamped.times
    assert get(gw).status == 200
    check_alive(gw)


def test_concurrency_limit(stack, stamped):
    conf = {"algorithm": "concurrency", "limits": [{"count": 2}], "key": "global"}
    gw = start(stack, [rl(conf)], workers=2, url=stamped.url)
    got = parallel(lambda i: get(gw, "/r/slow").status, 5, threads=5)
    assert sorted(got) == [200, 200, 429, 429, 429], got
    assert statuses(gw, 3) == [200, 200, 200]  # slots were given back
    # a client that goes away mid-request gives its slot back too
    c = Client(gw.port)
    c.send(b"GET /r/slow HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    c.close()
    time.sleep(1.3)
    got = parallel(lambda i: get(gw, "/r/slow").status, 2, threads=2)
    assert got == [200, 200], got


# ---- Redis -------------------------------------------------------------------------------------

@needs_redis
def test_redis_two_gateways_one_exact_limit(stack, redis):
    avoid_edge(3600, 10)
    be = stack.backend("echo")
    conf = redis_conf(redis, hour=25, limit_by="service", policy="redis")
    gws = [start(stack, [rl(conf)], workers=2, url=be.url) for _ in range(2)]
    got = parallel(lambda i: get(gws[i % 2]).status, 70, threads=8)
    assert got.count(200) == 25 and got.count(429) == 45, got
    assert redis.counts() == 25
    for g in gws:
        check_alive(g)


@needs_redis
def test_redis_algorithms(stack, redis):
    be = stack.backend("echo")
    routes = []
    for name, extra in [("fixed", {}), ("sliding", {"algorithm": "sliding-window"}),
                        ("log", {"algorithm": "sliding-window", "sliding_exact": True}),
                        ("token", {"algorithm": "token-bucket"}),
                        ("leaky", {"algorithm": "leaky-bucket", "max_delay": 0})]:
        conf = redis_conf(redis, storage="redis", key="global",
                          limits=[{"count": 2, "period": "1h"}], **extra)
        routes.append(route(name, ["/" + name], plugins=[rl(conf)]))
    conc = redis_conf(redis, storage="redis", key="global", algorithm="concurrency",
                      limits=[{"count": 1}])
    routes.append(route("conc", ["/conc"], plugins=[rl(conc)]))
    gw = stack.gateway([service("s", be.url, routes)])
    avoid_edge(3600, 5)
    for name in ("fixed", "sliding", "log", "token"):
        got = [get(gw, "/%s/x" % name) for _ in range(3)]
        assert [r.status for r in got] == [200, 200, 429], name
        assert [r.header("x-ratelimit-remaining") for r in got] == ["1", "0", "0"], name
        assert int(got[2].header("retry-after")) >= 1
    assert statuses(gw, 2, "/leaky/x") == [200, 429]
    assert statuses(gw, 3, "/conc/x") == [200, 200, 200]  # each one ends before the next
    assert redis.cli("--scan", "--pattern", "turnpike:rl:*") != ""


@needs_redis
def test_redis_batched_within_bound(stack, redis):
    avoid_edge(3600, 10)
    be = stack.backend("echo")
    n_every, limit, workers = 4, 40, 2
    conf = redis_conf(redis, storage="redis-batched", key="global", sync_every=n_every,
                      sync_interval=20, limits=[{"count": limit, "period": "1h"}])
    gws = [start(stack, [rl(conf)], workers=workers, url=be.url) for _ in range(2)]
    got = parallel(lambda i: get(gws[i % 2]).status, 160, threads=8)
    counters = 2 * workers
    bound = limit + (counters - 1) * n_every          # documented: limit + (C - 1) * N
    admitted = got.count(200)
    assert limit - counters * n_every <= admitted <= bound, (admitted, bound)
    time.sleep(0.5)                                    # every admission reaches Redis
    assert redis.counts() == admitted


@needs_redis
def test_redis_down_fail_open_then_recovers(stack, redis):
    avoid_edge(3600, 15)
    conf = redis_conf(redis, storage="redis", key="global",
                      limits=[{"count": 3, "period": "1h"}])
    gw = start(stack, [rl(conf)])
    assert statuses(gw, 1) == [200]
    assert redis.counts() == 1
    redis.stop()
    # fail-open: local counters of this gateway (none counted yet), logged once
    assert statuses(gw, 4) == [200, 200, 200, 429]
    assert error_log_count(gw, "unreachable", 1) == 1, gw.logs()
    redis.start()
    time.sleep(1.2)                                   # the next attempt is at most 1 s away
    got = statuses(gw, 6)
    # the request that starts the reconnection is still decided locally (429: the local
    # counters are used up); then Redis decides again, from its own (fresh) counts
    assert got[0] == 429 and got.count(200) == 3 and got[-1] == 429, got
    assert redis.counts() == 3
    assert error_log_count(gw, "reachable again", 1) == 1, gw.logs()
    assert error_log_count(gw, "unreachable", 2, timeout=0.2) == 1, gw.logs()


@needs_redis
def test_redis_down_fail_closed_then_recovers(stack, redis):
    conf = redis_conf(redis, storage="redis", key="global", redis_failure="fail-closed",
                      limits=[{"count": 100, "period": "1h"}])
    gw = start(stack, [rl(conf)])
    assert statuses(gw, 1) == [200]
    redis.stop()
    r = get(gw)
    assert assert_json_error(r, 503)["message"] == "Rate limiting is unavailable"
    redis.start()
    time.sleep(1.2)
    got = statuses(gw, 3)
    assert got[-2:] == [200, 200], got


@needs_redis
def test_redis_first_connection_is_awaited(stack, redis):
    # fail-closed from the very first request: the worker waits for its first connection
    conf = redis_conf(redis, storage="redis", key="global", redis_failure="fail-closed",
                      limits=[{"count": 100, "period": "1h"}])
    gw = start(stack, [rl(conf)], workers=2)
    got = parallel(lambda i: get(gw).status, 8, threads=8)
    assert got == [200] * 8


def test_concurrency_slot_freed_when_client_aborts_upload(stack):
    """A client that goes away in the middle of its request body (the echo backend waits for
    all of it): the log hook must still run (plugin.h: "after the response was sent (or the
    client went away)")."""
    conf = {"algorithm": "concurrency", "limits": [{"count": 1}], "key": "global"}
    gw = start(stack, [rl(conf)])
    c = Client(gw.port)
    c.send(b"POST /r/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000)
    time.sleep(0.3)
    c.close()
    time.sleep(0.5)
    assert statuses(gw, 1) == [200]


@needs_redis
def test_redis_password_and_database(stack, tmp_path):
    r = Redis(tmp_path, password="s3cret-pw")
    try:
        be = stack.backend("echo")
        good = {"storage": "redis", "key": "global", "limits": [{"count": 1, "period": "1h"}],
                "redis": {"host": "127.0.0.1", "port": r.port, "password": "s3cret-pw",
                          "database": 3}}
        # Kong's older spellings, with a wrong password: refused by Redis, so fail-open
        bad = {"storage": "redis", "key": "global", "limits": [{"count": 1, "period": "1h"}],
               "redis_host": "127.0.0.1", "redis_port": r.port, "redis_password": "wrong"}
        gw = stack.gateway([service("s", be.url, [
            route("good", ["/good"], plugins=[rl(good)]),
            route("bad", ["/bad"], plugins=[rl(bad)])])])
        avoid_edge(3600, 5)
        assert statuses(gw, 2, "/good/x") == [200, 429]
        assert r.cli("-n", "3", "DBSIZE") == "1" and r.cli("-n", "0", "DBSIZE") == "0"
        assert statuses(gw, 2, "/bad/x") == [200, 429]  # local counters
        assert error_log_count(gw, "unreachable", 1) == 1, gw.logs()
        assert "WRONGPASS" in gw.read(gw.error_log).decode() or \
            "invalid" in gw.read(gw.error_log).decode()
        assert r.cli("-n", "0", "DBSIZE") == "0"
    finally:
        r.stop()
