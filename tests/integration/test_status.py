"""The status endpoint on status_listen: JSON with every upstream and target, their health and
in-flight requests; nothing else is served there, and it is not on the public port."""

import json
import threading
import time

from conftest import check_alive, dead_port, free_port, route, service
from rawhttp import Client, request


def status(port):
    r = request(port, "GET", "/status")
    assert r.status == 200, r
    assert r.header("content-type") == "application/json"
    return json.loads(r.body)


def targets(doc, name):
    return {t["target"]: t for u in doc["upstreams"] if u["name"] == name for t in u["targets"]}


def test_status_shows_health_and_in_flight(stack):
    a = stack.backend("A")
    dead = dead_port()
    sport = free_port()
    gw = stack.gateway(
        [service("s", "http://pool", [route("r", ["/s"])], retries=0)],
        upstreams=[{"name": "pool", "algorithm": "least-connections",
                    "healthchecks": {"active": {"interval": 100, "type": "tcp",
                                                "unhealthy_threshold": 1}},
                    "targets": [{"target": "127.0.0.1:%d" % a.port, "weight": 3},
                                {"target": "127.0.0.1:%d" % dead}]}],
        extra={"status_listen": "127.0.0.1:%d" % sport})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        t = targets(status(sport), "pool")
        if t["127.0.0.1:%d" % dead]["health"] == "unhealthy":
            break
        time.sleep(0.05)
    t = targets(status(sport), "pool")
    assert t["127.0.0.1:%d" % dead]["health"] == "unhealthy"
    live = t["127.0.0.1:%d" % a.port]
    assert live["health"] == "healthy" and live["weight"] == 3 and live["in_flight"] == 0
    assert live["connections"] == 0

    # a slow request is visible as in flight while it runs
    th = threading.Thread(target=lambda: request(gw.port, "GET", "/s/sleep/800"))
    th.start()
    seen = 0
    for _ in range(40):
        seen = max(seen, targets(status(sport), "pool")["127.0.0.1:%d" % a.port]["in_flight"])
        if seen:
            break
        time.sleep(0.02)
    th.join()
    assert seen == 1
    # the upstream connection is kept in the pool: one open connection to the target
    assert targets(status(sport), "pool")["127.0.0.1:%d" % a.port]["connections"] == 1
    assert targets(status(sport), "pool")["127.0.0.1:%d" % a.port]["in_flight"] == 0
    check_alive(gw)


def test_status_listener_serves_only_status(stack):
    a = stack.backend("A")
    sport = free_port()
    gw = stack.gateway([service("s", a.url, [route("r", ["/s"])])],
                       extra={"status_listen": "127.0.0.1:%d" % sport})
    assert request(sport, "GET", "/s/x").status == 404
    assert request(sport, "POST", "/status", body=b"x").status == 405
    with Client(sport) as c:
        c.send(b"GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked"
               b"\r\n\r\n")
        assert c.read_response().status == 400
    # and the public port does not serve it
    assert request(gw.port, "GET", "/status").status == 404
    doc = status(sport)
    assert [u["name"] for u in doc["upstreams"]] == ["s"]
    assert doc["upstreams"][0]["targets"][0]["health"] == "untracked"


def test_head_status_has_no_body(stack):
    a = stack.backend("A")
    sport = free_port()
    stack.gateway([service("s", a.url, [route("r", ["/s"])])],
                  extra={"status_listen": "127.0.0.1:%d" % sport})
    with Client(sport) as c:
        c.send(b"HEAD /status HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response(head=True)
        assert r.status == 200 and int(r.header("content-length")) > 0
        assert c.closed_within(2.0)
        assert not c.buf, "HEAD answered with a body"
