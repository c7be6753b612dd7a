"""vLLM engine stats → GenAI server metrics and per-request spans. Imports nothing from vLLM.

:class:`EngineTelemetry` takes whatever vLLM's stat logger receives (duck-typed ``SchedulerStats``,
``IterationStats`` with ``FinishedRequestStats``) and splits the work in two:

``record()`` — on the API server's event loop, once per engine step. It does a constant amount of work
whatever the batch size: it copies the scheduler snapshot (running, waiting, KV-cache usage) into
per-engine slots read by observable gauges, adds the step's token / prefix-cache / preemption /
speculative-decoding counts to per-engine running totals read by observable counters, and appends one
tuple (the step's time-to-first-token list, a strided sample of its inter-token latencies, its finished
requests) to a bounded queue. No lock, no I/O, no OpenTelemetry call. The step's lists are vLLM's own
objects, which vLLM drops after the step; holding them costs no copy.

The flusher — a daemon thread, every ``flush_interval`` seconds and at interpreter exit — drains the
queue: it records the per-request histograms and counters, and makes one span per finished request
through the llmobs recorder. OpenTelemetry's Python SDK costs ~10 µs per histogram measurement, about
ten times a ``prometheus_client`` observation, and has no way to add pre-bucketed data, so per-token
values are the one thing sampled: one in every ``itl_sample_every`` inter-token latencies is kept
(a systematic sample over the token stream, so quantiles and the mean are unbiased; the histogram's
count is then tokens / N — the exact token count is ``vllm.tokens``). Everything per request (request
duration, TTFT, TPOT, phases, token counts, finish reasons) is exact.

Every public method is fail-open: a failure is counted in ``llmobs.selfstats`` and logged once; nothing
raises into vLLM (an exception escaping ``record()`` kills vLLM's output handler).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

import llmobs.export  # noqa: F401 - imported first so that, in the atexit fallback, our exit flush runs before its shutdown
from llmobs import __version__ as core_version
from llmobs import aggregated_metrics, selfstats
from llmobs import semconv as sc
from llmobs_vllm._contexts import CONTEXTS, RequestContext, RequestContexts

_log = logging.getLogger("llmobs.vllm")

FRAMEWORK = "vllm"
ENV_FLUSH_INTERVAL = "LLMOBS_VLLM_FLUSH_INTERVAL"
ENV_ITL_SAMPLE = "LLMOBS_VLLM_ITL_SAMPLE"
ENV_SPANS = "LLMOBS_VLLM_SPANS"
DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_ITL_SAMPLE = 32
QUEUE_STEPS = 8192  # engine steps buffered between flushes; older steps are dropped (counted) beyond it

#: vLLM's FinishReason values in IntEnum order (vllm/v1/engine/__init__.py).
FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")
_SUCCESS = frozenset({"stop", "length", "repetition"})
_EMPTY: tuple[()] = ()

#: Fields read from each stats object, for the one-time report of what this vLLM lacks.
SCHEDULER_FIELDS = ("num_running_reqs", "num_waiting_reqs", "num_skipped_waiting_reqs", "kv_cache_usage",
                    "prefix_cache_stats", "spec_decoding_stats")
ITERATION_FIELDS = ("iteration_timestamp", "num_generation_tokens", "num_prompt_tokens", "num_preempted_reqs",
                    "time_to_first_tokens_iter", "inter_token_latencies_iter", "finished_requests")
#: Without any of these an object is not an IterationStats at all (its record fails and is counted).
_ITERATION_CORE = ("num_generation_tokens", "num_prompt_tokens", "time_to_first_tokens_iter",
                   "inter_token_latencies_iter", "finished_requests")
FINISHED_FIELDS = ("finish_reason", "request_id", "e2e_latency", "num_prompt_tokens", "num_generation_tokens",
                   "num_cached_tokens", "num_preemptions", "max_tokens_param", "queued_time", "prefill_time",
                   "decode_time", "inference_time", "mean_time_per_output_token")


#: Distinct rejection reasons kept as labels; later ones are counted as ``other``.
_MAX_REJECTION_REASONS = 16
_OTHER_REASON = "other"


def _absent_or(kind: Any, value: Any) -> bool:
    """Whether a stats field is missing (None) or a number of ``kind`` (a bool is no count)."""
    return value is None or (isinstance(value, kind) and not isinstance(value, bool))


def env_float(name: str, default: float, minimum: float, maximum: float = 86_400.0) -> float:
    """A number from the environment, raised to ``minimum`` and capped at ``maximum``; the default for
    anything else (not a number, NaN, infinite), with a warning."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        _log.warning("llmobs-vllm: ignoring %s=%r (not a finite number); using %s", name, raw, default)
        return default
    return min(max(value, minimum), maximum)


