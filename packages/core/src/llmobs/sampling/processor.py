"""The sampling span processor: buffer each trace until its local root ends, then keep it or drop it.

Every span is recorded (the recorder's GenAI metrics cover 100% of calls before this point); this
processor decides what reaches the exporters behind it. At the end of a trace's local root (a span with
no parent or a remote one) the whole local trace is visible, so the decision can use its outcome:

1. **Promotion** — an error, a slow call, a slow first token, many tokens, a high cost, a truncated or
   filtered answer, an empty output, a low evaluation score, a forced keep (code, ``llmobs.force``
   baggage from a request), or a plugin's vote: kept, adjusted count 1.
2. **Head probability** — the trace is kept if its trace id's W3C randomness (the low 56 bits) falls
   under a probability: the remote parent's decision, else the first matching rule's ratio, else the
   base ratio raised by a per-key floor (rare keys are never sampled away) and lowered by a per-key and a
   global rate cap. Caps lower the probability rather than refuse traces (no token bucket), so adjusted
   counts stay exact.
   Because the test is on the trace id, every process with the same probability keeps the same traces.
   A kept trace carries adjusted count 1/p, so re-weighted totals stay right.

Kept spans are forwarded with ``llmobs.sampling.reason`` and ``llmobs.sampling.adjusted_count``. The
buffer is bounded by traces, spans and age; a trace evicted or too old is decided with the spans it has
and marked ``partial``. Spans ending after their trace was decided follow that decision.
"""

from __future__ import annotations

import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import baggage
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from llmobs import config, plugins, selfstats, span_copy
from llmobs import semconv as sc
from llmobs.sampling.policy import DEFAULT_RATIO, Promote, SamplingPolicy, key_of

_RANDOM_BITS = 56
_RANDOM_MASK = (1 << _RANDOM_BITS) - 1
_DECIDED_CAP = 100_000  # remembered decisions, for spans ending after their trace was decided
_KEYS_CAP = 10_000  # distinct floor keys; beyond, keys share one bucket
FORCE_BAGGAGE = "llmobs.force"
_UNDECIDED = object()
_process = [0]  # bumped in a forked child: threads (the sweeper) don't survive fork


def _forked() -> None:
    _process[0] += 1


os.register_at_fork(after_in_child=_forked)


def keeps(trace_id: int, probability: float) -> bool:
    """Consistent decision: the same trace id and probability give the same answer in every process."""
    return (trace_id & _RANDOM_MASK) < probability * (1 << _RANDOM_BITS)


class _Window:
    """Traces seen in a sliding window, estimated from the current and the previous fixed window."""

    __slots__ = ("current", "previous", "start")

    def __init__(self, now: float) -> None:
        self.start, self.current, self.previous = now, 0, 0

    def add(self, now: float, width: float) -> float:
        """Count one trace; return the estimated number in the last ``width`` seconds, this one included."""
        elapsed = now - self.start
        if elapsed >= width:
            self.previous = self.current if elapsed < 2 * width else 0
            self.current = 0
            self.start = now - (elapsed % width)
            elapsed = now - self.start
        self.current += 1
        return self.current + self.previous * max(0.0, 1 - elapsed / width)


