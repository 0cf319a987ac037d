"""Engine backends behind a simulated node's Docker API: in memory (fake) or a real dockerd.

Both answer the same calls with the same JSON shapes, so the driver cannot tell them apart:
``version``, ``containers``, ``inspect``, ``create``, ``start``, ``wait``, ``logs``, ``remove``,
``kill``, ``exec_create``, ``exec_start``, ``exec_inspect``; and, for the kubelet stand-in,
``pod_states``, ``create_pod``, ``remove_pod``.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from drivers.dropin import DROPIN_NAME, RESTART_NAME, VERSION_NAME
from drivers.observe import CONTAINER, POD_NAME_LABEL, SANDBOX, SANDBOX_LABEL, TYPE_LABEL, observe_pods

from .images import IMAGE

NODE_LABEL = "io.pidns.simfleet.node"
KUBELET_CONFIG_DIR = "/var/lib/kubelet"
FLEET_LABEL = "io.pidns.simfleet.fleet"
HELPER_LABEL = "io.pidns.helper"
SANDBOX_CMD = ["/sbin/tini", "--", "sleep", "2147483647"]
APP_CMD = ["sleep", "2147483646"]
STDOUT, STDERR = 1, 2


class EngineError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass
class PodState:
    name: str
    sandbox_id: str
    sandbox_running: bool
    mode: str


def version_info(node) -> dict[str, Any]:
    return {
        "Version": node.spec.docker_version,
        "ApiVersion": node.spec.api_version,
        "MinAPIVersion": "1.12",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": os.uname().release,
        "GitCommit": "simfleet",
        "GoVersion": "go1.7",
    }


def _pod_states(inspected: list[dict]) -> list[PodState]:
    return [PodState(p.name, p.sandbox_id, p.sandbox_running, p.mode) for p in observe_pods(inspected)]


def _pod_labels(node, pod_name: str, kind: str, sandbox_id: str = "") -> dict[str, str]:
    labels = {TYPE_LABEL: kind, POD_NAME_LABEL: pod_name, "io.kubernetes.pod.namespace": "default"}
    if sandbox_id:
        labels[SANDBOX_LABEL] = sandbox_id
    return labels


# --- the helper, run natively by the fake engine ---------------------------------------------------


def run_helper_natively(
    kubelet_dir, operation: str, env: dict[str, str], fail_writes: bool, config_dir=None
) -> tuple[int, str]:
    """What ``drivers/helper.sh`` does, for nodes that run no processes."""
    dropin = kubelet_dir / DROPIN_NAME
    version = (kubelet_dir / VERSION_NAME).read_text() if (kubelet_dir / VERSION_NAME).exists() else ""
    text = dropin.read_text() if dropin.exists() else ""
    node = f"==> kubelet-version\n{version}\n==> dropin\n{text}\n"
    if operation == "read":
        status = (kubelet_dir / "kubelet-status").read_text() if (kubelet_dir / "kubelet-status").exists() else ""
        config_path = (config_dir / env.get("PIDNS_KUBELET_CONFIG_NAME", "config.yaml")) if config_dir else None
        config = config_path.read_text() if config_path is not None and config_path.exists() else ""
        kubelet = f"==> kubelet-status\n{status}\n==> kubelet-config\n{config}\n"
        return 0, f"{node}{kubelet}==> status\nok\n"
    if operation == "write":
        conflict = "PIDNS_EXPECT_KUBELET" in env and "".join(version.split()) != env["PIDNS_EXPECT_KUBELET"]
        if "PIDNS_EXPECT_ARGS" in env:
            match = _ENV_ARGS.search(text)
            args = match.group(1) if match else ""
            conflict = conflict or args not in (env["PIDNS_EXPECT_ARGS"], env.get("PIDNS_NEW_ARGS", ""))
        if conflict:
            return 0, f"{node}==> status\nconflict\n"
        if fail_writes:
            return 1, "mv: can't rename '20-pidns.conf': Read-only file system\n"
        content = env.get("PIDNS_DROPIN", "")
        head = f"==> kubelet-version\n{version}\n"
        if dropin.exists() and text == content:
            return 0, f"{head}==> status\nunchanged\n"
        if dropin.exists():
            (kubelet_dir / (DROPIN_NAME + ".prev")).write_text(text)
        tmp = kubelet_dir / f".{DROPIN_NAME}.tmp"
        tmp.write_text(content)
        tmp.replace(dropin)
        (kubelet_dir / RESTART_NAME).write_text(f"{time.time()}\n")
        return 0, f"{head}==> previous\n{text}\n==> status\nchanged\n"
    return 2, "usage: helper read|write\n"


_ENV_ARGS = re.compile(r'^\s*Environment="KUBELET_PIDNS_ARGS=(.*)"\s*$', re.M)


def _helper_operation(config: dict) -> str | None:
    labels = config.get("Labels") or {}
    if HELPER_LABEL in labels:
        return labels[HELPER_LABEL]
    return None


# --- fake -----------------------------------------------------------------------------------------


@dataclass
class FakeContainer:
    id: str
    name: str
    config: dict
    host_config: dict
    running: bool = False
    exit_code: int = 0
    output: str = ""
    created: float = field(default_factory=time.time)

    def summary(self) -> dict:
        return {
            "Id": self.id,
            "Names": [f"/{self.name}"],
            "Image": self.config.get("Image", ""),
            "Command": " ".join((self.config.get("Entrypoint") or []) + (self.config.get("Cmd") or [])),
            "Created": int(self.created),
            "State": "running" if self.running else "exited",
            "Status": "Up" if self.running else f"Exited ({self.exit_code})",
            "Labels": self.config.get("Labels") or {},
            "HostConfig": {"NetworkMode": self.host_config.get("NetworkMode", "none")},
        }

    def inspect(self) -> dict:
        return {
            "Id": self.id,
            "Name": f"/{self.name}",
            "Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
            "Config": {**self.config, "Tty": False},
            "HostConfig": self.host_config,
            "State": {
                "Running": self.running,
                "Status": "running" if self.running else "exited",
                "ExitCode": self.exit_code,
                "Pid": 0,
            },
        }


class FakeEngine:
    """Containers as records in memory; processes are not run. Thousands of nodes fit in one process."""

    blocking = False
    _ids = itertools.count(1)

    def __init__(self, node):
        self.node = node
        self.containers: dict[str, FakeContainer] = {}
        self.execs: dict[str, dict] = {}

    def _get(self, container_id: str) -> FakeContainer:
        found = self.containers.get(container_id)
        if found is None:
            matches = [
                c for cid, c in self.containers.items() if cid.startswith(container_id) or c.name == container_id
            ]
            if len(matches) != 1:
                raise EngineError(404, f"No such container: {container_id}")
            found = matches[0]
        return found

    def version(self) -> dict:
        return version_info(self.node)

    def containers_list(self, all_: bool, label_filters: list[str]) -> list[dict]:
        result = []
        for container in self.containers.values():
            labels = container.config.get("Labels") or {}
            if not all_ and not container.running:
                continue
            if all(_label_matches(labels, f) for f in label_filters):
                result.append(container.summary())
        return result

    def inspect(self, container_id: str) -> dict:
        return self._get(container_id).inspect()

    def create(self, body: dict, name: str | None) -> str:
        container_id = secrets.token_hex(32)
        host_config = dict(body.get("HostConfig") or {})
        config = {k: v for k, v in body.items() if k != "HostConfig"}
        config.setdefault("Labels", {})
        self.containers[container_id] = FakeContainer(container_id, name or f"c{next(self._ids)}", config, host_config)
        return container_id

    def start(self, container_id: str) -> None:
        container = self._get(container_id)
        operation = _helper_operation(container.config)
        if operation is None:
            pid_mode = container.host_config.get("PidMode", "")
            if pid_mode.startswith("container:"):
                sandbox = self.containers.get(pid_mode.split(":", 1)[1])
                if sandbox is None or not sandbox.running:
                    raise EngineError(409, "cannot join PID namespace of a non running container")
            container.running = True
            return
        env = dict(item.split("=", 1) for item in container.config.get("Env") or [] if "=" in item)
        code, output = run_helper_natively(
            self.node.kubelet_dir,
            operation,
            env,
            fail_writes=self.node.spec.faults.apply_fails,
            config_dir=self.node.host_path(KUBELET_CONFIG_DIR),
        )
        container.exit_code, container.output, container.running = code, output, False
        if operation == "write" and output.rstrip().endswith("changed") and code == 0:
            self.node.schedule_sync(0)

    def wait(self, container_id: str) -> int:
        return self._get(container_id).exit_code

    def logs(self, container_id: str) -> list[tuple[int, bytes]]:
        return [(STDOUT, self._get(container_id).output.encode())]

    def remove(self, container_id: str, force: bool) -> None:
        container = self._get(container_id)
        if container.running and not force:
            raise EngineError(409, "You cannot remove a running container. Stop the container before removing.")
        self.kill(container.id)
        del self.containers[container.id]

    def kill(self, container_id: str) -> None:
        container = self._get(container_id)
        container.running = False
        if (container.config.get("Labels") or {}).get(TYPE_LABEL) == SANDBOX:
            # The sandbox's PID namespace dies with it, and every process that shared it.
            for other in self.containers.values():
                if other.host_config.get("PidMode") == f"container:{container.id}":
                    other.running = False
                    other.exit_code = 137

    def exec_create(self, container_id: str, cmd: list[str]) -> str:
        container = self._get(container_id)
        if not container.running:
            raise EngineError(409, f"Container {container_id} is not running")
        exec_id = secrets.token_hex(32)
        self.execs[exec_id] = {"container": container.id, "cmd": cmd, "exit_code": None}
        return exec_id

    def exec_start(self, exec_id: str) -> list[tuple[int, bytes]]:
        record = self.execs.get(exec_id)
        if record is None:
            raise EngineError(404, f"No such exec instance: {exec_id}")
        container = self.containers[record["container"]]
        if record["cmd"][:1] != ["ps"]:
            record["exit_code"] = 127
            return [(STDERR, f"exec: {record['cmd'][0]}: not found\n".encode())]
        pid_mode = container.host_config.get("PidMode", "")
        lines = ["PID   COMMAND"]
        if pid_mode.startswith("container:") and pid_mode[10:] in self.containers:
            sandbox = self.containers[pid_mode[10:]]
            argv = (sandbox.config.get("Entrypoint") or []) + (sandbox.config.get("Cmd") or [])
            lines += [
                f"    1 {argv[0].rsplit('/', 1)[-1] if argv else 'pause'}",
                "    7 sleep",
                "    8 sleep",
                "   14 ps",
            ]
        else:
            argv = (container.config.get("Entrypoint") or []) + (container.config.get("Cmd") or [])
            lines += [f"    1 {argv[0].rsplit('/', 1)[-1] if argv else 'sh'}", "    7 ps"]
        record["exit_code"] = 0
        return [(STDOUT, ("\n".join(lines) + "\n").encode())]

    def exec_inspect(self, exec_id: str) -> dict:
        record = self.execs.get(exec_id)
        if record is None:
            raise EngineError(404, f"No such exec instance: {exec_id}")
        return {"ID": exec_id, "Running": False, "ExitCode": record["exit_code"]}

    # --- for the kubelet stand-in

    def pod_states(self) -> list[PodState]:
        return _pod_states(
            [c.inspect() for c in self.containers.values() if TYPE_LABEL in (c.config.get("Labels") or {})]
        )

    def create_pod(self, pod_name: str, mode: str) -> None:
        node = self.node
        sandbox_id = self.create(
            {"Image": node.spec.pause_image, "Cmd": SANDBOX_CMD, "Labels": _pod_labels(node, pod_name, SANDBOX)},
            f"k8s_POD_{pod_name}",
        )
        self.start(sandbox_id)
        for index in range(node.spec.containers):
            self.create_app(pod_name, sandbox_id, index, mode)

    def create_app(self, pod_name: str, sandbox_id: str, index: int, mode: str) -> None:
        """One app container of a pod, in ``mode`` (joined to the sandbox's PID namespace or not)."""
        host_config = {"NetworkMode": f"container:{sandbox_id}"}
        if mode == "shared":
            host_config["PidMode"] = f"container:{sandbox_id}"
        app_id = self.create(
            {
                "Image": IMAGE,
                "Cmd": APP_CMD,
                "Labels": _pod_labels(self.node, pod_name, CONTAINER, sandbox_id),
                "HostConfig": host_config,
            },
            f"k8s_app{index}_{pod_name}_{sandbox_id[:8]}_{next(self._ids)}",
        )
        self.start(app_id)

    def dead_apps(self) -> list[tuple[str, str, str]]:
        """(container id, sandbox id, pod name) of app containers that exited in a running pod."""
        found = []
        for container in self.containers.values():
            labels = container.config.get("Labels") or {}
            sandbox = self.containers.get(labels.get(SANDBOX_LABEL, ""))
            if labels.get(TYPE_LABEL) == CONTAINER and not container.running and sandbox and sandbox.running:
                found.append((container.id, sandbox.id, labels.get(POD_NAME_LABEL, "")))
        return found

    def remove_pod(self, sandbox_id: str) -> None:
        for container in list(self.containers.values()):
            labels = container.config.get("Labels") or {}
            if container.id == sandbox_id or labels.get(SANDBOX_LABEL) == sandbox_id:
                self.remove(container.id, force=True)

    def close(self) -> None:
        self.containers.clear()


def _label_matches(labels: dict[str, str], expression: str) -> bool:
    key, sep, value = expression.partition("=")
    return key in labels and (not sep or labels[key] == value)


# --- real -----------------------------------------------------------------------------------------


class RealEngine:
    """A node's containers on a real local dockerd, scoped to the node by a label.

    Bind mounts from the node's host paths are rewritten into the node's directory, so the
    helper container edits the node's own kubelet configuration.
    """

    blocking = True

    def __init__(self, node, api, fleet_id: str):
        self.node = node
        self.api = api
        self.fleet_id = fleet_id
        self.node_label = f"{NODE_LABEL}={node.key}"

    def _owned(self, container_id: str) -> dict:
        from docker.errors import NotFound

        try:
            data = self.api.inspect_container(container_id)
        except NotFound:
            raise EngineError(404, f"No such container: {container_id}") from None
        if (data["Config"].get("Labels") or {}).get(NODE_LABEL) != self.node.key:
            raise EngineError(404, f"No such container: {container_id}")
        return data

    def version(self) -> dict:
        return version_info(self.node)

    def containers_list(self, all_: bool, label_filters: list[str]) -> list[dict]:
        return self.api.containers(all=all_, filters={"label": [self.node_label, *label_filters]})

    def inspect(self, container_id: str) -> dict:
        return self._owned(container_id)

    def create(self, body: dict, name: str | None) -> str:
        body = dict(body)
        labels = dict(body.get("Labels") or {})
        labels.update({NODE_LABEL: self.node.key, FLEET_LABEL: self.fleet_id})
        body["Labels"] = labels
        host_config = dict(body.get("HostConfig") or {})
        binds = []
        for bind in host_config.get("Binds") or []:
            source, _, rest = bind.partition(":")
            local = self.node.host_path(source)
            local.mkdir(parents=True, exist_ok=True)
            binds.append(f"{local}:{rest}")
        if binds:
            host_config["Binds"] = binds
        host_config["NetworkMode"] = host_config.get("NetworkMode") or "none"
        body["HostConfig"] = host_config
        scoped_name = f"{self.fleet_id}-{self.node.spec.cluster}-{name}" if name else None
        return self.api.create_container_from_config(body, name=scoped_name)["Id"]

    def start(self, container_id: str) -> None:
        self._owned(container_id)
        self.api.start(container_id)

    def wait(self, container_id: str) -> int:
        self._owned(container_id)
        return self.api.wait(container_id, timeout=60).get("StatusCode", -1)

    def logs(self, container_id: str) -> list[tuple[int, bytes]]:
        self._owned(container_id)
        out, err = (
            self.api.logs(container_id, stdout=True, stderr=False),
            self.api.logs(container_id, stdout=False, stderr=True),
        )
        return [(STDOUT, out), (STDERR, err)]

    def remove(self, container_id: str, force: bool) -> None:
        self._owned(container_id)
        self.api.remove_container(container_id, force=force)

    def kill(self, container_id: str) -> None:
        self._owned(container_id)
        self.api.kill(container_id)

    def exec_create(self, container_id: str, cmd: list[str]) -> str:
        self._owned(container_id)
        return self.api.exec_create(container_id, cmd)["Id"]

    def exec_start(self, exec_id: str) -> list[tuple[int, bytes]]:
        out, err = self.api.exec_start(exec_id, demux=True)
        return [(STDOUT, out or b""), (STDERR, err or b"")]

    def exec_inspect(self, exec_id: str) -> dict:
        return self.api.exec_inspect(exec_id)

    def pod_states(self) -> list[PodState]:
        listed = self.api.containers(all=True, filters={"label": [self.node_label, TYPE_LABEL]})
        return _pod_states([self.api.inspect_container(c["Id"]) for c in listed])

    def create_pod(self, pod_name: str, mode: str) -> None:
        node = self.node
        sandbox_id = self.create(
            {
                "Image": node.spec.pause_image,
                "Cmd": SANDBOX_CMD,
                "Labels": _pod_labels(node, pod_name, SANDBOX),
                "HostConfig": {"NetworkMode": "none"},
            },
            f"{node.spec.name}-POD-{pod_name}-{secrets.token_hex(3)}",
        )
        self.api.start(sandbox_id)
        for index in range(node.spec.containers):
            self.create_app(pod_name, sandbox_id, index, mode)

    def create_app(self, pod_name: str, sandbox_id: str, index: int, mode: str) -> None:
        host_config = {"NetworkMode": "none"}
        if mode == "shared":
            host_config["PidMode"] = f"container:{sandbox_id}"
        app_id = self.create(
            {
                "Image": IMAGE,
                "Cmd": APP_CMD,
                "Labels": _pod_labels(self.node, pod_name, CONTAINER, sandbox_id),
                "HostConfig": host_config,
            },
            f"{self.node.spec.name}-app{index}-{pod_name}-{secrets.token_hex(3)}",
        )
        self.api.start(app_id)

    def dead_apps(self) -> list[tuple[str, str, str]]:
        exited = self.api.containers(
            all=True, filters={"label": [self.node_label, f"{TYPE_LABEL}={CONTAINER}"], "status": "exited"}
        )
        running = {
            c["Id"] for c in self.api.containers(filters={"label": [self.node_label, f"{TYPE_LABEL}={SANDBOX}"]})
        }
        return [
            (c["Id"], c["Labels"][SANDBOX_LABEL], c["Labels"].get(POD_NAME_LABEL, ""))
            for c in exited
            if c["Labels"].get(SANDBOX_LABEL) in running
        ]

    def remove_pod(self, sandbox_id: str) -> None:
        listed = self.api.containers(all=True, filters={"label": [self.node_label, f"{SANDBOX_LABEL}={sandbox_id}"]})
        for container in listed:
            self.api.remove_container(container["Id"], force=True)
        self.api.remove_container(sandbox_id, force=True)

    def close(self) -> None:
        for container in self.api.containers(all=True, filters={"label": [self.node_label]}):
            self.api.remove_container(container["Id"], force=True)
