"""The only way llmobs creates spans and records GenAI metrics.

A framework event becomes ``get_recorder().start(operation, name, parent=...)`` → a :class:`SpanHandle` with
``set_request``, ``set_input``, ``chunk``/``first_token``, ``set_usage``, ``set_output`` and ``end``.
Handles never attach themselves to the OpenTelemetry context: framework callbacks start and end runs on
different threads and asyncio tasks, so parenting is explicit (a handle, a Context, a SpanContext or a
W3C ``traceparent``); with no parent the ambient OTel span (e.g. a web request) is used.

At end the handle records the GenAI metrics (operation duration, token usage, time to first chunk,
cost) for every call, whether or not the span is sampled, then serialises content lazily — only when
the span is recording and the capture mode asks for it — and ends the span.

Why not ``opentelemetry-util-genai``'s ``TelemetryHandler``: it attaches each invocation to the context
by default (opting out is a private ``_attach_to_context`` flag), serialises content eagerly through its
own message types, has no ARMS attributes, cost, explicit start/end times from frameworks that report
after the fact, or trace-wide session propagation. ``bench/bench_recorder.py`` runs it side by side.
"""

from __future__ import annotations

import asyncio
import itertools
import reprlib
import threading
import time
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from operator import sub, truediv
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from llmobs import __version__, aggregated_metrics, config, finisher, plugins, selfstats
from llmobs import semconv as sc
from llmobs.aggregated_metrics import AttributeSet
from llmobs.content import ContentPolicy
from llmobs.lean_span import LeanSpan, LeanTracer, exception_type, lean_tracer
from llmobs.pricing import ModelPrice

#: Pass as ``parent=`` to start a new trace, ignoring the ambient OTel span.
ROOT = object()
#: Exceptions that interrupt an operation rather than fail it: :meth:`SpanHandle.end` given one ends the
#: span as cancelled (``llmobs.status.reason = cancelled``), not as an error.
INTERRUPTS: tuple[type[BaseException], ...] = (GeneratorExit, KeyboardInterrupt, asyncio.CancelledError)
#: Token usage as ``(input, output, cache_read, cache_write, reasoning, total)``; ``None`` where unknown.
Usage = tuple[int | None, int | None, int | None, int | None, int | None, int | None]


class _Rendered(str):
    """Content already serialised by the policy (``set_input(snapshot=True)``): recorded as it is."""

    __slots__ = ()

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_FLAGS = [f"{flags:02x}" for flags in range(256)]  # formatting TraceFlags itself is slow
_Carrier = TypeVar("_Carrier", bound=MutableMapping[str, str])
_END_LOCK = threading.Lock()

# set_request keyword → attribute
_REQUEST_ATTRIBUTES = {
    "model": sc.REQUEST_MODEL,
    "temperature": sc.REQUEST_TEMPERATURE,
    "max_tokens": sc.REQUEST_MAX_TOKENS,
    "top_p": sc.REQUEST_TOP_P,
    "top_k": sc.REQUEST_TOP_K,
    "stop_sequences": sc.REQUEST_STOP_SEQUENCES,
    "seed": sc.REQUEST_SEED,
    "frequency_penalty": sc.REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": sc.REQUEST_PRESENCE_PENALTY,
    "choice_count": sc.REQUEST_CHOICE_COUNT,
    "stream": sc.REQUEST_STREAM,
    "encoding_formats": sc.REQUEST_ENCODING_FORMATS,
    "output_type": sc.OUTPUT_TYPE,
    "server_address": sc.SERVER_ADDRESS,
    "server_port": sc.SERVER_PORT,
    "conversation_id": sc.CONVERSATION_ID,
    "data_source_id": sc.DATA_SOURCE_ID,
    "agent_name": sc.AGENT_NAME,
    "agent_id": sc.AGENT_ID,
    "agent_description": sc.AGENT_DESCRIPTION,
    "tool_name": sc.TOOL_NAME,
    "tool_call_id": sc.TOOL_CALL_ID,
    "tool_description": sc.TOOL_DESCRIPTION,
    "tool_type": sc.TOOL_TYPE,
    "workflow_name": sc.WORKFLOW_NAME,
    "prompt_name": sc.PROMPT_NAME,
}

# Where free-form input/output content goes, by operation (messages have their own attributes).
# A reranker's query and ranked documents go where a retriever's do (as the receiver maps OpenInference's
# reranker documents), so the console and analysis read both the same way.
_INPUT_VALUE_ATTRIBUTE = {
    sc.OP_EXECUTE_TOOL: sc.TOOL_CALL_ARGUMENTS,
    sc.OP_RETRIEVAL: sc.RETRIEVAL_QUERY_TEXT,
    sc.OP_RERANK: sc.RETRIEVAL_QUERY_TEXT,
}
_OUTPUT_VALUE_ATTRIBUTE = {
    sc.OP_EXECUTE_TOOL: sc.TOOL_CALL_RESULT,
    sc.OP_RETRIEVAL: sc.RETRIEVAL_DOCUMENTS,
    sc.OP_RERANK: sc.RETRIEVAL_DOCUMENTS,
}


# Tuples, not ``X | Y`` unions: isinstance takes ~0.08 us with a tuple and ~0.47 us with a union here,
# and these checks run for every attribute value of every span.
_SCALARS = (str, bool, int, float)
_PLAIN_SCALARS = frozenset(_SCALARS)  # exactly these types (no subclass) pass as they are
_SEQUENCES = (list, tuple)
_NUMBERS = (int, float)
_CONTAINERS = (dict, list, tuple, set, frozenset)


