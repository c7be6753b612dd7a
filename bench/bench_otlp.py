"""Encoding spans for OTLP export: llmobs' exporter against the SDK's ``encode_spans``, same run.

What an OTLP/HTTP export spends before the request leaves, per span, on ``bench_store.py``'s spans
(traces of four spans shaped like an agent run, 11-19 attributes, ~1 KB of messages on the chat spans)
in batches of 512, the ``BatchSpanProcessor`` default:

* ``sdk`` — ``encode_spans(batch).SerializePartialToString()``: what the SDK's ``OTLPSpanExporter``
  does for each batch (one protobuf object per span, attribute and value, then serialised).
* ``llmobs`` — ``SizeLimitedExporter``'s split of the batch by the spans' exact sizes and the requests'
  bytes, written by ``llmobs.otlp_wire`` (what llmobs' OTLP/HTTP exporter hands to the SDK exporter's
  HTTP client). Both write the same bytes; the bench checks it before timing.
* ``sdk_bare`` / ``llmobs_bare`` — the same for spans with one short attribute, as a bare
  instrumentation makes them: the cost per span that does not depend on content.

    .venv/bin/python bench/bench_otlp.py [--quick] [--rounds R] [--batch SPANS] [--json PATH]
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import bench_store
import harness
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmobs import otlp_wire
from llmobs.export import SizeLimitedExporter

DEFAULTS = harness.Defaults(rounds=10, batch=10_240, quick_rounds=2, quick_batch=1_024)
CHUNK = 512


def bare_spans(count: int) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for i in range(count):
        with tracer.start_as_current_span("RunnableSequence") as span:
            span.set_attribute("run", i)
    return list(memory.get_finished_spans())


class _Unsent:
    """The inner exporter a split never reaches (the bench times the split and encoding only)."""

    def export(self, spans: Sequence[ReadableSpan]) -> Any:
        raise AssertionError("not sent")


def llmobs_requests(exporter: SizeLimitedExporter, batch: Sequence[ReadableSpan]) -> list[bytes]:
    return [otlp_wire.request(part, encoded) for part, encoded in exporter._parts(batch)]


def build(spans: list[ReadableSpan], bare: list[ReadableSpan]) -> harness.Bench:
    bench = harness.Bench("bench_otlp", baseline="sdk", unit="span")
    exporter = SizeLimitedExporter(_Unsent())  # type: ignore[arg-type]
    for suffix, population in (("", spans), ("_bare", bare)):
        batches = [population[i:i + CHUNK] for i in range(0, len(population), CHUNK)]
        for batch in batches:
            if b"".join(llmobs_requests(exporter, batch)) != encode_spans(batch).SerializePartialToString():
                raise RuntimeError("llmobs' encoding differs from the SDK's: the timings would compare different work")
        sdk_batches, our_batches = itertools.cycle(batches), itertools.cycle(batches)

        def sdk_call(batches: Iterator[list[ReadableSpan]] = sdk_batches) -> None:
            encode_spans(next(batches)).SerializePartialToString()

        def llmobs_call(batches: Iterator[list[ReadableSpan]] = our_batches) -> None:
            llmobs_requests(exporter, next(batches))

        units = len(population) / len(batches)
        bench.add(f"sdk{suffix}", sdk_call, batch=len(batches), units=units,
                  description=f"encode_spans(...).SerializePartialToString(), {CHUNK} spans per call")
        bench.add(f"llmobs{suffix}", llmobs_call, batch=len(batches), units=units,
                  description=f"SizeLimitedExporter split + otlp_wire.request, {CHUNK} spans per call")
        bench.compare(f"llmobs{suffix} / sdk{suffix}", f"llmobs{suffix}", f"sdk{suffix}")
    return bench


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = harness.parser(__doc__.split("\n\n")[0] + " (--batch: spans encoded per round)", DEFAULTS)
    args = p.parse_args(argv)
    rounds, count = harness.resolve(args)
    bench = build(bench_store.build_spans(count), bare_spans(count))
    report = bench.run(rounds, count, progress=not args.quick and sys.stderr.isatty())
    return harness.publish(report, args.json)


if __name__ == "__main__":
    main()
