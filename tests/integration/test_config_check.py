"""Command line: --version, --help, and `turnpike -t -c FILE` config validation with
FILE:LINE:COLUMN error messages."""

import re

import pytest
import subprocess


from conftest import turnpike_bin


def run(*args, timeout=20):
    return subprocess.run([turnpike_bin()] + list(args), capture_output=True, timeout=timeout)


GOOD = """listen: ["127.0.0.1:18080"]
workers: 1
access_log: "off"
log_level: info
services:
  - name: s
    url: http://127.0.0.1:9001/base
    connect_timeout: 1000
    routes:
      - name: r
        paths: [/api, "=/exact", "~^/v[0-9]+$", "/users/{id}"]
        hosts: [example.com, "*.example.org"]
        methods: [GET, POST]
        headers: {x-version: ["2"]}
        query: {v: ["1"]}
        priority: 3
        strip_path: false
        preserve_host: true
  - name: pooled
    url: http://pool/
    routes:
      - name: p
        paths: [/p]
upstreams:
  - name: pool
    algorithm: weighted-round-robin
    keepalive_pool_size: 8
    targets: [{target: "127.0.0.1:9001", weight: 5}, {target: "127.0.0.1:9002", weight: 1}]
limits: {max_header_bytes: 65536, max_headers: 100, max_uri_bytes: 8192, max_body_bytes: 0,
         header_timeout: 10000, keepalive_timeout: 75000}
trusted_proxies: ["127.0.0.2/32", "10.0.0.0/8"]
"""


