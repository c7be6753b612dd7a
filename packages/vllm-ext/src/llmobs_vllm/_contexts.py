"""What the HTTP layer knows about a request (client trace context, operation), keyed by request id.

:class:`llmobs_vllm.TraceMiddleware` writes an entry per generation request; the stat logger reads it
when the request finishes, in the same API-server process. vLLM derives its engine request id from the
``X-Request-Id`` header (``chatcmpl-<id>``, ``cmpl-<id>-<prompt index>``, ``embd-<id>``...), so an entry
is stored under that header's value and :meth:`RequestContexts.lookup` strips vLLM's prefix and
suffix to find it.

Bounded: at most ``capacity`` entries. An entry outlives its HTTP response by ``grace_s`` seconds,
because vLLM hands the finished request's stats to the logger after the response may already be sent;
the oldest entries go first when the map is full.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

from llmobs import selfstats

DEFAULT_CAPACITY = 16_384
DEFAULT_GRACE_S = 60.0


class RequestContext(NamedTuple):
    traceparent: str | None
    tracestate: str | None
    operation: str | None

    @property
    def carrier(self) -> dict[str, str] | None:
        """The W3C headers, for ``recorder.start(parent=...)``; None without a traceparent."""
        if not self.traceparent:
            return None
        if self.tracestate:
            return {"traceparent": self.traceparent, "tracestate": self.tracestate}
        return {"traceparent": self.traceparent}


class RequestContexts:
    """A bounded, thread-safe map from request id to :class:`RequestContext`."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, grace_s: float = DEFAULT_GRACE_S) -> None:
        self.capacity = capacity
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._entries: dict[str, RequestContext] = {}
        self._done: dict[str, float] = {}  # key -> monotonic time its HTTP response ended

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: str, context: RequestContext) -> None:
        now = time.monotonic()
        with self._lock:
            entries, done = self._entries, self._done
            entries.pop(key, None)  # a reused id moves to the back
            done.pop(key, None)
            entries[key] = context
            # Evict from the front: ended-and-expired entries always, anything while over capacity.
            while entries:
                oldest = next(iter(entries))
                ended = done.get(oldest)
                if len(entries) > self.capacity:
                    selfstats.count("vllm.request_context_evicted")
                elif ended is None or now - ended < self.grace_s:
                    break
                del entries[oldest]
                done.pop(oldest, None)

    def done(self, key: str) -> None:
        """The HTTP exchange ended; the entry stays for ``grace_s`` so the finished stats can still find it."""
        with self._lock:
            if key in self._entries:
                self._done[key] = time.monotonic()

    def get(self, key: str) -> RequestContext | None:
        return self._entries.get(key)

    def lookup(self, request_id: str | None) -> RequestContext | None:
        """The context for a vLLM request id: tried as is, without vLLM's ``<kind>-`` prefix, and without a
        trailing ``-<index>`` (completions with several prompts), ``-prompt-<i>`` or ``-prompt-<i>-chunk-<j>``
        (pooling requests, a long input embedded in chunks)."""
        if not request_id or not self._entries:
            return None
        entries = self._entries
        found = entries.get(request_id)
        if found is not None:
            return found
        _, dash, rest = request_id.partition("-")
        if not dash:
            return None
        found = entries.get(rest)
        if found is not None:
            return found
        head, dash, tail = rest.rpartition("-")
        if dash and tail.isdigit() and head.endswith("-chunk"):  # pooling: <id>-prompt-<i>-chunk-<j>
            head, dash, tail = head[: -len("-chunk")].rpartition("-")
        if dash and tail.isdigit():
            found = entries.get(head)
            if found is None and head.endswith("-prompt"):  # pooling: <id>-prompt-<i>
                found = entries.get(head[: -len("-prompt")])
        return found

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._done.clear()


#: The process-wide map shared by the middleware and the stat logger.
CONTEXTS = RequestContexts()
