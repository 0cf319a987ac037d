"""One simulated node: its host files, its engine backend, and a kubelet stand-in.

The node's "host" is a directory: the kubelet's pidns configuration lives in
``<root>/etc/kubernetes/pidns`` (the drop-in, the kubelet version, the restart request), so the
real helper script, run in a container with that directory mounted, sees what it would see on a
real node. The kubelet stand-in reads the drop-in, decides the PID-namespace mode with the same
engine the service uses, and (re)creates the node's pods in that mode.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import yaml

from drivers.dropin import (
    DROPIN_NAME,
    RESTART_NAME,
    VERSION_NAME,
    DropinError,
    parse_dropin,
    render_args,
    render_dropin,
    split_gates,
)
from gates.catalog import load_catalog
from gates.facts import parse_facts
from gates.gatecheck import validate
from gates.plans import decide

from .spec import NodeSpec

KUBELET_DIR = "/etc/kubernetes/pidns"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"


class SimNode:
    """State shared by the HTTP front, the engine backend and the kubelet stand-in."""

    def __init__(self, spec: NodeSpec, root: Path):
        self.spec = spec
        self.root = root
        self.kubelet_dir = root / KUBELET_DIR.lstrip("/")
        self.kubelet_dir.mkdir(parents=True, exist_ok=True)
        (self.kubelet_dir / VERSION_NAME).write_text(spec.kubelet_version + "\n")
        (self.kubelet_dir / DROPIN_NAME).write_text(render_dropin(spec.kubelet_flags))
        if spec.config_gates:
            config = self.host_path(KUBELET_CONFIG)
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(yaml.safe_dump({"kind": "KubeletConfiguration", "featureGates": spec.config_gates}))
        self.kubelet_error = self.refusal()
        self._write_status()
        self.backend = None  # set by the fleet
        self.port = 0
        self.restart_seen: str | None = None
        self.restart_due: float | None = None
        self.effective_mode: str | None = None
        # Set by the fleet: run the stand-in soon (the helper just requested a restart).
        self.schedule_sync = lambda delay: None
        self.restarts = 0
        self.restarted_at = 0.0  # wall clock of the last kubelet restart
        self.lock = threading.Lock()
        self.kube = None  # the node's SimCluster when its cluster serves a Kubernetes API

    @property
    def key(self) -> str:
        return f"{self.spec.cluster}/{self.spec.name}"

    def host_path(self, node_path: str) -> Path:
        """Where a path on the node's host lives on this machine."""
        return self.root / node_path.lstrip("/")

    def flags(self) -> dict[str, str]:
        try:
            return parse_dropin((self.kubelet_dir / DROPIN_NAME).read_text())
        except (OSError, DropinError):
            return {}

    def desired_mode(self) -> str:
        """The mode the kubelet gives pods with the current flags (per-pod pods do not opt in)."""
        facts = parse_facts(
            {
                "kubelet_version": self.spec.kubelet_version,
                "runtime_version": self.spec.docker_version,
                "kubelet_flags": self.flags(),
                "pause_image": self.spec.pause_image,
            }
        )
        mode = decide(facts, self.spec.plan).pid_namespace
        return "shared" if mode == "shared" else "isolated"

    def gates(self) -> dict[str, bool]:
        """The gates the kubelet would start with: its configuration's, under the drop-in's."""
        _, flag_gates = split_gates(self.flags())
        return {**self.spec.config_gates, **flag_gates}

    def refusal(self) -> str:
        """Why this kubelet would refuse to start with its gates, as a kubelet says it; empty if it starts."""
        gates = self.gates()
        for name in self.spec.faults.refuses_gates:
            if name in gates:
                return f"unrecognized feature gate: {name}"
        check = validate(self.spec.kubelet_version, gates, load_catalog())
        return check.problems[0].message if check.problems else ""

    def _write_status(self) -> None:
        """What the kubelet unit records (``ExecStartPost`` / ``ExecStopPost`` on a real node)."""
        status = f"failed: {self.kubelet_error}" if self.kubelet_error else "running"
        args = render_args(self.flags())
        (self.kubelet_dir / "kubelet-status").write_text(f"{status}\nargs: {args}\n")

    @property
    def running(self) -> bool:
        return not self.kubelet_error

    def _restart_marker(self) -> str:
        try:
            return (self.kubelet_dir / RESTART_NAME).read_text()
        except OSError:
            return ""

    def kubelet_sync(self) -> None:
        """One pass of the stand-in: restart on request, and keep every pod running in its mode.

        Like the kubelet, a pod whose sandbox died is recreated whole (its containers died with
        the sandbox's PID namespace). A restart applies the drop-in's flags, and pods in another
        mode are recreated; a node whose fault says verification never converges keeps its
        pods as they were.
        """
        with self.lock:
            marker = self._restart_marker()
            restarted = self.restart_seen is not None and marker != self.restart_seen
            if restarted and self.spec.faults.restart_ms:
                # The kubelet takes a while to come back; pods change when it has.
                now = time.monotonic()
                if self.restart_due is None:
                    self.restart_due = now + self.spec.faults.restart_ms / 1000
                if now < self.restart_due:
                    self.schedule_sync(self.restart_due - now)
                    return
            self.restart_due = None
            self.restart_seen = marker
            if restarted:
                self.restarts += 1
                self.restarted_at = time.time()
                # A kubelet given a gate it refuses does not start: its pods run on as they were
                # (Docker keeps them), and nothing new is created until it starts again.
                self.kubelet_error = self.refusal()
                self._write_status()
            if self.kubelet_error:
                return
            if self.effective_mode is None or (restarted and not self.spec.faults.verify_never_converges):
                self.effective_mode = self.desired_mode()
            if self.kube is not None:
                self._run_bound_pods()
                return
            pods = self.backend.pod_states()
            present = {p.name for p in pods}
            for pod in pods:
                if not pod.sandbox_running:
                    self.backend.remove_pod(pod.sandbox_id)
                    self.backend.create_pod(pod.name, self.effective_mode)
                elif pod.mode not in ("unknown", self.effective_mode):
                    # The replacement starts before the old pod goes, so no observer ever sees
                    # fewer pods in the new mode than the node really has.
                    self.backend.create_pod(pod.name, self.effective_mode)
                    self.backend.remove_pod(pod.sandbox_id)
            for index in range(self.spec.pods):
                name = f"{self.spec.name}-pod-{index}"
                if name not in present:
                    self.backend.create_pod(name, self.effective_mode)

    def _run_bound_pods(self) -> None:
        """With a Kubernetes API: run exactly the pods bound to this node. A new pod starts in the
        mode the kubelet runs now; a running one keeps its mode (a restart leaves it alone); a pod
        that left the node (evicted, deleted) is removed; a crashed app container is restarted."""
        wanted = {pod.name for pod in self.kube.pods_on(self.spec.name)}
        running = set()
        for pod in self.backend.pod_states():
            if pod.name not in wanted or not pod.sandbox_running or pod.name in running:
                self.backend.remove_pod(pod.sandbox_id)
                if pod.name in wanted and not pod.sandbox_running and pod.name not in running:
                    self.backend.create_pod(pod.name, self.effective_mode)
                    running.add(pod.name)
            else:
                running.add(pod.name)
        for name in sorted(wanted - running):
            self.backend.create_pod(name, self.effective_mode)
        # An app container that exited in a running pod is started again, like the kubelet does, in
        # the mode the kubelet runs now: a pod created before a change then holds containers of
        # both modes (a mixed pod).
        for container_id, sandbox_id, pod_name in self.backend.dead_apps():
            self.backend.remove(container_id, force=True)
            self.backend.create_app(pod_name, sandbox_id, 0, self.effective_mode)
