"""Test wiring: the application's global OTel SDK providers (in-memory exporter and metric reader), real
promptflow-tracing with ``PF_DISABLE_TRACING=false``, and a loopback OpenAI server for Promptflow's traced
``openai`` client.

Alone, this file installs the providers; in the whole suite another package's conftest may have done so
first, and then the exporter is added to that provider and its in-memory reader is used — as with any
application that set up OpenTelemetry itself. ``start_trace()`` changes process-wide state (it merges its
resource into the provider and wraps the ``openai`` client); each test puts both back.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import NamedTuple

import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from promptflow.tracing._integrations._openai_injector import recover_openai_api

import llmobs_promptflow
from llmobs import config, selfstats
from llmobs import semconv as sc
from llmobs.testing import global_metric_reader, global_tracer_provider
from llmobs_promptflow.loopback import LoopbackOpenAI

PROVIDER = global_tracer_provider()
EXPORTER = InMemorySpanExporter()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
READER = global_metric_reader()


class Spans:
    """The spans finished during one test, with helpers to walk their trees."""

    def all(self) -> list[ReadableSpan]:
        return sorted(EXPORTER.get_finished_spans(), key=lambda s: s.start_time)

    def one(self, name: str) -> ReadableSpan:
        (span,) = [s for s in self.all() if s.name == name]
        return span

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        return [s for s in self.all() if s.parent is not None and s.parent.span_id == span.context.span_id]

    def tree(self, span: ReadableSpan) -> tuple:
        """``(name, kind, (child trees...))`` in start order: a shape to compare in one assert."""
        kind = span.attributes.get(sc.SPAN_KIND)
        return span.name, kind, tuple(self.tree(child) for child in self.children(span))

    def roots(self) -> list[ReadableSpan]:
        ids = {s.context.span_id for s in self.all()}
        return [s for s in self.all() if s.parent is None or s.parent.span_id not in ids]

    def traces(self) -> dict[int, list[ReadableSpan]]:
        by_trace = defaultdict(list)
        for span in self.all():
            by_trace[span.context.trace_id].append(span)
        return dict(by_trace)


class Point(NamedTuple):
    attributes: dict
    sum: float
    count: int


def _histograms() -> dict[tuple[str, frozenset], tuple[float, int]]:
    data = READER.get_metrics_data()
    found = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    total = point.sum if hasattr(point, "count") else point.value
                    count = point.count if hasattr(point, "count") else 1
                    found[(metric.name, frozenset(point.attributes.items()))] = (total, count)
    return found


@pytest.fixture
def metric_points():
    """A function giving a metric's points recorded since the test began (the reader is cumulative)."""
    before = _histograms()

    def points(name: str) -> list[Point]:
        out = []
        for (metric, attributes), (total, count) in _histograms().items():
            old_total, old_count = before.get((metric, attributes), (0, 0))
            if metric == name and (count > old_count or total != old_total):
                out.append(Point(dict(attributes), total - old_total, count - old_count))
        return out

    return points


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """Promptflow tracing on, default settings, fresh counters and spans; Promptflow's process-wide
    changes (the provider's resource, the wrapped ``openai`` client) undone after the test."""
    monkeypatch.setenv("PF_DISABLE_TRACING", "false")
    previous = config.swap(config.Settings())
    resource = PROVIDER.resource
    selfstats.reset()
    EXPORTER.clear()
    yield
    llmobs_promptflow.uninstrument()
    recover_openai_api()
    PROVIDER._resource = resource
    config.swap(previous)


@pytest.fixture
def spans() -> Spans:
    return Spans()


@pytest.fixture
def instrumented():
    assert llmobs_promptflow.instrument()


@pytest.fixture
def settings():
    """Change settings for the test (``settings(capture=...)``); the autouse fixture restores them."""

    def apply(**changes):
        config.swap(dataclasses.replace(config.current(), **changes))
        return config.current()

    return apply


@pytest.fixture(scope="session")
def server():
    with LoopbackOpenAI() as running:
        yield running


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test-key", max_retries=0)


@pytest.fixture
def async_client(server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test-key", max_retries=0)
