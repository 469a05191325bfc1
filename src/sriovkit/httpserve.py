"""An HTTP server in a background thread, as a component (start/stop): the one implementation
behind the agent's /metrics endpoint and the injector's webhook."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_STOP_JOIN_S = 5.0


def host_port(address: str, default_host: str) -> tuple[str, int]:
    """`HOST:PORT` (`[v6]:PORT`, or `:PORT` for `default_host`) as a socket address. ValueError
    for a port that is not a number."""
    host, _, port = address.rpartition(":")
    return host.strip("[]") or default_host, int(port)


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that answers with `send_body` and logs no access lines (probes and
    scrapes every few seconds would flood the log; what matters is logged where it happens)."""

    def send_body(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class BackgroundHttpServer:
    """Serves `handler` on `address` from a daemon thread named `name`; `wrap` (e.g. TLS) is
    applied to the listening socket before serving."""

    def __init__(self, address: str, handler: type[BaseHTTPRequestHandler], *, default_host: str, name: str,
                 wrap: Callable[[socket.socket], socket.socket] | None = None) -> None:
        self.address, self.handler, self.default_host, self.name, self.wrap = address, handler, default_host, name, wrap
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def bound_host(self) -> str:
        """The address the started server listens on (what a default host became)."""
        assert self._httpd is not None
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        httpd = ThreadingHTTPServer(host_port(self.address, self.default_host), self.handler)
        httpd.daemon_threads = True
        if self.wrap is not None:
            httpd.socket = self.wrap(httpd.socket)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=_STOP_JOIN_S)
