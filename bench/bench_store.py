"""Ingest throughput of the embedded trace store: ``SQLiteSpanExporter.export`` into a fresh file.

Spans are built once, before timing, by a real SDK ``TracerProvider``: traces of four spans shaped
like an agent run (``invoke_agent`` > ``chat`` > ``execute_tool``, then a second ``chat``), each span
with 11-19 attributes; the chat spans carry a ~1 KB ``gen_ai.input.messages`` JSON attribute. Each
timed round ingests the whole set (``--batch`` spans, default 20 000) into a new database file in a
temporary directory, in export calls of a fixed size:

* ``export_512`` — batches of 512, the ``BatchSpanProcessor`` default (``max_export_batch_size``).
* ``export_64`` — batches of 64, as with a small processor batch or a quiet application.
* ``insert_512`` — the store's own insert alone: ``SQLiteSpanExporter.write_rows`` of rows that
  ``span_rows`` converted before timing, 512 per transaction (``export_512`` without its conversion: the
  primary key, three indexes and type casts on top of SQLite's insert).
* ``sqlite_512`` — same-run anchor: plain ``sqlite3`` ``executemany`` of the same number of rows
  of the same width (27 columns, attributes as one JSON text) into a bare table (no key, no index,
  no casts), 512 rows per transaction, same page size and journal settings (WAL, ``synchronous = NORMAL``). The
  rows are built before timing, so the ratio ``export_512 / sqlite_512`` is everything the exporter
  adds over SQLite's own insert cost: span-to-row conversion, JSON encoding, the primary key and
  three indexes, type casts. One difference goes the other way: the exporter copies WAL pages into
  the database (checkpoints, with their fsyncs) on a background thread, the anchor inline, as SQLite
  does by default. A background checkpoint still running when a round's last export returns
  finishes in the round's teardown, untimed (at most one: ~2 000 WAL pages).

Opening the store (file creation, WAL switch, schema) happens in the per-round setup, outside the
timing; retention is off. Goal: ``export_512`` at least 50 000 spans/s on 2 cores.

    .venv/bin/python bench/bench_store.py [--quick] [--rounds R] [--batch SPANS] [--dir DIR] [--json PATH]
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, set_span_in_context

from llmobs import semconv as sc
from llmobs.store import SQLiteSpanExporter, schema
from llmobs.store.exporter import span_rows

DEFAULTS = harness.Defaults(rounds=10, batch=20_000, quick_rounds=2, quick_batch=1_200)
GOAL_SPANS_PER_S = 50_000
WIDTH = len(schema.COLUMNS)

# --- realistic spans ---------------------------------------------------------------------------------

_WORDS = (
    "order", "refund", "account", "password", "invoice", "shipment", "delayed", "customer", "support",
    "ticket", "escalate", "policy", "warranty", "replace", "damaged", "address", "billing", "subscription",
    "cancel", "upgrade", "plan", "discount", "coupon", "region", "latency", "error", "retry", "timeout",
    "database", "cache", "index", "query", "answer", "summary", "context", "document",
)


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    n = 0
    while n < chars:
        word = rng.choice(_WORDS)
        words.append(word)
        n += len(word) + 1
    return " ".join(words)[:chars]


def _messages(rng: random.Random, turn: int) -> str:
    """A ~1 KB ``gen_ai.input.messages`` value: system prompt, user turn, a tool call and its result."""
    messages = [
        {"role": "system", "parts": [{"type": "text", "content": _text(rng, 260)}]},
        {"role": "user", "parts": [{"type": "text", "content": _text(rng, 300)}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": f"call_{turn:08d}", "name": "lookup_order",
                                         "arguments": {"order_id": f"A-{turn:06d}", "fields": ["status", "eta"]}}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": f"call_{turn:08d}",
                                    "response": _text(rng, 220)}]},
    ]
    return json.dumps(messages, separators=(",", ":"))


class _Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def build_spans(count: int, seed: int = 7) -> list[ReadableSpan]:
    """``count`` finished spans (rounded up to whole 4-span traces, then cut), oldest first."""
    rng = random.Random(seed)
    collect = _Collect()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot", "service.version": "1.4.2",
                                                        "deployment.environment": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(collect))
    tracer = provider.get_tracer(sc.SCOPE_NAME, "0.1.0")
    t = time.time_ns() - 3_600 * 10**9
    for turn in range(math.ceil(count / 4)):
        session = f"session-{turn // 5:06d}"
        user = f"user-{turn % 97:04d}"
        common = {sc.SESSION_ID: session, sc.CONVERSATION_ID: session, sc.USER_ID: user, sc.FRAMEWORK: "langchain"}
        t0 = t
        agent = tracer.start_span("invoke_agent support", kind=SpanKind.INTERNAL, start_time=t0, attributes={
            sc.OPERATION_NAME: sc.OP_INVOKE_AGENT, sc.SPAN_KIND: sc.KIND_AGENT, sc.AGENT_NAME: "support",
            sc.AGENT_ID: "agent-7", sc.COMPONENT_NAME: "support", sc.PROVIDER_NAME: "openai",
            sc.REQUEST_MODEL: "gpt-4o-mini", sc.INPUT_VALUE: _text(rng, 300), **common,
        })
        parent = set_span_in_context(agent)
        for step in range(2):
            start = t0 + (1 + step * 3) * 10**8
            in_tokens, out_tokens = rng.randint(300, 1500), rng.randint(20, 400)
            chat = tracer.start_span("chat gpt-4o-mini", context=parent, kind=SpanKind.CLIENT, start_time=start,
                                     attributes={
                sc.OPERATION_NAME: sc.OP_CHAT, sc.SPAN_KIND: sc.KIND_LLM, sc.PROVIDER_NAME: "openai",
                sc.REQUEST_MODEL: "gpt-4o-mini", sc.REQUEST_TEMPERATURE: 0.2, sc.REQUEST_MAX_TOKENS: 512,
                sc.SERVER_ADDRESS: "api.openai.com", **common,
            })  # fmt: skip
            chat.set_attributes({
                sc.RESPONSE_MODEL: "gpt-4o-mini-2024-07-18", sc.RESPONSE_ID: f"chatcmpl-{rng.getrandbits(64):016x}",
                sc.RESPONSE_FINISH_REASONS: ["tool_call" if step == 0 else "stop"],
                sc.USAGE_INPUT_TOKENS: in_tokens, sc.USAGE_OUTPUT_TOKENS: out_tokens,
                sc.USAGE_TOTAL_TOKENS: in_tokens + out_tokens, sc.COST_USD: in_tokens * 1.5e-7 + out_tokens * 6e-7,
                sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS: rng.randint(200, 900) * 10**6,
                sc.INPUT_MESSAGES: _messages(rng, turn),
                sc.OUTPUT_MESSAGES: json.dumps([{"role": "assistant", "finish_reason": "stop",
                                                 "parts": [{"type": "text", "content": _text(rng, 200)}]}]),
            })
            chat.end(end_time=start + rng.randint(5, 20) * 10**8)
            if step == 0:
                tool_start = start + 21 * 10**8
                tool = tracer.start_span("execute_tool lookup_order", context=parent, start_time=tool_start,
                                         attributes={
                    sc.OPERATION_NAME: sc.OP_EXECUTE_TOOL, sc.SPAN_KIND: sc.KIND_TOOL, sc.TOOL_NAME: "lookup_order",
                    sc.TOOL_CALL_ID: f"call_{turn:08d}", sc.TOOL_TYPE: "function",
                    sc.TOOL_DESCRIPTION: "Look up an order's status and delivery estimate",
                    sc.TOOL_CALL_ARGUMENTS: json.dumps({"order_id": f"A-{turn:06d}"}),
                    sc.TOOL_CALL_RESULT: _text(rng, 400), **common,
                })  # fmt: skip
                tool.end(end_time=tool_start + rng.randint(1, 30) * 10**7)
        agent.set_attribute(sc.OUTPUT_VALUE, _text(rng, 300))
        agent.end(end_time=t0 + 60 * 10**8)
        t += 10**7
    provider.shutdown()
    return collect.spans[:count]


def plain_row(span: ReadableSpan) -> tuple[Any, ...]:
    """A row as wide as the store's (ids, name, typed fields, attributes as JSON) built the obvious way."""
    a = span.attributes or {}
    ctx = span.context
    row = (
        f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", f"{span.parent.span_id:016x}" if span.parent else None,
        span.name, a.get(sc.SPAN_KIND), a.get(sc.OPERATION_NAME), "support-bot", a.get(sc.PROVIDER_NAME),
        a.get(sc.REQUEST_MODEL), a.get(sc.RESPONSE_MODEL), span.start_time, span.end_time,
        span.end_time - span.start_time, span.status.status_code.name, None, a.get(sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS),
        a.get(sc.USAGE_INPUT_TOKENS), a.get(sc.USAGE_OUTPUT_TOKENS), a.get(sc.USAGE_TOTAL_TOKENS), a.get(sc.COST_USD),
        a.get(sc.SESSION_ID), a.get(sc.USER_ID), 1.0, json.dumps(dict(a), separators=(",", ":"), ensure_ascii=False),
        "[]", json.dumps(dict(span.resource.attributes)), span.instrumentation_scope.name,
    )
    return row