def _scalar(value: Any) -> Any:
    """An attribute value OTel accepts: scalars and homogeneous sequences pass, anything else is a string."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, _SEQUENCES):
        # A tuple, as the SDK keeps a sequence value (a list would still be the application's to change).
        items = tuple(v for v in value if v is not None)
        if all(isinstance(v, str) for v in items):
            return items
        if all(isinstance(v, _NUMBERS) and not isinstance(v, bool) for v in items):
            return items
        if all(isinstance(v, bool) for v in items):
            return items
        return tuple(_text(v) for v in items)
    return _text(value)


def _text(value: Any) -> str:
    """``str(value)``, but a container's text is bounded: ``str([big] * 1000)`` would copy every element."""
    if isinstance(value, _CONTAINERS):
        return _BOUNDED.repr(value)
    return str(value)


#: Messages built from parsed JSON are encoded whole first if that JSON was at most this many attribute caps long.
_PARSED_RENDER_FACTOR = 4
_NS_PER_S = itertools.repeat(1e9)  # endless; map() stops at its shortest input
_METRIC_SETS_MAX = 1024  # distinct metric attribute sets kept; then the cache starts again
#: Input content: its set_input key, its attribute, and whether it is made of message parts (which ``json_size``
#: lets render without a walk; tool definitions carry an application's schemas, keys and all).
_INPUT_ATTRIBUTES = (
    ("messages", sc.INPUT_MESSAGES, True),
    ("system", sc.SYSTEM_INSTRUCTIONS, True),
    ("tools", sc.TOOL_DEFINITIONS, False),
)
_NAME_TYPES = frozenset({str, type(None)})  # what a name already is, nearly always: no _name() call per name


