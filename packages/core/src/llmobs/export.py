"""Wiring of OpenTelemetry providers and exporters: ``configure()``, ``flush()``, ``shutdown()``.

- No SDK provider installed by the application: llmobs installs a ``TracerProvider`` (resource from
  ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` or ``service_name``; sampler from
  ``OTEL_TRACES_SAMPLER``) and, when an OTLP endpoint or ``OTEL_METRICS_EXPORTER`` asks for it, a
  ``MeterProvider``; both are flushed and shut down at interpreter exit.
- The application already installed SDK providers: llmobs adds only the exporters named explicitly in
  its settings to that provider, and never replaces it. With the default ``exporters = ["auto"]`` it adds
  nothing: the application's own exporters carry llmobs spans.

Exporter names: ``auto`` (OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``..._TRACES_ENDPOINT`` is set,
else the embedded store), ``store``, ``otlp`` (``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL``: ``http/protobuf``
default, or ``grpc``), ``console``, ``none``. Every exporter sits behind a ``BatchSpanProcessor``, so
export never runs on the application's thread.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from llmobs import config, plugins, selfstats
from llmobs import semconv as sc
from llmobs.sampling import SamplingProcessor

_log = logging.getLogger("llmobs")
DEFAULT_QUEUE_SIZE = 16_384
DEFAULT_SCHEDULE_DELAY_MS = 1_000
_lock = threading.RLock()


class _State:
    """What ``configure()`` installed, so it is idempotent and ``shutdown()`` undoes exactly that."""

    def __init__(self) -> None:
        self.configured = False
        self.tracer_provider: TracerProvider | None = None
        self.meter_provider: Any = None
        self.processors: list[SpanProcessor] = []
        self.exporters: tuple[str, ...] = ()


_state = _State()
_installed_provider: TracerProvider | None = None  # the global provider llmobs installed, if any


class _BatchProcessor(BatchSpanProcessor):
    """The SDK's batch processor with a deeper default queue, counting what a full queue drops.

    LLM apps export in bursts (an agent run ends dozens of spans at once): the SDK default of 2048
    queued spans silently drops under a burst. ``OTEL_BSP_*`` variables still take precedence.
    """

    def __init__(self, exporter: SpanExporter, environ: Mapping[str, str]) -> None:
        queue = None if environ.get("OTEL_BSP_MAX_QUEUE_SIZE") else DEFAULT_QUEUE_SIZE
        delay = None if environ.get("OTEL_BSP_SCHEDULE_DELAY") else DEFAULT_SCHEDULE_DELAY_MS
        super().__init__(exporter, max_queue_size=queue, schedule_delay_millis=delay)
        inner = getattr(self, "_batch_processor", None)
        self._queue = getattr(inner, "_queue", None)

    def on_end(self, span: Any) -> None:
        queue = self._queue
        if queue is not None and queue.maxlen is not None and len(queue) >= queue.maxlen:
            selfstats.count("export.queue_full_dropped")
        super().on_end(span)


def _otlp_endpoint_set(environ: Mapping[str, str], signal: str) -> bool:
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))


def resolve_exporters(settings: config.Settings, environ: Mapping[str, str], app_provider: bool) -> tuple[str, ...]:
    """The concrete exporter names for these settings (``auto`` resolved, ``none`` removed)."""
    names: list[str] = []
    for name in settings.exporters:
        if name == "auto":
            if app_provider:
                continue
            name = "otlp" if _otlp_endpoint_set(environ, "TRACES") else "store"
        if name != "none" and name not in names:
            names.append(name)
    return tuple(names)


def _otlp_span_exporter(environ: Mapping[str, str]) -> SpanExporter:
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if (protocol or "http/protobuf").strip().lower() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()


def _span_exporter(name: str, settings: config.Settings, environ: Mapping[str, str]) -> SpanExporter:
    if name == "store":
        from llmobs.store import Retention, SQLiteSpanExporter

        retention = Retention(
            max_age_days=settings.retention_max_age_days,
            max_bytes=int(settings.retention_max_mb * 1024 * 1024) if settings.retention_max_mb else None,
        )
        return SQLiteSpanExporter(settings.store_path(), retention=retention)
    if name == "otlp":
        return _otlp_span_exporter(environ)
    if name == "console":
        return ConsoleSpanExporter()
    raise config.ConfigError(f"unknown exporter {name!r}")


def _resource(settings: config.Settings) -> Resource:
    attributes = {SERVICE_NAME: settings.service_name} if settings.service_name else {}
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; explicit settings win.
    return Resource.create(attributes)


def _metric_reader(environ: Mapping[str, str]) -> Any:
    """The metric reader ``OTEL_METRICS_EXPORTER`` asks for (``otlp`` is implied by an OTLP endpoint)."""
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

    choice = (environ.get("OTEL_METRICS_EXPORTER") or "").strip().lower()
    if choice == "otlp" or (not choice and _otlp_endpoint_set(environ, "METRICS")):
        protocol = environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        if (protocol or "http/protobuf").strip().lower() == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        return PeriodicExportingMetricReader(OTLPMetricExporter())
    if choice == "console":
        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    if choice == "prometheus":
        return _prometheus_reader(environ)
    if choice not in ("", "none"):
        raise config.ConfigError(
            f"OTEL_METRICS_EXPORTER: unsupported value {choice!r} (otlp, prometheus, console, none)"
        )
    return None


def _prometheus_reader(environ: Mapping[str, str]) -> Any:
    """A pull reader served at ``http://OTEL_EXPORTER_PROMETHEUS_HOST:PORT/metrics`` (localhost:9464)."""
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server
    except ImportError:
        raise config.ConfigError(
            "OTEL_METRICS_EXPORTER=prometheus needs the prometheus extra: pip install 'llmobs[prometheus]'"
        ) from None
    host = environ.get("OTEL_EXPORTER_PROMETHEUS_HOST") or "localhost"
    port = int(environ.get("OTEL_EXPORTER_PROMETHEUS_PORT") or 9464)
    reader = PrometheusMetricReader()
    start_http_server(port=port, addr=host)
    return reader


