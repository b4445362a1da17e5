"""A real HTTP proxy in front of the GCS emulator that injects transient faults.

Faults are planned per request kind: answer 503, or drop the connection without
answering (what a dying load balancer does). Everything else is forwarded as is.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class FaultPlan:
    """``faults[(kind, n)] = "503" | "drop"``: the n-th request (1-based) of a kind fails."""

    def __init__(self, faults: dict[tuple[str, int], str]) -> None:
        self.faults = dict(faults)
        self.counts: Counter[str] = Counter()
        self.injected: list[tuple[str, int, str]] = []
        self._lock = threading.Lock()

    def next_fault(self, kind: str) -> str | None:
        with self._lock:
            self.counts[kind] += 1
            fault = self.faults.get((kind, self.counts[kind]))
            if fault:
                self.injected.append((kind, self.counts[kind], fault))
            return fault


def request_kind(method: str, path: str) -> str:
    if path.startswith("/upload/"):
        return "upload"
    if method == "GET" and "alt=media" in path:
        return "download"
    return f"{method.lower()}-api"


@contextlib.contextmanager
def faulty_proxy(upstream_url: str, plan: FaultPlan) -> Iterator[str]:
    upstream = urlparse(upstream_url)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            fault = plan.next_fault(request_kind(self.command, self.path))
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if fault == "503":
                payload = b'{"error": {"code": 503, "message": "injected"}}'
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body is not None:
                headers["Content-Length"] = str(len(body))
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            connection.close()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