# --- variants ----------------------------------------------------------------------------------------


class ExportVariant:
    """Ingest all spans into a fresh store file per round, ``chunk`` spans per ``export`` call."""

    def __init__(self, spans: list[ReadableSpan], chunk: int, directory: Path, opener: ReadableSpan) -> None:
        self.chunks = [spans[i:i + chunk] for i in range(0, len(spans), chunk)]
        self.directory = directory
        self.opener = opener
        self.exporter: SQLiteSpanExporter | None = None
        self.next = 0
        self.rounds = 0
        self.failures = 0

    def setup(self) -> None:
        self.rounds += 1
        path = self.directory / f"export-{id(self):x}-{self.rounds}.db"
        self.exporter = SQLiteSpanExporter(path, retention=None)
        # Open the file (WAL switch, schema) before timing, with one span outside the data set.
        if self.exporter.export([self.opener]) is not SpanExportResult.SUCCESS:
            raise RuntimeError(f"the store at {path} could not be opened")
        self.next = 0

    def call(self) -> None:
        chunk = self.chunks[self.next]
        self.next += 1
        if self.exporter.export(chunk) is not SpanExportResult.SUCCESS:
            self.failures += 1

    def teardown(self) -> None:
        assert self.exporter is not None
        path = self.exporter.path
        self.exporter.shutdown()
        self.exporter = None
        _remove_db(path)


