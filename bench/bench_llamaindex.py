"""Cost of tracing a LlamaIndex RAG query: llmobs-llamaindex against OpenInference's LlamaIndex instrumentation.

The application: a ``VectorStoreIndex`` over 50 documents with ``MockLLM`` and ``MockEmbedding`` (no network),
queried through a query engine, and the same through a streaming query engine whose response is read to
the end. Both instrumentations record to the same kind of global providers: an SDK ``TracerProvider`` with
one ``SimpleSpanProcessor`` over an exporter that only counts, and an SDK ``MeterProvider`` with an
in-memory reader; content capture is each one's default (on).

Each anchor runs in its own subprocess, interleaved with the bare query (instrumentation off) in that same
process: OpenInference's instrumentor cannot be uninstrumented cleanly in-process (every ``instrument()``
starts a stream-sweeper thread that is never stopped, and its handlers attach OTel context), so it is
instrumented once in its process and switched on and off per batch by adding and removing its handlers
on LlamaIndex's root dispatcher. llmobs is switched with ``instrument()`` / ``uninstrument()``. Overheads
are compared as fractions of each process's own bare time.

The llmobs process then measures resident memory over many instrumented queries (plain and streaming
alternately) against the same number of bare ones, with the harness's RSS helper.

Goal: llmobs' added overhead at most 0.2 x OpenInference's.

    .venv/bin/python bench/bench_llamaindex.py [--quick] [--rounds R] [--batch N] [--rss N] [--json PATH]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import harness

ANCHORS = ("llmobs", "openinference")
DOCUMENTS = 50
DEFAULTS = harness.Defaults(rounds=15, batch=40, quick_rounds=2, quick_batch=3)
RSS_ITERATIONS, QUICK_RSS_ITERATIONS = 20_000, 200
GOAL = 0.2


class CountingExporter:
    """An exporter that only counts what it is given (an SDK ``SpanExporter`` by duck typing)."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def install_providers() -> tuple[Any, CountingExporter]:
    """Global SDK providers, installed before llmobs first records (so it uses them and adds nothing)."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = CountingExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    return tracer_provider, exporter


def build_app() -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(plain query, streaming query read to the end) over a 50-document in-memory index."""
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM

    topics = ["shipping", "returns", "billing", "accounts", "warranty", "privacy", "gift cards"]
    documents = [
        Document(
            text=f"Policy {i} on {topics[i % len(topics)]}: customers may ask about {topics[i % len(topics)]} "
            f"at any time; agents answer within one business day and log case {1000 + i}.",
            doc_id=f"policy-{i}",
        )
        for i in range(DOCUMENTS)
    ]
    index = VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=256))
    llm = MockLLM(max_tokens=32)
    engine = index.as_query_engine(llm=llm)
    streaming = index.as_query_engine(llm=llm, streaming=True)
    question = "How fast are billing questions answered?"

    def query() -> Any:
        return engine.query(question)

    def stream() -> Any:
        return "".join(streaming.query(question).response_gen)

    return query, stream


def switches(anchor: str, tracer_provider: Any) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(turn on, turn off) the anchor's instrumentation, for batch setup and teardown."""
    if anchor == "llmobs":
        import llmobs_llamaindex

        return llmobs_llamaindex.instrument, llmobs_llamaindex.uninstrument

    from llama_index.core.instrumentation import get_dispatcher
    from openinference.instrumentation.llama_index import LlamaIndexInstrumentor

    instrumentor = LlamaIndexInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)  # once: it starts a thread each time
    span_handler, event_handler = instrumentor._span_handler, instrumentor._event_handler
    dispatcher = get_dispatcher()

    def on() -> None:
        dispatcher.add_span_handler(span_handler)
        dispatcher.add_event_handler(event_handler)

    def off() -> None:
        dispatcher.span_handlers = [h for h in dispatcher.span_handlers if h is not span_handler]
        dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not event_handler]

    off()
    return on, off


def run_anchor(anchor: str, rounds: int, batch: int, rss_iterations: int) -> dict[str, Any]:
    """In this process: bare and ``anchor`` variants of both queries, interleaved (and RSS for llmobs)."""
    tracer_provider, exporter = install_providers()
    query, stream = build_app()
    on, off = switches(anchor, tracer_provider)

    bench = harness.Bench(f"bench_llamaindex[{anchor}]", baseline="bare", unit="query")
    bench.add("bare", query, description="query engine, no instrumentation")
    bench.add("bare_stream", stream, description="streaming query engine, read to the end, no instrumentation")
    bench.add(anchor, query, setup=on, teardown=off, description=f"query engine, {anchor}")
    bench.add(f"{anchor}_stream", stream, setup=on, teardown=off, description=f"streaming query, {anchor}")
    bench.compare(f"{anchor} / bare", anchor, "bare")
    bench.compare(f"{anchor} / bare (stream)", f"{anchor}_stream", "bare_stream")

    on()
    spans_before = exporter.spans
    query()
    stream()
    off()
    bench.notes.append(f"{anchor}: {(exporter.spans - spans_before) / 2:.0f} spans per query")
    report = bench.run(rounds, batch)
    if anchor == "llmobs" and rss_iterations:
        report["rss"] = {}
        for name, switch_on in (("bare", None), ("llmobs", on)):
            if switch_on is not None:
                switch_on()
            spans_before = exporter.spans
            report["rss"][name] = _rss(query, stream, rss_iterations)
            report["rss"][name]["spans"] = exporter.spans - spans_before
            off()
    return report


