"""The recorder: span trees, GenAI attributes, TTFT, usage and cost, errors, metrics, lazy content."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
import weakref

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from llmobs import content, plugins, selfstats
from llmobs import semconv as sc
from llmobs.content import CaptureMode
from llmobs.recorder import ROOT, Recorder


def metric_points(reader, name):
    """All data points of metric ``name`` collected so far, as (attributes, point) pairs."""
    data = reader.get_metrics_data()
    out = []
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    out += [(dict(p.attributes), p) for p in m.data.data_points]
    return out


class Rig:
    """A recorder over its own providers, so each test sees only its own spans and metrics."""

    def __init__(self, sampler=None, sdk_spans=False):
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.recorder = Recorder(provider, MeterProvider(metric_readers=[self.reader]), sdk_spans=sdk_spans)

    def spans(self):
        return {s.name: s for s in self.exporter.get_finished_spans()}

    def points(self, name):
        return metric_points(self.reader, name)


@pytest.fixture
def rig(settings):
    settings()
    return Rig()


def test_span_names_kinds_and_sampling_relevant_attributes_at_start(rig):
    agent = rig.recorder.start(sc.OP_INVOKE_AGENT, "planner", framework="demo", parent=ROOT)
    llm = rig.recorder.start(sc.OP_CHAT, provider="openai", model="gpt-4o-mini", parent=agent)
    tool = rig.recorder.start(sc.OP_EXECUTE_TOOL, "search", parent=agent)
    chain = rig.recorder.start(sc.OP_CHAIN, "RunnableSequence", parent=agent)
    for h in (chain, tool, llm, agent):
        h.end()
    spans = rig.spans()
    assert set(spans) == {"invoke_agent planner", "chat gpt-4o-mini", "execute_tool search", "RunnableSequence"}
    chat = spans["chat gpt-4o-mini"]
    assert chat.kind is SpanKind.CLIENT
    assert spans["execute_tool search"].kind is SpanKind.INTERNAL
    assert chat.attributes[sc.OPERATION_NAME] == "chat"
    assert chat.attributes[sc.SPAN_KIND] == "LLM"
    assert chat.attributes[sc.PROVIDER_NAME] == "openai"
    assert chat.attributes[sc.REQUEST_MODEL] == "gpt-4o-mini"
    assert chat.attributes[sc.FRAMEWORK] == "demo"  # inherited from the parent handle
    assert spans["invoke_agent planner"].attributes[sc.SPAN_KIND] == "AGENT"
    assert spans["RunnableSequence"].attributes[sc.SPAN_KIND] == "CHAIN"
    root_id = spans["invoke_agent planner"].context.span_id
    for name in ("chat gpt-4o-mini", "execute_tool search", "RunnableSequence"):
        assert spans[name].parent.span_id == root_id
        assert spans[name].context.trace_id == spans["invoke_agent planner"].context.trace_id


def test_parents_by_traceparent_context_and_ambient_span(rig):
    remote = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    by_header = rig.recorder.start(sc.OP_CHAIN, "from-header", parent=remote)
    by_header.end()
    outer_tracer = TracerProvider().get_tracer("app")
    with outer_tracer.start_as_current_span("GET /chat") as request_span:
        ambient = rig.recorder.start(sc.OP_CHAIN, "ambient")
        ambient.end()
        explicit_root = rig.recorder.start(sc.OP_CHAIN, "fresh", parent=ROOT)
        explicit_root.end()
    by_context = rig.recorder.start(sc.OP_CHAIN, "by-context", parent=by_header.context)
    by_context.end()
    spans = rig.spans()
    assert format(spans["from-header"].context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert spans["from-header"].parent.span_id == 0xB7AD6B7169203331
    assert spans["ambient"].parent.span_id == request_span.get_span_context().span_id
    assert spans["fresh"].parent is None
    assert spans["by-context"].parent.span_id == spans["from-header"].context.span_id
    assert by_header.traceparent.startswith("00-0af7651916cd43dd8448eb211c80319c-")


def test_parents_by_span_context_span_and_header_mapping_and_the_kind_override(rig):
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

    remote = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))  # fmt: skip
    rig.recorder.start(sc.OP_CHAIN, "by-span-context", parent=remote).end()
    rig.recorder.start(sc.OP_CHAIN, "by-span", parent=NonRecordingSpan(remote)).end()
    headers = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "k=v"}
    rig.recorder.start(sc.OP_CHAT, "by-headers", model="m", parent=headers, remote=False).end()
    rig.recorder.start(sc.OP_EXECUTE_TOOL, "remote-tool", remote=True).end()
    spans = rig.spans()
    for name in ("by-span-context", "by-span"):
        assert spans[name].context.trace_id == remote.trace_id and spans[name].parent.span_id == remote.span_id
    chat = spans["chat m"]
    assert format(chat.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert chat.parent.span_id == 0x00F067AA0BA902B7 and chat.context.trace_state.get("k") == "v"
    assert chat.kind is SpanKind.INTERNAL  # remote=False: e.g. a model running in this process
    assert spans["execute_tool remote-tool"].kind is SpanKind.CLIENT
    before = selfstats.snapshot().get("recorder.start_failed", 0)
    bad = rig.recorder.start(sc.OP_CHAIN, "bad", parent=42)  # never raises into the application: counted
    bad.end()
    assert not bad.is_recording and "bad" not in rig.spans()
    assert selfstats.snapshot()["recorder.start_failed"] == before + 1


def test_a_parent_given_by_header_that_is_the_active_span_passes_on_its_ids(rig):
    """A framework task that carries its caller's traceparent as a string (LlamaIndex workflows do) still gets
    the session and user of that caller's span when it is the one active; another trace's header does not."""
    outer = rig.recorder.start(sc.OP_CHAIN, "answer", session_id="S1", user_id="U1")
    token = otel_context.attach(outer.context)  # as llmobs.span does
    try:
        child = rig.recorder.start(sc.OP_CHAIN, "step", parent=outer.traceparent)
        child.end()
        other = rig.recorder.start(sc.OP_CHAIN, "foreign", parent="00-" + "1" * 32 + "-" + "2" * 16 + "-01")
        other.end()
    finally:
        otel_context.detach(token)
    outer.end()
    spans = rig.spans()
    assert (spans["step"].attributes[sc.SESSION_ID], spans["step"].attributes[sc.USER_ID]) == ("S1", "U1")
    assert spans["step"].parent.span_id == spans["answer"].context.span_id
    assert sc.SESSION_ID not in spans["foreign"].attributes


def test_session_and_user_ids_reach_every_span_of_the_trace(rig):
    root = rig.recorder.start(sc.OP_INVOKE_WORKFLOW, "flow", session_id="s-1", user_id="u-9", parent=ROOT)
    child = rig.recorder.start(sc.OP_CHAIN, "step", parent=root)
    grandchild = rig.recorder.start(sc.OP_CHAT, model="qwen-plus", provider="dashscope", parent=child)
    for h in (grandchild, child, root):
        h.end()
    for span in rig.exporter.get_finished_spans():
        assert span.attributes[sc.SESSION_ID] == "s-1"
        assert span.attributes[sc.CONVERSATION_ID] == "s-1"
        assert span.attributes[sc.USER_ID] == "u-9"


def test_streaming_ttft_time_per_chunk_and_entry_ttft(rig):
    t0 = 1_700_000_000_000_000_000
    root = rig.recorder.start(sc.OP_CHAIN, "app", parent=ROOT, start_time_ns=t0)
    llm = rig.recorder.start(sc.OP_CHAT, model="gpt-4o", provider="openai", parent=root, start_time_ns=t0 + 10**8)
    llm.set_request(stream=True, temperature=0.1)
    for ms in (350, 400, 470):  # first chunk 250 ms after the LLM start, then 50 ms and 70 ms gaps
        llm.chunk(at_ns=t0 + ms * 10**6)
    llm.end(end_time_ns=t0 + 500 * 10**6)
    root.end(end_time_ns=t0 + 600 * 10**6)
    spans = rig.spans()
    chat = spans["chat gpt-4o"]
    assert chat.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] == pytest.approx(0.25)
    assert chat.attributes[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS] == 250_000_000
    assert chat.attributes[sc.REQUEST_STREAM] is True
    assert chat.start_time == t0 + 10**8 and chat.end_time == t0 + 500 * 10**6
    assert spans["app"].attributes[sc.USER_TIME_TO_FIRST_TOKEN_NS] == 350_000_000
    ((attrs, ttft),) = rig.points(sc.METRIC_CLIENT_TIME_TO_FIRST_CHUNK)
    assert ttft.count == 1 and ttft.sum == pytest.approx(0.25)
    ((_, per_chunk),) = rig.points(sc.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK)
    assert per_chunk.count == 2 and per_chunk.sum == pytest.approx(0.12)
    assert attrs[sc.REQUEST_MODEL] == "gpt-4o"


def test_chunk_intervals_are_one_series_with_the_calls_final_attributes(rig):
    """Intervals are kept on the handle and recorded at end, under the attributes of the call's duration."""
    t0 = 1_700_000_000_000_000_000
    llm = rig.recorder.start(sc.OP_CHAT, model="gpt-4o", provider="openai", start_time_ns=t0)
    for ms in range(100, 1100, 100):  # ten chunks: nine intervals of 100 ms
        llm.chunk(at_ns=t0 + ms * 10**6)
    assert rig.points(sc.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK) == []  # nothing recorded per chunk
    llm.set_output(response_model="gpt-4o-2024-08-06")
    llm.end(end_time_ns=t0 + 1200 * 10**6)
    ((attrs, per_chunk),) = rig.points(sc.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK)
    assert per_chunk.count == 9 and per_chunk.sum == pytest.approx(0.9)
    ((duration_attrs, _),) = rig.points(sc.METRIC_CLIENT_OPERATION_DURATION)
    assert attrs == duration_attrs and attrs[sc.RESPONSE_MODEL] == "gpt-4o-2024-08-06"


