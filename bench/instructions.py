#!/usr/bin/python3
"""CPU instructions per proxied request, counted with valgrind's callgrind.

The figure does not move with machine noise, so it is what a CI guard can assert on:

  1. start turnpike (workers: 1, access_log off) under
     `valgrind --tool=callgrind --callgrind-out-file=F` in front of a built-in keep-alive backend
     (a Python thread; only turnpike runs under valgrind, so the backend's cost is not counted);
  2. wait until it listens (read from /proc/net/tcp, so that no probe connection is counted);
  3. send N requests, one at a time, round-robin over C keep-alive connections (default
     N=2000, C=10), each answered 200 with an empty body; close the connections;
  4. SIGTERM, wait for the exit, read the total Ir from the `totals:` / `summary:` line;
  5. do the same with 0 requests (start + stop only) and report (Ir_N - Ir_0) / N.

Requests are sent strictly one at a time, so the count does not depend on how events happen to
be batched by a busy machine.

Usage (Debian's python, standard library only):

  /usr/bin/python3 bench/instructions.py                  # print the figure
  /usr/bin/python3 bench/instructions.py --check bench/instructions.baseline
  /usr/bin/python3 bench/instructions.py --write bench/instructions.baseline

The baseline file holds two lines:

  instructions_per_request: 12345
  margin: 0.10

--check exits 1 when the measured figure exceeds the baseline by more than the margin (and 2 when
the measurement itself failed).  --write stores the measured figure, keeping the file's margin
(0.10 when there is none).

As a library:  instructions.measure(turnpike_bin, requests=2000, connections=10) returns a dict
with ir_n, ir_0, requests, connections, per_request.
"""

import argparse
import os
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

DEFAULT_REQUESTS = 2000
DEFAULT_CONNECTIONS = 10
DEFAULT_MARGIN = 0.10
LISTEN_TIMEOUT = 60.0       # turnpike is slow to start under valgrind
EXIT_TIMEOUT = 60.0

# The backend's answer: like NGINX's for an empty body, with a fixed Date so that every run
# hands turnpike exactly the same bytes.
BACKEND_RESPONSE = (b"HTTP/1.1 200 OK\r\n"
                    b"Server: nginx/1.22.1\r\n"
                    b"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
                    b"Content-Type: application/octet-stream\r\n"
                    b"Content-Length: 0\r\n"
                    b"Connection: keep-alive\r\n\r\n")


class MeasureError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# small helpers, shared with run.py

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _listening_ports():
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) > 3 and parts[3] == "0A":
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def wait_listening(port, proc=None, timeout=10.0):
    """Wait until something listens on `port` without connecting to it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port in _listening_ports():
            return
        if proc is not None and proc.poll() is not None:
            raise MeasureError("process exited with status %s before listening on %d"
                               % (proc.returncode, port))
        time.sleep(0.05)
    raise MeasureError("nothing listens on port %d after %.0f s" % (port, timeout))


def stop_group(proc, sig=signal.SIGTERM, timeout=10.0):
    """Signal the process group of `proc` (started with start_new_session=True); escalate to
    SIGKILL after `timeout`.  Returns the exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    else:
        # the leader is gone; make sure nothing it left in its group lingers
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return proc.returncode


