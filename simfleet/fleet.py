"""A simulated fleet: one Engine API endpoint per node on loopback, and the kubelet stand-ins.

``Fleet`` runs on an asyncio loop; ``FleetThread`` runs one in a background thread for tests,
benchmarks and the ``simfleet`` command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .certs import server_tls
from .engines import FakeEngine, RealEngine
from .kube import SimCluster
from .kubeapi import KubeServer
from .node import SimNode
from .server import NodeServer
from .spec import FleetSpec

log = logging.getLogger(__name__)

DEFAULT_DOCKER_URL = "unix:///run/pidns-docker.sock"
ENGINES = ("fake", "real")
DOCKER_SOCK = DEFAULT_DOCKER_URL.removeprefix("unix://")


def dockerd_available(path: str = DOCKER_SOCK) -> bool:
    """Whether a Docker engine answers on the unix socket."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b" 200 " in sock.recv(64)
    except OSError:
        return False


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Fleet:
    def __init__(
        self,
        spec: FleetSpec,
        engine: str = "fake",
        root: Path | None = None,
        host: str = "127.0.0.1",
        docker_url: str = DEFAULT_DOCKER_URL,
        ssl_context: ssl.SSLContext | None = None,
        sync_interval: float = 0.5,
    ):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}")
        self.spec = spec
        self.engine = engine
        self.host = host
        self.docker_url = docker_url
        self.ssl_context = ssl_context
        self.sync_interval = sync_interval
        self.fleet_id = f"simfleet-{secrets.token_hex(4)}"
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="simfleet-"))
        self.nodes: list[SimNode] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._closed_sockets: list[socket.socket] = []
        self._sync_task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="simfleet-kubelet")
        self._api = None
        self.clusters: dict[str, SimCluster] = {}  # those that serve a Kubernetes API
        self.kube_ca = ""
        self._controller_task: asyncio.Task | None = None

    def _real_api(self):
        import docker

        from .images import ensure_image, ensure_tag

        api = docker.APIClient(base_url=self.docker_url, version="auto", timeout=60)
        ensure_image(api)
        for pause in {n.pause_image for n in self.spec.nodes}:
            ensure_tag(api, pause)
        return api

    async def start(self) -> None:
        _raise_open_files_limit()
        loop = asyncio.get_running_loop()
        if self.engine == "real":
            self._api = await loop.run_in_executor(self._executor, self._real_api)
        for node_spec in self.spec.nodes:
            node = SimNode(node_spec, self.root / node_spec.cluster / node_spec.name)
            node.backend = RealEngine(node, self._api, self.fleet_id) if self.engine == "real" else FakeEngine(node)
            if self.engine == "fake":
                node.schedule_sync = self._scheduler(node)
            if node_spec.faults.unreachable:
                # A bound port nobody listens on: connections are refused.
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind((self.host, 0))
                self._closed_sockets.append(sock)
                node.port = sock.getsockname()[1]
            else:
                front = NodeServer(node)
                server = await asyncio.start_server(front.handle, self.host, 0, ssl=self.ssl_context, backlog=256)
                self._servers.append(server)
                node.front, node.server = front, server
                node.port = server.sockets[0].getsockname()[1]
            self.nodes.append(node)
        await self._serve_clusters()
        await self.sync_all()
        self._sync_task = asyncio.create_task(self._sync_loop())

    async def _serve_clusters(self) -> None:
        """One Kubernetes API per cluster that has one, over HTTPS with a CA of the fleet's own."""
        if not self.spec.kubernetes:
            return
        tls = server_tls(self.host)
        self.kube_ca = tls.ca_pem
        for name, workloads in self.spec.kubernetes.items():
            members = [n for n in self.nodes if n.spec.cluster == name]
            cluster = SimCluster(name, workloads, members, host=self.host)
            cluster.endpoint_of = self.endpoint
            for node in members:
                node.kube = cluster
            server = await asyncio.start_server(KubeServer(cluster).handle, self.host, 0, ssl=tls.context, backlog=256)
            self._servers.append(server)
            cluster.port = server.sockets[0].getsockname()[1]
            self.clusters[name] = cluster
            self.write_kubeconfig(cluster)
        self._controller_task = asyncio.create_task(self._controllers())

    async def _controllers(self) -> None:
        """The clusters' controllers: replace evicted and deleted pods when they are due."""
        while True:
            await asyncio.sleep(0.05)
            for cluster in self.clusters.values():
                for node_name in cluster.tick():
                    node = cluster.nodes[node_name]
                    if self.engine == "fake":
                        node.kubelet_sync()

    def api_url(self, cluster: SimCluster) -> str:
        return f"https://{self.host}:{cluster.port}"

    def kubeconfig_path(self, cluster: SimCluster) -> Path:
        return self.root / cluster.name / "kubeconfig"

    def write_kubeconfig(self, cluster: SimCluster) -> Path:
        """A kubeconfig for the cluster that ``kubectl`` accepts (mode 0600: it holds the token)."""
        import base64

        import yaml

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster.name,
                    "cluster": {
                        "server": self.api_url(cluster),
                        "certificate-authority-data": base64.b64encode(self.kube_ca.encode()).decode(),
                    },
                }
            ],
            "users": [{"name": f"{cluster.name}-admin", "user": {"token": cluster.token}}],
            "contexts": [{"name": cluster.name, "context": {"cluster": cluster.name, "user": f"{cluster.name}-admin"}}],
            "current-context": cluster.name,
        }
        path = self.kubeconfig_path(cluster)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    @staticmethod
    def _scheduler(node: SimNode):
        """Fake nodes react to a restart request at once (or when the kubelet is back),
        instead of at the stand-ins' next pass; the loop is the one serving the node."""

        def schedule(delay: float) -> None:
            asyncio.get_running_loop().call_later(max(0.0, delay), node.kubelet_sync)

        return schedule

    async def sync_all(self) -> None:
        if self.engine == "fake":
            for node in self.nodes:
                node.kubelet_sync()
            return
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._executor, n.kubelet_sync) for n in self.nodes))

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval)
            try:
                await self.sync_all()
            except Exception:  # a stand-in failure must not stop the fleet; log it and go on
                log.exception("kubelet stand-in pass failed")

    def take_down(self, node: SimNode) -> None:
        """The node goes away: its endpoint stops listening and its open connections break. Call it
        on the fleet's loop (``FleetThread.run``)."""
        if getattr(node, "server", None) is not None:
            node.server.close()
            node.front.drop_connections()

    def endpoint(self, node: SimNode) -> str:
        return f"tcp://{self.host}:{node.port}"

    def node(self, cluster: str, name: str) -> SimNode:
        for node in self.nodes:
            if node.spec.cluster == cluster and node.spec.name == name:
                return node
        raise KeyError(f"{cluster}/{name}")

    async def stop(self) -> None:
        if self._controller_task:
            self._controller_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._controller_task
        if self._sync_task:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        for server in self._servers:
            server.close()
        for sock in self._closed_sockets:
            sock.close()
        if self.engine == "real":
            loop = asyncio.get_running_loop()
            await asyncio.gather(
                *(loop.run_in_executor(self._executor, n.backend.close) for n in self.nodes), return_exceptions=True
            )
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)


class FleetThread:
    """A fleet served from a background thread: ``start()`` returns once every endpoint answers."""

    def __init__(self, spec: FleetSpec, **options):
        self.fleet = Fleet(spec, **options)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="simfleet", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.fleet.start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        # Let open connections close while the loop still runs, then close it.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def start(self, timeout: float = 120) -> FleetThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the simulated fleet did not start in time")
        if self._error:
            raise self._error
        return self

    def call(self, coroutine, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def run(self, fn, *args):
        """Run a plain function on the fleet's loop (so it does not race the stand-ins)."""

        async def wrapper():
            return fn(*args)

        return self.call(wrapper())

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.call(self.fleet.stop(), timeout=120)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=30)

    def __enter__(self) -> Fleet:
        self.start()
        return self.fleet

    def __exit__(self, *exc) -> None:
        self.stop()
