"""Export destination down, stalled, answering 500 / 429, or resetting connections — real loopback servers.

For each fault: the application's traced calls never run an export (every export happens on the batch
processor's thread, recorded by a probe), the queue stays within its bound while the destination is
away, every span is accounted for (accepted + counted as dropped + still queued = made), the drop is
logged once, and export resumes when the destination comes back. No wall-clock thresholds: the stalled
destination holds its request until the test releases it, so "the app finished while export was
stuck" is an ordering, not a timing.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from llmobs import config, export, selfstats
from llmobs import semconv as sc
from llmobs.recorder import ROOT, Recorder

sys.path.insert(0, str(Path(__file__).parent))
from faultserver import FaultServer, free_port


class Probe:
    """Wraps the size-limited exporter's delivery of one request: which threads sent, and whether a
    request is in progress."""

    def __init__(self, deliver):
        self.deliver = deliver
        self.threads: set[int] = set()
        self.started = threading.Event()
        self.running = 0

    def __call__(self, spans, encoded):
        self.threads.add(threading.get_ident())
        self.running += 1
        self.started.set()
        try:
            return self.deliver(spans, encoded)
        finally:
            self.running -= 1


class Pipeline:
    """What ``configure()`` wires for OTLP (batch processor, size-limited OTLP/HTTP exporter) on a private provider."""

    def __init__(self, monkeypatch, endpoint: str, *, queue: int = 256, timeout_s: float = 30, max_bytes=None):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", str(timeout_s))
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", str(queue))
        monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", str(min(64, queue)))
        overrides = {} if max_bytes is None else {"export_max_request_bytes": max_bytes}
        settings = config.load(overrides, environ={})
        self.processor = export.span_processor("otlp", settings)
        self.sized = self.processor.span_exporter
        assert self.sized._post is not None, "OTLP/HTTP requests should be encoded by llmobs"
        self.probe = Probe(self.sized._deliver)
        self.sized._deliver = self.probe
        self.provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: "faulty-app"}))
        self.provider.add_span_processor(self.processor)
        self.recorder = Recorder(tracer_provider=self.provider, meter_provider=NoOpMeterProvider())
        self.made = 0

    def traced_call(self) -> str:
        """One traced application call: an agent span and its LLM span."""
        agent = self.recorder.start(sc.OP_INVOKE_AGENT, "app", parent=ROOT)
        llm = self.recorder.start(sc.OP_CHAT, provider="openai", model="gpt-4o-mini", parent=agent)
        llm.set_usage(12, 3)
        llm.end()
        agent.end()
        self.made += 2
        return agent.trace_id

    def close(self):
        self.provider.shutdown()


@pytest.fixture
def pipelines(monkeypatch):
    selfstats.reset()
    made = []

    def make(endpoint, **kw):
        made.append(Pipeline(monkeypatch, endpoint, **kw))
        return made[-1]

    yield make
    for p in made:
        p.close()


def _dropped(kind: str) -> int:
    return selfstats.snapshot().get(kind, 0)


def _wait(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _drop_logs(caplog, kind: str) -> int:
    return sum(1 for r in caplog.records if r.name == "llmobs" and kind in r.getMessage())


def _trace_ids(spans) -> set[str]:
    return {s.trace_id.hex() for s in spans}


def test_stalled_destination_never_blocks_the_app_and_the_queue_stays_bounded(pipelines, caplog):
    caplog.set_level(logging.WARNING, logger="llmobs")
    server = FaultServer(mode="stall")
    try:
        p = pipelines(server.endpoint, queue=256, timeout_s=600)  # held until released, never timed out
        for _ in range(5):
            p.traced_call()
        assert server.stalled.wait(30), "the exporter never reached the destination"
        app = threading.get_ident()
        queued_max = 0
        for _ in range(1000):  # 2000 spans while the destination holds the export request
            p.traced_call()
            queued_max = max(queued_max, p.processor.queued())
        # Every traced call returned while the one export request in flight was still unanswered.
        assert not server.released.is_set()
        assert [a.status for a in server.attempts] == [None]
        assert p.probe.running == 1
        assert app not in p.probe.threads
        assert queued_max <= 256
        in_flight = len(server.attempts[0].spans)
        dropped = _dropped(export.DROP_QUEUE_FULL)
        assert in_flight + dropped + p.processor.queued() == p.made
        assert dropped >= p.made - in_flight - 256
        assert _drop_logs(caplog, export.DROP_QUEUE_FULL) == 1  # thousands of drops, one log line

        # The destination answers again: what is queued and what comes next is exported.
        server.mode = "ok"
        server.release()
        later = {p.traced_call() for _ in range(3)}
        assert server.wait_for(lambda s: len(s.accepted_spans()) + _dropped(export.DROP_QUEUE_FULL) == p.made)
        assert later <= _trace_ids(server.accepted_spans())
    finally:
        server.close()


def test_memory_stays_bounded_while_the_destination_is_stalled(pipelines):
    server = FaultServer(mode="stall")
    try:
        p = pipelines(server.endpoint, queue=256, timeout_s=600)  # held until released, never timed out
        p.traced_call()
        assert server.stalled.wait(30)
        for _ in range(500):  # fill the queue
            p.traced_call()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(2000):  # 4,000 more spans: all but the queue's 256 are dropped
                p.traced_call()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert p.processor.queued() <= 256
        # Kept, 4,000 spans would be several MB; bounded, memory does not grow with the spans made.
        assert grown < 1_000_000, f"{grown} bytes retained for 4,000 dropped spans"
    finally:
        server.close()


def test_destination_down_then_back(pipelines):
    port = free_port()
    p = pipelines(f"http://127.0.0.1:{port}/v1/traces", timeout_s=60)
    first = {p.traced_call() for _ in range(5)}
    assert p.probe.started.wait(30)
    app = threading.get_ident()
    for _ in range(50):
        p.traced_call()  # meanwhile the exporter is retrying a refused connection
    assert app not in p.probe.threads
    server = FaultServer(port=port)  # the destination comes back on the same address
    try:
        assert server.wait_for(lambda s: first <= _trace_ids(s.accepted_spans()))
        assert server.wait_for(lambda s: len(s.accepted_spans()) == p.made)
        assert _dropped(export.DROP_EXPORT_FAILED) == 0  # retried, not lost
    finally:
        server.close()


@pytest.mark.parametrize("status", ["500", "reset"])
def test_refusing_destination_counts_what_it_lost_once_and_resumes(pipelines, caplog, status):
    caplog.set_level(logging.WARNING, logger="llmobs")
    server = FaultServer(mode=status)
    try:
        p = pipelines(server.endpoint, timeout_s=2)  # a reset connection is retried until this deadline
        app = threading.get_ident()
        for _ in range(10):
            p.traced_call()
        assert _wait(lambda: _dropped(export.DROP_EXPORT_FAILED) == 20)
        for _ in range(10):
            p.traced_call()
        assert _wait(lambda: _dropped(export.DROP_EXPORT_FAILED) == 40)
        assert {len(a.spans) for a in server.attempts} != {0}
        assert _drop_logs(caplog, export.DROP_EXPORT_FAILED) == 1
        assert app not in p.probe.threads

        server.mode = "ok"
        later = {p.traced_call() for _ in range(3)}
        assert server.wait_for(lambda s: len(s.accepted_spans()) + _dropped(export.DROP_EXPORT_FAILED) == p.made)
        assert later == _trace_ids(server.accepted_spans())
    finally:
        server.close()


def test_rate_limited_destination_is_retried_after_it_says(pipelines):
    server = FaultServer(mode="429")
    try:
        p = pipelines(server.endpoint, timeout_s=60)
        first = {p.traced_call() for _ in range(5)}
        assert server.wait_for(lambda s: len(s.attempts) >= 1)
        app = threading.get_ident()
        for _ in range(50):
            p.traced_call()
        assert app not in p.probe.threads
        server.mode = "ok"  # the next retry (after Retry-After) is accepted
        assert server.wait_for(lambda s: first <= _trace_ids(s.accepted_spans()))
        assert server.wait_for(lambda s: len(s.accepted_spans()) == p.made)
        assert any(a.status == 429 for a in server.attempts)
        assert _dropped(export.DROP_EXPORT_FAILED) == 0
    finally:
        server.close()
