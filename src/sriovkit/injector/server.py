"""The webhook's HTTPS endpoint: POST /mutate (any path but /healthz and /readyz) with an
AdmissionReview, answered with its AdmissionReview.

TLS from a certificate and key file, read again when either changes (cert-manager and
kubelet-projected Secrets rotate them in place): each new connection's handshake checks.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from sriovkit.filestamp import FileStamp
from sriovkit.httpserve import BackgroundHttpServer, QuietHandler
from sriovkit.injector.review import BadReview

log = logging.getLogger(__name__)

MAX_BODY = 8 * 1024 * 1024  # an AdmissionReview of the largest pod the API server stores (~3 MiB)
_CONNECTION_TIMEOUT_S = 10
Handler = Callable[[bytes], dict[str, Any]]


class ReloadingTls:
    """An SSLContext for `cert`/`key` that follows the files: a changed pair is loaded for the next
    handshake; a pair that does not load keeps the previous one (and says so)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self._stamps = (FileStamp.of(cert), FileStamp.of(key))
        self._current = self._load()  # the first load's errors reach the caller
        self._lock = threading.Lock()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.sni_callback = self._on_hello
        self.context.load_cert_chain(cert, key)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        return context

    def _on_hello(self, sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                  _: ssl.SSLContext) -> None:
        with self._lock:
            stamps = (FileStamp.of(self.cert), FileStamp.of(self.key))
            if stamps != self._stamps:
                self._stamps = stamps
                try:
                    self._current = self._load()
                    log.info("TLS certificate reloaded cert=%s", self.cert)
                except (OSError, ssl.SSLError) as exc:
                    log.error("TLS certificate %s / key %s do not load, keeping the previous: %s",
                              self.cert, self.key, exc)
            sock.context = self._current


class WebhookServer:
    """A component (start/stop): serves `handler` over HTTPS on `address` (HOST:PORT)."""

    def __init__(self, address: str, tls: ReloadingTls, handler: Handler) -> None:
        self.address, self.tls, self.handler = address, tls, handler
        # the handshake happens in the connection's thread, not in the one accepting connections
        self._http = BackgroundHttpServer(
            address, _make_handler(handler), default_host="0.0.0.0", name="injector",
            wrap=lambda sock: tls.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False))

    @property
    def port(self) -> int:
        return self._http.port

    def start(self) -> None:
        self._http.start()
        log.info("injector serving address=%s", self.address)

    def stop(self) -> None:
        self._http.stop()


def _make_handler(handler: Handler) -> type[BaseHTTPRequestHandler]:
    class Http(QuietHandler):
        timeout = _CONNECTION_TIMEOUT_S
        protocol_version = "HTTP/1.1"  # the API server keeps connections to webhooks open
        # headers and body go out as two writes: with Nagle on, the second waits for the client's
        # delayed ACK (~40 ms per review on a kept-alive connection)
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            if self.path.split("?")[0] in ("/healthz", "/readyz"):
                self.send_body(200, b"ok\n", "text/plain")
            else:
                self.send_body(404, b"not found\n", "text/plain")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self.send_body(400 if length <= 0 else 413, b"AdmissionReview body missing or too large\n",
                           "text/plain")
                return
            body = self.rfile.read(length)
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type != "application/json":
                self.send_body(415, f"Content-Type {content_type!r}: expected application/json\n".encode(),
                           "text/plain")
                return
            try:
                answer = handler(body)
            except BadReview as exc:
                log.warning("bad request from %s: %s", self.client_address[0], exc)
                self.send_body(400, f"{exc}\n".encode(), "text/plain")
                return
            except Exception:  # the top of a request: the API server applies the failurePolicy (Ignore)
                log.exception("review failed")
                self.send_body(500, b"internal error\n", "text/plain")
                return
            self.send_body(200, json.dumps(answer).encode(), "application/json")


    return Http
