"""A cluster's Kubernetes API, through the official ``kubernetes`` client: list nodes (paged,
relisting when a continue token expires), cordon and uncordon, the pods of a node, evictions.

Errors are :class:`~drivers.base.DriverError`: a connection that fails is ``unreachable`` (tried
again), an answer the API refuses is ``kube-api-error``; TLS is verified against the cluster's CA
(or the system's) and the bearer token or client key never appears in a message.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .base import DriverError, ErrorCode

KUBE_API_ERROR = "kube-api-error"
DOCKER_ENDPOINT_ANNOTATION = "pidns.io/docker-endpoint"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
PAGE_SIZE = 500
TIMEOUT = (5, 30)  # connect, read


@dataclass(frozen=True)
class Connection:
    """How to reach a cluster's API. Secrets stay in this object (never in a message)."""

    server: str
    ca_cert: str = ""
    token: str = field(default="", repr=False)
    client_cert: str = ""
    client_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class KubeNode:
    name: str
    kubelet_version: str
    runtime: str
    runtime_version: str
    labels: dict[str, str]
    annotations: dict[str, str]
    addresses: dict[str, str]
    ready: bool
    unschedulable: bool


@dataclass(frozen=True)
class KubePod:
    namespace: str
    name: str
    uid: str
    owner_kind: str
    mirror: bool
    empty_dir: bool
    terminating: bool
    phase: str
    created: datetime | None
    restarts: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def runtime_of(version: str) -> tuple[str, str]:
    """``docker://1.12.6`` -> (``docker``, ``1.12.6``); ``cri-o://1.28.1``, ``containerd://1.7.2``."""
    name, sep, rest = version.partition("://")
    if not sep:
        return "", version
    name = {"cri-o": "cri-o", "crio": "cri-o"}.get(name, name)
    return name, rest


class KubeClient:
    """One cluster's API. Use as a context manager (it holds temporary files for TLS material)."""

    def __init__(self, connection: Connection):
        from kubernetes import client

        self._files: list[str] = []
        config = client.Configuration()
        config.host = connection.server.rstrip("/")
        config.verify_ssl = True
        if connection.ca_cert:
            config.ssl_ca_cert = self._file(connection.ca_cert)
        if connection.client_cert and connection.client_key:
            config.cert_file = self._file(connection.client_cert)
            config.key_file = self._file(connection.client_key)
        if connection.token:
            config.api_key = {"BearerToken": connection.token}
            config.api_key_prefix = {"BearerToken": "Bearer"}
        self._api_client = client.ApiClient(config)
        self.core = client.CoreV1Api(self._api_client)
        self._client = client

    def _file(self, text: str) -> str:
        handle, path = tempfile.mkstemp(prefix="pidns-kube-", suffix=".pem")
        with os.fdopen(handle, "w") as out:
            out.write(text)
        self._files.append(path)
        return path

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._api_client.close()
        for path in self._files:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._files = []

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, fn, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error
        from urllib3.exceptions import SSLError

        try:
            return fn(*args, _request_timeout=TIMEOUT, **kwargs)
        except ApiException as exc:
            raise DriverError(KUBE_API_ERROR, _api_message(exc), {"status": exc.status}) from None
        except (Urllib3Error, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc  # urllib3 wraps the cause in MaxRetryError
            if isinstance(reason, SSLError) or isinstance(exc, SSLError):
                raise DriverError(
                    ErrorCode.TLS, f"TLS verification of the Kubernetes API failed: {_short(reason)}"
                ) from None
            raise DriverError(ErrorCode.UNREACHABLE, f"the Kubernetes API did not answer: {_short(reason)}") from None

    # --- nodes

    def list_nodes(self, page_size: int = PAGE_SIZE) -> Iterator[KubeNode]:
        """Every node, ``page_size`` at a time. A continue token that expired (410) starts the list
        again; names already given are not given twice."""
        seen: set[str] = set()
        token: str | None = None
        relists = 0
        while True:
            try:
                kwargs = {"limit": page_size}
                if token:
                    kwargs["_continue"] = token
                page = self._call(self.core.list_node, **kwargs)
            except DriverError as exc:
                if exc.facts.get("status") == 410 and token and relists < 3:
                    token, relists = None, relists + 1
                    continue
                raise
            for item in page.items or []:
                node = _node(item)
                if node.name not in seen:
                    seen.add(node.name)
                    yield node
            token = page.metadata._continue if page.metadata else None
            if not token:
                return

    def node(self, name: str) -> KubeNode:
        return _node(self._call(self.core.read_node, name))

    def set_unschedulable(self, name: str, value: bool) -> KubeNode:
        return _node(self._call(self.core.patch_node, name, {"spec": {"unschedulable": value}}))

    # --- pods

    def pods_on(self, node_name: str) -> list[KubePod]:
        pods: list[KubePod] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"field_selector": f"spec.nodeName={node_name}", "limit": PAGE_SIZE}
            if token:
                kwargs["_continue"] = token
            page = self._call(self.core.list_pod_for_all_namespaces, **kwargs)
            pods += [_pod(item) for item in page.items or []]
            token = page.metadata._continue if page.metadata else None
            if not token:
                return pods

    def evict(self, pod: KubePod) -> str:
        """``evicted`` (or already gone) or ``blocked`` (a disruption budget refuses it for now)."""
        body = self._client.V1Eviction(
            metadata=self._client.V1ObjectMeta(name=pod.name, namespace=pod.namespace),
        )
        try:
            self._call(self.core.create_namespaced_pod_eviction, pod.name, pod.namespace, body)
        except DriverError as exc:
            if exc.facts.get("status") == 404:
                return "evicted"
            if exc.facts.get("status") == 429:
                return "blocked"
            raise
        return "evicted"

    def delete_pod(self, pod: KubePod) -> None:
        try:
            self._call(self.core.delete_namespaced_pod, pod.name, pod.namespace)
        except DriverError as exc:
            if exc.facts.get("status") != 404:
                raise


