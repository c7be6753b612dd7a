"""The W3C trace context of a request: the one it arrives with, and the span's that it leaves with.

With OpenTelemetry's default propagators (W3C trace context, then W3C baggage) and no baggage to carry,
``traceparent`` and ``tracestate`` are written straight from the span's context: what those propagators
write, for a fraction of their cost (``propagate.inject`` resolves the span from a context and goes
through a setter per header; merging its carrier into httpx's headers builds another ``Headers``). Any
other configuration, or baggage, goes through ``propagate.inject``.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from functools import lru_cache

from opentelemetry import baggage, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from llmobs.recorder import SpanHandle

_W3C_ONLY = ([TraceContextTextMapPropagator], [TraceContextTextMapPropagator, W3CBaggagePropagator])


def incoming(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The trace context the application sent with the request, to parent the span on; None without a
    ``traceparent`` (the ambient span is the parent then)."""
    traceparent = headers.get("traceparent")
    if traceparent is None:
        return None
    tracestate = headers.get("tracestate")
    if tracestate is None:
        return {"traceparent": traceparent}
    return {"traceparent": traceparent, "tracestate": tracestate}


def inject(headers: MutableMapping[str, str], handle: SpanHandle) -> None:
    """Put the span's trace context into the request headers, as the global propagator would."""
    context = handle.context
    if not _w3c_only(propagate.get_global_textmap()) or baggage.get_all(context):
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=context)
        for key, value in carrier.items():
            headers[key] = value
        return
    span_context = handle.span.get_span_context()
    if span_context == trace.INVALID_SPAN_CONTEXT:
        return
    trace_id, span_id, flags = span_context.trace_id, span_context.span_id, span_context.trace_flags
    headers["traceparent"] = f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
    if span_context.trace_state:
        headers["tracestate"] = span_context.trace_state.to_header()


@lru_cache(maxsize=8)
def _w3c_only(textmap: TextMapPropagator) -> bool:
    """Whether ``textmap`` is exactly OpenTelemetry's default (or W3C trace context alone)."""
    if type(textmap) is TraceContextTextMapPropagator:
        return True
    inner = getattr(textmap, "_propagators", None) if type(textmap) is CompositePropagator else None
    return isinstance(inner, list | tuple) and [type(p) for p in inner] in _W3C_ONLY
