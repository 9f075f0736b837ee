"""Fixtures for the integration suite: the real turnpike binary with a generated config on free
loopback ports, and in-process backends (backends.py).

Run with Debian's interpreter:  /usr/bin/python3 -m pytest tests/integration
The binary is build/turnpike (relative to the repository root) unless TURNPIKE_BIN is set; the
suite also runs against the ASan+UBSan build (TURNPIKE_BIN=build-asan/turnpike).  Stopping a
gateway sends SIGTERM, requires exit status 0, and fails the test on any sanitizer report in its
stderr or error log.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from backends import Backend

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")


def turnpike_bin():
    b = os.environ.get("TURNPIKE_BIN", "build/turnpike")
    if not os.path.isabs(b):
        b = os.path.join(REPO, b)
    return b


def binary_is_sanitized():
    try:
        with open(turnpike_bin(), "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def dead_port():
    """A loopback port on which nothing listens (connections are refused)."""
    return free_port()


# ---- a tiny YAML writer (block style, double-quoted strings) ----

def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))


def to_yaml(obj, indent=0):
    pad = " " * indent
    lines = []
    for k, v in obj.items():
        if isinstance(v, dict):
            if not v:
                lines.append("%s%s: {}" % (pad, k))
            else:
                lines.append("%s%s:" % (pad, k))
                lines.append(to_yaml(v, indent + 2))
        elif isinstance(v, list):
            if v and all(isinstance(x, dict) for x in v):
                lines.append("%s%s:" % (pad, k))
                for item in v:
                    sub = to_yaml(item, indent + 4).split("\n")
                    sub[0] = pad + "  - " + sub[0][indent + 4:]
                    lines.append("\n".join(sub))
            else:
                lines.append("%s%s: [%s]" % (pad, k, ", ".join(_scalar(x) for x in v)))
        else:
            lines.append("%s%s: %s" % (pad, k, _scalar(v)))
    return "\n".join(lines)


def service(name, url, routes, **kw):
    d = {"name": name, "url": url}
    d.update(kw)
    d["routes"] = routes
    return d


def route(name, paths=None, **kw):
    d = {"name": name}
    if paths is not None:
        d["paths"] = paths
    d.update(kw)
    return d


class Gateway:
    def __init__(self, workdir, services, upstreams=None, limits=None, workers=1,
                 trusted_proxies=None, access_log="file", log_level="info", extra=None,
                 env=None):
        os.makedirs(workdir, exist_ok=True)
        self.env = env
        self.dir = str(workdir)
        self.port = free_port()
        self.config_path = os.path.join(self.dir, "turnpike.yaml")
        self.access_log = os.path.join(self.dir, "access.log")
        self.error_log = os.path.join(self.dir, "error.log")
        self.security_log = os.path.join(self.dir, "security.log")
        self.stdout_path = os.path.join(self.dir, "stdout.txt")
        self.stderr_path = os.path.join(self.dir, "stderr.txt")
        self.opts = dict(services=services, upstreams=upstreams, limits=limits, workers=workers,
                         trusted_proxies=trusted_proxies, access_log=access_log,
                         log_level=log_level, extra=extra)
        self.proc = None
        self.write_config()

    def config_dict(self, services=None, upstreams=None, limits=None, workers=None,
                    trusted_proxies=None, access_log=None, log_level=None, extra=None):
        o = dict(self.opts)
        for k, v in dict(services=services, upstreams=upstreams, limits=limits, workers=workers,
                         trusted_proxies=trusted_proxies, access_log=access_log,
                         log_level=log_level, extra=extra).items():
            if v is not None:
                o[k] = v
        d = {"listen": ["127.0.0.1:%d" % self.port], "workers": o["workers"],
             "access_log": self.access_log if o["access_log"] == "file" else o["access_log"],
             "error_log": self.error_log, "security_log": self.security_log,
             "log_level": o["log_level"]}
        if o["trusted_proxies"]:
            d["trusted_proxies"] = o["trusted_proxies"]
        if o["limits"]:
            d["limits"] = o["limits"]
        d["services"] = o["services"]
        if o["upstreams"]:
            d["upstreams"] = o["upstreams"]
        if o["extra"]:
            d.update(o["extra"])
        return d

    def write_config(self, **kw):
        self.write_text(to_yaml(self.config_dict(**kw)) + "\n")

    def write_text(self, text):
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=20.0):
        binary = turnpike_bin()
        assert os.path.exists(binary), "turnpike binary not found: %s (build it first)" % binary
        env = dict(os.environ, **self.env) if self.env else None
        self.proc = subprocess.Popen([binary, "-c", self.config_path], env=env,
                                     stdout=open(self.stdout_path, "ab"),
                                     stderr=open(self.stderr_path, "ab"),
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("turnpike exited with %s at start-up:\n%s" %
                                     (self.proc.returncode, self.logs()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        raise AssertionError("turnpike did not listen on %d:\n%s" % (self.port, self.logs()))

    def reload(self):
        os.kill(self.proc.pid, signal.SIGHUP)

    def read(self, path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def logs(self):
        return "--- stderr ---\n%s\n--- error log ---\n%s" % (
            self.read(self.stderr_path).decode("latin-1")[-6000:],
            self.read(self.error_log).decode("latin-1")[-6000:])

    def sanitizer_reports(self):
        text = (self.read(self.stderr_path) + self.read(self.error_log)).decode("latin-1")
        return [m for m in SANITIZER_MARKERS if m in text]

    def access_lines(self):
        data = self.read(self.access_log)
        return [l for l in data.split(b"\n") if l]

    def security_lines(self, n=0, timeout=5.0):
        """The security log as parsed JSON objects; waits until it has at least n lines."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [l for l in self.read(self.security_log).split(b"\n") if l]
            if len(lines) >= n or time.monotonic() >= deadline:
                return [json.loads(l) for l in lines]
            time.sleep(0.05)

    def wait_access_lines(self, n, timeout=5.0):
        """Wait until the access log has at least n lines, then a little more for stragglers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.access_lines()) < n:
            time.sleep(0.05)
        time.sleep(0.3)
        return self.access_lines()

    def vm_hwm_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return None

    def stop(self, timeout=30.0):
        """SIGTERM, wait, and return a list of problems (empty when all is well)."""
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("turnpike did not exit within %ss of SIGTERM" % timeout)
        rc = self.proc.returncode
        if rc != 0 and not problems:
            problems.append("turnpike exited with status %s (expected 0)" % rc)
        reports = self.sanitizer_reports()
        if reports:
            problems.append("sanitizer report(s) %s" % reports)
        if problems:
            problems.append(self.logs())
        return problems


class Stack:
    """Owns backends and gateways; close() stops everything and reports gateway problems."""

    def __init__(self, tmpdir):
        self.tmpdir = str(tmpdir)
        self.backends = []
        self.gateways = []

    def backend(self, name="backend", recorder=False, **kw):
        b = Backend(name, recorder=recorder, **kw)
        self.backends.append(b)
        return b

    def gateway(self, services, start=True, **kw):
        d = os.path.join(self.tmpdir, "gw%d" % len(self.gateways))
        g = Gateway(d, services, **kw)
        self.gateways.append(g)
        if start:
            g.start()
        return g

    def close(self):
        problems = []
        for g in self.gateways:
            problems += g.stop()
        for b in self.backends:
            b.close()
        return problems


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path)
    yield s
    problems = s.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def mstack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("mod"))
    yield s
    problems = s.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def check_alive(gw):
    assert gw.alive(), "turnpike died (status %s):\n%s" % (gw.proc.returncode, gw.logs())


# ---- config checks (`turnpike -t`) and what the echo backend received ----

CHECK_FILE = "check.yaml"


def check_config(tmp_path, text, env=None):
    """Write `text` to tmp_path/check.yaml and run `turnpike -t -c` on it (nothing starts).
    env: variables added to the environment. Returns (returncode, stderr as text)."""
    path = os.path.join(str(tmp_path), CHECK_FILE)
    with open(path, "w") as f:
        f.write(text)
    res = subprocess.run([turnpike_bin(), "-t", "-c", path], capture_output=True, timeout=20,
                         encoding="utf-8", errors="replace",
                         env=dict(os.environ, **env) if env else None)
    return res.returncode, res.stderr


# One route "r" with one plugin: the lines of `config_yaml` (indented by 14) start on line 11.
PLUGIN_CHECK_YAML = """listen: ["127.0.0.1:1"]
services:
  - name: s
    url: http://127.0.0.1:9
    routes:
      - name: r
        paths: [/]
        plugins:
          - name: %s
            config:
