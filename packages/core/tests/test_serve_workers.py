"""``llmobs serve`` with ingest worker processes: each request's spans are decoded and stored by several
processes taking runs of them, every span once, answered after all are committed; failed workers are replaced."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from test_serve_hostile import request
from test_serve_receiver import _running

from llmobs import config, selfstats
from llmobs.cli import _parser
from llmobs.serve import create_server, default_workers, otlp
from llmobs.serve.ingest import Ingestor
from llmobs.serve.workers import CHUNK, IngestWorkers
from llmobs.store import TraceStore, schema


def many_spans_request(sizes: list[list[int]], bad: set[int] = frozenset(), scope: str = "llmobs",
                       attributes: dict[str, str] | None = None) -> ExportTraceServiceRequest:
    """Resources with scopes of the given span counts (``[[3, 0], [5]]``: two resources); span ``n`` (counted
    across the request) is named ``s<n>``; those in ``bad`` get an all-zero trace id (rejected)."""
    export = ExportTraceServiceRequest()
    now = time.time_ns()
    n = 0
    for r, scopes in enumerate(sizes):
        resource_spans = export.resource_spans.add()
        item = resource_spans.resource.attributes.add(key="service.name")
        item.value.string_value = f"svc-{r}"
        for size in scopes:
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.name = scope
            for _ in range(size):
                trace_id = b"\x00" * 16 if n in bad else (n // 4 + 1).to_bytes(16, "big")
                span = Span(trace_id=trace_id, span_id=(n + 1).to_bytes(8, "big"), name=f"s{n}",
                            start_time_unix_nano=now, end_time_unix_nano=now + 1000)
                for key, value in (attributes or {}).items():
                    span.attributes.add(key=key).value.string_value = value
                scope_spans.spans.append(span)
                n += 1
    return export


@pytest.mark.parametrize("sizes", [[[7]], [[3, 0, 4], [0], [5, 1]], [[1]], [[0]], [[2], [2], [2]]])
@pytest.mark.parametrize("run", [1, 2, 3, 64])
def test_runs_of_a_request_decode_every_span_once_in_order(sizes, run, settings):
    settings()
    ingestor = Ingestor(None, config.current())  # no exporter needed to make rows
    export = many_spans_request(sizes, bad={2})
    total = otlp.span_count(export)
    assert total == sum(map(sum, sizes))
    whole = ingestor.rows(export)
    parts = [ingestor.rows(export, (start, min(start + run, total))) for start in range(0, total, run)]
    assert [row for part in parts for row in part.rows] == whole.rows
    assert sum(part.rejected for part in parts) == whole.rejected == (1 if total > 2 else 0)
    assert [r[3] for r in whole.rows] == [f"s{n}" for n in range(total) if n != 2]


def test_a_pool_needs_two_workers():
    with pytest.raises(ValueError, match="at least 2"):
        IngestWorkers("unused.db", config.Settings(), 1)


@pytest.fixture
def pooled(tmp_path, settings):
    settings()
    server = create_server(tmp_path / "w.db", port=0, workers=2).start()
    yield server
    server.close()


def stored_names(server) -> list[str]:
    with TraceStore(server.app.readers.path) as store:
        return sorted(s.name for t in store.list_traces(100) for s in store.get_trace(t.trace_id))


def test_a_request_is_stored_once_across_the_workers_with_merged_rejections(pooled):
    sizes = [[CHUNK + 3, 4], [2 * CHUNK + 5]]  # runs across scopes and resources
    total = sum(map(sum, sizes))
    bad = {1, CHUNK + 10, total - 1}  # in different runs
    status, _, body = request(pooled, body=many_spans_request(sizes, bad=bad).SerializeToString())
    assert status == 200
    reply = ExportTraceServiceResponse.FromString(body)
    assert reply.partial_success.rejected_spans == 3
    assert "invalid" in reply.partial_success.error_message
    assert stored_names(pooled) == sorted(f"s{n}" for n in range(total) if n not in bad)


def test_concurrent_requests_share_the_workers_and_each_is_stored_once(pooled):
    bodies = []
    for n in range(8):  # 8 requests of 100 spans with ids of their own
        export = many_spans_request([[100]])
        for span in export.resource_spans[0].scope_spans[0].spans:
            span.trace_id = (n + 1).to_bytes(2, "big") + span.trace_id[2:]
            span.name = f"r{n}-{span.name}"
        bodies.append(export.SerializeToString())
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda body: request(pooled, body=body)[0], bodies))
    assert statuses == [200] * 8
    with TraceStore(pooled.app.readers.path) as store:
        names = sorted(s.name for t in store.list_traces(500) for s in store.get_trace(t.trace_id))
    assert names == sorted(f"r{n}-s{i}" for n in range(8) for i in range(100))
    assert pooled.app.ingestor.restarts == 0


def test_what_a_worker_counts_reaches_the_receiver(pooled):
    before = selfstats.snapshot().get("content.truncated", 0)
    # OpenInference's raw input over the 8 KiB cap is truncated by the content policy, in a worker.
    export = many_spans_request([[4]], scope="openinference.instrumentation.openai",
                                attributes={"openinference.span.kind": "LLM", "input.value": "x" * 20_000})
    assert request(pooled, body=export.SerializeToString())[0] == 200
    assert selfstats.snapshot().get("content.truncated", 0) - before >= 4


def test_a_dead_worker_is_replaced_before_the_next_request(pooled):
    workers = pooled.app.ingestor
    first = workers.pids
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _running(first[0]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert request(pooled, body=many_spans_request([[6]]).SerializeToString())[0] == 200
    assert workers.restarts == 1 and workers.pids[0] != first[0] and workers.pids[1] == first[1]
    assert stored_names(pooled) == sorted(f"s{n}" for n in range(6))


def test_a_stuck_worker_fails_the_request_retryably_and_is_replaced(tmp_path, settings):
    settings()
    workers = IngestWorkers(tmp_path / "stuck.db", config.current(), 2, request_timeout_s=1.0)
    try:
        stuck = workers.pids[1]
        os.kill(stuck, signal.SIGSTOP)
        body = many_spans_request([[5]]).SerializeToString()
        assert workers.receive(body, otlp.PROTOBUF).stored is False  # -> 503 with Retry-After
        assert selfstats.snapshot().get("serve.worker_failed") == 1
        result = workers.receive(body, otlp.PROTOBUF)  # the client's retry
        assert result.stored and result.accepted == 5
        assert workers.restarts == 1 and stuck not in workers.pids
    finally:
        workers.shutdown()
    with TraceStore(tmp_path / "stuck.db") as store:
        assert len(store.get_trace(f"{1:032x}")) == 4  # s0-s3; the retry replaced what the first try stored


def test_malformed_bodies_are_payload_errors_from_the_workers(pooled):
    workers = pooled.app.ingestor
    assert workers.receive(b"", otlp.PROTOBUF).stored  # the empty request: nothing to store
    assert workers.receive(b"{}", otlp.JSON).stored
    with pytest.raises(otlp.PayloadError, match="not an OTLP trace export request"):
        workers.receive(b"\x0a\xff\xff\xff\xff\x0f", otlp.PROTOBUF)
    with pytest.raises(otlp.PayloadError):
        workers.receive(b"[1, 2]", otlp.JSON)
    assert workers.restarts == 0


def test_the_cli_takes_a_worker_count():
    assert _parser().parse_args(["serve", "--workers", "3"]).workers == 3
    assert _parser().parse_args(["serve"]).workers is None  # -> default_workers()
    cores = len(os.sched_getaffinity(0))
    assert default_workers() == (2 if cores >= 2 else 1)


def test_a_worker_killed_under_load_loses_no_span(pooled):
    """Real OTLP exporter, batches in flight, a worker frozen and then SIGKILLed while a request waits on it:
    that request is answered 503, the exporter sends it again, a new worker takes over, and every span is
    stored exactly once."""
    provider = TracerProvider(resource=Resource.create({"service.name": "under-load"}))
    exporter = OTLPSpanExporter(endpoint=f"{pooled.url}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000, max_export_batch_size=128,
                                                   schedule_delay_millis=20))
    tracer = provider.get_tracer("llmobs")
    stop = threading.Event()
    emitted = 0

    def emit():
        nonlocal emitted
        while not stop.is_set():
            with tracer.start_as_current_span(f"root {emitted}"):
                for m in range(3):
                    tracer.start_span(f"child {emitted}.{m}").end()
            emitted += 1
            if emitted % 20 == 0:
                time.sleep(0.005)

    def stored() -> int:  # rows, keyed by (trace id, span id): a span stored twice is one row
        conn = schema.open_reader(pooled.app.readers.path)
        try:
            return conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
        finally:
            conn.close()

    sender = threading.Thread(target=emit)
    sender.start()
    try:
        deadline = time.monotonic() + 60
        while stored() < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        victim = pooled.app.ingestor.pids[1]
        os.kill(victim, signal.SIGSTOP)  # the next request takes it and waits for its answer
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        time.sleep(0.5)
    finally:
        stop.set()
        sender.join()
    assert provider.force_flush(60_000)
    provider.shutdown()
    assert selfstats.snapshot().get("serve.worker_failed", 0) >= 1  # a request did fail (and was sent again)
    assert stored() == emitted * 4
    assert pooled.app.ingestor.restarts >= 1 and victim not in pooled.app.ingestor.pids