def test_a_root_handle_is_freed_without_the_cycle_collector(rig):
    """No reference cycle through the root: a framework dropping its handles frees them (and their spans) at once."""
    gc.collect()
    gc.disable()
    try:
        root = rig.recorder.start(sc.OP_CHAIN, "app")
        child = rig.recorder.start(sc.OP_CHAT, model="m", parent=root)
        child.chunk()
        child.end()
        root.end()
        spans = weakref.ref(root.span), weakref.ref(child.span)
        del root, child
        assert [ref() for ref in spans] == [None, None]
    finally:
        gc.enable()


def test_no_ttft_without_streaming(rig):
    llm = rig.recorder.start(sc.OP_CHAT, model="gpt-4o", provider="openai")
    llm.set_usage(10, 5)
    llm.end()
    chat = rig.spans()["chat gpt-4o"]
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK not in chat.attributes
    assert sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS not in chat.attributes
    assert rig.points(sc.METRIC_CLIENT_TIME_TO_FIRST_CHUNK) == []


def test_monotonic_ttft_is_positive_and_within_the_span(rig):
    llm = rig.recorder.start(sc.OP_CHAT, model="m", provider="openai")
    llm.chunk()
    llm.chunk()
    llm.end()
    span = rig.spans()["chat m"]
    ttft = span.attributes[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS]
    assert 0 < ttft <= span.end_time - span.start_time


