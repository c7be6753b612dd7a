"""Ingest on every core: worker processes decode and write parts of each large OTLP request.

Decoding a span from protobuf costs about as much as writing it to SQLite, and both hold the GIL, so a
single process ingests on one core. :class:`IngestPool` starts worker processes, each with its own store
exporter on the same file. A large request is cut into shares of :data:`SHARE` spans dealt round-robin
to the workers; a worker decodes a share, then writes it while holding a lock shared by the workers
(so no writer ever waits in SQLite's sleeping busy handler), then decodes its next share while another
worker writes. The request is answered once every share is committed, as in a single process.

Small requests, and every request once a worker has failed, are ingested in this process: writes are
idempotent (``INSERT OR REPLACE``), so re-ingesting a request that a worker left half done loses nothing.
What workers count in :mod:`llmobs.selfstats` is added to this process's counters.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from contextlib import suppress
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from llmobs import config, selfstats
from llmobs.serve import otlp
from llmobs.serve.ingest import Ingestor, Result

#: Spans per share: small enough that the last share's write overlaps little with nothing, large enough
#: that each write is one efficient transaction.
SHARE = 128
#: How long a worker may take over its shares of one request before the pool is given up.
REPLY_TIMEOUT_S = 120.0
_START_TIMEOUT_S = 120.0


def default_workers() -> int:
    """Two workers where there are at least two cores (more shares in flight than cores only adds
    contention for SQLite's single writer); none on one core."""
    return 2 if (os.cpu_count() or 1) >= 2 else 0


class IngestPool:
    """Ingests requests through ``ingestor`` (this process) or, when large, through ``workers`` processes."""

    def __init__(self, ingestor: Ingestor, path: Path | None = None, settings: config.Settings | None = None,
                 workers: int = 0) -> None:
        self.ingestor = ingestor
        self._workers: list[_Worker] = []
        self._dispatch = threading.Lock()
        self._broken = False
        if workers > 0:
            if path is None or settings is None:
                raise ValueError("worker processes need the store path and the settings")
            context = multiprocessing.get_context("spawn")  # no fork of a threaded server
            # Kept: the lock's semaphore is unlinked when this object goes, maybe before a worker opened it.
            self._write_lock = context.Lock()
            self._workers = [_Worker(context, path, settings, self._write_lock) for _ in range(workers)]
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
                result = None if self._broken else self._ingest_in_workers(body, encoding, spans)
            if result is not None:
                return result
        return self.ingestor.ingest(request)

    def shutdown(self) -> None:
        """Stop the workers (each closes its exporter) and this process's ingestor."""
        with self._dispatch:
            for worker in self._workers:
                worker.stop()
            self._workers = []
        self.ingestor.shutdown()

    def _ingest_in_workers(self, body: bytes, encoding: str, spans: int) -> Result | None:
        shares = [range(start, min(start + SHARE, spans)) for start in range(0, spans, SHARE)]
        count = len(self._workers)
        try:
            busy = []
            for k, worker in enumerate(self._workers):
                mine = shares[k::count]
                if mine:
                    worker.send(body, encoding, mine)
                    busy.append(worker)
            replies = [worker.reply() for worker in busy]
        except Exception as exc:  # a worker died, hung or answered nonsense: ingest here from now on
            self._give_up(exc)
            return None
        accepted = rejected = 0
        reason = ""
        stored = True
        for reply, counts in replies:
            accepted += reply.accepted
            rejected += reply.rejected
            reason = reason or reply.reason
            stored = stored and reply.stored
            for kind, n in counts.items():
                selfstats.count(kind, n)
        return Result(accepted, rejected, reason, stored)


    def _give_up(self, exc: BaseException) -> None:
        selfstats.failure("serve.worker_failed", exc)
        self._broken = True
        for worker in self._workers:
            worker.stop()


class _Worker:
    """One worker process and the pipe to it."""

    def __init__(self, context: Any, path: Path, settings: config.Settings, write_lock: Any) -> None:
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_work, args=(child, path, settings, write_lock),
                                        name="llmobs-serve-ingest", daemon=True)
        self._process.start()
        child.close()

    def wait_ready(self) -> None:
        if not self._conn.poll(_START_TIMEOUT_S) or self._conn.recv() != "ready":
            raise RuntimeError("an ingest worker did not start")

    def send(self, body: bytes, encoding: str, shares: list[range]) -> None:
        self._conn.send((encoding, [(share.start, share.stop) for share in shares]))
        self._conn.send_bytes(body)

    def reply(self) -> tuple[Result, dict[str, int]]:
        if not self._conn.poll(REPLY_TIMEOUT_S):
            raise TimeoutError(f"an ingest worker gave no answer in {REPLY_TIMEOUT_S:.0f} s")
        reply = self._conn.recv()
        if not (isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[0], Result)):
            raise RuntimeError(f"an ingest worker failed: {reply!r}"[:300])
        return reply

    def stop(self) -> None:
        with suppress(OSError, ValueError):
            self._conn.send(None)
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        self._conn.close()


def _work(conn: Connection, path: Path, settings: config.Settings, write_lock: Any) -> None:
    """A worker's life: decode and write the shares it is sent until told to stop (None)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server stops its workers
    config.swap(settings)
    ingestor = Ingestor.for_store(path, settings)
    conn.send("ready")
    try:
        while True:
            message = conn.recv()
            if message is None:
                return
            encoding, shares = message
            body = conn.recv_bytes()
            before = selfstats.snapshot()
            try:
                reply: Any = (_ingest(ingestor, body, encoding, shares, write_lock), _counted_since(before))
            except Exception as exc:  # answered, so the pool gives up instead of waiting
                reply = f"{type(exc).__name__}: {exc}"
            conn.send(reply)
    except (EOFError, OSError):  # the server went away
        return
    finally:
        ingestor.shutdown()


def _ingest(ingestor: Ingestor, body: bytes, encoding: str, shares: list[tuple[int, int]],
            write_lock: Any) -> Result:
    request = otlp.parse(body, encoding)
    accepted = rejected = 0
    reason = ""
    stored = True
    for start, stop in shares:
        result = ingestor.ingest(request, range(start, stop), write_lock)
        accepted += result.accepted
        rejected += result.rejected
        reason = reason or result.reason
        stored = stored and result.stored
    return Result(accepted, rejected, reason, stored)


def _counted_since(before: dict[str, int]) -> dict[str, int]:
    return {kind: n - before.get(kind, 0) for kind, n in selfstats.snapshot().items() if n != before.get(kind, 0)}
