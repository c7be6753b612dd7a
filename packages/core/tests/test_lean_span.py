"""Lean spans (``llmobs.lean_span``) reach span processors exactly as the SDK's own spans would.

Every scenario runs twice on identically configured providers with deterministic ids: once as the
recorder normally runs on an SDK tracer (lean spans), once with ``sdk_spans=True`` (the SDK's ``Span``).
The finished spans must be equal field for field: names, kinds, ids, parents, flags, trace state,
attributes (with dropped counts), events, links, status, times, resource and scope.
"""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanContext, StatusCode, TraceFlags, TraceState

from llmobs import semconv as sc
from llmobs.content import CaptureMode, message, output_message, text_part
from llmobs.lean_span import LeanSpan, lean_tracer
from llmobs.recorder import ROOT, Recorder

T0 = 1_700_000_000_000_000_000


class CountingIds(RandomIdGenerator):
    """Ids in sequence, so both runs of a scenario get the same ones (still declared random)."""

    def __init__(self) -> None:
        self.n = 0

    def generate_span_id(self) -> int:
        self.n += 1
        return self.n

    def generate_trace_id(self) -> int:
        self.n += 1
        return (0xABC << 64) + self.n * 0x9E3779B97F4A7C15 % (1 << 64)


class TaggingSampler(Sampler):
    """Samples every other trace, adds an attribute and a trace-state entry (a sampler may do both)."""

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                      trace_state=None) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        state = (parent.trace_state if parent.is_valid else TraceState()).add("llmobs", "t")
        decision = Decision.RECORD_AND_SAMPLE if trace_id % 2 else Decision.RECORD_ONLY
        return SamplingResult(decision, {**(attributes or {}), "sampler.tag": "seen"}, state)

    def get_description(self) -> str:
        return "TaggingSampler"


class MarkOnStart(SpanProcessor):
    """A processor that writes to spans as they start, as the sampling processor does for forced traces."""

    def on_start(self, span, parent_context=None) -> None:
        span.set_attribute("mark.on_start", span.name)
        span.set_attribute("mark.invalid", {"a dict": "is no attribute value"})


def run(scenario, sdk_spans: bool, *, sampler=None, limits=None, on_start=False, random_ids=True) -> list:
    exporter = InMemorySpanExporter()
    ids = CountingIds() if random_ids else _PlainCountingIds()
    provider = TracerProvider(
        sampler=sampler, span_limits=limits, id_generator=ids,
        resource=Resource.create({"service.name": "lean-test"}),
    )  # fmt: skip
    if on_start:
        provider.add_span_processor(MarkOnStart())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorder = Recorder(provider, sdk_spans=sdk_spans)
    scenario(recorder)
    return exporter.get_finished_spans()


class _PlainCountingIds(CountingIds):
    def is_trace_id_random(self) -> bool:
        return False


def snapshot(span) -> tuple:
    ctx = span.context
    parent = span.parent
    return (
        span.name, span.kind, ctx.trace_id, ctx.span_id, int(ctx.trace_flags), ctx.trace_state.to_header(),
        None if parent is None else (parent.trace_id, parent.span_id, parent.is_remote, int(parent.trace_flags)),
        dict(span.attributes), span.dropped_attributes,
        [(e.name, dict(e.attributes), e.timestamp is not None) for e in span.events], span.dropped_events,
        [(link.context.span_id, dict(link.attributes)) for link in span.links], span.dropped_links,
        span.status.status_code, span.status.description, span.start_time, span.end_time,
        dict(span.resource.attributes), span.instrumentation_scope,
    )  # fmt: skip


