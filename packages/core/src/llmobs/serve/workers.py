"""Ingest on worker processes: each request's spans are decoded and stored by several processes at once.

Reading a span out of the protobuf (attribute values into Python objects, normalisation, JSON) holds the
GIL longer than SQLite takes to insert the row, so a receiver in one process keeps one core busy and
leaves the others idle; threads cannot share that work. :class:`IngestWorkers` sends every request to
``n`` worker processes, which all parse it and then take runs of :data:`CHUNK` spans, one at a time, from
a counter the receiver keeps for the request, so a worker on a slower or busier core simply takes fewer.

Each worker commits what it has decoded whenever SQLite's write lock is free at that moment and goes on
decoding otherwise; when the spans run out it commits the rest, waiting for the lock. One worker's
commit thus overlaps the others' decoding instead of all of them queueing for the lock at the end. The
answer still waits until every worker has committed, so a 200 means stored, as with one process.

A request takes every worker that is idle when it arrives (waiting for one if none is) and gives each
back as soon as that worker has answered: with several applications exporting at once, the next request
starts on the first worker done with the last one while the others finish it.

A worker that dies or stops answering fails the request it was on (the receiver answers 503, the client
retries; re-sent spans replace themselves) and is started again for the next one; one that cannot be
started leaves the others to take all the spans. Worker processes are started with ``spawn`` (the
receiver has threads; ``fork`` would copy their locks) and build their
:class:`~llmobs.serve.ingest.Ingestor` from the receiver's settings; plugins load from entry points, as in
any llmobs process. What a worker counts in :mod:`llmobs.selfstats` is added to the receiver's counters.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from llmobs import config, selfstats
from llmobs.serve import otlp
from llmobs.serve.ingest import Ingestor, Result

#: Spans a worker takes at a time: small enough to even out unequal cores, large enough that asking for
#: the next run (a round trip to the receiver, made while the run before is decoded) is rare next to
#: decoding one (~2 ms).
CHUNK = 64
#: How long a worker may take to start (imports, store) and to finish its part of one request.
START_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 120.0
#: How long stopping workers waits for them to exit by themselves before killing them.
_STOP_GRACE_S = 10.0
_FAILED = Result(0, 0, "", stored=False)
_NEXT = "next"  # a worker asking for its next run of spans
#: Rows a worker gathers before it tries to commit: fewer, larger transactions (each rewrites the index pages
#: it touches), while still committing as it goes.
_COMMIT_AT = 2 * CHUNK


class WorkerError(RuntimeError):
    """The worker processes could not be started."""


class IngestWorkers:
    """``count`` worker processes (at least 2) sharing the decoding and storing of every request."""

    def __init__(self, path: Path | str, settings: config.Settings, count: int, *,
                 request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        if count < 2:
            raise ValueError("a worker pool needs at least 2 processes; with 1, ingest in the receiver itself")
        self.path = Path(path)
        self.settings = settings
        self.request_timeout_s = request_timeout_s
        self.restarts = 0  # workers started again after one died or timed out
        self._context = multiprocessing.get_context("spawn")
        self._free = threading.Condition()  # guards _idle, _closed, restarts; wakes requests waiting for a worker
        self._closed = False
        self._workers: list[_Worker | None] = [None] * count
        self._idle = set(range(count))  # workers no request is using
        try:
            started = []
            for index in range(count):  # all started before any is waited for: they start in parallel
                started.append(_Worker(self._context, self.path, settings))
                self._workers[index] = started[-1]
            for worker in started:
                worker.wait_ready()
        except BaseException:
            self.shutdown()
            raise

    @property
    def pids(self) -> list[int | None]:
        """Process ids of the workers (None where one is to be started again)."""
        return [w.process.pid if w is not None else None for w in self._workers]

    def receive(self, body: bytes, encoding: str) -> Result:
        """Store the spans of a request body and wait until every worker has committed its part; raises
        :class:`otlp.PayloadError` if it is not an OTLP trace export request.

        A protobuf body goes to the workers as received (each parses it); a JSON one is parsed here first."""
        payload = body if encoding == otlp.PROTOBUF else otlp.parse(body, encoding).SerializeToString()
        if not payload:  # the empty request (no spans); an empty body tells a worker to stop
            return Result(0, 0, "", stored=True)
        with self._free:
            while not self._idle and not self._closed:
                self._free.wait()
            if self._closed:
                return _FAILED
            mine = sorted(self._idle)
            self._idle.clear()
        working: dict[Connection, int] = {}
        try:
            for index in mine:
                worker = self._worker(index)
                if worker is not None:
                    worker.send_body(payload)
                    working[worker.conn] = index
                else:
                    self._release(index)
            return self._serve_chunks(working) if working else _FAILED
        finally:
            for index in working.values():  # those that did not answer (an exception on the way)
                self._release(index)

    def shutdown(self, timeout: float = REQUEST_TIMEOUT_S) -> None:
        """Stop every worker after the request it is on; each closes its store connection."""
        deadline = time.monotonic() + timeout
        with self._free:
            self._closed = True
            self._free.notify_all()
            while len(self._idle) < len(self._workers) and time.monotonic() < deadline:
                self._free.wait(deadline - time.monotonic())
            workers, self._workers = self._workers, [None] * len(self._workers)
        running = [worker for worker in workers if worker is not None]
        for worker in running:
            worker.send_body(b"")  # an empty body: stop
        # All are told first and given one shared grace period: each closes its store (a checkpoint, fsyncs),
        # which a busy disk can slow, and stopping them one after the other would add those waits up.
        deadline = time.monotonic() + _STOP_GRACE_S
        for worker in running:
            worker.stop(timeout=max(deadline - time.monotonic(), 0.0))

    def _release(self, index: int) -> None:
        with self._free:
            self._idle.add(index)
            self._free.notify()

    def _serve_chunks(self, working: dict[Connection, int]) -> Result:
        """Hand out run numbers to the workers of one request until each has answered with its result."""
        results: list[Result] = []
        malformed = None
        next_chunk = 0
        deadline = time.monotonic() + self.request_timeout_s
        while working:
            ready = wait(list(working), timeout=max(0.0, deadline - time.monotonic()))
            if not ready:  # the rest are stuck: their runs are lost, the client will retry
                for conn, index in list(working.items()):
                    del working[conn]
                    self._discard(index)
                results.append(_FAILED)
                break
            for conn in ready:
                index = working[conn]
                try:
                    message = conn.recv()
                    if message == _NEXT:
                        conn.send(next_chunk)
                        next_chunk += 1
                        continue
                except (EOFError, OSError):  # it died, perhaps holding runs nobody else will store
                    del working[conn]
                    self._discard(index)
                    results.append(_FAILED)
                    continue
                del working[conn]
                self._release(index)  # free for the next request while the others finish this one
                result, counted, problem = message
                for kind, n in counted.items():
                    selfstats.count(kind, n)
                malformed = malformed or problem
                results.append(result)
        if malformed is not None:
            raise otlp.PayloadError(malformed)
        return Result(
            accepted=sum(r.accepted for r in results),
            rejected=sum(r.rejected for r in results),
            reason=next((r.reason for r in results if r.reason), ""),
            stored=all(r.stored for r in results),
        )

    def _worker(self, index: int) -> _Worker | None:
        worker = self._workers[index]
        if worker is None or not worker.process.is_alive():
            if worker is not None:
                worker.stop(timeout=0)
            try:
                worker = _Worker(self._context, self.path, self.settings)
                worker.wait_ready()
            except Exception as exc:
                selfstats.failure("serve.worker_start_failed", exc)
                self._workers[index] = None
                return None
            self._workers[index] = worker
            with self._free:
                self.restarts += 1
        return worker

    def _discard(self, index: int) -> None:
        """Stop a worker that failed its request; it is started again when next needed."""
        worker = self._workers[index]
        self._workers[index] = None
        if worker is not None:
            selfstats.failure("serve.worker_failed")
            worker.stop(timeout=0)
        self._release(index)


class _Worker:
    """One worker process and the receiver's end of its pipe.

    Request bodies go out through a thread of their own: a body is larger than the pipe's buffer, so sending
    one to a worker that has stopped reading would block; the request waiting on that worker times out
    instead, and stopping the worker ends the send."""

    def __init__(self, context: Any, path: Path, settings: config.Settings) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_work, args=(child, str(path), settings), name="llmobs-serve-worker",
                                       daemon=True)
        self.process.start()
        child.close()
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_bodies, name="llmobs-serve-worker-send", daemon=True)
        self._sender.start()

    def wait_ready(self) -> None:
        answer = None
        try:
            if self.conn.poll(START_TIMEOUT_S):
                answer = self.conn.recv()
        except (EOFError, OSError):
            pass
        if answer is None or answer[0] != "ready":
            problem = answer[1] if answer is not None else "it exited or did not answer"
            self.stop(timeout=0)
            raise WorkerError(f"an ingest worker process could not start: {problem}")

    def send_body(self, payload: bytes) -> None:
        """Queue a request body; the worker answers through :attr:`conn` (EOF there if it died meanwhile)."""
        self._outbox.put(payload)

    def stop(self, timeout: float = _STOP_GRACE_S) -> None:
        self._outbox.put(None)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self._sender.join(5)  # a send in progress failed when the process went
        self.conn.close()

    def _send_bodies(self) -> None:
        while (payload := self._outbox.get()) is not None:
            try:
                self.conn.send_bytes(payload)
            except (OSError, ValueError):
                return


def _work(conn: Connection, path: str, settings: config.Settings) -> None:
    """A worker's life: build the ingestor, then store its part of each request body it is sent and answer
    with the result, until sent an empty body or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the terminal's whole group: the receiver stops us
    try:
        config.swap(settings)
        ingestor = Ingestor.for_store(path, settings)
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    counted = selfstats.snapshot()
    try:
        while True:
            try:
                payload = conn.recv_bytes()
            except (EOFError, OSError):  # the receiver is gone
                return
            if not payload:  # told to stop
                return
            problem = None
            try:
                result = _store_runs(conn, ingestor, otlp.parse(payload, otlp.PROTOBUF))
            except otlp.PayloadError as exc:
                result, problem = _FAILED, str(exc)
            except (EOFError, OSError):
                return
            except Exception as exc:  # never seen by the client as anything but a failed store
                selfstats.failure("serve.worker_request_failed", exc)
                result = _FAILED
            now = selfstats.snapshot()
            new = {kind: n - counted.get(kind, 0) for kind, n in now.items() if n != counted.get(kind, 0)}
            conn.send((result, new, problem))
            counted = now
    finally:
        ingestor.shutdown()


def _store_runs(conn: Connection, ingestor: Ingestor, request: Any) -> Result:
    """Decode runs of :data:`CHUNK` spans as the receiver hands them out, asking for the next run before
    decoding the current one (the answer is there when needed); commit when the lock is free, at the end
    whatever is left."""
    total = otlp.span_count(request)
    exporter = ingestor.exporter
    pending: list[tuple[Any, ...]] = []
    accepted = rejected = failed = 0
    reason = ""
    stored = True
    conn.send(_NEXT)
    start = conn.recv() * CHUNK
    while start < total:
        conn.send(_NEXT)
        part = ingestor.rows(request, (start, min(start + CHUNK, total)))
        accepted += len(part.rows)
        rejected += part.rejected
        failed += part.failed
        reason = reason or part.reason
        pending.extend(part.rows)
        if len(pending) >= _COMMIT_AT:
            done = exporter.write_rows(pending, wait=False)
            if done is not None:
                stored = stored and done
                pending = []
        start = conn.recv() * CHUNK
    if pending:
        stored = exporter.write_rows(pending) and stored
    return Result(accepted + failed, rejected, reason, stored and not failed)
