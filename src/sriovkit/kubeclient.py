"""The Kubernetes API client (the `kube` extra): whether it is installed, and the one loader of a
kubeconfig or the pod's service account, for hot-plug, the DRA driver, the resource injector and
the agent's Node Events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # the `kube` extra: imported only where it is used
    from kubernetes.client import ApiClient

_SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"

KUBE_EXTRA_HINT = "the kubernetes client is not installed: pip install 'sriovkit[kube]'"
T = TypeVar("T")


def have_client() -> bool:
    """Whether the `kubernetes` package (the `kube` extra) is installed."""
    import importlib.util

    try:
        return importlib.util.find_spec("kubernetes") is not None
    except (ImportError, ValueError):  # ValueError: blocked (sys.modules entry None)
        return False


def require_client(what: str) -> None:
    """A one-line UserError naming `what` needs the client, when the `kube` extra is missing."""
    if not have_client():
        from sriovkit.errors import UserError

        raise UserError(f"{what}: {KUBE_EXTRA_HINT}")


def api_client(kubeconfig: str | None = None) -> ApiClient:
    """A `kubernetes.client.ApiClient` for `kubeconfig`, else the pod's service account (in-cluster).
    Loads the configuration only (no requests); raises the client's own errors when it cannot."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    # objects are read as plain dicts; a field the model does not know must not fail a watch
    configuration.client_side_validation = False
    return client.ApiClient(configuration)


def from_kubeconfig(make: Callable[[str | None], T], kubeconfig: str | None) -> T:
    """`make(kubeconfig)`: something built on a client of `kubeconfig` (None: in-cluster). When the
    configuration cannot be loaded, one UserError naming --kubeconfig and the client's reason (on
    one line: a YAML error's own spans several)."""
    try:
        return make(kubeconfig)
    except Exception as exc:  # the client's config errors have no common base class
        from sriovkit.errors import UserError

        reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise UserError(f"--kubeconfig {kubeconfig or '(in-cluster)'}: {reason}") from None


def in_cluster(environ: Mapping[str, str], token_file: str = _SERVICE_ACCOUNT_TOKEN) -> bool:
    """Whether this process runs in a pod that can reach the API server with its service account."""
    import os

    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and os.path.isfile(token_file)
