#!/usr/bin/python3
"""turnpike side by side with NGINX and HAProxy, in one run, on 127.0.0.1 (DESIGN.md §9).

One small fast backend (NGINX, one worker) serves bodies of 0 B, 1 KiB and 64 KiB (and a sparse
1 GiB file for the streaming test).  The same `wrk -t1 -c<conns> -d<duration>s --latency`
(keep-alive) measures, case by case, alternating the contenders round-robin within each round
(the starting contender rotates from round to round):

  direct    the backend itself, the ceiling
  turnpike  workers: 1, access_log off
  nginx     1 worker, upstream keepalive 512 (turnpike's default pool), proxy_http_version 1.1, Connection "", access_log off
  haproxy   nbthread 1, mode http, http-reuse always, option http-keep-alive, no logging

Every case reports the median requests/s and the median p50 / p99 latency over the rounds.
Then memory (turnpike's RSS idle, with 10,000 idle keep-alive client connections, and the peak
during a 1 GiB streamed download) and CPU instructions per proxied request (callgrind, see
instructions.py).  The report goes to stdout and bench/RESULTS.md.

  /usr/bin/python3 bench/run.py [--rounds 3] [--duration 5] [--output bench/RESULTS.md]
"""

import argparse
import datetime
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import instructions  # noqa: E402
from instructions import (MeasureError, free_port, read_response, request_bytes,  # noqa: E402
                          stop_group, wait_listening)

DEB_BENCH = ["wrk", "nginx-light", "haproxy", "valgrind", "python3-jwt", "python3-cryptography",
             "redis-server"]
ROUTES = 10000
ROUTES_INFO = {}
IDLE_CONNS = 10000
BIG = 1 << 30
NOFILE = 65536
BODIES = {"/0": 0, "/1k": 1024, "/64k": 65536}

CONTENDER_LABEL = {
    "direct": "direct (backend, ceiling)",
    "turnpike": "turnpike",
    "nginx": "NGINX proxy",
    "haproxy": "HAProxy",
    "tp1": "turnpike, 1 route",
    "tp10k": "turnpike, 10,000 routes",
    "tpkey": "turnpike, key-auth",
    "tpjwt": "turnpike, jwt (RS256)",
    "tprl": "turnpike, rate-limiting local",
    "tprlr": "turnpike, rate-limiting redis",
    "tprlb": "turnpike, rate-limiting redis-batched",
}
RATELIMIT = {"tprl": "local", "tprlr": "redis", "tprlb": "redis-batched"}
REDIS = {}  # the port of the benchmark's redis-server (ratelimit case)

# request headers each contender's load carries (the credentials of the plugin cases)
CONTENDER_HEADERS = {}

CASES = [
    {"id": "0b-50", "title": "0 B body, 50 connections", "path": "/0", "conns": 50,
     "contenders": ["direct", "turnpike", "nginx", "haproxy"]},
    {"id": "1k-50", "title": "1 KiB body, 50 connections", "path": "/1k", "conns": 50,
     "contenders": ["direct", "turnpike", "nginx", "haproxy"]},
    {"id": "64k-50", "title": "64 KiB body, 50 connections", "path": "/64k", "conns": 50,
     "contenders": ["direct", "turnpike", "nginx", "haproxy"]},
    {"id": "0b-256", "title": "0 B body, 256 connections", "path": "/0", "conns": 256,
     "contenders": ["direct", "turnpike", "nginx", "haproxy"]},
    {"id": "routes", "title": "0 B body, 50 connections, 1 route vs 10,000 routes (turnpike only)",
     "path": "/0", "conns": 50, "contenders": ["tp1", "tp10k"]},
    {"id": "plugins", "title": "0 B body, 50 connections: no plugin vs key-auth vs jwt RS256 "
     "(turnpike only)", "path": "/0", "conns": 50, "contenders": ["tp1", "tpkey", "tpjwt"]},
    {"id": "ratelimit", "title": "0 B body, 50 connections: no plugin vs rate-limiting (one "
     "counter for all requests, never exceeded) with local, redis and redis-batched storage "
     "(turnpike only)", "path": "/0", "conns": 50,
     "contenders": ["tp1", "tprl", "tprlr", "tprlb"]},
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise Interrupted("signal %d" % signum)


# ---------------------------------------------------------------------------------------------
# setup

def ensure_packages():
    missing = [p for p in DEB_BENCH
               if subprocess.run(["dpkg", "-s", p], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL).returncode != 0]
    if not missing:
        return
    log("installing: " + " ".join(missing))
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq"] + missing, check=True, env=env)


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _child_nofile():
    # runs in the child before exec: as many descriptors as the hard limit allows (up to 65536)
    try:
        raise_nofile(NOFILE)
    except (ValueError, OSError):
        pass


def child_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)


