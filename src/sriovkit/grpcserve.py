"""A gRPC server on a unix socket by `sriovkit.unixsocket`'s rules (0600 from the first instant,
never over another process's live socket): the one implementation the device plugins and the
DRA driver serve the kubelet with."""

from __future__ import annotations

from pathlib import Path

import grpc

from sriovkit import unixsocket


def serve_at(server: grpc.Server, path: Path, what: str) -> unixsocket.SocketIdentity:
    """Start `server` listening on `path`; OSError naming `path` when it cannot bind there."""

    def listen(staged: Path) -> None:
        try:
            server.add_insecure_port(f"unix:{staged}")
        except RuntimeError as exc:  # grpc's way to say bind failed (e.g. a path over 107 bytes)
            raise OSError(f"cannot listen on {path}: {exc}") from None
        server.start()

    return unixsocket.serve_at(path, listen, what)