def _rss(query: Callable[[], Any], stream: Callable[[], Any], iterations: int) -> dict[str, Any]:
    calls = iter(range(1 << 62))

    def one() -> None:
        (stream if next(calls) % 2 else query)()

    return harness.rss_growth(one, iterations, warmup=min(500, iterations // 4), samples=10)


# --- the parent process: one subprocess per anchor, then the comparison ------------------------------


def run_subprocess(anchor: str, rounds: int, batch: int, rss_iterations: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{anchor}.json"
        flags = {"--anchor": anchor, "--rounds": rounds, "--batch": batch, "--rss": rss_iterations, "--json": out}
        command = [sys.executable, __file__, *(part for flag, value in flags.items() for part in (flag, str(value)))]
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"the {anchor} run failed:\n{done.stderr}")
        return json.loads(out.read_text())


def combine(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One report: each anchor's variants (its bare baselines suffixed with the anchor) and the comparisons.

    Each anchor's added overhead is a fraction of the bare time measured in its own process, by medians
    and paired (the median of per-round ratios, steadier on a loaded machine); the comparisons divide
    llmobs' fraction by OpenInference's.
    """
    variants: dict[str, Any] = {}
    for anchor, report in reports.items():
        for name, row in report["variants"].items():
            variants[name if name.startswith(anchor) or anchor == "llmobs" else f"{name}@{anchor}"] = row
    comparisons = []
    for suffix, label in (("", "query"), ("_stream", "streaming query")):
        for how in ("medians", "paired"):
            added = {
                anchor: _ratio(r["variants"], anchor + suffix, "bare" + suffix, how) - 1
                for anchor, r in reports.items()
            }
            ratio = added["llmobs"] / added["openinference"] if added["openinference"] > 0 else float("nan")
            comparisons.append(
                {
                    "label": f"{label}, {how}: llmobs added / openinference added",
                    "variant": "llmobs" + suffix,
                    "other": "openinference" + suffix,
                    "bare": "bare" + suffix,
                    "ratio": ratio,
                    "added": added,
                }
            )
    notes = [note for report in reports.values() for note in report["notes"]] + [f"goal: ratio <= {GOAL}"]
    combined = {
        "bench": "bench_llamaindex",
        "unit": "query",
        "baseline": "bare",
        "variants": variants,
        "comparisons": comparisons,
        "notes": notes,
        "run": reports["llmobs"]["run"],
        "anchors": reports,
    }
    if "rss" in reports["llmobs"]:
        combined["rss"] = reports["llmobs"]["rss"]
    return combined


def _ratio(rows: dict[str, Any], variant: str, bare: str, how: str) -> float:
    if how == "medians":
        return rows[variant]["median_ns"] / rows[bare]["median_ns"]
    pairs = zip(rows[variant]["samples_ns"], rows[bare]["samples_ns"], strict=True)
    return statistics.median(v / b for v, b in pairs)


def rss_lines(rss: dict[str, Any]) -> list[str]:
    lines = []
    for name, r in rss.items():
        steps = ", ".join(f"{rss_bytes / 2**20:.1f}" for _, rss_bytes in r["readings"])
        lines.append(
            f"rss {name}: {r['iterations']} queries ({r['spans']} spans), growth {r['growth_bytes'] / 2**20:+.2f} MiB "
            f"({r['growth_per_iteration']:.0f} B/query); readings MiB: {steps}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = harness.parser(__doc__.split("\n\n")[0], DEFAULTS)
    p.add_argument("--anchor", choices=ANCHORS, help="run one anchor in this process (used by the parent run)")
    p.add_argument(
        "--rss",
        type=int,
        default=None,
        help=f"queries for the memory check (default {RSS_ITERATIONS}; --quick {QUICK_RSS_ITERATIONS})",
    )
    args = p.parse_args(argv)
    rounds, batch = harness.resolve(args)
    rss_iterations = args.rss if args.rss is not None else (QUICK_RSS_ITERATIONS if args.quick else RSS_ITERATIONS)
    if args.anchor:
        report = run_anchor(args.anchor, rounds, batch, rss_iterations)
    else:
        reports = {anchor: run_subprocess(anchor, rounds, batch, rss_iterations) for anchor in ANCHORS}
        report = combine(reports)
        for anchor_report in reports.values():
            print(harness.table(anchor_report))
            print()
        print("all variants (each anchor's bare measured in its own process):")
        for name, row in report["variants"].items():
            print(f"  {name:<28} {harness.format_ns(row['median_ns']):>10}")
        for c in report["comparisons"]:
            added = ", ".join(f"{anchor} +{fraction:.0%}" for anchor, fraction in c["added"].items())
            print(f"{c['label']}: {c['ratio']:.3f}  ({added} over bare)")
        print("\n".join(rss_lines(report.get("rss", {}))))
    if args.json:
        harness.write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