class Procs:
    """Servers started in their own process group, all stopped on the way out."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = {}

    def start(self, name, argv, port=None, timeout=10.0):
        logf = open(os.path.join(self.workdir, name + ".out"), "wb")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                start_new_session=True, preexec_fn=_child_nofile)
        logf.close()
        self.procs[name] = proc
        if port is not None:
            try:
                wait_listening(port, proc, timeout)
            except MeasureError as e:
                raise MeasureError("%s: %s; output: %s" % (name, e, self.output(name)))
        return proc

    def output(self, name):
        try:
            with open(os.path.join(self.workdir, name + ".out"), errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def stop(self, name, timeout=10.0):
        proc = self.procs.pop(name, None)
        return stop_group(proc, signal.SIGTERM, timeout)

    def stop_all(self):
        for name in list(self.procs):
            try:
                self.stop(name, 5.0)
            except Exception as e:  # keep going: everything must be stopped
                log("stopping %s: %s" % (name, e))


def rss(pid):
    """(VmRSS, VmHWM) of a process in bytes."""
    vals = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                vals[key] = int(rest.split()[0]) * 1024
    return vals["VmRSS"], vals["VmHWM"]


# ---------------------------------------------------------------------------------------------
# configurations

def backend_conf(d, port):
    www = os.path.join(d, "www")
    os.makedirs(www)
    with open(os.path.join(www, "64k"), "wb") as f:
        f.write(b"x" * 65536)
    with open(os.path.join(www, "1g"), "wb") as f:
        f.truncate(BIG)                               # sparse: no disk used
    for p in (d, www):
        os.chmod(p, 0o755)                            # NGINX workers run as nobody
    for n in ("64k", "1g"):
        os.chmod(os.path.join(www, n), 0o644)
    conf = os.path.join(d, "backend.conf")
    with open(conf, "w") as f:
        f.write("""daemon off;
worker_processes 1;
pid {d}/backend.pid;
error_log {d}/backend.err warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections 10000; }}
http {{
  access_log off;
  default_type application/octet-stream;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  sendfile on;
  open_file_cache max=16 inactive=600s;
  open_file_cache_valid 600s;
  client_body_temp_path {d}/tmp-backend-body;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    root {www};
    location = /0   {{ return 200 ""; }}
    location = /1k  {{ return 200 "{k1}"; }}
    location = /64k {{ }}
    location = /1g  {{ }}
  }}
}}
""".format(d=d, port=port, www=www, nofile=child_nofile(), k1="x" * 1024))
    # 64 KiB does not fit in one NGINX config token (4 KiB), so it is a static file
    return conf


def nginx_proxy_conf(d, port, backend_port):
    conf = os.path.join(d, "nginx-proxy.conf")
    with open(conf, "w") as f:
        f.write("""daemon off;
