"""Test wiring: the application's own global OTel providers, with in-memory exporter and metric reader.

This is exactly the situation of an application that set up OpenTelemetry itself: llmobs must use these
providers, add nothing unasked, and every span and metric it makes must show up here.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmobs import config, selfstats

SPANS = InMemorySpanExporter()
METRICS = InMemoryMetricReader()
_tracer_provider = TracerProvider()
_tracer_provider.add_span_processor(SimpleSpanProcessor(SPANS))
trace.set_tracer_provider(_tracer_provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[METRICS]))


@pytest.fixture
def spans():
    """The in-memory span exporter behind the global provider, emptied for the test."""
    SPANS.clear()
    yield SPANS
    SPANS.clear()


@pytest.fixture
def metric_reader():
    METRICS.get_metrics_data()  # drain (cumulative temporality: tests compare deltas)
    return METRICS


@pytest.fixture
def settings():
    """Swap in known settings for the test and restore the previous ones after."""
    previous = config.current()

    def apply(**changes):
        return config.swap(dataclasses.replace(config.Settings(), **changes)) and config.current()

    apply()
    yield apply
    config.swap(previous)


@pytest.fixture(autouse=True)
def _fresh_selfstats():
    selfstats.reset()
    yield


# Shared test helpers (hostile_json) are imported by module name; pytest's importlib mode does not
# put the test directory on sys.path by itself.
sys.path.insert(0, str(Path(__file__).parent))