def agent_run(recorder: Recorder) -> None:
    agent = recorder.start(sc.OP_INVOKE_AGENT, "planner", parent=ROOT, framework="demo", session_id="s-1",
                           user_id="u-1", start_time_ns=T0, attributes={"app.tags": ["a", "b"], "app.n": 3})
    chat = recorder.start(sc.OP_CHAT, provider="openai", model="gpt-4o-mini", parent=agent, start_time_ns=T0 + 10)
    chat.set_request(temperature=0.2, max_tokens=256, stop_sequences=["\n\n"], model="gpt-4o")
    chat.set_input([message("user", [text_part("Where is my refund?")])], system=[text_part("Be brief.")])
    chat.first_token(at_ns=T0 + 50)
    chat.chunk(at_ns=T0 + 60)
    chat.set_usage(120, 30, cache_read=20)
    chat.set_output([output_message([text_part("Tomorrow.")], "stop")], finish_reasons=["stop"], response_id="r-1",
                    response_model="gpt-4o-2024-08-06")
    chat.add_event("gen_ai.custom", {"k": "v", "n": [1, 2]}, at_ns=T0 + 70)
    chat.span.add_link(SpanContext(0xABC, 0xDEF, is_remote=True), {"link.kind": "retry"})
    chat.end(end_time_ns=T0 + 100)
    tool = recorder.start(sc.OP_EXECUTE_TOOL, "lookup", parent=agent, start_time_ns=T0 + 110)
    tool.set_input(value={"order": 1234})
    try:
        raise LookupError("order 1234 not found")
    except LookupError as exc:
        tool.end(exc, end_time_ns=T0 + 120)
    retrieval = recorder.start(sc.OP_RETRIEVAL, "kb", parent=agent, start_time_ns=T0 + 130)
    retrieval.set_input(value="refund policy")
    retrieval.set_output(value=[{"id": "d1", "score": 0.9, "content": "Refunds take 5 days."}])
    retrieval.span.set_attribute("user.flag", True)
    retrieval.span.set_status(StatusCode.OK)
    retrieval.end("timeout", end_time_ns=T0 + 140)  # an error after OK: OK is final in both
    agent.end(end_time_ns=T0 + 200)
    for flags in ("01", "00"):
        remote = recorder.start(sc.OP_CHAT, provider="vllm", model="tiny", start_time_ns=T0 + 300,
                                parent=f"00-{'1' * 32}-{'2' * 16}-{flags}")
        remote.end(cancelled=True, reason="client went away", end_time_ns=T0 + 310)


def many_runs(recorder: Recorder) -> None:
    for i in range(12):
        handle = recorder.start(sc.OP_CHAT, provider="openai", model=f"m{i}", parent=ROOT, start_time_ns=T0 + i)
        handle.end(end_time_ns=T0 + i + 5)


@pytest.mark.parametrize("capture", [CaptureMode.SPAN_ONLY, CaptureMode.SPAN_AND_EVENT])
@pytest.mark.parametrize("options", [
    {},
    {"random_ids": False},
    {"on_start": True},
    {"sampler": TaggingSampler()},
    {"limits": SpanLimits(max_span_attributes=6, max_span_attribute_length=12, max_events=1,
                          max_event_attributes=2, max_links=0)},
], ids=["default", "ids-not-random", "processor-on-start", "tagging-sampler", "tight-limits"])
def test_lean_spans_equal_sdk_spans(settings, capture, options):
    settings(capture=capture)
    lean, sdk = run(agent_run, False, **options), run(agent_run, True, **options)
    assert len(lean) == len(sdk) >= 5
    for got, want in zip(lean, sdk, strict=True):
        assert snapshot(got) == snapshot(want), want.name


@pytest.mark.parametrize("sampler", [ParentBased(TraceIdRatioBased(0.5)), ALWAYS_OFF], ids=["ratio", "off"])
def test_sampling_decisions_are_the_samplers(settings, sampler):
    settings()
    lean, sdk = run(many_runs, False, sampler=sampler), run(many_runs, True, sampler=sampler)
    assert [snapshot(s) for s in lean] == [snapshot(s) for s in sdk]
    if sampler is ALWAYS_OFF:
        assert not lean


def parents_of_every_kind(recorder: Recorder) -> None:
    """Spans with no parent, local parents sampled or not, and remote parents sampled or not."""
    for root_flags in ("01", "00"):
        remote = recorder.start(sc.OP_INVOKE_AGENT, "agent", start_time_ns=T0,
                                parent=f"00-{'3' * 32}-{'4' * 16}-{root_flags}")  # fmt: skip
        child = recorder.start(sc.OP_CHAT, provider="openai", model="m", parent=remote, start_time_ns=T0 + 1)
        child.end(end_time_ns=T0 + 2)
        remote.end(end_time_ns=T0 + 3)
    root = recorder.start(sc.OP_INVOKE_WORKFLOW, "flow", parent=ROOT, start_time_ns=T0 + 4)
    recorder.start(sc.OP_CHAT, model="m", parent=root, start_time_ns=T0 + 5).end(end_time_ns=T0 + 6)
    root.end(end_time_ns=T0 + 7)


