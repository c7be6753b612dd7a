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
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext, Status, StatusCode

from llmobs import config, plugins, selfstats, span_copy
from llmobs import semconv as sc
from llmobs.deadline import flush_all
from llmobs.sampling.policy import ALIASES, DEFAULT_RATIO, SERVICE, SPAN_NAME, SamplingPolicy, key_of

_RANDOM_BITS = 56
_RANDOM_MASK = (1 << _RANDOM_BITS) - 1
_RANDOM_SCALE = 1 << _RANDOM_BITS
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
    return (trace_id & _RANDOM_MASK) < probability * _RANDOM_SCALE


# --- reading finished spans -----------------------------------------------------------------------
# The SDK hands span processors a plain ReadableSpan, whose every field is a Python property (and whose
# attributes are a BoundedAttributes, a read-only view costing two Python calls per lookup). On the
# sampler's path, where a trace's spans are read several times, the fields behind them are read directly
# for exactly these two types. Both are checked once against the installed SDK: a release that renamed
# the fields would make the sampler slower (every span read through its properties), never wrong.


def _direct_readable_span() -> type | None:
    try:
        context = SpanContext(1, 2, False)
        status = Status(StatusCode.ERROR)
        resource = Resource({sc.SERVICE_NAME: "probe"})
        span = ReadableSpan(
            "probe", context, parent=context, resource=resource, attributes={"a": 1}, events=(),
            status=status, start_time=3, end_time=4,
        )  # fmt: skip
        direct = (
            span._name is span.name
            and span._context is span.context
            and span._parent is span.parent
            and span._resource is span.resource
            and span._status is span.status
            and span._start_time == span.start_time == 3
            and span._end_time == span.end_time == 4
            and span._attributes == dict(span.attributes) == {"a": 1}
        )
    except Exception:
        return None
    return ReadableSpan if direct else None


def _direct_span_context() -> type | None:
    try:
        context = SpanContext(5, 6, True)
        direct = context[0] == context.trace_id == 5 and context[2] is context.is_remote is True
    except Exception:
        return None
    return SpanContext if direct else None


def _direct_status() -> type | None:
    try:
        status = Status(StatusCode.ERROR)
        direct = status._status_code is status.status_code is StatusCode.ERROR
    except Exception:
        return None
    return Status if direct else None


def _direct_bounded_attributes() -> type | None:
    try:
        inner = BoundedAttributes(attributes={"a": 1}, immutable=True)._dict
    except Exception:
        return None
    return BoundedAttributes if type(inner) is dict and inner == {"a": 1} else None


_READABLE = _direct_readable_span()
_CONTEXT = _direct_span_context()  # a tuple: (trace id, span id, is remote, ...)
_STATUS = _direct_status()
# the property every span type of the SDK reads its parent with (the live spans on_start sees included)
_PARENT_PROPERTY = ReadableSpan.parent if _READABLE is not None else None
_BOUNDED = _direct_bounded_attributes()


def _attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """The span's attributes as a plain dict when the SDK keeps one (its read-only view costs two
    Python calls per lookup), else the public view."""
    if type(span) is _READABLE:
        inner = span._attributes
        if type(inner) is dict:
            return inner
        if type(inner) is _BOUNDED:
            return inner._dict  # type: ignore[union-attr]
    try:
        inner = span._attributes._dict  # type: ignore[attr-defined]
    except AttributeError:
        return span.attributes or {}
    return inner if isinstance(inner, dict) else (span.attributes or {})


def _context(span: ReadableSpan) -> SpanContext | None:
    return span._context if type(span) is _READABLE else span.context


def _parent(span: ReadableSpan) -> SpanContext | None:
    return span._parent if type(span) is _READABLE else span.parent


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
        weight = 1 - elapsed / width
        return self.current + self.previous * (weight if weight > 0.0 else 0.0)


