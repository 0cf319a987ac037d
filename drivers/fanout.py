"""Reading many nodes at once, beyond one interpreter lock.

A reading is mostly waiting on engines, but each request also costs the client some CPU (HTTP,
JSON, the SDK); past a few hundred requests a second one process is bound by its interpreter lock.
:class:`ProcessFanOut` spreads the reading over several processes, each reading its chunk of nodes
with its own threads and its own clients, and hands the results back to the caller, which records
them. Django-free: the children import the driver only.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait

from .base import DriverError, Endpoint, ErrorCode, ObservedFacts

# (node id, facts or (error code, message, facts learnt), milliseconds)
Result = tuple[int, ObservedFacts | tuple[str, str, dict], int]

CHUNK = 100

_driver = None


def can_fork_processes() -> bool:
    """False inside a daemonic process (a prefork pool's child), which may not start processes."""
    return not multiprocessing.current_process().daemon


def _read_one(driver, node_id: int, endpoint: Endpoint) -> Result:
    import time

    started = time.monotonic()
    try:
        facts: ObservedFacts | tuple = driver.facts(endpoint)
    except DriverError as exc:
        facts = (exc.code, exc.message, exc.facts)
    except Exception as exc:  # a driver bug becomes a node error, not a lost chunk
        facts = (ErrorCode.ENGINE_ERROR, f"unexpected driver error: {type(exc).__name__}: {exc}", {})
    return node_id, facts, int((time.monotonic() - started) * 1000)


def read_chunk(chunk: list[tuple[int, Endpoint]], threads: int) -> list[Result]:
    """In a child process: read a chunk of nodes with ``threads`` threads and this process's driver
    (its clients are kept from one chunk to the next)."""
    global _driver
    if _driver is None:
        from .docker_engine import DockerEngineDriver

        _driver = DockerEngineDriver()
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(chunk)))) as pool:
        return list(pool.map(lambda item: _read_one(_driver, *item), chunk))


def as_error(value: tuple[str, str, dict]) -> DriverError:
    code, message, facts = value
    return DriverError(code, message, facts=facts)


class ProcessFanOut:
    """Read ``endpoints`` over ``processes`` processes, ``concurrency`` reads in flight in all.
    Iterate over it for the results as chunks finish; :meth:`close` stops what has not started."""

    def __init__(self, endpoints: list[tuple[int, Endpoint]], *, processes: int, concurrency: int):
        self.processes = max(1, processes)
        threads = max(1, concurrency // self.processes)
        # Enough chunks that every process has work and a time limit cuts in soon after it passes.
        size = max(1, min(CHUNK, -(-len(endpoints) // (self.processes * 4))))
        self._pool = ProcessPoolExecutor(max_workers=self.processes, mp_context=multiprocessing.get_context("spawn"))
        self._pending: set[Future] = {
            self._pool.submit(read_chunk, endpoints[i : i + size], threads) for i in range(0, len(endpoints), size)
        }

    def results(self, timeout: float | None) -> Iterator[Result]:
        """Results as their chunks finish; raises TimeoutError when ``timeout`` seconds pass first."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, self._pending = wait(self._pending, timeout=remaining, return_when=FIRST_COMPLETED)
            if not done:
                raise TimeoutError
            for future in done:
                yield from future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