class InsertVariant(ExportVariant):
    """``export_512`` without the conversion: the same store, rows converted before timing."""

    def __init__(self, spans: list[ReadableSpan], chunk: int, directory: Path, opener: ReadableSpan) -> None:
        super().__init__(spans, chunk, directory, opener)
        self.rows = [span_rows(spans_of_call) for spans_of_call in self.chunks]
        if sum(map(len, self.rows)) != len(spans):
            raise RuntimeError("some spans could not be converted to rows")

    def call(self) -> None:
        rows = self.rows[self.next]
        self.next += 1
        if not self.exporter.write_rows(rows):
            self.failures += 1


class SqliteVariant:
    """The anchor: pre-built rows of the same width, ``executemany`` into a bare table."""

    def __init__(self, rows: list[tuple[Any, ...]], chunk: int, directory: Path) -> None:
        self.chunks = [rows[i:i + chunk] for i in range(0, len(rows), chunk)]
        self.directory = directory
        self.conn: sqlite3.Connection | None = None
        self.path: Path | None = None
        self.next = 0
        self.rounds = 0
        self.insert = f"INSERT INTO spans VALUES ({', '.join('?' * WIDTH)})"

    def setup(self) -> None:
        self.rounds += 1
        self.path = self.directory / f"plain-{id(self):x}-{self.rounds}.db"
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute(f"PRAGMA page_size = {schema.PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode = WAL").fetchone()
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"CREATE TABLE spans ({', '.join(schema.COLUMNS)})")
        self.conn = conn
        self.next = 0

    def call(self) -> None:
        conn = self.conn
        chunk = self.chunks[self.next]
        self.next += 1
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(self.insert, chunk)
        conn.execute("COMMIT")

    def teardown(self) -> None:
        assert self.conn is not None and self.path is not None
        self.conn.close()
        self.conn = None
        _remove_db(self.path)


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def build(spans: list[ReadableSpan], opener: ReadableSpan, directory: Path) -> tuple[harness.Bench, list[Any]]:
    bench = harness.Bench("bench_store", baseline="sqlite_512", unit="span")
    exporters = []
    for chunk in (512, 64):
        variant = ExportVariant(spans, chunk, directory, opener)
        exporters.append(variant)
        bench.add(f"export_{chunk}", variant.call, setup=variant.setup, teardown=variant.teardown,
                  batch=len(variant.chunks), units=len(spans) / len(variant.chunks),
                  description=f"SQLiteSpanExporter.export, {chunk} spans per call")
    inserts = InsertVariant(spans, 512, directory, opener)
    exporters.append(inserts)
    bench.add("insert_512", inserts.call, setup=inserts.setup, teardown=inserts.teardown, batch=len(inserts.chunks),
              units=len(spans) / len(inserts.chunks),
              description="SQLiteSpanExporter.write_rows of rows converted before timing, 512 per transaction")
    rows = [plain_row(s) for s in spans]
    assert all(len(r) == WIDTH for r in rows)
    anchor = SqliteVariant(rows, 512, directory)
    bench.add("sqlite_512", anchor.call, setup=anchor.setup, teardown=anchor.teardown, batch=len(anchor.chunks),
              units=len(rows) / len(anchor.chunks), description="bare table executemany, 512 rows per transaction")
    bench.compare("export_512 / sqlite_512", "export_512", "sqlite_512")
    bench.compare("export_64 / export_512", "export_64", "export_512")
    bench.compare("insert_512 / sqlite_512", "insert_512", "sqlite_512")
    bench.notes.append(f"goal: export_512 >= {GOAL_SPANS_PER_S:,} spans/s")
    return bench, exporters


