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

When the destination is down, slow or refusing, the application does not wait: spans queue up to a
bound (``OTEL_BSP_MAX_QUEUE_SIZE``, 16384 by default) and what a full queue, a failed export or an
expired shutdown loses is counted in ``llmobs.dropped`` (:mod:`llmobs.selfstats`) and logged once per
kind. An OTLP request never exceeds ``export.max_request_bytes`` (4 MB, under the 4 MiB gRPC default
and the usual 16 MB proxy limits): batches are split by their encoded size, and a batch refused with
HTTP 413 is split in halves and retried. At exit (``atexit`` and, unless the application handles it
itself, SIGTERM) buffered spans are exported within ``export.shutdown_timeout_s``; a span still open
then — a request killed mid-way — is exported as it stands, marked ``llmobs.partial``. In a process
forked after ``configure()`` (pre-fork servers), export threads restart and pooled connections are not
shared with the parent; a ``multiprocessing`` child, which leaves through ``os._exit`` without running
``atexit``, flushes from multiprocessing's exit finalizers instead.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from llmobs import aggregated_metrics, config, finisher, otlp_wire, plugins, selfstats, span_copy
from llmobs import semconv as sc
from llmobs.deadline import flush_all
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
    Shutdown waits at most ``shutdown_timeout_s`` for the queue to drain; what is left is counted.
    """

    def __init__(self, exporter: SpanExporter, environ: Mapping[str, str], shutdown_timeout_s: float = 30.0) -> None:
        queue = None if environ.get("OTEL_BSP_MAX_QUEUE_SIZE") else DEFAULT_QUEUE_SIZE
        delay = None if environ.get("OTEL_BSP_SCHEDULE_DELAY") else DEFAULT_SCHEDULE_DELAY_MS
        super().__init__(exporter, max_queue_size=queue, schedule_delay_millis=delay)
        inner = getattr(self, "_batch_processor", None)
        self._queue = getattr(inner, "_queue", None)
        self._shutdown_timeout_ms = wait_s(shutdown_timeout_s) * 1000

    def on_end(self, span: Any) -> None:
        queue = self._queue
        if queue is not None and queue.maxlen is not None and len(queue) >= queue.maxlen:
            selfstats.dropped(
                DROP_QUEUE_FULL, 1, f"the export queue is full ({queue.maxlen} spans): the destination is down or slow"
            )
        super().on_end(span)

    def queued(self) -> int:
        """Spans waiting for export."""
        return len(self._queue) if self._queue is not None else 0

    def shutdown(self) -> None:
        inner = getattr(self, "_batch_processor", None)
        try:
            inner.shutdown(timeout_millis=self._shutdown_timeout_ms)  # type: ignore[union-attr]
        except TypeError:  # an SDK whose batch processor takes no timeout
            super().shutdown()
        worker = getattr(inner, "_worker_thread", None)
        if worker is not None and worker.is_alive():
            # The exporter's shutdown aborts a retry at once (its outcome is then counted and logged here,
            # not lost with the daemon thread at exit); a request hanging on a stalled server does not.
            worker.join(min(1.0, self._shutdown_timeout_ms / 1000))
        lost = self.queued()
        exporter = self.span_exporter
        if worker is not None and worker.is_alive() and isinstance(exporter, SizeLimitedExporter):
            exporter.abandoned = True
            lost += exporter.in_flight
        selfstats.dropped(DROP_SHUTDOWN, lost, "the export did not finish within the shutdown timeout")


#: The longest wait on a thread or lock, in seconds, whatever the settings say: a finite timeout past the platform's
#: ``threading.TIMEOUT_MAX`` raises ``OverflowError`` (the shutdown would fail and leave spans behind); a quarter
#: of it, ~70 years on Linux, still leaves room for the SIGTERM handler's ``2 × timeout + 1`` join.
LONGEST_WAIT_S = threading.TIMEOUT_MAX / 4


def wait_s(seconds: float) -> float:
    """``seconds`` as a timeout every wait accepts: at least 0, at most :data:`LONGEST_WAIT_S`."""
    return min(max(seconds, 0.0), LONGEST_WAIT_S)


#: ``llmobs.dropped`` reasons counted here.
DROP_QUEUE_FULL = "export.queue_full_dropped"
DROP_EXPORT_FAILED = "export.failed_spans"
DROP_TOO_LARGE = "export.too_large_dropped"
DROP_SHUTDOWN = "export.shutdown_dropped"
DROP_UNENCODABLE = "export.unencodable_dropped"
#: Reasons under which spans are lost on the way out, reported from zero.
LOSS_REASONS = (DROP_QUEUE_FULL, DROP_EXPORT_FAILED, DROP_TOO_LARGE, DROP_SHUTDOWN, DROP_UNENCODABLE)
DEFAULT_MAX_REQUEST_BYTES = 4_000_000


class _StatusSession:
    """Builds a ``requests.Session`` that remembers, per thread, the HTTP status of its last request
    (the OTLP exporter reports only success or failure; a 413 must be told apart to split the batch),
    and that a forked child does not share its pooled connections with the parent."""

    @staticmethod
    def create() -> Any:
        import requests

        class Session(requests.Session):
            def __init__(self) -> None:
                super().__init__()
                self.last = threading.local()
                ref = weakref.ref(self)
                os.register_at_fork(after_in_child=lambda: (s := ref()) is not None and s.forget_connections())

            def request(self, *args: Any, **kwargs: Any) -> Any:
                self.last.status = None
                response = super().request(*args, **kwargs)
                self.last.status = response.status_code
                return response

            def status(self) -> int | None:
                return getattr(self.last, "status", None)

            def forget_connections(self) -> None:
                # The parent's pooled sockets stay open for the parent: new adapters, the old ones untouched.
                self.adapters.clear()
                self.mount("https://", requests.adapters.HTTPAdapter())
                self.mount("http://", requests.adapters.HTTPAdapter())
                self.last = threading.local()

        return Session()


class SizeLimitedExporter(SpanExporter):
    """Wraps an OTLP span exporter so no request exceeds ``max_bytes`` and failures are counted.

    Spans are encoded once, by :mod:`llmobs.otlp_wire`, and a batch is split by their exact sizes; a span
    too large for a request of its own is dropped (counted), as is one that cannot be encoded. Each
    request's bytes go to the SDK exporter's own client, with its retries, compression, headers and timeout
    (:func:`_bytes_sender`: OTLP/HTTP, and gRPC through :mod:`llmobs.export_grpc`); another exporter is
    given each part's spans to encode itself. A part the destination refuses with HTTP 413 is split in
    halves and retried, down to one span.
    """

    def __init__(self, inner: SpanExporter, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES, session: Any = None) -> None:
        self.inner = inner
        self.max_bytes = max_bytes
        self._session = session
        self._post = _bytes_sender(inner)
        self.in_flight = 0  # spans of the export in progress
        self.abandoned = False  # shutdown gave up waiting and counted the export in progress as lost

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = True
        self.in_flight = len(spans)
        try:
            for part, encoded in self._parts(spans):
                ok = self._send(part, encoded) and ok
        except Exception as exc:
            selfstats.failure("export.otlp_failed", exc)
            return SpanExportResult.FAILURE
        finally:
            self.in_flight = 0
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def _parts(self, spans: Sequence[ReadableSpan]) -> list[tuple[list[ReadableSpan], list[bytes]]]:
        kept: list[ReadableSpan] = []
        encodings: list[bytes] = []
        for span in spans:
            try:
                encodings.append(otlp_wire.encode_span(span))
            except Exception as exc:
                selfstats.dropped(DROP_UNENCODABLE, 1, f"a span could not be encoded for OTLP ({exc!r})")
                continue
            kept.append(span)
        budget = self.max_bytes - otlp_wire.framing_size(kept)
        parts: list[tuple[list[ReadableSpan], list[bytes]]] = []
        part: list[ReadableSpan] = []
        encoded: list[bytes] = []
        size = 0
        for span, data in zip(kept, encodings, strict=True):
            n = len(data)
            if n > budget:
                if n + otlp_wire.framing_size([span]) > self.max_bytes:
                    why = f"a span larger than export.max_request_bytes={self.max_bytes}"
                    selfstats.dropped(DROP_TOO_LARGE, 1, why)
                else:
                    parts.append(([span], [data]))
                continue
            if part and size + n > budget:
                parts.append((part, encoded))
                part, encoded, size = [], [], 0
            part.append(span)
            encoded.append(data)
            size += n
        if part:
            parts.append((part, encoded))
        return parts

    def _deliver(self, spans: list[ReadableSpan], encoded: list[bytes]) -> bool:
        """One request: True if the destination took it."""
        if self._post is not None and not getattr(self.inner, "_shutdown", False):
            return self._post(spans, otlp_wire.request(spans, encoded))
        return self.inner.export(spans) is SpanExportResult.SUCCESS

    def _send(self, spans: list[ReadableSpan], encoded: list[bytes]) -> bool:
        if self._deliver(spans, encoded):
            return True
        status = self._session.status() if self._session is not None else None
        if status == 413:
            if len(spans) > 1:
                half = len(spans) // 2
                first = self._send(spans[:half], encoded[:half])
                return self._send(spans[half:], encoded[half:]) and first
            if not self.abandoned:
                selfstats.dropped(DROP_TOO_LARGE, 1, "the destination refused a one-span request as too large (413)")
            return False
        if self.abandoned:
            return False  # already counted by the shutdown that gave up on it
        selfstats.dropped(
            DROP_EXPORT_FAILED,
            len(spans),
            f"the destination could not be reached or refused the batch (HTTP {status})"
            if status
            else "the destination could not be reached or refused the batch",
        )
        return False

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


_OTLP_HTTP_MODULE = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


def _bytes_sender(exporter: SpanExporter) -> Callable[[Sequence[ReadableSpan], bytes], bool] | None:
    """Sends spans whose request llmobs encoded: through the SDK's OTLP/HTTP exporter's own HTTP client (as
    this module knows it), or an :class:`~llmobs.export_grpc.EncodedGrpcSpanExporter`. None (the exporter
    encodes the spans itself) for any other exporter, and for OTLP/HTTP while the SDK's opt-in internal
    metrics are on, which only that exporter's ``export`` records."""
    export_encoded = getattr(exporter, "export_encoded", None)
    if export_encoded is not None:
        return export_encoded
    kind = type(exporter)
    if (kind.__module__, kind.__name__) != (_OTLP_HTTP_MODULE, "OTLPSpanExporter"):
        return None
    client = getattr(exporter, "_client", None)
    if not callable(getattr(client, "export", None)):
        return None
    if os.environ.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "").strip().lower() == "true":
        return None
    return lambda spans, data: bool(client.export(data).success)


