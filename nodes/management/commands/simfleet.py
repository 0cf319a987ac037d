"""Serve a simulated fleet: one Docker Engine API endpoint per node on loopback, until interrupted."""

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from nodes import importing, services
from nodes.models import Cluster
from simfleet.fleet import DEFAULT_DOCKER_URL, DOCKER_SOCK, ENGINES, Fleet, dockerd_available
from simfleet.spec import SpecError, load_spec


def register(fleet: Fleet) -> int:
    """Create or update the fleet's clusters and nodes, with their endpoints, in the inventory, and
    the connection to each simulated Kubernetes API."""
    clusters = [
        {
            "name": name,
            "plan": plan,
            **({"desired_gates": fleet.spec.desired_gates[name]} if name in fleet.spec.desired_gates else {}),
        }
        for name, plan in fleet.spec.clusters.items()
    ]
    nodes = [
        {"cluster": n.spec.cluster, "name": n.spec.name, "docker_endpoint": fleet.endpoint(n), "labels": n.spec.labels}
        for n in fleet.nodes
    ]
    total = importing.nodes_import(actor="command:simfleet", nodes=nodes, clusters=clusters).total
    for cluster in fleet.clusters.values():
        services.cluster_update(
            actor="command:simfleet",
            cluster=Cluster.objects.get(name=cluster.name),
            kube_api_server=fleet.api_url(cluster),
            kube_ca_cert=fleet.kube_ca,
            kube_token=cluster.token,
        )
    return total


class Command(BaseCommand):
    help = "Serve simulated nodes (Docker Engine API on 127.0.0.1) from a YAML or JSON fleet spec."

    def add_arguments(self, parser):
        parser.add_argument("spec", type=Path)
        parser.add_argument("--engine", choices=ENGINES, default="fake")
        parser.add_argument("--register", action="store_true", help="create or update the nodes in the inventory")
        parser.add_argument("--docker-url", default=DEFAULT_DOCKER_URL, help="the real engine's dockerd")
        parser.add_argument("--sync-interval", type=float, default=0.5, help="seconds between kubelet stand-in passes")

    def handle(self, *args, spec, engine, register, docker_url, sync_interval, **options):
        try:
            fleet_spec = load_spec(spec)
        except SpecError as exc:
            raise CommandError(str(exc)) from None
        if engine == "real" and docker_url == f"unix://{DOCKER_SOCK}" and not dockerd_available():
            script = Path(settings.BASE_DIR) / "simfleet" / "dockerd.sh"
            started = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, check=False)  # noqa: S603,S607
            if started.returncode != 0:
                raise CommandError(f"no Docker engine for the real engine: {started.stderr.strip()}")
            self.stderr.write(started.stdout.strip())
        fleet = Fleet(fleet_spec, engine=engine, docker_url=docker_url, sync_interval=sync_interval)
        asyncio.run(self._serve(fleet, register))

    async def _serve(self, fleet: Fleet, register_nodes: bool) -> None:
        try:
            await fleet.start()
        except Exception as exc:
            await fleet.stop()
            raise CommandError(f"simfleet could not start ({fleet.engine} engine): {exc}") from None
        if register_nodes:
            loop = asyncio.get_running_loop()
            count = await loop.run_in_executor(None, register, fleet)
            self.stderr.write(f"registered {count} nodes in the inventory")
        for cluster in fleet.clusters.values():
            self.stdout.write(f"simfleet kubeconfig {cluster.name}: {fleet.kubeconfig_path(cluster)}")
        self.stdout.write(f"simfleet ready: {len(fleet.nodes)} nodes")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGUSR1, self._report, fleet)
        await stop.wait()
        await fleet.stop()

    def _report(self, fleet: Fleet) -> None:
        """On SIGUSR1: the Engine API requests served so far, over all nodes (for benchmarks)."""
        served = sum(front.requests for front in (getattr(node, "front", None) for node in fleet.nodes) if front)
        self.stdout.write(f"simfleet requests {served}")
        sys.stdout.flush()
