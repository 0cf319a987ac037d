"""The Docker Engine API front of a simulated node: a small HTTP/1.1 server on asyncio.

It answers the subset of the Engine API the ``docker`` SDK uses for this service, applies the
node's faults (latency, flapping, an engine too old), and hands each call to the node's backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import struct
import time
from urllib.parse import parse_qs, unquote, urlsplit

from .engines import EngineError

_VERSIONED = re.compile(r"^/v(?P<version>\d+\.\d+)(?P<path>/.*)$")
_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
}
MAX_BODY = 8 * 1024 * 1024


def frames(chunks: list[tuple[int, bytes]]) -> bytes:
    """Docker's multiplexed stream: an 8-byte header (stream, 0, 0, 0, size) before each chunk."""
    return b"".join(struct.pack(">BxxxL", stream, len(data)) + data for stream, data in chunks if data)


def _api_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


async def read_request(reader: asyncio.StreamReader):
    """One HTTP/1.1 request: (method, target, headers with lower-case names, body); None at EOF."""
    line = await reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").strip().split()
    if len(parts) != 3:
        raise ValueError("bad request line")
    method, target, _ = parts
    headers = {}
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readline()).strip().split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            chunks.append(await reader.readexactly(size))
            await reader.readline()
            if sum(map(len, chunks)) > MAX_BODY:
                raise ValueError("body too large")
        body = b"".join(chunks)
    elif headers.get("content-length"):
        length = int(headers["content-length"])
        if length > MAX_BODY:
            raise ValueError("body too large")
        body = await reader.readexactly(length)
    return method, target, headers, body


class NodeServer:
    """Serves one node's Engine API. ``handle`` is the asyncio connection callback."""

    def __init__(self, node):
        self.node = node
        self.started = time.monotonic()
        self.requests = 0
        self.writers: set[asyncio.StreamWriter] = set()

    def drop_connections(self) -> None:
        """Break every open connection, as a node that goes away does."""
        for writer in list(self.writers):
            writer.transport.abort()

    def _down(self) -> bool:
        period = self.node.spec.faults.flapping_seconds
        return period > 0 and int((time.monotonic() - self.started) / period) % 2 == 1

    async def _call(self, fn, *args):
        backend = self.node.backend
        if backend.blocking:
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        return fn(*args)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            if self._down():
                writer.transport.abort()
                return
            while True:
                request = await read_request(reader)
                if request is None or self._down():  # a flapping node drops open connections too
                    break
                method, target, headers, body = request
                self.requests += 1
                low, high = self.node.spec.faults.latency_ms
                if high > 0:
                    await asyncio.sleep(random.uniform(low, high) / 1000)  # noqa: S311 (simulated latency)
                keep_open = await self._dispatch(method, target, headers, body, writer)
                if not keep_open or headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            pass  # the fleet is stopping with a client's connection still open
        finally:
            self.writers.discard(writer)
            if not writer.is_closing():
                writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(
        self, writer, status: int, payload=None, content_type="application/json", raw: bytes | None = None
    ):
        data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
            f"Api-Version: {self.node.spec.api_version}\r\nServer: simfleet\r\n\r\n"
        )
        writer.write(head.encode() + data)
        await writer.drain()
        return True

    async def _dispatch(self, method, target, headers, body, writer) -> bool:
        parts = urlsplit(target)
        path, query = unquote(parts.path), parse_qs(parts.query)
        match = _VERSIONED.match(path)
        if match:
            path = match.group("path")
            if _api_tuple(match.group("version")) > _api_tuple(self.node.spec.api_version):
                return await self._respond(
                    writer,
                    400,
                    {
                        "message": f"client version {match.group('version')} is too new. "
                        f"Maximum supported API version is {self.node.spec.api_version}"
                    },
                )
        backend = self.node.backend
        try:
            if method in ("GET", "HEAD") and path == "/_ping":
                return await self._respond(writer, 200, raw=b"OK", content_type="text/plain")
            if method == "GET" and path == "/version":
                return await self._respond(writer, 200, backend.version())
            if method == "GET" and path == "/containers/json":
                filters = json.loads(query.get("filters", ["{}"])[0] or "{}")
                labels = filters.get("label", [])
                if isinstance(labels, dict):
                    labels = [k for k, v in labels.items() if v]
                all_ = query.get("all", ["0"])[0] in ("1", "true", "True")
                return await self._respond(writer, 200, await self._call(backend.containers_list, all_, labels))
            if method == "POST" and path == "/containers/create":
                name = query.get("name", [None])[0]
                container_id = await self._call(backend.create, json.loads(body or b"{}"), name)
                return await self._respond(writer, 201, {"Id": container_id, "Warnings": []})
            if method == "POST" and path.startswith("/exec/") and path.endswith("/start"):
                return await self._exec_start(path.split("/")[2], writer)
            if method == "GET" and path.startswith("/exec/") and path.endswith("/json"):
                return await self._respond(writer, 200, await self._call(backend.exec_inspect, path.split("/")[2]))
            segments = path.split("/")
            if len(segments) >= 3 and segments[1] == "containers":
                return await self._container(method, segments[2], "/".join(segments[3:]), query, body, writer)
            return await self._respond(writer, 404, {"message": f"page not found: {method} {path}"})
        except EngineError as exc:
            return await self._respond(writer, exc.status, {"message": exc.message})
        except json.JSONDecodeError:
            return await self._respond(writer, 400, {"message": "invalid JSON"})

    async def _container(self, method, container_id, action, query, body, writer) -> bool:
        backend = self.node.backend
        if method == "GET" and action == "json":
            return await self._respond(writer, 200, await self._call(backend.inspect, container_id))
        if method == "POST" and action == "start":
            await self._call(backend.start, container_id)
            return await self._respond(writer, 204)
        if method == "POST" and action == "wait":
            return await self._respond(writer, 200, {"StatusCode": await self._call(backend.wait, container_id)})
        if method == "GET" and action == "logs":
            chunks = await self._call(backend.logs, container_id)
            wanted = {1} if query.get("stdout", ["0"])[0] in ("1", "true") else set()
            if query.get("stderr", ["0"])[0] in ("1", "true"):
                wanted.add(2)
            return await self._respond(
                writer,
                200,
                raw=frames([c for c in chunks if c[0] in wanted]),
                content_type="application/vnd.docker.raw-stream",
            )
        if method == "POST" and action == "kill":
            await self._call(backend.kill, container_id)
            return await self._respond(writer, 204)
        if method == "DELETE" and action == "":
            force = query.get("force", ["0"])[0] in ("1", "true", "True")
            await self._call(backend.remove, container_id, force)
            return await self._respond(writer, 204)
        if method == "POST" and action == "exec":
            cmd = json.loads(body or b"{}").get("Cmd") or []
            return await self._respond(writer, 201, {"Id": await self._call(backend.exec_create, container_id, cmd)})
        return await self._respond(
            writer, 404, {"message": f"page not found: {method} /containers/{container_id}/{action}"}
        )

    async def _exec_start(self, exec_id: str, writer) -> bool:
        chunks = await self._call(self.node.backend.exec_start, exec_id)
        # Like dockerd: switch protocols, then stream. The pause lets the client finish reading
        # the headers before the stream arrives, as it does with a real engine.
        writer.write(
            b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
            b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(frames(chunks))
        await writer.drain()
        return False
