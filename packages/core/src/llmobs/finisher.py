"""Finishing calls several at a time.

What a traced call does once its answer is in — reading the answer, rendering content, recording metrics,
handing the span to the span processors — costs most for being cold: run once per call between the
application's own work, its code and data are fetched afresh every time. Queued, and run a batch at a time,
the same work runs warm for all but the first of a batch.

Work is queued by the thread that ends a call; the thread whose work makes :data:`BATCH` pieces runs them
there and then (on the core whose cache holds what they read — on another thread, every object both
threads touch would move between cores with its reference count), and a watch thread runs what has waited
:data:`DELAY_S` without a batch filling, so that a quiet application's spans are not held. :func:`flush`
runs what is queued in the calling thread (``llmobs.flush()``, ``llmobs.shutdown()`` and exit call it),
after any batch in progress. With the queue full, or the ``finish_in_background`` setting off, work runs
at once in the caller. A forked child drops its parent's queue: the parent finishes that work.

Spans keep their order of ending: on a tracer provider that :func:`watch` has joined, a span that ends
in a trace with work queued first has that work finished (a parent's span processors see its children end
before it, as some need: Promptflow's takes a child call's TTFT then, tail sampling decides a trace when its
root ends), and a flush of the provider finishes it too. Spans of other traces end without waiting, so a
busy application's unrelated spans do not cut every batch short.

Only work that may run later belongs here: work over data the recorder owns (bytes read off the wire, what
a parser made of them), never over the application's objects, which it may change meanwhile.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor

from llmobs import config, selfstats

#: Pieces of work that start a batch at once, and how long the first may wait for the others.
BATCH = 16
DELAY_S = 0.05
MAX_QUEUED = 4096
_IDLE_WAIT_S = 1.0  # the idle watch thread looks at the queue this often, whatever wake-up it missed


class Finisher:
    """A queue of work (callables whose failures are counted), run a batch at a time by the thread whose work
    fills a batch, or by a watch thread once the oldest piece has waited its delay."""

    def __init__(self, batch: int = BATCH, delay_s: float = DELAY_S, max_queued: int = MAX_QUEUED) -> None:
        self.batch = batch
        self.delay_s = delay_s
        self.max_queued = max_queued
        self._exit_hook = False
        self._reset()

    def _reset(self) -> None:
        # (when queued, work, trace id of the span the work ends or None: any), oldest first
        self._queue: deque[tuple[float, Callable[[], object], int | None]] = deque()
        # Reentrant: a finalizer (a response stream garbage-collected) may queue work while its thread holds them.
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._running = threading.RLock()  # held while work runs: a flush waits for the batch in progress
        self._runner: int | None = None  # the thread running work now
        self._thread: threading.Thread | None = None
        self._watching = False  # the watch thread is awake (or about to be): no need to wake it

    def submit(self, work: Callable[[], object], trace_id: int | None = None, *, finalizer: bool = False) -> None:
        """Queue ``work``, which ends a span of ``trace_id`` (None: it may end any); run the queue here if it
        makes a whole batch (now, alone, when queuing is off or full). ``finalizer``: called from a finalizer
        (``__del__``), which the garbage collector may run anywhere, even inside a span processor's lock:
        never the batch there, the watch thread runs it."""
        queue = self._queue
        queued = len(queue)
        full = queued >= self.max_queued
        if full or not config.current().finish_in_background:
            if full:
                selfstats.count("finisher.queue_full")
            _run(work)
            return
        queue.append((time.monotonic(), work, trace_id))
        if queued + 1 >= self.batch and not finalizer:
            self._drain()  # on this thread, whose cache holds what the batch's work reads
        elif (queued == 0 or finalizer) and not self._watching:
            self._watch()

    def flush(self) -> None:
        """Run everything queued, in this thread, after the batch in progress; never raises."""
        self._drain()

    def before_span_ends(self, trace_id: int | None = None) -> None:
        """A span of ``trace_id`` (None: unknown) is ending in this thread: finish first what is queued for its
        trace, and wait for a batch running elsewhere — unless this thread runs it."""
        if self._runner == threading.get_ident():  # a span ending in the batch this thread runs
            return
        queued = list(self._queue)  # before the runner: a batch marks itself running before it takes any work
        if self._runner is not None:
            self._drain()  # wait for the batch running elsewhere, then finish what is left
            return
        if queued and (trace_id is None or any(t is None or t == trace_id for _, _, t in queued)):
            self._drain()  # the whole queue: what it holds keeps its order of ending

    def queued(self) -> int:
        return len(self._queue)

    def _watch(self) -> None:
        """Wake the watch thread (started on first use). A wake-up missed in a race costs at most a second."""
        try:
            with self._lock:
                self._watching = True
                if self._thread is None:
                    if not self._exit_hook:
                        # Registered now, after the span processors' own exit handlers: it runs before them.
                        atexit.register(self.flush)
                        self._exit_hook = True
                    thread = threading.Thread(target=self._loop, name="llmobs-finisher", daemon=True)
                    thread.start()
                    self._thread = thread
                self._wake.notify()
        except RuntimeError:  # no new thread at interpreter exit: run the queue now
            self._drain()

    def _loop(self) -> None:
        """Sleep while nothing is queued; else run the queue once its oldest piece has waited the delay, and
        look again a delay later — so that under steady traffic nothing needs to wake this thread (a wake-up
        would take the GIL from the application's thread every batch or so)."""
        while True:
            try:
                self._watch_once()
            except Exception as exc:  # never expected; if it happens, this thread keeps watching
                selfstats.failure("finisher.watch_failed", exc)
                time.sleep(self.delay_s)

    def _watch_once(self) -> None:
        queue, lock = self._queue, self._lock
        with lock:
            if not queue:
                self._watching = False
                while not queue:
                    self._wake.wait(_IDLE_WAIT_S)
                self._watching = True
        while True:
            try:
                left = queue[0][0] + self.delay_s - time.monotonic()
            except IndexError:  # run meanwhile by a thread that filled a batch
                break
            if left > 0:
                time.sleep(left)
            else:
                self._drain()
        time.sleep(self.delay_s)

    def _drain(self) -> None:
        queue = self._queue
        with self._running:
            self._runner = threading.get_ident()
            try:
                for _ in range(len(queue)):  # what is queued now; later work waits for the next batch
                    try:
                        _, work, _ = queue.popleft()
                    except IndexError:
                        return
                    _run(work)
            finally:
                self._runner = None


def _run(work: Callable[[], object]) -> None:
    try:
        work()
    except Exception as exc:
        selfstats.failure("finisher.work_failed", exc)


class _FinishFirst(SpanProcessor):
    """Joined to a provider's span processors: a span ending there, or a flush of them, finishes the queue first."""

    def __init__(self, finisher: Finisher, processors: Any) -> None:
        self._finisher = finisher
        self._processors = weakref.ref(processors)
        self._flushing = threading.local()

    def _on_ending(self, span: Any) -> None:
        context = getattr(span, "context", None)
        self._finisher.before_span_ends(getattr(context, "trace_id", None))

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Finish the queue; then, unless this one is first (the provider flushes the others next), flush the
        provider's processors again: they came before it."""
        if not self._finisher.queued() or getattr(self._flushing, "active", False):
            return True
        self._finisher.flush()
        processors = self._processors()
        if processors is None or getattr(processors, "_span_processors", (None,))[:1] == (self,):
            return True
        self._flushing.active = True
        try:
            return bool(processors.force_flush(timeout_millis))
        finally:
            self._flushing.active = False

    def shutdown(self) -> None:
        self._finisher.flush()


_default = Finisher()
os.register_at_fork(after_in_child=_default._reset)
_watched: weakref.WeakSet[Any] = weakref.WeakSet()
_watch_lock = threading.Lock()


def watch(processors: Any) -> bool:
    """Join a tracer provider's span processors (the SDK's ``SynchronousMultiSpanProcessor`` or
    ``ConcurrentMultiSpanProcessor``, as a tracer's ``span_processor``) so that spans there keep their order of
    ending; whether work for spans there may be queued (False for a provider this cannot join)."""
    if not callable(getattr(processors, "add_span_processor", None)) or not callable(
        getattr(processors, "_on_ending", None)
    ):
        return False
    try:
        with _watch_lock:
            if processors not in _watched:
                joined = _FinishFirst(_default, processors)
                processors.add_span_processor(joined)
                _put_first(processors, joined)
                _watched.add(processors)
    except Exception as exc:
        selfstats.failure("finisher.join_failed", exc)
        return False
    return True


def _put_first(processors: Any, joined: _FinishFirst) -> None:
    """Move ``joined`` ahead of the processors added before it: a provider shuts its processors down (and
    flushes them) in order, so the queue is finished while the application's processors still take spans —
    an application that shuts its own provider down loses nothing queued. The SDK has no API for the order; on
    one whose multi-processor is not laid out as expected, ``joined`` stays last and ``llmobs.flush()`` before
    the provider's shutdown does the same."""
    lock = getattr(processors, "_lock", None)
    if lock is None:
        return
    with lock:
        current = getattr(processors, "_span_processors", None)
        if isinstance(current, tuple) and joined in current:
            processors._span_processors = (joined, *(p for p in current if p is not joined))


def submit(work: Callable[[], object], trace_id: int | None = None, *, finalizer: bool = False) -> None:
    """Queue ``work``, which ends a span of ``trace_id`` (None: any), to run with other calls' (see the module's
    docstring and :meth:`Finisher.submit`)."""
    _default.submit(work, trace_id, finalizer=finalizer)


def flush() -> None:
    """Run all queued work now, in this thread."""
    _default.flush()


def run(work: Callable[[], object]) -> None:
    """Run ``work`` now, its failure counted as queued work's is."""
    _run(work)
