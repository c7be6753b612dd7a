"""Several writer processes, a reader polling meanwhile, and an exporter carried across fork()."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmobs import selfstats
from llmobs import semconv as sc
from llmobs.store import SQLiteSpanExporter, TraceStore, schema
from llmobs.store import exporter as store_exporter

SPANS_PER_TRACE = 10
TRACES_PER_WRITER = 300  # 3000 spans per writer
BATCH = 100


def make_spans(n_traces: int, tag: str) -> list:
    """Traces of a CHAIN root and nine chat children, as finished SDK spans."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer(sc.SCOPE_NAME)
    for _ in range(n_traces):
        with tracer.start_as_current_span(f"{tag} root", attributes={sc.OPERATION_NAME: sc.OP_CHAIN}):
            for _ in range(SPANS_PER_TRACE - 1):
                tracer.start_span("chat m", attributes={
                    sc.OPERATION_NAME: sc.OP_CHAT, sc.PROVIDER_NAME: "p", sc.REQUEST_MODEL: tag,
                    sc.USAGE_INPUT_TOKENS: 3, sc.USAGE_OUTPUT_TOKENS: 2,
                }).end()
    return list(memory.get_finished_spans())


def write_in_batches(path: str, tag: str, results) -> None:
    """Child process body: export this writer's spans in batches, report what happened."""
    selfstats.reset()
    spans = make_spans(TRACES_PER_WRITER, tag)
    exporter = SQLiteSpanExporter(path)
    failed_batches = 0
    for start in range(0, len(spans), BATCH):
        if exporter.export(spans[start:start + BATCH]) is not SpanExportResult.SUCCESS:
            failed_batches += 1
        time.sleep(0.005)  # keep the writers interleaved with each other and with the reader
    exporter.shutdown()
    results.put((tag, len(spans), failed_batches, selfstats.snapshot()))


def test_two_writer_processes_and_a_polling_reader(tmp_path, monkeypatch):
    # Spawned children import the worker by module name, so make this file importable as a module.
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    worker = importlib.import_module(Path(__file__).stem).write_in_batches
    path = tmp_path / "shared.db"
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    writers = [ctx.Process(target=worker, args=(str(path), tag, results)) for tag in ("w1", "w2")]
    for process in writers:
        process.start()

    reader_errors: list[str] = []
    partial_reads = 0  # polls that saw some but not all of the spans: reading overlapped writing
    total_calls = 2 * TRACES_PER_WRITER * (SPANS_PER_TRACE - 1)
    reports = []
    deadline = time.monotonic() + 240
    while len(reports) < len(writers) and time.monotonic() < deadline:
        if path.exists():
            try:
                with TraceStore(path) as store:
                    traces = store.list_traces(50)
                    calls = sum(m.calls for m in store.model_stats())
                    if traces:
                        store.get_trace(traces[0].trace_id)
                partial_reads += 0 < calls < total_calls
            except Exception as exc:  # any reader failure fails the test
                reader_errors.append(repr(exc))
        while not results.empty():
            reports.append(results.get())
        time.sleep(0.01)
    for process in writers:
        process.join(timeout=60)

    assert [p.exitcode for p in writers] == [0, 0]
    assert reader_errors == []
    assert partial_reads >= 1
    assert sorted(tag for tag, *_ in reports) == ["w1", "w2"]
    for tag, written, failed_batches, counters in reports:
        assert (written, failed_batches) == (TRACES_PER_WRITER * SPANS_PER_TRACE, 0), tag
        assert counters == {}, f"{tag} dropped or swallowed something: {counters}"

    with TraceStore(path) as store:
        traces = store.list_traces(10**6)
        stats = {m.model: m.calls for m in store.model_stats()}
    assert len(traces) == 2 * TRACES_PER_WRITER
    assert sum(t.span_count for t in traces) == 2 * TRACES_PER_WRITER * SPANS_PER_TRACE
    assert stats == {"w1": total_calls / 2, "w2": total_calls / 2}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_exporter_keeps_working_across_fork(tmp_path):
    path = tmp_path / "t.db"
    exporter = SQLiteSpanExporter(path)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    tracer.start_span("before fork").end()  # the parent's connection is open now

    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            selfstats.reset()
            for _ in range(3):
                with tracer.start_as_current_span("in child"):
                    tracer.start_span("child of child").end()
            code = 0 if selfstats.snapshot() == {} else 2
        finally:
            sys.stdout.flush()
            os._exit(code)

    tracer.start_span("parent while child runs").end()
    _, status = os.waitpid(pid, 0)
    tracer.start_span("after fork").end()
    provider.shutdown()

    assert os.waitstatus_to_exitcode(status) == 0
    assert selfstats.snapshot() == {}
    with TraceStore(path) as store:
        names = sorted(t.name for t in store.list_traces(100))
        child_trace = next(t for t in store.list_traces(100) if t.name == "in child")
        assert [s.name for s in store.get_trace(child_trace.trace_id)] == ["in child", "child of child"]
    assert names == ["after fork", "before fork", "in child", "in child", "in child", "parent while child runs"]


def test_spans_from_one_trace_split_over_batches_and_threads(tmp_path):
    path = tmp_path / "t.db"
    exporter = SQLiteSpanExporter(path)
    spans = make_spans(20, "t")
    threads = [threading.Thread(target=exporter.export, args=(spans[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    exporter.shutdown()
    with TraceStore(path) as store:
        traces = store.list_traces(100)
    assert len(traces) == 20 and {t.span_count for t in traces} == {SPANS_PER_TRACE}
    assert {t.input_tokens for t in traces} == {27}


def test_a_write_that_must_not_wait_gives_way_to_another_writer(tmp_path):
    selfstats.reset()
    path = tmp_path / "nowait.db"
    exporter = SQLiteSpanExporter(path, retention=None)
    rows = store_exporter.span_rows(make_spans(2, "nowait"))
    assert exporter.write_rows(rows[:1])  # the store exists, the exporter's connection is open
    other = schema.open_writer(path)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's transaction holds the write lock
        assert exporter.write_rows(rows, wait=False) is None  # at once, not after the busy timeout
        assert selfstats.snapshot().get("store.dropped_spans", 0) == 0  # nothing lost: the caller still has them
        other.execute("COMMIT")
        assert exporter.write_rows(rows, wait=False) is True
        assert other.execute("PRAGMA busy_timeout").fetchone()[0] == schema.BUSY_TIMEOUT_S * 1000
        assert exporter._conn.execute("PRAGMA busy_timeout").fetchone()[0] == schema.BUSY_TIMEOUT_S * 1000
    finally:
        other.close()
        exporter.shutdown()
    with TraceStore(path) as store:
        assert sum(t.span_count for t in store.list_traces(10)) == len(rows) == 2 * SPANS_PER_TRACE
