"""A synthetic production day through llmobs sampling: bytes kept, traces that matter kept, metrics exact.

100,000 traces (``--traces``) of RAG, tool-agent and direct-chat shape are recorded through the real
recorder on a simulated 24-hour clock, with 1-4 KB prompts, 2% failing calls, 3% slow calls and two rare
models. Every span goes to two sampling processors on the same provider, in the same run:

* ``default`` — the default policy (as it runs when exporting over OTLP);
* ``capture-all`` — sampling off, every span exported.

Each exports into a counter that encodes spans as OTLP protobuf, so "bytes" are what would go on the
wire. Reported: spans and bytes per variant and their ratio (goal: >= 10x fewer bytes), recall of error,
slow and rare-model traces (goal: 100%), metric totals against the generator's ground truth (goal:
exact), and the sampler's decision cost per span on recorded spans (goal: <= 5 us), timed separately:
CPU time through a sampler minus CPU time without one, interleaved (see ``decision_cost_ns``).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

from llmobs import content
from llmobs import semconv as sc
from llmobs.recorder import ROOT, Recorder
from llmobs.sampling import SamplingPolicy, SamplingProcessor

DAY_S = 24 * 3600
COMMON = [("gpt-4o-mini", "openai", 0.60), ("qwen-plus", "dashscope", 0.25), ("deepseek-chat", "deepseek", 0.147)]
RARE = [("claude-opus-4", "anthropic", 0.002), ("qwen-max", "dashscope", 0.001)]
WORDS = [
    "the",
    "order",
    "refund",
    "shipping",
    "policy",
    "customer",
    "delayed",
    "parcel",
    "invoice",
    "account",
    "address",
    "warranty",
]


class Counter(SpanExporter):
    """Counts what an exporter would send: spans, OTLP protobuf bytes, trace ids."""

    def __init__(self, keep: int = 0) -> None:
        self.spans = 0
        self.bytes = 0
        self.traces: set[int] = set()
        self.kept: list[ReadableSpan] = []
        self._keep = keep

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        self.bytes += len(encode_spans(spans).SerializeToString())
        self.traces.update(s.context.trace_id for s in spans)
        if len(self.kept) < self._keep:
            self.kept.extend(spans[: self._keep - len(self.kept)])
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class RateLimitError(Exception):
    pass


def _text(rng: random.Random, size: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(size // 6))


def _pick_model(rng: random.Random) -> tuple[str, str, bool]:
    roll = rng.random()
    for model, provider, share in RARE:
        if roll < share:
            return model, provider, True
        roll -= share
    for model, provider, share in COMMON:
        if roll < share:
            return model, provider, False
        roll -= share
    return COMMON[0][0], COMMON[0][1], False


class Day:
    """Generates the traces and keeps the ground truth."""

    def __init__(self, recorder: Recorder, clock: Clock, traces: int, seed: int = 11) -> None:
        self.recorder, self.clock, self.count = recorder, clock, traces
        self.rng = random.Random(seed)
        self.t0 = time.time_ns()
        self.errors: set[int] = set()
        self.slow: set[int] = set()
        self.rare: set[int] = set()
        self.chat_calls = 0
        self.input_tokens = 0
        self.output_tokens = 0

    def run(self) -> None:
        for i in range(self.count):
            self.clock.now = i * DAY_S / self.count
            shape = self.rng.choices(("rag", "agent", "chat"), (0.5, 0.35, 0.15))[0]
            trace_id = getattr(self, f"_{shape}")()
            del trace_id

    def _ns(self, offset_s: float) -> int:
        return self.t0 + int((self.clock.now + offset_s) * 1e9)

    def _llm(self, parent, at: float, model: str, provider: str, *, fail: bool, slow: bool) -> float:
        rng = self.rng
        duration = rng.uniform(31, 60) if slow else rng.uniform(0.4, 3.0)
        call = self.recorder.start(
            sc.OP_CHAT, provider=provider, model=model, parent=parent, start_time_ns=self._ns(at)
        )
        call.set_request(temperature=0.3, max_tokens=1024, stream=True)
        prompt = _text(rng, rng.randint(1000, 4000))
        call.set_input([content.message(sc.ROLE_USER, [content.text_part(prompt)])],
                       system=[content.text_part("You are a helpful support agent.")])  # fmt: skip
        self.chat_calls += 1
        if fail:
            call.end(RateLimitError("429"), end_time_ns=self._ns(at + duration))
            return at + duration
        call.chunk(at_ns=self._ns(at + min(duration * 0.3, rng.uniform(0.2, 0.9))))
        answer = _text(rng, rng.randint(200, 800))
        tokens_in, tokens_out = len(prompt) // 4, len(answer) // 4
        self.input_tokens += tokens_in
        self.output_tokens += tokens_out
        call.set_usage(tokens_in, tokens_out)
        call.set_output([content.output_message([content.text_part(answer)], sc.FINISH_STOP)], finish_reasons=["stop"])
        call.end(end_time_ns=self._ns(at + duration))
        return at + duration

    def _outcome(self) -> tuple[bool, bool]:
        roll = self.rng.random()
        return roll < 0.02, 0.02 <= roll < 0.05

    def _track(self, trace_id: int, fail: bool, slow: bool, rare: bool) -> int:
        for flag, bucket in ((fail, self.errors), (slow, self.slow), (rare, self.rare)):
            if flag:
                bucket.add(trace_id)
        return trace_id

    def _rag(self) -> int:
        model, provider, rare = _pick_model(self.rng)
        fail, slow = self._outcome()
        root = self.recorder.start(sc.OP_INVOKE_AGENT, "support", parent=ROOT, start_time_ns=self._ns(0))
        retrieval = self.recorder.start(sc.OP_RETRIEVAL, "kb", parent=root, start_time_ns=self._ns(0.001))
        embed = self.recorder.start(sc.OP_EMBEDDINGS, provider="openai", model="text-embedding-3-small",
                                    parent=retrieval, start_time_ns=self._ns(0.002))  # fmt: skip
        embed.set_usage(40)
        self.input_tokens += 40
        embed.end(end_time_ns=self._ns(0.08))
        retrieval.set_output(value=[{"id": f"doc-{i}", "score": 0.9 - i / 10} for i in range(4)])
        retrieval.end(end_time_ns=self._ns(0.1))
        end = self._llm(root, 0.11, model, provider, fail=fail, slow=slow)
        root.end(RateLimitError("429") if fail else None, end_time_ns=self._ns(end + 0.01))
        return self._track(root.span.get_span_context().trace_id, fail, slow, rare)

    def _agent(self) -> int:
        model, provider, rare = _pick_model(self.rng)
        fail, slow = self._outcome()
        root = self.recorder.start(sc.OP_INVOKE_AGENT, "planner", parent=ROOT, start_time_ns=self._ns(0))
        at = self._llm(root, 0.01, model, provider, fail=False, slow=False)
        tool = self.recorder.start(sc.OP_EXECUTE_TOOL, "lookup_order", parent=root, start_time_ns=self._ns(at))
        tool.set_input(value={"order_id": "A1"})
        tool.set_output(value={"status": "shipped"})
        tool.end(end_time_ns=self._ns(at + 0.05))
        end = self._llm(root, at + 0.06, model, provider, fail=fail, slow=slow)
        root.end(RateLimitError("429") if fail else None, end_time_ns=self._ns(end + 0.01))
        return self._track(root.span.get_span_context().trace_id, fail, slow, rare)

    def _chat(self) -> int:
        model, provider, rare = _pick_model(self.rng)
        fail, slow = self._outcome()
        root = self.recorder.start(sc.OP_INVOKE_WORKFLOW, "summarise", parent=ROOT, start_time_ns=self._ns(0))
        end = self._llm(root, 0.001, model, provider, fail=fail, slow=slow)
        root.end(RateLimitError("429") if fail else None, end_time_ns=self._ns(end + 0.001))
        return self._track(root.span.get_span_context().trace_id, fail, slow, rare)


def metric_totals(reader: InMemoryMetricReader) -> tuple[int, int, int]:
    calls = tokens_in = tokens_out = 0
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    if (
                        metric.name == sc.METRIC_CLIENT_OPERATION_DURATION
                        and point.attributes[sc.OPERATION_NAME] == sc.OP_CHAT
                    ):
                        calls += point.count
                    if metric.name == sc.METRIC_CLIENT_TOKEN_USAGE:
                        if point.attributes[sc.TOKEN_TYPE] == "input":
                            tokens_in += int(point.sum)
                        else:
                            tokens_out += int(point.sum)
    return calls, tokens_in, tokens_out


def decision_cost_ns(spans: list[ReadableSpan], rounds: int, warmup: int = 2) -> dict[str, Any]:
    """The sampler's own cost per span: recorded spans through a fresh default-policy sampler (its
    ``on_start`` and ``on_end``, as the SDK calls them), minus the same spans handed straight to the same
    no-op downstream (no sampler), the two interleaved round by round. Times are the thread's CPU time, so
    waiting for a CPU on a loaded machine is not counted; wall time is reported beside them.
    Median over rounds of the paired difference, ns per span, after ``warmup`` rounds not counted (the
    first rounds in a process also pay for its memory growing and its code warming up)."""

    class Null(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            pass

    def timed(run) -> tuple[int, int]:
        cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
        run()
        return time.thread_time_ns() - cpu, time.perf_counter_ns() - wall

    def without_sampler() -> None:
        downstream = Null()
        for span in spans:
            downstream.on_end(span)

    default = SamplingPolicy()
    cpu, wall, baseline = [], [], []
    for index in range(warmup + rounds):
        processor = SamplingProcessor([Null()], policy=lambda: default)  # the production clock

        def with_sampler(processor: SamplingProcessor = processor) -> None:
            for span in spans:
                processor.on_start(span, None)  # type: ignore[arg-type]  # a finished span: no baggage to read
                processor.on_end(span)

        if index % 2:  # alternate which goes first
            sampler_cpu, sampler_wall = timed(with_sampler)
            base_cpu, base_wall = timed(without_sampler)
        else:
            base_cpu, base_wall = timed(without_sampler)
            sampler_cpu, sampler_wall = timed(with_sampler)
        processor.shutdown()  # its sweeper thread ends with the round: one sampler at a time, as in production
        if index < warmup:
            continue
        cpu.append((sampler_cpu - base_cpu) / len(spans))
        wall.append((sampler_wall - base_wall) / len(spans))
        baseline.append(base_cpu / len(spans))
    return {
        "cpu": statistics.median(cpu),
        "wall": statistics.median(wall),
        "no_sampler_cpu": statistics.median(baseline),
        "rounds": rounds,
        "warmup_rounds": warmup,
        "cpu_per_round": cpu,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="3,000 traces: a smoke run")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args(argv)
    traces = 3_000 if args.quick else args.traces

    clock = Clock()
    sampled, everything = Counter(), Counter(keep=20_000)
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    default, capture_all = SamplingPolicy(), SamplingPolicy(enabled=False)
    provider.add_span_processor(SamplingProcessor([SimpleSpanProcessor(sampled)], policy=lambda: default, clock=clock))
    provider.add_span_processor(
        SamplingProcessor([SimpleSpanProcessor(everything)], policy=lambda: capture_all, clock=clock)
    )
    reader = InMemoryMetricReader()
    day = Day(Recorder(provider, MeterProvider(metric_readers=[reader])), clock, traces)
    started = time.perf_counter()
    day.run()
    provider.shutdown()
    elapsed = time.perf_counter() - started

    calls, tokens_in, tokens_out = metric_totals(reader)
    recall = {
        name: (len(ids & sampled.traces) / len(ids) if ids else 1.0, len(ids))
        for name, ids in (("error", day.errors), ("slow", day.slow), ("rare model", day.rare))
    }
    cost_detail = decision_cost_ns(everything.kept, rounds=5 if args.quick else 15)
    cost = cost_detail["cpu"]
    load = os.getloadavg()[0]
    report = {
        "traces": traces,
        "spans": {"default": sampled.spans, "capture_all": everything.spans},
        "bytes": {"default": sampled.bytes, "capture_all": everything.bytes},
        "traces_kept": {"default": len(sampled.traces), "capture_all": len(everything.traces)},
        "bytes_ratio": everything.bytes / max(sampled.bytes, 1),
        "recall": {k: v[0] for k, v in recall.items()},
        "ground_truth_counts": {k: v[1] for k, v in recall.items()},
        "metrics": {
            "chat_calls": [calls, day.chat_calls],
            "input_tokens": [tokens_in, day.input_tokens],
            "output_tokens": [tokens_out, day.output_tokens],
        },
        "decision_ns_per_span": cost,
        "decision": {**cost_detail, "spans": len(everything.kept), "load_average_1min": load},
        "generation_s": elapsed,
        "machine": harness.machine_info(),
    }
    print(f"synthetic day: {traces:,} traces, {everything.spans:,} spans, recorded in {elapsed:.0f} s")
    print(f"{'':14}{'spans':>12}{'OTLP bytes':>16}{'traces':>10}")
    for name, counter in (("capture-all", everything), ("default", sampled)):
        print(f"{name:14}{counter.spans:>12,}{counter.bytes:>16,}{len(counter.traces):>10,}")
    print(f"bytes: {report['bytes_ratio']:.1f}x fewer under the default policy (goal >= 10x)")
    for name, (share, n) in recall.items():
        print(f"recall of {name} traces: {share:.1%} of {n} (goal 100%)")
    for name, (got, truth) in report["metrics"].items():
        print(f"metric {name}: {got:,} recorded, {truth:,} generated ({'exact' if got == truth else 'MISMATCH'})")
    record_ns = elapsed * 1e9 / max(everything.spans, 1)
    report["record_ns_per_span"] = record_ns
    print(f"sampler decision cost: {cost / 1000:.2f} us per span of CPU time (goal <= 5 us)")
    print(
        f"  sampler minus no sampler over {len(everything.kept):,} recorded spans, median of {cost_detail['rounds']} "
        f"interleaved rounds after {cost_detail['warmup_rounds']} not counted; "
        f"wall time {cost_detail['wall'] / 1000:.2f} us; load average {load:.2f}"
    )
    print(
        f"  the day's run took {record_ns / 1000:.1f} us per span (recording, both samplers, OTLP encoding): "
        f"deciding is {cost / record_ns:.1%} of it"
    )
    if args.json:
        harness.write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
