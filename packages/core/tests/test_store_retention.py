"""Retention: expired and, over the size limit, oldest traces are deleted whole."""

from __future__ import annotations

import sqlite3
import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmobs import selfstats
from llmobs.store import Retention, SQLiteSpanExporter, TraceStore, schema
from llmobs.store import exporter as exporter_module
from llmobs.store.exporter import used_bytes

DAY = 86400 * 10**9
KB = 1024


def make_traces(starts_ns: list[list[int]], payload: int = 0) -> list:
    """One trace per entry of ``starts_ns``: a root at the first start, one child per further start."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    for i, starts in enumerate(starts_ns):
        root = tracer.start_span(f"trace{i}", start_time=starts[0], attributes={"blob": "x" * payload})
        with trace.use_span(root, end_on_exit=False):
            for start in starts[1:]:
                tracer.start_span("child", start_time=start, attributes={"blob": "y" * payload}).end(start + 1)
        root.end(max(starts) + 2)
    return list(memory.get_finished_spans())


def stored(path) -> dict[str, int]:
    with TraceStore(path) as store:
        return {t.name: t.span_count for t in store.list_traces(1000)}


def test_age_deletes_whole_expired_traces(tmp_path, monkeypatch):
    monkeypatch.setattr(exporter_module, "_DELETE_CHUNK", 1)  # one transaction per trace
    path = tmp_path / "t.db"
    now = time.time_ns()
    spans = make_traces([
        [now - 10 * DAY, now - 6 * DAY],  # started before the cutoff: goes, child included
        [now - 9 * DAY, now - 8 * DAY, now - 2 * DAY],
        [now - 6 * DAY, now - 5 * DAY],
        [now - 60 * 10**9, now - 59 * 10**9],
    ])
    exporter = SQLiteSpanExporter(path, retention=Retention(max_age_days=7, max_bytes=None, check_every_s=0))
    exporter.export(spans)
    exporter.shutdown()
    assert stored(path) == {"trace2": 2, "trace3": 2}
    assert selfstats.snapshot() == {}


def test_size_deletes_oldest_whole_traces_and_frees_pages(tmp_path):
    path = tmp_path / "t.db"
    t0 = time.time_ns() - 10**12
    spans = make_traces([[t0 + i * 10**9 + j for j in range(5)] for i in range(10)], payload=8 * KB)
    unlimited = SQLiteSpanExporter(tmp_path / "all.db", retention=None)
    unlimited.export(spans)
    unlimited.shutdown()
    conn = sqlite3.connect(tmp_path / "all.db")
    limit = used_bytes(conn) // 2  # about half of what all ten traces take
    conn.close()
    exporter = SQLiteSpanExporter(path, retention=Retention(max_age_days=None, max_bytes=limit, check_every_s=0))
    exporter.export(spans)
    exporter.shutdown()
    kept = stored(path)
    assert kept, "the newest traces stay"
    assert set(kept.values()) == {5}, "no trace is cut in part"
    assert kept.keys() == {f"trace{i}" for i in range(10 - len(kept), 10)}, "the oldest go first"
    assert len(kept) < 10
    conn = sqlite3.connect(path)
    assert used_bytes(conn) <= limit
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0  # handed back by incremental_vacuum
    conn.close()


def test_retention_runs_at_open_then_at_most_every_check_interval(tmp_path):
    path = tmp_path / "t.db"
    t0 = time.time_ns() - 10**12
    spans = make_traces([[t0 + i * 10**9] for i in range(40)], payload=8 * KB)
    exporter = SQLiteSpanExporter(path, retention=Retention(max_age_days=None, max_bytes=100 * KB,
                                                            check_every_s=3600))
    exporter.export(spans[:20])  # opens the store: retention applies once
    after_first = len(stored(path))
    assert after_first < 20
    exporter.export(spans[20:])  # within the hour: no retention
    exporter.shutdown()
    assert len(stored(path)) == after_first + 20


def test_no_retention(tmp_path):
    path = tmp_path / "t.db"
    now = time.time_ns()
    exporter = SQLiteSpanExporter(path, retention=None)
    exporter.export(make_traces([[now - 100 * DAY]]))
    exporter.shutdown()
    assert stored(path) == {"trace0": 1}


def test_a_store_far_over_its_size_limit_keeps_the_newest_traces_that_fit(tmp_path):
    path = tmp_path / "t.db"
    t0 = time.time_ns() - 10**12
    spans = make_traces([[t0 + i * 10**9] for i in range(150)], payload=64 * KB)  # far over the schema's pages
    unlimited = SQLiteSpanExporter(path, retention=None)
    unlimited.export(spans)
    unlimited.shutdown()
    conn = schema.open_writer(path)
    limit = used_bytes(conn) // 15  # room for about ten of the 150 traces
    assert exporter_module.apply_retention(conn, Retention(max_age_days=None, max_bytes=limit)) > 0
    assert used_bytes(conn) <= limit
    conn.close()
    kept = stored(path)
    assert 5 <= len(kept) <= 10
    assert kept.keys() == {f"trace{i}" for i in range(150 - len(kept), 150)}


def test_a_huge_age_limit_deletes_nothing_by_age_and_size_still_applies(tmp_path):
    path = tmp_path / "t.db"
    t0 = time.time_ns() - 10**12
    spans = make_traces([[t0 + i * 10**9] for i in range(20)], payload=64 * KB)
    unlimited = SQLiteSpanExporter(path, retention=None)
    unlimited.export(spans)
    unlimited.shutdown()
    conn = schema.open_writer(path)
    limit = used_bytes(conn) // 2
    assert exporter_module.apply_retention(conn, Retention(max_age_days=1e6, max_bytes=None)) == 0
    assert exporter_module.apply_retention(conn, Retention(max_age_days=1e6, max_bytes=limit)) > 0
    assert selfstats.snapshot() == {}
    # a failure of the age limit (here a value it cannot compute with) does not skip the size limit
    assert exporter_module.apply_retention(conn, Retention(max_age_days="7", max_bytes=limit // 2)) > 0
    assert used_bytes(conn) <= limit // 2
    assert selfstats.snapshot() == {"store.retention_failed": 1}
    conn.close()
    assert "trace19" in stored(path)