_OPEN_SWEEP_MIN = 1024
_OPEN_MAX = 100_000  # open spans remembered at most; beyond, new ones are not flushed as partial


class _OpenSpans(SpanProcessor):
    """In front of the sampling processor: remembers spans started and not yet ended (weakly, so an
    abandoned span is not kept alive), and at shutdown hands each one on as it stands, marked
    ``llmobs.partial``, before the processors behind it flush — a request killed mid-way is exported
    with everything it did so far instead of being lost with its buffered children."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner
        self._open: dict[int, weakref.ref[Any]] = {}
        self._sweep_at = _OPEN_SWEEP_MIN
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (p := ref()) is not None and p._open.clear())

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if len(self._open) >= self._sweep_at:
            self._sweep()
        if len(self._open) < _OPEN_MAX:
            with contextlib.suppress(TypeError):  # a span type without weak references is not tracked
                self._open[id(span)] = weakref.ref(span)
        self.inner.on_start(span, parent_context)

    def _sweep(self) -> None:
        """Forget spans collected without ending (abandoned); amortised, so the map stays bounded."""
        for key, ref in list(self._open.items()):
            if ref() is None and self._open.get(key) is ref:
                self._open.pop(key, None)
        self._sweep_at = max(_OPEN_SWEEP_MIN, 2 * len(self._open))

    def on_end(self, span: ReadableSpan) -> None:
        self._open.pop(id(span), None)
        self.inner.on_end(span)

    def end_open_spans(self) -> int:
        """Hand on every span still open, marked partial; returns how many."""
        now = time.time_ns()
        handed = 0
        for ref in list(self._open.values()):
            span = ref()
            if span is None or span.end_time is not None:
                continue
            try:
                snapshot = _partial(span, now)
            except Exception as exc:  # a span mutated by another thread while we read it
                selfstats.failure("export.partial_span_failed", exc)
                continue
            self.inner.on_end(snapshot)
            handed += 1
        self._open.clear()
        if handed:
            selfstats.count("export.partial_spans", handed)
        return handed

    def shutdown(self) -> None:
        try:
            self.end_open_spans()
        except Exception as exc:
            selfstats.failure("export.partial_spans_failed", exc)
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _partial(span: Any, end_time: int) -> ReadableSpan:
    return span_copy.with_attributes(span, {**(span.attributes or {}), sc.PARTIAL: True}, end_time=end_time)


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


def _otlp_span_exporter(settings: config.Settings, environ: Mapping[str, str]) -> SpanExporter:
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    max_bytes = settings.export_max_request_bytes
    if (protocol or "http/protobuf").strip().lower() == "grpc":
        from llmobs.export_grpc import EncodedGrpcSpanExporter

        return SizeLimitedExporter(EncodedGrpcSpanExporter(), max_bytes)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if environ.get("OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER"):
        return SizeLimitedExporter(OTLPSpanExporter(), max_bytes)  # its own session: no 413 split
    session = _StatusSession.create()
    return SizeLimitedExporter(OTLPSpanExporter(session=session), max_bytes, session)


def store_exporter(settings: config.Settings) -> SpanExporter:
    """The embedded store's exporter as ``configure()`` makes it: ``settings``' store path and retention
    (for a receiver or a tool writing spans into the store outside an instrumented process)."""
    from llmobs.store import Retention, SQLiteSpanExporter

    retention = Retention(
        max_age_days=settings.retention_max_age_days,
        max_bytes=int(settings.retention_max_mb * 1024 * 1024) if settings.retention_max_mb else None,
    )
    return SQLiteSpanExporter(settings.store_path(), retention=retention)


def _span_exporter(name: str, settings: config.Settings, environ: Mapping[str, str]) -> SpanExporter:
    if name == "store":
        return store_exporter(settings)
    if name == "otlp":
        return _otlp_span_exporter(settings, environ)
    if name == "console":
        return ConsoleSpanExporter()
    raise config.ConfigError(f"unknown exporter {name!r}")


def span_processor(name: str, settings: config.Settings, environ: Mapping[str, str] | None = None) -> SpanProcessor:
    """The batch processor and exporter ``configure()`` wires for exporter ``name`` (also for tests and
    benchmarks that build their own provider)."""
    environ = os.environ if environ is None else environ
    return _BatchProcessor(_span_exporter(name, settings, environ), environ, settings.export_shutdown_timeout_s)


def _as_processor(answer: Any, settings: config.Settings, environ: Mapping[str, str]) -> SpanProcessor:
    """A plugin's span processor as is; its exporter behind the batch processor llmobs' own exporters get."""
    if isinstance(answer, SpanExporter):
        return _BatchProcessor(answer, environ, settings.export_shutdown_timeout_s)
    return answer


def _resource(settings: config.Settings) -> Resource:
    attributes = {SERVICE_NAME: settings.service_name} if settings.service_name else {}
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; explicit settings win.
    return Resource.create(attributes)


def _metric_reader(environ: Mapping[str, str]) -> Any:
    """The metric reader ``OTEL_METRICS_EXPORTER`` asks for (``otlp`` is implied by an OTLP endpoint).

    Readers from :mod:`llmobs.aggregated_metrics`: llmobs' own GenAI metrics skip the SDK's costly
    per-measurement path on a provider llmobs owns.
    """
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

    from llmobs.aggregated_metrics import AggregatingPeriodicReader

    choice = (environ.get("OTEL_METRICS_EXPORTER") or "").strip().lower()
    if choice == "otlp" or (not choice and _otlp_endpoint_set(environ, "METRICS")):
        protocol = environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        if (protocol or "http/protobuf").strip().lower() == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        return AggregatingPeriodicReader(OTLPMetricExporter())
    if choice == "console":
        return AggregatingPeriodicReader(ConsoleMetricExporter())
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
        from prometheus_client import start_http_server

        from llmobs.aggregated_metrics import prometheus_reader
    except ImportError:
        raise config.ConfigError(
            "OTEL_METRICS_EXPORTER=prometheus needs the prometheus extra: pip install 'llmobs[prometheus]'"
        ) from None
    host = environ.get("OTEL_EXPORTER_PROMETHEUS_HOST") or "localhost"
    port = int(environ.get("OTEL_EXPORTER_PROMETHEUS_PORT") or 9464)
    reader = prometheus_reader()
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
    aggregated_metrics.register(provider, [reader], is_global=metrics.get_meter_provider() is provider)
    return provider


_observed_providers: weakref.WeakSet[Any] = weakref.WeakSet()


def _observe_selfstats(meter_provider: Any) -> None:
    """Publish ``llmobs.dropped`` on ``meter_provider`` (once per provider): llmobs' own, or the application's —
    or, when there is none yet, the global proxy, whose instruments move to the provider the application sets."""
    from opentelemetry.metrics import CallbackOptions, Observation

    if meter_provider in _observed_providers:
        return
    _observed_providers.add(meter_provider)

    def observe(options: CallbackOptions) -> list[Observation]:
        # The telemetry-loss counters start at zero, so an alert on their increase works from the first
        # collection (and a collection is never empty: the aggregated GenAI metrics ride on it).
        counts = {**dict.fromkeys(LOSS_REASONS, 0), **selfstats.snapshot()}
        return [Observation(n, {"llmobs.reason": kind}) for kind, n in counts.items()]

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
        # Also on the application's provider: what llmobs dropped is reported wherever its metrics go.
        meter_provider = _state.meter_provider or metrics.get_meter_provider()
        _observe_selfstats(meter_provider)
        if _state.meter_provider is None:  # an application's provider built with llmobs' readers aggregates here
            aggregated_metrics.adopt(meter_provider, is_global=True)
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
            exporting = [span_processor(name, settings, environ) for name in names]
            exporting += [_as_processor(p, settings, environ) for p in plugins.span_processors(settings)]
            if exporting:
                # Sampling is on by default when spans leave the machine; the local store alone keeps all.
                processors = [_OpenSpans(SamplingProcessor(exporting, auto_enabled="otlp" in names))]
                provider.add_span_processor(processors[0])
                _handle_sigterm(settings)
        _state.tracer_provider = provider
        _state.processors = processors
        _state.exporters = names
        _state.configured = True
        _arrange_child_exit_flush()
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
    """Export everything buffered so far, waiting at most ``timeout_millis`` in all.

    The span processors and the meter provider share the one deadline. True when every one of them
    reported done within it; False when the time ran out first (or a flush raised). Calls whose spans are
    still being finished in the background are finished first (:mod:`llmobs.finisher`).
    """
    finisher.flush()
    with _lock:
        provider, processors, meter_provider = _state.tracer_provider, list(_state.processors), _state.meter_provider
    flushes: list[Callable[[int], bool]] = []
    if provider is not None and provider is _installed_provider:
        flushes.append(provider.force_flush)
    else:
        flushes += [processor.force_flush for processor in processors]
    if meter_provider is not None:
        flushes.append(meter_provider.force_flush)
    try:
        return flush_all(flushes, timeout_millis)
    except Exception as exc:
        selfstats.failure("export.flush_failed", exc)
        return False


def shutdown() -> None:
    """Flush and close the exporters ``configure()`` wired; safe to call more than once.

    The global tracer provider stays installed (OpenTelemetry allows setting it only once per process);
    our processors are removed from it, so a later ``configure()`` can wire exporters again.
    """
    outer = not getattr(_in_shutdown, "active", False)
    _in_shutdown.active = True
    try:
        _shutdown()
    finally:
        if outer:
            _in_shutdown.active = False
    if outer and _sigterm_pending and threading.current_thread() is threading.main_thread():
        _die_of(_sigterm_pending)  # SIGTERM came while this thread flushed: it dies of it now, as it would have


def _shutdown() -> None:
    finisher.flush()
    with _lock:
        if not _state.configured:
            return
        try:
            for processor in _state.processors:  # shutting down exports what is buffered
                processor.shutdown()
            if _state.meter_provider is not None:
                _state.meter_provider.shutdown()  # collects and exports once more
                aggregated_metrics.unregister_global()
        except Exception as exc:
            selfstats.failure("export.shutdown_failed", exc)
        finally:
            if _state.tracer_provider is not None:
                _detach_processors(_state.tracer_provider, _state.processors)
            _state.__init__()  # type: ignore[misc]


def _handle_sigterm(settings: config.Settings) -> None:
    """Flush on SIGTERM when nothing else handles it (Python's default dies without running ``atexit``).

    Only from the main thread and only over the default action: an application or server that handles
    SIGTERM itself exits through ``atexit``, where llmobs flushes anyway.
    """
    global _sigterm_timeout_s
    _sigterm_timeout_s = wait_s(settings.export_shutdown_timeout_s)
    if not settings.export_handle_sigterm or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError) as exc:  # no signals here (embedded interpreter)
        selfstats.failure("export.sigterm_handler_failed", exc)


_sigterm_timeout_s = 10.0
_in_shutdown = threading.local()  # .active: this thread is inside shutdown()
_sigterm_pending = 0  # a SIGTERM that came while the main thread was inside shutdown(): died of when it ends


def _on_sigterm(signum: int, frame: Any) -> None:
    """Flush and close the exporters, then die of the signal as the default action would.

    The flush runs on its own thread, waited for at most a bounded time: the interrupted code may hold
    a lock the flush needs, and a stuck flush must not keep a terminated process alive.

    When the interrupted code is this thread's own exit flush (a multiprocessing pool's ``terminate()``
    signals workers already leaving through their finalizers), a second flush would wait for the lock the
    first holds, for the whole bound, and then kill it half done: the first finishes instead, within the same
    bound, and the process dies of the signal after it. A second SIGTERM kills at once.
    """
    global _sigterm_pending
    if _sigterm_pending:
        _die_of(signum)
    if getattr(_in_shutdown, "active", False):
        _sigterm_pending = signum
        try:
            deadline = threading.Timer(2 * _sigterm_timeout_s + 1, os.kill, (os.getpid(), signum))
            deadline.daemon = True
            deadline.start()
        except RuntimeError:  # no new thread at interpreter exit: the flush's own timeouts bound it
            pass
        return
    worker = threading.Thread(target=shutdown, name="llmobs-sigterm-flush", daemon=True)
    worker.start()
    worker.join(2 * _sigterm_timeout_s + 1)
    _die_of(signum)


def _die_of(signum: int) -> None:
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _has_processors(provider: TracerProvider) -> bool:
    multi = getattr(provider, "_active_span_processor", None)
    return bool(getattr(multi, "_span_processors", True))  # unknown SDK internals: assume it has some


def _detach_processors(provider: TracerProvider, processors: list[SpanProcessor]) -> None:
    """Remove our processors from a provider (the SDK has no public removal API; best effort)."""
    multi = getattr(provider, "_active_span_processor", None)
    current = getattr(multi, "_span_processors", None)
    if isinstance(current, tuple):
        multi._span_processors = tuple(p for p in current if p not in processors)


def _after_fork_in_child() -> None:
    """In a forked child of a configured process using multiprocessing, arrange the exit flush."""
    if _state.configured and "multiprocessing" in sys.modules:
        _flush_at_child_exit(started=False)


def _arrange_child_exit_flush() -> None:
    """Configured inside a multiprocessing child (a pool's initializer, a module its start imports, first use):
    arrange the exit flush. Children of fork and of forkserver (Python 3.14's default on Linux) end with
    ``os._exit``; ``spawn``'s exit through ``atexit``."""
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is not None:  # else not a multiprocessing child: the exit is an ordinary one
        _flush_at_child_exit(started=multiprocessing.parent_process() is not None)


def _flush_at_child_exit(started: bool) -> None:
    """multiprocessing's children end with ``os._exit`` after running its finalizers, so ``atexit`` never runs
    there: the flush is one of those finalizers. A finalizer registered before the child's ``Process`` starts
    (not ``started``) would be cleared then, so it is registered by an after-fork hook of multiprocessing's
    own, which runs after that."""
    try:
        if started:
            _register_exit_flush()
        else:
            from multiprocessing import util

            util.register_after_fork(_state, _register_exit_flush)
    except Exception as exc:
        selfstats.failure("export.child_exit_flush_failed", exc)


_exit_flush_pid = 0


def _register_exit_flush(_: object = None) -> None:
    """Run ``shutdown`` (flush and close) from multiprocessing's exit finalizers, once per process."""
    global _exit_flush_pid
    if _exit_flush_pid == os.getpid():
        return
    from multiprocessing import util

    util.Finalize(None, shutdown, exitpriority=0)
    _exit_flush_pid = os.getpid()


atexit.register(shutdown)
os.register_at_fork(after_in_child=_after_fork_in_child)
