"""The W3C trace context of a request: the one it arrives with, and the span's that it leaves with.

With OpenTelemetry's default propagators (W3C trace context, then W3C baggage) and no baggage to carry,
``traceparent`` and ``tracestate`` come from the span handle's own ``inject``: what those propagators write, for a
fraction of their cost (nothing for a span that is not valid, as those propagators write). Any other
configuration, or baggage, goes through ``propagate.inject``. Either way the headers are read and written
through :mod:`llmobs_openai.headers`."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from functools import lru_cache

from opentelemetry import baggage, propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from llmobs.recorder import SpanHandle
from llmobs_openai.headers import add as add_headers
from llmobs_openai.headers import values as header_values

_CONTEXT_HEADERS = (b"traceparent", b"tracestate")
_W3C_ONLY = ([TraceContextTextMapPropagator], [TraceContextTextMapPropagator, W3CBaggagePropagator])


def incoming(headers: Mapping[str, str]) -> tuple[dict[str, str] | None, bool]:
    """The trace context the application sent with the request, to parent the span on (None without a
    ``traceparent``: the ambient span is the parent then); and whether the request carries any trace context
    header at all (which :func:`inject` must then replace rather than add)."""
    traceparent, tracestate = header_values(headers, _CONTEXT_HEADERS)
    carried = traceparent is not None or tracestate is not None
    if traceparent is None:
        return None, carried
    if tracestate is None:
        return {"traceparent": traceparent}, carried
    return {"traceparent": traceparent, "tracestate": tracestate}, carried


def inject(headers: MutableMapping[str, str], handle: SpanHandle, carried: bool = True) -> None:
    """Put the span's trace context into the request headers, as the global propagator would. ``carried``:
    the request may hold trace context headers already (:func:`incoming` says), to replace."""
    # The handle's context is the current one with the span in it: the baggage is the current context's.
    # (For a span that is not valid both ways write nothing: no ``traceparent``, and here no baggage.)
    if _w3c_only(propagate.get_global_textmap()) and not baggage.get_all():
        carrier = handle.inject({})  # W3C trace context alone: what the default propagators write here
    else:
        carrier = {}
        propagate.inject(carrier, context=handle.context)
    add_headers(headers, carrier, absent=not carried)


@lru_cache(maxsize=8)
def _w3c_only(textmap: TextMapPropagator) -> bool:
    """Whether ``textmap`` is exactly OpenTelemetry's default (or W3C trace context alone)."""
    if type(textmap) is TraceContextTextMapPropagator:
        return True
    inner = getattr(textmap, "_propagators", None) if type(textmap) is CompositePropagator else None
    return isinstance(inner, list | tuple) and [type(p) for p in inner] in _W3C_ONLY
