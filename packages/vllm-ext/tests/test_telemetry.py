"""Engine stats → metrics and spans, on duck-typed stats objects (no vLLM needed)."""

from __future__ import annotations

import logging
import time
import types

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind, StatusCode

from llmobs import selfstats
from llmobs import semconv as sc
from llmobs_vllm import _telemetry
from llmobs_vllm._contexts import RequestContext
from llmobs_vllm._span_index import VllmSpanIndex

TS = 1_700_000_000.0


def test_scheduler_snapshot_feeds_gauges_per_engine(env, fake):
    telemetry = env.telemetry(engine_indexes=(0, 1))
    telemetry.record(fake.scheduler(running=3, waiting=1, skipped=2, kv=0.25, queries=10, hits=4), None, 1)
    telemetry.record(fake.scheduler(running=5, waiting=0, kv=0.5), None, 1)  # the latest snapshot wins
    m = env.metrics()
    running = fake.points(m, sc.METRIC_VLLM_REQUESTS_RUNNING)
    assert [(p.attributes[sc.VLLM_ENGINE_INDEX], p.value) for p in running] == [(1, 5)]  # engine 0 never reported
    assert fake.points(m, sc.METRIC_VLLM_REQUESTS_WAITING)[0].value == 0
    assert fake.points(m, sc.METRIC_VLLM_KV_CACHE_USAGE)[0].value == 0.5
    point = running[0]
    assert point.attributes[sc.PROVIDER_NAME] == "vllm"
    assert point.attributes[sc.REQUEST_MODEL] == point.attributes[sc.RESPONSE_MODEL] == "tiny"
    assert fake.points(m, sc.METRIC_VLLM_PREFIX_CACHE_QUERIES, **{sc.VLLM_ENGINE_INDEX: 1})[0].value == 10
    assert fake.points(m, sc.METRIC_VLLM_PREFIX_CACHE_HITS, **{sc.VLLM_ENGINE_INDEX: 1})[0].value == 4


def test_waiting_counts_deferred_requests_too(env, fake):
    telemetry = env.telemetry()
    telemetry.record(fake.scheduler(waiting=2, skipped=3), None, 0)
    assert fake.points(env.metrics(), sc.METRIC_VLLM_REQUESTS_WAITING)[0].value == 5


def test_step_counters_accumulate(env, fake):
    telemetry = env.telemetry()
    spec = types.SimpleNamespace(num_spec_tokens=3, num_drafts=2, num_draft_tokens=6, num_accepted_tokens=4)
    for _ in range(3):
        telemetry.record(fake.scheduler(spec=spec), fake.iteration(prompt=7, generated=4, preempted=1), 0)
    m = env.metrics()
    assert fake.points(m, sc.METRIC_VLLM_TOKENS, **{sc.TOKEN_TYPE: "input"})[0].value == 21
    assert fake.points(m, sc.METRIC_VLLM_TOKENS, **{sc.TOKEN_TYPE: "output"})[0].value == 12
    assert fake.points(m, sc.METRIC_VLLM_PREEMPTIONS)[0].value == 3
    assert fake.points(m, sc.METRIC_VLLM_SPEC_DECODE_DRAFTS)[0].value == 6
    assert fake.points(m, sc.METRIC_VLLM_SPEC_DECODE_DRAFT_TOKENS)[0].value == 18
    assert fake.points(m, sc.METRIC_VLLM_SPEC_DECODE_ACCEPTED_TOKENS)[0].value == 12


def test_record_makes_no_measurement_and_no_span_until_flush(env, fake):
    telemetry = env.telemetry()
    telemetry.record(None, fake.iteration(ttfts=[0.1], itls=[0.02] * 4, done=[fake.finished()]), 0)
    m = env.metrics()
    assert sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN not in m and sc.METRIC_SERVER_REQUEST_DURATION not in m
    assert env.finished_spans() == []
    assert telemetry.flush() == 1
    m = env.metrics()
    assert fake.points(m, sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN)[0].count == 1
    assert fake.points(m, sc.METRIC_VLLM_INTER_TOKEN_LATENCY)[0].count == 4
    assert len(env.finished_spans()) == 1


