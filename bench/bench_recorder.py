"""Cost of recording one chat call: llmobs' recorder against the bare OTel SDK and opentelemetry-util-genai.

Every variant records the same non-streaming chat call (provider, model, temperature, max_tokens,
one ~300-character user message, usage, one assistant message, finish reason) on identical
providers: an SDK ``TracerProvider`` with one ``SimpleSpanProcessor`` over an exporter that does
nothing (export cost is equal and tiny) and an SDK ``MeterProvider`` with an in-memory reader.

Variants:

* ``raw_otel`` — the SDK alone: a CLIENT span with the same GenAI attributes the llmobs span gets
  (operation, span kind, provider, model, temperature, max_tokens, then finish reasons and usage),
  plus the same three histogram records (duration, input tokens, output tokens). The floor.
* ``llmobs`` — ``Recorder.start`` ... ``end`` with content capture on (the default, SPAN_ONLY): the
  messages are scrubbed, capped and serialised to ``gen_ai.*.messages``; llmobs also prices the call
  (three cost attributes and a cost counter) — work ``raw_otel`` does not do.
* ``llmobs_no_content`` — the same with capture mode NO_CONTENT.
* ``llmobs_own_metrics`` — ``llmobs`` on a meter provider as ``llmobs.configure()`` installs it for OTLP
  or Prometheus metrics, where llmobs aggregates its GenAI metrics itself instead of the SDK.
* ``util_genai`` / ``util_genai_no_content`` — the same call through opentelemetry-util-genai's
  ``TelemetryHandler.inference`` (its default public usage, which attaches the span to the context
  for the duration), content capture SPAN_ONLY as its docs configure it, and off.

Goal: ``llmobs`` at most 2x ``raw_otel``.

    .venv/bin/python bench/bench_recorder.py [--quick] [--rounds R] [--batch N] [--json PATH]
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from typing import Any

import harness
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from llmobs import aggregated_metrics, config
from llmobs import semconv as sc
from llmobs.aggregated_metrics import AggregatingInMemoryReader
from llmobs.content import CaptureMode, message, output_message, text_part
from llmobs.recorder import Recorder

PROVIDER = "openai"
MODEL = "gpt-4o-mini"
PROMPT = (
    "You are helping a customer who cannot log in after resetting their password. They say the reset "
    "email arrived, the new password was accepted, but the login page still says 'invalid credentials'. "
    "List the three most likely causes and what the customer should try for each, shortest first."
)
ANSWER = (
    "1. Cached old password in the browser's password manager: clear it and type the new one. "
    "2. Caps Lock or keyboard layout changed: check and retype. "
    "3. The reset went to a second account with the same email: ask support to merge them."
)
INPUT_TOKENS, OUTPUT_TOKENS = 120, 45
DEFAULTS = harness.Defaults(rounds=30, batch=2000, quick_rounds=3, quick_batch=30)


class NullExporter(SpanExporter):
    """Accepts every span and does nothing, so export costs the same (almost nothing) for all variants."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def llmobs_meter_provider() -> MeterProvider:
    """A meter provider as ``llmobs.configure()`` installs it for OTLP or Prometheus metrics."""
    reader = AggregatingInMemoryReader()
    provider = MeterProvider(metric_readers=[reader])
    aggregated_metrics.register(provider, [reader])
    return provider


