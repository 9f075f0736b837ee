"""Process lifecycle: graceful SIGTERM, SIGHUP reload (success, failure, and under load)."""

import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import route, service, turnpike_bin
from rawhttp import Client, ConnectionClosed, assert_json_error, request


def wait_for(pred, timeout=5.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def test_sigterm_drains_in_flight_request(stack):
    be = stack.backend("slow")
    gw = stack.gateway([service("s", be.url, [route("r", ["/s"])])])
    result = {}

    def slow():
        try:
            result["r"] = request(gw.port, "GET", "/s/sleep/1500", timeout=20)
        except Exception as e:  # noqa: BLE001 - asserted below
            result["e"] = e

    t = threading.Thread(target=slow)
    t.start()
    assert wait_for(lambda: any(r.path == "/sleep/1500" for r in be.all_requests()))
    os.kill(gw.pid, signal.SIGTERM)
    time.sleep(0.3)
    assert t.is_alive(), "the slow request finished too early for this test to mean anything"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", gw.port), timeout=2).close()
    t.join(20)
    assert "e" not in result, "in-flight request failed: %r" % result.get("e")
    assert result["r"].status == 200
    assert result["r"].json()["path"] == "/sleep/1500"
    assert gw.proc.wait(timeout=15) == 0


def test_sigterm_with_idle_keepalive_connection_exits_promptly(stack):
    be = stack.backend("echo")
    gw = stack.gateway([service("s", be.url, [route("r", ["/s"])])],
                       limits={"grace_period": 3000})
    with Client(gw.port) as c:
        assert c.request("GET", "/s/x").status == 200
        t0 = time.monotonic()
        os.kill(gw.pid, signal.SIGTERM)
        assert c.closed_within(6), "idle keep-alive connection not closed on shutdown"
        assert gw.proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 6


def test_sighup_adds_route_and_changes_service(stack):
    a = stack.backend("A")
    b = stack.backend("B")
    gw = stack.gateway([service("s", a.url, [route("r", ["/s"])])])
    assert request(gw.port, "GET", "/s/x").json()["backend"] == "A"
    assert_json_error(request(gw.port, "GET", "/new/x"), 404)
    gw.write_config(services=[service("s", b.url, [route("r", ["/s"])]),
                              service("n", a.url, [route("n", ["/new"])])])
    gw.reload()
    assert wait_for(lambda: request(gw.port, "GET", "/new/x").status == 200, 10), \
        "new route not live after SIGHUP:\n" + gw.logs()
    assert request(gw.port, "GET", "/new/x").json()["backend"] == "A"
    assert request(gw.port, "GET", "/s/x").json()["backend"] == "B"
    assert gw.alive()


@pytest.mark.parametrize("broken", [
    "listen: [\"127.0.0.1:%(port)d\"\nservices: [\n",
    "listen: [\"127.0.0.1:%(port)d\"]\nbogus_key: 1\nservices: []\n",
    "listen: [\"127.0.0.1:%(port)d\"]\nservices:\n  - name: s\n    url: \"not a url\"\n"
    "    routes: [{name: r, paths: [/s]}]\n",
], ids=["yaml-syntax", "unknown-key", "bad-url"])
def test_sighup_broken_config_keeps_old(stack, broken):
    be = stack.backend("A")
    gw = stack.gateway([service("s", be.url, [route("r", ["/s"])])])
    assert request(gw.port, "GET", "/s/x").status == 200
    before = gw.read(gw.error_log)
    gw.write_text(broken % {"port": gw.port})
    gw.reload()
    assert wait_for(lambda: len(gw.read(gw.error_log)) > len(before), 5), \
        "nothing written to the error log after a failed reload"
    time.sleep(0.3)
    new = gw.read(gw.error_log)[len(before):].decode("latin-1")
    assert "turnpike.yaml" in new or "reload" in new.lower() or "config" in new.lower(), new
    assert gw.alive()
    for _ in range(5):
        r = request(gw.port, "GET", "/s/x")
        assert r.status == 200 and r.json()["backend"] == "A"
    # and a good config afterwards is taken again
    gw.write_config(services=[service("s", be.url, [route("r", ["/s"]), route("r2", ["/t"])])])
    gw.reload()
    assert wait_for(lambda: request(gw.port, "GET", "/t/x").status == 200, 10)


def test_reload_under_load(stack):
    be = stack.backend("A")
    base = [service("s", be.url, [route("r", ["/s"])])]
    gw = stack.gateway(base, workers=2)
    stop = threading.Event()
    lock = threading.Lock()
    stats = {"ok": 0, "fail": []}

    def keepalive_client(n):
        c = None
        while not stop.is_set():
            try:
                if c is None:
                    c = Client(gw.port, timeout=10)
                r = c.request("GET", "/s/ka%d" % n)
                good = r.status == 200 and r.json()["path"] == "/ka%d" % n
            except (ConnectionClosed, OSError, ValueError) as e:
                good = False
                r = e
                c.close() if c else None
                c = None
            with lock:
                if good:
                    stats["ok"] += 1
                else:
                    stats["fail"].append(("keep-alive", repr(r)[:200]))
        if c:
            c.close()

    def new_conn_client(n):
        while not stop.is_set():
            try:
                r = request(gw.port, "GET", "/s/nc%d" % n, timeout=10)
                good = r.status == 200 and r.json()["path"] == "/nc%d" % n
            except (ConnectionClosed, OSError, ValueError) as e:
                good = False
                r = e
            with lock:
                if good:
                    stats["ok"] += 1
                else:
                    stats["fail"].append(("new-conn", repr(r)[:200]))

    threads = [threading.Thread(target=keepalive_client, args=(i,)) for i in range(10)]
    threads += [threading.Thread(target=new_conn_client, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        for i in range(50):
            routes = [route("r", ["/s"])]
            if i % 2 == 0:
                routes.append(route("extra%d" % i, ["/extra%d" % i]))
            gw.write_config(services=[service("s", be.url, routes)])
            gw.reload()
            time.sleep(0.05 + (i % 6) * 0.01)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert gw.alive(), gw.logs()
    assert not stats["fail"], "%d failed requests (of %d), e.g. %r" % (
        len(stats["fail"]), stats["ok"] + len(stats["fail"]), stats["fail"][:5])
    assert stats["ok"] > 200, stats["ok"]
    # the last config (i = 49: no extra route; i = 48 added /extra48) is live
    assert wait_for(lambda: request(gw.port, "GET", "/extra48/x").status == 404, 5)


def test_in_flight_request_survives_reload_that_removes_its_route(stack):
    be = stack.backend("A")
    gw = stack.gateway([service("s", be.url, [route("r", ["/s"]), route("gone", ["/gone"])])])
    result = {}

    def slow():
        result["r"] = request(gw.port, "GET", "/gone/sleep/1500", timeout=20)

    t = threading.Thread(target=slow)
    t.start()
    assert wait_for(lambda: any(r.path == "/sleep/1500" for r in be.all_requests()))
    gw.write_config(services=[service("s", be.url, [route("r", ["/s"])])])
    gw.reload()
    assert wait_for(lambda: request(gw.port, "GET", "/gone/x").status == 404, 5)
    t.join(20)
    assert result["r"].status == 200
    assert request(gw.port, "GET", "/s/x").status == 200


def test_second_instance_on_the_same_port_fails(stack, tmp_path):
    # SO_REUSEPORT must not let a second (possibly stale) gateway share the port silently
    a = stack.backend("A")
    gw = stack.gateway([service("s", a.url, [route("r", ["/s"])])])
    cfg = tmp_path / "second.yaml"
    text = open(gw.config_path).read().replace(gw.error_log, str(tmp_path / "second.err"))
    cfg.write_text(text)
    res = subprocess.run([turnpike_bin(), "-c", str(cfg)], capture_output=True, timeout=20)
    assert res.returncode == 1, res
    assert b"Address already in use" in (tmp_path / "second.err").read_bytes()
    assert request(gw.port, "GET", "/s/x").json()["backend"] == "A"


def test_listen_change_on_reload_is_reported(stack):
    a = stack.backend("A")
    gw = stack.gateway([service("s", a.url, [route("r", ["/s"])])])
    old = gw.port
    gw.port = old + 1 if old < 65535 else old - 1
    gw.write_config()
    gw.port = old
    gw.reload()
    assert wait_for(lambda: b"listen changed" in gw.read(gw.error_log), 10), gw.logs()
    assert request(gw.port, "GET", "/s/x").status == 200
