"""Test wiring: the application's global OTel SDK providers (in-memory exporter and metric reader), a
loopback OpenAI-compatible server, and real ``openai`` clients whose ``http_client`` is ours.

Alone, this file installs the providers; in the whole suite another package's conftest may have done so
first, and then the exporter is added to that provider and its in-memory reader is used — as with any
application that set up OpenTelemetry itself.
"""

from __future__ import annotations

import dataclasses

import httpx
import openai
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmobs_openai
from llmobs import config, finisher, selfstats
from llmobs.testing import FinishedSpans, global_metric_reader, global_tracer_provider
from llmobs_openai.testing import FakeOpenAIServer

SPANS = InMemorySpanExporter()
global_tracer_provider().add_span_processor(SimpleSpanProcessor(SPANS))
METRICS = global_metric_reader()


@pytest.fixture(autouse=True)
def _isolated():
    """Default settings, fresh counters and spans; no call of this test left to finish in the next one."""
    finisher.flush()
    previous = config.swap(config.Settings())
    selfstats.reset()
    SPANS.clear()
    yield
    finisher.flush()
    config.swap(previous)


@pytest.fixture
def settings():
    """Make settings with the given changes current for the rest of the test."""

    def apply(**changes):
        return config.swap(dataclasses.replace(config.Settings(), **changes))

    return apply


@pytest.fixture
def spans():
    """The finished spans so far, oldest first (calls queued to be finished in the background finished first)."""
    return FinishedSpans(SPANS).all


@pytest.fixture
def exported():
    """The spans exported so far, as they are: without finishing first what is queued to be finished."""
    return SPANS.get_finished_spans


@pytest.fixture
def points():
    """Data points of a metric whose attributes include the given ones (cumulative over the run)."""

    def find(name: str, **attributes) -> list:
        finisher.flush()
        data = METRICS.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        found += [p for p in m.data.data_points if attributes.items() <= dict(p.attributes).items()]
        return found

    return find


@pytest.fixture
def server():
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def client(server):
    with llmobs_openai.http_client(provider="vllm") as http:
        yield openai.OpenAI(api_key="sk-test-key-0123456789abcdef", base_url=server.base_url, http_client=http,
                            max_retries=0)  # fmt: skip


@pytest.fixture
def async_client(server):
    """An AsyncOpenAI client (use inside ``asyncio.run``; its connections are closed with the loop)."""
    http = llmobs_openai.async_http_client(provider="vllm")
    return openai.AsyncOpenAI(api_key="sk-test-key-0123456789abcdef", base_url=server.base_url, http_client=http,
                              max_retries=0)  # fmt: skip


@pytest.fixture
def mock_client():
    """``mock_client(answer, base_url=..., client_class=openai.OpenAI, **kwargs)``: a client whose llmobs transport
    wraps an httpx ``MockTransport`` calling ``answer(request)``; closed when the test ends. ``base_url=None``
    for clients that take their endpoint otherwise (``AzureOpenAI(azure_endpoint=...)``)."""
    opened = []

    def make(answer, *, base_url: str | None = "https://api.openai.com/v1", client_class=openai.OpenAI, **kwargs):
        http = llmobs_openai.http_client(transport=httpx.MockTransport(answer))
        opened.append(http)
        if base_url is not None:
            kwargs["base_url"] = base_url
        kwargs.setdefault("api_key", "k")
        return client_class(http_client=http, max_retries=0, **kwargs)

    yield make
    for http in opened:
        http.close()