class _Rates:
    """Per-key and global trace rates for floors and the global cap (the processor's lock held)."""

    def __init__(self, now: float) -> None:
        self._keys: dict[tuple[Any, ...], _Window] = {}
        self._all = _Window(now)

    def observe(self, key: tuple[Any, ...], now: float, floor_window_s: float) -> tuple[float, float]:
        """(traces of this key in the floor window, traces of all keys in the last minute)."""
        window = self._keys.get(key)
        if window is None:
            if len(self._keys) >= _KEYS_CAP:
                key = ("…",)
                window = self._keys.setdefault(key, _Window(now))
            else:
                window = self._keys[key] = _Window(now)
        return window.add(now, floor_window_s), self._all.add(now, 60.0)


class _Plan:
    """What deciding needs from a policy, worked out once per policy (policies are frozen)."""

    __slots__ = (
        "base", "cost_usd", "empty_output", "error", "finish_reasons", "interrupted", "key", "latency_s",
        "min_eval_score", "policy", "tokens", "ttft_s",
    )  # fmt: skip

    def __init__(self, policy: SamplingPolicy) -> None:
        self.policy = policy
        promote = policy.promote
        self.error, self.latency_s, self.ttft_s = promote.error, promote.latency_s, promote.ttft_s
        self.tokens, self.cost_usd = promote.tokens, promote.cost_usd
        self.finish_reasons = frozenset(promote.finish_reasons)
        self.empty_output, self.min_eval_score = promote.empty_output, promote.min_eval_score
        self.interrupted = promote.interrupted
        self.base = DEFAULT_RATIO if policy.ratio is None else policy.ratio
        # the floor key, part by part: (key, the root's attribute it reads, or None for the span name and
        # the service; whether it is the request model, which the promotion pass collected)
        self.key = tuple(
            (key, None if key in (SPAN_NAME, SERVICE) else ALIASES.get(key, key), key in ("model", sc.REQUEST_MODEL))
            for key in policy.key
        )