def test_finished_request_metrics(env, fake):
    telemetry = env.telemetry()
    done = [fake.finished(request_id="cmpl-a-0", e2e=0.5, prompt=5, generated=6, cached=2, decode=0.4),
            fake.finished(request_id="cmpl-b-0", e2e=1.5, prompt=9, generated=6, cached=0, decode=1.0)]
    telemetry.record(None, fake.iteration(done=done, timestamp=TS), 0)
    telemetry.flush()
    m = env.metrics()
    duration = fake.points(m, sc.METRIC_SERVER_REQUEST_DURATION)[0]
    assert (duration.count, duration.sum) == (2, pytest.approx(2.0))
    assert list(duration.explicit_bounds) == list(sc.BUCKETS_DURATION)
    tpot = fake.points(m, sc.METRIC_SERVER_TIME_PER_OUTPUT_TOKEN)[0]
    assert tpot.count == 2 and tpot.sum == pytest.approx(0.4 / 5 + 1.0 / 5)
    assert list(tpot.explicit_bounds) == list(sc.BUCKETS_SERVER_TPOT)
    tokens_in = fake.points(m, sc.METRIC_VLLM_REQUEST_TOKENS, **{sc.TOKEN_TYPE: "input"})[0]
    tokens_out = fake.points(m, sc.METRIC_VLLM_REQUEST_TOKENS, **{sc.TOKEN_TYPE: "output"})[0]
    assert (tokens_in.count, tokens_in.sum, tokens_out.sum) == (2, 14, 12)
    assert fake.points(m, sc.METRIC_VLLM_REQUEST_CACHED_TOKENS)[0].sum == 2
    for name in (sc.METRIC_VLLM_REQUEST_QUEUE_DURATION, sc.METRIC_VLLM_REQUEST_PREFILL_DURATION,
                 sc.METRIC_VLLM_REQUEST_DECODE_DURATION, sc.METRIC_VLLM_REQUEST_INFERENCE_DURATION):
        assert fake.points(m, name)[0].count == 2, name
    assert fake.points(m, sc.METRIC_VLLM_REQUEST_DECODE_DURATION)[0].sum == pytest.approx(1.4)
    finished = fake.points(m, sc.METRIC_VLLM_REQUESTS_FINISHED, **{sc.VLLM_FINISH_REASON: "length"})
    assert finished[0].value == 2 and sc.ERROR_TYPE not in finished[0].attributes


def test_errors_carry_error_type_and_aborts_do_not(env, fake):
    telemetry = env.telemetry()
    done = [fake.finished(reason=fake.FinishReason.ERROR), fake.finished(reason=fake.FinishReason.ABORT),
            fake.finished(reason=fake.FinishReason.STOP)]
    telemetry.record(None, fake.iteration(done=done), 0)
    telemetry.flush()
    m = env.metrics()
    errors = fake.points(m, sc.METRIC_SERVER_REQUEST_DURATION, **{sc.ERROR_TYPE: "error"})
    assert [p.count for p in errors] == [1]
    assert sum(p.count for p in m[sc.METRIC_SERVER_REQUEST_DURATION]) == 3
    by_reason = {p.attributes[sc.VLLM_FINISH_REASON]: p for p in m[sc.METRIC_VLLM_REQUESTS_FINISHED]}
    assert set(by_reason) == {"error", "abort", "stop"}
    assert by_reason["error"].attributes[sc.ERROR_TYPE] == "error"
    assert sc.ERROR_TYPE not in by_reason["abort"].attributes
    # TPOT is for successful requests only
    assert fake.points(m, sc.METRIC_SERVER_TIME_PER_OUTPUT_TOKEN)[0].count == 1


def test_phases_that_never_began_are_not_recorded(env, fake):
    telemetry = env.telemetry()
    # Aborted while waiting: vLLM reports scheduled_ts - queued_ts with scheduled_ts == 0 (negative).
    aborted = fake.finished(reason=fake.FinishReason.ABORT, generated=0, queued=-5.0, prefill=-3.0, decode=0.0)
    telemetry.record(None, fake.iteration(done=[aborted]), 0)
    telemetry.flush()
    m = env.metrics()
    for name in (sc.METRIC_VLLM_REQUEST_QUEUE_DURATION, sc.METRIC_VLLM_REQUEST_PREFILL_DURATION,
                 sc.METRIC_VLLM_REQUEST_DECODE_DURATION, sc.METRIC_VLLM_REQUEST_INFERENCE_DURATION,
                 sc.METRIC_SERVER_TIME_PER_OUTPUT_TOKEN):
        assert name not in m, name
    assert fake.points(m, sc.METRIC_SERVER_REQUEST_DURATION)[0].count == 1


