"""SQLiteSpanExporter: what a real SDK span becomes in the ``spans`` table, and that it never raises."""

from __future__ import annotations

import collections
import enum
import gc
import json
import math
import sqlite3
import time
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from llmobs import selfstats
from llmobs import semconv as sc
from llmobs.store import SQLiteSpanExporter, TraceStore, default_path, schema
from llmobs.store import exporter as exporter_module
from llmobs.store.queries import weighted_percentile
from llmobs.store.schema import SCHEMA_VERSION

MS = 1_000_000


@pytest.fixture(autouse=True)
def _clean_selfstats():
    selfstats.reset()
    yield
    selfstats.reset()


def record_sample_trace(path: Path, t0: int) -> str:
    """Root CHAIN → LLM chat (tokens, TTFT, cost) and TOOL (error) → nested chat; returns the trace id."""
    provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(path)))
    tracer = provider.get_tracer(sc.SCOPE_NAME)
    root = tracer.start_span("agent run", start_time=t0, attributes={
        sc.SPAN_KIND: sc.KIND_CHAIN, sc.OPERATION_NAME: sc.OP_CHAIN, sc.SESSION_ID: "sess-1",
        sc.USER_ID: "u-1", sc.USAGE_INPUT_TOKENS: 110,  # a rollup of its children: must not count twice
    })
    with trace.use_span(root, end_on_exit=False):
        llm = tracer.start_span("chat gpt-4o", start_time=t0 + 1 * MS, attributes={
            sc.SPAN_KIND: sc.KIND_LLM, sc.OPERATION_NAME: sc.OP_CHAT, sc.PROVIDER_NAME: sc.PROVIDER_OPENAI,
            sc.REQUEST_MODEL: "gpt-4o", sc.RESPONSE_MODEL: "gpt-4o-2024-08-06", sc.USAGE_INPUT_TOKENS: 100,
            sc.USAGE_OUTPUT_TOKENS: 20, sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS: 150 * MS, sc.COST_USD: 0.0031,
            sc.RESPONSE_FINISH_REASONS: ("stop",),
        })
        llm.add_event("chunk", {"index": 1}, timestamp=t0 + 151 * MS)
        llm.end(end_time=t0 + 501 * MS)
        tool = tracer.start_span("execute_tool search", start_time=t0 + 600 * MS, attributes={
            sc.SPAN_KIND: sc.KIND_TOOL, sc.OPERATION_NAME: sc.OP_EXECUTE_TOOL, sc.TOOL_NAME: "search",
        })
        with trace.use_span(tool, end_on_exit=False):
            inner = tracer.start_span("chat gpt-4o-mini", start_time=t0 + 610 * MS, attributes={
                sc.SPAN_KIND: sc.KIND_LLM, sc.OPERATION_NAME: sc.OP_CHAT, sc.PROVIDER_NAME: sc.PROVIDER_OPENAI,
                sc.REQUEST_MODEL: "gpt-4o-mini", sc.USAGE_INPUT_TOKENS: 10, sc.USAGE_OUTPUT_TOKENS: 5,
                sc.RESPONSE_TIME_TO_FIRST_CHUNK: 0.025, sc.COST_USD: 0.0001,
            })
            inner.end(end_time=t0 + 700 * MS)
        tool.record_exception(TimeoutError("search took too long"), timestamp=t0 + 899 * MS)
        tool.set_status(Status(StatusCode.ERROR, "search took too long"))
        tool.end(end_time=t0 + 900 * MS)
    root.set_status(Status(StatusCode.OK))
    root.end(end_time=t0 + 1000 * MS)
    provider.shutdown()
    return f"{root.get_span_context().trace_id:032x}"


def rows(path: Path) -> dict[str, sqlite3.Row]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return {row["name"]: row for row in conn.execute("SELECT * FROM spans")}
    finally:
        conn.close()