def write(tmp_path, text, name="t.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def error_lines(res, path):
    text = res.stderr.decode("utf-8", "replace")
    return [l for l in text.splitlines() if re.match(re.escape(path) + r":\d+:\d+: \S", l)], text


def test_version():
    res = run("--version")
    assert res.returncode == 0
    assert re.search(rb"\d+\.\d+", res.stdout + res.stderr)


def test_help():
    res = run("--help")
    assert res.returncode == 0
    assert b"-c" in res.stdout + res.stderr and b"-t" in res.stdout + res.stderr


def test_good_config(tmp_path):
    path = write(tmp_path, GOOD)
    res = run("-t", "-c", path)
    assert res.returncode == 0, res.stderr


def expect_error_at(tmp_path, text, line, column=None):
    path = write(tmp_path, text)
    res = run("-t", "-c", path)
    assert res.returncode == 1, (res.returncode, res.stderr)
    lines, all_text = error_lines(res, path)
    assert lines, "no FILE:LINE:COLUMN: message line in stderr:\n" + all_text
    wants = ["%s:%d:" % (path, ln) + ("%d:" % column if column else "")
             for ln in (line if isinstance(line, (list, tuple)) else [line])]
    assert any(l.startswith(w) for l in lines for w in wants), \
        "expected an error at %s in:\n%s" % (" or ".join(wants), all_text)


def test_unknown_top_level_key(tmp_path):
    expect_error_at(tmp_path, GOOD.replace("workers: 1\n", "workers: 1\nbogus: 1\n"), 3, 1)


def test_unknown_route_key(tmp_path):
    text = GOOD.replace("        priority: 3\n", "        priority: 3\n        prioritty: 4\n")
    expect_error_at(tmp_path, text, 17, 9)


def test_wrong_type(tmp_path):
    expect_error_at(tmp_path, GOOD.replace("workers: 1", "workers: many"), 2)


def test_yaml_syntax_error(tmp_path):
    path = write(tmp_path, GOOD.replace('listen: ["127.0.0.1:18080"]', 'listen: ["127.0.0.1:18080"'))
    res = run("-t", "-c", path)
    assert res.returncode == 1
    lines, text = error_lines(res, path)
    # libyaml detects the unclosed flow sequence on line 1 or when reading line 2
    assert any(l.startswith(path + ":1:") or l.startswith(path + ":2:") for l in lines), text


def test_bad_algorithm(tmp_path):
    expect_error_at(tmp_path, GOOD.replace("algorithm: weighted-round-robin",
                                           "algorithm: random-ish"), 26)


def test_bad_regex(tmp_path):
    # the error points at the path value itself, and every bad path is reported
    text = GOOD.replace('"~^/v[0-9]+$"', '"~^/v[0-9+$"')
    expect_error_at(tmp_path, text, 11)
    path = write(tmp_path, text.replace('"~^/v[0-9+$"', '"~^/v[0-9+$", "/a/{x}{y}"'), "t2.yaml")
    lines, _ = error_lines(run("-t", "-c", path), path)
    assert sum("invalid path" in l for l in lines) == 2, lines


def test_bad_cidr(tmp_path):
    expect_error_at(tmp_path, GOOD.replace('"10.0.0.0/8"', '"10.0.0.0/33"'), 31)


def test_negative_timeout(tmp_path):
    expect_error_at(tmp_path, GOOD.replace("connect_timeout: 1000", "connect_timeout: -5"), 8)


def test_bad_listen_port(tmp_path):
    expect_error_at(tmp_path, GOOD.replace("18080", "99999"), 1)


def test_duplicate_service_names(tmp_path):
    text = GOOD.replace("  - name: pooled", "  - name: s")
    path = write(tmp_path, text)
    res = run("-t", "-c", path)
    assert res.returncode == 1
    assert error_lines(res, path)[0]


def test_several_errors_reported(tmp_path):
    text = GOOD.replace("workers: 1\n", "workers: 1\nbogus: 1\n").replace(
        "        priority: 3\n", "        priority: 3\n        prioritty: 4\n")
    path = write(tmp_path, text)
    res = run("-t", "-c", path)
    assert res.returncode == 1
    assert len(error_lines(res, path)[0]) >= 2, res.stderr


def test_missing_file(tmp_path):
    res = run("-t", "-c", str(tmp_path / "nope.yaml"))
    assert res.returncode != 0
    assert res.stderr


def test_start_with_broken_config_fails(tmp_path):
    path = write(tmp_path, GOOD.replace("workers: 1\n", "workers: 1\nbogus: 1\n"))
    res = run("-c", path, timeout=20)
    assert res.returncode != 0
    assert error_lines(res, path)[0], res.stderr


def test_directory_is_not_a_config(tmp_path):
    res = run("-t", "-c", str(tmp_path))
    assert res.returncode != 0
    assert b"cannot read" in res.stderr


@pytest.mark.parametrize("snippet,line,what", [
    ("      - paths: [/a]\n        mirror: a\n", 6, "cannot mirror to its own service"),
    ("      - paths: [/a]\n        split_sticky: {header: X-U}\n", 5, "split_sticky without split"),
    ("      - paths: [/a]\n        split: []\n", 6, "must not be empty"),
    ("      - paths: [/a]\n        split: [{service: a}, {service: a}]\n", 6,
     "service listed twice"),
    ("      - paths: [/a]\n        split: [{service: a}]\n        split_sticky: {header: \"a b\"}\n",
     7, "not a valid name"),
])
def test_route_traffic_settings_checked(tmp_path, snippet, line, what):
    text = ("services:\n  - name: a\n    url: http://127.0.0.1:9\n    routes:\n" + snippet)
    path = write(tmp_path, text)
    res = run("-t", "-c", path)
    assert res.returncode == 1
    lines, all_text = error_lines(res, path)
    assert any(l.startswith("%s:%d:" % (path, line)) and what in l for l in lines), all_text


def test_backup_with_priority_and_status_on_listen_are_errors(tmp_path):
    text = ("listen: [\"127.0.0.1:18090\"]\nstatus_listen: 127.0.0.1:18090\n"
            "upstreams:\n  - name: u\n    targets: [{target: \"127.0.0.1:1\", backup: true, "
            "priority: 2}]\nservices: [{name: s, url: \"http://u\"}]\n")
    path = write(tmp_path, text)
    res = run("-t", "-c", path)
    lines, all_text = error_lines(res, path)
    assert any(":2:16:" in l and "status_listen" in l for l in lines), all_text
    assert any(":5:15:" in l and "not both" in l for l in lines), all_text
