"""Traffic splitting (canary): a route sends weighted shares of its traffic to several services,
optionally sticky by a header or a cookie."""


from conftest import check_alive, check_config, config_errors, route, service
from rawhttp import Client


def split_gateway(stack, sticky=None):
    stable, canary = stack.backend("stable"), stack.backend("canary")
    r = route("r", ["/api"], split=[{"service": "stable", "weight": 95},
                                    {"service": "canary", "weight": 5}])
    if sticky:
        r["split_sticky"] = sticky
    gw = stack.gateway([service("stable", stable.url, [r]),
                        service("canary", canary.url, [])])
    return gw


def backends_seen(gw, n, headers_of=lambda i: []):
    seen = []
    with Client(gw.port, timeout=30) as c:
        for i in range(n):
            r = c.request("GET", "/api/x", headers_of(i))
            assert r.status == 200, r
            seen.append(r.json()["backend"])
    return seen


def test_canary_share_within_one_point(stack):
    gw = split_gateway(stack)
    seen = backends_seen(gw, 10000)
    share = seen.count("canary") / len(seen)
    assert 0.04 <= share <= 0.06, share
    assert seen.count("stable") + seen.count("canary") == 10000
    check_alive(gw)


def test_sticky_header_keeps_a_user_on_one_side(stack):
    gw = split_gateway(stack, {"header": "X-User"})
    users = ["user-%d" % i for i in range(400)]
    seen = backends_seen(gw, 2000, lambda i: [("X-User", users[i % 400])])
    per_user = {}
    for i, b in enumerate(seen):
        per_user.setdefault(users[i % 400], set()).add(b)
    assert all(len(v) == 1 for v in per_user.values()), "a user moved between services"
    canary_users = sum(1 for v in per_user.values() if v == {"canary"})
    assert 4 <= canary_users <= 45, canary_users   # about 5% of 400 users


def test_sticky_cookie(stack):
    gw = split_gateway(stack, {"cookie": "uid"})
    seen = backends_seen(gw, 400, lambda i: [("Cookie", "a=b; uid=u%d" % (i % 40))])
    per = {}
    for i, b in enumerate(seen):
        per.setdefault(i % 40, set()).add(b)
    assert all(len(v) == 1 for v in per.values())


def test_split_to_unknown_service_is_a_config_error(tmp_path):
    rc, err = check_config(tmp_path, "services:\n"
                                     "  - name: a\n"
                                     "    url: http://127.0.0.1:9\n"
                                     "    routes:\n"
                                     "      - paths: [/a]\n"
                                     "        split:\n"
                                     "          - {service: a, weight: 9}\n"
                                     "          - {service: nope, weight: 1}\n")
    assert rc == 1
    assert any(l.startswith("8:13: split: no service named nope")
               for l in config_errors(err)), err
