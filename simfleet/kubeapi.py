"""The Kubernetes API front of a simulated cluster: the subset ``kubectl`` and the service use.

Discovery (``/api``, ``/apis``, resource lists), ``/version``, nodes (list with ``limit`` and
``continue``, get, patch), pods (list with ``fieldSelector`` and ``labelSelector``, get, delete,
``eviction``), the owners ``kubectl drain`` reads (DaemonSets, ReplicaSets, Deployments) and
PodDisruptionBudgets. A list answers a Table when the client asks for one (``kubectl get``). Every
request needs the cluster's bearer token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from urllib.parse import parse_qs, unquote, urlsplit

from .kube import SimCluster, rfc3339
from .server import read_request

_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    410: "Gone",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
}
_STATUS_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
}


def _resource(name, kind, namespaced, verbs, group="", version="", short=()):
    found = {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": list(verbs)}
    if group or version:
        found.update(group=group, version=version)
    if short:
        found["shortNames"] = list(short)
    return found


CORE_RESOURCES = [
    _resource("nodes", "Node", False, ("get", "list", "patch"), short=("no",)),
    _resource("nodes/status", "Node", False, ("get",)),
    _resource("pods", "Pod", True, ("get", "list", "delete"), short=("po",)),
    _resource("pods/eviction", "Eviction", True, ("create",), group="policy", version="v1"),
    _resource("namespaces", "Namespace", False, ("get", "list"), short=("ns",)),
]
GROUPS = {
    "apps": [
        _resource("daemonsets", "DaemonSet", True, ("get", "list"), short=("ds",)),
        _resource("replicasets", "ReplicaSet", True, ("get", "list"), short=("rs",)),
        _resource("deployments", "Deployment", True, ("get", "list"), short=("deploy",)),
    ],
    "policy": [_resource("poddisruptionbudgets", "PodDisruptionBudget", True, ("get", "list"), short=("pdb",))],
}
_OWNER_KINDS = {"daemonsets": "DaemonSet", "replicasets": "ReplicaSet", "deployments": "Deployment"}
_POD_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)(?P<sub>/eviction)?$")
_OWNER_PATH = re.compile(
    r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/(?P<res>daemonsets|replicasets|deployments)/(?P<name>[^/]+)$"
)


def _selector(text: str) -> list[tuple[str, str, str]]:
    """``a=b,c!=d`` as (key, operator, value) terms."""
    terms = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        for op in ("!=", "==", "="):
            if op in part:
                key, _, value = part.partition(op)
                terms.append((key.strip(), "!=" if op == "!=" else "=", value.strip()))
                break
        else:
            raise ValueError(f"unable to parse requirement: {part!r}")
    return terms


def _matches(values: dict[str, str], terms) -> bool:
    return all((values.get(key) == value) == (op == "=") for key, op, value in terms)


class KubeServer:
    """Serves one simulated cluster's API. ``handle`` is the asyncio connection callback."""

    def __init__(self, cluster: SimCluster):
        self.cluster = cluster
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                if request is None:
                    break
                method, target, headers, body = request
                self.requests += 1
                status, payload = self.answer(method, target, headers, body)
                data = json.dumps(payload).encode()
                writer.write(
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\nCache-Control: no-store\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            # The fleet is stopping: drop the connection (a TLS close would wait for the client).
            writer.transport.abort()
            return
        if not writer.is_closing():
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 5)

    # --- routing

    def answer(self, method: str, target: str, headers: dict, body: bytes) -> tuple[int, dict]:
        if headers.get("authorization", "") != f"Bearer {self.cluster.token}":
            return self._status(401, "Unauthorized")
        parts = urlsplit(target)
        path, query = unquote(parts.path).rstrip("/") or "/", {k: v[-1] for k, v in parse_qs(parts.query).items()}
        table = "as=Table" in headers.get("accept", "")
        try:
            with self.cluster.lock:
                return self._route(method, path, query, body, table)
        except ValueError as exc:
            return self._status(400, str(exc))

    def _route(self, method, path, query, body, table) -> tuple[int, dict]:
        cluster = self.cluster
        if method == "GET":
            found = self._discovery(path)
            if found is not None:
                return 200, found
        if path == "/api/v1/nodes" and method == "GET":
            return self._list("Node", sorted(cluster.nodes), cluster.node_json, query, table)
        if path.startswith("/api/v1/nodes/"):
            name = path.split("/")[4]
            if name not in cluster.nodes:
                return self._status(404, f'nodes "{name}" not found', kind="nodes", name=name)
            if method == "PATCH":
                return self._patch_node(name, body)
            if method == "GET":
                found = cluster.node_json(name)
                return 200, self._table("Node", [found], {}) if table else found
            return self._status(405, f"{method} is not allowed on nodes")
        if method == "GET" and (path == "/api/v1/pods" or re.match(r"^/api/v1/namespaces/[^/]+/pods$", path)):
            namespace = path.split("/")[4] if path.startswith("/api/v1/namespaces/") else None
            return self._list_pods(namespace, query, table)
        match = _POD_PATH.match(path)
        if match:
            return self._pod(method, match["ns"], match["name"], bool(match["sub"]), table)
        match = _OWNER_PATH.match(path)
        if match and method == "GET":
            kind = _OWNER_KINDS[match["res"]]
            found = cluster.workload_json(kind, match["ns"], match["name"])
            if found is None:
                return self._status(404, f'{match["res"]}.apps "{match["name"]}" not found')
            return 200, found
        if method == "GET" and re.match(r"^/apis/policy/v1(/namespaces/[^/]+)?/poddisruptionbudgets$", path):
            return 200, {
                "kind": "PodDisruptionBudgetList",
                "apiVersion": "policy/v1",
                "metadata": {},
                "items": cluster.budgets_json(),
            }
        if method == "GET" and path == "/api/v1/namespaces":
            items = [{"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": n}} for n in self._namespaces()]
            return 200, {"kind": "NamespaceList", "apiVersion": "v1", "metadata": {}, "items": items}
        return self._status(404, f"the server could not find the requested resource ({method} {path})")

    def _namespaces(self) -> list[str]:
        return sorted({"default", "kube-system"} | {w.namespace for w in self.cluster.workloads.values()})

    def _discovery(self, path: str) -> dict | None:
        if path == "/version":
            version = self.cluster.api_version()
            major, minor = version.lstrip("v").split(".")[:2]
            return {
                "major": major,
                "minor": minor,
                "gitVersion": version,
                "gitCommit": "simfleet",
                "gitTreeState": "clean",
                "buildDate": rfc3339(self.cluster.created),
                "goVersion": "go1.22",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if path == "/api":
            address = f"{self.cluster.host}:{self.cluster.port}"
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
            }
        if path == "/apis":
            groups = [
                {
                    "name": group,
                    "versions": [{"groupVersion": f"{group}/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": f"{group}/v1", "version": "v1"},
                }
                for group in GROUPS
            ]
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        if path == "/api/v1":
            return {"kind": "APIResourceList", "groupVersion": "v1", "resources": CORE_RESOURCES}
        for group, resources in GROUPS.items():
            if path == f"/apis/{group}/v1":
                return {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": f"{group}/v1",
                    "resources": resources,
                }
            if path == f"/apis/{group}":
                return {
                    "kind": "APIGroup",
                    "apiVersion": "v1",
                    "name": group,
                    "versions": [{"groupVersion": f"{group}/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": f"{group}/v1", "version": "v1"},
                }
        return None

    # --- lists

    def _list(self, kind: str, keys: list, render, query: dict, table: bool) -> tuple[int, dict]:
        """A page of a list: ``limit`` and ``continue`` as the API server does them; a continue
        token from before the cluster's ``continue_epoch`` is expired (410)."""
        cluster = self.cluster
        start = 0
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"].encode()))
                epoch, start = int(token["epoch"]), int(token["start"])
            except (ValueError, KeyError, TypeError):
                return self._status(400, "continue key is not valid")
            if epoch < cluster.continue_epoch:
                return self._status(
                    410,
                    "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter.",
                )
        limit = int(query.get("limit") or 0)
        if limit < 0:
            raise ValueError("limit must not be negative")
        page = keys[start : start + limit] if limit else keys[start:]
        metadata = {"resourceVersion": str(cluster.resource_version)}
        if limit and start + limit < len(keys):
            token = {"epoch": cluster.continue_epoch, "start": start + limit}
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            metadata["remainingItemCount"] = len(keys) - start - limit
        items = [render(key) for key in page]
        if table:
            return 200, self._table(kind, items, metadata)
        return 200, {"kind": f"{kind}List", "apiVersion": "v1", "metadata": metadata, "items": items}

    def _list_pods(self, namespace: str | None, query: dict, table: bool) -> tuple[int, dict]:
        fields = _selector(query.get("fieldSelector", ""))
        labels = _selector(query.get("labelSelector", ""))
        chosen = []
        for key in sorted(self.cluster.pods):
            pod = self.cluster.pods[key]
            values = {
                "spec.nodeName": pod.node,
                "status.phase": "Running",
                "metadata.name": pod.name,
                "metadata.namespace": pod.namespace,
            }
            if namespace not in (None, pod.namespace):
                continue
            if _matches(values, fields) and _matches({"app": pod.workload.name}, labels):
                chosen.append(key)
        return self._list("Pod", chosen, lambda key: self.cluster.pod_json(self.cluster.pods[key]), query, table)

    def _table(self, kind: str, items: list[dict], metadata: dict) -> dict:
        if kind == "Node":
            columns = ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "Container-Runtime"]
            priorities = [0, 0, 0, 0, 0, 1, 1]
            rows = [
                [
                    item["metadata"]["name"],
                    ("Ready" if item["status"]["conditions"][0]["status"] == "True" else "NotReady")
                    + (",SchedulingDisabled" if item["spec"].get("unschedulable") else ""),
                    "<none>",
                    "1d",
                    item["status"]["nodeInfo"]["kubeletVersion"],
                    item["status"]["addresses"][0]["address"],
                    item["status"]["nodeInfo"]["containerRuntimeVersion"],
                ]
                for item in items
            ]
        else:
            columns = ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node"]
            priorities = [0, 0, 0, 0, 0, 1, 1]
            rows = [
                [
                    item["metadata"]["name"],
                    "1/1" if item["status"]["containerStatuses"][0]["ready"] else "0/1",
                    item["status"]["phase"],
                    "0",
                    "1m",
                    item["status"]["podIP"],
                    item["spec"]["nodeName"],
                ]
                for item in items
            ]
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
            "columnDefinitions": [
                {
                    "name": name,
                    "type": "string",
                    "format": "name" if name == "Name" else "",
                    "description": "",
                    "priority": p,
                }
                for name, p in zip(columns, priorities, strict=True)
            ],
            "rows": [
                {
                    "cells": cells,
                    "object": {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": item["metadata"],
                    },
                }
                for cells, item in zip(rows, items, strict=True)
            ],
        }

    # --- writes

    def _patch_node(self, name: str, body: bytes) -> tuple[int, dict]:
        try:
            patch = json.loads(body or b"{}")
        except json.JSONDecodeError:
            return self._status(400, "the patch is not JSON")
        value = None
        if isinstance(patch, list):  # a JSON patch
            for item in patch:
                if isinstance(item, dict) and item.get("path") == "/spec/unschedulable":
                    value = item.get("op") != "remove" and bool(item.get("value"))
        elif isinstance(patch, dict):
            spec = patch.get("spec") or {}
            if "unschedulable" in spec:
                value = bool(spec["unschedulable"])
        else:
            return self._status(422, "a patch is an object or a list")
        if value is not None:
            self.cluster.set_unschedulable(name, value)
        return 200, self.cluster.node_json(name)

    def _pod(self, method: str, namespace: str, name: str, eviction: bool, table: bool) -> tuple[int, dict]:
        cluster = self.cluster
        if eviction:
            if method != "POST":
                return self._status(405, "evictions are created with POST")
            status, message = cluster.evict(namespace, name)
            if status == 201:
                return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
            if status == 429:
                return self._status(429, message, causes=[{"reason": "DisruptionBudget", "message": message}])
            return self._status(404, message, kind="pods", name=name)
        pod = cluster.pods.get((namespace, name))
        if pod is None:
            return self._status(404, f'pods "{name}" not found', kind="pods", name=name)
        if method == "GET":
            return 200, self._table("Pod", [cluster.pod_json(pod)], {}) if table else cluster.pod_json(pod)
        if method == "DELETE":
            shown = cluster.pod_json(pod)
            cluster.delete(namespace, name)
            return 200, shown
        return self._status(405, f"{method} is not allowed on pods")

    @staticmethod
    def _status(code: int, message: str, kind: str = "", name: str = "", causes=None) -> tuple[int, dict]:
        details = {}
        if kind:
            details = {"name": name, "kind": kind}
        if causes:
            details["causes"] = causes
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": _STATUS_REASONS.get(code, ""),
            "code": code,
        }
        if details:
            status["details"] = details
        return code, status
