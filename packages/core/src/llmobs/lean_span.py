"""Recorder spans on an OpenTelemetry SDK tracer, without the SDK's ``Span`` class.

The SDK's ``Span`` validates every attribute value (the recorder has already made them valid), takes a
lock per call and copies itself into a ``ReadableSpan`` at end: 35-50 µs per span here, more than all
of llmobs' own work on a call. A :class:`LeanSpan` keeps a recorder span in plain containers and hands
the span processors one ``ReadableSpan`` built at end.

Everything else is the tracer's own: its sampler (with the attributes and trace state it returns), id
generator, span limits, resource, instrumentation scope and span processors (``on_start`` with the live
span, ``_on_ending``, then ``on_end``), so processors and exporters get what the SDK itself would have
made; a test compares the two span for span. :func:`lean_tracer` offers this only for the SDK's own
``Tracer`` with its internal metrics off; any other tracer is used through ``start_span`` as usual.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, StaticSampler
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from llmobs import semconv as sc

_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
#: W3C trace context level 2's "random trace id" flag, on API versions that have it.
_RANDOM = getattr(TraceFlags, "RANDOM_TRACE_ID", None)
_END_LOCK = threading.Lock()
_REQUIRED = ("sampler", "id_generator", "span_processor", "resource", "instrumentation_info", "_span_limits",
             "_instrumentation_scope")


def lean_tracer(tracer: trace.Tracer) -> LeanTracer | None:
    """A :class:`LeanTracer` over ``tracer`` if it is the SDK's own ``Tracer`` as this module knows it."""
    if type(tracer) is not sdk_trace.Tracer or not all(hasattr(tracer, name) for name in _REQUIRED):
        return None
    tracer_metrics = getattr(tracer, "_tracer_metrics", None)  # the SDK's opt-in metrics about its own spans
    if tracer_metrics is not None and type(tracer_metrics).__name__ != "NoOpTracerMetrics":
        return None
    return LeanTracer(tracer)


class LeanTracer:
    """Starts :class:`LeanSpan` objects on one SDK tracer, as its ``start_span`` starts SDK spans."""

    __slots__ = ("_decisions", "_enabled", "_ids", "_random_ids", "_sampler", "tracer")

    def __init__(self, tracer: sdk_trace.Tracer) -> None:
        self.tracer = tracer
        self._sampler = tracer.sampler
        self._decisions = _static_decisions(self._sampler)
        self._ids = tracer.id_generator
        self._enabled = getattr(tracer, "_is_enabled", None)  # a tracer configurator can turn it off
        self._random_ids = getattr(self._ids, "is_trace_id_random", None) if _RANDOM is not None else None

    def start_span(self, name: str, context: otel_context.Context | None, kind: SpanKind,
                   attributes: dict[str, Any], start_time: int | None, parent_span: trace.Span | None = None,
                   ) -> trace.Span:
        """A started span (``on_start`` called) or, if the sampler drops it, a non-recording span.
        ``attributes`` must be valid OTel attribute values already; ``parent_span``: the span of ``context``
        if the caller looked it up already."""
        parent = (parent_span if parent_span is not None else trace.get_current_span(context)).get_span_context()
        if self._enabled is not None and not self._enabled():
            return NonRecordingSpan(parent)
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = self._ids.generate_trace_id()
        else:
            trace_id = parent.trace_id
        decisions = self._decisions
        if decisions is not None:  # the sampler's own decision, without its three context lookups
            if parent is None:
                decision, trace_state = decisions[0], None
            else:
                decision = decisions[(2 if parent.is_remote else 0) + (1 if parent.trace_flags.sampled else 2)]
                trace_state = parent.trace_state
            chosen: Any = attributes
        else:
            result = self._sampler.should_sample(context, trace_id, name, kind, attributes, ())
            decision, trace_state = result.decision, result.trace_state
            chosen = result.attributes  # as in the SDK: the span starts with what the sampler returns
        flags = _SAMPLED if decision.is_sampled() else _NOT_SAMPLED
        if self._random_ids is not None:
            random = self._random_ids() if parent is None else getattr(parent.trace_flags, "random_trace_id", False)
            if random:
                flags = TraceFlags(flags | _RANDOM)
        span_context = SpanContext(trace_id, self._ids.generate_span_id(), is_remote=False, trace_flags=flags,
                                   trace_state=trace_state)
        if not decision.is_recording():
            return NonRecordingSpan(span_context)
        # A copy; a mapping proxy's (what SamplingResult holds) copies its dict at C speed.
        own = {} if not chosen else chosen.copy() if type(chosen) in (dict, MappingProxyType) else dict(chosen)
        span = LeanSpan(self.tracer, name, span_context, parent, kind, own,
                        start_time if start_time is not None else time.time_ns())
        self.tracer.span_processor.on_start(span, parent_context=context)
        return span


