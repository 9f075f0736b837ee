"""Health checks: passive ejection, active probes taking a target out and bringing it back, and
the answer when nothing is healthy (fail closed: fast 503; fail open: try anyway)."""

import time

from conftest import check_alive, dead_port, route, service
from rawhttp import assert_json_error, request
from backends import Backend


def wait_for(pred, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def pool(targets, hc, algorithm="round-robin"):
    return [{"name": "pool", "algorithm": algorithm, "healthchecks": hc,
             "targets": [{"target": "127.0.0.1:%d" % p} for p in targets]}]


def test_passive_ejects_failing_target(stack):
    a = stack.backend("A")
    dead = dead_port()
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/h"])], retries=0)],
                       upstreams=pool([a.port, dead],
                                      {"passive": {"unhealthy_threshold": 2,
                                                   "ejection_time": 60000}}))
    statuses = [request(gw.port, "GET", "/h/x").status for _ in range(20)]
    # round robin sends every other request to the dead target until 2 failures eject it
    assert statuses.count(502) == 2, statuses
    assert statuses[-10:] == [200] * 10, statuses
    check_alive(gw)


def test_passive_ejection_ends_after_ejection_time(stack):
    a = stack.backend("A")
    dead = dead_port()
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/h"])], retries=0)],
                       upstreams=pool([a.port, dead],
                                      {"passive": {"unhealthy_threshold": 1,
                                                   "ejection_time": 500}}))
    first = [request(gw.port, "GET", "/h/x").status for _ in range(6)]
    assert first.count(502) == 1, first
    time.sleep(0.8)  # ejection over: the dead target is tried again (and ejected for longer)
    again = [request(gw.port, "GET", "/h/x").status for _ in range(6)]
    assert again.count(502) == 1, again


def test_active_check_ejects_and_restores(stack):
    a = stack.backend("A")
    port_b = dead_port()
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/h"])], retries=0)],
                       upstreams=pool([a.port, port_b],
                                      {"active": {"interval": 100, "timeout": 500,
                                                  "http_path": "/health",
                                                  "host": "probe.example",
                                                  "unhealthy_threshold": 2,
                                                  "healthy_threshold": 2}}))
    assert wait_for(lambda: b"is now unhealthy" in gw.read(gw.error_log)), gw.logs()
    statuses = [request(gw.port, "GET", "/h/x").status for _ in range(20)]
    assert statuses == [200] * 20, statuses        # no request reaches the dead target
    b = Backend("B", port=port_b)                  # the target comes back
    stack.backends.append(b)
    assert wait_for(lambda: b"is now healthy" in gw.read(gw.error_log)), gw.logs()
    seen = {request(gw.port, "GET", "/h/x").json()["backend"] for _ in range(10)}
    assert seen == {"A", "B"}, seen
    probes = [r for r in b.all_requests() if r.path == "/health"]
    assert probes, "no active probe reached the target"
    assert probes[0].header("host") == "probe.example"
    check_alive(gw)


def test_all_down_fail_closed_is_a_fast_503(stack):
    ports = [dead_port(), dead_port()]
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/h"])], retries=2)],
                       upstreams=pool(ports, {"active": {"interval": 100, "type": "tcp",
                                                         "unhealthy_threshold": 1}}))
    assert wait_for(lambda: gw.read(gw.error_log).count(b"is now unhealthy") >= 2), gw.logs()
    t0 = time.monotonic()
    r = request(gw.port, "GET", "/h/x")
    assert_json_error(r, 503)
    assert time.monotonic() - t0 < 1.0


def test_all_down_fail_open_tries_anyway(stack):
    ports = [dead_port(), dead_port()]
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/h"])], retries=0)],
                       upstreams=pool(ports, {"active": {"interval": 100, "type": "tcp",
                                                         "unhealthy_threshold": 1},
                                              "fail_open": True}))
    assert wait_for(lambda: gw.read(gw.error_log).count(b"is now unhealthy") >= 2), gw.logs()
    assert_json_error(request(gw.port, "GET", "/h/x"), 502)   # a connection was attempted


def test_health_counts_only_where_checked(stack):
    # the same address in an upstream without healthchecks stays up, and removing the
    # healthchecks on reload brings the target back at once
    a = stack.backend("A")
    checked = {"name": "checked", "healthchecks": {"active": {"interval": 100,
                                                                "http_path": "/status/500",
                                                                "unhealthy_threshold": 1}},
               "targets": [{"target": "127.0.0.1:%d" % a.port}]}
    plain = {"name": "plain", "targets": [{"target": "127.0.0.1:%d" % a.port}]}
    svcs = [service("c", "http://checked", [route("c", ["/c"])]),
            service("p", "http://plain", [route("p", ["/p"])])]
    gw = stack.gateway(svcs, upstreams=[checked, plain])
    assert wait_for(lambda: b"is now unhealthy" in gw.read(gw.error_log)), gw.logs()
    assert_json_error(request(gw.port, "GET", "/c/x"), 503)
    assert request(gw.port, "GET", "/p/x").status == 200
    del checked["healthchecks"]
    gw.write_config(upstreams=[checked, plain])
    gw.reload()
    assert wait_for(lambda: request(gw.port, "GET", "/c/x").status == 200), gw.logs()