def test_a_chunk_timed_as_it_arrived_and_marked_later_keeps_its_time(rig):
    """``chunk(perf_ns=...)`` and ``clock_ns(perf_ns)``: an earlier ``perf_counter_ns()`` reading on the span's
    clock, on a handle timed by the monotonic clock and on one given its start time."""
    for given_start in (False, True):
        start_time_ns = time.time_ns() if given_start else None
        llm = rig.recorder.start(sc.OP_CHAT, model=f"late-{given_start}", start_time_ns=start_time_ns)
        arrived = time.perf_counter_ns()
        time.sleep(0.2)
        llm.chunk(perf_ns=arrived)
        llm.chunk(perf_ns=arrived + 50_000_000)
        marked_late = llm.clock_ns()
        llm.end()
        ttft = rig.spans()[f"chat late-{given_start}"].attributes[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS]
        assert ttft < 0.1e9 and marked_late - llm.start_ns >= 0.2e9, "the chunk's time is its arrival's"
        assert llm.clock_ns(arrived) - llm.start_ns < 0.1e9
    gaps = rig.points(sc.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK)
    (gap,) = [p for a, p in gaps if a.get(sc.REQUEST_MODEL) == "late-False"]
    assert gap.count == 1 and abs(gap.sum - 0.05) < 1e-6, "the gap between the two arrivals"