def read_response(sock, buf=b""):
    """Read one HTTP/1.1 response with a Content-Length body from `sock`.  Returns
    (status, body_length, leftover_bytes)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise MeasureError("connection closed before a response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise MeasureError("response without Content-Length: %r" % lines[0])
    while len(rest) < length:
        chunk = sock.recv(max(65536, length - len(rest)))
        if not chunk:
            raise MeasureError("connection closed inside a response body")
        rest += chunk
    return status, length, rest[length:]


def request_bytes(port, path):
    return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: turnpike-bench\r\n"
            "Accept: */*\r\n\r\n" % (path, port)).encode()


def callgrind_total(path):
    """Total Ir from a callgrind output file (the `totals:` line, else `summary:`)."""
    totals = summary = None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("totals:"):
                totals = int(line.split()[1])
            elif line.startswith("summary:"):
                summary = int(line.split()[1])
    value = totals if totals is not None else summary
    if value is None:
        raise MeasureError("no totals:/summary: line in %s" % path)
    return value


# ---------------------------------------------------------------------------------------------
# built-in backend

class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
            _, _, buf = buf.partition(b"\r\n\r\n")   # GET requests: no body
            try:
                sock.sendall(BACKEND_RESPONSE)
            except OSError:
                return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Backend:
    """Keep-alive HTTP backend answering every request with 200 and an empty body."""

    def __init__(self):
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# the measurement

def write_config(path, listen_port, backend_port, error_log):
    with open(path, "w") as f:
        f.write('listen: ["127.0.0.1:%d"]\n'
                "workers: 1\n"
                'access_log: "off"\n'
                "error_log: %s\n"
                "dns_refresh: 0\n"
                "services:\n"
                "  - name: b\n"
                '    url: "http://127.0.0.1:%d"\n'
                "    routes: [{name: r, paths: [/]}]\n"
                % (listen_port, error_log, backend_port))


def run_once(turnpike, backend_port, requests, connections, workdir, tag, path="/0"):
    """One turnpike lifetime under callgrind with `requests` requests; returns total Ir."""
    port = free_port()
    conf = os.path.join(workdir, "turnpike-%s.yaml" % tag)
    out = os.path.join(workdir, "callgrind-%s.out" % tag)
    log = os.path.join(workdir, "valgrind-%s.log" % tag)
    err = os.path.join(workdir, "error-%s.log" % tag)
    write_config(conf, port, backend_port, err)
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
            "--dump-instr=no", "--log-file=" + log, turnpike, "-c", conf]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    socks = []
    try:
        wait_listening(port, proc, LISTEN_TIMEOUT)
        if requests:
            req = request_bytes(port, path)
            for _ in range(min(connections, requests)):
                s = socket.create_connection(("127.0.0.1", port), timeout=60)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                socks.append([s, b""])
            for i in range(requests):
                entry = socks[i % len(socks)]
                entry[0].sendall(req)
                status, _, entry[1] = read_response(entry[0], entry[1])
                if status != 200:
                    raise MeasureError("request %d answered %d" % (i, status))
        for s, _ in socks:
            s.close()
        socks = []
        time.sleep(0.2)   # let turnpike see the closes before it is stopped
        rc = stop_group(proc, signal.SIGTERM, EXIT_TIMEOUT)
        if rc != 0:
            raise MeasureError("turnpike under valgrind exited with status %s (see %s)"
                               % (rc, log))
        return callgrind_total(out)
    finally:
        for s, _ in socks:
            s.close()
        stop_group(proc, signal.SIGKILL, 5)


def measure(turnpike=None, requests=DEFAULT_REQUESTS, connections=DEFAULT_CONNECTIONS,
            workdir=None, log=None):
    """Instructions per proxied request: (Ir_N - Ir_0) / N.  Returns a dict."""
    turnpike = os.path.abspath(turnpike or os.path.join(REPO, "build", "turnpike"))
    if not os.access(turnpike, os.X_OK):
        raise MeasureError("no turnpike binary at %s (run `make build`)" % turnpike)
    own_dir = workdir is None
    if own_dir:
        tmp = tempfile.TemporaryDirectory(prefix="turnpike-instr-")
        workdir = tmp.name
    backend = Backend()
    try:
        t0 = time.monotonic()
        ir_0 = run_once(turnpike, backend.port, 0, connections, workdir, "0")
        t1 = time.monotonic()
        ir_n = run_once(turnpike, backend.port, requests, connections, workdir, str(requests))
        t2 = time.monotonic()
    finally:
        backend.close()
        if own_dir:
            tmp.cleanup()
    res = {"requests": requests, "connections": connections, "ir_0": ir_0, "ir_n": ir_n,
           "per_request": (ir_n - ir_0) / requests,
           "seconds_0": t1 - t0, "seconds_n": t2 - t1}
    if log:
        log("callgrind: Ir_0=%d (%.1f s)  Ir_%d=%d (%.1f s)  -> %.0f instructions/request"
            % (ir_0, res["seconds_0"], requests, ir_n, res["seconds_n"], res["per_request"]))
    return res


# ---------------------------------------------------------------------------------------------
# baseline file

def read_baseline(path):
    values = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, sep, value = line.partition(":")
            if not sep:
                raise ValueError("%s: bad line %r" % (path, line))
            values[key.strip()] = float(value.strip())
    if "instructions_per_request" not in values:
        raise ValueError("%s: no instructions_per_request line" % path)
    return values["instructions_per_request"], values.get("margin", DEFAULT_MARGIN)


def write_baseline(path, per_request, margin):
    with open(path, "w") as f:
        f.write("instructions_per_request: %d\nmargin: %.2f\n" % (round(per_request), margin))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--turnpike", default=os.environ.get("TURNPIKE_BIN"),
                    help="binary (default: $TURNPIKE_BIN or build/turnpike)")
    ap.add_argument("--requests", type=int, default=DEFAULT_REQUESTS)
    ap.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", metavar="BASELINE",
                      help="fail (exit 1) if the figure exceeds BASELINE by more than its margin")
    mode.add_argument("--write", metavar="BASELINE", help="write the measured figure")
    args = ap.parse_args(argv)

    if args.requests < 1 or args.connections < 1:
        ap.error("--requests and --connections must be positive")
    baseline = margin = None
    if args.check:
        try:
            baseline, margin = read_baseline(args.check)
        except (OSError, ValueError) as e:
            print("instructions: cannot read baseline: %s" % e, file=sys.stderr)
            return 2
    try:
        res = measure(args.turnpike, args.requests, args.connections,
                      log=lambda m: print(m, file=sys.stderr))
    except (MeasureError, OSError) as e:
        print("instructions: measurement failed: %s" % e, file=sys.stderr)
        return 2
    per = res["per_request"]
    print("instructions_per_request: %.0f" % per)
    if args.write:
        keep_margin = DEFAULT_MARGIN
        if os.path.exists(args.write):
            try:
                keep_margin = read_baseline(args.write)[1]
            except (OSError, ValueError):
                pass
        write_baseline(args.write, per, keep_margin)
        print("wrote %s" % args.write)
    if args.check:
        limit = baseline * (1 + margin)
        change = per / baseline - 1 if baseline else float("inf")
        verdict = "OK" if per <= limit else "FAIL"
        print("%s: %.0f instructions/request vs baseline %.0f (%+.1f%%, limit +%.0f%% = %.0f)"
              % (verdict, per, baseline, 100 * change, 100 * margin, limit))
        return 0 if per <= limit else 1
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
