"""The Docker Engine driver, on the ``docker`` SDK.

Every call has a timeout. ``tcp://`` endpoints use TLS with certificate verification when the
node has credentials; plain HTTP is allowed only to loopback addresses or to endpoints an admin
marked insecure. Engine API 1.24 (Docker 1.12) is the oldest this driver speaks.

The driver keeps one client per node (an LRU of ``CLIENTS_KEPT``), so an operation's steps reuse
its connection, the engine's version is checked once per ``VERSION_TTL``, and a container is
inspected once (its PID mode is fixed at creation).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import os
import re
import shutil
import ssl
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import docker
import requests
from docker.errors import APIError, DockerException, NotFound
from docker.tls import TLSConfig

from .base import ApplyResult, DriverError, Endpoint, ErrorCode, ObservedFacts, PodPoll, VerifyResult
from .dropin import (
    DROPIN_NAME,
    HELPER_SCRIPT,
    VERSION_NAME,
    DropinError,
    managed_subset,
    parse_args,
    parse_dropin,
    parse_helper_output,
    render_args,
    render_dropin,
)
from .observe import (
    CONTAINER,
    SANDBOX,
    SANDBOX_LABEL,
    TYPE_LABEL,
    init_process_name,
    node_mode,
    observe_pods,
    pause_image,
    ps_pid1,
    sandbox_from_summary,
)

log = logging.getLogger(__name__)

MIN_API_VERSION = "1.24"
HELPER_IMAGE = os.environ.get("PIDNS_HELPER_IMAGE", "pidns-sim/busybox:1")
HELPER_LABEL = "io.pidns.helper"
FIRST_POLL = 0.05
CLIENTS_KEPT = 256
VERSION_TTL = 60.0
INSPECTED_KEPT = 4096


def _api_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Connection:
    """A node's client, kept between calls."""

    api: docker.APIClient
    tls_dir: str | None
    version: dict | None = None
    version_at: float = 0.0
    inspected: OrderedDict = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.api.close()
        if self.tls_dir:
            shutil.rmtree(self.tls_dir, ignore_errors=True)


