"""llmobs for LlamaIndex.

``instrument()`` adds a span handler and an event handler to LlamaIndex's root dispatcher — its own
extension API, no patching — so every query engine, retriever, LLM, embedding, reranker, tool, agent and
workflow in the process is traced through the llmobs core. ``uninstrument()`` removes them again.
"""

from __future__ import annotations

import threading

from llmobs import __version__ as core_version
from llmobs import config

__all__ = ["core_version", "instrument", "is_instrumented", "uninstrument"]

_lock = threading.Lock()
_installed: tuple = ()


def instrument(*, stream_timeout: float = 120.0, max_spans: int = 10_000) -> bool:
    """Trace LlamaIndex in this process (idempotent). Returns False if the integration is disabled in settings.

    ``stream_timeout``: seconds a returned stream may stay idle before its run is ended as abandoned.
    ``max_spans``: LlamaIndex span ids tracked at once; beyond it the oldest is forgotten (and counted).
    """
    global _installed
    from llama_index.core.instrumentation import get_dispatcher

    from llmobs_llamaindex.handlers import EventHandler, SpanHandler
    from llmobs_llamaindex.tracker import INTEGRATION, Tracker

    with _lock:
        if _installed:
            return True
        if not config.current().integration_enabled(INTEGRATION):
            return False
        tracker = Tracker(stream_timeout_s=stream_timeout, max_spans=max_spans)
        span_handler, event_handler = SpanHandler(tracker), EventHandler(tracker)
        dispatcher = get_dispatcher()
        dispatcher.add_span_handler(span_handler)
        dispatcher.add_event_handler(event_handler)
        _installed = (span_handler, event_handler)
    return True


def uninstrument() -> None:
    """Remove the handlers (idempotent); runs still open end as cancelled."""
    global _installed
    from llama_index.core.instrumentation import get_dispatcher

    with _lock:
        if not _installed:
            return
        span_handler, event_handler = _installed
        _installed = ()
        dispatcher = get_dispatcher()
        dispatcher.span_handlers = [h for h in dispatcher.span_handlers if h is not span_handler]
        dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not event_handler]
    span_handler.tracker.close("uninstrumented")


def is_instrumented() -> bool:
    return bool(_installed)