def _install_meter_provider(resource: Resource, environ: Mapping[str, str]) -> Any:
    from opentelemetry.metrics import get_meter_provider
    from opentelemetry.sdk.metrics import MeterProvider

    if isinstance(get_meter_provider(), MeterProvider):
        return None  # the application's (or one installed earlier): our instruments report through it
    reader = _metric_reader(environ)
    if reader is None:
        return None
    # llmobs' own exit hook shuts it down (once); the SDK's would do it a second time and warn.
    provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
    metrics.set_meter_provider(provider)
    return provider


def _observe_selfstats(meter_provider: Any) -> None:
    from opentelemetry.metrics import CallbackOptions, Observation

    def observe(options: CallbackOptions) -> list[Observation]:
        return [Observation(n, {"llmobs.reason": kind}) for kind, n in selfstats.snapshot().items()]

    meter_provider.get_meter(sc.SCOPE_NAME).create_observable_counter(
        sc.METRIC_DROPPED, callbacks=[observe], unit=sc.UNIT_ITEMS, description="What llmobs dropped or swallowed"
    )


def configure(**overrides: Any) -> config.Settings:
    """Configure llmobs (idempotent). Keyword settings override ``llmobs.toml`` and the environment.

    The first call wires providers and exporters; later calls only swap the settings that apply at run
    time (capture, truncation, redaction, prices). Call :func:`shutdown` first to rewire exporters.
    Raises :class:`llmobs.config.ConfigError` on an invalid setting.
    """
    with _lock:
        settings = config.apply(overrides)
        config.watch()
        if _state.configured:
            return settings
        environ = os.environ
        # Metrics first: an invalid metrics setting fails before anything is wired.
        _state.meter_provider = _install_meter_provider(_resource(settings), environ)
        if _state.meter_provider is not None:
            _observe_selfstats(_state.meter_provider)
        global _installed_provider
        current = trace.get_tracer_provider()
        # An SDK provider with no processors (e.g. what Promptflow's start_trace() installs) exports
        # nothing: treat it as no application provider, so "auto" wires our exporters onto it.
        app_provider = (
            isinstance(current, TracerProvider) and current is not _installed_provider and _has_processors(current)
        )
        if isinstance(current, TracerProvider):
            provider = current
        elif isinstance(current, trace.ProxyTracerProvider):
            # With llmobs sampling every span is recorded (metrics and tail promotion need them); the
            # sampling processor applies the head ratio, OTEL_TRACES_SAMPLER's included.
            sampler = {} if settings.sampling.enabled is False else {"sampler": ALWAYS_ON}
            provider = _installed_provider = TracerProvider(
                resource=_resource(settings), shutdown_on_exit=False, **sampler
            )  # llmobs' exit hook flushes and closes its exporters, once
            trace.set_tracer_provider(provider)
        else:
            _log.warning("llmobs: the global tracer provider is %s, not the SDK's; adding no exporters", current)
            provider = None
        names = resolve_exporters(settings, environ, app_provider) if provider is not None else ()
        processors: list[SpanProcessor] = []
        if provider is not None:
            exporting = [_BatchProcessor(_span_exporter(name, settings, environ), environ) for name in names]
            exporting += plugins.span_processors(settings)
            if exporting:
                # Sampling is on by default when spans leave the machine; the local store alone keeps all.
                processors = [SamplingProcessor(exporting, auto_enabled="otlp" in names)]
                provider.add_span_processor(processors[0])
        _state.tracer_provider = provider
        _state.processors = processors
        _state.exporters = names
        _state.configured = True
        _log.debug("llmobs configured: exporters=%s settings from %s", names, settings.source)
        return settings


