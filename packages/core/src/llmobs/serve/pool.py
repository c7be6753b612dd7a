"""Ingest on more than one core: worker processes decode large OTLP requests while the server writes.

Decoding a span from protobuf costs about as much as writing it to SQLite, and both hold the GIL, so one
process ingests on one core. :class:`IngestPool` starts worker processes that only decode: a large
request is cut into shares of :data:`SHARE` spans dealt round-robin to the workers, each worker sends
back the store rows of each share as soon as it has them, and the server inserts every share as it
arrives, in one transaction per request, while the workers decode the next. The request is answered
once the transaction is committed, as in a single process.

Small requests, and every request once a worker has failed, are decoded in the server's process;
writes are idempotent (``INSERT OR REPLACE``), so re-ingesting a request that was half written loses
nothing. What workers count in :mod:`llmobs.selfstats` is added to the server's counters.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import suppress
from multiprocessing.connection import Connection, wait
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from llmobs import config, selfstats
from llmobs.serve import otlp
from llmobs.serve.ingest import Ingestor, Result

#: Spans per share: small enough that writing starts early, large enough for an efficient transaction.
SHARE = 128
#: How long a worker may take to decode a share before the pool is given up.
REPLY_TIMEOUT_S = 120.0
_START_TIMEOUT_S = 120.0


def default_workers() -> int:
    """Decoding a span costs a little more than writing it, so one worker keeps the writer busy; with more
    cores a second one keeps it busy however the decoding cost varies. None on one core."""
    cores = os.cpu_count() or 1
    return 0 if cores < 2 else 1 if cores == 2 else 2


class IngestPool:
    """Ingests requests through ``ingestor`` (this process), large ones decoded by ``workers`` processes."""

    def __init__(self, ingestor: Ingestor, settings: config.Settings | None = None, workers: int = 0) -> None:
        self.ingestor = ingestor
        self._workers: list[_Worker] = []
        self._dispatch = threading.Lock()
        self._broken = False
        if workers > 0:
            context = multiprocessing.get_context("spawn")  # no fork of a threaded server
            self._workers = [_Worker(context, settings or config.current()) for _ in range(workers)]
            try:  # started together, waited for together: ready to ingest when the server says it listens
                for worker in self._workers:
                    worker.wait_ready()
            except Exception as exc:
                self._give_up(exc)

    @property
    def workers(self) -> int:
        """Worker processes in use (0 once the pool has been given up)."""
        return 0 if self._broken else len(self._workers)

    def ingest(self, request: ExportTraceServiceRequest, body: bytes, encoding: str) -> Result:
        """Store ``request`` (parsed from ``body``, in ``encoding``); answers once its spans are committed."""
        spans = otlp.span_count(request) if self._workers and not self._broken else 0
        if spans > SHARE:
            with self._dispatch:
                result = None if self._broken else self._ingest_shared(body, encoding, spans)
            if result is not None:
                return result
        return self.ingestor.ingest(request)

    def shutdown(self) -> None:
        """Stop the workers and this process's ingestor."""
        with self._dispatch:
            for worker in self._workers:
                worker.stop()
            self._workers = []
        self.ingestor.shutdown()

    def _ingest_shared(self, body: bytes, encoding: str, spans: int) -> Result | None:
        shares = [(start, min(start + SHARE, spans)) for start in range(0, spans, SHARE)]
        failures: list[BaseException] = []

        def decoded() -> Iterator[otlp.DecodedRows]:
            """Each share's rows as a worker sends them; stops at the first failure (kept in ``failures``)."""
            try:
                expected: dict[Connection, int] = {}
                for k, worker in enumerate(self._workers):
                    mine = shares[k::len(self._workers)]
                    if mine:
                        worker.send(body, encoding, mine)
                        expected[worker.conn] = len(mine)
                while expected:
                    ready = wait(list(expected), REPLY_TIMEOUT_S)
                    if not ready:
                        raise TimeoutError(f"an ingest worker gave no answer in {REPLY_TIMEOUT_S:.0f} s")
                    for conn in ready:
                        rows, counts = _reply(conn)
                        for kind, n in counts.items():
                            selfstats.count(kind, n)
                        expected[conn] -= 1
                        if not expected[conn]:
                            del expected[conn]
                        yield rows
            except Exception as exc:  # a worker died, hung or answered nonsense
                failures.append(exc)

        # One transaction: each share is inserted as it arrives, while the workers decode the next.
        result = self.ingestor.store_all(decoded())
        if failures:  # decode here from now on; what was committed is written again, idempotently
            self._give_up(failures[0])
            return None
        return result

    def _give_up(self, exc: BaseException) -> None:
        selfstats.failure("serve.worker_failed", exc)
        self._broken = True
        for worker in self._workers:
            worker.stop()


class _Worker:
    """One worker process and the pipe to it."""

    def __init__(self, context: Any, settings: config.Settings) -> None:
        self.conn, child = context.Pipe()
        self._process = context.Process(target=_work, args=(child, settings), name="llmobs-serve-decode",
                                        daemon=True)
        self._process.start()
        child.close()

    def wait_ready(self) -> None:
        if not self.conn.poll(_START_TIMEOUT_S) or self.conn.recv() != "ready":
            raise RuntimeError("an ingest worker did not start")

    def send(self, body: bytes, encoding: str, shares: list[tuple[int, int]]) -> None:
        self.conn.send((encoding, shares))
        self.conn.send_bytes(body)

    def stop(self) -> None:
        with suppress(OSError, ValueError):
            self.conn.send(None)
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        self.conn.close()


def _reply(conn: Connection) -> tuple[otlp.DecodedRows, dict[str, int]]:
    reply = conn.recv()
    if not (isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[0], otlp.DecodedRows)):
        raise RuntimeError(f"an ingest worker failed: {reply!r}"[:300])
    return reply


def _work(conn: Connection, settings: config.Settings) -> None:
    """A worker's life: decode the shares it is sent, one reply per share, until told to stop (None)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server stops its workers
    config.swap(settings)
    ingestor = Ingestor(None, settings)
    conn.send("ready")
    with suppress(EOFError, OSError):  # the server went away
        while (message := conn.recv()) is not None:
            encoding, shares = message
            body = conn.recv_bytes()
            try:
                request = otlp.parse(body, encoding)
            except Exception as exc:  # parsed by the server already: answered, so the pool gives up
                conn.send(f"{type(exc).__name__}: {exc}")
                continue
            for start, stop in shares:
                before = selfstats.snapshot()
                try:
                    reply: Any = (ingestor.rows(request, range(start, stop)), _counted_since(before))
                except Exception as exc:
                    reply = f"{type(exc).__name__}: {exc}"
                conn.send(reply)


def _counted_since(before: dict[str, int]) -> dict[str, int]:
    return {kind: n - before.get(kind, 0) for kind, n in selfstats.snapshot().items() if n != before.get(kind, 0)}