def test_operation_comes_from_the_middleware_context(env, fake):
    env.contexts.put("abc", RequestContext(None, None, sc.OP_CHAT))
    telemetry = env.telemetry()
    telemetry.record(None, fake.iteration(done=[fake.finished(request_id="chatcmpl-abc")]), 0)
    telemetry.record(None, fake.iteration(done=[fake.finished(request_id="cmpl-unknown-0")]), 0)
    telemetry.flush()
    m = env.metrics()
    ops = sorted(str(p.attributes.get(sc.OPERATION_NAME)) for p in m[sc.METRIC_SERVER_REQUEST_DURATION])
    assert ops == ["None", "chat"]  # unknown operation: the attribute is left out, not guessed


def test_inter_token_latencies_are_sampled_one_in_n_across_steps(env, fake):
    telemetry = env.telemetry(itl_sample_every=16)
    for _ in range(4):
        telemetry.record(None, fake.iteration(itls=[0.02] * 256), 0)
    for n in (10, 10, 10, 2):  # 32 tokens in uneven steps: positions 0 and 16 of the stream
        telemetry.record(None, fake.iteration(itls=[0.05] * n), 0)
    telemetry.flush()
    points = env.metrics()[sc.METRIC_VLLM_INTER_TOKEN_LATENCY]
    assert points[0].count == 4 * 16 + 2
    assert points[0].sum == pytest.approx(64 * 0.02 + 2 * 0.05)


def test_itl_sampling_defaults_from_the_environment(env, monkeypatch):
    monkeypatch.setenv(_telemetry.ENV_ITL_SAMPLE, "4")
    assert env.telemetry(itl_sample_every=None).itl_sample_every == 4
    monkeypatch.setenv(_telemetry.ENV_ITL_SAMPLE, "nonsense")
    assert env.telemetry(itl_sample_every=None).itl_sample_every == _telemetry.DEFAULT_ITL_SAMPLE


