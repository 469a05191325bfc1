"""`sriovctl injector`: the resource injector (a mutating admission webhook) until SIGTERM.

Flags follow network-resources-injector's (`-port`, `-bind-address`, `-tls-cert-file`,
`-tls-private-key-file`, `-honor-resources`, `-network-resource-name-keys`), as double-dash flags.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, cast

from sriovkit import logs, signals

if TYPE_CHECKING:
    from sriovkit.agent.events import EventQueue
    from sriovkit.injector.patch import NadLookup
    from sriovkit.injector.review import EventSink
    from sriovkit.injector.server import WebhookServer


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("injector", help="run the resource injector: a mutating admission webhook adding the "
                       "device requests of the networks a pod names")
    p.add_argument("--tls-cert-file", required=True, help="the server certificate (PEM; reloaded on change)")
    p.add_argument("--tls-private-key-file", "--tls-key-file", dest="tls_key_file", required=True,
                   help="its private key (PEM)")
    p.add_argument("--bind-address", default="0.0.0.0", help="address to listen on")
    p.add_argument("--port", type=int, default=8443, help="HTTPS port (POST /mutate; GET /healthz)")
    p.add_argument("--address", help="HOST:PORT instead of --bind-address and --port")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: the pod's service account, in-cluster)")
    p.add_argument("--honor-resources", action="store_true",
                   help="add the networks' devices to what the first container already requests, instead of "
                   "leaving a resource the pod requests as it is")
    p.add_argument("--network-resource-name-keys", default="k8s.v1.cni.cncf.io/resourceName",
                   help="NAD annotations naming the resource, ','-separated")
    p.add_argument("--no-events", action="store_true", help="do not post Events (the log still says it)")
    logs.add_arguments(p)
    p.set_defaults(func=_injector)


def _injector(args: argparse.Namespace) -> int:
    import ssl
    from pathlib import Path

    from sriovkit.errors import UserError
    from sriovkit.injector.review import Reviewer
    from sriovkit.injector.server import ReloadingTls, WebhookServer
    from sriovkit.kubeclient import require_client

    logs.setup(args.log_level, args.log_format)
    require_client("sriovctl injector")
    problems = []
    if args.address:
        host, sep, port = args.address.rpartition(":")
        if not sep or not port.isdigit():
            problems.append(f"--address {args.address}: must be HOST:PORT, e.g. 0.0.0.0:8443")
        else:
            args.bind_address, args.port = host.strip("[]") or "0.0.0.0", int(port)
    if not 0 < args.port < 65536:
        problems.append(f"--port {args.port}: must be 1-65535")
    keys = [k.strip() for k in args.network_resource_name_keys.split(",") if k.strip()]
    if not keys:
        problems.append("--network-resource-name-keys: give at least one annotation key")
    for flag, path in (("--tls-cert-file", args.tls_cert_file), ("--tls-private-key-file", args.tls_key_file)):
        if not Path(path).is_file():
            problems.append(f"{flag} {path}: no such file")
    if problems:
        raise UserError(problems)
    try:
        tls = ReloadingTls(Path(args.tls_cert_file), Path(args.tls_key_file))
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"--tls-cert-file {args.tls_cert_file} / --tls-private-key-file {args.tls_key_file}: "
                        f"cannot load: {exc}") from None
    lookup, events, queue = _api(args)
    reviewer = Reviewer(lookup, events=events, honor_existing=args.honor_resources, resource_name_keys=keys)
    server = WebhookServer(f"{args.bind_address}:{args.port}", tls, reviewer)
    signals.run_until_signal(_Injector(server, queue, listen=f"--bind-address {args.bind_address} --port {args.port}"))
    return 0


class _Injector:
    """The webhook server and the queue posting its Events, started and stopped as one component."""

    def __init__(self, server: WebhookServer, queue: EventQueue | None, *, listen: str) -> None:
        self.server, self.queue, self.listen = server, queue, listen

    def start(self) -> None:
        from sriovkit.errors import UserError

        if self.queue is not None:
            self.queue.start()
        try:
            self.server.start()
        except OSError as exc:
            if self.queue is not None:
                self.queue.stop()
            raise UserError(f"{self.listen}: cannot listen: {exc.strerror or exc}") from None

    def stop(self) -> None:
        self.server.stop()
        if self.queue is not None:
            self.queue.stop()


def _api(args: argparse.Namespace) -> tuple[NadLookup, EventSink | None, EventQueue | None]:
    from sriovkit.agent.events import EventQueue
    from sriovkit.injector.kube import NadReader, pod_event_body
    from sriovkit.kubeclient import api_client, from_kubeconfig

    client = from_kubeconfig(api_client, args.kubeconfig)
    lookup = NadReader(client)
    if args.no_events:
        return lookup, None, None
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(client)

    def create(body: dict[str, Any]) -> None:
        # the client sends a dict body as it is (its CoreV1Event model is only one way to build one)
        core.create_namespaced_event(body["metadata"]["namespace"], cast(Any, body), _request_timeout=10)

    queue = EventQueue(create)

    def sink(pod: dict[str, Any], namespace: str, reason: str, message: str) -> None:
        queue.submit(pod_event_body(pod, namespace, reason, message))

    return lookup, sink, queue