@pytest.mark.parametrize("sampler", [
    None,
    ALWAYS_ON,
    ALWAYS_OFF,
    ParentBased(ALWAYS_OFF),
    ParentBased(ALWAYS_ON, remote_parent_sampled=ALWAYS_OFF, remote_parent_not_sampled=ALWAYS_ON,
                local_parent_sampled=ALWAYS_OFF, local_parent_not_sampled=ALWAYS_ON),
], ids=["default", "on", "off", "parent-based-off", "parent-based-inverted"])
def test_fixed_samplers_are_decided_without_calling_them(settings, sampler):
    """The SDK's fixed samplers are decided from a table made once per tracer: the same spans as the SDK's."""
    settings()
    lean, sdk = run(parents_of_every_kind, False, sampler=sampler), run(parents_of_every_kind, True, sampler=sampler)
    assert [snapshot(s) for s in lean] == [snapshot(s) for s in sdk]
    tracer = Recorder(TracerProvider(sampler=sampler))._tracer
    assert lean_tracer(tracer)._decisions is not None


def test_the_recorder_uses_lean_spans_on_the_sdk_tracer_only(settings):
    settings()
    recorder = Recorder(TracerProvider())
    handle = recorder.start(sc.OP_CHAT, provider="openai", model="gpt-4o")
    assert type(handle.span) is LeanSpan
    handle.end()
    assert type(Recorder(TracerProvider(), sdk_spans=True).start(sc.OP_CHAT).span) is not LeanSpan
    settings(sdk_spans=True)  # the setting: every recorder, from its next span on
    assert type(recorder.start(sc.OP_CHAT).span).__name__ == "_Span"
    settings()

    class OwnTracer(type(TracerProvider().get_tracer("x"))):
        """A tracer of its own kind (a subclass may start spans its own way): not made lean."""

    class OwnTracerProvider(TracerProvider):
        def get_tracer(self, *args, **kwargs):
            tracer = super().get_tracer(*args, **kwargs)
            tracer.__class__ = OwnTracer
            return tracer

    assert type(Recorder(OwnTracerProvider()).start(sc.OP_CHAT).span).__name__ == "_Span"
    assert type(Recorder(trace.NoOpTracerProvider()).start(sc.OP_CHAT).span) is not LeanSpan


def test_an_ended_lean_span_takes_nothing_more(settings):
    settings()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    handle = Recorder(provider).start(sc.OP_CHAT, provider="openai", model="gpt-4o")
    span = handle.span
    handle.end()
    span.set_attribute("late", 1)
    span.add_event("late")
    span.add_link(SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(1)))
    span.update_name("renamed")
    span.set_status(StatusCode.ERROR, "late")
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert "late" not in finished.attributes and not finished.events and not finished.links
    assert finished.name == "chat gpt-4o" and finished.status.status_code is StatusCode.UNSET
    assert not span.is_recording()
    assert span.get_span_context() == finished.context


def test_a_proxy_tracer_gets_lean_spans_once_its_real_tracer_exists(settings):
    """The global tracer before the application sets its provider is a proxy: the SDK's spans (through the
    proxy) until the real tracer appears, lean spans from then on."""
    settings()
    provider = TracerProvider()
    proxy = trace.ProxyTracer("llmobs")

    class ProxyOnly(trace.TracerProvider):
        def get_tracer(self, *args, **kwargs):
            return proxy

    recorder = Recorder(ProxyOnly())
    assert type(recorder.start(sc.OP_CHAT).span) is not LeanSpan  # no provider yet: the proxy's no-op span
    proxy._real_tracer = provider.get_tracer("llmobs")  # what the proxy does once a global provider is set
    handle = recorder.start(sc.OP_CHAT, provider="openai", model="gpt-4o")
    assert type(handle.span) is LeanSpan
    handle.end()


def test_record_exception_takes_an_exception_whose_str_raises(settings):
    settings()

    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("cannot format")

    def scenario(recorder):
        handle = recorder.start(sc.OP_CHAT, provider="openai", model="gpt-4o")
        handle.span.record_exception(Unprintable())
        handle.end()

    ((event,),) = [span.events for span in run(scenario, False)]
    assert event.attributes[sc.EXCEPTION_TYPE].endswith("Unprintable") and event.attributes[sc.EXCEPTION_MESSAGE] == ""
