"""Where the translator sits: on the global SDK TracerProvider, ahead of every exporter, whoever set it up.

Promptflow only ever uses the global provider (``start_trace()`` merges its resource into an SDK provider
that exists, or installs a bare one with no span processor). So the translator joins that provider, first
in its processor chain: every processor after it — llmobs' sampling and exporters, the application's own,
Promptflow devkit's OTLP exporter — then receives Promptflow spans already in GenAI semantics, once.
The SDK has no public call to add a processor in front (only at the end), so the chain's tuple is
replaced under its lock; the core removes its own processors the same way.
"""

from __future__ import annotations

import logging
import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from llmobs import config, export
from llmobs import semconv as sc
from llmobs.recorder import get_recorder

_log = logging.getLogger("llmobs")


def ensure_provider() -> TracerProvider | None:
    """The global SDK provider, installing llmobs' if there is none (as any llmobs recording would).

    A provider with no span processor at all — what ``start_trace()`` installs when it comes first —
    exports nothing, so llmobs wires its default exporters onto it (the store, or OTLP when
    ``OTEL_EXPORTER_OTLP_*`` is set), as it would have on a provider of its own.
    """
    get_recorder()  # configures llmobs when no SDK provider is installed (unless LLMOBS_AUTO_CONFIGURE=false)
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        _log.warning(
            "llmobs-promptflow: the global tracer provider is %s, not an OpenTelemetry SDK TracerProvider; "
            "Promptflow spans cannot be translated. Call llmobs.configure() (or install an SDK provider) first.",
            type(provider).__name__,
        )
        return None
    if not export.exporters() and not _chain(provider):
        names = export.resolve_exporters(config.current(), os.environ, app_provider=False)
        export.configure(exporters=list(names))
    return provider


def service_name(provider: TracerProvider, explicit: str | None) -> str | None:
    """The service name Promptflow's spans should carry: the one given, the provider's own (unless it is
    Promptflow's), llmobs' ``service_name`` setting, or ``OTEL_SERVICE_NAME``; None keeps Promptflow's."""
    if explicit:
        return explicit
    current = provider.resource.attributes.get(sc.SERVICE_NAME)
    if isinstance(current, str) and current != sc.PF_SERVICE_NAME and not current.startswith("unknown_service"):
        return current
    configured = config.current().service_name
    name = configured or Resource.create().attributes.get(sc.SERVICE_NAME)
    return name if isinstance(name, str) and not name.startswith("unknown_service") else None


def attach_first(provider: TracerProvider, processor: SpanProcessor) -> None:
    """Put ``processor`` at the head of the provider's chain (at its end if the chain is not the SDK's)."""
    chain = getattr(provider, "_active_span_processor", None)
    lock = getattr(chain, "_lock", None)
    if isinstance(_chain(provider), tuple) and lock is not None:
        with lock:
            chain._span_processors = (processor, *chain._span_processors)
        return
    provider.add_span_processor(processor)
    _log.warning("llmobs-promptflow: processors added before it see Promptflow spans untranslated")


def detach(provider: TracerProvider, processor: SpanProcessor) -> None:
    chain = getattr(provider, "_active_span_processor", None)
    lock = getattr(chain, "_lock", None)
    if isinstance(_chain(provider), tuple) and lock is not None:
        with lock:
            chain._span_processors = tuple(p for p in chain._span_processors if p is not processor)


def _chain(provider: TracerProvider) -> tuple[SpanProcessor, ...] | None:
    return getattr(getattr(provider, "_active_span_processor", None), "_span_processors", None)