class _Trace(list):  # a list made in C: one per trace, on the spans' path
    """A buffered trace: its spans in the order they ended, and when the first of them arrived (``born``)."""

    __slots__ = ("born",)


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
        self._rates = _Rates(clock())  # guarded by self._lock
        self._plan = _Plan(SamplingPolicy())
        self._service: tuple[Any, Any] = (None, None)  # (resource, its service name), the last one seen
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
            parent = span._parent if type(span).parent is _PARENT_PROPERTY else span.parent
            if parent is None or (parent[2] if type(parent) is _CONTEXT else parent.is_remote):
                forced = baggage.get_baggage(FORCE_BAGGAGE, parent_context)
                if forced and str(forced).lower() not in ("0", "false", "no"):
                    span.set_attribute(sc.SAMPLING_FORCE, "request")
        except Exception as exc:
            selfstats.failure("sampling.on_start_failed", exc)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            if type(span) is _READABLE:
                context, parent = span._context, span._parent
            else:
                context, parent = span.context, span.parent
            if context is None:
                return
            policy = self._policy()
            enabled = policy.enabled
            if not (self._auto_enabled if enabled is None else enabled):
                self._send(span)  # capture-all: nothing to decide, nothing to buffer
                return
            if type(context) is _CONTEXT:
                trace_id = context[0]
                local_root = parent is None or (parent[2] if type(parent) is _CONTEXT else parent.is_remote)
            else:
                trace_id = context.trace_id
                local_root = parent is None or parent.is_remote
            spans: list[ReadableSpan] | None = None
            evicted: list[tuple[_Trace, bool]] | None = None
            with self._lock:
                decision = self._decided.get(trace_id, _UNDECIDED)
                if decision is _UNDECIDED:
                    traces = self._traces
                    if local_root:  # the local trace is complete: out of the buffer, to be decided
                        trace = traces.pop(trace_id, None)
                        if trace is None:
                            spans = [span]
                        else:
                            spans = trace
                            spans.append(span)
                            self._spans -= len(spans) - 1
                    else:
                        trace = traces.get(trace_id)
                        if trace is None:
                            trace = traces[trace_id] = _Trace()
                            trace.born = self._clock()
                        trace.append(span)
                        self._spans += 1
                    buffer = policy.buffer
                    if len(traces) > buffer.max_traces or self._spans > buffer.max_spans:
                        evicted = self._evict(self._clock(), buffer.max_traces, buffer.max_spans, buffer.max_age_s)
            if decision is not _UNDECIDED:
                self._forward_late(span, decision)
            elif spans is not None:
                self._decide(spans, False, span, policy, trace_id)
            if evicted:
                for trace, partial in evicted:
                    self._decide(trace, partial)
            if self._sweeper_process != _process[0]:
                self._start_sweeper()
        except Exception as exc:
            selfstats.failure("sampling.on_end_failed", exc)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush every exporter within one shared timeout (each gets what the previous ones left)."""
        return flush_all((p.force_flush for p in self._downstream), timeout_millis)

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
            self._spans -= len(oldest)
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
    def _decide(
        self,
        spans: list[ReadableSpan],
        partial: bool,
        root: ReadableSpan | None = None,
        policy: SamplingPolicy | None = None,
        trace_id: int = 0,
    ) -> None:
        """Keep or drop one local trace (``root``, ``policy``, ``trace_id``: its local root, the policy in
        force and its trace id, when the caller has them)."""
        if root is None:
            root = _local_root(spans)
            trace_id = _context(root).trace_id  # type: ignore[union-attr]
        if policy is None:
            policy = self._policy()
        key = None
        enabled = policy.enabled
        if not (self._auto_enabled if enabled is None else enabled):
            reason, probability = "all", 1.0
        else:
            plan = self._plan
            if plan.policy is not policy:
                plan = self._plan = _Plan(policy)
            promoted, models = _promotions(spans, root, plan)
            if promoted:
                reason, probability = "promoted:" + ",".join(promoted), 1.0
                for why in promoted:
                    selfstats.count(f"sampling.promoted:{why.split('=')[0]}")
            else:
                parent = _parent(root)
                if parent is not None and parent.is_remote:
                    reason, probability = "parent", 1.0 if parent.trace_flags.sampled else 0.0
                else:
                    service = self._service_of(root)
                    for index, rule in enumerate(policy.rules) if policy.rules else ():
                        if rule.matches(spans, service):
                            reason, probability = f"rule:{index}", rule.ratio
                            break
                    else:
                        reason, probability = "ratio", plan.base  # set with the rates, below
                        key = self._key(root, spans, plan, service, models)
        now = self._clock() if key is not None else 0.0
        with self._lock:  # one critical section: the rates, then the decision remembered
            if key is not None:
                reason, probability = self._rated(key, now, policy, plan.base)
            kept = (trace_id & _RANDOM_MASK) < probability * _RANDOM_SCALE  # keeps(trace_id, probability)
            if kept:
                if partial:
                    reason = "partial:" + reason
                adjusted = 1.0 / probability
                self._decided[trace_id] = (reason, adjusted)
            else:
                self._decided[trace_id] = None
            if len(self._decided) > _DECIDED_CAP:
                del self._decided[next(iter(self._decided))]
        if not kept:
            selfstats.count("sampling.dropped_traces")
            selfstats.count("sampling.dropped_spans", len(spans))
            return
        selfstats.count("sampling.kept_traces")
        send = self._send
        for span in spans:
            send(_stamped(span, reason, adjusted))

    def _service_of(self, span: ReadableSpan) -> str | None:
        resource = span._resource if type(span) is _READABLE else span.resource
        last, service = self._service
        if resource is not last:  # a resource is immutable, and one process has one or a few
            service = resource.attributes.get(sc.SERVICE_NAME) if resource is not None else None
            self._service = (resource, service)
        return service

    def _key(
        self, root: ReadableSpan, spans: list[ReadableSpan], plan: _Plan, service: str | None, models: tuple[str, ...]
    ) -> tuple[Any, ...]:
        """The trace's floor/rate key, as ``policy.key_of`` makes it (which this follows, faster)."""
        attributes = _attributes(root)
        out = []
        for key, attribute, model in plan.key:
            if attribute is None:
                value = service if key == SERVICE else (root._name if type(root) is _READABLE else root.name)
            else:
                value = attributes.get(attribute)
                if value is None:  # the models the trace called, or gathered from the whole trace
                    value = models if model and models else key_of(root, spans, (key,), service, models)[0]
            out.append(value)
        return tuple(out)

    def _rated(self, key: tuple[Any, ...], now: float, policy: SamplingPolicy, base: float) -> tuple[str, float]:
        """The head probability of a trace with this key: the base ratio, raised by the key's floor,
        lowered by the rate caps (the lock held: the trace is counted in the rates)."""
        seen, per_minute = self._rates.observe(key, now, policy.floor_window_s)
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
        parent = _parent(span)
        if parent is None or parent.is_remote:
            return span
    return spans[0]  # partial trace whose root has not ended: the earliest span stands in