def auto_configure() -> None:
    """Configure with defaults if the application installed no SDK tracer provider (first recorder use)."""
    if _state.configured:
        return
    if os.environ.get("LLMOBS_AUTO_CONFIGURE", "true").strip().lower() in ("0", "false", "no", "off"):
        return
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        try:
            configure()
        except Exception as exc:
            selfstats.failure("export.auto_configure_failed", exc)


def is_configured() -> bool:
    """Whether ``configure()`` has wired llmobs in this process (explicitly or automatically)."""
    return _state.configured


def exporters() -> tuple[str, ...]:
    """The exporters the current configuration wired (e.g. ``("store",)``)."""
    return _state.exporters


def flush(timeout_millis: int = 30_000) -> bool:
    """Export everything buffered so far; True if it all went out in time."""
    with _lock:
        provider, processors, meter_provider = _state.tracer_provider, list(_state.processors), _state.meter_provider
    ok = True
    try:
        if provider is not None and provider is _installed_provider:
            ok = provider.force_flush(timeout_millis)
        else:
            for processor in processors:
                ok = processor.force_flush(timeout_millis) and ok
        if meter_provider is not None:
            ok = meter_provider.force_flush(timeout_millis) and ok
    except Exception as exc:
        selfstats.failure("export.flush_failed", exc)
        return False
    return ok


def shutdown() -> None:
    """Flush and close the exporters ``configure()`` wired; safe to call more than once.

    The global tracer provider stays installed (OpenTelemetry allows setting it only once per process);
    our processors are removed from it, so a later ``configure()`` can wire exporters again.
    """
    with _lock:
        if not _state.configured:
            return
        try:
            for processor in _state.processors:  # shutting down exports what is buffered
                processor.shutdown()
            if _state.meter_provider is not None:
                _state.meter_provider.shutdown()  # collects and exports once more
        except Exception as exc:
            selfstats.failure("export.shutdown_failed", exc)
        finally:
            if _state.tracer_provider is not None:
                _detach_processors(_state.tracer_provider, _state.processors)
            _state.__init__()  # type: ignore[misc]


def _has_processors(provider: TracerProvider) -> bool:
    multi = getattr(provider, "_active_span_processor", None)
    return bool(getattr(multi, "_span_processors", True))  # unknown SDK internals: assume it has some


def _detach_processors(provider: TracerProvider, processors: list[SpanProcessor]) -> None:
    """Remove our processors from a provider (the SDK has no public removal API; best effort)."""
    multi = getattr(provider, "_active_span_processor", None)
    current = getattr(multi, "_span_processors", None)
    if isinstance(current, tuple):
        multi._span_processors = tuple(p for p in current if p not in processors)


atexit.register(shutdown)
