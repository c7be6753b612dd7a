"""The W3C trace context of a request: the one it arrives with, and the span's that it leaves with.

With OpenTelemetry's default propagators (W3C trace context, then W3C baggage) and no baggage to carry,
``traceparent`` and ``tracestate`` are written by the span handle's own ``inject`` straight into httpx's
headers: what those propagators write, for a fraction of their cost (merging ``propagate.inject``'s carrier
into httpx's headers also builds another ``Headers``). Any other configuration, baggage, or a span context
that is not valid goes through ``propagate.inject``.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from functools import lru_cache

from opentelemetry import baggage, propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from llmobs.recorder import SpanHandle

_W3C_ONLY = ([TraceContextTextMapPropagator], [TraceContextTextMapPropagator, W3CBaggagePropagator])


def incoming(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The trace context the application sent with the request, to parent the span on; None without a
    ``traceparent`` (the ambient span is the parent then)."""
    if "traceparent" not in headers:  # the usual case: a membership test, no lookup failing with KeyError
        return None
    if "tracestate" not in headers:
        return {"traceparent": headers["traceparent"]}
    return {"traceparent": headers["traceparent"], "tracestate": headers["tracestate"]}


def inject(headers: MutableMapping[str, str], handle: SpanHandle) -> None:
    """Put the span's trace context into the request headers, as the global propagator would."""
    # The handle's context is the current one with the span in it: the baggage is the current context's.
    if handle.span.get_span_context().is_valid and _w3c_only(propagate.get_global_textmap()) and not baggage.get_all():
        handle.inject(headers)  # W3C trace context alone: what the default propagators write here
        return
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=handle.context)
    for key, value in carrier.items():
        headers[key] = value


@lru_cache(maxsize=8)
def _w3c_only(textmap: TextMapPropagator) -> bool:
    """Whether ``textmap`` is exactly OpenTelemetry's default (or W3C trace context alone)."""
    if type(textmap) is TraceContextTextMapPropagator:
        return True
    inner = getattr(textmap, "_propagators", None) if type(textmap) is CompositePropagator else None
    return isinstance(inner, list | tuple) and [type(p) for p in inner] in _W3C_ONLY
