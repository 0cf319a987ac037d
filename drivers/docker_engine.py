"""The Docker Engine driver, on the ``docker`` SDK.

Every call has a timeout. ``tcp://`` endpoints use TLS with certificate verification when the
node has credentials; plain HTTP is allowed only to loopback addresses or to endpoints an admin
marked insecure. Engine API 1.24 (Docker 1.12) is the oldest this driver speaks.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import docker
import requests
from docker.errors import APIError, DockerException, NotFound
from docker.tls import TLSConfig

from .base import ApplyResult, DriverError, Endpoint, ErrorCode, ObservedFacts, VerifyResult
from .dropin import (
    DROPIN_NAME,
    HELPER_SCRIPT,
    VERSION_NAME,
    DropinError,
    managed_subset,
    parse_dropin,
    parse_helper_output,
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


class DockerEngineDriver:
    """Reads and changes a node through its Docker engine and a short-lived helper container."""

    def __init__(self, helper_image: str = HELPER_IMAGE, poll_interval: float = 0.5):
        self.helper_image = helper_image
        self.poll_interval = poll_interval

    # --- connection ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _client(self, endpoint: Endpoint) -> Iterator[docker.APIClient]:
        url = endpoint.url
        if not url:
            raise DriverError(ErrorCode.NO_ENDPOINT, "the node has no Docker endpoint")
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
        client = None
        try:
            client = docker.APIClient(base_url=url, version=MIN_API_VERSION, timeout=endpoint.timeout, tls=tls)
            # The node's CA must be the one that verifies: requests would otherwise let
            # REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE replace it, and route through HTTP(S)_PROXY.
            client.trust_env = False
            yield client
        except DriverError:
            raise
        except requests.exceptions.SSLError as exc:
            raise DriverError(ErrorCode.TLS, f"TLS with {url} failed: {_short(exc)}") from None
        except (requests.exceptions.Timeout, TimeoutError) as exc:
            raise DriverError(
                ErrorCode.TIMEOUT, f"{url} did not answer within {endpoint.timeout:g}s: {_short(exc)}"
            ) from None
        except requests.exceptions.ConnectionError as exc:
            if "timed out" in str(exc).lower():
                raise DriverError(ErrorCode.TIMEOUT, f"{url} did not answer within {endpoint.timeout:g}s") from None
            raise DriverError(ErrorCode.UNREACHABLE, f"cannot connect to {url}: {_short(exc)}") from None
        except APIError as exc:
            message = exc.explanation if isinstance(exc.explanation, str) else str(exc)
            if "too new" in message or "Maximum supported API version" in message:
                raise DriverError(ErrorCode.ENGINE_TOO_OLD, message) from None
            raise DriverError(ErrorCode.ENGINE_ERROR, f"{url}: {message}") from None
        except (DockerException, requests.exceptions.RequestException, ssl.SSLError, OSError) as exc:
            raise DriverError(ErrorCode.ENGINE_ERROR, f"{url}: {_short(exc)}") from None
        finally:
            if client is not None:
                client.close()
            if tls_dir:
                shutil.rmtree(tls_dir, ignore_errors=True)

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

    def _check_engine(self, api: docker.APIClient) -> dict:
        info = api.version(api_version=False)
        api_version = str(info.get("ApiVersion", ""))
        if _api_tuple(api_version) < _api_tuple(MIN_API_VERSION):
            raise DriverError(
                ErrorCode.ENGINE_TOO_OLD,
                f"Docker {info.get('Version', '?')} speaks Engine API {api_version}; this driver needs "
                f"{MIN_API_VERSION} (Docker 1.12) or newer",
                facts={"runtime_version": str(info.get("Version", "")), "docker_api_version": api_version},
            )
        return info

    # --- the helper container ------------------------------------------------------------------

    def _run_helper(self, api: docker.APIClient, endpoint: Endpoint, operation: str, env: dict | None = None) -> dict:
        host_config = api.create_host_config(
            binds={endpoint.kubelet_dir: {"bind": "/host/kubelet", "mode": "rw"}}, network_mode="none"
        )
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

    # --- facts ---------------------------------------------------------------------------------

    def _pods(self, api: docker.APIClient):
        """Inspect the pods' containers. Sandboxes are described from the list alone (labels,
        image, command and state are there); only app containers need an inspect, for PidMode."""
        listed = api.containers(all=True, filters={"label": [TYPE_LABEL]})
        inspected = []
        for summary in listed:
            labels = summary.get("Labels") or {}
            if labels.get(TYPE_LABEL) == SANDBOX:
                inspected.append(sandbox_from_summary(summary))
                continue
            with contextlib.suppress(NotFound):  # removed between list and inspect
                inspected.append(api.inspect_container(summary["Id"]))
        return inspected, observe_pods(inspected)

    def facts(self, endpoint: Endpoint) -> ObservedFacts:
        """Docker and API versions, kubelet version and managed flags, pause image, observed mode."""
        with self._client(endpoint) as api:
            info = self._check_engine(api)
            helper = self._run_helper(api, endpoint, "read")
            try:
                flags = parse_dropin(helper.get("dropin", ""))
            except DropinError as exc:
                raise DriverError(ErrorCode.HELPER_FAILED, f"{DROPIN_NAME}: {exc}") from None
            _, pods = self._pods(api)
        return ObservedFacts(
            docker_version=str(info.get("Version", "")),
            api_version=str(info.get("ApiVersion", "")),
            kubelet_version=helper.get(VERSION_NAME, "").strip(),
            kubelet_flags=flags,
            pause_image=pause_image(pods),
            observed_pid_namespace=node_mode(pods),
            pods=tuple(pods),
        )

    # --- apply ---------------------------------------------------------------------------------

    def apply(self, endpoint: Endpoint, kubelet_flags: dict[str, str]) -> ApplyResult:
        """Write the managed flags into the kubelet drop-in and request a kubelet restart.

        Idempotent: when the drop-in already holds these flags nothing is written or restarted.
        """
        try:
            content = render_dropin(kubelet_flags)
        except DropinError as exc:
            raise DriverError(ErrorCode.APPLY_FAILED, str(exc)) from None
        with self._client(endpoint) as api:
            self._check_engine(api)
            result = self._run_helper(api, endpoint, "write", env={"PIDNS_DROPIN": content})
        status = result.get("status", "")
        if status not in ("changed", "unchanged"):
            raise DriverError(ErrorCode.APPLY_FAILED, f"node helper answered {status!r}")
        previous = parse_dropin(result.get("previous", "")) if status == "changed" else managed_subset(kubelet_flags)
        return ApplyResult(
            changed=status == "changed", previous_flags=previous, kubelet_flags=managed_subset(kubelet_flags)
        )

    # --- verify --------------------------------------------------------------------------------

    def verify(self, endpoint: Endpoint, expected_mode: str, timeout: float) -> VerifyResult:
        """Wait until every pod shows ``expected_mode`` on two polls in a row with the same pods
        (a restarting kubelet recreates pods one by one), then prove it with ``ps`` in each pod.

        Polls back off from 50 ms to ``poll_interval``: a fast kubelet is seen quickly, a slow one
        is not hammered. The confirming poll follows the first match after 50 ms.
        """
        started = time.monotonic()
        deadline = started + timeout
        last, previous_pods = "unknown", None
        delay = min(FIRST_POLL, self.poll_interval)
        while True:
            with self._client(endpoint) as api:
                inspected, pods = self._pods(api)
                last = node_mode(pods)
                current_pods = sorted(p.sandbox_id for p in pods)
                if last == expected_mode and current_pods == previous_pods:
                    proof = self._prove(api, inspected, expected_mode)
                    if proof is not None:
                        return VerifyResult(mode=last, elapsed=time.monotonic() - started, proof=proof)
                previous_pods = current_pods if last == expected_mode else None
            wait = min(FIRST_POLL, self.poll_interval) if previous_pods is not None else delay
            if time.monotonic() + wait > deadline:
                raise DriverError(
                    ErrorCode.VERIFY_TIMEOUT,
                    f"pods did not reach {expected_mode} within {timeout:g}s (observed {last})",
                )
            time.sleep(wait)
            delay = min(delay * 2, self.poll_interval)

    def _prove(self, api: docker.APIClient, inspected: list[dict], expected_mode: str) -> list[str] | None:
        """One line per pod saying what PID 1 is inside an app container; None if a pod disagrees."""
        by_id = {c["Id"]: c for c in inspected}
        proof = []
        for container in inspected:
            labels = container["Config"].get("Labels") or {}
            if labels.get(TYPE_LABEL) != CONTAINER or not container["State"].get("Running"):
                continue
            sandbox = by_id.get(labels.get(SANDBOX_LABEL, ""))
            if sandbox is None or (sandbox["Config"].get("Labels") or {}).get(TYPE_LABEL) != SANDBOX:
                continue
            sandbox_init = init_process_name(sandbox)
            try:
                exec_id = api.exec_create(container["Id"], ["ps", "-o", "pid,comm"])["Id"]
                output = api.exec_start(exec_id).decode("utf-8", "replace")
            except APIError as exc:
                proof.append(f"{container['Name'].lstrip('/')}: ps unavailable ({_short(exc)})")
                continue
            pid1 = ps_pid1(output)
            shares = pid1 is not None and pid1 == sandbox_init
            if shares != (expected_mode == "shared"):
                return None
            proof.append(
                f"{container['Name'].lstrip('/')}: PID 1 is {pid1!r}"
                + (f" (the sandbox's {sandbox_init})" if shares else f" (not the sandbox's {sandbox_init})")
            )
        return proof


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + "..."