def _static_decisions(sampler: Any) -> tuple[Decision, ...] | None:
    """For the SDK's fixed samplers (``ALWAYS_ON``, ``ALWAYS_OFF``, and ``ParentBased`` over them, the default),
    their decision with no parent, then with a local parent sampled and not, then a remote one sampled and not."""
    if type(sampler) is StaticSampler:
        return (sampler._decision,) * 5
    if type(sampler) is not ParentBased:
        return None
    delegates = (sampler._root, sampler._remote_parent_sampled, sampler._remote_parent_not_sampled,
                 sampler._local_parent_sampled, sampler._local_parent_not_sampled)  # fmt: skip
    if not all(type(d) is StaticSampler for d in delegates):
        return None
    root, remote_sampled, remote_unsampled, local_sampled, local_unsampled = (d._decision for d in delegates)
    # Indexed as start_span does: 0 no parent, else 2 * remote + (1 sampled | 2 unsampled).
    return (root, local_sampled, local_unsampled, remote_sampled, remote_unsampled)


class LeanSpan(trace.Span):
    """A recording span of the recorder: the OTel span API, read access as a ``ReadableSpan`` offers it (for
    span processors' ``on_start``), and :meth:`end` handing processors a ``ReadableSpan``."""

    __slots__ = ("_attributes", "_context", "_end_time", "_events", "_kind", "_links", "_name", "_parent",
                 "_start_time", "_status", "_tracer")

    def __init__(self, tracer: sdk_trace.Tracer, name: str, context: SpanContext, parent: SpanContext | None,
                 kind: SpanKind, attributes: dict[str, Any], start_time: int) -> None:
        self._tracer = tracer
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attributes: dict[str, Any] | BoundedAttributes = attributes
        limits = tracer._span_limits
        if limits.max_span_attribute_length is not None or len(attributes) > _room(limits):
            self._bound()
        self._events: list[Event] | None = None
        self._links: list[Link] | None = None
        self._status = _UNSET
        self._start_time = start_time
        self._end_time: int | None = None

    # --- read access, as ReadableSpan ----------------------------------------------------------------
    name = property(lambda self: self._name)
    context = property(lambda self: self._context)
    parent = property(lambda self: self._parent)
    kind = property(lambda self: self._kind)
    status = property(lambda self: self._status)
    start_time = property(lambda self: self._start_time)
    end_time = property(lambda self: self._end_time)
    attributes = property(lambda self: MappingProxyType(self._attributes))
    events = property(lambda self: tuple(self._events or ()))
    links = property(lambda self: tuple(self._links or ()))
    resource = property(lambda self: self._tracer.resource)
    instrumentation_scope = property(lambda self: self._tracer._instrumentation_scope)
    instrumentation_info = property(lambda self: self._tracer.instrumentation_info)

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    # --- the span API --------------------------------------------------------------------------------
    def set_attribute(self, key: str, value: Any) -> None:
        """As the SDK: a value OTel does not accept is dropped (with the SDK's warning); a key set again
        moves to the end, so the oldest one goes first if the span limits are reached."""
        if self._end_time is not None:
            return
        attributes = self._attributes
        if type(attributes) is dict:
            cleaned = BoundedAttributes(None, {key: value})
            if key not in cleaned:
                return
            attributes.pop(key, None)
            if len(attributes) < _room(self._tracer._span_limits):
                attributes[key] = cleaned[key]
                return
            attributes = self._bound()
        attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_valid_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Attributes whose values the recorder has already made valid: no second check, unless the span
        limits come into play (then each goes through the SDK's bounded mapping, as with the SDK's span)."""
        if self._end_time is not None:
            return
        current = self._attributes
        if type(current) is dict and len(current) + len(attributes) <= _room(self._tracer._span_limits):
            current.update(attributes)
            return
        bounded = current if type(current) is not dict else self._bound()
        for key, value in attributes.items():
            bounded[key] = value

    def _bound(self) -> BoundedAttributes:
        """From now on, attributes in the SDK's bounded mapping (limits on count and length apply)."""
        limits = self._tracer._span_limits
        bounded = self._attributes = BoundedAttributes(limits.max_span_attributes, self._attributes, immutable=False,
                                                       max_value_len=limits.max_span_attribute_length)
        return bounded

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None) -> None:
        if self._end_time is None:
            limits = self._tracer._span_limits
            attrs = BoundedAttributes(limits.max_event_attributes, attributes, immutable=True,
                                      max_value_len=limits.max_attribute_length)
            if self._events is None:
                self._events = []
            self._events.append(Event(name, attrs, timestamp))

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if self._end_time is not None or not (context and (context.is_valid or attributes or context.trace_state)):
            return
        limits = self._tracer._span_limits
        attrs = BoundedAttributes(limits.max_link_attributes, attributes, max_value_len=limits.max_attribute_length,
                                  immutable=True)
        if self._links is None:
            self._links = []
        self._links.append(Link(context, attrs))

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK: OK is final, UNSET is ignored, a description goes only with ``StatusCode``."""
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is not StatusCode.UNSET:
                self._status = status
        elif isinstance(status, StatusCode) and status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(self, exception: BaseException, attributes: Mapping[str, Any] | None = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        """The SDK's ``exception`` event: type (module-qualified), message, stack trace, escaped."""
        try:
            message = str(exception)
        except Exception:  # an exception whose __str__ raises still gets its event
            message = ""
        attrs: dict[str, Any] = {
            sc.EXCEPTION_TYPE: exception_type(exception),
            sc.EXCEPTION_MESSAGE: message,
            sc.EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exception)),
            sc.EXCEPTION_ESCAPED: str(escaped),
        }
        if attributes:
            attrs.update(attributes)
        self.add_event(sc.EVENT_EXCEPTION, attrs, timestamp)

    def end(self, end_time: int | None = None) -> None:
        """End once (later calls are ignored) and hand the span processors the finished span."""
        with _END_LOCK:
            if self._end_time is not None:
                return
            self._end_time = end_time if end_time is not None else time.time_ns()
        tracer = self._tracer
        processor = tracer.span_processor
        on_ending = getattr(processor, "_on_ending", None)
        if on_ending is not None:
            on_ending(self)
        limits = tracer._span_limits
        processor.on_end(ReadableSpan(
            name=self._name,
            context=self._context,
            parent=self._parent,
            resource=tracer.resource,
            attributes=self._attributes,
            events=_bounded(self._events, limits.max_events),
            links=_bounded(self._links, limits.max_links),
            kind=self._kind,
            status=self._status,
            start_time=self._start_time,
            end_time=self._end_time,
            instrumentation_info=tracer.instrumentation_info,
            instrumentation_scope=tracer._instrumentation_scope,
        ))


def _room(limits: Any) -> float:
    """How many attributes a span may hold."""
    return math.inf if limits.max_span_attributes is None else limits.max_span_attributes


def _bounded(items: list[Any] | None, limit: int | None) -> Any:
    """``items`` as the SDK keeps them: at most ``limit``, the newest, the rest counted as dropped."""
    if not items:
        return ()
    if limit is not None and len(items) > limit:
        return BoundedList.from_seq(limit, items)
    return items


def exception_type(exception: BaseException) -> str:
    """``exception.type`` as the SDK spells it: module-qualified, except for builtins."""
    module, qualname = type(exception).__module__, type(exception).__qualname__
    return f"{module}.{qualname}" if module and module != "builtins" else qualname
