"""Target host names are re-resolved every dns_refresh ms and traffic follows a changed address.

Name resolution is steered with nss_wrapper (Debian's libnss-wrapper, the NSS test library
Samba uses): LD_PRELOAD it and point NSS_WRAPPER_HOSTS at a hosts file the test rewrites.
"""

import os
import time

from conftest import check_alive, route, service
from rawhttp import request

NSS_WRAPPER = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so"


def write_hosts(path, ip):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%s backend.test\n" % ip if ip else "127.0.0.3 other.test\n")
    os.replace(tmp, path)


def backend_of(gw):
    r = request(gw.port, "GET", "/d/x")
    assert r.status == 200, r
    return r.json()["backend"]


def test_target_follows_dns_change(stack, tmp_path):
    first = stack.backend("first", host="127.0.0.1")
    second = stack.backend("second", host="127.0.0.2", port=first.port)
    hosts = str(tmp_path / "hosts")
    write_hosts(hosts, "127.0.0.1")
    # NSS_WRAPPER_DISABLE_DEEPBIND: for a name outside its hosts file nss_wrapper would
    # dlopen(libc, RTLD_DEEPBIND), which the ASan runtime refuses
    env = {"LD_PRELOAD": NSS_WRAPPER, "NSS_WRAPPER_HOSTS": hosts,
           "NSS_WRAPPER_DISABLE_DEEPBIND": "1",
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    gw = stack.gateway([service("d", "http://backend.test:%d" % first.port,
                                [route("d", ["/d"])])],
                       extra={"dns_refresh": 200}, env=env)
    assert backend_of(gw) == "first"

    write_hosts(hosts, "127.0.0.2")
    deadline = time.monotonic() + 10
    seen = "first"
    while time.monotonic() < deadline and seen == "first":
        time.sleep(0.1)
        seen = backend_of(gw)
    assert seen == "second", "traffic never moved to the new address"
    assert b"target addresses changed" in gw.read(gw.error_log)

    # a name that stops resolving keeps the last good address
    write_hosts(hosts, None)
    time.sleep(0.6)
    for _ in range(5):
        assert backend_of(gw) == "second"
    check_alive(gw)
