"""Test wiring: the application's global OTel SDK providers, an in-memory exporter, and real LlamaIndex.

The integration records through ``llmobs.get_recorder()``, i.e. whatever global providers exist. Run
alone, this file installs them; in the whole suite another package's conftest may have installed them
first, and then the exporter is added to that provider and its in-memory metric reader is read — the
situation of any application that set up OpenTelemetry itself.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmobs_llamaindex
from llmobs import config, selfstats
from llmobs.testing import global_metric_reader, global_tracer_provider

# Shared fakes (fake_llms) are imported by module name; importlib mode does not put this directory on sys.path.
sys.path.insert(0, str(Path(__file__).parent))


EXPORTER = InMemorySpanExporter()
global_tracer_provider().add_span_processor(SimpleSpanProcessor(EXPORTER))
READER = global_metric_reader()

TEXTS = [f"Document {i} is about topic {i % 5}: facts and figures number {i}." for i in range(12)]


class Spans:
    """The spans finished during one test, with helpers to walk their trees."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    def all(self) -> list[ReadableSpan]:
        return sorted(self._exporter.get_finished_spans(), key=lambda s: s.start_time)

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span

    def kind(self, kind: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.attributes.get("gen_ai.span.kind") == kind]

    def roots(self) -> list[ReadableSpan]:
        ids = {s.context.span_id for s in self.all()}
        return [s for s in self.all() if s.parent is None or s.parent.span_id not in ids]

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        return [s for s in self.all() if s.parent is not None and s.parent.span_id == span.context.span_id]

    def tree(self, span: ReadableSpan) -> tuple:
        """``(name, (child trees...))`` in start order: a shape to compare in one assert."""
        return span.name, tuple(self.tree(child) for child in self.children(span))

    def traces(self) -> dict[int, list[ReadableSpan]]:
        by_trace = defaultdict(list)
        for span in self.all():
            by_trace[span.context.trace_id].append(span)
        return dict(by_trace)

    def clear(self) -> None:
        self._exporter.clear()


@pytest.fixture
def spans():
    EXPORTER.clear()
    yield Spans(EXPORTER)
    EXPORTER.clear()


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
                    if hasattr(point, "count"):
                        found[(metric.name, frozenset(point.attributes.items()))] = (point.sum, point.count)
    return found


@pytest.fixture
def metric_points():
    """A function giving a histogram's points recorded since the test began (the reader is cumulative)."""
    before = _histograms()

    def points(name: str) -> list[Point]:
        out = []
        for (metric, attributes), (total, count) in _histograms().items():
            old_total, old_count = before.get((metric, attributes), (0, 0))
            if metric == name and count > old_count:
                out.append(Point(dict(attributes), total - old_total, count - old_count))
        return out

    return points


@pytest.fixture(autouse=True)
def _fresh_selfstats():
    selfstats.reset()
    yield


@pytest.fixture
def instrumented():
    """LlamaIndex instrumented for the test, uninstrumented after (so tests never see each other's runs)."""
    assert llmobs_llamaindex.instrument()
    yield
    llmobs_llamaindex.uninstrument()


@pytest.fixture
def settings():
    """Swap in settings for the test (``settings(capture=...)``) and restore the previous ones after."""
    previous = config.current()

    def apply(**changes):
        config.swap(dataclasses.replace(previous, **changes))
        return config.current()

    yield apply
    config.swap(previous)


@pytest.fixture(scope="session")
def index() -> VectorStoreIndex:
    """An in-memory vector index over a dozen documents, built before any test instruments LlamaIndex."""
    documents = [Document(text=text, doc_id=f"doc-{i}") for i, text in enumerate(TEXTS)]
    return VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=16))