def test_spans_become_typed_rows_with_parent_links(tmp_path):
    path = tmp_path / "sub" / "dir" / "t.db"  # parent directories are created
    t0 = time.time_ns() - 60 * 10**9
    trace_id = record_sample_trace(path, t0)
    spans = rows(path)
    assert set(spans) == {"agent run", "chat gpt-4o", "execute_tool search", "chat gpt-4o-mini"}
    root, llm, tool, inner = (spans[n] for n in ("agent run", "chat gpt-4o", "execute_tool search",
                                                 "chat gpt-4o-mini"))
    assert {r["trace_id"] for r in spans.values()} == {trace_id}
    assert len(trace_id) == 32 and len(root["span_id"]) == 16
    assert root["parent_span_id"] is None
    assert llm["parent_span_id"] == root["span_id"] == tool["parent_span_id"]
    assert inner["parent_span_id"] == tool["span_id"]

    assert (root["span_kind"], root["operation"], root["service"], root["status"]) == ("CHAIN", "chain", "svc", "OK")
    assert (root["session_id"], root["user_id"], root["adjusted_count"]) == ("sess-1", "u-1", 1.0)
    assert (root["start_ns"], root["end_ns"], root["duration_ns"]) == (t0, t0 + 1000 * MS, 1000 * MS)

    assert (llm["provider"], llm["request_model"], llm["response_model"]) == (
        "openai", "gpt-4o", "gpt-4o-2024-08-06")
    assert (llm["input_tokens"], llm["output_tokens"], llm["total_tokens"]) == (100, 20, 120)
    assert llm["ttft_ns"] == 150 * MS
    assert llm["cost_usd"] == pytest.approx(0.0031)
    assert llm["status"] == "UNSET" and llm["error_type"] is None
    assert inner["ttft_ns"] == 25 * MS  # from time_to_first_chunk seconds

    assert tool["status"] == "ERROR"
    assert tool["error_type"] == "TimeoutError"  # from the exception event when error.type is absent
    assert tool["input_tokens"] is None and tool["total_tokens"] is None

    assert json.loads(llm["attributes"])[sc.RESPONSE_FINISH_REASONS] == ["stop"]
    assert json.loads(llm["events"]) == [{"name": "chunk", "time_ns": t0 + 151 * MS, "attributes": {"index": 1}}]
    assert json.loads(root["events"]) == []
    assert json.loads(root["resource"])[sc.SERVICE_NAME] == "svc"
    assert root["scope"] == sc.SCOPE_NAME


def _spans(n: int = 1, **attributes) -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for i in range(n):
        provider.get_tracer("t").start_span(f"s{i}", attributes=attributes).end()
    return list(memory.get_finished_spans())


def test_reexport_is_idempotent_and_schema_is_versioned(tmp_path):
    path = tmp_path / "t.db"
    exporter = SQLiteSpanExporter(path)
    batch = _spans(5)
    assert exporter.export(batch) is SpanExportResult.SUCCESS
    assert exporter.export(batch) is SpanExportResult.SUCCESS
    exporter.shutdown()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0] == 5
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    assert conn.execute("PRAGMA page_size").fetchone()[0] == schema.PAGE_SIZE
    conn.close()


def test_an_existing_store_keeps_its_page_size(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("PRAGMA page_size = 4096")
    old.execute("CREATE TABLE unrelated (x)")
    old.close()
    exporter = SQLiteSpanExporter(path)
    assert exporter.export(_spans(3)) is SpanExportResult.SUCCESS
    exporter.shutdown()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0] == 3
    conn.close()


def test_odd_attribute_types_are_coerced_not_dropped(tmp_path):
    path = tmp_path / "t.db"
    exporter = SQLiteSpanExporter(path)
    batch = _spans(
        **{sc.REQUEST_MODEL: ("a", "b"), sc.USAGE_INPUT_TOKENS: "12", sc.USAGE_OUTPUT_TOKENS: 3.0,
           sc.COST_USD: 1, sc.SAMPLING_ADJUSTED_COUNT: 4, sc.SPAN_KIND: True}
    )
    assert exporter.export(batch) is SpanExportResult.SUCCESS
    exporter.shutdown()
    row = rows(path)["s0"]
    assert json.loads(row["request_model"]) == ["a", "b"]
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (12, 3, 15)
    assert row["cost_usd"] == 1.0 and isinstance(row["cost_usd"], float)
    assert row["adjusted_count"] == 4.0
    assert row["span_kind"] == "1"
    assert selfstats.snapshot() == {}


