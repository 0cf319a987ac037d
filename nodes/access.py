"""How the service reaches a node: its endpoint with TLS material, and the driver to use."""

from __future__ import annotations

import threading

from django.conf import settings

from drivers.base import Driver, Endpoint, ErrorCode
from drivers.docker_engine import DockerEngineDriver
from drivers.kube import Connection, KubeClient

from .models import Cluster, Node

# Errors that mean the node could not be reached at all (as opposed to reached and refused).
UNREACHABLE_CODES = (
    ErrorCode.UNREACHABLE,
    ErrorCode.TIMEOUT,
    ErrorCode.TLS,
    ErrorCode.TLS_REQUIRED,
    ErrorCode.NO_ENDPOINT,
)

_driver: Driver | None = None


def default_driver() -> Driver:
    """The process's Docker Engine driver (it keeps a client per node between calls)."""
    global _driver
    if _driver is None:
        _driver = DockerEngineDriver(poll_interval=settings.PIDNS_VERIFY_POLL)
    return _driver


def endpoint_for(node: Node) -> Endpoint:
    """How to reach a node: its endpoint, and its (or its cluster's) TLS credentials."""
    credential = node.docker_credential or node.cluster.docker_credential
    return Endpoint(
        url=node.docker_endpoint,
        tls_ca=credential.ca_cert if credential else "",
        tls_cert=credential.client_cert if credential else "",
        tls_key=credential.client_key if credential else "",
        insecure=node.docker_insecure,
        timeout=settings.PIDNS_DRIVER_TIMEOUT,
        kubelet_dir=settings.PIDNS_KUBELET_DIR,
        kubelet_config=settings.PIDNS_KUBELET_CONFIG,
    )


def kube_client(cluster: Cluster) -> KubeClient:
    """A client of the cluster's Kubernetes API, kept per process while its connection is the same."""
    connection = Connection(
        server=cluster.kube_api_server,
        ca_cert=cluster.kube_ca_cert,
        token=cluster.kube_token,
        client_cert=cluster.kube_client_cert,
        client_key=cluster.kube_client_key,
    )
    with _kube_lock:
        found = _kube_clients.pop(connection, None) or KubeClient(connection)
        _kube_clients[connection] = found  # most recently used last
        while len(_kube_clients) > 32:
            _kube_clients.pop(next(iter(_kube_clients))).close()
        return found


_kube_clients: dict[Connection, KubeClient] = {}
_kube_lock = threading.Lock()