%s
"""


def check_plugin_config(tmp_path, plugin, config_yaml, env=None):
    """check_config on a route with `plugin` configured by config_yaml (YAML lines indented by
    14 spaces, the first on line 11)."""
    return check_config(tmp_path, PLUGIN_CHECK_YAML % (plugin, config_yaml), env)


def config_errors(stderr):
    """The errors check_config's stderr reports for its file, in order, as "LINE:COLUMN: message"
    (the "FILE:" prefix removed)."""
    pat = re.compile(r"[^:]*" + re.escape(os.sep + CHECK_FILE) + r":(\d+:\d+: .*)$")
    return [m.group(1) for m in map(pat.match, stderr.splitlines()) if m]


def echoed(resp):
    """The request as the echo backend received it (its decoded JSON answer); asserts a 200."""
    assert resp.status == 200, resp
    return json.loads(resp.body)


def upstream_headers(echo, name):
    """The values of request header `name` (any case) as the echo backend received them; echo
    is its decoded JSON answer."""
    return [v for n, v in echo["headers"] if n.lower() == name.lower()]


def assert_consumer(echo, username, custom_id=None, credential=None):
    """The echo backend's request carries the X-Consumer-* headers of an authenticated (not
    anonymous) consumer `username`; custom_id and credential are checked when given."""
    assert upstream_headers(echo, "x-consumer-username") == [username], echo["headers"]
    ids = upstream_headers(echo, "x-consumer-id")
    assert len(ids) == 1 and ids[0], echo["headers"]
    if custom_id:
        assert upstream_headers(echo, "x-consumer-custom-id") == [custom_id], echo["headers"]
    if credential:
        assert upstream_headers(echo, "x-credential-identifier") == [credential], echo["headers"]
    assert upstream_headers(echo, "x-anonymous-consumer") == [], echo["headers"]