class _Rates:
    """Per-key and global trace rates for floors and the global cap."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[tuple[Any, ...], _Window] = {}
        self._all = _Window(clock())

    def observe(self, key: tuple[Any, ...], floor_window_s: float) -> tuple[float, float]:
        """(traces of this key in the floor window, traces of all keys in the last minute)."""
        now = self._clock()
        with self._lock:
            window = self._keys.get(key)
            if window is None:
                if len(self._keys) >= _KEYS_CAP:
                    key = ("…",)
                    window = self._keys.setdefault(key, _Window(now))
                else:
                    window = self._keys[key] = _Window(now)
            return window.add(now, floor_window_s), self._all.add(now, 60.0)


class _Trace:
    __slots__ = ("born", "spans")

    def __init__(self, born: float) -> None:
        self.born = born
        self.spans: list[ReadableSpan] = []


class SamplingProcessor(SpanProcessor):
    """Decides per local trace what reaches ``downstream`` (the exporters' batch processors)."""

    def __init__(
        self,
        downstream: Sequence[SpanProcessor],
        *,
        policy: Callable[[], SamplingPolicy] | None = None,
        clock: Callable[[], float] = time.monotonic,
        auto_enabled: bool = True,
    ) -> None:
        self._downstream = list(downstream)
        self._auto_enabled = auto_enabled
        self._policy = policy or (lambda: config.current().sampling)
        self._clock = clock
        self._lock = threading.Lock()
        self._traces: dict[int, _Trace] = {}  # insertion order: oldest first
        self._spans = 0
        self._decided: dict[int, tuple[str, float] | None] = {}  # insertion order: oldest first
        self._rates = _Rates(clock)
        self._stop = threading.Event()
        self._sweeper_process: int | None = None  # the process generation the sweeper runs in
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (p := ref()) is not None and p._forget_parent_traces())

    def _forget_parent_traces(self) -> None:
        """In a forked child, the parent's buffered traces stay the parent's to export (else sent twice)."""
        self._lock = threading.Lock()
        self._traces = {}
        self._spans = 0

    # --- SpanProcessor --------------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """A request that asks for its trace to be kept (baggage ``llmobs.force``) marks the local root."""
        try:
            parent = span.parent
            if parent is None or parent.is_remote:
                forced = baggage.get_baggage(FORCE_BAGGAGE, parent_context)
                if forced and str(forced).lower() not in ("0", "false", "no"):
                    span.set_attribute(sc.SAMPLING_FORCE, "request")
        except Exception as exc:
            selfstats.failure("sampling.on_start_failed", exc)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            self._on_end(span)
        except Exception as exc:
            selfstats.failure("sampling.on_end_failed", exc)

    def _on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        policy = self._policy()
        if not (self._auto_enabled if policy.enabled is None else policy.enabled):
            self._send(span)  # capture-all: nothing to decide, nothing to buffer
            return
        trace_id = context.trace_id
        parent = span.parent
        ready: list[tuple[_Trace, bool]] = []
        with self._lock:
            decision = self._decided.get(trace_id, _UNDECIDED)
            if decision is _UNDECIDED:
                trace = self._traces.get(trace_id)
                if trace is None:
                    trace = self._traces[trace_id] = _Trace(self._clock())
                trace.spans.append(span)
                self._spans += 1
                if parent is None or parent.is_remote:
                    del self._traces[trace_id]
                    self._spans -= len(trace.spans)
                    ready.append((trace, False))
                buffer = policy.buffer
                if len(self._traces) > buffer.max_traces or self._spans > buffer.max_spans:
                    ready += self._evict(self._clock(), buffer.max_traces, buffer.max_spans, buffer.max_age_s)
        if decision is not _UNDECIDED:
            self._forward_late(span, decision)
        for trace, partial in ready:
            self._decide(trace, partial)
        if self._sweeper_process != _process[0]:
            self._start_sweeper()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self._downstream)

    def shutdown(self) -> None:
        """Decide every buffered trace (as partial), hand it on, then shut the exporters down."""
        self._stop.set()
        self._flush_buffered()
        for processor in self._downstream:
            processor.shutdown()

    # --- buffering ------------------------------------------------------------------------------
    def _evict(self, now: float, max_traces: int, max_spans: int, max_age_s: float) -> list[tuple[_Trace, bool]]:
        """Oldest traces past the bounds, taken out of the buffer to be decided as partial (lock held)."""
        out = []
        while self._traces:
            trace_id, oldest = next(iter(self._traces.items()))
            if len(self._traces) <= max_traces and self._spans <= max_spans and now - oldest.born <= max_age_s:
                break
            del self._traces[trace_id]
            self._spans -= len(oldest.spans)
            out.append((oldest, True))
            selfstats.count("sampling.partial_traces")
        return out

    def _flush_buffered(self) -> None:
        with self._lock:
            traces = list(self._traces.values())
            self._traces.clear()
            self._spans = 0
        for trace in traces:
            self._decide(trace, True)

    def _start_sweeper(self) -> None:
        if not self._stop.is_set():
            self._sweeper_process = _process[0]
            threading.Thread(target=self._sweep, name="llmobs-sampling-sweeper", daemon=True).start()

    def _sweep(self) -> None:
        """Decide traces that outlived the buffer's age (checked here, off the spans' path)."""
        while not self._stop.wait(min(max(self._policy().buffer.max_age_s / 4, 0.05), 1.0)):
            try:
                buffer = self._policy().buffer
                with self._lock:
                    ready = self._evict(self._clock(), buffer.max_traces, buffer.max_spans, buffer.max_age_s)
                for trace, partial in ready:
                    self._decide(trace, partial)
            except Exception as exc:
                selfstats.failure("sampling.sweep_failed", exc)

    # --- deciding -------------------------------------------------------------------------------
    def _decide(self, trace: _Trace, partial: bool) -> None:
        spans = trace.spans
        root = _local_root(spans)
        trace_id = root.context.trace_id
        policy = self._policy()
        if not self._enabled(policy):
            reason, probability = "all", 1.0
        else:
            promoted, models = _promotions(spans, root, policy.promote)
            if promoted:
                reason, probability = "promoted:" + ",".join(promoted), 1.0
                for why in promoted:
                    selfstats.count(f"sampling.promoted:{why.split('=')[0]}")
            else:
                reason, probability = self._head(root, spans, policy, models)
                if not keeps(trace_id, probability):
                    self._remember(trace_id, None)
                    selfstats.count("sampling.dropped_traces")
                    selfstats.count("sampling.dropped_spans", len(spans))
                    return
        if partial:
            reason = "partial:" + reason
        adjusted = 1.0 / probability
        self._remember(trace_id, (reason, adjusted))
        selfstats.count("sampling.kept_traces")
        for span in spans:
            self._send(_stamped(span, reason, adjusted))

    def _enabled(self, policy: SamplingPolicy) -> bool:
        return self._auto_enabled if policy.enabled is None else policy.enabled

    def _head(
        self, root: ReadableSpan, spans: list[ReadableSpan], policy: SamplingPolicy, models: tuple[str, ...]
    ) -> tuple[str, float]:
        parent = root.parent
        if parent is not None and parent.is_remote:
            return "parent", 1.0 if parent.trace_flags.sampled else 0.0
        service = _service(root)
        for index, rule in enumerate(policy.rules):
            if rule.matches(spans, service):
                return f"rule:{index}", rule.ratio
        base = DEFAULT_RATIO if policy.ratio is None else policy.ratio
        key = key_of(root, spans, policy.key, service, models)
        seen, per_minute = self._rates.observe(key, policy.floor_window_s)
        probability, reason = base, "ratio"
        if policy.floor and seen > 0 and policy.floor / seen > base:
            probability, reason = min(1.0, policy.floor / seen), "floor"
        key_cap = policy.key_max_traces_per_minute
        key_per_minute = seen * 60.0 / policy.floor_window_s
        if key_cap and key_per_minute * probability > key_cap:
            probability, reason = key_cap / key_per_minute, reason + "+key_cap"
        cap = policy.max_traces_per_minute
        if cap and per_minute * probability > cap:
            probability, reason = cap / per_minute, reason + "+cap"
        return reason, probability

    def _remember(self, trace_id: int, decision: tuple[str, float] | None) -> None:
        with self._lock:
            self._decided[trace_id] = decision
            if len(self._decided) > _DECIDED_CAP:
                del self._decided[next(iter(self._decided))]

    def _forward_late(self, span: ReadableSpan, decision: tuple[str, float] | None) -> None:
        if decision is None:
            selfstats.count("sampling.dropped_spans")
            return
        reason, adjusted = decision
        self._send(_stamped(span, reason, adjusted))

    def _send(self, span: ReadableSpan) -> None:
        for processor in self._downstream:
            try:
                processor.on_end(span)
            except Exception as exc:
                selfstats.failure("sampling.forward_failed", exc)