def test_usage_total_cost_and_token_metrics(rig):
    llm = rig.recorder.start(sc.OP_CHAT, model="gpt-4o-mini-2024-07-18", provider="openai")
    llm.set_usage(1000, 500, cache_read=200, reasoning=100)
    llm.set_output(finish_reasons=["stop"], response_id="r-1", response_model="gpt-4o-mini-2024-07-18")
    llm.end()
    a = rig.spans()["chat gpt-4o-mini-2024-07-18"].attributes
    assert a[sc.USAGE_INPUT_TOKENS] == 1000 and a[sc.USAGE_OUTPUT_TOKENS] == 500
    assert a[sc.USAGE_TOTAL_TOKENS] == 1500
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 200 and a[sc.USAGE_REASONING_OUTPUT_TOKENS] == 100
    # gpt-4o-mini: 0.15 $/M input, 0.075 $/M cached input, 0.60 $/M output
    expected = (800 * 0.15 + 200 * 0.075 + 500 * 0.60) / 1e6
    assert a[sc.COST_USD] == pytest.approx(expected)
    assert list(a[sc.RESPONSE_FINISH_REASONS]) == ["stop"] and a[sc.RESPONSE_ID] == "r-1"
    tokens = {attrs[sc.TOKEN_TYPE]: p.sum for attrs, p in rig.points(sc.METRIC_CLIENT_TOKEN_USAGE)}
    assert tokens == {"input": 1000, "output": 500}
    ((_, cost),) = rig.points(sc.METRIC_COST)
    assert cost.value == pytest.approx(expected)


@pytest.mark.parametrize(
    ("provider", "model", "usage", "expected"),
    [
        # Anthropic list prices: 3 $/M input, 0.30 cache read, 3.75 cache write, 15 output.
        ("anthropic", "claude-3-5-sonnet-20241022", dict(input_tokens=1000, output_tokens=100, cache_read=600,
         cache_write=200), (200 * 3.0 + 600 * 0.30 + 200 * 3.75 + 100 * 15.0) / 1e6),
        # DashScope (Qwen, international): 0.40 $/M input, 1.20 output.
        ("dashscope", "qwen-plus", dict(input_tokens=2000, output_tokens=500), (2000 * 0.40 + 500 * 1.20) / 1e6),
        # DeepSeek: 0.27 $/M input (cache miss), 0.07 cache hit, 1.10 output.
        ("deepseek", "deepseek-chat", dict(input_tokens=1000, output_tokens=100, cache_read=640),
         (360 * 0.27 + 640 * 0.07 + 100 * 1.10) / 1e6),
    ],
    ids=["anthropic-cache-write", "qwen", "deepseek-cache-hit"],
)  # fmt: skip
def test_list_prices_of_anthropic_qwen_and_deepseek(rig, provider, model, usage, expected):
    llm = rig.recorder.start(sc.OP_CHAT, model=model, provider=provider)
    llm.set_usage(**usage)
    llm.end()
    assert rig.spans()[f"chat {model}"].attributes[sc.COST_USD] == pytest.approx(expected)


def test_record_call_records_the_same_metrics_as_a_handle_without_a_span(rig):
    """A call traced elsewhere (a framework's own span) gets the handle's series, prices and attributes."""
    llm = rig.recorder.start(sc.OP_CHAT, model="gpt-4o-mini", provider="openai")
    llm.set_usage(1000, 500, cache_read=200)
    llm.first_token(at_ns=llm.start_ns + 250_000_000)
    llm.end(end_time_ns=llm.start_ns + 1_000_000_000)
    usage = rig.recorder.record_call(
        sc.OP_CHAT, duration_s=1.0, provider="openai", model="gpt-4o-mini",
        usage=(1000, 500, 200, None, None, None), ttft_s=0.25,
    )  # fmt: skip
    assert len(rig.exporter.get_finished_spans()) == 1  # record_call made no span
    span_attributes = rig.spans()["chat gpt-4o-mini"].attributes
    for key in (sc.USAGE_INPUT_TOKENS, sc.USAGE_OUTPUT_TOKENS, sc.USAGE_TOTAL_TOKENS, sc.COST_USD):
        assert usage[key] == span_attributes[key]
    ((attrs, duration),) = rig.points(sc.METRIC_CLIENT_OPERATION_DURATION)
    assert duration.count == 2 and duration.sum == pytest.approx(2.0)
    assert attrs == {sc.OPERATION_NAME: sc.OP_CHAT, sc.PROVIDER_NAME: "openai", sc.REQUEST_MODEL: "gpt-4o-mini"}
    ((_, ttfc),) = rig.points(sc.METRIC_CLIENT_TIME_TO_FIRST_CHUNK)
    assert ttfc.count == 2 and ttfc.sum == pytest.approx(0.5)
    tokens = {attrs[sc.TOKEN_TYPE]: p.sum for attrs, p in rig.points(sc.METRIC_CLIENT_TOKEN_USAGE)}
    assert tokens == {"input": 2000, "output": 1000}
    ((_, cost),) = rig.points(sc.METRIC_COST)
    assert cost.value == pytest.approx(2 * usage[sc.COST_USD])


