"""The PID-namespace mode a node's pods really have, from its containers. Pure functions.

Containers are recognised by dockershim's labels: a pod's sandbox carries
``io.kubernetes.docker.type=podsandbox``; its containers carry ``=container`` and
``io.kubernetes.sandbox.id``. A container shares its pod's PID namespace when its
``HostConfig.PidMode`` is ``container:<sandbox id>``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TYPE_LABEL = "io.kubernetes.docker.type"
SANDBOX_LABEL = "io.kubernetes.sandbox.id"
POD_NAME_LABEL = "io.kubernetes.pod.name"
SANDBOX = "podsandbox"
CONTAINER = "container"

SHARED, ISOLATED, MIXED, UNKNOWN = "shared", "isolated", "mixed", "unknown"


@dataclass(frozen=True)
class PodObservation:
    name: str
    sandbox_id: str
    sandbox_image: str
    sandbox_running: bool
    containers: int
    sharing: int

    @property
    def mode(self) -> str:
        if not self.containers:
            return UNKNOWN
        if self.sharing == self.containers:
            return SHARED
        return ISOLATED if self.sharing == 0 else MIXED

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "containers": self.containers,
            "sharing": self.sharing,
            "sandbox_running": self.sandbox_running,
        }


def observe_pods(inspected: Iterable[dict[str, Any]]) -> list[PodObservation]:
    """Group inspected containers into pods and count the containers that share."""
    sandboxes: dict[str, dict[str, Any]] = {}
    members: dict[str, list[dict[str, Any]]] = {}
    for container in inspected:
        labels = (container.get("Config") or {}).get("Labels") or {}
        kind = labels.get(TYPE_LABEL)
        if kind == SANDBOX:
            sandboxes[container["Id"]] = container
        elif kind == CONTAINER and labels.get(SANDBOX_LABEL):
            members.setdefault(labels[SANDBOX_LABEL], []).append(container)
    pods = []
    for sandbox_id in sorted(set(sandboxes) | set(members)):
        sandbox = sandboxes.get(sandbox_id, {})
        labels = (sandbox.get("Config") or {}).get("Labels") or {}
        apps = [c for c in members.get(sandbox_id, []) if (c.get("State") or {}).get("Running", False)]
        sharing = sum(1 for c in apps if (c.get("HostConfig") or {}).get("PidMode") == f"container:{sandbox_id}")
        pods.append(
            PodObservation(
                name=labels.get(POD_NAME_LABEL) or sandbox_id[:12],
                sandbox_id=sandbox_id,
                sandbox_image=(sandbox.get("Config") or {}).get("Image", ""),
                sandbox_running=bool((sandbox.get("State") or {}).get("Running", False)),
                containers=len(apps),
                sharing=sharing,
            )
        )
    return pods


def node_mode(pods: Iterable[PodObservation]) -> str:
    """``shared`` or ``isolated`` when every observed pod agrees, ``mixed`` when they do not,
    ``unknown`` when no pod has a running container."""
    modes = {p.mode for p in pods if p.mode != UNKNOWN}
    if not modes:
        return UNKNOWN
    if len(modes) == 1:
        return modes.pop()
    return MIXED


def pause_image(pods: Iterable[PodObservation]) -> str:
    """The pause image most sandboxes run (the kubelet's --pod-infra-container-image)."""
    images = Counter(p.sandbox_image for p in pods if p.sandbox_image)
    return images.most_common(1)[0][0] if images else ""


def sandbox_from_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """An inspect-shaped record of a sandbox from its entry in a container list."""
    return {
        "Id": summary["Id"],
        "Name": (summary.get("Names") or [""])[0],
        "Config": {
            "Labels": summary.get("Labels") or {},
            "Image": summary.get("Image", ""),
            "Entrypoint": None,
            "Cmd": (summary.get("Command") or "").split(),
        },
        "HostConfig": {},
        "State": {"Running": summary.get("State") == "running"},
    }


def init_process_name(sandbox: dict[str, Any]) -> str:
    """The name ``ps`` shows for a sandbox's first process (``tini``, ``pause``)."""
    config = sandbox.get("Config") or {}
    argv = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
    return argv[0].rsplit("/", 1)[-1][:15] if argv else ""


def ps_pid1(output: str) -> str | None:
    """The command of PID 1 in ``ps -o pid,comm`` output, or None."""
    for line in output.splitlines()[1:]:
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] == "1":
            return parts[1].strip()
    return None
