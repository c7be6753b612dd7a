"""Test wiring: the application's global OTel SDK providers, an in-memory exporter, and real LlamaIndex.

The integration records through ``llmobs.get_recorder()``, i.e. whatever global providers exist. Run
alone, this file installs them; in the whole suite another package's conftest may have installed them
first, and then the exporter is added to that provider and its in-memory metric reader is read — the
situation of any application that set up OpenTelemetry itself.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmobs_llamaindex
from llmobs import config, selfstats
from llmobs.testing import FinishedSpans, global_metric_reader, global_tracer_provider, metric_changes

# Shared fakes (fake_llms) are imported by module name; importlib mode does not put this directory on sys.path.
sys.path.insert(0, str(Path(__file__).parent))


EXPORTER = InMemorySpanExporter()
global_tracer_provider().add_span_processor(SimpleSpanProcessor(EXPORTER))
READER = global_metric_reader()

TEXTS = [f"Document {i} is about topic {i % 5}: facts and figures number {i}." for i in range(12)]


@pytest.fixture
def spans():
    EXPORTER.clear()
    yield FinishedSpans(EXPORTER)
    EXPORTER.clear()


@pytest.fixture
def metric_points():
    """A function giving a metric's points recorded since the test began (the reader is cumulative)."""
    return metric_changes(READER)


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
