"""Resilience under load (issue 3, "done when"): killing one of three targets costs no failed
idempotent request; a hanging target is ejected and traffic moves; backup targets take over
only when the primaries are gone."""

import os
import signal
import subprocess
import threading
import time

from conftest import check_alive, dead_port, free_port, route, service
from rawhttp import request
from backends import FixedBackend

DEMO = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "demo_backend.py")


def start_demo(port, name):
    p = subprocess.Popen(["/usr/bin/python3", DEMO, str(port), name],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            import socket
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise AssertionError("demo backend did not start")


def pool(ports, **kw):
    d = {"name": "pool", "algorithm": "round-robin",
         "targets": [{"target": "127.0.0.1:%d" % p} for p in ports]}
    d.update(kw)
    return [d]


def test_killing_one_of_three_targets_fails_no_request(stack):
    ports = [free_port() for _ in range(3)]
    procs = [start_demo(p, "b%d" % i) for i, p in enumerate(ports)]
    try:
        gw = stack.gateway([service("s", "http://pool", [route("r", ["/k"])])],
                           upstreams=pool(ports, healthchecks={
                               "passive": {"unhealthy_threshold": 1, "ejection_time": 60000}}),
                           workers=2)
        stop = time.monotonic() + 3.0
        results, lock = [], threading.Lock()

        def load():
            while time.monotonic() < stop:
                r = request(gw.port, "GET", "/k/x", timeout=10)
                with lock:
                    results.append(r.status)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        procs[1].send_signal(signal.SIGKILL)   # one target dies mid-load
        for t in threads:
            t.join()
        failed = [s for s in results if s != 200]
        assert len(results) > 100, len(results)
        assert failed == [], "%d of %d requests failed" % (len(failed), len(results))
        check_alive(gw)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_hanging_target_is_ejected(stack):
    hang = FixedBackend(hang=True)
    a, b = stack.backend("A"), stack.backend("B")
    try:
        gw = stack.gateway([service("s", "http://pool", [route("r", ["/h"])], retries=2,
                                    retry_on=["connect-failure", "reset", "timeout"],
                                    retry_timeout=200, retry_backoff=0)],
                           upstreams=pool([hang.port, a.port, b.port], healthchecks={
                               "passive": {"unhealthy_threshold": 2, "ejection_time": 60000}}))
        statuses = [request(gw.port, "GET", "/h/x").status for _ in range(12)]
        assert statuses == [200] * 12, statuses      # the per-try timeout hides the hang
        seen = hang.count
        assert seen == 2, "ejected after its 2 timeouts: %d" % seen
        t0 = time.monotonic()
        for _ in range(20):
            assert request(gw.port, "GET", "/h/x").status == 200
        assert time.monotonic() - t0 < 2.0, "traffic still waits on the hanging target"
        assert hang.count == seen
    finally:
        hang.close()


def test_backup_targets_only_when_primaries_are_gone(stack):
    a, b, c = stack.backend("A"), stack.backend("B"), stack.backend("C")
    targets = [{"target": "127.0.0.1:%d" % a.port}, {"target": "127.0.0.1:%d" % b.port},
               {"target": "127.0.0.1:%d" % c.port, "backup": True}]
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/p"])])],
                       upstreams=[{"name": "pool", "targets": targets}])
    seen = {request(gw.port, "GET", "/p/x").json()["backend"] for _ in range(20)}
    assert seen == {"A", "B"}, seen

    dead = [dead_port(), dead_port()]
    targets2 = [{"target": "127.0.0.1:%d" % p} for p in dead] + [
        {"target": "127.0.0.1:%d" % c.port, "priority": 5}]
    gw2 = stack.gateway([service("s", "http://pool", [route("r", ["/p"])])],
                        upstreams=[{"name": "pool", "targets": targets2, "healthchecks": {
                            "active": {"interval": 100, "type": "tcp",
                                       "unhealthy_threshold": 1}}}])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and \
            gw2.read(gw2.error_log).count(b"is now unhealthy") < 2:
        time.sleep(0.05)
    got = [request(gw2.port, "GET", "/p/x") for _ in range(10)]
    assert [r.status for r in got] == [200] * 10
    assert {r.json()["backend"] for r in got} == {"C"}


def test_failover_threshold_moves_traffic_before_all_primaries_die(stack):
    a, c = stack.backend("A"), stack.backend("C")
    targets = [{"target": "127.0.0.1:%d" % a.port}, {"target": "127.0.0.1:%d" % dead_port()},
               {"target": "127.0.0.1:%d" % c.port, "backup": True}]
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/p"])])],
                       upstreams=[{"name": "pool", "targets": targets,
                                   "failover_threshold": 60, "healthchecks": {
                                       "active": {"interval": 100, "type": "tcp",
                                                  "unhealthy_threshold": 1}}}])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and b"is now unhealthy" not in gw.read(gw.error_log):
        time.sleep(0.05)
    # half of the primary tier's weight is up: below 60%, so the backup tier serves
    seen = {request(gw.port, "GET", "/p/x").json()["backend"] for _ in range(10)}
    assert seen == {"C"}, seen