def providers() -> tuple[TracerProvider, MeterProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(NullExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return tracer_provider, meter_provider


# --- raw OTel ----------------------------------------------------------------------------------------


def raw_otel_variant(tracer_provider: TracerProvider, meter_provider: MeterProvider):
    tracer = tracer_provider.get_tracer("bench.raw_otel", "0")
    meter = meter_provider.get_meter("bench.raw_otel", "0")
    duration = meter.create_histogram(sc.METRIC_CLIENT_OPERATION_DURATION, unit=sc.UNIT_SECONDS,
                                      explicit_bucket_boundaries_advisory=sc.BUCKETS_DURATION)
    tokens = meter.create_histogram(sc.METRIC_CLIENT_TOKEN_USAGE, unit=sc.UNIT_TOKENS,
                                    explicit_bucket_boundaries_advisory=sc.BUCKETS_TOKENS)
    perf_counter_ns = time.perf_counter_ns

    def call() -> None:
        t0 = perf_counter_ns()
        span = tracer.start_span(
            f"{sc.OP_CHAT} {MODEL}",
            kind=SpanKind.CLIENT,
            attributes={
                sc.OPERATION_NAME: sc.OP_CHAT,
                sc.SPAN_KIND: sc.KIND_LLM,
                sc.PROVIDER_NAME: PROVIDER,
                sc.REQUEST_MODEL: MODEL,
                sc.REQUEST_TEMPERATURE: 0.2,
                sc.REQUEST_MAX_TOKENS: 256,
            },
        )
        span.set_attributes({
            sc.RESPONSE_FINISH_REASONS: ["stop"],
            sc.USAGE_INPUT_TOKENS: INPUT_TOKENS,
            sc.USAGE_OUTPUT_TOKENS: OUTPUT_TOKENS,
            sc.USAGE_TOTAL_TOKENS: INPUT_TOKENS + OUTPUT_TOKENS,
        })
        attrs = {sc.OPERATION_NAME: sc.OP_CHAT, sc.PROVIDER_NAME: PROVIDER, sc.REQUEST_MODEL: MODEL}
        duration.record((perf_counter_ns() - t0) / 1e9, attrs)
        tokens.record(INPUT_TOKENS, {**attrs, sc.TOKEN_TYPE: sc.TOKEN_TYPE_INPUT})
        tokens.record(OUTPUT_TOKENS, {**attrs, sc.TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT})
        span.end()

    return call


# --- llmobs ------------------------------------------------------------------------------------------


def llmobs_call(recorder: Recorder):
    def call() -> None:
        handle = recorder.start(sc.OP_CHAT, provider=PROVIDER, model=MODEL)
        handle.set_request(temperature=0.2, max_tokens=256)
        handle.set_input([message("user", [text_part(PROMPT)])])
        handle.set_usage(INPUT_TOKENS, OUTPUT_TOKENS)
        handle.set_output([output_message([text_part(ANSWER)], "stop")], finish_reasons=["stop"])
        handle.end()

    return call


class SettingsScope:
    """Makes ``settings`` current for one batch and restores the previous settings after it.

    Variants run interleaved and llmobs settings are process-wide, so each llmobs variant swaps its
    own settings object in as batch setup. Each variant also has its own Recorder: a recorder
    re-derives its content policy only when the settings object changes, and with one recorder per
    fixed settings object that happens once, in the warm-up, not inside timed batches.
    """

    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        self.previous: config.Settings | None = None

    def enter(self) -> None:
        self.previous = config.current()  # loaded first, so the settings in force before are restored
        config.swap(self.settings)

    def exit(self) -> None:
        if self.previous is not None:
            config.swap(self.previous)


# --- opentelemetry-util-genai ------------------------------------------------------------------------

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


def util_genai_handlers(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> tuple[Any, Any]:
    """(content-capturing handler, no-content handler), configured through the environment as its docs say.

    The handler reads the capture mode when it is constructed. ``OTEL_SEMCONV_STABILITY_OPT_IN`` is set
    as the docs ask, although util-genai 1.3b0 always emits the latest experimental conventions.
    """
    with harness.environment({"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}):
        from opentelemetry.util.genai.handler import TelemetryHandler

        with harness.environment({CAPTURE_ENV: "SPAN_ONLY"}):
            with_content = TelemetryHandler(tracer_provider=tracer_provider, meter_provider=meter_provider)
        with harness.environment({CAPTURE_ENV: "NO_CONTENT"}):
            without_content = TelemetryHandler(tracer_provider=tracer_provider, meter_provider=meter_provider)
    assert with_content.should_capture_content() and not without_content.should_capture_content()
    return with_content, without_content


def util_genai_call(handler: Any):
    from opentelemetry.util.genai.types import InputMessage, OutputMessage, Text

    def call() -> None:
        invocation = handler.inference(PROVIDER, request_model=MODEL)
        invocation.temperature = 0.2
        invocation.max_tokens = 256
        invocation.input_messages = [InputMessage(role="user", parts=[Text(content=PROMPT)])]
        invocation.input_tokens = INPUT_TOKENS
        invocation.output_tokens = OUTPUT_TOKENS
        invocation.output_messages = [OutputMessage(role="assistant", parts=[Text(content=ANSWER)],
                                                    finish_reason="stop")]
        invocation.finish_reasons = ["stop"]
        invocation.stop()

    return call


# --- the bench ---------------------------------------------------------------------------------------


def build() -> harness.Bench:
    tracer_provider, meter_provider = providers()
    bench = harness.Bench("bench_recorder", baseline="raw_otel", unit="call")

    bench.add("raw_otel", raw_otel_variant(tracer_provider, meter_provider),
              description="OTel SDK span + 3 histogram records, no content")

    with_content = dataclasses.replace(config.Settings(), capture=CaptureMode.SPAN_ONLY, source="bench")
    no_content = dataclasses.replace(config.Settings(), capture=CaptureMode.NO_CONTENT, source="bench")
    own_meter_provider = llmobs_meter_provider()
    for name, settings, meters, what in (
        ("llmobs", with_content, meter_provider, "recorder, content SPAN_ONLY (default)"),
        ("llmobs_no_content", no_content, meter_provider, "recorder, content NO_CONTENT"),
        ("llmobs_own_metrics", with_content, own_meter_provider,
         "recorder, content SPAN_ONLY, on a meter provider llmobs installs (metrics aggregated by llmobs)"),
    ):
        scope = SettingsScope(settings)
        bench.add(name, llmobs_call(Recorder(tracer_provider, meters)),
                  setup=scope.enter, teardown=scope.exit, description=what)

    genai_content, genai_plain = util_genai_handlers(tracer_provider, meter_provider)
    bench.add("util_genai", util_genai_call(genai_content), description="TelemetryHandler.inference, SPAN_ONLY")
    bench.add("util_genai_no_content", util_genai_call(genai_plain),
              description="TelemetryHandler.inference, NO_CONTENT")

    bench.compare("llmobs / util_genai (content on)", "llmobs", "util_genai")
    bench.compare("llmobs_no_content / util_genai_no_content", "llmobs_no_content", "util_genai_no_content")
    bench.compare("added over raw_otel, llmobs / util_genai (content on)", "llmobs", "util_genai",
                  bare="raw_otel")
    bench.compare("llmobs_own_metrics / llmobs (metrics aggregated by llmobs vs the SDK)", "llmobs_own_metrics",
                  "llmobs")
    bench.notes.append("goal: llmobs <= 2.00 x raw_otel")
    return bench


def check_spans() -> None:
    """Before timing, on a recording provider: content variants put both message attributes on their
    span, no-content variants neither."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    genai_content, genai_plain = util_genai_handlers(tracer_provider, meter_provider)
    for capture, expect in ((CaptureMode.SPAN_ONLY, True), (CaptureMode.NO_CONTENT, False)):
        scope = SettingsScope(dataclasses.replace(config.Settings(), capture=capture))
        scope.enter()
        try:
            llmobs_call(Recorder(tracer_provider, meter_provider))()
        finally:
            scope.exit()
        util_genai_call(genai_content if expect else genai_plain)()
        spans = memory.get_finished_spans()
        memory.clear()
        if len(spans) != 2 or any(
            (key in s.attributes) is not expect for s in spans for key in (sc.INPUT_MESSAGES, sc.OUTPUT_MESSAGES)
        ):
            raise RuntimeError(f"capture {capture.name}: unexpected spans {[dict(s.attributes) for s in spans]}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = harness.parser(__doc__.split("\n\n")[0], DEFAULTS).parse_args(argv)
    rounds, batch = harness.resolve(args)
    check_spans()
    bench = build()
    report = bench.run(rounds, batch, progress=not args.quick and sys.stderr.isatty())
    return harness.publish(report, args.json)


if __name__ == "__main__":
    main()
