"""Circuit breakers: a target's breaker opens on failures and answers 503 with Retry-After at
once, half-opens after open_time and closes on a successful trial; a service's max_requests
caps concurrency; the status endpoint shows the state."""

import json
import threading
import time

import pytest

from conftest import check_alive, free_port, route, service
from backends import FixedBackend
from rawhttp import assert_json_error, request


@pytest.fixture
def switch():
    made = []

    def make(**kw):
        s = FixedBackend(**kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def status_doc(port):
    return json.loads(request(port, "GET", "/status").body)


def test_target_breaker_opens_half_opens_and_closes(stack, switch):
    sw = switch(status=500)
    sport = free_port()
    gw = stack.gateway(
        [service("s", "http://pool", [route("r", ["/c"])], retries=0)],
        upstreams=[{"name": "pool", "targets": [{"target": "127.0.0.1:%d" % sw.port}],
                    "circuit_breaker": {"failure_count": 3, "failure_ratio": 0, "window": 10000,
                                        "open_time": 1000, "half_open_requests": 1}}],
        extra={"status_listen": "127.0.0.1:%d" % sport})
    assert [request(gw.port, "GET", "/c/x").status for _ in range(3)] == [500] * 3
    t0 = time.monotonic()
    r = request(gw.port, "GET", "/c/x")
    assert_json_error(r, 503)
    assert r.header("retry-after") == "1"
    assert time.monotonic() - t0 < 0.5
    assert sw.count == 3, "an open circuit must not send the request"
    t = status_doc(sport)["upstreams"][0]["targets"][0]
    assert t["circuit"] == "open"

    time.sleep(1.1)                     # half-open: one trial, which fails → open again
    assert request(gw.port, "GET", "/c/x").status == 500
    assert request(gw.port, "GET", "/c/x").status == 503
    sw.status = 200                     # the target recovers
    time.sleep(1.1)
    assert request(gw.port, "GET", "/c/x").status == 200   # the trial closes the circuit
    assert [request(gw.port, "GET", "/c/x").status for _ in range(5)] == [200] * 5
    assert status_doc(sport)["upstreams"][0]["targets"][0]["circuit"] == "closed"
    check_alive(gw)


def test_open_target_breaker_sends_traffic_to_the_other_targets(stack, switch):
    bad, good = switch(status=503), switch(status=200)
    gw = stack.gateway(
        [service("s", "http://pool", [route("r", ["/c"])], retries=0)],
        upstreams=[{"name": "pool", "targets": [{"target": "127.0.0.1:%d" % bad.port},
                                                {"target": "127.0.0.1:%d" % good.port}],
                    "circuit_breaker": {"failure_count": 2, "failure_ratio": 0,
                                        "open_time": 60000}}])
    statuses = [request(gw.port, "GET", "/c/x").status for _ in range(20)]
    assert statuses.count(503) == 2, statuses
    assert statuses[-10:] == [200] * 10
    assert bad.count == 2


def test_service_max_requests(stack, switch):
    slow = switch(status=200, delay=0.6)
    gw = stack.gateway([service("s", "http://127.0.0.1:%d" % slow.port, [route("r", ["/c"])],
                                circuit_breaker={"max_requests": 2})])
    results = []
    threads = [threading.Thread(target=lambda: results.append(request(gw.port, "GET", "/c/x")))
               for _ in range(2)]
    for th in threads:
        th.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    third = request(gw.port, "GET", "/c/x")
    assert_json_error(third, 503)
    assert time.monotonic() - t0 < 0.3
    for th in threads:
        th.join()
    assert [r.status for r in results] == [200, 200]
    assert request(gw.port, "GET", "/c/x").status == 200   # capacity is back