class Float(float):  # as NumPy's float64 is
    pass


Pair = collections.namedtuple("Pair", "a b")


class Level(enum.IntEnum):
    HIGH = 3


def test_attribute_json_is_what_the_standard_encoder_writes(tmp_path):
    """The fast encoder keeps the standard one's values where the two differ: non-finite numbers stay
    NaN/Infinity (not null), integers past 64 bits and non-string keys are still written."""
    odd = [
        {"nan": float("nan"), "inf": (1.0, float("-inf")), "null text": '{"a":null}'},
        {"big": 2**70, "neg": -(2**64)},
        {1: "int key", "nested": {"x": [1, {"y": float("inf")}]}},
        {"text": "é \u2028 \x00 \x7f \" \\ 😀", "floats": (1.5e-7, 1e16, -0.0), "bool": True},
        {"obj": Path("p")},  # not JSON: its str()
        {"float subclass": Float(0.5), "nan subclass": Float("nan"), "named tuple": Pair(1, Float(2.5)),
         "enum": Level.HIGH},
        [],
    ]
    for value in odd:
        encoded = exporter_module._encode(value)
        # Values compared with NaN/Infinity read as their names: a null in their place would differ.
        assert json.loads(encoded, parse_constant=str) == json.loads(
            exporter_module._encode_std(value), parse_constant=str)
    assert exporter_module._encode(odd[0]) == '{"nan":NaN,"inf":[1.0,-Infinity],"null text":"{\\"a\\":null}"}'

    path = tmp_path / "t.db"
    exporter = SQLiteSpanExporter(path)
    assert exporter.export(_spans(**{"score": float("nan"), "limits": (1.0, float("inf"))})) is SpanExportResult.SUCCESS
    exporter.shutdown()
    attributes = json.loads(rows(path)["s0"]["attributes"])
    assert math.isnan(attributes["score"]) and attributes["limits"] == [1.0, math.inf]


