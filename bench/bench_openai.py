"""Added latency of tracing OpenAI-API calls: llmobs-openai's transport against a plain httpx client and
against OpenTelemetry's openai-v2 and OpenLLMetry's OpenAI instrumentations, on a loopback server.

Every variant makes the same calls with the real ``openai`` client to ``llmobs_openai.testing``'s
OpenAI-compatible server running in a subprocess (so it does not compete for this process's GIL): a
chat completion (system + user message, temperature, max_tokens; usage and one answer back) and a
streamed one of ``CHUNKS`` content chunks with usage on the final chunk, read to its end. Spans go to
an SDK ``TracerProvider`` with a ``SimpleSpanProcessor`` over an exporter that does nothing, metrics
to an SDK ``MeterProvider`` with an in-memory reader; content capture is on everywhere.

Two measurements:

* **in process, interleaved** (the harness): ``bare`` (``httpx.Client()``), ``llmobs``
  (``llmobs_openai.http_client()``) and ``llmobs_no_content``, per call and per streamed chunk;
* **one process per round and variant**, for the anchors: they patch the openai client's classes and
  their ``uninstrument()`` does not restore them cleanly (OpenLLMetry's spans keep coming after it), so
  no uninstrumented baseline can follow them in the same process. Each round starts a fresh process
  per variant (``llmobs``, ``llmobs_own_metrics``, ``openllmetry``, ``openai_v2``) that times a batch on
  the bare client, then installs the variant and times the same batch; the added cost is the paired
  difference. llmobs is measured this way too, so that all are compared alike: ``llmobs`` on the same
  SDK meter provider as the anchors, ``llmobs_own_metrics`` on one as ``llmobs.configure()`` installs
  it for OTLP or Prometheus metrics, where llmobs aggregates its GenAI metrics itself.

Goal: llmobs' added cost per call at most 0.5x the best anchor's.

    .venv/bin/python bench/bench_openai.py [--quick] [--rounds R] [--batch N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import harness

MODEL = "gpt-4o-mini"
CHUNKS = 50
MESSAGES = [
    {"role": "system", "content": "You are a concise support assistant."},
    {"role": "user", "content": "My password reset worked but login still fails. What should I try first?"},
]
ANCHORS = ("openllmetry", "openai_v2")
#: llmobs on the application's meter provider, and on one llmobs installs (metrics aggregated by llmobs).
OURS = ("llmobs", "llmobs_own_metrics")
DEFAULTS = harness.Defaults(rounds=15, batch=40, quick_rounds=1, quick_batch=3)
_CHILD_TIMEOUT_S = 600


# --- the calls ----------------------------------------------------------------------------------------


def _call(client: Any) -> None:
    client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0.2, max_tokens=128)


def _stream(client: Any) -> None:
    for _ in client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ):
        pass


def _providers(own_metrics: bool = False) -> tuple[Any, Any, Any]:
    """Global SDK providers with a do-nothing exporter that counts spans; returns (tracer p., meter p., exporter).

    ``own_metrics``: the meter provider is one as ``llmobs.configure()`` installs it for OTLP or Prometheus
    metrics, where llmobs aggregates its GenAI metrics itself.
    """
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class CountingExporter(SpanExporter):
        count = 0

        def export(self, spans):
            self.count += len(spans)
            return SpanExportResult.SUCCESS

    exporter = CountingExporter()
    # The global providers can be set once per process: reuse them when something (another bench in the
    # smoke test's process) installed them first, as an application's own providers would be.
    tracer_provider = trace.get_tracer_provider()
    if not isinstance(tracer_provider, TracerProvider):
        tracer_provider = TracerProvider()
        trace.set_tracer_provider(tracer_provider)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = metrics.get_meter_provider()
    if not isinstance(meter_provider, MeterProvider):
        if own_metrics:
            from llmobs import aggregated_metrics

            reader = aggregated_metrics.AggregatingInMemoryReader()
            meter_provider = MeterProvider(metric_readers=[reader])
            metrics.set_meter_provider(meter_provider)
            aggregated_metrics.register(meter_provider, [reader], is_global=True)
        else:
            meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
            metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider, exporter


def _openai(port: int, http_client: Any) -> Any:
    import openai

    return openai.OpenAI(api_key="sk-bench", base_url=f"http://127.0.0.1:{port}/v1", http_client=http_client)


def _bare(port: int) -> Any:
    import httpx

    return _openai(port, httpx.Client())


def _ours(port: int) -> Any:
    import llmobs_openai

    return _openai(port, llmobs_openai.http_client())


# --- in process, interleaved ---------------------------------------------------------------------------


def _settings_swapper(**changes: Any) -> tuple[Callable[[], None], Callable[[], None]]:
    """Batch setup/teardown that make settings with ``changes`` current and put the previous ones back."""
    import dataclasses

    from llmobs import config

    saved: list[Any] = []

    def setup() -> None:
        saved.append(config.swap(dataclasses.replace(config.Settings(), **changes)))

    def teardown() -> None:
        config.swap(saved.pop())

    return setup, teardown


def in_process(port: int, rounds: int, batch: int) -> tuple[dict[str, Any], dict[str, Any]]:
    from llmobs.content import CaptureMode

    _, _, exporter = _providers()
    bare, ours = _bare(port), _ours(port)
    content_on = _settings_swapper()
    content_off = _settings_swapper(capture=CaptureMode.NO_CONTENT)
    _call(ours)
    if exporter.count != 1:
        raise SystemExit(f"llmobs recorded {exporter.count} spans for one call")

    calls = harness.Bench("openai_call", baseline="bare", unit="call")
    calls.add("bare", lambda: _call(bare), description="httpx.Client()")
    calls.add("llmobs", lambda: _call(ours), setup=content_on[0], teardown=content_on[1])
    calls.add("llmobs_no_content", lambda: _call(ours), setup=content_off[0], teardown=content_off[1])
    streams = harness.Bench("openai_stream", baseline="bare", unit="chunk")
    stream_batch = max(1, batch // 4)
    streams.add("bare", lambda: _stream(bare), batch=stream_batch, units=CHUNKS)
    streams.add("llmobs", lambda: _stream(ours), setup=content_on[0], teardown=content_on[1], batch=stream_batch,
                units=CHUNKS)  # fmt: skip
    return calls.run(rounds, batch), streams.run(rounds, batch)


# --- one fresh process per round and variant -----------------------------------------------------------


def _instrument(variant: str, port: int, tracer_provider: Any, meter_provider: Any) -> Any:
    """The client to time for ``variant`` (the anchors patch the openai classes, so: the bare client)."""
    if variant in OURS:
        return _ours(port)
    if variant == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    elif variant == "openai_v2":
        os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    else:
        raise SystemExit(f"unknown variant {variant}")
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return _bare(port)


def _time(fn: Callable[[], None], calls: int) -> float:
    fn()  # warm-up
    started = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - started) / calls


def child(variant: str, port: int, batch: int) -> dict[str, Any]:
    """One round in a fresh process: the bare client, then ``variant`` installed; ns per call and per chunk."""
    tracer_provider, meter_provider, exporter = _providers(own_metrics=variant == "llmobs_own_metrics")
    bare = _bare(port)
    streams = max(1, batch // 4)
    result = {"bare_call": _time(lambda: _call(bare), batch)}
    result["bare_chunk"] = _time(lambda: _stream(bare), streams) / CHUNKS
    if exporter.count:
        raise SystemExit("spans recorded before instrumenting")
    try:
        client = _instrument(variant, port, tracer_provider, meter_provider)
        _call(client)
    except Exception as exc:  # an anchor that cannot run in this environment
        return {"unavailable": f"{type(exc).__name__}: {exc}"}
    result["call"] = _time(lambda: _call(client), batch)
    result["chunk"] = _time(lambda: _stream(client), streams) / CHUNKS
    result["spans"] = exporter.count
    return result


def per_process(port: int, rounds: int, batch: int) -> dict[str, Any]:
    """Run ``child`` for every variant, interleaved by round; added cost = variant - its own bare batch."""
    variants = (*OURS, *ANCHORS)
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    unavailable: dict[str, str] = {}
    for _ in range(rounds):
        for variant in variants:
            if variant in unavailable:
                continue
            out = subprocess.run(
                [sys.executable, __file__, "--child", variant, "--port", str(port), "--batch", str(batch)],
                capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S, check=True,
            )  # fmt: skip
            result = json.loads(out.stdout.strip().splitlines()[-1])
            if "unavailable" in result:
                unavailable[variant] = result["unavailable"]
            else:
                samples[variant].append(result)
    summary: dict[str, Any] = {}
    for variant, rows in samples.items():
        if not rows:
            continue
        summary[variant] = {
            "bare_call_ns": statistics.median(r["bare_call"] for r in rows),
            "call_ns": statistics.median(r["call"] for r in rows),
            "added_call_ns": statistics.median(r["call"] - r["bare_call"] for r in rows),
            "bare_chunk_ns": statistics.median(r["bare_chunk"] for r in rows),
            "chunk_ns": statistics.median(r["chunk"] for r in rows),
            "added_chunk_ns": statistics.median(r["chunk"] - r["bare_chunk"] for r in rows),
            "rounds": len(rows),
            "spans_per_round": rows[0]["spans"],
            "samples": rows,
        }
    return {"variants": summary, "unavailable": unavailable, "rounds": rounds, "batch": batch}


def per_process_table(report: dict[str, Any]) -> str:
    lines = [
        f"one process per round and variant: {report['rounds']} rounds; medians; added = paired (variant - bare)",
        f"{'variant':<18} {'bare/call':>10} {'call':>10} {'added/call':>11} {'bare/chunk':>11} {'chunk':>10} "
        f"{'added/chunk':>12}",
    ]
    for name, row in report["variants"].items():
        cells = [harness.format_ns(row[k]) for k in ("bare_call_ns", "call_ns", "added_call_ns", "bare_chunk_ns",
                                                      "chunk_ns", "added_chunk_ns")]  # fmt: skip
        lines.append(f"{name:<18} {cells[0]:>10} {cells[1]:>10} {cells[2]:>11} {cells[3]:>11} {cells[4]:>10} "
                     f"{cells[5]:>12}")  # fmt: skip
    anchors = {k: v for k, v in report["variants"].items() if k in ANCHORS}
    for name in OURS:
        ours = report["variants"].get(name)
        if not (ours and anchors):
            continue
        best = min(anchors, key=lambda k: anchors[k]["added_call_ns"])
        ratio = ours["added_call_ns"] / anchors[best]["added_call_ns"]
        report.setdefault("goal", {})[name] = {"best_anchor": best, "added_call_ratio": ratio}
        lines.append(f"{name} added per call / {best} added per call: {ratio:.2f}  (goal <= 0.5)")
        for anchor, row in anchors.items():
            lines.append(f"{name} added per chunk / {anchor} added per chunk: "
                         f"{ours['added_chunk_ns'] / row['added_chunk_ns']:.2f}")  # fmt: skip
    lines += [f"unavailable: {name}: {why}" for name, why in report["unavailable"].items()]
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------------------------


def _server() -> tuple[subprocess.Popen, int]:
    server = subprocess.Popen(
        [sys.executable, "-m", "llmobs_openai.testing", str(CHUNKS)], stdout=subprocess.PIPE, text=True
    )
    return server, int(server.stdout.readline())


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = harness.parser(__doc__.split("\n\n")[0], DEFAULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-anchors", action="store_true", help="skip the one-process-per-round measurement")
    args = parser.parse_args(argv)
    rounds, batch = harness.resolve(args)
    if args.child:
        print(json.dumps(child(args.child, args.port, batch)))
        return {}
    server, port = _server()
    try:
        calls, streams = in_process(port, rounds, batch)
        print(harness.table(calls))
        print(harness.table(streams))
        report: dict[str, Any] = {"bench": "openai", "in_process": {"call": calls, "stream": streams}}
        if not args.no_anchors:
            report["per_process"] = per_process(port, rounds, batch)
            print(per_process_table(report["per_process"]))
    finally:
        server.terminate()
        server.wait()
    if args.json:
        harness.write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