def _name(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else _text(value)


_BOUNDED = reprlib.Repr()
_BOUNDED.maxlevel, _BOUNDED.maxstring, _BOUNDED.maxother = 4, 1024, 256
_BOUNDED.maxlist = _BOUNDED.maxtuple = _BOUNDED.maxdict = _BOUNDED.maxset = _BOUNDED.maxfrozenset = 32


class _Derived:
    """Per-settings state derived once (content policy, price cache), rebuilt on every settings swap."""

    __slots__ = ("generation", "policy", "prices", "settings", "span_end_hooks")

    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        self.generation = plugins.generation()
        self.policy = ContentPolicy(
            mode=settings.capture,
            max_bytes=settings.max_attribute_bytes,
            redactors=plugins.redactors(settings),
        )
        self.prices: dict[tuple[str | None, str], ModelPrice | None] = {}
        self.span_end_hooks = plugins.has_hook("llmobs_span_end")

    def price(self, provider: str | None, model: str) -> ModelPrice | None:
        key = (provider, model)
        try:
            return self.prices[key]
        except KeyError:
            if len(self.prices) > 4096:  # bounded: model names can come from user input
                self.prices.clear()
            price = self.prices[key] = plugins.price_of(provider, model, self.settings)
            return price


class Recorder:
    """Creates spans and records GenAI metrics through the given (default: global) OTel providers."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        sdk_spans: bool = False,
    ) -> None:
        """``sdk_spans``: make spans with the SDK's own ``Span`` class even on the SDK's tracer, where the
        recorder otherwise builds them itself (:mod:`llmobs.lean_span`, several times cheaper); the
        ``sdk_spans`` setting does the same for every recorder."""
        tracer_source = tracer_provider or trace
        self._tracer = tracer_source.get_tracer(sc.SCOPE_NAME, __version__)
        self._sdk_spans = sdk_spans
        self._lean: LeanTracer | None = None  # spans without the SDK's Span class, on an SDK tracer
        self._lean_of: Any = None  # the tracer self._lean was made for (a proxy's real tracer can appear later)
        self._finish_later = False  # whether spans of that tracer keep their order of ending with llmobs.finisher
        # On a provider llmobs installed, measurements aggregate in llmobs (far cheaper than the SDK's).
        meter = aggregated_metrics.Meter(sc.SCOPE_NAME, __version__, meter_provider)
        self._duration = meter.histogram(
            sc.METRIC_CLIENT_OPERATION_DURATION, sc.UNIT_SECONDS, "GenAI operation duration", sc.BUCKETS_DURATION
        )
        self._tokens = meter.histogram(
            sc.METRIC_CLIENT_TOKEN_USAGE, sc.UNIT_TOKENS, "Number of input and output tokens used", sc.BUCKETS_TOKENS
        )
        self._ttfc = meter.histogram(
            sc.METRIC_CLIENT_TIME_TO_FIRST_CHUNK,
            sc.UNIT_SECONDS,
            "Time to the first content-bearing chunk of a streaming response",
            sc.BUCKETS_DURATION,
        )
        self._tpoc = meter.histogram(
            sc.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK,
            sc.UNIT_SECONDS,
            "Time between consecutive chunks of a streaming response, after the first",
            sc.BUCKETS_DURATION,
        )
        self._cost = meter.counter(sc.METRIC_COST, sc.UNIT_USD, "Cost of GenAI calls")
        self._derived: _Derived | None = None
        # (operation, provider, model, response model, error type) -> attribute sets of the call's metrics:
        # all of them, input tokens, output tokens. Bounded: models and error types come from applications.
        self._metric_sets: dict[tuple[Any, ...], tuple[AttributeSet, AttributeSet, AttributeSet]] = {}

    def _start_span(self, name: str, context: otel_context.Context | None, kind: SpanKind,
                    attributes: dict[str, Any], start_time: int, parent: trace.Span | None = None) -> trace.Span:
        """A started span: a :class:`~llmobs.lean_span.LeanSpan` on the SDK's own tracer, else the tracer's.
        ``parent``: the span ``context`` holds, when the caller has it already."""
        tracer = self._tracer
        real = getattr(tracer, "_real_tracer", None) or tracer  # the global tracer is a proxy
        if real is not self._lean_of:
            self._lean, self._lean_of = lean_tracer(real), real
            self._finish_later = finisher.watch(getattr(real, "span_processor", None))
        if self._sdk_spans or config.current().sdk_spans:
            return tracer.start_span(name, context=context, kind=kind, attributes=attributes, start_time=start_time)
        lean = self._lean
        if lean is not None:
            try:
                return lean.start_span(name, context, kind, attributes, start_time, parent)
            except Exception as exc:  # an SDK this module does not know after all: the SDK's own spans from now on
                selfstats.failure("recorder.lean_span_failed", exc)
                self._lean = None
        return tracer.start_span(name, context=context, kind=kind, attributes=attributes, start_time=start_time)

    @property
    def derived(self) -> _Derived:
        """State derived from the current settings, rebuilt when the settings object is swapped."""
        # Read for every span: the module globals directly (config.current() loads them when not yet loaded).
        settings = config._current or config.current()
        derived = self._derived
        if derived is None or derived.settings is not settings or derived.generation != plugins._generation:
            derived = self._derived = _Derived(settings)
        return derived

    def start(
        self,
        operation: str,
        name: str | None = None,
        *,
        parent: Any = None,
        provider: str | None = None,
        model: str | None = None,
        framework: str | None = None,
        kind: str | None = None,
        remote: bool | None = None,
        attributes: Mapping[str, Any] | None = None,
        start_time_ns: int | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        metrics: bool = True,
    ) -> SpanHandle:
        """Start a span; never raises (a failure yields a handle over a non-recording span, counted).

        ``metrics=False``: the span records no ``gen_ai.client.*`` metrics — for a server-side span of a
        request whose client counts it already (an inference server's own request spans).
        """
        try:
            handle = SpanHandle(
                self, operation, name, parent, provider, model, framework, kind, remote,
                attributes, start_time_ns, session_id, user_id,
            )  # fmt: skip
            handle._no_metrics = not metrics
            return handle
        except Exception as exc:
            selfstats.failure("recorder.start_failed", exc)
            return SpanHandle.non_recording(self, operation)

    def record_call(
        self,
        operation: str,
        *,
        duration_s: float,
        provider: str | None = None,
        model: str | None = None,
        response_model: str | None = None,
        usage: Usage | None = None,
        ttft_s: float | None = None,
        error_type: str | None = None,
        span_context: trace.SpanContext | None = None,
    ) -> dict[str, Any]:
        """Record the GenAI metrics of a call that something else traced (a framework's own span, a
        server's request) — the same series, attributes and prices as a handle's ``end()``.

        ``usage`` is ``(input, output, cache_read, cache_write, reasoning, total)``; ``span_context``: that
        span's, for the exemplars of an SDK meter provider (else the current span's). Returns the usage
        attributes (tokens, total, cost) for the caller to put on its span. Never raises.
        """
        try:
            call = self._call(operation, provider, model, response_model, usage, error_type)
            if span_context is not None:
                call.span = trace.NonRecordingSpan(span_context)
            if ttft_s is not None:
                call._ttft_ns = round(ttft_s * 1e9)
            usage_attributes = call._usage_attributes(self.derived)
            call._record_metrics(max(duration_s, 0.0), usage_attributes)
            return usage_attributes
        except Exception as exc:
            selfstats.failure("recorder.record_call_failed", exc)
            return {}

    def usage_attributes(
        self,
        operation: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        response_model: str | None = None,
        usage: Usage | None = None,
    ) -> dict[str, Any]:
        """The usage attributes (tokens, total, cost) :meth:`record_call` would return, recording no
        metrics — for a span whose call another span already counted. Never raises."""
        try:
            call = self._call(operation, provider, model, response_model, usage, None)
            return call._usage_attributes(self.derived)
        except Exception as exc:
            selfstats.failure("recorder.record_call_failed", exc)
            return {}

    def _call(
        self,
        operation: str,
        provider: str | None,
        model: str | None,
        response_model: str | None,
        usage: Usage | None,
        error_type: str | None,
    ) -> SpanHandle:
        call = SpanHandle.non_recording(self, operation)  # no span of its own: only the metric code runs
        call.provider, call.model, call.response_model = provider, model, response_model
        call.error_type = error_type
        call._usage = usage
        return call


def _ids_source(parent: trace.Span, parent_ctx: otel_context.Context | None) -> Mapping[str, Any]:
    """Attributes to inherit session and user ids from: the parent span's (``parent``, the span of ``parent_ctx``),
    else — for a parent given by its W3C header, as a framework's task carrying its caller's ``traceparent``
    does — the active span's when it is that same span."""
    found = getattr(parent, "attributes", None)
    if found is None and parent_ctx is not None:
        ambient = trace.get_current_span()
        wanted, active = parent.get_span_context(), ambient.get_span_context()
        if active.is_valid and (active.trace_id, active.span_id) == (wanted.trace_id, wanted.span_id):
            found = getattr(ambient, "attributes", None)
    return found or _NO_ATTRIBUTES


_NO_ATTRIBUTES: Mapping[str, Any] = {}


def _parent_context(parent: Any) -> tuple[otel_context.Context | None, SpanHandle | None]:
    """(OTel context to parent on, parent handle if any) from any accepted parent form."""
    if parent is None:
        return None, None  # the ambient context
    if isinstance(parent, SpanHandle):
        return parent.context, parent
    if parent is ROOT:
        return otel_context.Context(), None
    if isinstance(parent, otel_context.Context):
        return parent, None
    if isinstance(parent, SpanContext):
        return trace.set_span_in_context(NonRecordingSpan(parent)), None
    if isinstance(parent, trace.Span):
        return trace.set_span_in_context(parent), None
    if isinstance(parent, str):
        return _PROPAGATOR.extract({"traceparent": parent}), None
    if isinstance(parent, Mapping):
        return _PROPAGATOR.extract(parent), None
    raise TypeError(f"unsupported parent {type(parent).__name__}")


class SpanHandle:
    """One operation in flight. Every method is safe to call from any thread and never raises."""

    __slots__ = (
        "__weakref__",
        "_chunk_stamps",
        "_context",
        "_ended",
        "_input",
        "_mono0",
        "_no_metrics",
        "_output",
        "_pending",
        "_recorder",
        "_root",
        "_ttft_ns",
        "_usage",
        "_user_ttft_ns",
        "error_type",
        "framework",
        "kind",
        "model",
        "operation",
        "provider",
        "response_model",
        "session_id",
        "span",
        "start_ns",
        "user_id",
    )

    def __init__(
        self,
        recorder: Recorder,
        operation: str,
        name: str | None,
        parent: Any,
        provider: str | None,
        model: str | None,
        framework: str | None,
        kind: str | None,
        remote: bool | None,
        attributes: Mapping[str, Any] | None,
        start_time_ns: int | None,
        session_id: str | None,
        user_id: str | None,
    ) -> None:
        # Names come from frameworks' metadata: text, whatever they were (a container's text bounded).
        given = {type(name), type(provider), type(model), type(framework), type(session_id), type(user_id)}
        if not given <= _NAME_TYPES:
            name, provider, model, framework = _name(name), _name(provider), _name(model), _name(framework)
            session_id, user_id = _name(session_id), _name(user_id)
        self._recorder = recorder
        self.operation = operation
        self.kind = kind or sc.KIND_OF_OPERATION.get(operation, sc.KIND_TASK)
        self.provider = provider
        self.model = model
        self.response_model: str | None = None
        self.error_type: str | None = None
        self._ended = False
        self._context: otel_context.Context | None = None
        self._input: dict[str, Any] | None = None
        self._output: dict[str, Any] | None = None
        self._pending: dict[str, Any] = {}
        self._usage: tuple[int | None, ...] | None = None
        self._ttft_ns: int | None = None
        # Elapsed ns of each content-bearing chunk from the first on, while per-chunk metrics are kept.
        self._chunk_stamps: list[int] | None = None
        self._user_ttft_ns: int | None = None
        self._no_metrics = False

        parent_ctx, parent_handle = _parent_context(parent)
        parent_span: trace.Span | None = None  # looked up once here when needed, for the span's start too
        if parent_handle is not None:
            parent_span = parent_handle.span
            # None means "this handle": a root referring to itself would leave every root handle (its span,
            # its context) to the cycle collector instead of being freed when the framework drops it.
            self._root: SpanHandle | None = parent_handle._root or parent_handle
            session_id = session_id or parent_handle.session_id
            user_id = user_id or parent_handle.user_id
            framework = framework or parent_handle.framework
        else:
            self._root = None
            if session_id is None or user_id is None:
                parent_span = trace.get_current_span(parent_ctx)
                inherited = _ids_source(parent_span, parent_ctx)
                session_id = session_id or inherited.get(sc.SESSION_ID)
                user_id = user_id or inherited.get(sc.USER_ID)
        self.session_id = session_id
        self.user_id = user_id
        self.framework = framework

        attrs: dict[str, Any] = {sc.OPERATION_NAME: operation, sc.SPAN_KIND: self.kind}
        if provider:
            attrs[sc.PROVIDER_NAME] = provider
        if model:
            attrs[sc.REQUEST_MODEL] = model
        if framework:
            attrs[sc.FRAMEWORK] = framework
        if session_id:
            attrs[sc.SESSION_ID] = session_id
            attrs[sc.CONVERSATION_ID] = session_id
        if user_id:
            attrs[sc.USER_ID] = user_id
        if name and operation not in sc.MODEL_NAMED_OPERATIONS:
            attrs[sc.COMPONENT_NAME] = name
        if attributes:
            for key, value in attributes.items():
                if value is not None and isinstance(key, str) and key:
                    attrs[key] = _scalar(value)

        if remote is None:
            remote = operation in sc.INFERENCE_OPERATIONS
        if start_time_ns is None:
            self._mono0: int | None = time.perf_counter_ns()
            self.start_ns = time.time_ns()
        else:
            self._mono0 = None
            self.start_ns = start_time_ns
        self.span = recorder._start_span(
            _span_name(operation, name, model), parent_ctx, SpanKind.CLIENT if remote else SpanKind.INTERNAL, attrs,
            self.start_ns, parent_span,
        )

    @classmethod
    def non_recording(cls, recorder: Recorder, operation: str) -> SpanHandle:
        """A handle that records nothing, for when starting a real span failed."""
        handle = cls.__new__(cls)
        for slot in cls.__slots__[1:]:
            setattr(handle, slot, None)
        handle._recorder, handle.operation, handle.kind = recorder, operation, sc.KIND_TASK
        handle._root, handle._ended, handle.start_ns = None, True, time.time_ns()
        handle._pending = None
        handle.span = trace.INVALID_SPAN
        return handle

    # --- identity -------------------------------------------------------------------------------
    @property
    def context(self) -> otel_context.Context:
        """An OTel context holding this span, for parenting children or attaching in user code."""
        ctx = self._context
        if ctx is None:
            ctx = self._context = trace.set_span_in_context(self.span)
        return ctx

    @property
    def traceparent(self) -> str:
        """The W3C ``traceparent`` of this span, to propagate to a remote service."""
        return self.inject({}).get("traceparent", "")

    def inject(self, carrier: _Carrier) -> _Carrier:
        """Put this span's W3C ``traceparent`` (and ``tracestate``) into ``carrier``, e.g. request headers.

        Written as W3C trace context's propagator writes them (nothing for a span that is not valid), from the
        span context directly: the propagator resolves the span from a context and sets each header through
        a setter, several times the cost on a client's per-request path."""
        span_context = self.span.get_span_context()
        if span_context.is_valid:
            trace_id, span_id = span_context.trace_id.to_bytes(16, "big"), span_context.span_id.to_bytes(8, "big")
            carrier["traceparent"] = f"00-{trace_id.hex()}-{span_id.hex()}-{_TRACE_FLAGS[span_context.trace_flags]}"
            if span_context.trace_state:
                carrier["tracestate"] = span_context.trace_state.to_header()
        return carrier

    @property
    def trace_id(self) -> str:
        return format(self.span.get_span_context().trace_id, "032x")

    @property
    def is_recording(self) -> bool:
        return self.span.is_recording()

    # --- while in flight ------------------------------------------------------------------------
    def set_attribute(self, key: str, value: Any) -> None:
        """Set an attribute; attributes are gathered and handed to the span in one call at end."""
        if value is not None and self._pending is not None:
            if not isinstance(key, str) or not key:  # the SDK drops such a key too
                selfstats.count("recorder.invalid_attribute_key")
                return
            try:
                self._pending[key] = value if type(value) in _PLAIN_SCALARS else _scalar(value)
            except Exception as exc:
                selfstats.failure("recorder.attribute_failed", exc)

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, *, at_ns: int | None = None) -> None:
        """An event on the span now (or at ``at_ns``), its values made acceptable as :meth:`set_attribute`
        makes them — a framework's value is never handed to the SDK as is. Never raises."""
        try:
            if self._ended or not self.span.is_recording():
                return
            clean = {str(k): _scalar(v) for k, v in (attributes or {}).items() if v is not None}
            self.span.add_event(str(name), clean, timestamp=at_ns)
        except Exception as exc:
            selfstats.failure("recorder.event_failed", exc)

    def keep(self, reason: str = "code") -> None:
        """Keep this span's trace whatever the sampling ratio (e.g. a VIP user, a debug session)."""
        self.set_attribute(sc.SAMPLING_FORCE, reason)

    def counted_elsewhere(self) -> None:
        """Another span counts this call (it wraps an inner model call that has its own span): this one
        records no ``gen_ai.client.*`` metrics, so calls, tokens and cost are counted once."""
        self._no_metrics = True

    def set_request(self, **params: Any) -> None:
        """Request parameters by their plain names (``model``, ``temperature``, ``max_tokens``, ...)."""
        model = _name(params.get("model"))
        if model and model != self.model:
            self.model = model
            if self.operation in sc.MODEL_NAMED_OPERATIONS:
                self.span.update_name(_span_name(self.operation, None, model))
        pending = self._pending  # None once ended
        for key, value in params.items():  # set_attribute's work, inline: a call sets several of these
            attribute = _REQUEST_ATTRIBUTES.get(key)
            if attribute is None:
                selfstats.count("recorder.unknown_request_parameter")
            elif value is not None and pending is not None:
                try:
                    pending[attribute] = value if type(value) in _PLAIN_SCALARS else _scalar(value)
                except Exception as exc:
                    selfstats.failure("recorder.attribute_failed", exc)

    def set_input(
        self,
        messages: Any = None,
        *,
        system: Any = None,
        tools: Any = None,
        value: Any = None,
        snapshot: bool = False,
        json_size: int | None = None,
    ) -> None:
        """Input content, kept by reference and serialised only if the span is recorded with content.

        ``messages``: GenAI input messages (see ``llmobs.content`` builders); ``system``: system
        instructions given apart from the messages; ``tools``: tool definitions; ``value``: anything
        else (a chain's input, a tool's arguments, a retrieval query). ``snapshot``: serialise ``value``
        now rather than at span end — for a value the operation itself may change in place (a chain's state),
        which would otherwise be recorded as it is at the end. The same work, done earlier. ``json_size``:
        ``messages`` and ``system`` were built by ``llmobs.content``'s builders from data parsed from JSON text of
        this many bytes (a request body), which a small text lets them render without a walk
        (:meth:`ContentPolicy.render_parsed_messages`).
        """
        if snapshot and value is not None:
            policy = self._recorder.derived.policy
            if (policy.mode.on_span or policy.mode.on_event) and self.span.is_recording():
                value = _Rendered(policy.render_text(value))
        self._input = {"messages": messages, "system": system, "tools": tools, "value": value, "json_size": json_size}

    def set_output(
        self,
        messages: Any = None,
        *,
        value: Any = None,
        finish_reasons: list[str] | tuple[str, ...] | None = None,
        response_id: str | None = None,
        response_model: str | None = None,
        json_size: int | None = None,
    ) -> None:
        """Output content (lazy, like :meth:`set_input`; ``json_size`` too, of a response body) and response
        metadata (set now)."""
        self._output = {"messages": messages, "value": value, "json_size": json_size}
        if finish_reasons and self._pending is not None:  # texts by construction: no set_attribute pass
            reasons = finish_reasons if isinstance(finish_reasons, _SEQUENCES) else [finish_reasons]
            self._pending[sc.RESPONSE_FINISH_REASONS] = tuple([r if type(r) is str else _text(r) for r in reasons])
        if response_id:
            self.set_attribute(sc.RESPONSE_ID, response_id)
        if response_model:
            response_model = self.response_model = _name(response_model)
            self.set_attribute(sc.RESPONSE_MODEL, response_model)

    def set_usage(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        *,
        cache_read: int | None = None,
        cache_write: int | None = None,
        reasoning: int | None = None,
        total: int | None = None,
    ) -> None:
        """Token usage of the call (replaces earlier usage). ``input_tokens`` includes cached tokens."""
        self._usage = (input_tokens, output_tokens, cache_read, cache_write, reasoning, total)

    def first_token(self, at_ns: int | None = None) -> None:
        """Mark the first content-bearing chunk (idempotent). ``at_ns``: wall-clock time, if after the fact."""
        if self._ttft_ns is not None or self._ended:
            return
        ttft = self._elapsed_ns(at_ns)
        self._ttft_ns = ttft
        if not self._no_metrics:
            self._chunk_stamps = [ttft]
        root = self._root or self
        if root._user_ttft_ns is None and not root._ended:
            root._user_ttft_ns = ttft + (self.start_ns - root.start_ns)

    def chunk(self, at_ns: int | None = None, *, perf_ns: int | None = None) -> None:
        """A content-bearing streamed chunk arrived: the first marks TTFT, later ones time per chunk. ``at_ns``:
        its wall-clock time, if after the fact; ``perf_ns``: the ``time.perf_counter_ns()`` reading taken when it
        arrived, for a chunk marked later (a stream whose events are read several at a time)."""
        stamps = self._chunk_stamps
        if stamps is None:  # the first chunk; or per-chunk metrics are off
            if self._ttft_ns is None:
                self.first_token(at_ns if perf_ns is None else self.clock_ns(perf_ns))
            return
        if self._ended:
            return
        # Only a time stamp per chunk: end() turns them into intervals and records them all at once.
        mono0 = self._mono0
        if at_ns is None and mono0 is not None:
            stamps.append((time.perf_counter_ns() if perf_ns is None else perf_ns) - mono0)
        else:
            stamps.append(self._elapsed_ns(at_ns if perf_ns is None else self.clock_ns(perf_ns)))

    def finish_later(self, work: Callable[[], object], *, finalizer: bool = False) -> None:
        """Run ``work``, which ends this handle (at a ``clock_ns()`` taken when the call ended), later and with other
        calls' (:mod:`llmobs.finisher`) — or now, where the span's tracer provider cannot keep spans' order of
        ending with it, or where an ``llmobs_span_end`` plugin is registered (it may read the application's
        context, as a tenant kept in a context variable: later, on another thread, that would be another
        call's). Only for work over data the caller owns, never the application's. ``finalizer``: called from a
        ``__del__`` (see :meth:`llmobs.finisher.Finisher.submit`)."""
        recorder = self._recorder
        if recorder._finish_later and not recorder.derived.span_end_hooks:
            finisher.submit(work, self.span.get_span_context().trace_id, finalizer=finalizer)
        else:
            finisher.run(work)

    def clock_ns(self, perf_ns: int | None = None) -> int:
        """Now on this span's clock (its start plus the monotonic time since): the ``end_time_ns`` of an end
        that is recorded later, as work queued on :mod:`llmobs.finisher` does. ``perf_ns``: at that earlier
        ``time.perf_counter_ns()`` reading instead of now — when an event's time is taken as it happens and the
        event is read later."""
        mono0 = self._mono0
        if perf_ns is None:
            return self.start_ns + (time.perf_counter_ns() - mono0) if mono0 is not None else time.time_ns()
        if mono0 is not None:
            return self.start_ns + (perf_ns - mono0)
        return time.time_ns() - (time.perf_counter_ns() - perf_ns)

    def _elapsed_ns(self, at_ns: int | None) -> int:
        if at_ns is not None:
            return max(at_ns - self.start_ns, 0)
        if self._mono0 is not None:
            return time.perf_counter_ns() - self._mono0
        return max(time.time_ns() - self.start_ns, 0)

    def _metric_attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {sc.OPERATION_NAME: self.operation}
        attrs[sc.PROVIDER_NAME] = self.provider or sc.PROVIDER_UNKNOWN
        if self.model:
            attrs[sc.REQUEST_MODEL] = self.model
        if self.response_model:
            attrs[sc.RESPONSE_MODEL] = self.response_model
        if self.error_type:
            attrs[sc.ERROR_TYPE] = self.error_type
        return attrs

    def _metric_sets(self) -> tuple[AttributeSet, AttributeSet, AttributeSet]:
        """This call's metric attributes as attribute sets (all metrics, input tokens, output tokens), made once
        per distinct set and kept by the recorder."""
        cache = self._recorder._metric_sets
        ident = (self.operation, self.provider, self.model, self.response_model, self.error_type)
        sets = cache.get(ident)
        if sets is None:
            attrs = self._metric_attributes()
            sets = (
                AttributeSet(attrs),
                AttributeSet({**attrs, sc.TOKEN_TYPE: sc.TOKEN_TYPE_INPUT}),
                AttributeSet({**attrs, sc.TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT}),
            )
            if len(cache) >= _METRIC_SETS_MAX:
                cache.clear()
            cache[ident] = sets
        return sets

    # --- end --------------------------------------------------------------------------------------
    def end(
        self,
        error: BaseException | str | None = None,
        *,
        end_time_ns: int | None = None,
        cancelled: bool = False,
        reason: str | None = None,
    ) -> None:
        """End the span once (later calls are ignored): metrics first, then content, then the span.

        ``error``: the exception (or a low-cardinality error type) if the operation failed; one of
        :data:`INTERRUPTS` means it was stopped, not failed, and counts as ``cancelled``.
        ``cancelled``: the run was interrupted or abandoned — not an error; ``reason`` says why.
        """
        with _END_LOCK:
            if self._ended:
                return
            self._ended = True
        try:
            self._finish(error, end_time_ns, cancelled, reason)
        except Exception as exc:
            selfstats.failure("recorder.end_failed", exc)
            try:
                self.span.end(end_time=end_time_ns)
            except Exception:
                selfstats.count("recorder.span_lost")

    def _finish(
        self, error: BaseException | str | None, end_time_ns: int | None, cancelled: bool, reason: str | None
    ) -> None:
        span = self.span
        if isinstance(error, INTERRUPTS):
            error, cancelled = None, True
        if end_time_ns is None:
            end_time_ns = self.clock_ns()
        duration_s = max(end_time_ns - self.start_ns, 0) / 1e9
        recording = span.is_recording()
        derived = self._recorder.derived

        pending = self._pending
        if error is not None:
            self.error_type = error if isinstance(error, str) else type(error).__qualname__
            policy = derived.policy  # error messages carry keys and user data too: scrubbed and redacted
            message = None if isinstance(error, str) else policy.render_text(_message(error))
            span.set_status(Status(StatusCode.ERROR, message))
            pending[sc.ERROR_TYPE] = self.error_type
            if isinstance(error, BaseException) and recording:
                span.add_event(sc.EVENT_EXCEPTION, _exception_event(error, policy), timestamp=end_time_ns)
        elif cancelled:
            pending[sc.STATUS_REASON] = reason or "cancelled"
        elif reason:
            pending[sc.STATUS_REASON] = reason

        usage_attrs = self._usage_attributes(derived)
        if recording:
            pending.update(usage_attrs)
            if self._ttft_ns is not None:
                pending[sc.RESPONSE_TIME_TO_FIRST_CHUNK] = self._ttft_ns / 1e9
                pending[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS] = self._ttft_ns
            if self._root is None and self._user_ttft_ns is not None:
                pending[sc.USER_TIME_TO_FIRST_TOKEN_NS] = self._user_ttft_ns
            policy = derived.policy
            if (self._input or self._output) and (policy.mode.on_span or policy.mode.on_event):
                self._record_content(policy)
            if derived.span_end_hooks:
                plugins.call("llmobs_span_end", handle=self)
            if type(span) is LeanSpan:
                span.set_valid_attributes(pending)
            else:
                span.set_attributes(pending)

        self._record_metrics(duration_s, usage_attrs)
        span.end(end_time=end_time_ns)
        self._input = self._output = self._pending = None  # release references to application objects

    def _usage_attributes(self, derived: _Derived) -> dict[str, Any]:
        if self._usage is None:
            return {}
        inp, out, cache_read, cache_write, reasoning, total = self._usage
        attrs: dict[str, Any] = {}
        if inp is not None:
            attrs[sc.USAGE_INPUT_TOKENS] = inp
        if out is not None:
            attrs[sc.USAGE_OUTPUT_TOKENS] = out
        if cache_read:
            attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] = cache_read
        if cache_write:
            attrs[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] = cache_write
            attrs[sc.USAGE_CACHE_WRITE_INPUT_TOKENS] = cache_write
        if reasoning:
            attrs[sc.USAGE_REASONING_OUTPUT_TOKENS] = reasoning
        if total is None and (inp is not None or out is not None):
            total = (inp or 0) + (out or 0)
        if total is not None:
            attrs[sc.USAGE_TOTAL_TOKENS] = total
        model = self.response_model or self.model
        if model and (inp or out):
            price = derived.price(self.provider, model)
            if price is None and self.response_model and self.model:
                price = derived.price(self.provider, self.model)
            if price is not None:
                in_cost, out_cost = price.cost(inp or 0, out or 0, cache_read or 0, cache_write or 0)
                attrs[sc.COST_INPUT_USD] = in_cost
                attrs[sc.COST_OUTPUT_USD] = out_cost
                attrs[sc.COST_USD] = in_cost + out_cost
        return attrs

    def _record_content(self, policy: ContentPolicy) -> None:
        attrs: dict[str, str] = {}
        if self._input:
            messages = _messages_renderer(policy, self._input["json_size"])
            for key, attribute, of_parts in _INPUT_ATTRIBUTES:
                if self._input[key] is not None:
                    attrs[attribute] = (messages if of_parts else policy.render)(self._input[key])
            value = self._input["value"]
            if value is not None:
                target = _INPUT_VALUE_ATTRIBUTE.get(self.operation, sc.INPUT_VALUE)
                attrs[target] = str(value) if type(value) is _Rendered else policy.render_text(value)
        if self._output:
            if self._output["messages"] is not None:
                messages = _messages_renderer(policy, self._output["json_size"])
                attrs[sc.OUTPUT_MESSAGES] = messages(self._output["messages"])
            if self._output["value"] is not None:
                target = _OUTPUT_VALUE_ATTRIBUTE.get(self.operation, sc.OUTPUT_VALUE)
                value = self._output["value"]
                attrs[target] = policy.render(value) if target == sc.RETRIEVAL_DOCUMENTS else policy.render_text(value)
        if not attrs:
            return
        if policy.mode.on_span:
            self._pending.update(attrs)
        if policy.mode.on_event:
            self.span.add_event(sc.EVENT_INFERENCE_DETAILS, attrs)

    def _record_metrics(self, duration_s: float, usage_attrs: Mapping[str, Any]) -> None:
        if self.operation == sc.OP_CHAIN or self._no_metrics:
            return
        recorder = self._recorder
        span = None if self.span is trace.INVALID_SPAN else self.span  # names the exemplars (none: the current span)
        try:
            attrs, input_attrs, output_attrs = self._metric_sets()
            measurements = [(recorder._duration, duration_s, attrs)]
            if self.operation in sc.INFERENCE_OPERATIONS:
                if self._ttft_ns is not None:
                    measurements.append((recorder._ttfc, self._ttft_ns / 1e9, attrs))
                inp = usage_attrs.get(sc.USAGE_INPUT_TOKENS)
                out = usage_attrs.get(sc.USAGE_OUTPUT_TOKENS)
                if inp is not None:
                    measurements.append((recorder._tokens, inp, input_attrs))
                if out is not None:
                    measurements.append((recorder._tokens, out, output_attrs))
                cost = usage_attrs.get(sc.COST_USD)
                if cost:
                    measurements.append((recorder._cost, cost, attrs))
                stamps = self._chunk_stamps
                if stamps is not None and len(stamps) > 1:
                    self._chunk_stamps = None
                    # (later - earlier) / 1e9 for each pair, by C code: a stream has a stamp per chunk.
                    intervals = list(map(truediv, map(sub, itertools.islice(stamps, 1, None), stamps), _NS_PER_S))
                    recorder._tpoc.record_many(intervals, attrs, span)
            # The call's own span for exemplars: the end of a call may be recorded later, in another context.
            aggregated_metrics.measure_together(measurements, span)
        except Exception as exc:
            selfstats.failure("recorder.metric_failed", exc)