def test_own_span_per_finished_request(env, fake):
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    env.contexts.put("abc", RequestContext(traceparent, None, sc.OP_CHAT))
    telemetry = env.telemetry()
    stats = fake.finished(request_id="chatcmpl-abc", e2e=0.5, prompt=5, generated=6, cached=2, decode=0.4,
                          preemptions=1)
    telemetry.record(None, fake.iteration(done=[stats], timestamp=TS), 2)
    telemetry.flush()
    (span,) = env.finished_spans()
    attrs = span.attributes
    assert span.name == "chat tiny" and span.kind is SpanKind.INTERNAL
    assert format(span.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert span.end_time == int(TS * 1e9) and span.end_time - span.start_time == int(0.5 * 1e9)
    assert attrs[sc.REQUEST_ID] == "chatcmpl-abc"
    assert attrs[sc.OPERATION_NAME] == "chat" and attrs[sc.SPAN_KIND] == "LLM"
    assert attrs[sc.PROVIDER_NAME] == "vllm" and attrs[sc.FRAMEWORK] == "vllm"
    assert attrs[sc.REQUEST_MODEL] == attrs[sc.RESPONSE_MODEL] == "tiny"
    assert attrs[sc.VLLM_ENGINE_INDEX] == 2
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (5, 6)
    assert attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 2
    assert tuple(attrs[sc.RESPONSE_FINISH_REASONS]) == ("length",)
    assert attrs[sc.REQUEST_MAX_TOKENS] == 6
    assert attrs[sc.VLLM_QUEUE_TIME] == pytest.approx(0.01)
    assert attrs[sc.VLLM_DECODE_TIME] == pytest.approx(0.4)
    assert attrs[sc.VLLM_TIME_PER_OUTPUT_TOKEN] == pytest.approx(0.08)
    assert attrs[sc.VLLM_PREEMPTIONS] == 1
    assert attrs[sc.RESPONSE_TIME_TO_FIRST_CHUNK] == pytest.approx(0.1)  # e2e - decode
    assert span.status.status_code is StatusCode.UNSET
    # the server's own request span is not a client call: no gen_ai.client.* series from it
    client_series = [name for name in env.metrics() if name.startswith("gen_ai.client.")]
    assert client_series == [], client_series
    assert fake.points(env.metrics(), sc.METRIC_SERVER_REQUEST_DURATION)  # the server series are there


def test_span_without_middleware_is_a_root_text_completion(env, fake):
    telemetry = env.telemetry()
    telemetry.record(None, fake.iteration(done=[fake.finished(request_id="cmpl-x-0")]), 0)
    telemetry.flush()
    (span,) = env.finished_spans()
    assert span.parent is None and span.name == "text_completion tiny"
    assert sc.OPERATION_NAME in span.attributes


def test_error_and_abort_spans(env, fake):
    telemetry = env.telemetry()
    done = [fake.finished(request_id="a", reason=fake.FinishReason.ERROR),
            fake.finished(request_id="b", reason=fake.FinishReason.ABORT, generated=0)]
    telemetry.record(None, fake.iteration(done=done), 0)
    telemetry.flush()
    spans = {s.attributes[sc.REQUEST_ID]: s for s in env.finished_spans()}
    assert spans["a"].status.status_code is StatusCode.ERROR and spans["a"].attributes[sc.ERROR_TYPE] == "error"
    assert spans["b"].status.status_code is StatusCode.UNSET
    assert spans["b"].attributes[sc.STATUS_REASON] == "abort"
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK not in spans["b"].attributes  # no token, no TTFT


def test_enrich_mode_parents_a_zero_length_span_on_vllms_llm_request(env, fake):
    index = VllmSpanIndex()
    env.tracer_provider.add_span_processor(index)
    vllm_span = env.tracer_provider.get_tracer("vllm.tracing.otel").start_span(sc.VLLM_REQUEST_SPAN)
    vllm_span.set_attributes({sc.REQUEST_ID: "chatcmpl-abc"})  # as vLLM does: attributes after start
    vllm_span.end()
    telemetry = env.telemetry(spans="enrich", span_index=index)
    telemetry.record(None, fake.iteration(done=[fake.finished(request_id="chatcmpl-abc")], timestamp=TS), 0)
    telemetry.flush()
    ours = [s for s in env.finished_spans() if s.name != sc.VLLM_REQUEST_SPAN]
    assert len(ours) == 1
    (span,) = ours
    assert span.parent.span_id == vllm_span.get_span_context().span_id
    assert span.start_time == span.end_time == int(TS * 1e9)
    assert tuple(span.attributes[sc.RESPONSE_FINISH_REASONS]) == ("length",)
    assert span.attributes[sc.REQUEST_ID] == "chatcmpl-abc"


def test_enrich_mode_with_parallel_sampling_gives_each_sequence_its_own_llm_request(env, fake):
    """n > 1: every sequence ends an ``llm_request`` span under the request's id, right after its stats are
    noted; each enrichment span goes under its own sequence's span, in order, none left behind."""
    index = VllmSpanIndex()
    env.tracer_provider.add_span_processor(index)
    tracer = env.tracer_provider.get_tracer("vllm.tracing.otel")
    vllm_spans = []
    for _ in range(3):
        vllm_span = tracer.start_span(sc.VLLM_REQUEST_SPAN)
        vllm_span.set_attributes({sc.REQUEST_ID: "chatcmpl-n3"})
        vllm_span.end()
        vllm_spans.append(vllm_span)
    telemetry = env.telemetry(spans="enrich", span_index=index)
    done = [fake.finished(request_id="chatcmpl-n3", generated=g) for g in (4, 5, 6)]
    telemetry.record(None, fake.iteration(done=done, timestamp=TS), 0)
    telemetry.flush()
    ours = sorted((s for s in env.finished_spans() if s.name != sc.VLLM_REQUEST_SPAN),
                  key=lambda s: s.attributes[sc.USAGE_OUTPUT_TOKENS])
    assert [s.parent.span_id for s in ours] == [v.get_span_context().span_id for v in vllm_spans]
    assert len(index) == 0  # every span taken: nothing kept for a request that is over


def test_spans_off(env, fake):
    telemetry = env.telemetry(spans="off")
    telemetry.record(None, fake.iteration(done=[fake.finished()]), 0)
    telemetry.flush()
    assert env.finished_spans() == []
    assert fake.points(env.metrics(), sc.METRIC_SERVER_REQUEST_DURATION)[0].count == 1


def test_admission_rejections(env):
    telemetry = env.telemetry()
    for reason in ("max_num_queued_reqs", "max_num_queued_reqs", "max_num_queued_tokens"):
        telemetry.record_rejection(reason)
    points = {p.attributes[sc.VLLM_REJECTION_REASON]: p.value for p in env.metrics()[sc.METRIC_VLLM_REQUESTS_REJECTED]}
    assert points == {"max_num_queued_reqs": 2, "max_num_queued_tokens": 1}


def test_rejection_reasons_past_the_label_limit_are_counted_as_other(env):
    telemetry = env.telemetry()
    for i in range(20):
        telemetry.record_rejection(f"reason-{i}")
    telemetry.record_rejection("reason-0")
    points = {p.attributes[sc.VLLM_REJECTION_REASON]: p.value for p in env.metrics()[sc.METRIC_VLLM_REQUESTS_REJECTED]}
    assert len(points) == 17 and points["other"] == 4 and points["reason-0"] == 2  # 16 reasons and other
    assert sum(points.values()) == 21  # every rejection counted


def test_flusher_thread_drains_by_itself_and_close_stops_it(env, fake):
    telemetry = env.telemetry(start_thread=True, flush_interval=0.05)
    telemetry.record(None, fake.iteration(done=[fake.finished()]), 0)
    deadline = time.monotonic() + 5
    while not env.finished_spans() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(env.finished_spans()) == 1
    thread = telemetry._thread
    telemetry.close()
    assert thread is not None and not thread.is_alive()


def test_queue_is_bounded_and_drops_are_counted(env, fake, monkeypatch):
    monkeypatch.setattr(_telemetry, "QUEUE_STEPS", 3)
    telemetry = env.telemetry()
    for _ in range(5):
        telemetry.record(None, fake.iteration(ttfts=[0.1]), 0)
    assert telemetry.flush() == 3
    assert selfstats.snapshot()["vllm.steps_dropped"] == 2


def test_missing_fields_of_older_vllm_are_reported_once(env, fake, caplog):
    old = fake.finished()
    del old.request_id, old.num_cached_tokens, old.num_preemptions  # as in vLLM 0.11-0.18
    telemetry = env.telemetry()
    with caplog.at_level(logging.WARNING, logger="llmobs.vllm"):
        telemetry.record(object(), object(), 0)  # no stats object at all: not reported as a version gap
        for _ in range(3):
            telemetry.record(None, fake.iteration(done=[old]), 0)
        telemetry.flush()
    lines = [r.getMessage() for r in caplog.records if "FinishedRequestStats" in r.getMessage()]
    assert len(lines) == 1 and "request_id, num_cached_tokens, num_preemptions" in lines[0]
    assert not [r for r in caplog.records if "SchedulerStats" in r.getMessage() or "IterationStats has" in
                r.getMessage()]
    m = env.metrics()
    assert fake.points(m, sc.METRIC_SERVER_REQUEST_DURATION)[0].count == 3  # the rest still works
    assert sc.METRIC_VLLM_REQUEST_CACHED_TOKENS not in m
    assert len(env.finished_spans()) == 3 and sc.REQUEST_ID not in env.finished_spans()[0].attributes


@pytest.mark.parametrize("gone", ["num_prompt_tokens", "iteration_timestamp", "num_preempted_reqs"])
def test_a_field_this_vllm_lacks_leaves_out_only_what_is_built_from_it(env, fake, gone):
    """One missing field must not cost the step: its TTFT, finished requests and spans are still recorded."""
    telemetry = env.telemetry()
    scheduler = fake.scheduler(running=2)
    del scheduler.kv_cache_usage
    step = fake.iteration(ttfts=[0.05], done=[fake.finished()], generated=6)
    delattr(step, gone)
    telemetry.record(scheduler, step, 0)
    telemetry.flush()
    assert not selfstats.snapshot(), selfstats.snapshot()
    m = env.metrics()
    assert fake.points(m, sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN)[0].count == 1
    assert fake.points(m, sc.METRIC_SERVER_REQUEST_DURATION)[0].count == 1
    assert fake.points(m, sc.METRIC_VLLM_REQUESTS_RUNNING)[0].value == 2
    assert len(env.finished_spans()) == 1


GARBAGE = [
    (object(), object()),
    ("scheduler", "iteration"),
    (types.SimpleNamespace(num_running_reqs="3", num_waiting_reqs=None, kv_cache_usage=[]), None),
    (None, types.SimpleNamespace(num_prompt_tokens=1, num_generation_tokens=1, time_to_first_tokens_iter=5,
                                 inter_token_latencies_iter=None, finished_requests=[object(), None, 3])),
    (None, types.SimpleNamespace(num_prompt_tokens=1, num_generation_tokens=1, iteration_timestamp="x",
                                 time_to_first_tokens_iter=["a", None, -1.0, float("nan")],
                                 inter_token_latencies_iter=[float("inf"), "b"], finished_requests="abc")),
]


@pytest.mark.parametrize(("sched", "it"), GARBAGE)
def test_garbage_never_raises_and_is_counted(env, fake, sched, it):
    telemetry = env.telemetry()
    telemetry.record(sched, it, 0)
    telemetry.record(sched, it, "engine")  # a non-int engine index too
    telemetry.flush()
    # and the telemetry still works afterwards
    telemetry.record(fake.scheduler(running=7), fake.iteration(done=[fake.finished()]), 0)
    telemetry.flush()
    assert fake.points(env.metrics(), sc.METRIC_VLLM_REQUESTS_RUNNING)[0].value == 7
    counts = selfstats.snapshot()
    assert counts.get("vllm.record_failed", 0) + counts.get("vllm.flush_failed", 0) \
        + counts.get("vllm.finished_request_failed", 0) >= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(st.none(), st.integers(), st.text(), st.builds(types.SimpleNamespace, num_running_reqs=st.integers(),
                                                             num_waiting_reqs=st.integers(),
                                                             kv_cache_usage=st.floats(allow_nan=True))),
    st.one_of(st.none(), st.floats(), st.lists(st.integers()),
              st.builds(types.SimpleNamespace, num_prompt_tokens=st.integers(), num_generation_tokens=st.integers(),
                        iteration_timestamp=st.floats(), time_to_first_tokens_iter=st.lists(st.floats()),
                        inter_token_latencies_iter=st.lists(st.floats()),
                        finished_requests=st.lists(st.one_of(st.none(), st.integers())))),
    st.one_of(st.integers(-3, 3), st.none(), st.text(max_size=3)),
)
def test_fuzzed_stats_never_raise(env, sched, it, engine_idx):
    telemetry = env.telemetry()
    telemetry.record(sched, it, engine_idx)
    telemetry.flush()