def test_metrics_false_span_records_no_client_metrics(rig):
    """A server-side span (an inference server's own request) must not count as a client call."""
    handle = rig.recorder.start(sc.OP_CHAT, model="tiny", provider="vllm", metrics=False)
    handle.set_usage(5, 6)
    handle.chunk()
    handle.chunk()
    handle.end()
    assert rig.spans()["chat tiny"].attributes[sc.USAGE_OUTPUT_TOKENS] == 6  # the span is complete
    data = rig.reader.get_metrics_data()
    names = [m.name for rm in (data.resource_metrics if data else ()) for sm in rm.scope_metrics for m in sm.metrics]
    assert [n for n in names if rig.points(n)] == []


def test_record_call_with_an_error_and_bad_input_never_raises(rig):
    rig.recorder.record_call(sc.OP_CHAT, duration_s=0.5, provider="openai", model="m", error_type="TimeoutError")
    ((attrs, _),) = rig.points(sc.METRIC_CLIENT_OPERATION_DURATION)
    assert attrs[sc.ERROR_TYPE] == "TimeoutError"
    before = selfstats.snapshot().get("recorder.record_call_failed", 0)
    assert rig.recorder.record_call(sc.OP_CHAT, duration_s="soon", usage=("many",)) == {}  # type: ignore[arg-type]
    assert selfstats.snapshot().get("recorder.record_call_failed", 0) == before + 1


def test_unknown_model_has_no_cost_but_configured_price_wins(rig, settings):
    llm = rig.recorder.start(sc.OP_CHAT, model="my-finetune", provider="vllm")
    llm.set_usage(100, 100)
    llm.end()
    assert sc.COST_USD not in rig.spans()["chat my-finetune"].attributes
    from llmobs.pricing import ModelPrice

    settings(prices={"my-finetune": ModelPrice(1.0, 2.0)})
    llm = rig.recorder.start(sc.OP_CHAT, model="my-finetune", provider="vllm")
    llm.set_usage(1_000_000, 1_000_000)
    llm.end()
    costs = [s.attributes.get(sc.COST_USD) for s in rig.exporter.get_finished_spans()]
    assert costs == [None, pytest.approx(3.0)]


def test_error_status_type_exception_event_and_metric_attribute(rig):
    class RateLimitError(Exception):
        pass

    llm = rig.recorder.start(sc.OP_CHAT, model="gpt-4o", provider="openai")
    llm.end(RateLimitError("429"))
    span = rig.spans()["chat gpt-4o"]
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE].endswith("RateLimitError")
    assert [e.name for e in span.events] == ["exception"]
    ((attrs, point),) = rig.points(sc.METRIC_CLIENT_OPERATION_DURATION)
    assert attrs[sc.ERROR_TYPE].endswith("RateLimitError") and point.count == 1


@pytest.mark.parametrize("sdk_spans", [False, True], ids=["lean", "sdk"])
def test_an_exception_whose_str_raises_keeps_the_error_usage_content_and_metrics(settings, sdk_spans):
    settings()

    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("cannot format")

    rig = Rig(sdk_spans=sdk_spans)
    llm = rig.recorder.start(sc.OP_CHAT, model="gpt-4o", provider="openai")
    llm.set_input(value="hello")
    llm.set_usage(10, 5)
    llm.end(Unprintable())
    span = rig.spans()["chat gpt-4o"]
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE].endswith("Unprintable")
    (event,) = span.events
    assert event.name == "exception" and event.attributes[sc.EXCEPTION_TYPE].endswith("Unprintable")
    assert "Unprintable" in event.attributes[sc.EXCEPTION_STACKTRACE]
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 10 and span.attributes[sc.INPUT_VALUE] == "hello"
    ((attrs, _),) = rig.points(sc.METRIC_CLIENT_OPERATION_DURATION)
    assert attrs[sc.ERROR_TYPE].endswith("Unprintable")
    assert "recorder.end_failed" not in selfstats.snapshot()


def test_cancelled_is_not_an_error_and_end_is_once_only(rig):
    h = rig.recorder.start(sc.OP_CHAIN, "stream")
    h.end(cancelled=True, reason="generator closed")
    h.end(ValueError("late"))  # ignored
    (span,) = rig.exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes[sc.STATUS_REASON] == "generator closed"


