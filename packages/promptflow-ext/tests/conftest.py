"""Test wiring: the application's global OTel SDK providers (in-memory exporter and metric reader), real
promptflow-tracing with ``PF_DISABLE_TRACING=false``, and llmobs-openai's loopback OpenAI server for Promptflow's
traced ``openai`` client.

Alone, this file installs the providers; in the whole suite another package's conftest may have done so
first, and then the exporter is added to that provider and its in-memory reader is used — as with any
application that set up OpenTelemetry itself. ``start_trace()`` changes process-wide state (it merges its
resource into the provider and wraps the ``openai`` client); each test puts both back.
"""

from __future__ import annotations

import dataclasses

import openai
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from promptflow.tracing._integrations._openai_injector import recover_openai_api

import llmobs_promptflow
from llmobs import config, selfstats
from llmobs.testing import FinishedSpans, global_metric_reader, global_tracer_provider, metric_changes
from llmobs_openai.testing import FakeOpenAIServer

PROVIDER = global_tracer_provider()
EXPORTER = InMemorySpanExporter()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
READER = global_metric_reader()


@pytest.fixture
def metric_points():
    """A function giving a metric's points recorded since the test began (the reader is cumulative)."""
    return metric_changes(READER)


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
def spans() -> FinishedSpans:
    return FinishedSpans(EXPORTER)


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
    with FakeOpenAIServer() as running:
        yield running


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test-key", max_retries=0)


@pytest.fixture
def async_client(server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test-key", max_retries=0)
