"""Duck-typed copies of vLLM's stats objects, private OTel providers, and a telemetry factory.

The shapes mirror vLLM 0.32/0.33 ``vllm/v1/metrics/stats.py``; the engine tier
(``tests_engine/``) checks the same behaviour against vLLM's real classes.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmobs import selfstats
from llmobs.recorder import Recorder
from llmobs_vllm._contexts import RequestContexts
from llmobs_vllm._telemetry import EngineTelemetry


class FinishReason(enum.IntEnum):
    STOP = 0
    LENGTH = 1
    ABORT = 2
    ERROR = 3
    REPETITION = 4

    def __str__(self) -> str:
        return self.name.lower()


def scheduler(running=3, waiting=1, skipped=0, kv=0.25, queries=0, hits=0, spec=None) -> Any:
    return types.SimpleNamespace(
        num_running_reqs=running, num_waiting_reqs=waiting, num_skipped_waiting_reqs=skipped, kv_cache_usage=kv,
        prefix_cache_stats=types.SimpleNamespace(reset=False, requests=1, queries=queries, hits=hits),
        spec_decoding_stats=spec,
    )


def finished(request_id="chatcmpl-r1", reason=FinishReason.LENGTH, e2e=0.5, prompt=5, generated=6, cached=2,
             queued=0.01, prefill=0.04, decode=0.4, tpot=None, max_tokens=6, preemptions=0) -> Any:
    inference = prefill + decode
    tpot = decode / (generated - 1) if tpot is None and generated > 1 else (tpot or 0.0)
    return types.SimpleNamespace(
        finish_reason=reason, request_id=request_id, e2e_latency=e2e, num_prompt_tokens=prompt,
        num_preemptions=preemptions, num_generation_tokens=generated, max_tokens_param=max_tokens,
        queued_time=queued, prefill_time=prefill, inference_time=inference, decode_time=decode,
        mean_time_per_output_token=tpot, is_corrupted=False, num_cached_tokens=cached,
    )


def iteration(ttfts=(), itls=(), done=(), prompt=0, generated=0, preempted=0, timestamp=1_700_000_000.0) -> Any:
    return types.SimpleNamespace(
        iteration_timestamp=timestamp, num_generation_tokens=generated, num_prompt_tokens=prompt,
        num_preempted_reqs=preempted, finished_requests=list(done), time_to_first_tokens_iter=list(ttfts),
        inter_token_latencies_iter=list(itls),
    )


class Env:
    """Private providers plus readers of what telemetry produced."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.contexts = RequestContexts()

    def telemetry(self, **kwargs: Any) -> EngineTelemetry:
        kwargs.setdefault("engine_indexes", (0,))
        kwargs.setdefault("itl_sample_every", 1)
        kwargs.setdefault("start_thread", False)
        return EngineTelemetry(
            kwargs.pop("model", "tiny"),
            meter_provider=self.meter_provider,
            recorder_factory=lambda: Recorder(self.tracer_provider, self.meter_provider),
            contexts=self.contexts,
            **kwargs,
        )

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> its data points (cumulative) at this moment."""
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out

    def finished_spans(self) -> list[Any]:
        return list(self.spans.get_finished_spans())


@pytest.fixture
def env() -> Iterator[Env]:
    yield Env()


@pytest.fixture(autouse=True)
def _fresh_selfstats():
    selfstats.reset()


@pytest.fixture(autouse=True)
def _no_auto_configure(monkeypatch):
    """Unit tests never let llmobs wire global exporters (the store file, OTLP) in the test process."""
    monkeypatch.setenv("LLMOBS_AUTO_CONFIGURE", "false")


def points(metrics: dict[str, list[Any]], name: str, **attributes: Any) -> list[Any]:
    """The data points of ``name`` whose attributes include ``attributes``."""
    return [p for p in metrics.get(name, []) if all(p.attributes.get(k) == v for k, v in attributes.items())]


@pytest.fixture
def fake():
    return types.SimpleNamespace(scheduler=scheduler, finished=finished, iteration=iteration, points=points,
                                 FinishReason=FinishReason)