def test_failure_returns_failure_and_counts_drops(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    exporter = SQLiteSpanExporter(blocker / "t.db")  # the parent "directory" is a file
    assert exporter.export(_spans(3)) is SpanExportResult.FAILURE
    assert selfstats.snapshot() == {"store.dropped_spans": 3, "store.write_failed": 1}


def test_export_after_shutdown_fails_and_counts(tmp_path):
    exporter = SQLiteSpanExporter(tmp_path / "t.db")
    exporter.shutdown()
    assert exporter.export(_spans(2)) is SpanExportResult.FAILURE
    assert selfstats.snapshot()["store.dropped_spans"] == 2
    assert exporter.force_flush() is True


def test_default_path(monkeypatch, tmp_path):
    monkeypatch.delenv("LLMOBS_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_path() == tmp_path / ".llmobs" / "llmobs.db"
    monkeypatch.setenv("LLMOBS_STORE", str(tmp_path / "elsewhere.db"))
    assert default_path() == tmp_path / "elsewhere.db"
    assert SQLiteSpanExporter().path == tmp_path / "elsewhere.db"


# --- TraceStore ------------------------------------------------------------------------------------


def test_list_traces_summarises_root_and_counts_tokens_once(tmp_path):
    path = tmp_path / "t.db"
    t0 = time.time_ns() - 60 * 10**9
    first = record_sample_trace(path, t0)
    second = record_sample_trace(path, t0 + 5 * 10**9)
    with TraceStore(path) as store:
        traces = store.list_traces()
    assert [t.trace_id for t in traces] == [second, first]  # newest first
    summary = traces[1]
    assert (summary.name, summary.kind, summary.service) == ("agent run", "CHAIN", "svc")
    assert (summary.start_ns, summary.duration_ns) == (t0, 1000 * MS)
    assert (summary.span_count, summary.error_count, summary.status) == (4, 1, "ERROR")
    # Only the two chat spans count; the root's rollup of 110 input tokens does not.
    assert (summary.input_tokens, summary.output_tokens, summary.total_tokens) == (110, 25, 135)
    assert summary.cost_usd == pytest.approx(0.0032)
    assert summary.session_id == "sess-1"
    assert summary.to_dict()["trace_id"] == first


def test_a_call_seen_twice_counts_once_but_a_server_alone_counts(tmp_path):
    """A client's chat span with a server's span of the same call under it (llmobs-vllm behind a traced
    client) counts one call and its tokens once; so does a framework's span over a transport's span of the
    same model; a router without usage over a call of another model is a call of its own; a server span
    whose client is not in the store counts."""
    path = tmp_path / "t.db"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(path)))
    tracer = provider.get_tracer(sc.SCOPE_NAME)

    def chat(model: str, provider_name: str, tokens: tuple[int, int] | None = None, cost: float | None = None):
        attributes = {sc.SPAN_KIND: sc.KIND_LLM, sc.OPERATION_NAME: sc.OP_CHAT, sc.PROVIDER_NAME: provider_name,
                      sc.REQUEST_MODEL: model}  # fmt: skip
        if tokens:
            attributes.update({sc.USAGE_INPUT_TOKENS: tokens[0], sc.USAGE_OUTPUT_TOKENS: tokens[1]})
        if cost:
            attributes[sc.COST_USD] = cost
        return tracer.start_span(f"chat {model}", attributes=attributes)

    client = chat("tiny", "vllm", (5, 6), cost=0.5)
    with trace.use_span(client, end_on_exit=True):
        chat("tiny", "vllm", (5, 6), cost=0.5).end()  # the server's view of the same call
    router = chat("router", "custom")
    with trace.use_span(router, end_on_exit=True):
        chat("small", "openai", (3, 4)).end()  # the call the router made: it carries the usage
    chat("tiny", "vllm", (7, 8)).end()  # a server span whose client is not traced
    # A framework's span with no usage over a transport's span of the same call (Promptflow's stream it could
    # not count, over llmobs-openai): one call, with the transport's tokens; neither with usage: one call.
    framework = chat("gpt-4o", "openai")
    with trace.use_span(framework, end_on_exit=True):
        chat("gpt-4o", "openai", (11, 12)).end()
    framework = chat("gpt-4o", "openai")
    with trace.use_span(framework, end_on_exit=True):
        chat("gpt-4o", "openai").end()
    provider.shutdown()
    with TraceStore(path) as store:
        stats = {s.model: s for s in store.model_stats()}
        trace_tokens = sorted(t.input_tokens or 0 for t in store.list_traces())
    assert (stats["tiny"].calls, stats["tiny"].input_tokens, stats["tiny"].output_tokens) == (2, 12, 14)
    assert stats["tiny"].cost_usd == pytest.approx(0.5)
    assert (stats["small"].calls, stats["small"].input_tokens) == (1, 3)
    assert stats["router"].calls == 1 and not stats["router"].input_tokens
    assert (stats["gpt-4o"].calls, stats["gpt-4o"].input_tokens, stats["gpt-4o"].output_tokens) == (2, 11, 12)
    # the framework-and-transport pair without usage, router's call, the client's call once (not 10), the
    # lone server, the transport's tokens once
    assert trace_tokens == [0, 3, 5, 7, 11]