def _local_root(spans: list[ReadableSpan]) -> ReadableSpan:
    for span in reversed(spans):
        if span.parent is None or span.parent.is_remote:
            return span
    return spans[0]  # partial trace whose root has not ended: the earliest span stands in


def _service(span: ReadableSpan) -> str | None:
    resource = span.resource
    return resource.attributes.get(sc.SERVICE_NAME) if resource is not None else None


def _attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """The span's attributes as a plain dict when the SDK keeps one (its read-only view costs two
    Python calls per lookup), else the public view."""
    try:
        inner = span._attributes._dict  # type: ignore[attr-defined]
    except AttributeError:
        return span.attributes or {}
    return inner if isinstance(inner, dict) else (span.attributes or {})


def _promotions(spans: list[ReadableSpan], root: ReadableSpan, rules: Promote) -> tuple[list[str], tuple[str, ...]]:
    """Why this trace must be kept whatever the ratio (empty: no reason), and the models it called —
    both from one pass over the trace, once per trace (the hot path of the decision: locals only)."""
    reasons: list[str] = []
    models: set[str] = set()
    tokens = 0
    cost = 0.0
    error = StatusCode.ERROR
    check_error, ttft_limit, finish_reasons = rules.error, rules.ttft_s, frozenset(rules.finish_reasons)
    empty_output, min_score, interrupted = rules.empty_output, rules.min_eval_score, rules.interrupted
    inference = sc.INFERENCE_OPERATIONS
    force_key, partial_key, operation_key = sc.SAMPLING_FORCE, sc.PARTIAL, sc.OPERATION_NAME
    model_key, ttft_key, finish_key, cost_key = (
        sc.REQUEST_MODEL, sc.RESPONSE_TIME_TO_FIRST_CHUNK, sc.RESPONSE_FINISH_REASONS, sc.COST_USD
    )  # fmt: skip
    input_key, output_key = sc.USAGE_INPUT_TOKENS, sc.USAGE_OUTPUT_TOKENS
    for span in spans:
        a = _attributes(span)
        get = a.get
        if a.get(force_key):
            _add(reasons, f"forced={a[force_key]}")
        if check_error and span.status.status_code is error:
            _add(reasons, "error")
        if interrupted and partial_key in a and a[partial_key] is True:
            _add(reasons, "interrupted")
        if get(operation_key) in inference:
            model = get(model_key)
            if model:
                models.add(str(model))
            if ttft_limit is not None:
                ttft = get(ttft_key)
                if ttft is not None and isinstance(ttft, _NUMBER) and ttft > ttft_limit:
                    _add(reasons, "ttft")
            tokens_in, tokens_out = get(input_key), get(output_key)
            if type(tokens_in) is int:
                tokens += tokens_in
            if type(tokens_out) is int:
                tokens += tokens_out
            price = get(cost_key)
            if price is not None:
                cost += _float(price)
            finish = get(finish_key)
            if finish and not finish_reasons.isdisjoint(finish):
                _add(reasons, "finish_reason")
            if empty_output and not (type(tokens_out) is int and tokens_out > 0) and _empty_output(span, a):
                _add(reasons, "empty_output")
        if min_score is not None and span.events and _low_score(span, min_score):
            _add(reasons, "low_score")
    if rules.latency_s is not None and _duration_s(root) > rules.latency_s:
        _add(reasons, "latency")  # the local root spans every call of the trace, slow ones included
    if rules.tokens is not None and tokens > rules.tokens:
        _add(reasons, "tokens")
    if rules.cost_usd is not None and cost > rules.cost_usd:
        _add(reasons, "cost")
    if plugins.has_hook("llmobs_sampling_vote"):
        for vote in plugins.call("llmobs_sampling_vote", spans=spans) or ():
            if vote:
                _add(reasons, f"plugin={vote}")
    return reasons, tuple(sorted(models))


