"""llmobs for Promptflow.

``instrument()`` joins Promptflow's own OpenTelemetry pipeline — the global SDK TracerProvider that
``start_trace()`` and ``@trace`` use — with a span processor that translates Promptflow's spans into GenAI
semantics and records GenAI metrics for its model calls. Nothing is patched: Promptflow itself wraps the
``openai`` client when the application calls ``start_trace()``; llmobs never does.
"""

from __future__ import annotations

import logging
import os
import threading

from llmobs import __version__ as core_version
from llmobs import config

__all__ = ["core_version", "instrument", "is_instrumented", "tracing_enabled", "uninstrument"]

DISABLED_MESSAGE = (
    "llmobs-promptflow: Promptflow tracing is disabled (PF_DISABLE_TRACING is unset or 'true', the default "
    "since promptflow-tracing 1.17.1), so @trace functions and Promptflow's OpenAI calls make no spans and "
    "nothing from Promptflow is traced. Set PF_DISABLE_TRACING=false in the environment to trace them."
)
_log = logging.getLogger("llmobs")
_lock = threading.Lock()
_installed: tuple = ()


def tracing_enabled() -> bool:
    """Whether Promptflow makes spans right now: it reads ``PF_DISABLE_TRACING`` at every call and
    traces only when the variable is set to something other than ``true``."""
    return os.environ.get("PF_DISABLE_TRACING", "true").lower() != "true"


def instrument(*, service_name: str | None = None) -> bool:
    """Translate Promptflow's spans into llmobs GenAI spans and metrics (idempotent); call before or after
    ``start_trace()``. Returns False if the integration is disabled in settings or no OpenTelemetry SDK
    TracerProvider can be used.

    ``service_name``: the ``service.name`` Promptflow's spans keep although ``start_trace()`` overwrites it
    (default: the provider's own, llmobs' ``service_name`` setting, or ``OTEL_SERVICE_NAME``).
    """
    global _installed
    from llmobs.recorder import get_recorder
    from llmobs_promptflow import pipeline
    from llmobs_promptflow.processor import INTEGRATION, Translator

    with _lock:
        if _installed:
            return True
        if not config.current().integration_enabled(INTEGRATION):
            return False
        provider = pipeline.ensure_provider()
        if provider is None:
            return False
        translator = Translator(get_recorder(), pipeline.service_name(provider, service_name))
        pipeline.attach_first(provider, translator)
        _installed = (provider, translator)
    if not tracing_enabled():
        _log.warning(DISABLED_MESSAGE)
    return True


def uninstrument() -> None:
    """Remove the translator (idempotent); later Promptflow spans reach the exporters as Promptflow made them."""
    global _installed
    from llmobs_promptflow import pipeline

    with _lock:
        if not _installed:
            return
        provider, translator = _installed
        _installed = ()
        pipeline.detach(provider, translator)
        translator.shutdown()


def is_instrumented() -> bool:
    return bool(_installed)
