"""``llmobs serve --workers``: large requests decoded by worker processes, same result as one process."""

from __future__ import annotations

import http.client
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmobs import selfstats
from llmobs import semconv as sc
from llmobs.serve import create_server, pool
from llmobs.store import schema

SPANS = 3 * pool.SHARE + 17  # four shares, the last one short
INVALID = (5, pool.SHARE + 3, 3 * pool.SHARE + 1)  # positions whose span id is zeroed: one in three shares


def _request(scope: str = sc.SCOPE_NAME, content: str = "hello") -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "pool-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(scope)
    for i in range(SPANS):
        with tracer.start_as_current_span(f"chat m{i % 3}", attributes={
            sc.OPERATION_NAME: sc.OP_CHAT, sc.REQUEST_MODEL: f"m{i % 3}", sc.USAGE_INPUT_TOKENS: i,
            sc.INPUT_VALUE: content, "input.value": content,
        }):  # fmt: skip
            pass
    provider.shutdown()
    request = encode_spans(exporter.get_finished_spans())
    spans = [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    for position in INVALID:
        spans[position].span_id = bytes(8)
    return request.SerializeToString()


def _post(server, body: bytes) -> tuple[int, ExportTraceServiceResponse]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=120)
    try:
        conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        reply = conn.getresponse()
        response = ExportTraceServiceResponse()
        response.ParseFromString(reply.read())
        return reply.status, response
    finally:
        conn.close()


def _rows(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT {', '.join(schema.COLUMNS)} FROM spans ORDER BY trace_id, span_id").fetchall()
    finally:
        conn.close()


@pytest.fixture
def servers(tmp_path):
    started = []

    def start(name: str, workers: int):
        server = create_server(tmp_path / f"{name}.db", port=0, workers=workers).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def test_workers_store_exactly_what_one_process_stores(servers, tmp_path):
    body = _request()
    single, parallel = servers("single", 0), servers("parallel", 2)
    assert parallel.app.ingestor.workers == 2
    for server in (single, parallel):
        status, response = _post(server, body)
        assert status == 200
        assert response.partial_success.rejected_spans == len(INVALID)
        assert "invalid" in response.partial_success.error_message
    rows = _rows(tmp_path / "parallel.db")
    assert len(rows) == SPANS - len(INVALID)
    assert rows == _rows(tmp_path / "single.db")
    assert parallel.app.ingestor.workers == 2, "no worker failed"


def test_what_workers_count_is_counted_in_the_server(servers):
    """Foreign spans' content is capped by the receiver's policy; the workers' counts reach this process."""
    selfstats.reset()
    server = servers("counted", 2)
    status, _ = _post(server, _request(scope="openinference.instrumentation.langchain", content="x" * 20_000))
    assert status == 200
    assert server.app.ingestor.workers == 2
    assert selfstats.snapshot().get("content.truncated", 0) >= SPANS - len(INVALID)


def test_a_dead_worker_costs_no_span(servers, tmp_path):
    selfstats.reset()
    server = servers("dead", 2)
    server.app.ingestor._workers[0]._process.kill()
    server.app.ingestor._workers[0]._process.join()
    status, response = _post(server, _request())
    assert status == 200
    assert response.partial_success.rejected_spans == len(INVALID)
    assert len(_rows(tmp_path / "dead.db")) == SPANS - len(INVALID)
    assert server.app.ingestor.workers == 0, "the pool is given up: this process ingests from now on"
    assert selfstats.snapshot()["serve.worker_failed"] == 1
    status, _ = _post(server, _request())  # and it keeps working
    assert status == 200


def test_close_stops_the_workers(tmp_path):
    server = create_server(tmp_path / "closed.db", port=0, workers=2).start()
    processes = [worker._process for worker in server.app.ingestor._workers]
    assert all(process.is_alive() for process in processes)
    server.close()
    assert not any(process.is_alive() for process in processes)


def test_ctrl_c_stops_the_server_and_its_workers(tmp_path):
    """Ctrl-C signals the whole process group: the workers leave it to the server, which stops them in order."""
    llmobs = Path(sys.executable).with_name("llmobs")
    command = [str(llmobs), "serve", "--port", "0", "--workers", "2", "--store", str(tmp_path / "c.db")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        url = process.stdout.readline().split()[-1].rstrip("/")
        host, port = url.removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        conn.request("POST", "/v1/traces", _request(), {"Content-Type": "application/x-protobuf"})
        assert conn.getresponse().status == 200
        conn.close()
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # every process of the group gone
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail("worker processes outlived the server")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert len(_rows(tmp_path / "c.db")) == SPANS - len(INVALID)