def _add(reasons: list[str], reason: str) -> None:
    if reason not in reasons:
        reasons.append(reason)


def _empty_output(span: ReadableSpan, a: Any) -> bool:
    output_tokens = a.get(sc.USAGE_OUTPUT_TOKENS)
    if output_tokens is not None and _int(output_tokens) != 0:
        return False  # the common case, decided without looking further
    if span.status.status_code is StatusCode.ERROR or a.get(sc.STATUS_REASON):
        return False  # an error or a cancellation is reported as such, not as an empty answer
    if a.get(sc.OPERATION_NAME) == sc.OP_EMBEDDINGS:
        return False
    if output_tokens is not None:
        return True
    messages = a.get(sc.OUTPUT_MESSAGES)
    if isinstance(messages, str):
        try:
            parsed = json.loads(messages)
        except (ValueError, RecursionError):
            return False
        return not any(
            part.get("content") or part.get("type") != sc.PART_TEXT
            for m in parsed
            if isinstance(m, dict)
            for part in m.get("parts") or ()
            if isinstance(part, dict)
        )
    return False


def _low_score(span: ReadableSpan, minimum: float) -> bool:
    for event in span.events:
        if event.name == sc.EVENT_EVALUATION_RESULT:
            score = (event.attributes or {}).get(sc.EVALUATION_SCORE_VALUE)
            if isinstance(score, int | float) and score < minimum:
                return True
    return False


def _duration_s(span: ReadableSpan) -> float:
    if span.start_time is None or span.end_time is None:
        return 0.0
    return (span.end_time - span.start_time) / 1e9


_NUMBER = (int, float)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _stamped(span: ReadableSpan, reason: str, adjusted: float) -> ReadableSpan:
    """A copy of the finished span carrying why it was kept and what it stands for."""
    attributes = dict(_attributes(span))
    attributes[sc.SAMPLING_REASON] = reason
    attributes[sc.SAMPLING_ADJUSTED_COUNT] = adjusted
    return span_copy.with_attributes(span, attributes)
