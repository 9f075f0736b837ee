"""Retry policy: conditions (retry_on), idempotency with a per-route opt-in, the per-try timeout,
and the retry budget that keeps retries from multiplying an outage."""

import threading
import time

import pytest

from conftest import check_alive, route, service
from backends import FixedBackend
from rawhttp import request


@pytest.fixture
def fixed():
    made = []

    def make(**kw):
        f = FixedBackend(**kw)
        made.append(f)
        return f
    yield make
    for f in made:
        f.close()


def pool(*ports):
    return [{"name": "pool", "algorithm": "round-robin",
             "targets": [{"target": "127.0.0.1:%d" % p} for p in ports]}]


def test_retry_on_503_reaches_the_healthy_target(stack, fixed):
    bad = fixed(status=503)
    good = stack.backend("good")
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/r"])], retries=1,
                                retry_on=["503"], retry_backoff=0)],
                       upstreams=pool(bad.port, good.port))
    statuses = [request(gw.port, "GET", "/r/x").status for _ in range(20)]
    assert statuses == [200] * 20, statuses
    assert bad.count >= 5, "the failing target was never tried"
    check_alive(gw)


def test_503_relayed_when_not_in_retry_on(stack, fixed):
    bad = fixed(status=503)
    good = stack.backend("good")
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/r"])], retries=1)],
                       upstreams=pool(bad.port, good.port))
    rs = [request(gw.port, "GET", "/r/x") for _ in range(10)]
    relayed = [r for r in rs if r.status == 503]
    assert len(relayed) == 5 and all(r.body == b"fixed 503" for r in relayed)


def test_post_retried_only_when_route_opts_in(stack, fixed):
    bad = fixed(status=503)
    good = stack.backend("good")
    svc = lambda name, opt: service(name, "http://pool",  # noqa: E731
                                    [route(name, ["/" + name], retry_non_idempotent=opt)],
                                    retries=1, retry_on=["503"], retry_backoff=0)
    gw = stack.gateway([svc("plain", False), svc("optin", True)],
                       upstreams=pool(bad.port, good.port))
    plain = [request(gw.port, "POST", "/plain/x", body=b"").status for _ in range(10)]
    optin = [request(gw.port, "POST", "/optin/x", body=b"").status for _ in range(10)]
    assert plain.count(503) == 5, plain
    assert optin == [200] * 10, optin


def test_per_try_timeout_then_next_target(stack, fixed):
    hang = fixed(hang=True)
    good = stack.backend("good")
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/r"])], retries=1,
                                retry_on=["timeout"], retry_timeout=300, retry_backoff=0,
                                read_timeout=20000)],
                       upstreams=pool(hang.port, good.port))
    for _ in range(4):
        t0 = time.monotonic()
        r = request(gw.port, "GET", "/r/x")
        assert r.status == 200, r
        assert time.monotonic() - t0 < 3.0
    assert hang.count >= 1


def test_per_try_timeout_without_retry_is_504(stack, fixed):
    hang = fixed(hang=True)
    gw = stack.gateway([service("s", "http://127.0.0.1:%d" % hang.port, [route("r", ["/r"])],
                                retry_timeout=300, read_timeout=20000)])
    t0 = time.monotonic()
    assert request(gw.port, "GET", "/r/x").status == 504
    assert time.monotonic() - t0 < 3.0


@pytest.mark.parametrize("budget,bound", [(0, None), (10, 36)])
def test_retry_budget_bounds_retries(stack, fixed, budget, bound):
    # 30 requests at once to two slow failing targets, each allowed one retry: without a budget
    # every request is retried (60 attempts); with 10% only max(3, 10% of in-flight) retries
    # may be in flight at once, so the outage is not doubled
    a, b = fixed(status=503, delay=0.3), fixed(status=503, delay=0.3)
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/r"])], retries=1,
                                retry_on=["503"], retry_budget=budget, retry_backoff=0)],
                       upstreams=pool(a.port, b.port))
    threads = [threading.Thread(target=lambda: request(gw.port, "GET", "/r/x", timeout=20))
               for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    attempts = a.count + b.count
    if bound is None:
        assert attempts == 60, attempts
    else:
        assert 30 <= attempts <= bound, attempts


def test_connect_failures_are_retried_outside_the_budget(stack):
    # nothing is sent on a refused connect, so such retries are free: 40 concurrent requests
    # to an upstream that is mostly dead still all succeed with the default 20% budget
    from conftest import dead_port
    live = stack.backend("live")
    ports = [dead_port(), dead_port(), dead_port(), live.port]
    gw = stack.gateway([service("s", "http://pool", [route("r", ["/r"])], retries=4)],
                       upstreams=pool(*ports))
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        request(gw.port, "GET", "/r/x", timeout=20).status)) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 40, results
