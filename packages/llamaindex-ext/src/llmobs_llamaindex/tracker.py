"""Runs in flight, keyed by LlamaIndex span id: parenting, streams whose end comes later, cleanup.

Every LlamaIndex span id the integration has seen maps to the run it belongs to — its own run, the run
it was folded into, or (for a nested call on the same component, such as ``query`` → ``_query`` or a chat
implemented by ``complete``) the run it extends. Parents come from LlamaIndex's parent span id; a span
with none is either running inside a stream some run returned (see :mod:`llmobs_llamaindex.streams`) or
a root, parented by a propagated ``traceparent`` or else by the ambient OTel span.

A run whose result is a live stream is *deferred*: it ends when its stream does — an LLM run at its end
event, any other run when its last streaming child ends or its stream is exhausted — and a sweeper
thread ends streams abandoned for longer than the timeout as cancelled. The map is bounded; ids leave it
when their run ends.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from llama_index.core.instrumentation.span import active_span_id
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from llmobs import config, selfstats
from llmobs.recorder import get_recorder
from llmobs_llamaindex import components, events
from llmobs_llamaindex.streams import Streams, finished

INTEGRATION = "llamaindex"
TRACEPARENT_KEY = "llmobs.traceparent"  # our entry in LlamaIndex's propagation context
_SWEEP_INTERVAL_S = 1.0
_PROPAGATOR = TraceContextTextMapPropagator()

#: The traceparent restored by ``restore_propagation_context`` (e.g. in a workflow run's task).
_remote_parent: ContextVar[str | None] = ContextVar("llmobs_llamaindex_remote_parent", default=None)


class Run:
    """One recorded LlamaIndex operation."""

    __slots__ = (
        "aliases",
        "children",
        "deferred",
        "ended",
        "frame_keys",
        "handle",
        "id",
        "instance",
        "last_ns",
        "nested",
        "owner",
        "parent",
        "reason",
        "spec",
        "stream",
        "tool_call_id",
    )

    def __init__(self, span_id: str, spec: components.Spec, handle: Any, parent: Run | None, instance: Any) -> None:
        self.id = span_id
        self.spec = spec
        self.handle = handle
        self.parent = parent
        self.instance = instance
        self.aliases: list[str] = []
        self.children = 0
        self.deferred = False
        self.ended = False
        self.nested = False  # an LLM run wrapping another LLM run: usage and chunks belong to the inner one
        self.owner: str | None = None  # the span id whose LLM events describe the call
        self.reason: str | None = None  # a cancellation reported before the span exits
        self.stream: weakref.ref[Any] | None = None
        self.frame_keys: list[int] = []
        self.last_ns = 0
        self.tool_call_id: str | None = None


def _is_ancestor(run: Run, of: Run) -> bool:
    ancestor = of.parent
    while ancestor is not None:
        if ancestor is run:
            return True
        ancestor = ancestor.parent
    return False


class Tracker:
    """State shared by the span and event handlers; every public method is called fail-open by them."""

    def __init__(self, *, stream_timeout_s: float, max_spans: int) -> None:
        self._ids: dict[str, Run] = {}
        self._deferred: dict[Run, None] = {}
        self._lock = threading.Lock()
        self._classifier = components.Classifier()
        self._streams = Streams()
        self._on_event: dict[type, Callable[[Tracker, Run, Any], None]] = events.by_event_class()
        self._stream_timeout_ns = int(stream_timeout_s * 1e9)
        self._max_spans = max_spans
        self._sweeping = False
        self._closed = threading.Event()

    # --- spans ----------------------------------------------------------------------------------------
    def enter(
        self,
        span_id: str,
        arguments: Mapping[str, Any],
        instance: Any,
        parent_id: str | None,
        tags: Mapping[str, Any] | None,
    ) -> None:
        if span_id in self._ids:  # a span id announced twice: the first stands (a second run would orphan it)
            selfstats.count("llamaindex.duplicate_spans")
            return
        parent = self._ids.get(parent_id) if parent_id is not None else None
        if parent is not None and parent.ended:  # its run was evicted or abandoned meanwhile
            parent = None
        if self._streams:
            # Work done while a returned stream is read belongs to the run that returned it, which LlamaIndex's
            # own parent (the span active where the stream is read: an ancestor, or none) does not know about.
            producer = self._streams.producer()
            if producer is not None and (parent is None or _is_ancestor(parent, producer)):
                parent = producer
        if parent is not None and instance is not None and parent.instance is instance:
            self._remember(span_id, parent, alias=True)  # a nested call on the same component extends its run
            return
        spec = self._classifier.spec(instance, span_id, parent.spec.category if parent is not None else None)
        if spec is None:
            if parent is not None:
                self._remember(span_id, parent)  # folded into the parent until it exits
            return
        if parent is None and not config.current().integration_enabled(INTEGRATION):
            return
        run = self._start(span_id, spec, instance, arguments, tags, parent)
        self._remember(span_id, run, opened=True)

    def _remember(self, span_id: str, run: Run, *, alias: bool = False, opened: bool = False) -> None:
        """Map ``span_id`` to ``run`` (its own id if ``opened``, else an alias or a folded call), keeping at most
        ``max_spans`` ids: the oldest are forgotten first, and a run whose own id goes is ended as evicted."""
        evicted = []
        with self._lock:
            while self._ids and len(self._ids) >= self._max_spans:
                oldest = self._pop_oldest()
                if oldest is not None:
                    evicted.append(oldest)
            if run not in evicted:  # else the run this id would join was the oldest: the id stays unmapped
                self._ids[span_id] = run
                if alias:
                    run.aliases.append(span_id)
                elif opened and run.parent is not None:
                    run.parent.children += 1
        for oldest in evicted:
            self.end(oldest, cancelled=True, reason="evicted")

    def _start(
        self,
        span_id: str,
        spec: components.Spec,
        instance: Any,
        arguments: Mapping[str, Any],
        tags: Mapping[str, Any] | None,
        parent: Run | None,
    ) -> Run:
        start = components.describe(
            spec,
            instance,
            arguments,
            tags,
            parent.tool_call_id if parent else None,
            parent.instance if parent else None,
        )
        handle = get_recorder().start(
            spec.operation,
            start.name,
            parent=parent.handle if parent is not None else _remote_parent.get(),
            provider=spec.provider,
            model=start.model,
            framework=components.FRAMEWORK,
            kind=spec.kind,
            attributes=start.attributes,
            session_id=tags.get("session_id") if tags else None,
            user_id=tags.get("user_id") if tags else None,
        )
        if start.request:
            handle.set_request(**start.request)
        if start.input is not None:
            handle.set_input(value=start.input)
        run = Run(span_id, spec, handle, parent, instance)
        if spec.category == components.STEP:
            run.tool_call_id = components.step_tool_call_id(arguments)
        elif spec.category == components.LLM:
            ancestor = parent
            while ancestor is not None and ancestor.spec.category != components.LLM:
                ancestor = ancestor.parent
            if ancestor is not None:
                ancestor.nested = True
                ancestor.handle.counted_elsewhere()
        return run

    def exit(self, span_id: str, instance: Any, result: Any) -> None:
        run = self._ids.get(span_id)
        if run is None:
            return
        if span_id != run.id:
            if span_id in run.aliases and not run.ended:  # a stream a nested call returned belongs to the run
                self._register_stream(run, result)
            elif self._ids.get(span_id) is run:
                del self._ids[span_id]
            return
        error = components.record_result(run.spec, run.handle, result)
        if error is None and self._register_stream(run, result):
            self._defer(run)
        elif run.reason is not None:
            self.end(run, cancelled=True, reason=run.reason)
        else:
            self.end(run, error=error)

    def drop(self, span_id: str, err: BaseException | None) -> None:
        run = self._ids.get(span_id)
        if run is None:
            return
        if span_id == run.id:
            self.fail(run, err)
        elif span_id not in run.aliases and self._ids.get(span_id) is run:
            del self._ids[span_id]

    def event(self, event: Any) -> None:
        handler = self._on_event.get(type(event))
        if handler is not None:
            run = self._ids.get(event.span_id)
            if run is not None:
                handler(self, run, event)

    # --- ending ---------------------------------------------------------------------------------------
    def end(
        self,
        run: Run,
        *,
        error: BaseException | str | None = None,
        cancelled: bool = False,
        reason: str | None = None,
        end_time_ns: int | None = None,
    ) -> None:
        """End a run; a deferred parent whose last streaming child this was ends with it."""
        while run is not None:
            with self._lock:
                if run.ended:
                    return
                run.ended = True
                ids = self._ids
                if ids.get(run.id) is run:
                    del ids[run.id]
                for alias in run.aliases:
                    if ids.get(alias) is run:
                        del ids[alias]
                for key in run.frame_keys:
                    self._streams.forget(key, run)
                self._deferred.pop(run, None)
                parent = run.parent
                cascade = None
                if parent is not None:
                    parent.children -= 1
                    if run.deferred and parent.deferred and parent.children == 0:
                        cascade = parent
            run.handle.end(error, cancelled=cancelled, reason=reason, end_time_ns=end_time_ns)
            run = cascade

    def fail(self, run: Run, err: BaseException | None) -> None:
        """End a run the way ``err`` says: an error, a cancellation (the recorder tells an interrupt from a
        failure), or success for a workflow's done signal."""
        self.end(run, error=None if err is None or type(err).__name__ == "WorkflowDone" else err)

    def _register_stream(self, run: Run, result: Any) -> bool:
        stream = self._streams.live_stream(result)
        if stream is None:
            return False
        with self._lock:
            if run.ended:
                return False
            key = self._streams.register(stream, run)
            if key is not None:
                run.frame_keys.append(key)
            if run.stream is None:
                run.stream = weakref.ref(stream)
        return True

    def _defer(self, run: Run) -> None:
        run.last_ns = time.time_ns()
        with self._lock:
            run.deferred = True
            self._deferred[run] = None
            # After a dispatcher shutdown, which ended every open run and stopped the sweeper, the handlers stay
            # registered: a new deferred run means the tracker is in use again, so sweeping resumes.
            self._closed.clear()
            start = not self._sweeping
            self._sweeping = True
        if start:
            threading.Thread(target=self._sweep_loop, name="llmobs-llamaindex-sweeper", daemon=True).start()

    def _pop_oldest(self) -> Run | None:
        """Make room (lock held): forget the oldest id; returns its run if it opened one, to be ended."""
        oldest_id, run = next(iter(self._ids.items()))
        del self._ids[oldest_id]
        selfstats.count("llamaindex.evicted_spans")
        return run if oldest_id == run.id and not run.ended else None

    # --- abandoned streams ------------------------------------------------------------------------------
    def _sweep_loop(self) -> None:
        while not self._closed.wait(_SWEEP_INTERVAL_S):
            try:
                self.sweep()
            except Exception as exc:
                selfstats.failure("llamaindex.sweep_failed", exc)
            with self._lock:
                if not self._deferred:
                    self._sweeping = False
                    return
        with self._lock:
            self._sweeping = False

    def sweep(self) -> None:
        """End deferred runs whose stream finished, was dropped, or has been idle past the timeout."""
        now_ns = time.time_ns()
        with self._lock:
            waiting = [run for run in self._deferred if run.children == 0]
        for run in waiting:
            state = finished(run.stream)
            if state:
                self.end(run)
            elif state is None or now_ns - run.last_ns > self._stream_timeout_ns:
                selfstats.count("llamaindex.abandoned_streams")
                self.end(run, cancelled=True, reason="stream abandoned", end_time_ns=run.last_ns)

    def close(self, reason: str) -> None:
        """End every run still open (uninstrument, dispatcher shutdown) and stop the sweeper."""
        self._closed.set()
        with self._lock:
            runs = {run.id: run for run in self._ids.values()}
        for run in runs.values():
            self.end(run, cancelled=True, reason=reason)

    # --- propagation ------------------------------------------------------------------------------------
    def capture(self) -> dict[str, Any]:
        """The W3C traceparent of the current LlamaIndex run, else of the ambient OTel span."""
        run = self._ids.get(active_span_id.get() or "")
        if run is not None:
            traceparent = run.handle.traceparent
        elif trace.get_current_span().get_span_context().is_valid:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            traceparent = carrier.get("traceparent", "")
        else:
            traceparent = _remote_parent.get() or ""
        return {TRACEPARENT_KEY: traceparent} if traceparent else {}

    @staticmethod
    def restore(context: Mapping[str, Any]) -> None:
        """Roots started in the current context from now on continue the captured trace."""
        traceparent = context.get(TRACEPARENT_KEY) if context else None
        if isinstance(traceparent, str) and traceparent:
            _remote_parent.set(traceparent)
