"""Test wiring shared by every llmobs package's tests: the application's global OTel SDK providers.

Framework packages record through whatever global providers exist, so their tests install SDK providers
as an application would — or reuse the ones already installed in the process — and read spans and
metrics through in-memory exporters. The OpenTelemetry SDK must be installed (it is a core dependency).
"""

from __future__ import annotations

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider


def global_tracer_provider() -> TracerProvider:
    """The global SDK tracer provider, installed first if the process has none."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    return provider


def global_metric_reader() -> InMemoryMetricReader:
    """An in-memory reader on the global SDK meter provider, installing both if the process has none."""
    provider = metrics.get_meter_provider()
    if isinstance(provider, MeterProvider):
        # The SDK has no public list of a provider's readers; reuse the in-memory one installed before.
        return next(r for r in provider._metric_readers if isinstance(r, InMemoryMetricReader))
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader
