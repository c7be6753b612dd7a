"""The engine tier: llmobs-vllm against a real vLLM (the CPU build), run by ``python dev.py test``.

It needs vLLM installed, so it runs in the cached environment ``dev.py`` builds (``.cache/vllm-env-*``),
never in the workspace's. In-process tests share one pair of global OTel SDK providers (an application
that set up OpenTelemetry itself: llmobs adds nothing to them); server tests start
``python -m vllm.entrypoints.openai.api_server`` on loopback and receive its spans and metrics over OTLP.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmobs import finisher
from llmobs.testing import FinishedSpans

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # sibling helpers: tiny_model, otlp_sink

from otlp_sink import Sink  # noqa: E402
from tiny_model import make_tiny_llama  # noqa: E402

SPANS = InMemorySpanExporter()
METRICS = InMemoryMetricReader()
if importlib.util.find_spec("vllm") is None:
    # Collected where vLLM is not installed (the workspace: `pytest packages/vllm-ext`): nothing to run here,
    # and this process's OTel providers are left alone.
    collect_ignore_glob = ["test_*.py"]
else:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("LLMOBS_VLLM_ITL_SAMPLE", "1")
    _tracer_provider = TracerProvider()
    _tracer_provider.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(_tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[METRICS]))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("model") / "tiny-llama")


@pytest.fixture
def spans():
    """The spans of the test, read once the calls that ended are finished (llmobs-openai finishes them in batches)."""
    finisher.flush()
    SPANS.clear()
    yield FinishedSpans(SPANS)
    finisher.flush()
    SPANS.clear()


@pytest.fixture
def metric_reader():
    return METRICS


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as s:
        yield s
