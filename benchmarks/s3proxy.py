"""A counting reverse proxy in front of an S3 server on loopback (benchmarks and tests only)."""

from __future__ import annotations

from typing import Any

__all__ = ["CountingProxy"]

_HOP_HEADERS = frozenset({"transfer-encoding", "content-length", "connection", "server", "date"})


class CountingProxy:
    """A reverse proxy in front of an S3 server on loopback, counting requests and bytes.

    ``fail(n, status, method=)`` answers the next ``n`` matching requests with ``status``
    (a transient error); ``hold(predicate)`` parks matching requests until ``release()``
    and sets ``held`` when one arrives.
    """

    #: Body of an injected error.
    FAILURE = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"

    def __init__(self, upstream: str) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        parts = urlsplit(upstream)
        proxy = self
        self.lock = threading.Lock()
        self.requests = 0
        self.sent = 0
        self.received = 0
        self.log: list[tuple[str, str, int]] = []
        self._failures: list[tuple[int, str | None]] = []
        self._hold: Any = None
        self.held = threading.Event()
        self._released = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(data)
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self) -> None:
                body = self._body()
                status = proxy._failure(self.command)
                if status is None and proxy._hold is not None and proxy._hold(self.command, self.path):
                    proxy.held.set()
                    proxy._released.wait(60)
                    self.close_connection = True
                    return
                if status is not None:
                    payload = proxy.FAILURE
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    proxy._count(self.command, self.path, len(body), len(payload))
                    return
                local = proxy._local
                conn = getattr(local, "conn", None)
                if conn is None:
                    conn = local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
                headers["Content-Length"] = str(len(body))
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                except (OSError, http.client.HTTPException):
                    local.conn = None
                    raise
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in _HOP_HEADERS:
                        self.send_header(name, value)
                if self.command == "HEAD":
                    self.send_header("Content-Length", response.getheader("Content-Length") or "0")
                else:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                proxy._count(self.command, self.path, len(body), len(payload))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._local = threading.local()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _count(self, method: str, path: str, sent: int, received: int) -> None:
        with self.lock:
            self.requests += 1
            self.sent += sent
            self.received += received
            self.log.append((method, path, received))

    def _failure(self, method: str) -> int | None:
        with self.lock:
            for i, (status, wanted) in enumerate(self._failures):
                if wanted in (None, method):
                    del self._failures[i]
                    return status
        return None

    def fail(self, n: int, status: int = 503, method: str | None = None) -> None:
        with self.lock:
            self._failures.extend([(status, method)] * n)

    def pending_failures(self) -> int:
        """Injected errors not served yet."""
        with self.lock:
            return len(self._failures)

    def hold(self, predicate: Any) -> None:
        self._hold = predicate

    def release(self) -> None:
        self._released.set()

    def reset(self) -> tuple[int, int, int]:
        with self.lock:
            taken = (self.requests, self.sent, self.received)
            self.requests = self.sent = self.received = 0
            self.log = []
            return taken

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
