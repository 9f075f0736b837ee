#!/usr/bin/python3
"""A tiny demo backend for `make run`: answers every request with JSON describing it.

usage: demo_backend.py PORT NAME
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "demo-backend"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        doc = {
            "backend": self.server.name,
            "method": self.command,
            "path": self.path,
            "headers": dict(self.headers.items()),
            "body_bytes": len(body),
        }
        out = (json.dumps(doc, indent=2) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

    def log_message(self, fmt, *args):
        pass


def main():
    port, name = int(sys.argv[1]), sys.argv[2]
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.name = name
    srv.daemon_threads = True
    srv.serve_forever()


if __name__ == "__main__":
    main()