class DockerEngineDriver:
    """Reads and changes a node through its Docker engine and a short-lived helper container."""

    def __init__(self, helper_image: str = HELPER_IMAGE, poll_interval: float = 0.5, keep: int = CLIENTS_KEPT):
        self.helper_image = helper_image
        self.poll_interval = poll_interval
        self.keep = keep
        self._connections: OrderedDict[tuple, _Connection] = OrderedDict()
        self._lock = threading.Lock()

    # --- connection ----------------------------------------------------------------------------

    @staticmethod
    def _key(endpoint: Endpoint) -> tuple:
        material = hashlib.blake2b(
            "\x00".join((endpoint.tls_ca, endpoint.tls_cert, endpoint.tls_key)).encode(), digest_size=16
        ).hexdigest()
        return (endpoint.url, material, endpoint.insecure, endpoint.timeout)

    def _connection(self, endpoint: Endpoint) -> _Connection:
        url = endpoint.url
        if not url:
            raise DriverError(ErrorCode.NO_ENDPOINT, "the node has no Docker endpoint")
        key = self._key(endpoint)
        with self._lock:
            connection = self._connections.get(key)
            if connection is not None:
                self._connections.move_to_end(key)
                return connection
        tls: TLSConfig | bool = False
        tls_dir = None
        if url.startswith("tcp://"):
            host = urlsplit(url).hostname or ""
            if endpoint.tls_ca:
                tls_dir = tempfile.mkdtemp(prefix="pidns-tls-")
                tls = self._tls_config(endpoint, tls_dir)
            elif not (is_loopback(host) or endpoint.insecure):
                raise DriverError(
                    ErrorCode.TLS_REQUIRED,
                    f"{url} is not loopback and has no TLS credentials; attach credentials, or mark the node "
                    "insecure to allow plain HTTP",
                )
        elif not url.startswith("unix://"):
            raise DriverError(ErrorCode.NO_ENDPOINT, f"unsupported endpoint {url!r}")
        try:
            api = docker.APIClient(base_url=url, version=MIN_API_VERSION, timeout=endpoint.timeout, tls=tls)
        except (DockerException, OSError) as exc:
            if tls_dir:
                shutil.rmtree(tls_dir, ignore_errors=True)
            raise DriverError(ErrorCode.ENGINE_ERROR, f"{url}: {_short(exc)}") from None
        # The node's CA must be the one that verifies: requests would otherwise let
        # REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE replace it, and route through HTTP(S)_PROXY.
        api.trust_env = False
        connection = _Connection(api, tls_dir)
        with self._lock:
            existing = self._connections.get(key)
            if existing is not None:
                connection.close()
                return existing
            self._connections[key] = connection
            while len(self._connections) > self.keep:
                _, evicted = self._connections.popitem(last=False)
                evicted.close()
        return connection

    def _forget(self, endpoint: Endpoint) -> None:
        with self._lock:
            connection = self._connections.pop(self._key(endpoint), None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), OrderedDict()
        for connection in connections:
            connection.close()

    @contextlib.contextmanager
    def _client(self, endpoint: Endpoint) -> Iterator[docker.APIClient]:
        """The node's client, with every failure turned into a :class:`DriverError`. A connection that
        failed is dropped, so the next call starts afresh."""
        connection = self._connection(endpoint)
        url = endpoint.url
        try:
            yield connection.api
        except DriverError:
            raise
        except requests.exceptions.SSLError as exc:
            self._forget(endpoint)
            raise DriverError(ErrorCode.TLS, f"TLS with {url} failed: {_reason(exc)}") from None
        except (requests.exceptions.Timeout, TimeoutError) as exc:
            self._forget(endpoint)
            raise DriverError(
                ErrorCode.TIMEOUT, f"{url} did not answer within {endpoint.timeout:g}s: {_short(exc)}"
            ) from None
        except requests.exceptions.ConnectionError as exc:
            self._forget(endpoint)
            if "timed out" in str(exc).lower():
                raise DriverError(ErrorCode.TIMEOUT, f"{url} did not answer within {endpoint.timeout:g}s") from None
            raise DriverError(ErrorCode.UNREACHABLE, f"cannot connect to {url}: {_reason(exc)}") from None
        except APIError as exc:
            message = exc.explanation if isinstance(exc.explanation, str) else str(exc)
            if "too new" in message or "Maximum supported API version" in message:
                raise DriverError(ErrorCode.ENGINE_TOO_OLD, message) from None
            raise DriverError(ErrorCode.ENGINE_ERROR, f"{url}: {message}") from None
        except (DockerException, requests.exceptions.RequestException, ssl.SSLError, OSError) as exc:
            self._forget(endpoint)
            raise DriverError(ErrorCode.ENGINE_ERROR, f"{url}: {_short(exc)}") from None

    @staticmethod
    def _tls_config(endpoint: Endpoint, directory: str) -> TLSConfig:
        def write(name: str, pem: str) -> str:
            path = os.path.join(directory, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(pem)
            return path

        ca = write("ca.pem", endpoint.tls_ca)
        client_cert = None
        if endpoint.tls_cert and endpoint.tls_key:
            client_cert = (write("cert.pem", endpoint.tls_cert), write("key.pem", endpoint.tls_key))
        return TLSConfig(client_cert=client_cert, ca_cert=ca, verify=True)

    def engine_version(self, endpoint: Endpoint, fresh: bool = False, cached: bool = False) -> dict:
        """The engine's ``/version``, checked at most once per ``VERSION_TTL`` per node. With
        ``cached``, only what is already known (an empty dict when nothing is): no request."""
        connection = self._connection(endpoint)
        if not fresh and connection.version is not None and time.monotonic() - connection.version_at < VERSION_TTL:
            return connection.version
        if cached:
            return {}
        with self._client(endpoint) as api:
            info = api.version(api_version=False)
        api_version = str(info.get("ApiVersion", ""))
        if _api_tuple(api_version) < _api_tuple(MIN_API_VERSION):
            raise DriverError(
                ErrorCode.ENGINE_TOO_OLD,
                f"Docker {info.get('Version', '?')} speaks Engine API {api_version}; this driver needs "
                f"{MIN_API_VERSION} (Docker 1.12) or newer",
                facts={"runtime_version": str(info.get("Version", "")), "docker_api_version": api_version},
            )
        connection.version, connection.version_at = info, time.monotonic()
        return info

    # --- the helper container ------------------------------------------------------------------

    def _run_helper(self, endpoint: Endpoint, operation: str, env: dict | None = None) -> dict:
        with self._client(endpoint) as api:
            config_dir, _, config_name = endpoint.kubelet_config.rpartition("/")
            binds = {endpoint.kubelet_dir: {"bind": "/host/kubelet", "mode": "rw"}}
            if operation == "read" and config_dir:
                binds[config_dir] = {"bind": "/host/kubelet-config", "mode": "ro"}
            env = {**(env or {}), "PIDNS_KUBELET_CONFIG_NAME": config_name}
            host_config = api.create_host_config(binds=binds, network_mode="none")
            try:
                container = api.create_container(
                    self.helper_image,
                    ["sh", "-c", HELPER_SCRIPT, "pidns-helper", operation],
                    environment=env or {},
                    host_config=host_config,
                    labels={HELPER_LABEL: operation},
                    network_disabled=True,
                )
            except NotFound:
                raise DriverError(
                    ErrorCode.HELPER_FAILED, f"the helper image {self.helper_image} is not on the node; load it first"
                ) from None
            container_id = container["Id"]
            try:
                api.start(container_id)
                status = api.wait(container_id, timeout=endpoint.timeout).get("StatusCode", -1)
                output = api.logs(container_id, stdout=True, stderr=True).decode("utf-8", "replace")
            finally:
                with contextlib.suppress(DockerException, requests.exceptions.RequestException):
                    api.remove_container(container_id, force=True)
        if status != 0:
            code = ErrorCode.APPLY_FAILED if operation == "write" else ErrorCode.HELPER_FAILED
            raise DriverError(code, f"node helper '{operation}' exited {status}: {output.strip()[-300:]}")
        try:
            return parse_helper_output(output)
        except DropinError as exc:
            raise DriverError(ErrorCode.HELPER_FAILED, str(exc)) from None

    # --- pods ----------------------------------------------------------------------------------

    def poll(self, endpoint: Endpoint) -> PodPoll:
        """The pods' containers, grouped into pods. Sandboxes are described from the list alone
        (labels, image, command and state are there); an app container is inspected once, for its
        PID mode, which never changes."""
        connection = self._connection(endpoint)
        with self._client(endpoint) as api:
            listed = api.containers(all=True, filters={"label": [TYPE_LABEL]})
            inspected = []
            for summary in listed:
                labels = summary.get("Labels") or {}
                if labels.get(TYPE_LABEL) == SANDBOX:
                    inspected.append(sandbox_from_summary(summary))
                    continue
                known = connection.inspected.get(summary["Id"])
                if known is None:
                    try:
                        known = api.inspect_container(summary["Id"])
                    except NotFound:  # removed between list and inspect
                        continue
                    with connection.lock:
                        connection.inspected[summary["Id"]] = known
                        while len(connection.inspected) > INSPECTED_KEPT:
                            connection.inspected.popitem(last=False)
                running = summary.get("State") == "running"
                inspected.append({**known, "State": {**(known.get("State") or {}), "Running": running}})
        pods = observe_pods(inspected)
        return PodPoll(mode=node_mode(pods), pods=tuple(pods), inspected=tuple(inspected))

    # --- facts ---------------------------------------------------------------------------------

    def facts(self, endpoint: Endpoint) -> ObservedFacts:
        """Docker and API versions, kubelet version and managed flags, pause image, observed mode."""
        info = self.engine_version(endpoint, fresh=True)
        helper = self._run_helper(endpoint, "read")
        try:
            flags = parse_dropin(helper.get("dropin", ""))
        except DropinError as exc:
            raise DriverError(ErrorCode.HELPER_FAILED, f"{DROPIN_NAME}: {exc}") from None
        pods = self.poll(endpoint)
        return ObservedFacts(
            docker_version=str(info.get("Version", "")),
            api_version=str(info.get("ApiVersion", "")),
            kubelet_version=helper.get(VERSION_NAME, "").strip(),
            kubelet_flags=flags,
            pause_image=pause_image(pods.pods),
            observed_pid_namespace=pods.mode,
            pods=pods.pods,
            config_gates=config_gates(helper.get("kubelet-config", "")),
            kubelet_status=kubelet_status(helper.get("kubelet-status", "")),
            kubelet_args=kubelet_args(helper.get("kubelet-status", "")),
        )

    # --- apply ---------------------------------------------------------------------------------

    def apply(
        self,
        endpoint: Endpoint,
        kubelet_flags: dict[str, str],
        expect_flags: dict[str, str] | None = None,
        expect_kubelet: str | None = None,
    ) -> ApplyResult:
        """Write the managed flags into the kubelet drop-in and request a kubelet restart, in one
        helper run that also reads the kubelet version.

        Idempotent: when the drop-in already holds these flags nothing is written or restarted.
        A compare-and-set when ``expect_flags`` or ``expect_kubelet`` is given: if the node's
        managed flags are neither the expected ones nor the new ones, or its kubelet version is not
        the expected one, nothing is written and the result says ``conflict``.
        """
        try:
            content = render_dropin(kubelet_flags)
            env = {"PIDNS_DROPIN": content}
            if expect_flags is not None:
                env["PIDNS_EXPECT_ARGS"] = render_args(expect_flags)
                env["PIDNS_NEW_ARGS"] = render_args(kubelet_flags)
        except DropinError as exc:
            raise DriverError(ErrorCode.APPLY_FAILED, str(exc)) from None
        if expect_kubelet is not None:
            env["PIDNS_EXPECT_KUBELET"] = expect_kubelet
        # No version request first: the client speaks API 1.24, and an older engine refuses the
        # helper's first call with an error that reads as ENGINE_TOO_OLD.
        result = self._run_helper(endpoint, "write", env=env)
        status = result.get("status", "")
        kubelet_version = result.get(VERSION_NAME, "").strip()
        if status == "conflict":
            try:
                current = parse_dropin(result.get("dropin", ""))
            except DropinError:
                current = {}
            return ApplyResult(
                changed=False,
                previous_flags=current,
                kubelet_flags=current,
                kubelet_version=kubelet_version,
                conflict=True,
            )
        if status not in ("changed", "unchanged"):
            raise DriverError(ErrorCode.APPLY_FAILED, f"node helper answered {status!r}")
        previous = parse_dropin(result.get("previous", "")) if status == "changed" else managed_subset(kubelet_flags)
        return ApplyResult(
            changed=status == "changed",
            previous_flags=previous,
            kubelet_flags=managed_subset(kubelet_flags),
            kubelet_version=kubelet_version,
        )

    # --- verify --------------------------------------------------------------------------------

    def verify(self, endpoint: Endpoint, expected_mode: str, timeout: float) -> VerifyResult:
        """Wait until every pod shows ``expected_mode`` on two polls in a row with the same pods
        (a restarting kubelet recreates pods one by one), then prove it with ``ps``.

        Polls back off from 50 ms to ``poll_interval``. (Rollout operations do not wait here: they
        poll once per step, see :mod:`rollout.operations`.)
        """
        started = time.monotonic()
        deadline = started + timeout
        last, previous = "unknown", None
        delay = min(FIRST_POLL, self.poll_interval)
        while True:
            poll = self.poll(endpoint)
            last = poll.mode
            if last == expected_mode and poll.sandboxes == previous:
                proof = self.prove(endpoint, poll, expected_mode, every_pod=True)
                if proof is not None:
                    return VerifyResult(mode=last, elapsed=time.monotonic() - started, proof=proof)
            previous = poll.sandboxes if last == expected_mode else None
            wait = min(FIRST_POLL, self.poll_interval) if previous is not None else delay
            if time.monotonic() + wait > deadline:
                raise DriverError(
                    ErrorCode.VERIFY_TIMEOUT,
                    f"pods did not reach {expected_mode} within {timeout:g}s (observed {last})",
                )
            time.sleep(wait)
            delay = min(delay * 2, self.poll_interval)

    def prove(self, endpoint: Endpoint, poll: PodPoll, expected_mode: str, every_pod: bool = False) -> list[str] | None:
        """What PID 1 is inside a running app container, one line per container looked at: the
        sandbox's init when the pod shares its PID namespace. One container (``ps`` once), or one
        per pod with ``every_pod``. None when a container contradicts ``expected_mode``; an empty
        list when no app container runs."""
        by_id = {c["Id"]: c for c in poll.inspected}
        proof: list[str] = []
        proven: set[str] = set()
        for container in poll.inspected:
            labels = (container.get("Config") or {}).get("Labels") or {}
            if labels.get(TYPE_LABEL) != CONTAINER or not (container.get("State") or {}).get("Running"):
                continue
            sandbox_id = labels.get(SANDBOX_LABEL, "")
            sandbox = by_id.get(sandbox_id)
            if sandbox is None or sandbox_id in proven:
                continue
            sandbox_init = init_process_name(sandbox)
            name = (container.get("Name") or container["Id"][:12]).lstrip("/")
            with self._client(endpoint) as api:
                try:
                    exec_id = api.exec_create(container["Id"], ["ps", "-o", "pid,comm"])["Id"]
                    output = api.exec_start(exec_id).decode("utf-8", "replace")
                except APIError as exc:
                    proof.append(f"{name}: ps unavailable ({_short(exc)})")
                    continue
            pid1 = ps_pid1(output)
            shares = pid1 is not None and pid1 == sandbox_init
            if shares != (expected_mode == "shared"):
                return None
            relation = "the" if shares else "not the"
            proof.append(f"{name}: PID 1 is {pid1!r} ({relation} sandbox's {sandbox_init})")
            proven.add(sandbox_id)
            if not every_pod:
                break
        return proof


def config_gates(text: str) -> dict[str, bool]:
    """The ``featureGates`` of a KubeletConfiguration (YAML or JSON); empty when there are none or
    the file cannot be read (its gates are then not known, and not counted)."""
    import yaml

    if not text.strip():
        return {}
    try:
        config = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return {}
    gates = config.get("featureGates") if isinstance(config, dict) else None
    if not isinstance(gates, dict):
        return {}
    return {str(name): value for name, value in gates.items() if isinstance(value, bool)}


def kubelet_status(text: str) -> str:
    """The kubelet's state as its unit wrote it: ``running``, or ``failed: <why>``; empty when unknown."""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    return first[:500]


def kubelet_args(text: str) -> dict[str, str]:
    """The managed flags the kubelet last started with (the ``args:`` line its unit records)."""
    for line in text.splitlines():
        if line.startswith("args:"):
            try:
                return parse_args(line[5:].strip())
            except DropinError:
                return {}
    return {}


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^\"'()]+)")
_TLS_REASON = re.compile(r"\[SSL: ([A-Z_]+)\][^\"'()]*")


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in the words of the system call or of TLS ("connection refused",
    "name or service not known", "CERTIFICATE_VERIFY_FAILED: ..."), not the HTTP library's chain
    of wrappers; the whole text (shortened) when neither is in it."""
    text = str(exc)
    tls = _TLS_REASON.search(text)
    if tls:
        return tls.group(0).removeprefix("[SSL: ").replace("] ", ": ", 1).strip()
    errno = _ERRNO.search(text)
    if errno:
        return errno.group(1).strip().rstrip(".").lower()
    return _short(exc)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + "..."
