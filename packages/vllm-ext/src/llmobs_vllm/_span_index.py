"""Where vLLM's own ``llm_request`` spans are, by request id, when vLLM's OTLP tracing is on.

vLLM sets the attributes of its per-request span after starting it and ends it at once, so a span
processor can neither add to it nor see its request id at start; at end it can note the span's context
under ``gen_ai.request.id``. The stat logger then parents its (zero-length) enrichment span on it, so
the extra attributes sit in the same trace, directly under the request's span. Bounded; the oldest
entries go first.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanContext

from llmobs import selfstats
from llmobs import semconv as sc

DEFAULT_CAPACITY = 16_384


class VllmSpanIndex(SpanProcessor):
    """A span processor that remembers each ``llm_request`` span's context by its request id."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._spans: dict[str, SpanContext] = {}
        self._lock = threading.Lock()

    def on_end(self, span: Any) -> None:
        try:
            if span.name != sc.VLLM_REQUEST_SPAN:
                return
            request_id = (span.attributes or {}).get(sc.REQUEST_ID)
            if not isinstance(request_id, str):
                return
            with self._lock:
                spans = self._spans
                spans.pop(request_id, None)
                spans[request_id] = span.get_span_context()
                while len(spans) > self.capacity:
                    del spans[next(iter(spans))]
        except Exception as exc:
            selfstats.failure("vllm.span_index_failed", exc)

    def get(self, request_id: str) -> SpanContext | None:
        return self._spans.get(request_id)

    def __len__(self) -> int:
        return len(self._spans)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def install(tracer_provider: Any) -> VllmSpanIndex | None:
    """Add an index to vLLM's SDK tracer provider; None if the provider is not the SDK's."""
    add = getattr(tracer_provider, "add_span_processor", None)
    if add is None:
        return None
    index = VllmSpanIndex()
    add(index)
    return index
