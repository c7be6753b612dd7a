"""Where vLLM's own ``llm_request`` spans are, by request id, when vLLM's OTLP tracing is on.

vLLM sets the attributes of its per-request span after starting it and ends it at once, so a span
processor can neither add to it nor see its request id at start; at end it can note the span's context
under ``gen_ai.request.id``. The stat logger then parents its (zero-length) enrichment span on it, so
the extra attributes sit in the same trace, directly under the request's span. Bounded; the oldest
entries go first.

With parallel sampling (``n > 1``) every sequence of a request ends its own ``llm_request`` span, all under
the request's id, right after its finished-request stats are noted, in the same order: so the spans of one
id are kept in order and each enrichment span takes the oldest one left — one per sequence.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanContext

from llmobs import selfstats
from llmobs import semconv as sc

DEFAULT_CAPACITY = 16_384
#: Spans kept per request id (sequences of one request: vLLM's ``n``).
MAX_SEQUENCES = 256


class VllmSpanIndex(SpanProcessor):
    """A span processor that remembers each ``llm_request`` span's context by its request id, in the order
    the spans ended, until :meth:`take` hands it out."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._spans: dict[str, deque[SpanContext]] = {}
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
                queue = spans.pop(request_id, None) or deque(maxlen=MAX_SEQUENCES)
                queue.append(span.get_span_context())
                spans[request_id] = queue  # the newest id last: the oldest go first past the capacity
                while len(spans) > self.capacity:
                    del spans[next(iter(spans))]
        except Exception as exc:
            selfstats.failure("vllm.span_index_failed", exc)

    def take(self, request_id: str) -> SpanContext | None:
        """The oldest ``llm_request`` span of ``request_id`` not yet taken; None if there is none."""
        with self._lock:
            queue = self._spans.get(request_id)
            if not queue:
                return None
            found = queue.popleft()
            if not queue:
                del self._spans[request_id]
            return found

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