def _messages_renderer(policy: ContentPolicy, json_size: int | None) -> Callable[[Any], str]:
    """How messages are rendered: built from parsed JSON without a walk when that JSON was at most a few
    attributes long (longer content is cut anyway, by the full path, whose walk stops at the cap)."""
    if json_size is not None and json_size <= _PARSED_RENDER_FACTOR * policy.max_bytes:
        return policy.render_parsed_messages
    return policy.render


def _span_name(operation: str, name: str | None, model: str | None) -> str:
    if operation in sc.MODEL_NAMED_OPERATIONS:
        return f"{operation} {model}" if model else (name or operation)
    if operation == sc.OP_CHAIN:
        return name or operation
    return f"{operation} {name}" if name else operation


def _exception_event(exc: BaseException, policy: ContentPolicy) -> dict[str, str]:
    """The exception event as the SDK's ``record_exception`` writes it, but with message and stack trace
    through the content policy, and never raising (the SDK's raises for an exception whose __str__ does)."""
    try:
        message = str(exc)
    except Exception:
        message = ""
    try:
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:
        stack = ""
    return {
        sc.EXCEPTION_TYPE: exception_type(exc),
        sc.EXCEPTION_MESSAGE: policy.render_text(message),
        sc.EXCEPTION_STACKTRACE: policy.render_text(stack),
        sc.EXCEPTION_ESCAPED: "False",
    }


def _message(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"[:1024]
    except Exception:
        return type(exc).__name__


_default: Recorder | None = None
_default_lock = threading.Lock()


def get_recorder() -> Recorder:
    """The process-wide recorder over the global OTel providers.

    On first use, if the application has installed no OpenTelemetry SDK provider, llmobs configures
    itself (``llmobs.configure()``: the embedded store, or OTLP when ``OTEL_EXPORTER_OTLP_*`` is set),
    unless ``LLMOBS_AUTO_CONFIGURE=false``.
    """
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                from llmobs import export

                export.auto_configure()
                _default = Recorder()
    return _default