def test_list_traces_limit_and_filters(tmp_path):
    path = tmp_path / "t.db"
    t0 = time.time_ns() - 60 * 10**9
    ids = [record_sample_trace(path, t0 + i * 10**9) for i in range(3)]
    exporter = SQLiteSpanExporter(path)
    exporter.export(_spans(1))  # a one-span trace, no error, default service
    exporter.shutdown()
    with TraceStore(path) as store:
        assert [t.trace_id for t in store.list_traces(2, service="svc")] == [ids[2], ids[1]]
        assert len(store.list_traces(10)) == 4
        assert [t.trace_id for t in store.list_traces(10, errors_only=True)] == ids[::-1]
        assert store.list_traces(10, service="nope") == []
        (lone,) = [t for t in store.list_traces(10) if t.trace_id not in ids]
    assert (lone.span_count, lone.error_count, lone.status, lone.input_tokens) == (1, 0, "UNSET", None)


def test_list_traces_without_stored_root_uses_earliest_span(tmp_path):
    path = tmp_path / "t.db"
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    t0 = time.time_ns() - 10**9
    root = tracer.start_span("root", start_time=t0)
    with trace.use_span(root, end_on_exit=False):
        tracer.start_span("a", start_time=t0 + 10).end(end_time=t0 + 20)
        tracer.start_span("b", start_time=t0 + 30).end(end_time=t0 + 90)
    root.end(end_time=t0 + 100)
    exporter = SQLiteSpanExporter(path)
    exporter.export([s for s in memory.get_finished_spans() if s.name != "root"])  # still running
    exporter.shutdown()
    with TraceStore(path) as store:
        (summary,) = store.list_traces()
    assert (summary.name, summary.start_ns, summary.duration_ns, summary.span_count) == ("a", t0 + 10, 80, 2)


def test_get_trace_by_full_id_and_unique_prefix(tmp_path):
    path = tmp_path / "t.db"
    trace_id = record_sample_trace(path, time.time_ns() - 10**9)
    with TraceStore(path) as store:
        spans = store.get_trace(trace_id)
        assert [s.name for s in spans] == ["agent run", "chat gpt-4o", "execute_tool search", "chat gpt-4o-mini"]
        assert store.get_trace(trace_id[:6].upper()) == spans
        llm = spans[1]
        assert llm.parent_span_id == spans[0].span_id
        assert llm.attributes[sc.REQUEST_MODEL] == "gpt-4o"
        assert llm.events[0]["name"] == "chunk"
        assert llm.resource[sc.SERVICE_NAME] == "svc"
        assert llm.to_dict()["attributes"][sc.USAGE_OUTPUT_TOKENS] == 20
        with pytest.raises(KeyError, match="no trace"):
            store.get_trace("f" * 32 if not trace_id.startswith("f") else "0" * 32)
        with pytest.raises(KeyError, match="not a trace id"):
            store.get_trace("xyz")


def test_get_trace_ambiguous_prefix(tmp_path):
    path = tmp_path / "t.db"
    exporter = SQLiteSpanExporter(path)
    exporter.export(_spans(17))  # 17 traces: two must share their first hex digit
    exporter.shutdown()
    with TraceStore(path) as store:
        ids = [t.trace_id for t in store.list_traces(100)]
        digit = next(d for d in "0123456789abcdef" if sum(i.startswith(d) for i in ids) > 1)
        with pytest.raises(KeyError, match="ambiguous"):
            store.get_trace(digit)


def _model_spans(path: Path, model: str, durations_ms: list[int], *, weights=None, errors=(), ttft_ms=None,
                 tokens_in: int = 10) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    t0 = time.time_ns() - 10**10
    for i, duration_ms in enumerate(durations_ms):
        attributes = {sc.OPERATION_NAME: sc.OP_CHAT, sc.PROVIDER_NAME: "p", sc.REQUEST_MODEL: model,
                      sc.USAGE_INPUT_TOKENS: tokens_in, sc.COST_USD: 0.5}
        if weights:
            attributes[sc.SAMPLING_ADJUSTED_COUNT] = weights[i]
        if ttft_ms:
            attributes[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS] = ttft_ms[i] * MS
        span = tracer.start_span(f"chat {model}", start_time=t0 + i, attributes=attributes)
        if i in errors:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=t0 + i + duration_ms * MS)
    exporter = SQLiteSpanExporter(path)
    exporter.export(memory.get_finished_spans())
    exporter.shutdown()