def env_flag(name: str, default: bool) -> bool:
    raw = (os.environ.get(name) or "").strip().lower()
    if not raw:
        return default
    return raw not in ("0", "false", "no", "off")


def finish_reason(value: Any) -> str:
    """``stop`` / ``length`` / ... from vLLM's FinishReason (an IntEnum), a plain int or a string."""
    if isinstance(value, str):
        return value
    name = getattr(value, "name", None)
    if isinstance(name, str):  # an enum member: by its name, whatever its position in this vLLM's enum
        return name.lower()
    if isinstance(value, int) and 0 <= value < len(FINISH_REASONS):
        return FINISH_REASONS[value]
    return "unknown"


def _duration(value: Any) -> float | None:
    """A non-negative finite number of seconds, else None (vLLM reports -ts for phases that never began)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if 0.0 <= value < math.inf else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class _Engine:
    """One data-parallel engine: the last scheduler snapshot and running totals (written by record() only)."""

    __slots__ = ("accepted_tokens", "draft_tokens", "drafts", "generation_tokens", "index", "kv_cache_usage",
                 "preemptions", "prefix_hits", "prefix_queries", "prompt_tokens", "running", "scheduled", "waiting")

    def __init__(self, index: int) -> None:
        self.index = index
        self.scheduled = False  # a scheduler snapshot arrived: the gauges report this engine
        self.running = self.waiting = 0
        self.kv_cache_usage = 0.0
        self.prompt_tokens = self.generation_tokens = self.preemptions = 0
        self.prefix_queries = self.prefix_hits = 0
        self.drafts = self.draft_tokens = self.accepted_tokens = 0


class EngineTelemetry:
    """Metrics and spans for one vLLM front end (all its data-parallel engines).

    ``spans``: ``"own"`` makes an llmobs span per finished request, from its arrival to its last token;
    ``"enrich"`` (vLLM's own tracing is on) makes a zero-length span per request under vLLM's
    ``llm_request`` span, found through ``span_index``, carrying only what vLLM's span lacks; ``"off"``
    makes none. ``recorder_factory`` returns the llmobs recorder, created on first use by the flusher.
    """

    def __init__(
        self,
        model: str | None,
        engine_indexes: Iterable[int] = (0,),
        *,
        spans: str = "own",
        meter_provider: metrics.MeterProvider | None = None,
        recorder_factory: Callable[[], Any] | None = None,
        contexts: RequestContexts | None = None,
        span_index: Any = None,
        flush_interval: float | None = None,
        itl_sample_every: int | None = None,
        start_thread: bool = True,
    ) -> None:
        self.model = model or None
        self.spans = spans
        self.contexts = contexts if contexts is not None else CONTEXTS
        self.span_index = span_index
        self.flush_interval = (
            env_float(ENV_FLUSH_INTERVAL, DEFAULT_FLUSH_INTERVAL, 0.05) if flush_interval is None else flush_interval
        )
        sample = itl_sample_every or int(env_float(ENV_ITL_SAMPLE, DEFAULT_ITL_SAMPLE, 1))
        self.itl_sample_every = max(1, sample)
        self._itl_offset = 0
        self._engines: dict[int, _Engine] = {i: _Engine(i) for i in engine_indexes}
        self._queue: deque[tuple[Any, ...]] = deque(maxlen=QUEUE_STEPS)
        self._rejections: dict[str, int] = {}
        self._attrs: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._recorder_factory = recorder_factory
        self._recorder: Any = None
        self._reported: set[str] = set()  # stats fields found missing and already logged
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._start_thread = start_thread
        self._started = False
        self._thread: threading.Thread | None = None
        self._meter_provider = meter_provider
        self._instruments(meter_provider)
        _LIVE.add(self)

    # --- instruments --------------------------------------------------------------------------------
    def _instruments(self, meter_provider: metrics.MeterProvider | None) -> None:
        # On a provider llmobs installed, the histograms aggregate in llmobs (far cheaper than the SDK's).
        own = aggregated_metrics.Meter(sc.SCOPE_NAME, core_version, meter_provider)
        meter = own.sdk

        def histogram(name: str, unit: str, buckets: tuple[float, ...], description: str) -> Any:
            return own.histogram(name, unit, description, buckets)

        self._duration = histogram(sc.METRIC_SERVER_REQUEST_DURATION, sc.UNIT_SECONDS, sc.BUCKETS_DURATION,
                                   "Time from the request's arrival at the vLLM front end to its last token")
        self._ttft = histogram(sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN, sc.UNIT_SECONDS, sc.BUCKETS_SERVER_TTFT,
                               "Time from arrival to the first generated token (queueing and prefill included)")
        self._tpot = histogram(sc.METRIC_SERVER_TIME_PER_OUTPUT_TOKEN, sc.UNIT_SECONDS, sc.BUCKETS_SERVER_TPOT,
                               "Mean time per output token after the first, per successful request")
        self._itl = histogram(sc.METRIC_VLLM_INTER_TOKEN_LATENCY, sc.UNIT_SECONDS, sc.BUCKETS_SERVER_TPOT,
                              "Time between consecutive tokens of a request (a 1-in-N sample of decode tokens)")
        self._tokens = histogram(sc.METRIC_VLLM_REQUEST_TOKENS, sc.UNIT_TOKENS, sc.BUCKETS_TOKENS,
                                 "Prompt (input) and generated (output) tokens per finished request")
        self._cached = histogram(sc.METRIC_VLLM_REQUEST_CACHED_TOKENS, sc.UNIT_TOKENS, sc.BUCKETS_TOKENS,
                                 "Prompt tokens per finished request served from the prefix cache")
        self._phases = (
            ("queued_time", histogram(sc.METRIC_VLLM_REQUEST_QUEUE_DURATION, sc.UNIT_SECONDS, sc.BUCKETS_DURATION,
                                      "Time from queued to first scheduled")),
            ("prefill_time", histogram(sc.METRIC_VLLM_REQUEST_PREFILL_DURATION, sc.UNIT_SECONDS,
                                       sc.BUCKETS_DURATION, "Time from first scheduled to first token")),
            ("decode_time", histogram(sc.METRIC_VLLM_REQUEST_DECODE_DURATION, sc.UNIT_SECONDS, sc.BUCKETS_DURATION,
                                      "Time from first token to last token")),
            ("inference_time", histogram(sc.METRIC_VLLM_REQUEST_INFERENCE_DURATION, sc.UNIT_SECONDS,
                                         sc.BUCKETS_DURATION, "Time from first scheduled to last token")),
        )
        self._finished = own.counter(sc.METRIC_VLLM_REQUESTS_FINISHED, sc.UNIT_REQUESTS,
                                     "Finished requests by finish reason")
        _observers(meter).members.add(self)

    def _engine_field(self, field: str, snapshot: bool) -> list[Observation]:
        """One observation per engine of ``field`` (a gauge's only once the engine reported a snapshot)."""
        return [
            Observation(getattr(engine, field), self.attributes(engine.index))
            for engine in list(self._engines.values())
            if engine.scheduled or not snapshot
        ]

    def _token_counts(self) -> list[Observation]:
        out = []
        for engine in list(self._engines.values()):
            out.append(Observation(engine.prompt_tokens, self.attributes(engine.index, token=sc.TOKEN_TYPE_INPUT)))
            out.append(Observation(engine.generation_tokens, self.attributes(engine.index, token=sc.TOKEN_TYPE_OUTPUT)))
        return out

    def _rejection_counts(self) -> list[Observation]:
        base = self.attributes(None)
        return [Observation(n, {**base, sc.VLLM_REJECTION_REASON: r}) for r, n in list(self._rejections.items())]

    def attributes(
        self, engine: int | None, operation: str | None = None, *, token: str | None = None,
        reason: str | None = None, error: bool = False,
    ) -> dict[str, Any]:
        """Metric attributes, built once per combination (low cardinality) and shared afterwards."""
        key = (engine, operation, token, reason, error)
        attrs = self._attrs.get(key)
        if attrs is None:
            attrs = {sc.PROVIDER_NAME: sc.PROVIDER_VLLM}
            if self.model:
                attrs[sc.REQUEST_MODEL] = attrs[sc.RESPONSE_MODEL] = self.model
            if engine is not None:
                attrs[sc.VLLM_ENGINE_INDEX] = engine
            if operation:
                attrs[sc.OPERATION_NAME] = operation
            if token:
                attrs[sc.TOKEN_TYPE] = token
            if reason:
                attrs[sc.VLLM_FINISH_REASON] = reason
            if error:
                attrs[sc.ERROR_TYPE] = sc.FINISH_ERROR
            if len(self._attrs) < 4096:  # bounded: operations and reasons are closed sets, engines few
                self._attrs[key] = attrs
        return attrs

    # --- the hot path: vLLM's event loop -------------------------------------------------------------
    def record(self, scheduler_stats: Any, iteration_stats: Any, engine_idx: int = 0) -> None:
        """Take one engine step's stats. Constant work, no I/O, no lock; never raises."""
        try:
            engine = self._engines.get(engine_idx)
            if engine is None:
                engine = self._new_engine(engine_idx)
            if scheduler_stats is not None:
                self._scheduler(engine, scheduler_stats)
            if iteration_stats is not None:
                self._iteration(engine, iteration_stats)
        except Exception as exc:
            with contextlib.suppress(Exception):
                selfstats.failure("vllm.record_failed", exc)

    def _new_engine(self, engine_idx: Any) -> _Engine:
        if not isinstance(engine_idx, int) or isinstance(engine_idx, bool):
            raise TypeError(f"engine index {engine_idx!r} is not an int")
        if len(self._engines) >= 1024:
            raise ValueError("more than 1024 engine indexes")
        engine = self._engines[engine_idx] = _Engine(engine_idx)
        return engine

    def _scheduler(self, engine: _Engine, stats: Any) -> None:
        if "scheduler" not in self._reported:
            self._report_missing("scheduler", "SchedulerStats", stats, SCHEDULER_FIELDS)
        # Each field is read on its own: one that this vLLM lacks leaves its gauge alone, not the step.
        running = getattr(stats, "num_running_reqs", None)
        waiting = getattr(stats, "num_waiting_reqs", None)
        usage = getattr(stats, "kv_cache_usage", None)
        if running is None and waiting is None and usage is None:
            raise TypeError(f"{type(stats).__name__} has none of the scheduler stats fields")
        if waiting is not None:
            waiting += getattr(stats, "num_skipped_waiting_reqs", 0)
        # Validate before storing, so a malformed snapshot never reaches the gauges.
        if not (_absent_or(int, running) and _absent_or(int, waiting) and _absent_or(int | float, usage)):
            raise TypeError("SchedulerStats fields are not numbers")
        if running is not None:
            engine.running = running
        if waiting is not None:
            engine.waiting = waiting
        if usage is not None:
            engine.kv_cache_usage = usage
        engine.scheduled = True
        prefix = getattr(stats, "prefix_cache_stats", None)
        if prefix is not None:
            queries, hits = prefix.queries, prefix.hits
            if queries or hits:
                engine.prefix_queries += queries
                engine.prefix_hits += hits
        spec = getattr(stats, "spec_decoding_stats", None)
        if spec is not None:
            engine.drafts += spec.num_drafts
            engine.draft_tokens += spec.num_draft_tokens
            engine.accepted_tokens += spec.num_accepted_tokens

    def _iteration(self, engine: _Engine, stats: Any) -> None:
        if "iteration" not in self._reported:
            self._report_missing("iteration", "IterationStats", stats, ITERATION_FIELDS)
        if not any(hasattr(stats, field) for field in _ITERATION_CORE):
            raise TypeError(f"{type(stats).__name__} has none of the iteration stats fields")
        # Each field is read with a default: one that this vLLM lacks leaves out what is built from it only.
        prompt = getattr(stats, "num_prompt_tokens", 0)
        generated = getattr(stats, "num_generation_tokens", 0)
        preempted = getattr(stats, "num_preempted_reqs", 0)
        if not (isinstance(prompt, int) and isinstance(generated, int) and isinstance(preempted, int)):
            raise TypeError("IterationStats token counts are not ints")
        engine.prompt_tokens += prompt
        engine.generation_tokens += generated
        engine.preemptions += preempted

        ttfts = getattr(stats, "time_to_first_tokens_iter", None)
        itls = getattr(stats, "inter_token_latencies_iter", None)
        finished = getattr(stats, "finished_requests", None)
        sample: Any = _EMPTY
        if itls:
            every, offset, n = self.itl_sample_every, self._itl_offset, len(itls)
            if every == 1:
                sample = itls
            elif offset < n:
                sample = itls[offset::every]
            self._itl_offset = (offset - n) % every
        if ttfts or sample or finished:
            queue = self._queue
            if len(queue) == queue.maxlen:
                selfstats.count("vllm.steps_dropped")
            timestamp = getattr(stats, "iteration_timestamp", None)
            # Each finished request's HTTP context is looked up now: by the flush, a new request reusing its
            # X-Request-Id may have replaced it.
            contexts = [self._context_of(f) for f in finished] if finished and len(self.contexts) else None
            queue.append(
                (engine.index, time.time() if timestamp is None else timestamp, ttfts, sample, finished, contexts)
            )
            if not self._started:
                self._start()

    def record_rejection(self, reason: Any) -> None:
        try:
            reason = str(reason)[:64]
            rejections = self._rejections
            if reason not in rejections and len(rejections) >= _MAX_REJECTION_REASONS:
                reason = _OTHER_REASON  # bounded, like every attribute set here: counted, under one label
            rejections[reason] = rejections.get(reason, 0) + 1
        except Exception as exc:
            selfstats.failure("vllm.record_failed", exc)

    def _report_missing(self, kind: str, what: str, obj: Any, fields: tuple[str, ...]) -> None:
        """Log once which fields this vLLM's stats lack: what is built from them is left out, nothing breaks.

        An object with none of the fields is no stats object at all (its record fails and is counted); the
        report waits for a real one.
        """
        missing = [f for f in fields if not hasattr(obj, f)]
        if len(missing) == len(fields):
            return
        self._reported.add(kind)
        if missing:
            _log.warning(
                "llmobs-vllm: this vLLM's %s has no %s; the metrics and span attributes built from them are "
                "left out (supported: vLLM >= 0.11.1; request ids need >= 0.20)",
                what, ", ".join(missing),
            )

    # --- the flusher thread ------------------------------------------------------------------------
    def _start(self) -> None:
        self._started = True
        if self._start_thread and not self._stop:
            thread = threading.Thread(target=self._run, name="llmobs-vllm-flush", daemon=True)
            self._thread = thread
            thread.start()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Record everything queued so far (metrics, spans); returns the number of steps drained. Never raises."""
        drained = 0
        with self._flush_lock:
            queue = self._queue
            while True:
                try:
                    item = queue.popleft()
                except IndexError:
                    break
                drained += 1
                try:
                    self._flush_step(*item)
                except Exception as exc:
                    selfstats.failure("vllm.flush_failed", exc)
        return drained

    def close(self) -> None:
        """Stop the flusher after a last flush (also runs at interpreter exit); the gauges and counters stop
        reporting this front end."""
        self._stop = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.flush()
        for observers in list(_OBSERVERS.values()):
            observers.members.discard(self)

    def _context_of(self, stats: Any) -> RequestContext | None:
        request_id = getattr(stats, "request_id", None)
        return self.contexts.lookup(request_id) if isinstance(request_id, str) else None

    def _flush_step(
        self, engine_idx: int, timestamp: float, ttfts: Any, itls: Any, finished: Any,
        contexts: list[RequestContext | None] | None = None,
    ) -> None:  # fmt: skip
        if ttfts or itls:
            attrs = self.attributes(engine_idx)
            for ttft in ttfts:
                value = _duration(ttft)
                if value is not None:
                    self._ttft.record(value, attrs)
            for itl in itls:
                value = _duration(itl)
                if value is not None:
                    self._itl.record(value, attrs)
        for index, stats in enumerate(finished or _EMPTY):
            try:
                self._finish(engine_idx, timestamp, stats, contexts[index] if contexts else None)
            except Exception as exc:
                selfstats.failure("vllm.finished_request_failed", exc)

    def _finish(self, engine_idx: int, timestamp: float, stats: Any, context: RequestContext | None) -> None:
        if "finished" not in self._reported:
            self._report_missing("finished", "FinishedRequestStats", stats, FINISHED_FIELDS)
        g = getattr
        reason = finish_reason(g(stats, "finish_reason", None))
        request_id = g(stats, "request_id", None)
        operation = context.operation if context is not None else None
        attrs = self.attributes(engine_idx, operation)
        e2e = _duration(g(stats, "e2e_latency", None))
        prompt = _count(g(stats, "num_prompt_tokens", None))
        generated = _count(g(stats, "num_generation_tokens", None))
        cached = _count(g(stats, "num_cached_tokens", None))
        tpot = _duration(g(stats, "mean_time_per_output_token", None))
        phases = {field: _duration(g(stats, field, None)) for field, _ in self._phases}
        if not generated:  # no token: only the queue time means anything
            phases = {"queued_time": phases["queued_time"]}

        error = reason == sc.FINISH_ERROR
        if e2e is not None:
            self._duration.record(e2e, self.attributes(engine_idx, operation, error=True) if error else attrs)
        if reason in _SUCCESS and generated and generated > 1 and tpot:
            self._tpot.record(tpot, attrs)
        for field, instrument in self._phases:
            value = phases.get(field)
            if value is not None:
                instrument.record(value, attrs)
        if prompt is not None:
            self._tokens.record(prompt, self.attributes(engine_idx, operation, token=sc.TOKEN_TYPE_INPUT))
        if generated is not None:
            self._tokens.record(generated, self.attributes(engine_idx, operation, token=sc.TOKEN_TYPE_OUTPUT))
        if cached is not None:
            self._cached.record(cached, attrs)
        self._finished.add(1, self.attributes(engine_idx, operation, reason=reason, error=error))

        if self.spans != "off":
            self._span(engine_idx, timestamp, stats, reason, request_id, context, e2e, prompt, generated, cached,
                       tpot, phases)

    def _span(
        self, engine_idx: int, timestamp: float, stats: Any, reason: str, request_id: Any,
        context: RequestContext | None, e2e: float | None, prompt: int | None, generated: int | None,
        cached: int | None, tpot: float | None, phases: Mapping[str, float | None],
    ) -> None:
        recorder = self._recorder
        if recorder is None:
            recorder = self._recorder = self._recorder_factory() if self._recorder_factory else _default_recorder()
        from llmobs.recorder import ROOT

        end_ns = int(float(timestamp) * 1e9)
        enrich = self.spans == "enrich"
        start_ns = end_ns if enrich else end_ns - int((e2e or 0.0) * 1e9)
        attributes: dict[str, Any] = {sc.VLLM_ENGINE_INDEX: engine_idx}
        if isinstance(request_id, str):
            attributes[sc.REQUEST_ID] = request_id
        for field, attribute in _PHASE_ATTRIBUTES:
            value = phases.get(field)
            if value is not None:
                attributes[attribute] = value
        if tpot and generated and generated > 1:
            attributes[sc.VLLM_TIME_PER_OUTPUT_TOKEN] = tpot
        preemptions = _count(getattr(stats, "num_preemptions", None))
        if preemptions:
            attributes[sc.VLLM_PREEMPTIONS] = preemptions
        parent: Any = context.carrier if context is not None else None
        if enrich and self.span_index is not None and isinstance(request_id, str):
            parent = self.span_index.take(request_id) or parent
        handle = recorder.start(
            (context.operation if context is not None else None) or sc.OP_TEXT_COMPLETION,
            parent=parent or ROOT,
            provider=sc.PROVIDER_VLLM,
            model=self.model,
            framework=FRAMEWORK,
            remote=False,
            start_time_ns=start_ns,
            attributes=attributes,
            metrics=False,
        )
        max_tokens = _count(getattr(stats, "max_tokens_param", None))
        if max_tokens:
            handle.set_request(max_tokens=max_tokens)
        decode = phases.get("decode_time")
        if generated and e2e is not None and not enrich:
            # TTFT of this request: arrival to the step that produced its first token = e2e minus decoding.
            ttft = min(max(e2e - (decode or 0.0), 0.0), e2e)
            handle.first_token(at_ns=start_ns + int(ttft * 1e9))
        handle.set_usage(prompt, generated, cache_read=cached or None)
        handle.set_output(finish_reasons=[reason], response_model=self.model)
        if reason == sc.FINISH_ERROR:
            handle.end(sc.FINISH_ERROR, end_time_ns=end_ns)
        elif reason == "abort":
            handle.end(end_time_ns=end_ns, cancelled=True, reason="abort")
        else:
            handle.end(end_time_ns=end_ns)


_PHASE_ATTRIBUTES = (
    ("queued_time", sc.VLLM_QUEUE_TIME),
    ("prefill_time", sc.VLLM_PREFILL_TIME),
    ("decode_time", sc.VLLM_DECODE_TIME),
    ("inference_time", sc.VLLM_INFERENCE_TIME),
)


def _default_recorder() -> Any:
    """The llmobs recorder (configuring llmobs as any integration would). Server-side spans start with
    ``metrics=False``: the server's own requests must not count as ``gen_ai.client.*`` calls."""
    import llmobs

    return llmobs.get_recorder()


# --- observable instruments, one set per meter ------------------------------------------------------


class _Observers:
    """The gauges and counters of one meter, read from every live front end on it.

    An SDK meter keeps the first registration of an instrument name and drops the callbacks of later
    ones: registered per front end, a second one in the process (another model) would never be reported.
    """

    def __init__(self, meter: Any) -> None:
        self.members: weakref.WeakSet[EngineTelemetry] = weakref.WeakSet()
        each = self._each
        gauges = (
            (sc.METRIC_VLLM_REQUESTS_RUNNING, "running", sc.UNIT_REQUESTS, "Requests in the engine's running batch"),
            (sc.METRIC_VLLM_REQUESTS_WAITING, "waiting", sc.UNIT_REQUESTS, "Requests waiting to be scheduled"),
            (sc.METRIC_VLLM_KV_CACHE_USAGE, "kv_cache_usage", sc.UNIT_RATIO,
             "Fraction of the KV cache in use (0 to 1)"),
        )
        for name, field, unit, description in gauges:
            meter.create_observable_gauge(name, [each(EngineTelemetry._engine_field, field, True)], unit=unit,
                                          description=description)  # fmt: skip
        tokens = "Prompt tokens prefilled (input) and tokens generated (output)"
        meter.create_observable_counter(sc.METRIC_VLLM_TOKENS, [each(EngineTelemetry._token_counts)],
                                        unit=sc.UNIT_TOKENS, description=tokens)
        for name, field, unit, description in (
            (sc.METRIC_VLLM_PREFIX_CACHE_QUERIES, "prefix_queries", sc.UNIT_TOKENS, "Prompt tokens looked up"),
            (sc.METRIC_VLLM_PREFIX_CACHE_HITS, "prefix_hits", sc.UNIT_TOKENS, "Prompt tokens found in the cache"),
            (sc.METRIC_VLLM_PREEMPTIONS, "preemptions", sc.UNIT_PREEMPTIONS, "Requests preempted by the scheduler"),
            (sc.METRIC_VLLM_SPEC_DECODE_DRAFTS, "drafts", sc.UNIT_DRAFTS, "Speculative-decoding drafts"),
            (sc.METRIC_VLLM_SPEC_DECODE_DRAFT_TOKENS, "draft_tokens", sc.UNIT_TOKENS, "Draft tokens proposed"),
            (sc.METRIC_VLLM_SPEC_DECODE_ACCEPTED_TOKENS, "accepted_tokens", sc.UNIT_TOKENS, "Draft tokens accepted"),
        ):
            meter.create_observable_counter(name, [each(EngineTelemetry._engine_field, field, False)], unit=unit,
                                            description=description)  # fmt: skip
        meter.create_observable_counter(sc.METRIC_VLLM_REQUESTS_REJECTED, [each(EngineTelemetry._rejection_counts)],
                                        unit=sc.UNIT_REQUESTS, description="Requests refused by admission control")

    def _each(self, read: Callable[..., list[Observation]], *args: Any) -> Callable[[CallbackOptions], list[Any]]:
        def observe(options: CallbackOptions) -> list[Observation]:
            out: list[Observation] = []
            for member in list(self.members):
                try:
                    out += read(member, *args)
                except Exception as exc:
                    selfstats.failure("vllm.observe_failed", exc)
            return out

        return observe


_OBSERVERS: weakref.WeakKeyDictionary[Any, _Observers] = weakref.WeakKeyDictionary()
_OBSERVERS_LOCK = threading.Lock()


def _observers(meter: Any) -> _Observers:
    with _OBSERVERS_LOCK:
        observers = _OBSERVERS.get(meter)
        if observers is None:
            observers = _OBSERVERS[meter] = _Observers(meter)
        return observers


# --- flushing at exit --------------------------------------------------------------------------------
_LIVE: weakref.WeakSet[EngineTelemetry] = weakref.WeakSet()


def _close_all() -> None:
    for telemetry in list(_LIVE):
        try:
            telemetry.close()
        except Exception as exc:
            selfstats.failure("vllm.close_failed", exc)


def _register_exit_flush() -> None:
    """Flush at exit before any provider shuts down, whenever it was made.

    atexit runs its callbacks last registered first, so a provider made after this import — vLLM's own tracer
    provider, or the application's, when the logger class is passed in code — would be shut down (its own
    exit hook) before an atexit flush could reach it. The threading module's exit hooks run when the main
    thread finishes, before any atexit callback; plain atexit is the fallback where they are missing.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(_close_all)
            return
        except RuntimeError:  # the interpreter is already shutting down its threads
            pass
    atexit.register(_close_all)


_register_exit_flush()