@pytest.mark.parametrize("interrupt", [asyncio.CancelledError(), KeyboardInterrupt(), GeneratorExit()])
def test_end_given_an_interrupt_ends_the_span_as_cancelled_not_failed(rig, interrupt):
    h = rig.recorder.start(sc.OP_CHAT, model="gpt-4o", provider="openai")
    h.end(interrupt)
    (span,) = rig.exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET and not span.events
    assert span.attributes[sc.STATUS_REASON] == "cancelled" and sc.ERROR_TYPE not in span.attributes
    ((attrs, _),) = rig.points(sc.METRIC_CLIENT_OPERATION_DURATION)
    assert sc.ERROR_TYPE not in attrs


def test_end_given_an_interrupt_keeps_the_reason_the_caller_gives(rig):
    h = rig.recorder.start(sc.OP_CHAIN, "stream")
    h.end(asyncio.CancelledError(), reason="client gone")
    (span,) = rig.exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET and span.attributes[sc.STATUS_REASON] == "client gone"


def test_metrics_cover_every_call_even_when_spans_are_not_sampled(settings):
    settings()
    rig = Rig(sampler=ALWAYS_OFF)
    for _ in range(25):
        h = rig.recorder.start(sc.OP_CHAT, model="gpt-4o", provider="openai")
        h.set_usage(10, 20)
        h.end()
    assert rig.exporter.get_finished_spans() == ()
    ((_, duration),) = rig.points(sc.METRIC_CLIENT_OPERATION_DURATION)
    assert duration.count == 25
    tokens = {attrs[sc.TOKEN_TYPE]: p.sum for attrs, p in rig.points(sc.METRIC_CLIENT_TOKEN_USAGE)}
    assert tokens == {"input": 250, "output": 500}


class Watched:
    """Counts how often llmobs looks at it, to prove content is serialised lazily."""

    looks = 0

    def __repr__(self):
        Watched.looks += 1
        return "watched"


def test_content_is_not_serialised_for_unsampled_spans(settings):
    settings()
    rig = Rig(sampler=ALWAYS_OFF)
    Watched.looks = 0
    h = rig.recorder.start(sc.OP_CHAIN, "c")
    h.set_input(value=Watched())
    h.set_output(value=Watched())
    h.end()
    assert Watched.looks == 0


def test_messages_parsed_from_small_json_render_without_a_walk(rig, monkeypatch):
    """``json_size`` on set_input/set_output: messages and system instructions built from parsed JSON go through
    ``render_parsed_messages`` when that JSON was small, tools and anything larger through ``render``; the
    recorded text is the same either way."""
    used: list[str] = []
    original = content.ContentPolicy.render_parsed_messages

    def spy(self, value):
        used.append(json.dumps(value)[:20])
        return original(self, value)

    monkeypatch.setattr(content.ContentPolicy, "render_parsed_messages", spy)
    messages = [content.message("user", [content.text_part("hello")])]
    system = [content.text_part("be brief")]
    tools = [content.tool_definition("f", parameters={"type": "object"})]
    out = [content.output_message([content.text_part("hi")], "stop")]
    recorded = []
    for size in (None, 100, 4 * 8192 + 1):
        h = rig.recorder.start(sc.OP_CHAT, model="m", provider="openai")
        h.set_input(messages, system=system, tools=tools, json_size=size)
        h.set_output(out, json_size=size)
        h.end()
        recorded.append({k: v for k, v in rig.exporter.get_finished_spans()[-1].attributes.items() if "messages" in k
                         or k in (sc.SYSTEM_INSTRUCTIONS, sc.TOOL_DEFINITIONS)})  # fmt: skip
    assert recorded[0] == recorded[1] == recorded[2] and len(recorded[0]) == 4
    assert len(used) == 3  # messages, system and output of the small one; never tools, nor the large one