def _short(exc: BaseException) -> str:
    text = str(exc).split("\n")[0]
    return text[:300]


def _api_message(exc) -> str:
    import json

    message = exc.reason or ""
    with contextlib.suppress(ValueError, TypeError):
        message = json.loads(exc.body).get("message") or message
    return f"the Kubernetes API answered {exc.status}: {str(message)[:300]}"


def _node(item) -> KubeNode:
    info = item.status.node_info if item.status else None
    runtime, runtime_version = runtime_of(info.container_runtime_version if info else "")
    ready = any(c.type == "Ready" and c.status == "True" for c in (item.status.conditions or []))
    addresses = {a.type: a.address for a in (item.status.addresses or [])}
    return KubeNode(
        name=item.metadata.name,
        kubelet_version=info.kubelet_version if info else "",
        runtime=runtime,
        runtime_version=runtime_version,
        labels=dict(item.metadata.labels or {}),
        annotations=dict(item.metadata.annotations or {}),
        addresses=addresses,
        ready=ready,
        unschedulable=bool(item.spec and item.spec.unschedulable),
    )


def _pod(item) -> KubePod:
    owners = item.metadata.owner_references or []
    controller = next((o for o in owners if o.controller), None)
    volumes = (item.spec.volumes if item.spec else None) or []
    return KubePod(
        namespace=item.metadata.namespace,
        name=item.metadata.name,
        uid=item.metadata.uid or "",
        owner_kind=controller.kind if controller else "",
        mirror=MIRROR_ANNOTATION in (item.metadata.annotations or {}),
        empty_dir=any(v.empty_dir is not None for v in volumes),
        terminating=item.metadata.deletion_timestamp is not None,
        phase=(item.status.phase if item.status else "") or "",
        created=item.metadata.creation_timestamp,
        restarts=sum(c.restart_count or 0 for c in ((item.status.container_statuses if item.status else None) or [])),
    )