worker_processes 1;
pid {d}/nginx-proxy.pid;
error_log {d}/nginx-proxy.err warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections 10000; }}
http {{
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  client_body_temp_path {d}/tmp-proxy-body;
  proxy_temp_path {d}/tmp-proxy;
  upstream backend {{
    server 127.0.0.1:{bport};
    keepalive 512;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
""".format(d=d, port=port, bport=backend_port, nofile=child_nofile()))
    return conf


def haproxy_conf(d, port, backend_port):
    conf = os.path.join(d, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write("""global
  nbthread 1
  maxconn 8000

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 300s

frontend fe
  bind 127.0.0.1:{port}
  default_backend be

backend be
  server s1 127.0.0.1:{bport}
""".format(port=port, bport=backend_port))
    return conf


def jwt_material(d):
    """An RSA-2048 key pair and an RS256 token for the jwt case (python3-jwt and
    python3-cryptography from Debian): (public key PEM path, token)."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    path = os.path.join(d, "jwt-public.pem")
    with open(path, "wb") as f:
        f.write(pem)
    token = jwt.encode({"iss": "bench-issuer", "sub": "bench", "exp": int(time.time()) + 86400},
                       key, algorithm="RS256")
    return path, token


def plugin_lines(d, plugin):
    """Route plugins and consumers of the plugin cases; sets CONTENDER_HEADERS."""
    if plugin in RATELIMIT.values():
        redis = ", redis: {host: 127.0.0.1, port: %d}" % REDIS["port"] if REDIS else ""
        return (["        plugins: [{name: rate-limiting, config: {key: global, storage: %s, "
                 "limits: [{count: 1000000000000, period: hour}]%s}}]" % (plugin, redis)], [])
    if plugin == "key-auth":
        CONTENDER_HEADERS["tpkey"] = ["apikey: bench-key"]
        return (["        plugins: [{name: key-auth}]"],
                ["consumers:", "  - username: bench",
                 "    keyauth_credentials: [{key: bench-key}]"])
    pem, token = jwt_material(d)
    CONTENDER_HEADERS["tpjwt"] = ["Authorization: Bearer " + token]
    return (["        plugins: [{name: jwt}]"],
            ["consumers:", "  - username: bench",
             "    jwt_secrets: [{key: bench-issuer, algorithm: RS256, "
             "rsa_public_key: {file: %s}}]" % pem])


def turnpike_conf(d, name, port, backend_port, routes=0, measured="/", plugin=None):
    """The turnpike YAML.  `measured` is the route the load goes through; with routes=N there are
    N more prefix routes /r0 .. /r{N-1}, each on its own service; `plugin` (key-auth, jwt, or a
    rate-limiting storage: local, redis, redis-batched) protects the measured route."""
    path = os.path.join(d, name + ".yaml")
    url = '"http://127.0.0.1:%d"' % backend_port
    lines = ['listen: ["127.0.0.1:%d"]' % port,
             "workers: 1",
             'access_log: "off"',
             "error_log: %s" % os.path.join(d, name + ".err"),
             "services:",
             "  - name: bench",
             "    url: " + url,
             "    routes:",
             '      - {name: measured, paths: ["%s"], strip_path: false}' % measured]
    tail = []
    if plugin:
        lines[-1] = '      - name: measured\n        paths: ["%s"]\n        strip_path: false' \
            % measured
        route_plugins, tail = plugin_lines(d, plugin)
        lines += route_plugins
    for i in range(routes):
        lines.append("  - {name: s%d, url: %s, routes: [{name: r%d, paths: [/r%d]}]}"
                     % (i, url, i, i))
    lines += tail
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# load

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError("latency %r" % text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out):
    res = {"rps": None, "p50": None, "p99": None, "non2xx": 0, "errors": 0, "requests": 0}
    for line in out.splitlines():
        s = line.strip()
        m = re.match(r"(50|99)(?:\.0+)?%\s+(\S+)$", s)
        if m:
            res["p" + m.group(1)] = to_ms(m.group(2))
        elif s.startswith("Requests/sec:"):
            res["rps"] = float(s.split()[1])
        elif s.startswith("Non-2xx or 3xx responses:"):
            res["non2xx"] = int(s.split(":")[1])
        elif s.startswith("Socket errors:"):
            res["errors"] = sum(int(x) for x in re.findall(r"\d+", s))
        else:
            m = re.match(r"(\d+) requests in", s)
            if m:
                res["requests"] = int(m.group(1))
    if res["rps"] is None or res["p50"] is None or res["p99"] is None:
        raise MeasureError("cannot parse wrk output:\n" + out)
    return res


def wrk(port, path, conns, duration, headers=()):
    argv = ["wrk", "-t1", "-c%d" % conns, "-d%ds" % duration, "--latency"]
    for h in headers:
        argv += ["-H", h]
    argv.append("http://127.0.0.1:%d%s" % (port, path))
    # its own process group, so that Ctrl-C reaches only us and we stop it ourselves
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=_child_nofile, text=True)
    try:
        out, _ = proc.communicate(timeout=duration + 30)
    finally:
        stop_group(proc, signal.SIGKILL, 1)
    if proc.returncode != 0:
        raise MeasureError("wrk failed (%s):\n%s" % (proc.returncode, out))
    return parse_wrk(out)


def http_get(port, path, timeout=10, headers=()):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        req = request_bytes(port, path)
        if headers:
            req = req[:-2] + "".join(h + "\r\n" for h in headers).encode() + b"\r\n"
        s.sendall(req)
        status, length, _ = read_response(s)
    return status, length


# ---------------------------------------------------------------------------------------------
# memory

def memory_idle_conns(procs, tp_argv, port, n):
    """RSS at idle after start, then with n idle keep-alive client connections."""
    proc = procs.start("turnpike-mem-conns", tp_argv, port)
    time.sleep(1.0)
    idle, _ = rss(proc.pid)
    req = request_bytes(port, "/0")
    socks = []
    try:
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
            s.sendall(req)
            status, _, rest = read_response(s)
            if status != 200 or rest:
                raise MeasureError("idle connection %d: status %d" % (i, status))
        time.sleep(1.0)
        with_conns, _ = rss(proc.pid)
        alive = proc.poll() is None
    finally:
        for s in socks:
            s.close()
        procs.stop("turnpike-mem-conns")
    if not alive:
        raise MeasureError("turnpike died while holding the connections")
    return idle, with_conns


def memory_stream(procs, tp_argv, port):
    """Peak RSS (VmHWM) of a fresh turnpike while it streams a 1 GiB response."""
    proc = procs.start("turnpike-mem-stream", tp_argv, port)
    time.sleep(1.0)
    idle, _ = rss(proc.pid)
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                samples.append(rss(proc.pid)[0])
            except (OSError, KeyError):
                return
            time.sleep(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    got = 0
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(request_bytes(port, "/1g"))
            buf = bytearray(1 << 20)
            view = memoryview(buf)
            head = b""
            while b"\r\n\r\n" not in head:
                n = s.recv_into(view)
                if not n:
                    raise MeasureError("1 GiB download: closed before the head")
                head += bytes(view[:n])
            h, _, rest = head.partition(b"\r\n\r\n")
            if b" 200 " not in h.split(b"\r\n")[0] + b" ":
                raise MeasureError("1 GiB download: %r" % h.split(b"\r\n")[0])
            got = len(rest)
            while got < BIG:
                n = s.recv_into(view)
                if not n:
                    break
                got += n
        secs = time.monotonic() - t0
        _, hwm = rss(proc.pid)
    finally:
        stop.set()
        t.join()
        procs.stop("turnpike-mem-stream")
    if got != BIG:
        raise MeasureError("1 GiB download: got %d of %d bytes" % (got, BIG))
    return {"idle": idle, "hwm": hwm, "max_sampled": max(samples) if samples else 0,
            "seconds": secs}


# ---------------------------------------------------------------------------------------------
# report

def sh(argv):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=10)
        return p.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine():
    model = "?"
    mem = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = "%.1f GiB" % (int(line.split()[1]) / 1048576)
    u = os.uname()
    return [
        ("CPUs (nproc)", sh(["nproc"])),
        ("CPU model", model),
        ("memory", mem),
        ("kernel", "%s %s %s" % (u.sysname, u.release, u.machine)),
        ("load average at start", " ".join(open("/proc/loadavg").read().split()[:3])),
        ("nginx", sh(["nginx", "-v"]).replace("nginx version: ", "")),
        ("haproxy", sh(["haproxy", "-v"]).splitlines()[0]),
        ("wrk", sh(["wrk", "--version"]).splitlines()[0]),
        ("valgrind", sh(["valgrind", "--version"])),
        ("turnpike", "%s, commit %s" % (sh([TURNPIKE, "--version"]).splitlines()[0],
                                        sh(["git", "-C", REPO, "describe", "--always",
                                            "--dirty"]))),
    ]


def fmt_ratio(a, b):
    return "%.2f" % (a / b) if a and b else "–"


def fmt_bytes(n):
    if abs(n) >= 1 << 20:
        return "%.1f MiB" % (n / 1048576)
    if abs(n) >= 1024:
        return "%.1f KiB" % (n / 1024)
    return "%d B" % n


def case_table(case, results):
    """Markdown table for one case: the medians over the rounds, and turnpike / contender."""
    ref = {"routes": "tp10k", "plugins": "tp1", "ratelimit": "tp1"}.get(case["id"],
                                                                       "turnpike")
    med = {}
    for c in case["contenders"]:
        runs = results[case["id"]][c]
        med[c] = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}
        med[c]["all"] = [r["rps"] for r in runs]
        med[c]["bad"] = sum(r["non2xx"] + r["errors"] for r in runs)
    rows = ["| contender | req/s | p50 ms | p99 ms | %s ÷ this: req/s | p99 | req/s per round |"
            " errors |" % {"tp10k": "10k routes", "tp1": "no plugin"}.get(ref, "turnpike"),
            "|---|---:|---:|---:|---:|---:|---|---:|"]
    for c in case["contenders"]:
        m = med[c]
        rows.append("| %s | %.0f | %.3f | %.3f | %s | %s | %s | %d |" % (
            CONTENDER_LABEL[c], m["rps"], m["p50"], m["p99"],
            "–" if c == ref else fmt_ratio(med[ref]["rps"], m["rps"]),
            "–" if c == ref else fmt_ratio(med[ref]["p99"], m["p99"]),
            ", ".join("%.0f" % x for x in m["all"]), m["bad"]))
    if ref == "turnpike":
        line = ("ratios (req/s): turnpike/nginx **%s**, turnpike/haproxy **%s**, "
                "turnpike/direct **%s**; p99: turnpike/nginx %s, turnpike/haproxy %s" % (
                    fmt_ratio(med["turnpike"]["rps"], med["nginx"]["rps"]),
                    fmt_ratio(med["turnpike"]["rps"], med["haproxy"]["rps"]),
                    fmt_ratio(med["turnpike"]["rps"], med["direct"]["rps"]),
                    fmt_ratio(med["turnpike"]["p99"], med["nginx"]["p99"]),
                    fmt_ratio(med["turnpike"]["p99"], med["haproxy"]["p99"])))
    elif case["id"] == "ratelimit":
        line = ("ratios (req/s) to no plugin: local **%s**, redis **%s**, redis-batched **%s**; "
                "p99: local %s, redis %s, redis-batched %s" % tuple(
                    fmt_ratio(med[c][k], med["tp1"][k])
                    for k in ("rps", "p99") for c in ("tprl", "tprlr", "tprlb")))
        line += ("\n\nOne fixed-window limit that is never reached, one counter for every "
                 "request (the worst case for contention); redis: one script call per request "
                 "on a local redis-server; redis-batched: the defaults (sync_every 1000, sync_interval 100 ms).")
    elif ref == "tp1":
        line = ("ratios (req/s): key-auth / no plugin **%s**, jwt RS256 / no plugin **%s**; "
                "p99: key-auth / no plugin %s, jwt / no plugin %s" % (
                    fmt_ratio(med["tpkey"]["rps"], med["tp1"]["rps"]),
                    fmt_ratio(med["tpjwt"]["rps"], med["tp1"]["rps"]),
                    fmt_ratio(med["tpkey"]["p99"], med["tp1"]["p99"]),
                    fmt_ratio(med["tpjwt"]["p99"], med["tp1"]["p99"])))
        line += ("\n\nThe measured route `/0` with no plugin, with key-auth (one consumer, key "
                 "in the `apikey` header) and with jwt (one consumer, an RS256 token verified "
                 "with a 2048-bit RSA key on every request).")
    else:
        line = "ratio (req/s): 10,000 routes / 1 route **%s**; p99 %s" % (
            fmt_ratio(med["tp10k"]["rps"], med["tp1"]["rps"]),
            fmt_ratio(med["tp10k"]["p99"], med["tp1"]["p99"]))
        if ROUTES_INFO:
            line += ("\n\nThe measured route is the prefix `/0` (strip_path false) in both; the "
                     "10,000-route config adds `/r0` … `/r9999`, each on its own service. It "
                     "started listening in %.2f s; RSS at start %s (1 route: %s)." % (
                         ROUTES_INFO["start"], fmt_bytes(ROUTES_INFO["rss"]),
                         fmt_bytes(ROUTES_INFO["rss1"])))
    return rows, line, med


def report(args, started, mach, results, mem, instr, errors):
    out = ["# turnpike benchmark results", ""]
    out.append("Date: %s. Command: `%s` (%.1f minutes)." % (
        started.strftime("%Y-%m-%d %H:%M:%S %Z").strip(), args.command,
        (time.time() - started.timestamp()) / 60))
    out.append("")
    out.append("Absolute numbers on a small shared machine are noise: the ratios taken in this "
               "one run are the figures (DESIGN.md §9). All on 127.0.0.1; `wrk -t1 -c<conns> "
               "-d%ds --latency` (keep-alive) for every contender; %d rounds per case, the "
               "contenders alternated round-robin within each round (starting contender rotated "
               "per round); medians over the rounds. One worker each; the backend is one NGINX "
               "worker (`return 200` for 0 B and 1 KiB, a static file for 64 KiB)."
               % (args.duration, args.rounds))
    out.append("")
    out.append("## Machine")
    out.append("")
    out.append("| | |")
    out.append("|---|---|")
    for k, v in mach:
        out.append("| %s | %s |" % (k, v.replace("|", "\\|")))
    out.append("")
    out.append("## Throughput and latency")
    out.append("")
    out.append("\"turnpike ÷ this\": above 1 means turnpike is faster for req/s, below 1 means "
               "its p99 latency is lower. \"errors\": non-2xx responses plus socket errors "
               "summed over the rounds.")
    out.append("")
    summary = {}
    for case in CASES:
        if case["id"] not in results:
            continue
        rows, line, med = case_table(case, results)
        summary[case["id"]] = med
        out.append("### %s (`%s`)" % (case["title"], case["path"]))
        out.append("")
        out.extend(rows)
        out.append("")
        out.append(line)
        out.append("")
    if mem:
        out.append("## Memory (turnpike)")
        out.append("")
        out.append("| measure | value |")
        out.append("|---|---:|")
        if "idle" in mem:
            out.append("| RSS at idle after start (VmRSS) | %s |" % fmt_bytes(mem["idle"]))
        if "with_conns" in mem:
            out.append("| RSS with %s idle keep-alive client connections | %s |"
                       % (format(IDLE_CONNS, ","), fmt_bytes(mem["with_conns"])))
            out.append("| per idle keep-alive connection ((with − idle) / %s) | %.0f B |"
                       % (format(IDLE_CONNS, ","), mem["per_conn"]))
        if "stream" in mem:
            st = mem["stream"]
            out.append("| RSS at idle, fresh process for the download | %s |"
                       % fmt_bytes(st["idle"]))
            out.append("| peak RSS (VmHWM) during a 1 GiB streamed download | %s |"
                       % fmt_bytes(st["hwm"]))
            out.append("| highest VmRSS sampled every 20 ms during it | %s |"
                       % fmt_bytes(st["max_sampled"]))
            out.append("| 1 GiB download through turnpike | %.1f s (%.0f MiB/s) |"
                       % (st["seconds"], 1024 / st["seconds"]))
        out.append("")
        out.append("turnpike runs with RLIMIT_NOFILE %d; the connections are opened by the bench "
                   "process, each sends one request and stays open." % mem.get("nofile", 0))
        out.append("")
    if instr:
        out.append("## CPU instructions per proxied request (callgrind)")
        out.append("")
        out.append("| measure | value |")
        out.append("|---|---:|")
        out.append("| Ir, start + %d requests over %d keep-alive connections + stop | %d |"
                   % (instr["requests"], instr["connections"], instr["ir_n"]))
        out.append("| Ir, start + stop only | %d |" % instr["ir_0"])
        out.append("| **instructions per request** ((Ir_N − Ir_0) / N) | **%.0f** |"
                   % instr["per_request"])
        try:
            base, margin = instructions.read_baseline(os.path.join(HERE,
                                                                   "instructions.baseline"))
            out.append("| committed baseline (bench/instructions.baseline) | %.0f (margin %.0f%%)"
                       " |" % (base, 100 * margin))
        except (OSError, ValueError):
            pass
        out.append("")
        out.append("`valgrind --tool=callgrind` on turnpike only (workers: 1, access_log off) "
                   "in front of a built-in Python backend; one request in flight at a time, so "
                   "the figure does not depend on event batching. Same code as "
                   "`bench/instructions.py`.")
        out.append("")
    targets = target_lines(summary, mem)
    if targets:
        out.append("## Targets of issue 4")
        out.append("")
        out.append("| target | measured | met |")
        out.append("|---|---|---|")
        out.extend(targets)
        out.append("")
    if errors:
        out.append("## Problems in this run")
        out.append("")
        for e in errors:
            out.append("- " + e.replace("\n", " "))
        out.append("")
    # the hand-kept log of what each optimisation bought (bench/HISTORY.md) travels with
    # every generated report
    history = os.path.join(os.path.dirname(os.path.abspath(__file__)), "HISTORY.md")
    if os.path.exists(history):
        with open(history) as f:
            out.append(f.read().rstrip())
        out.append("")
    return "\n".join(out)


def target_lines(s, mem):
    rows = []

    def add(what, val, ok):
        rows.append("| %s | %s | %s |" % (what, val, "yes" if ok else "**no**"))

    for cid, name in (("0b-50", "0 B"), ("1k-50", "1 KiB")):
        if cid not in s:
            continue
        m = s[cid]
        r_n = m["turnpike"]["rps"] / m["nginx"]["rps"]
        r_h = m["turnpike"]["rps"] / m["haproxy"]["rps"]
        add("%s, 50 conns: req/s ≥ 1.10 × NGINX" % name, "%.2f" % r_n, r_n >= 1.10)
        add("%s, 50 conns: req/s ≥ 1.30 × HAProxy" % name, "%.2f" % r_h, r_h >= 1.30)
        add("%s, 50 conns: p99 ≤ NGINX's" % name, "%.3f vs %.3f ms"
            % (m["turnpike"]["p99"], m["nginx"]["p99"]),
            m["turnpike"]["p99"] <= m["nginx"]["p99"])
    if "0b-256" in s:
        m = s["0b-256"]
        r = m["turnpike"]["rps"] / m["nginx"]["rps"]
        add("256 conns: req/s ≥ 1.10 × NGINX", "%.2f" % r, r >= 1.10)
    if "routes" in s:
        m = s["routes"]
        r = m["tp10k"]["rps"] / m["tp1"]["rps"]
        add("10,000 routes ≥ 0.95 × 1 route", "%.2f" % r, r >= 0.95)
    if mem and "idle" in mem:
        add("idle RSS ≤ 10 MiB", fmt_bytes(mem["idle"]), mem["idle"] <= 10 << 20)
    if mem and "per_conn" in mem:
        add("≤ 4 KiB per idle keep-alive connection", "%.0f B" % mem["per_conn"],
            mem["per_conn"] <= 4096)
    return rows


# ---------------------------------------------------------------------------------------------

TURNPIKE = os.path.join(REPO, "build", "turnpike")


def main():
    global TURNPIKE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per contender")
    ap.add_argument("--turnpike", default=os.environ.get("TURNPIKE_BIN", TURNPIKE))
    ap.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--cases", help="comma-separated subset of: " +
                    ",".join(c["id"] for c in CASES))
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-instructions", action="store_true")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    args = ap.parse_args()
    if args.rounds < 1 or args.duration < 1:
        ap.error("--rounds and --duration must be at least 1")
    args.command = " ".join(shlex.quote(a) for a in [sys.executable, "bench/run.py"] +
                            sys.argv[1:])
    if os.environ.get("MAKELEVEL"):
        args.command = "make bench`, which ran `" + args.command
    TURNPIKE = os.path.abspath(args.turnpike)
    if not os.access(TURNPIKE, os.X_OK):
        ap.error("no turnpike binary at %s (run `make build`)" % TURNPIKE)
    cases = CASES
    if args.cases:
        want = set(args.cases.split(","))
        unknown = want - {c["id"] for c in CASES}
        if unknown:
            ap.error("unknown case(s): " + ",".join(sorted(unknown)))
        cases = [c for c in CASES if c["id"] in want]

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    if not args.no_install:
        ensure_packages()
    nofile = raise_nofile(NOFILE)   # children get the same (see _child_nofile)
    started = datetime.datetime.now().astimezone()
    workdir = tempfile.mkdtemp(prefix="turnpike-bench-")
    procs = Procs(workdir)
    results, mem, instr, errors = {}, {}, None, []
    try:
        mach = machine()
        # --- servers
        ports = {k: free_port() for k in ("backend", "turnpike", "nginx", "haproxy", "tp1",
                                          "tp10k", "tpkey", "tpjwt", "mem1", "mem2",
                                          "redis", "tprl", "tprlr", "tprlb")}
        bport = ports["backend"]
        procs.start("backend", ["nginx", "-e", os.path.join(workdir, "backend.err"), "-c",
                                backend_conf(workdir, bport)], bport)
        for path, size in BODIES.items():
            status, length = http_get(bport, path)
            if status != 200 or length != size:
                raise MeasureError("backend %s: %d, %d bytes" % (path, status, length))
        tp = lambda name, **kw: [TURNPIKE, "-c", turnpike_conf(  # noqa: E731
            workdir, name, ports[name], bport, **kw)]
        procs.start("turnpike", tp("turnpike"), ports["turnpike"])
        procs.start("nginx", ["nginx", "-e", os.path.join(workdir, "nginx-proxy.err"), "-c",
                              nginx_proxy_conf(workdir, ports["nginx"], bport)], ports["nginx"])
        procs.start("haproxy", ["haproxy", "-db", "-f",
                                haproxy_conf(workdir, ports["haproxy"], bport)],
                    ports["haproxy"])
        procs.start("tp1", tp("tp1", measured="/0"), ports["tp1"])
        if any(c["id"] == "plugins" for c in cases):
            procs.start("tpkey", tp("tpkey", measured="/0", plugin="key-auth"), ports["tpkey"])
            procs.start("tpjwt", tp("tpjwt", measured="/0", plugin="jwt"), ports["tpjwt"])
        if any(c["id"] == "ratelimit" for c in cases):
            REDIS["port"] = ports["redis"]
            procs.start("redis", ["redis-server", "--port", str(ports["redis"]), "--bind",
                                  "127.0.0.1", "--save", "", "--appendonly", "no"],
                        ports["redis"])
            for name, storage in RATELIMIT.items():
                procs.start(name, tp(name, measured="/0", plugin=storage), ports[name])
        t0 = time.monotonic()
        procs.start("tp10k", tp("tp10k", routes=ROUTES, measured="/0"), ports["tp10k"],
                    timeout=60)
        ROUTES_INFO["start"] = time.monotonic() - t0
        ROUTES_INFO["rss"] = rss(procs.procs["tp10k"].pid)[0]
        ROUTES_INFO["rss1"] = rss(procs.procs["tp1"].pid)[0]
        log("turnpike with %d routes listening after %.2f s, RSS %s" % (
            ROUTES, ROUTES_INFO["start"], fmt_bytes(ROUTES_INFO["rss"])))
        port_of = {"direct": bport, "turnpike": ports["turnpike"], "nginx": ports["nginx"],
                   "tpkey": ports["tpkey"], "tpjwt": ports["tpjwt"],
                   "tprl": ports["tprl"], "tprlr": ports["tprlr"], "tprlb": ports["tprlb"],
                   "haproxy": ports["haproxy"], "tp1": ports["tp1"], "tp10k": ports["tp10k"]}
        for case in cases:
            for c in case["contenders"]:
                status, length = http_get(port_of[c], case["path"],
                                          headers=CONTENDER_HEADERS.get(c, ()))
                if status != 200 or length != BODIES[case["path"]]:
                    raise MeasureError("%s %s: status %d, %d bytes" % (c, case["path"], status,
                                                                       length))

        # --- throughput
        total = sum(len(c["contenders"]) for c in cases) * args.rounds * args.duration
        log("throughput: %d cases x %d rounds x %d s per contender: about %d s"
            % (len(cases), args.rounds, args.duration, total))
        if args.warmup:
            for case in cases:
                for c in case["contenders"]:
                    wrk(port_of[c], case["path"], case["conns"], args.warmup,
                        CONTENDER_HEADERS.get(c, ()))
        for rnd in range(args.rounds):
            for case in cases:
                order = case["contenders"]
                k = rnd % len(order)
                order = order[k:] + order[:k]
                for c in order:
                    r = wrk(port_of[c], case["path"], case["conns"], args.duration,
                            CONTENDER_HEADERS.get(c, ()))
                    results.setdefault(case["id"], {}).setdefault(c, []).append(r)
                    log("round %d  %-7s %-28s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms%s" % (
                        rnd + 1, case["id"], CONTENDER_LABEL[c], r["rps"], r["p50"], r["p99"],
                        "  (%d non-2xx, %d socket errors)" % (r["non2xx"], r["errors"])
                        if r["non2xx"] or r["errors"] else ""))
                    if r["non2xx"] or r["errors"]:
                        errors.append("%s, %s, round %d: %d non-2xx responses, %d socket "
                                      "errors" % (case["id"], CONTENDER_LABEL[c], rnd + 1,
                                                  r["non2xx"], r["errors"]))
        for name in ("turnpike", "nginx", "haproxy", "tp1", "tp10k", "tpkey", "tpjwt", "tprl",
                     "tprlr", "tprlb", "redis"):
            if name in procs.procs and procs.procs[name].poll() is not None:
                errors.append("%s exited during the run (status %s)"
                              % (name, procs.procs[name].returncode))

        # --- memory
        if not args.no_memory:
            mem["nofile"] = nofile
            if nofile < IDLE_CONNS + 100:
                errors.append("RLIMIT_NOFILE is %d: cannot open %d connections"
                              % (nofile, IDLE_CONNS))
            else:
                try:
                    idle, with_conns = memory_idle_conns(
                        procs, tp("mem1"), ports["mem1"], IDLE_CONNS)
                    mem.update(idle=idle, with_conns=with_conns,
                               per_conn=(with_conns - idle) / IDLE_CONNS)
                    log("memory: idle %s, with %d connections %s (%.0f B each)" % (
                        fmt_bytes(idle), IDLE_CONNS, fmt_bytes(with_conns), mem["per_conn"]))
                except (MeasureError, OSError) as e:
                    errors.append("idle connections: %s" % e)
            try:
                mem["stream"] = memory_stream(procs, tp("mem2"), ports["mem2"])
                log("memory: 1 GiB download, VmHWM %s in %.1f s" % (
                    fmt_bytes(mem["stream"]["hwm"]), mem["stream"]["seconds"]))
            except (MeasureError, OSError) as e:
                errors.append("1 GiB download: %s" % e)

        # --- instructions
        if not args.no_instructions:
            try:
                instr = instructions.measure(TURNPIKE, log=log)
            except (MeasureError, OSError) as e:
                errors.append("callgrind: %s" % e)
    except KeyboardInterrupt:
        log("interrupted")
        raise
    finally:
        procs.stop_all()
        if args.keep:
            log("work directory kept: %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    text = report(args, started, mach, results, mem, instr, errors)
    with open(args.output, "w") as f:
        f.write(text)
    print(text)
    log("wrote %s" % os.path.relpath(args.output))
    return 1 if errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyboardInterrupt, Interrupted) as e:
        log("stopped: %s" % (str(e) or "Ctrl-C"))
        sys.exit(130)
    except MeasureError as e:
        log("bench failed: %s" % e)
        sys.exit(1)