def test_finish_reasons_are_read_by_name_not_by_position():
    import enum

    finish_reason = _telemetry.finish_reason

    class Reordered(enum.IntEnum):  # a vLLM whose enum lists its reasons in another order
        LENGTH = 0
        ABORT = 1
        STOP = 2

    assert [finish_reason(r) for r in Reordered] == ["length", "abort", "stop"]
    assert (finish_reason(1), finish_reason("stop"), finish_reason(None), finish_reason(99)) == (
        "length", "stop", "unknown", "unknown")


_EXIT_CHILD = """
import json, sys, types
from llmobs_vllm._telemetry import EngineTelemetry  # imported first, as when the logger class is passed in code
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

class ToFile(SpanExporter):
    def __init__(self):
        self.open = True
    def export(self, spans):
        with open(sys.argv[1], "a") as out:
            for span in spans:
                out.write(json.dumps({"name": span.name, "open": self.open}) + "\\n")
        return SpanExportResult.SUCCESS
    def shutdown(self):
        self.open = False

# Made after the import, like vLLM's own tracer provider (``--otlp-traces-endpoint``): its exit shutdown
# (``shutdown_on_exit``) is registered later, so with atexit alone it would run before our exit flush.
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(ToFile()))
trace.set_tracer_provider(provider)
metrics.set_meter_provider(MeterProvider())
telemetry = EngineTelemetry("tiny", flush_interval=3600)
done = types.SimpleNamespace(
    finish_reason=1, request_id="cmpl-exit-0", e2e_latency=0.5, num_prompt_tokens=5, num_preemptions=0,
    num_generation_tokens=6, max_tokens_param=6, queued_time=0.01, prefill_time=0.04, inference_time=0.44,
    decode_time=0.4, mean_time_per_output_token=0.08, is_corrupted=False, num_cached_tokens=0)
step = types.SimpleNamespace(
    iteration_timestamp=1_700_000_000.0, num_generation_tokens=6, num_prompt_tokens=5, num_preempted_reqs=0,
    finished_requests=[done], time_to_first_tokens_iter=[0.1], inter_token_latencies_iter=[])
telemetry.record(None, step, 0)
# no flush, no close: the interpreter exits with the step still queued
"""