def _promotions(spans: list[ReadableSpan], root: ReadableSpan, plan: _Plan) -> tuple[list[str], tuple[str, ...]]:
    """Why this trace must be kept whatever the ratio (empty: no reason), and the models it called —
    both from one pass over the trace, once per trace (the hot path of the decision: locals only)."""
    reasons: list[str] = []
    models: set[str] = set()
    tokens = 0
    cost = 0.0
    error, readable, bounded, status_type = StatusCode.ERROR, _READABLE, _BOUNDED, _STATUS
    check_error, ttft_limit, finish_reasons = plan.error, plan.ttft_s, plan.finish_reasons
    empty_output, min_score, interrupted = plan.empty_output, plan.min_eval_score, plan.interrupted
    inference, embeddings = sc.INFERENCE_OPERATIONS, sc.OP_EMBEDDINGS
    force_key, partial_key, operation_key = sc.SAMPLING_FORCE, sc.PARTIAL, sc.OPERATION_NAME
    model_key, ttft_key, finish_key, cost_key = (
        sc.REQUEST_MODEL, sc.RESPONSE_TIME_TO_FIRST_CHUNK, sc.RESPONSE_FINISH_REASONS, sc.COST_USD
    )  # fmt: skip
    input_key, output_key = sc.USAGE_INPUT_TOKENS, sc.USAGE_OUTPUT_TOKENS
    for span in spans:
        if type(span) is readable:
            a = span._attributes
            a = a._dict if type(a) is bounded else a if type(a) is dict else _attributes(span)
            status = span._status
        else:
            a = _attributes(span)
            status = span.status
        get = a.get
        forced = get(force_key)
        if forced:
            _add(reasons, f"forced={forced}")
        if check_error and (status._status_code if type(status) is status_type else status.status_code) is error:
            _add(reasons, "error")
        if interrupted and get(partial_key) is True:
            _add(reasons, "interrupted")
        operation = get(operation_key)
        if operation in inference:
            model = get(model_key)
            if model:
                models.add(model if type(model) is str else str(model))
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
            if type(price) is float or type(price) is int:
                cost += price
            elif price is not None:
                cost += _float(price)
            finish = get(finish_key)
            if finish and not finish_reasons.isdisjoint(finish):
                _add(reasons, "finish_reason")
            if (
                empty_output
                and not (type(tokens_out) is int and tokens_out > 0)
                and operation != embeddings  # never an empty answer (as _empty_output says, sooner)
                and _empty_output(span, a)
            ):
                _add(reasons, "empty_output")
        if min_score is not None and span.events and _low_score(span, min_score):
            _add(reasons, "low_score")
    if plan.latency_s is not None and _duration_s(root) > plan.latency_s:
        _add(reasons, "latency")  # the local root spans every call of the trace, slow ones included
    if plan.tokens is not None and tokens > plan.tokens:
        _add(reasons, "tokens")
    if plan.cost_usd is not None and cost > plan.cost_usd:
        _add(reasons, "cost")
    if plugins.has_hook("llmobs_sampling_vote"):
        for vote in plugins.call("llmobs_sampling_vote", spans=spans) or ():
            if vote:
                _add(reasons, f"plugin={vote}")
    return reasons, tuple(sorted(models)) if len(models) > 1 else tuple(models)


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
    if type(span) is _READABLE:
        start, end = span._start_time, span._end_time
    else:
        start, end = span.start_time, span.end_time
    if start is None or end is None:
        return 0.0
    return (end - start) / 1e9


_NUMBER = (int, float)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _stamped(span: ReadableSpan, reason: str, adjusted: float) -> ReadableSpan:
    """A copy of the finished span carrying why it was kept and what it stands for."""
    return span_copy.with_attributes(
        span, {**_attributes(span), sc.SAMPLING_REASON: reason, sc.SAMPLING_ADJUSTED_COUNT: adjusted}
    )