def spans_per_s(row: dict[str, Any]) -> str:
    return f"{1e9 / row['median_ns']:,.0f}"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = harness.parser(__doc__.split("\n\n")[0] + " (--batch: spans ingested per round)", DEFAULTS)
    p.add_argument("--dir", help="where the database files go (default: the system temporary directory)")
    args = p.parse_args(argv)
    rounds, count = harness.resolve(args)
    spans = build_spans(count + 1)
    opener, spans = spans[-1], spans[:-1]
    with tempfile.TemporaryDirectory(prefix="llmobs-bench-store-", dir=args.dir) as tmp:
        bench, exporters = build(spans, opener, Path(tmp))
        report = bench.run(rounds, count, progress=not args.quick and sys.stderr.isatty())
    failures = sum(e.failures for e in exporters)
    if failures:
        raise RuntimeError(f"{failures} export calls failed; the timings are not valid")
    for row in report["variants"].values():
        row["spans_per_s"] = 1e9 / row["median_ns"]
    report["run"]["spans"] = len(spans)
    report["run"]["directory"] = args.dir or tempfile.gettempdir()
    report["run"]["attributes_per_span"] = sum(len(s.attributes) for s in spans) / len(spans)
    report["run"]["attribute_json_bytes_per_span"] = sum(len(r[23]) for r in (plain_row(s) for s in spans[:400])) / min(
        400, len(spans))
    print(harness.table(report, extra={"spans/s": spans_per_s}))
    print(f"{len(spans)} spans per round, {report['run']['attributes_per_span']:.1f} attributes and "
          f"{report['run']['attribute_json_bytes_per_span']:,.0f} bytes of attribute JSON per span on average")
    if args.json:
        harness.write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