def test_a_step_still_queued_at_exit_reaches_a_provider_made_after_import(tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "spans.jsonl"
    env = {**os.environ, "LLMOBS_AUTO_CONFIGURE": "false"}
    done = subprocess.run([sys.executable, "-c", _EXIT_CHILD, str(out)], capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    exported = [__import__("json").loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    assert [(s["name"], s["open"]) for s in exported] == [("text_completion tiny", True)], done.stderr[-3000:]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "abc"])
def test_junk_numbers_in_the_environment_fall_back_to_the_defaults(env, monkeypatch, value):
    """A non-finite interval killed the flusher (Event.wait overflows) or made it spin; a non-finite sample
    rate made the telemetry fail to start, switching the logger off."""
    monkeypatch.setenv(_telemetry.ENV_ITL_SAMPLE, value)
    monkeypatch.setenv(_telemetry.ENV_FLUSH_INTERVAL, value)
    telemetry = env.telemetry(itl_sample_every=None)
    assert telemetry.itl_sample_every == _telemetry.DEFAULT_ITL_SAMPLE
    assert telemetry.flush_interval == _telemetry.DEFAULT_FLUSH_INTERVAL


def test_huge_numbers_in_the_environment_are_capped(env, fake, monkeypatch):
    monkeypatch.setenv(_telemetry.ENV_FLUSH_INTERVAL, "1e12")
    telemetry = env.telemetry(start_thread=True)
    assert telemetry.flush_interval == 86_400.0
    telemetry.record(None, fake.iteration(ttfts=[0.1], done=[fake.finished()]), 0)
    thread = telemetry._thread
    assert thread is not None and thread.is_alive()  # waiting on the capped interval, not dead of an overflow
    telemetry.close()  # wakes it: a last flush, then it stops
    thread.join(5)
    assert not thread.is_alive() and len(env.finished_spans()) == 1


def test_a_request_keeps_its_trace_when_a_later_request_reuses_its_id_before_the_flush(env, fake):
    first = "00-11111111111111111111111111111111-1111111111111111-01"
    later = "00-22222222222222222222222222222222-2222222222222222-01"
    env.contexts.put("same-id", RequestContext(first, None, sc.OP_CHAT))
    telemetry = env.telemetry()
    telemetry.record(None, fake.iteration(done=[fake.finished(request_id="chatcmpl-same-id")], timestamp=TS), 0)
    env.contexts.put("same-id", RequestContext(later, None, sc.OP_TEXT_COMPLETION))  # a retry with the same id
    telemetry.flush()
    (span,) = env.finished_spans()
    assert format(span.context.trace_id, "032x") == "1" * 32
    assert span.attributes[sc.OPERATION_NAME] == sc.OP_CHAT


def test_two_front_ends_on_one_meter_provider_are_both_reported_until_closed(env, fake):
    """Another model served in the same process: its gauges and counters are reported too, and a closed
    front end's stop being reported (the SDK keeps an instrument's first callbacks only)."""
    a, b = env.telemetry(model="model-a"), env.telemetry(model="model-b")
    a.record(fake.scheduler(running=2), fake.iteration(generated=10), 0)
    b.record(fake.scheduler(running=7), fake.iteration(generated=4), 0)
    m = env.metrics()
    running = {p.attributes[sc.REQUEST_MODEL]: p.value for p in fake.points(m, sc.METRIC_VLLM_REQUESTS_RUNNING)}
    assert running == {"model-a": 2, "model-b": 7}
    output = {p.attributes[sc.REQUEST_MODEL]: p.value
              for p in fake.points(m, sc.METRIC_VLLM_TOKENS, **{sc.TOKEN_TYPE: "output"})}  # fmt: skip
    assert output == {"model-a": 10, "model-b": 4}
    a.close()
    b.record(fake.scheduler(running=1), None, 0)
    running = {p.attributes[sc.REQUEST_MODEL]: p.value
               for p in fake.points(env.metrics(), sc.METRIC_VLLM_REQUESTS_RUNNING)}  # fmt: skip
    assert running == {"model-b": 1}