def test_model_stats_percentiles_on_known_values(tmp_path):
    path = tmp_path / "t.db"
    _model_spans(path, "m1", list(range(1, 101)), errors=(0, 1, 2, 3), ttft_ms=list(range(101, 201)))
    exporter = SQLiteSpanExporter(path)
    exporter.export(_spans(3, **{sc.OPERATION_NAME: sc.OP_EXECUTE_TOOL}))  # not inference: ignored
    exporter.shutdown()
    with TraceStore(path) as store:
        (m1,) = store.model_stats()
    assert (m1.provider, m1.model, m1.calls, m1.errors) == ("p", "m1", 100, 4)
    assert m1.error_rate == pytest.approx(0.04)
    assert m1.p50_duration_s == pytest.approx(0.050)
    assert m1.p95_duration_s == pytest.approx(0.095)
    assert m1.p50_ttft_s == pytest.approx(0.150)
    assert m1.p95_ttft_s == pytest.approx(0.195)
    assert (m1.input_tokens, m1.output_tokens, m1.cost_usd) == (1000, 0, pytest.approx(50.0))


def test_model_stats_weighted_by_adjusted_count(tmp_path):
    path = tmp_path / "t.db"
    # One fast call kept at 1% sampling stands for 99 calls; one slow failed call was kept as itself.
    _model_spans(path, "m2", [10, 1000], weights=[99, 1], errors=(1,), ttft_ms=[5, 900])
    _model_spans(path, "m3", [20])
    with TraceStore(path) as store:
        m2, m3 = store.model_stats()
        assert store.model_stats(since_ns=time.time_ns()) == []
    assert (m2.model, m2.calls, m2.errors, m2.error_rate) == ("m2", 100, 1, pytest.approx(0.01))
    assert m2.p50_duration_s == pytest.approx(0.010)
    assert m2.p95_duration_s == pytest.approx(0.010)  # 99 of 100 weighted calls took 10 ms
    assert m2.p95_ttft_s == pytest.approx(0.005)
    assert (m2.input_tokens, m2.cost_usd) == (1000, pytest.approx(50.0))
    assert (m3.calls, m3.p50_ttft_s, m3.p95_ttft_s) == (1, None, None)
    assert m2.to_dict()["calls"] == 100


def test_weighted_percentile():
    assert weighted_percentile([], 0.5) is None
    assert weighted_percentile([(3.0, 1), (1.0, 1), (2.0, 1)], 0.5) == 2.0
    assert weighted_percentile([(1.0, 1), (10.0, 3)], 0.25) == 1.0
    assert weighted_percentile([(1.0, 1), (10.0, 3)], 0.26) == 10.0
    assert weighted_percentile([(1.0, 0.1)] * 10, 1.0) == 1.0  # float running sum reaches the total


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="llmobs demo") as info:
        TraceStore(tmp_path / "nope.db")
    assert "nope.db" in str(info.value)
    assert not (tmp_path / "nope.db").exists()


def test_store_file_without_schema_reads_as_empty(tmp_path):
    path = tmp_path / "t.db"
    path.write_bytes(b"")  # what a reader can see while the first writer is still migrating
    with TraceStore(path) as store:
        assert store.list_traces() == []
        assert store.model_stats() == []
        with pytest.raises(KeyError):
            store.get_trace("ab")