def test_content_capture_modes(settings):
    messages = [content.message("user", [content.text_part("hello, my key is sk-abcdefghijklmnopqrstuvwx12")])]
    out = [content.output_message([content.text_part("hi")], "stop")]
    seen = {}
    for mode in CaptureMode:
        settings(capture=mode)
        rig = Rig()
        h = rig.recorder.start(sc.OP_CHAT, model="m", provider="openai")
        h.set_input(messages, system=[content.text_part("be brief")])
        h.set_output(out)
        h.end()
        (span,) = rig.exporter.get_finished_spans()
        seen[mode] = span
    assert sc.INPUT_MESSAGES not in seen[CaptureMode.NO_CONTENT].attributes
    assert not seen[CaptureMode.NO_CONTENT].events
    on_span = seen[CaptureMode.SPAN_ONLY].attributes
    parsed = json.loads(on_span[sc.INPUT_MESSAGES])
    assert parsed[0]["role"] == "user" and "[REDACTED]" in parsed[0]["parts"][0]["content"]
    assert "sk-abcdefghijklmnopqrstuvwx12" not in on_span[sc.INPUT_MESSAGES]
    assert json.loads(on_span[sc.OUTPUT_MESSAGES])[0]["finish_reason"] == "stop"
    assert json.loads(on_span[sc.SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "be brief"}]
    event_only = seen[CaptureMode.EVENT_ONLY]
    assert sc.INPUT_MESSAGES not in event_only.attributes
    (event,) = event_only.events
    assert event.name == sc.EVENT_INFERENCE_DETAILS and sc.INPUT_MESSAGES in event.attributes
    both = seen[CaptureMode.SPAN_AND_EVENT]
    assert sc.INPUT_MESSAGES in both.attributes and both.events[0].name == sc.EVENT_INFERENCE_DETAILS


def test_content_is_capped_to_the_configured_size(settings):
    settings(max_attribute_bytes=256)
    rig = Rig()
    h = rig.recorder.start(sc.OP_CHAT, model="m", provider="openai")
    h.set_input([content.message("user", [content.text_part("x" * 100_000)])])
    h.end()
    (span,) = rig.exporter.get_finished_spans()
    text = span.attributes[sc.INPUT_MESSAGES]
    assert len(text.encode()) <= 256
    assert json.loads(text)[0]["role"] == "user"


def test_tool_and_retrieval_content_use_their_genai_attributes(rig):
    tool = rig.recorder.start(sc.OP_EXECUTE_TOOL, "weather")
    tool.set_request(tool_name="weather", tool_call_id="c1")
    tool.set_input(value={"city": "Hangzhou"})
    tool.set_output(value={"temp": 21})
    tool.end()
    retrieval = rig.recorder.start(sc.OP_RETRIEVAL, "kb")
    retrieval.set_input(value="refund policy")
    retrieval.set_output(value=[{"id": "d1", "score": 0.9}])
    retrieval.end()
    spans = rig.spans()
    t = spans["execute_tool weather"].attributes
    assert json.loads(t[sc.TOOL_CALL_ARGUMENTS]) == {"city": "Hangzhou"}
    assert json.loads(t[sc.TOOL_CALL_RESULT]) == {"temp": 21}
    assert t[sc.TOOL_NAME] == "weather" and t[sc.TOOL_CALL_ID] == "c1"
    r = spans["retrieval kb"].attributes
    assert r[sc.RETRIEVAL_QUERY_TEXT] == "refund policy"
    assert json.loads(r[sc.RETRIEVAL_DOCUMENTS]) == [{"id": "d1", "score": 0.9}]


