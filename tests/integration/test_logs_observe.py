"""The four logs (issue 7, item 3): access log with configurable fields, error log with levels
and request ids, security log with rejected malformed requests, audit log of configuration
changes; syslog destinations (RFC 5424); SIGUSR1 rotation that loses no line; a writer thread
that never blocks a worker (a full queue drops lines and counts them in /status).
test_logs.py keeps the original access-log cases (B57)."""

import json
import os
import re
import signal
import socket
import tempfile
import threading
import time

import pytest

from conftest import check_alive, dead_port, free_port, route, service
from rawhttp import Client, request, send_raw

TID = "4bf92f3577b34da6a3ce929d0e0e4736"


def lines_of(data):
    return [l for l in data.split(b"\n") if l]


def parse_all(data, what):
    """Every line of a log as a JSON object (RFC 8259 text is UTF-8)."""
    docs = []
    for raw in lines_of(data):
        doc = json.loads(raw.decode("utf-8"))
        assert isinstance(doc, dict), (what, raw)
        docs.append(doc)
    return docs


def wait_lines(gw, path, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(lines_of(gw.read(path))) < n:
        time.sleep(0.02)
    time.sleep(0.1)
    return parse_all(gw.read(path), path)


def status_doc(port):
    r = request(port, "GET", "/status")
    assert r.status == 200
    return json.loads(r.body)


def logs_gw(stack, extra=None, limits=None, **kw):
    be = stack.backend("echo")
    d = stack.gateway([service("s", be.url, [route("r", ["/public"])]),
                       service("down", "http://127.0.0.1:%d" % dead_port(),
                               [route("dead", ["/dead"])], retries=0)],
                      limits=limits or {"max_header_bytes": 8192, "max_uri_bytes": 2048},
                      start=False, **kw)
    d.audit_log = os.path.join(d.dir, "audit.log")
    ex = {"audit_log": d.audit_log}
    ex.update(extra or {})
    d.opts["extra"] = ex
    d.write_config()
    d.start()
    return d


# ---- access log fields -------------------------------------------------------------------

def test_access_log_fields_configurable(stack):
    fields = ["request_id", "method", "path", "query", "protocol", "host", "status", "referer",
              "peer", "client", "tries", "consumer", "trace_id", "span_id", "time",
              "user_agent", "upstream_latency_ms"]
    gw = logs_gw(stack, extra={"access_log_fields": fields})
    r = request(gw.port, "GET", "/public/a%20b?q=%22x%22&y=\\", host="api.example.com:8080",
                headers=[("Referer", "http://ref.example/\"x\""), ("User-Agent", "ua/1"),
                         ("traceparent", "00-%s-00f067aa0ba902b7-01" % TID)])
    assert r.status == 200
    (doc,) = wait_lines(gw, gw.access_log, 1)
    assert list(doc) == fields                       # exactly these, in this order
    assert doc["request_id"] == r.header("x-request-id")
    assert doc["method"] == "GET" and doc["path"] == "/public/a%20b"  # normalised, not decoded
    assert doc["query"] == 'q=%22x%22&y=\\'
    assert doc["protocol"] == "HTTP/1.1"
    assert doc["host"] == "api.example.com:8080"
    assert doc["referer"] == 'http://ref.example/"x"'
    assert doc["status"] == 200 and doc["tries"] == 1
    assert doc["peer"] == "127.0.0.1" and doc["client"] == "127.0.0.1"
    assert doc["consumer"] is None
    assert doc["trace_id"] == TID                    # tracing off: the caller's trace id
    assert doc["span_id"] is None                    # no span of ours without tracing
    assert doc["user_agent"] == "ua/1"
    assert isinstance(doc["upstream_latency_ms"], int)
    # absent values are null, not missing
    request(gw.port, "GET", "/public/b")
    doc = wait_lines(gw, gw.access_log, 2)[1]
    assert doc["query"] is None and doc["referer"] is None and doc["trace_id"] is None


def test_default_fields_are_the_original_set_plus_trace_id(stack):
    gw = logs_gw(stack)
    request(gw.port, "GET", "/public/x")
    (doc,) = wait_lines(gw, gw.access_log, 1)
    assert list(doc) == ["time", "request_id", "client", "method", "path", "user_agent",
                         "status", "bytes_received", "bytes_sent", "route", "service",
                         "upstream", "latency_ms", "upstream_latency_ms", "trace_id"]


def test_access_log_fields_config_errors(tmp_path):
    from conftest import check_config
    base = 'listen: ["127.0.0.1:1"]\nservices: []\n'
    for text, msg in [("access_log_fields: [time, nope]\n", 'unknown access log field "nope"'),
                      ("access_log_fields: [time, time]\n", "listed twice"),
                      ("access_log_fields: []\n", "at least one field"),
                      ("access_log: \"syslog:server=\"\n", "access_log"),
                      ("security_log: \"syslog:facility=local9\"\n", "unknown syslog facility"),
                      ("audit_log: \"syslog:colour=red\"\n", "unknown syslog option"),
                      ("error_log: \"off\"\n", "cannot be \"off\""),
                      ("log_buffer_size: 100\n", "log_buffer_size")]:
        rc, err = check_config(tmp_path, base + text)
        assert rc == 1 and msg in err, (text, err)
    rc, err = check_config(tmp_path, base + 'access_log: "syslog:server=127.0.0.1:5514,'
                                            'facility=local3,tag=edge"\naudit_log: "off"\n')
    assert rc == 0, err


# ---- hostile input: every line of every log is JSON (B57) --------------------------------

HOSTILE = [
    b"GET /public/%0d%0a203.0.113.1%20-%20-%20%22GET%20/admin%20HTTP/1.1%22%20200 HTTP/1.1\r\n"
    b"Host: example.com\r\nConnection: close\r\n\r\n",
    b"GET /public/x?a=%00%1b%5b31m\"\\ HTTP/1.1\r\nHost: example.com\r\n"
    b"User-Agent: ua \"quoted\" \\ back\r\nReferer: http://r.example/\x80\xff\xc3\r\n"
    b"Connection: close\r\n\r\n",
    b"GET /public/x HTTP/1.1\r\nHost: example.com\r\nUser-Agent: ua\x1b[31m\r\n"
    b"X-Request-ID: \"}{\\n\r\nConnection: close\r\n\r\n",
    b"GET /public/\x01\x7f HTTP/1.1\r\nHost: example.com\r\n\r\n",          # 400
    b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: example.com\r\n\r\n",     # 414
    b"GET /public/x HTTP/1.1\r\nHost: example.com\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
    b"GET /public/x HTTP/1.1\r\nHost: exa\xffmple.com\r\nConnection: close\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),      # TLS to plain
    b"GET /dead/\"\x1b HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    b"GET /public/x HTTP/1.1\r\nHost: example.com\r\ntraceparent: \"\\\x1b\r\n"
    b"Connection: close\r\n\r\n",
]


def test_hostile_input_every_log_line_is_json(stack):
    gw = logs_gw(stack, extra={"access_log_fields": [
        "time", "request_id", "client", "method", "path", "query", "host", "user_agent",
        "referer", "status", "trace_id"]})
    for data in HOSTILE:
        send_raw(gw.port, data, timeout=5)
    access = wait_lines(gw, gw.access_log, len(HOSTILE))
    assert len(access) == len(HOSTILE), access   # one request, one line
    raw = gw.read(gw.access_log)
    for bad in (b"\r", b"\x1b", b"\x00", b"\x01", b"\x7f", b"\x80\xff"):
        assert bad not in raw, bad
    security = parse_all(gw.read(gw.security_log), "security")
    assert security and all(d["event"] == "malformed_request" for d in security)
    gw.write_config()
    gw.reload()
    wait_lines(gw, gw.audit_log, 2)
    for path in (gw.access_log, gw.security_log, gw.error_log, gw.audit_log):
        docs = parse_all(gw.read(path), path)
        assert docs, path
    errors = parse_all(gw.read(gw.error_log), "error")
    assert all(d["level"] in ("debug", "info", "notice", "warn", "error") for d in errors)


# ---- security log: malformed requests ------------------------------------------------------

def test_malformed_requests_in_security_log(stack):
    gw = logs_gw(stack, limits={"max_header_bytes": 8192, "max_uri_bytes": 2048,
                                "header_timeout": 300})
    ids = {}
    cases = [(400, b"GET /public/\x01 HTTP/1.1\r\nHost: example.com\r\n\r\n"),
             (414, b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: example.com\r\n\r\n"),
             (431, b"GET /public/x HTTP/1.1\r\nHost: example.com\r\nX-Big: " + b"b" * 9000 +
              b"\r\n\r\n"),
             (408, b"GET /public/x HTTP/1.1\r\nHost: exam"),
             (505, b"GET /public/x HTTP/2.0\r\nHost: example.com\r\n\r\n")]
    for status, data in cases:
        responses, _ = send_raw(gw.port, data, timeout=5)
        assert responses and responses[0].status == status, (status, responses)
        ids[status] = responses[0].header("x-request-id")
        assert ids[status]
    assert request(gw.port, "GET", "/public/fine").status == 200
    assert request(gw.port, "GET", "/nowhere").status == 404
    docs = wait_lines(gw, gw.security_log, len(cases))
    assert len(docs) == len(cases), docs                 # 200 and 404 add nothing
    by_status = {d["status"]: d for d in docs}
    assert set(by_status) == {s for s, _ in cases}
    for status, doc in by_status.items():
        assert doc["event"] == "malformed_request"
        assert doc["request_id"] == ids[status]        # the X-Request-ID the client got
        assert doc["client"] == "127.0.0.1"
        assert doc["reason"]
        assert list(doc)[:3] == ["time", "event", "request_id"]
    assert by_status[408]["reason"] == "request header timeout"
    assert by_status[431]["reason"] == "request header fields too large"


def test_error_log_lines_carry_the_request_id(stack):
    gw = logs_gw(stack, log_level="info")
    r = request(gw.port, "GET", "/dead/x")
    assert r.status == 502
    rid = r.header("x-request-id")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        docs = parse_all(gw.read(gw.error_log), "error")
        mine = [d for d in docs if d.get("request_id") == rid]
        if len(mine) >= 2:
            break
        time.sleep(0.05)
    assert len(mine) >= 2, docs     # "connect to ... failed" and "request ...: 502 ..."
    assert all(d["level"] == "warn" and list(d)[:3] == ["time", "level", "request_id"]
               for d in mine)
    # lines not about a request have no request_id
    assert any("started" in d["message"] and "request_id" not in d for d in docs)


# ---- audit log ---------------------------------------------------------------------------

def audit_services(be_url, v2):
    cors = {"name": "cors", "config": {"origins": ["http://b.example" if v2 else
                                                   "http://a.example"]}}
    s1_routes = [dict(route("r1", ["/r1"]), plugins=[cors])]
    s1_routes.append(route("r4", ["/r4"]) if v2 else route("r2", ["/r2"]))
    svcs = [service("s1", be_url, s1_routes, retries=2 if v2 else 1),
            service("s2", "http://u1", [route("r3", ["/r3"])])]
    if v2:
        svcs.append(service("s3", be_url, [route("r5", ["/r5"])]))
    return svcs


def test_audit_log_startup_reload_and_failure(stack):
    be = stack.backend("echo")
    ups = lambda w: [{"name": "u1", "targets": [{"target": "127.0.0.1:%d" % be.port,  # noqa
                                                  "weight": w}]}]
    cons = lambda v2: [{"username": "alice", "keyauth_credentials": [{"key": "k-alice"}]}] + (  # noqa
        [{"username": "bob"}] if v2 else [])
    gw = stack.gateway(audit_services(be.url, False), upstreams=ups(10), start=False)
    gw.audit_log = os.path.join(gw.dir, "audit.log")
    gw.opts["extra"] = {"audit_log": gw.audit_log, "consumers": cons(False)}
    gw.write_config()
    gw.start()
    (start,) = wait_lines(gw, gw.audit_log, 1)
    assert start["event"] == "config_load" and start["who"] == "startup"
    assert start["result"] == "ok" and start["config"] == gw.config_path
    assert start["counts"] == {"services": 2, "routes": 3, "upstreams": 1, "consumers": 1,
                               "plugins": 1}
    assert re.match("^[0-9a-f]{64}$", start["sha256"])

    gw.write_config(services=audit_services(be.url, True), upstreams=ups(20), log_level="warn",
                    extra={"audit_log": gw.audit_log, "consumers": cons(True)})
    gw.reload()
    docs = wait_lines(gw, gw.audit_log, 2)
    assert len(docs) == 2, docs
    rel = docs[1]
    assert rel["event"] == "config_reload" and rel["result"] == "ok"
    assert rel["who"] == "signal SIGHUP"
    assert rel["sender_pid"] == os.getpid() and rel["sender_uid"] == os.getuid()
    assert rel["previous_sha256"] == start["sha256"] and rel["sha256"] != start["sha256"]
    assert rel["generation"] > start["generation"]
    assert rel["changes"] == {
        "services": {"added": ["s3"], "removed": [], "changed": ["s1"]},
        "routes": {"added": ["r4", "r5"], "removed": ["r2"], "changed": []},
        "upstreams": {"added": [], "removed": [], "changed": ["u1"]},
        "consumers": {"added": ["bob"], "removed": [], "changed": []},
        "plugins": {"added": [], "removed": [], "changed": ["cors@route:r1"]},
        "settings": {"added": [], "removed": [], "changed": ["log_level"]},
    }
    # the credential's key is never written
    assert b"k-alice" not in gw.read(gw.audit_log)
    assert request(gw.port, "GET", "/r5/x").status == 200

    # the same file again: a reload with nothing changed
    gw.reload()
    docs = wait_lines(gw, gw.audit_log, 3)
    assert docs[2]["changes"] == {} and docs[2]["sha256"] == rel["sha256"]

    # a broken file: a failed reload, the running configuration stays
    gw.write_text("services: [\n")
    gw.reload()
    docs = wait_lines(gw, gw.audit_log, 4)
    bad = docs[3]
    assert bad["event"] == "config_reload" and bad["result"] == "failed"
    assert bad["who"] == "signal SIGHUP" and bad["sender_pid"] == os.getpid()
    assert bad["errors"] and all(isinstance(e, str) for e in bad["errors"])
    assert "changes" not in bad and "sha256" not in bad
    assert request(gw.port, "GET", "/r5/x").status == 200
    check_alive(gw)


# ---- rotation ------------------------------------------------------------------------------

def test_sigusr1_rotation_loses_no_line(stack):
    gw = logs_gw(stack)
    good = bad = 0
    stop = threading.Event()
    rotated = threading.Event()

    def traffic():
        nonlocal good, bad
        with Client(gw.port) as c:
            while not stop.is_set():
                assert c.request("GET", "/public/x").status == 200
                good += 1
                if good % 10 == 0:       # a malformed request: one more security line
                    responses, _ = send_raw(gw.port, b"GET /\x01 HTTP/1.1\r\n\r\n", timeout=5)
                    assert responses[0].status == 400
                    bad += 1

    th = threading.Thread(target=traffic)
    th.start()
    try:
        time.sleep(0.7)
        for path in (gw.access_log, gw.security_log, gw.error_log, gw.audit_log):
            os.rename(path, path + ".1")
        os.kill(gw.pid, signal.SIGUSR1)
        rotated.set()
        time.sleep(0.7)
    finally:
        stop.set()
        th.join()
    assert good > 50 and bad > 3, (good, bad)

    def count(path, n):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            total = len(lines_of(gw.read(path))) + len(lines_of(gw.read(path + ".1")))
            if total >= n:
                break
            time.sleep(0.05)
        time.sleep(0.2)
        old = parse_all(gw.read(path + ".1"), path + ".1")
        new = parse_all(gw.read(path), path)
        return old, new

    old, new = count(gw.access_log, good + bad)
    assert len(old) + len(new) == good + bad, (len(old), len(new), good, bad)
    assert old and new                                   # both files got lines
    old_s, new_s = count(gw.security_log, bad)
    assert len(old_s) + len(new_s) == bad
    # the error and audit logs were reopened too
    gw.reload()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (lines_of(gw.read(gw.audit_log)) and
                                               lines_of(gw.read(gw.error_log))):
        time.sleep(0.05)
    assert parse_all(gw.read(gw.audit_log), "audit")[0]["event"] == "config_reload"
    assert any("reloaded" in d["message"] for d in parse_all(gw.read(gw.error_log), "error"))
    assert parse_all(gw.read(gw.audit_log + ".1"), "audit")[0]["event"] == "config_load"


# ---- syslog ------------------------------------------------------------------------------

RFC5424 = re.compile(rb"^<(\d+)>1 (\S+) (\S+) (\S+) (\d+) (\S+) - (.*)$", re.S)


def recv_all(sock, n, timeout=5.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            out.append(sock.recv(70000))
        except socket.timeout:
            break
    return out


def test_syslog_destinations_rfc5424(stack):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    d = tempfile.mkdtemp(prefix="tpsl")
    upath = os.path.join(d, "log.sock")
    ux = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ux.bind(upath)
    try:
        gw = logs_gw(stack, extra={
            "access_log": "syslog:server=127.0.0.1:%d,facility=local3,tag=edge-gw"
                          % udp.getsockname()[1],
            "security_log": "syslog:server=unix:%s,facility=auth" % upath})
        r = request(gw.port, "GET", "/public/x", headers=[("User-Agent", 'a"\\b')])
        assert r.status == 200
        send_raw(gw.port, b"GET /\x01 HTTP/1.1\r\n\r\n", timeout=5)
        msgs = recv_all(udp, 2)
        assert len(msgs) == 2, msgs
        m = RFC5424.match(msgs[0])
        assert m, msgs[0]
        pri, ts, host, app, pid, msgid, body = m.groups()
        assert int(pri) == 19 * 8 + 6                     # local3.info
        assert re.match(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", ts)
        assert app == b"edge-gw" and int(pid) == gw.pid and msgid == b"access"
        doc = json.loads(body)
        assert doc["request_id"] == r.header("x-request-id") and not body.endswith(b"\n")
        assert doc["user_agent"] == 'a"\\b' 
        (sec,) = recv_all(ux, 1)
        m = RFC5424.match(sec)
        assert m and int(m.group(1)) == 4 * 8 + 4 and m.group(6) == b"security"  # auth.warning
        assert json.loads(m.group(7))["event"] == "malformed_request"
        # /status counts what each log wrote
        check_alive(gw)
    finally:
        udp.close()
        ux.close()
        os.unlink(upath)
        os.rmdir(d)


def test_stuck_destination_drops_lines_and_never_blocks_workers(stack):
    d = tempfile.mkdtemp(prefix="tpsl")
    upath = os.path.join(d, "stuck.sock")
    ux = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)   # bound, never read
    ux.bind(upath)
    sport = free_port()
    try:
        gw = logs_gw(stack, extra={"access_log": "syslog:server=unix:%s" % upath,
                                   "log_buffer_size": 65536,
                                   "status_listen": "127.0.0.1:%d" % sport})
        n = 1500
        worst = 0.0
        t0 = time.monotonic()
        with Client(gw.port) as c:
            for _ in range(n):
                t = time.monotonic()
                assert c.request("GET", "/public/x").status == 200
                worst = max(worst, time.monotonic() - t)
        assert worst < 0.15, worst            # a send blocks the writer up to 200 ms, never us
        assert time.monotonic() - t0 < 30
        logs = status_doc(sport)["logs"]
        acc = logs["access"]
        assert acc["dropped"] > 0, logs
        assert acc["dropped"] + acc["written"] <= n
        assert set(logs) == {"access", "error", "security", "audit"}
        check_alive(gw)
    finally:
        ux.close()
        os.unlink(upath)
        os.rmdir(d)


def test_reload_switches_log_destinations(stack):
    be = stack.backend("echo")
    gw = stack.gateway([service("s", be.url, [route("r", ["/public"])])], access_log="off")
    with Client(gw.port) as c:
        for _ in range(5):
            assert c.request("GET", "/public/x").status == 200
    time.sleep(0.2)
    assert not os.path.exists(gw.access_log)
    # off -> a file: every request after the reload is logged, none lost in the switch
    gw.write_config(access_log="file")
    gw.reload()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not os.path.exists(gw.access_log):
        request(gw.port, "GET", "/public/probe")
        time.sleep(0.05)
    probes = len(lines_of(gw.read(gw.access_log)))
    ids = []
    with Client(gw.port) as c:
        for _ in range(20):
            ids.append(c.request("GET", "/public/x").header("x-request-id"))
    docs = wait_lines(gw, gw.access_log, probes + 20)
    assert [d["request_id"] for d in docs[probes:]] == ids
    # a file -> another file: the new one gets the lines from then on
    other = os.path.join(gw.dir, "access2.log")
    gw.write_config(access_log=other)
    gw.reload()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not lines_of(gw.read(other)):
        request(gw.port, "GET", "/public/probe2")
        time.sleep(0.05)
    before = len(lines_of(gw.read(gw.access_log)))
    request(gw.port, "GET", "/public/last")
    docs = wait_lines(gw, other, len(lines_of(gw.read(other))) + 1)
    assert docs[-1]["path"] == "/public/last"
    assert len(lines_of(gw.read(gw.access_log))) == before


def test_fifo_without_reader_is_refused_not_a_hang(tmp_path):
    """open(2) of a FIFO nobody reads would block the main thread (at start, or on a reload):
    it is refused at once like any path that cannot be opened."""
    import subprocess
    from conftest import turnpike_bin
    fifo = os.path.join(str(tmp_path), "access.fifo")
    os.mkfifo(fifo)
    cfg = os.path.join(str(tmp_path), "t.yaml")
    with open(cfg, "w") as f:
        f.write('listen: ["127.0.0.1:%d"]\naccess_log: "%s"\nservices: []\n' % (free_port(), fifo))
    started = time.monotonic()
    r = subprocess.run([turnpike_bin(), "-c", cfg], capture_output=True, text=True, timeout=20)
    assert r.returncode != 0, r
    assert time.monotonic() - started < 10