def test_checkpoints_run_on_a_background_thread_that_ends_with_the_exporter(tmp_path, monkeypatch):
    path = tmp_path / "t.db"
    exporter = SQLiteSpanExporter(path)
    assert exporter.export(_spans(50, payload="x" * 2000)) is SpanExportResult.SUCCESS
    checkpointer = exporter._checkpointer
    time.sleep(0.05)
    assert checkpointer.runs == 0  # 100 KB: not worth an fsync yet
    assert exporter.export(_spans(500, payload="x" * 2000)) is SpanExportResult.SUCCESS
    assert checkpointer is not None and checkpointer._thread.is_alive()
    assert exporter._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == exporter_module.WRITER_AUTOCHECKPOINT
    deadline = time.monotonic() + 10
    while checkpointer.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert checkpointer.runs >= 1
    assert exporter.export(_spans(3)) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert not checkpointer._thread.is_alive()
    assert not Path(f"{path}-wal").exists()  # the writer closed last and cleaned up
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0] == 553
    conn.close()
    assert selfstats.snapshot() == {}

    monkeypatch.setattr(exporter_module, "_IDLE_CHECK_S", 0.05)
    dropped = SQLiteSpanExporter(tmp_path / "dropped.db")
    assert dropped.export(_spans(2)) is SpanExportResult.SUCCESS
    thread = dropped._checkpointer._thread
    del dropped
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()  # an exporter dropped without shutdown() does not leave its thread behind


def test_filtered_listings_and_trace_lookups_read_through_indexes(tmp_path):
    """Every query of a listing, a search, a trace's lookup and a time-bounded aggregate is planned on an index:
    none scans the whole ``spans`` table (in a large store that would be seconds per page). The store keeps no
    statistics (no ``ANALYZE``), so these are the plans of any size of store."""
    from llmobs.store.queries import TraceQuery

    path = tmp_path / "plans.db"
    t0 = time.time_ns() - 3600 * 10**9
    trace_ids = [record_sample_trace(path, t0 + i * 10**9) for i in range(5)]
    statements: list[str] = []
    with TraceStore(path) as store:
        store._conn.set_trace_callback(statements.append)
        store.list_traces(5)
        store.list_traces(5, service="svc")
        store.list_traces(5, errors_only=True)
        store.get_trace(trace_ids[2])
        store.get_trace(trace_ids[2][:12])
        store.model_stats(since_ns=t0)
        for query in (TraceQuery(service="svc"), TraceQuery(model="gpt-4o"), TraceQuery(session="sess-1"),
                      TraceQuery(status="error"), TraceQuery(since_ns=t0, until_ns=t0 + 3 * 10**9)):
            assert store.search_traces(query, limit=2).traces
        store.timeseries(since_ns=t0, until_ns=t0 + 10 * 10**9)
        store._conn.set_trace_callback(None)
        selects = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
        assert len(selects) >= 14
        for sql in selects:
            plan = [row[-1] for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql)]
            full_scans = [step for step in plan if step.startswith("SCAN spans") and "INDEX" not in step]
            assert not full_scans, (sql, plan)


def test_a_lone_surrogate_is_replaced_and_its_batch_kept(tmp_path):
    """Text decoded with surrogateescape (a non-UTF-8 file name) cannot be bound as UTF-8: that value gets
    U+FFFD in place of its surrogates, and the rest of the batch is stored as sent."""
    bad = b"report-\xff.pdf".decode("utf-8", "surrogateescape")
    good = _spans(3, **{sc.REQUEST_MODEL: "gpt-4o", "app.file": "r\u00e9sum\u00e9 \U0001f600"})
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("t").start_span(f"open {bad}", attributes={sc.SESSION_ID: bad, "app.file": bad}).end()
    path = tmp_path / "t.db"
    exporter = SQLiteSpanExporter(path)
    assert exporter.export([*good, *memory.get_finished_spans()]) is SpanExportResult.SUCCESS
    exporter.shutdown()
    stored = rows(path)
    assert set(stored) == {"s0", "s1", "s2", "open report-\ufffd.pdf"}
    assert json.loads(stored["s1"]["attributes"])["app.file"] == "r\u00e9sum\u00e9 \U0001f600"
    assert stored["s1"]["request_model"] == "gpt-4o"
    odd = stored["open report-\ufffd.pdf"]
    assert odd["session_id"] == "report-\ufffd.pdf"
    assert json.loads(odd["attributes"])["app.file"] == "report-\ufffd.pdf"
    assert selfstats.snapshot() == {}