def test_handles_cross_threads_and_never_attach_context(rig):
    root = rig.recorder.start(sc.OP_CHAIN, "root", parent=ROOT)
    handles = {}

    def start(i):
        handles[i] = rig.recorder.start(sc.OP_CHAT, model=f"m{i}", provider="openai", parent=root)

    def finish(i):
        handles[i].chunk()
        handles[i].end()

    for target in (start, finish):
        threads = [threading.Thread(target=target, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    root.end()
    assert trace.get_current_span() is trace.INVALID_SPAN
    spans = rig.exporter.get_finished_spans()
    assert len(spans) == 21
    root_id = rig.spans()["root"].context.span_id
    assert all(s.parent.span_id == root_id for s in spans if s.name != "root")


def test_concurrent_asyncio_traces_do_not_cross_talk_or_leak_context(rig):
    async def one(i):
        root = rig.recorder.start(sc.OP_CHAIN, f"req-{i}", parent=ROOT, session_id=f"s{i}")
        await asyncio.sleep(0)
        child = rig.recorder.start(sc.OP_CHAT, model=f"model-{i}", provider="openai", parent=root)
        await asyncio.sleep(0.001 * (i % 3))
        child.chunk()
        child.end()
        root.end()
        return otel_context.get_current()

    async def main():
        return await asyncio.gather(*(one(i) for i in range(50)))

    before = otel_context.get_current()
    contexts = asyncio.run(main())
    assert otel_context.get_current() == before
    assert all(trace.get_current_span(c) is trace.INVALID_SPAN for c in contexts)
    spans = rig.spans()
    for i in range(50):
        root, child = spans[f"req-{i}"], spans[f"chat model-{i}"]
        assert child.parent.span_id == root.context.span_id
        assert child.attributes[sc.SESSION_ID] == f"s{i}"


def test_span_end_plugin_enriches_and_a_raising_plugin_is_contained(rig):
    class Enricher:
        @plugins.hookimpl
        def llmobs_span_end(self, handle):
            handle.set_attribute("app.tenant", "acme")

    class Broken:
        @plugins.hookimpl
        def llmobs_span_end(self, handle):
            raise RuntimeError("plugin bug")

    enricher, broken = Enricher(), Broken()
    plugins.register(enricher)
    try:
        h = rig.recorder.start(sc.OP_CHAIN, "c")
        h.end()
        plugins.register(broken)
        h2 = rig.recorder.start(sc.OP_CHAIN, "d")
        h2.end()
    finally:
        plugins.unregister(enricher)
        plugins.unregister(broken)
    spans = rig.spans()
    assert spans["c"].attributes["app.tenant"] == "acme"
    assert "d" in spans  # the span still ended despite the broken plugin
    assert selfstats.snapshot().get("plugin.hook_failed:llmobs_span_end") == 1


def test_bad_input_never_raises_into_the_application(rig):
    h = rig.recorder.start(sc.OP_CHAT, model="m", provider="openai", parent=12345)  # unsupported parent
    h.set_request(temperature=object(), nonsense=1)
    h.set_usage("many", None)
    h.chunk(at_ns=-5)
    h.end(end_time_ns=0)
    assert selfstats.snapshot().get("recorder.start_failed") == 1
    assert selfstats.snapshot().get("recorder.unknown_request_parameter") == 1


def test_names_and_values_from_frameworks_reach_the_sdk_as_bounded_text(rig):
    """A model, provider, session or finish reason that is a huge sequence (range(10**12) here) must never
    be handed to the SDK, whose attribute cleaning would walk every element."""
    handle = rig.recorder.start(sc.OP_CHAT, model=range(10**12), provider=[["x" * 100_000] * 100], session_id=range(7))
    handle.set_request(model=range(10**12), temperature=range(10**12))
    handle.set_output(finish_reasons=range(10**12), response_model=range(10**12), response_id=range(10**12))
    handle.add_event("custom", {"attempt": range(10**12)})
    handle.end()
    (span,) = rig.exporter.get_finished_spans()
    a = span.attributes
    assert a[sc.REQUEST_MODEL] == "range(0, 1000000000000)" and len(a[sc.PROVIDER_NAME]) < 50_000
    assert list(a[sc.RESPONSE_FINISH_REASONS]) == ["range(0, 1000000000000)"]
    assert span.events[0].attributes["attempt"] == "range(0, 1000000000000)"


@pytest.mark.parametrize("mode", [CaptureMode.SPAN_ONLY, CaptureMode.SPAN_AND_EVENT, CaptureMode.NO_CONTENT])
def test_a_snapshot_input_is_recorded_as_it_was_given(settings, mode):
    settings(capture=mode)
    rig = Rig()
    state = {"chat": {"history": ["system: be nice"]}}
    kept = rig.recorder.start(sc.OP_CHAIN, "kept", parent=ROOT)
    kept.set_input(value=state, snapshot=True)
    late = rig.recorder.start(sc.OP_CHAIN, "late", parent=ROOT)
    late.set_input(value=state)
    state["chat"]["history"].append("user: hi")  # the operation changes its input in place
    kept.end()
    late.end()
    spans = rig.spans()
    if not mode.on_span:
        assert sc.INPUT_VALUE not in spans["kept"].attributes
        return
    assert json.loads(spans["kept"].attributes[sc.INPUT_VALUE]) == {"chat": {"history": ["system: be nice"]}}
    assert json.loads(spans["late"].attributes[sc.INPUT_VALUE])["chat"]["history"][-1] == "user: hi"  # by reference
    if mode.on_event:
        (event,) = spans["kept"].events
        assert json.loads(event.attributes[sc.INPUT_VALUE]) == {"chat": {"history": ["system: be nice"]}}
