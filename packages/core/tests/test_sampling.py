"""Sampling: consistent head decisions, floors and caps, every promotion rule, buffer bounds, live reload."""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
import time

import pytest
from opentelemetry import baggage, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from llmobs import config, content, plugins, selfstats
from llmobs import semconv as sc
from llmobs.recorder import ROOT, Recorder
from llmobs.sampling import Buffer, Promote, Rule, SamplingPolicy, SamplingProcessor, keeps, parse

NEVER = Promote(error=False, latency_s=None, ttft_s=None, tokens=None, cost_usd=None, finish_reasons=(),
                empty_output=False)  # fmt: skip


class SeededIds(IdGenerator):
    """Reproducible trace ids, so statistical assertions are deterministic."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def generate_span_id(self) -> int:
        return self.rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self.rng.getrandbits(128) or 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    def __init__(self, policy: SamplingPolicy, seed: int = 7, clock: Clock | None = None, metrics=False):
        self.policy = policy
        self.exporter = InMemorySpanExporter()
        self.clock = clock or Clock()
        self.processor = SamplingProcessor(
            [SimpleSpanProcessor(self.exporter)], policy=lambda: self.policy, clock=self.clock
        )
        provider = TracerProvider(id_generator=SeededIds(seed))
        provider.add_span_processor(self.processor)
        self.reader = InMemoryMetricReader()
        self.recorder = Recorder(provider, MeterProvider(metric_readers=[self.reader]) if metrics else None)

    def agent_trace(self, name="agent", *, model="gpt-4o-mini", error=None, usage=(100, 20), parent=ROOT, **llm):
        root = self.recorder.start(sc.OP_INVOKE_AGENT, name, parent=parent)
        call = self.recorder.start(sc.OP_CHAT, provider="openai", model=model, parent=root)
        call.set_usage(*usage)
        if "finish" in llm:
            call.set_output(finish_reasons=[llm["finish"]])
        if llm.get(sc.PARTIAL):  # what export's shutdown marks on a span still open at exit
            call.set_attribute(sc.PARTIAL, True)
        call.end(error)
        root.end()
        return root

    def traces(self):
        out = {}
        for span in self.exporter.get_finished_spans():
            out.setdefault(span.context.trace_id, []).append(span)
        return out


def policy(**changes) -> SamplingPolicy:
    return dataclasses.replace(SamplingPolicy(ratio=0.0, floor=0, promote=NEVER), **changes)


def test_decisions_are_consistent_across_processes_and_probabilities():
    rng = random.Random(3)
    ids = [rng.getrandbits(128) for _ in range(2000)]
    here = [keeps(t, 0.1) for t in ids]
    code = (
        f"from llmobs.sampling import keeps; ids = {ids!r}; print(''.join('1' if keeps(t, 0.1) else '0' for t in ids))"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert there == "".join("1" if k else "0" for k in here)
    assert 150 < sum(here) < 250  # about 10%
    for t in ids:  # kept at p implies kept at any larger p
        assert not keeps(t, 0.05) or keeps(t, 0.2)
    assert all(keeps(t, 1.0) for t in ids) and not any(keeps(t, 0.0) for t in ids)


def test_ratio_keeps_whole_traces_with_their_adjusted_count():
    rig = Rig(policy(ratio=0.1))
    for _ in range(1000):
        rig.agent_trace()
    traces = rig.traces()
    assert 70 < len(traces) < 130
    for spans in traces.values():
        assert len(spans) == 2  # never half a trace
        assert {s.attributes[sc.SAMPLING_REASON] for s in spans} == {"ratio"}
        assert [s.attributes[sc.SAMPLING_ADJUSTED_COUNT] for s in spans] == [pytest.approx(10.0)] * 2
    stats = selfstats.snapshot()
    assert stats["sampling.kept_traces"] == len(traces)
    assert stats["sampling.dropped_traces"] == 1000 - len(traces)


def test_floors_keep_rare_keys_and_the_estimate_stays_unbiased():
    rig = Rig(policy(ratio=0.01, floor=5, floor_window_s=60))
    for _ in range(400):
        rig.agent_trace("busy")
    for _ in range(3):
        rig.agent_trace("rare")
    kept = rig.traces()
    by_name = {}
    for spans in kept.values():
        root = next(s for s in spans if s.parent is None)
        by_name.setdefault(root.name, []).append(root)
    assert len(by_name["invoke_agent rare"]) == 3  # a rare key is never sampled away
    busy = by_name["invoke_agent busy"]
    assert all(r.attributes[sc.SAMPLING_ADJUSTED_COUNT] == 1.0 for r in busy[:5])  # the first five: p = 1
    estimate = sum(r.attributes[sc.SAMPLING_ADJUSTED_COUNT] for r in busy)
    assert 250 < estimate < 600  # Horvitz-Thompson estimate of 400


def test_global_cap_limits_the_steady_rate():
    clock = Clock()
    rig = Rig(policy(ratio=1.0, max_traces_per_minute=20), clock=clock)
    kept_per_minute = []
    for _minute in range(3):
        before = len(rig.traces())
        for _ in range(600):
            clock.now += 0.1
            rig.agent_trace()
        kept_per_minute.append(len(rig.traces()) - before)
    assert kept_per_minute[2] <= 60  # steady state: about the cap, not the 600 offered
    root_weights = [
        s.attributes[sc.SAMPLING_ADJUSTED_COUNT] for s in rig.exporter.get_finished_spans() if s.parent is None
    ]
    assert any("cap" in s.attributes[sc.SAMPLING_REASON] for s in rig.exporter.get_finished_spans())
    assert 1200 < sum(root_weights) < 2400  # still an estimate of the 1800 traces


class RateLimitError(Exception):
    pass


@pytest.mark.parametrize(
    ("rule", "make", "reason"),
    [
        ({"error": True}, lambda rig: rig.agent_trace(error=RateLimitError("429")), "error"),
        ({"finish_reasons": ("length",)}, lambda rig: rig.agent_trace(finish="length"), "finish_reason"),
        (
            {"finish_reasons": ("content_filter",)},
            lambda rig: rig.agent_trace(finish="content_filter"),
            "finish_reason",
        ),
        ({"empty_output": True}, lambda rig: rig.agent_trace(usage=(50, 0)), "empty_output"),
        ({"tokens": 1000}, lambda rig: rig.agent_trace(usage=(900, 200)), "tokens"),
        ({"cost_usd": 0.001}, lambda rig: rig.agent_trace(model="gpt-4o", usage=(1000, 1000)), "cost"),
        ({"interrupted": True}, lambda rig: rig.agent_trace(**{sc.PARTIAL: True}), "interrupted"),
    ],
)
def test_outcome_promotions_keep_the_trace_with_weight_one(rule, make, reason):
    rig = Rig(policy(promote=dataclasses.replace(NEVER, **rule)))
    make(rig)
    (spans,) = rig.traces().values()
    assert {s.attributes[sc.SAMPLING_REASON] for s in spans} == {f"promoted:{reason}"}
    assert {s.attributes[sc.SAMPLING_ADJUSTED_COUNT] for s in spans} == {1.0}
    rig.agent_trace()  # the same trace without the outcome is not promoted (ratio 0)
    assert len(rig.traces()) == 1


def test_latency_and_ttft_promotions():
    rig = Rig(policy(promote=dataclasses.replace(NEVER, latency_s=10.0, ttft_s=2.0)))
    t0 = time.time_ns()
    slow = rig.recorder.start(sc.OP_CHAIN, "slow", parent=ROOT, start_time_ns=t0)
    slow.end(end_time_ns=t0 + 11 * 10**9)
    stream = rig.recorder.start(sc.OP_CHAT, model="m", provider="openai", parent=ROOT, start_time_ns=t0)
    stream.chunk(at_ns=t0 + 3 * 10**9)
    stream.end(end_time_ns=t0 + 4 * 10**9)
    fast = rig.recorder.start(sc.OP_CHAIN, "fast", parent=ROOT, start_time_ns=t0)
    fast.end(end_time_ns=t0 + 10**9)
    reasons = {s.name: s.attributes[sc.SAMPLING_REASON] for s in rig.exporter.get_finished_spans()}
    assert reasons == {"slow": "promoted:latency", "chat m": "promoted:ttft"}


def test_low_evaluation_score_forced_keeps_and_plugin_votes():
    rig = Rig(policy(promote=dataclasses.replace(NEVER, min_eval_score=0.5)))
    judged = rig.recorder.start(sc.OP_CHAT, model="m", provider="openai", parent=ROOT)
    judged.span.add_event(sc.EVENT_EVALUATION_RESULT, {sc.EVALUATION_NAME: "relevance", sc.EVALUATION_SCORE_VALUE: 0.2})
    judged.end()
    vip = rig.recorder.start(sc.OP_CHAIN, "vip", parent=ROOT)
    vip.keep("vip customer")
    vip.end()

    class Voter:
        @plugins.hookimpl
        def llmobs_sampling_vote(self, spans):
            return "long-trace" if any(s.name == "voted" for s in spans) else None

    voter = Voter()
    plugins.register(voter)
    try:
        voted = rig.recorder.start(sc.OP_CHAIN, "voted", parent=ROOT)
        voted.end()
    finally:
        plugins.unregister(voter)
    reasons = {s.name: s.attributes[sc.SAMPLING_REASON] for s in rig.exporter.get_finished_spans()}
    assert reasons == {
        "chat m": "promoted:low_score",
        "vip": "promoted:forced=vip customer",
        "voted": "promoted:plugin=long-trace",
    }


def test_a_request_can_force_its_trace_through_baggage():
    rig = Rig(policy())
    ctx = baggage.set_baggage("llmobs.force", "1")
    root = rig.recorder.start(sc.OP_CHAIN, "debug-request", parent=ctx)
    root.end()
    (span,) = rig.exporter.get_finished_spans()
    assert span.attributes[sc.SAMPLING_REASON] == "promoted:forced=request"


def test_rules_match_any_span_of_the_trace_first_match_wins():
    rules = (Rule((("name", "invoke_agent health*"),), 0.0), Rule((("model", "gpt-5*"),), 1.0))
    rig = Rig(policy(ratio=0.0, floor=100, rules=rules))
    rig.agent_trace("healthcheck", model="gpt-5")  # first rule: dropped despite the floor
    rig.agent_trace("support", model="gpt-5-mini")  # second rule, matched on the child span
    rig.agent_trace("support", model="gpt-4o")  # no rule: floor keeps it
    reasons = sorted({s.attributes[sc.SAMPLING_REASON] for s in rig.exporter.get_finished_spans()})
    assert reasons == ["floor", "rule:1"]


def test_remote_parent_decision_is_followed():
    rig = Rig(policy(ratio=1.0, floor=10))
    for flags, name in ((TraceFlags.SAMPLED, "sampled"), (TraceFlags.DEFAULT, "unsampled")):
        parent = SpanContext(random.getrandbits(128), random.getrandbits(64), True, TraceFlags(flags))
        root = rig.recorder.start(sc.OP_CHAIN, name, parent=trace.set_span_in_context(NonRecordingSpan(parent)))
        root.end()
    assert [(s.name, s.attributes[sc.SAMPLING_REASON]) for s in rig.exporter.get_finished_spans()] == [
        ("sampled", "parent")
    ]


def test_buffer_bounds_and_age_flush_partial_traces():
    clock = Clock()
    rig = Rig(policy(ratio=1.0, buffer=Buffer(max_traces=2, max_spans=100, max_age_s=30)), clock=clock)
    roots = [rig.recorder.start(sc.OP_CHAIN, f"open-{i}", parent=ROOT) for i in range(3)]
    for root in roots:
        rig.recorder.start(sc.OP_CHAT, model="m", provider="openai", parent=root).end()
    first = rig.exporter.get_finished_spans()
    assert [s.attributes[sc.SAMPLING_REASON] for s in first] == ["partial:ratio"]  # evicted: over max_traces
    clock.now += 31  # the other two outlive max_age: the sweeper decides them, no span needed

    def partial() -> int:
        return [s.attributes[sc.SAMPLING_REASON] for s in rig.exporter.get_finished_spans()].count("partial:ratio")

    _wait_for(lambda: partial() == 3)
    roots[0].end()  # a late root follows its trace's decision
    assert rig.exporter.get_finished_spans()[-1].attributes[sc.SAMPLING_REASON] == "partial:ratio"
    assert selfstats.snapshot()["sampling.partial_traces"] == 3


def test_sweeper_flushes_an_abandoned_trace_without_further_spans():
    rig = Rig(policy(ratio=1.0, buffer=Buffer(max_age_s=0.2)), clock=time.monotonic)
    root = rig.recorder.start(sc.OP_CHAIN, "never-ends", parent=ROOT)
    rig.recorder.start(sc.OP_CHAT, model="m", provider="openai", parent=root).end()
    deadline = time.monotonic() + 5
    while not rig.exporter.get_finished_spans() and time.monotonic() < deadline:
        time.sleep(0.05)
    (span,) = rig.exporter.get_finished_spans()
    assert span.attributes[sc.SAMPLING_REASON] == "partial:ratio"


def test_shutdown_decides_everything_buffered():
    rig = Rig(policy(ratio=1.0))
    root = rig.recorder.start(sc.OP_CHAIN, "open", parent=ROOT)
    rig.recorder.start(sc.OP_CHAT, model="m", provider="openai", parent=root).end()
    rig.processor.shutdown()
    assert [s.name for s in rig.exporter.get_finished_spans()] == ["chat m"]


def test_metrics_stay_exact_at_one_percent_while_spans_drop_a_hundredfold():
    rig = Rig(policy(ratio=0.01), metrics=True)
    for _ in range(2000):
        rig.agent_trace(usage=(30, 7))
    spans = rig.exporter.get_finished_spans()
    assert 10 <= len(spans) <= 80  # ~1% of 4000 spans
    points = {}
    for rm in rig.reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                points[m.name] = m.data.data_points
    chat_calls = sum(p.count for p in points[sc.METRIC_CLIENT_OPERATION_DURATION]
                     if p.attributes[sc.OPERATION_NAME] == sc.OP_CHAT)  # fmt: skip
    tokens = {p.attributes[sc.TOKEN_TYPE]: p.sum for p in points[sc.METRIC_CLIENT_TOKEN_USAGE]}
    assert chat_calls == 2000
    assert tokens == {"input": 60_000, "output": 14_000}


def test_capture_all_forwards_every_span_immediately():
    rig = Rig(policy(enabled=False))
    root = rig.recorder.start(sc.OP_CHAIN, "open", parent=ROOT)
    rig.recorder.start(sc.OP_CHAT, model="m", provider="openai", parent=root).end()
    assert [s.name for s in rig.exporter.get_finished_spans()] == ["chat m"]  # not held for the root


def test_policy_parsing_and_errors():
    p = parse({"ratio": 0.2, "floor": 3, "key": ["service", "model"], "rules": [{"match": {"model": "x*"}, "ratio": 1}],
               "promote": {"latency_s": "off", "tokens": 5000}, "buffer": {"max_traces": 10}})  # fmt: skip
    assert p.ratio == 0.2 and p.key == ("service", "model") and p.rules == (Rule((("model", "x*"),), 1.0),)
    assert p.promote.latency_s is None and p.promote.tokens == 5000 and p.buffer.max_traces == 10
    for bad, message in [
        ({"ratio": 2}, "sampling.ratio: expected a ratio between 0 and 1"),
        ({"rules": [{"ratio": 1}]}, "sampling.rules[0].match: expected a non-empty table"),
        ({"promote": {"latency": 3}}, "sampling.promote.latency: unknown setting"),
        ({"colour": 1}, "sampling.colour: unknown setting"),
    ]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse(bad)


def test_otel_sampler_variables_set_the_default_ratio_and_llmobs_variables_override():
    assert config.load(environ={"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                                "OTEL_TRACES_SAMPLER_ARG": "0.25"}).sampling.ratio == 0.25  # fmt: skip
    assert config.load(environ={"OTEL_TRACES_SAMPLER": "always_on"}).sampling.ratio == 1.0
    assert (
        config.load(environ={"LLMOBS_SAMPLING_RATIO": "0.5", "OTEL_TRACES_SAMPLER": "always_off"}).sampling.ratio == 0.5
    )
    assert config.load(environ={"LLMOBS_SAMPLING": "false"}).sampling.enabled is False
    with pytest.raises(config.ConfigError, match="LLMOBS_SAMPLING_RATIO"):
        config.load(environ={"LLMOBS_SAMPLING_RATIO": "lots"})


def test_file_errors_in_sampling_name_the_exact_line(tmp_path):
    path = tmp_path / "llmobs.toml"
    path.write_text('[sampling]\nratio = 0.1\n\n[[sampling.rules]]\nmatch = { model = "a*" }\nratio = 1\n\n'
                    '[[sampling.rules]]\nmatch = { model = "b*" }\nratio = 7\n')  # fmt: skip
    with pytest.raises(config.ConfigError, match=r"llmobs.toml:10: sampling.rules\[1\].ratio"):
        config.parse_file(path)


def test_live_reload_changes_rates_without_restart_and_keeps_last_good_on_error(tmp_path, monkeypatch, caplog):
    path = tmp_path / "llmobs.toml"
    path.write_text("[sampling]\nratio = 1.0\nfloor = 0\n")
    monkeypatch.setenv("LLMOBS_CONFIG", str(path))
    previous = config.current()
    watcher = None
    try:
        config.apply()
        watcher = config.ConfigWatcher(path, interval_s=0.05).start()
        rig = Rig(SamplingPolicy())
        rig.processor._policy = lambda: config.current().sampling
        for _ in range(50):
            rig.agent_trace()
        assert len(rig.traces()) == 50
        path.write_text("[sampling]\nratio = 0.0\nfloor = 0\n")
        _wait_for(lambda: config.current().sampling.ratio == 0.0)
        for _ in range(50):
            rig.agent_trace()
        assert len(rig.traces()) == 50  # nothing more kept once the new ratio applied
        path.write_text("[sampling]\nratio = 0.0\nfloor = 'many'\n")
        _wait_for(lambda: selfstats.snapshot().get("config.reload_failed"))
        assert config.current().sampling.ratio == 0.0  # the last good settings stay
        # the watcher thread counts the failure, then logs it: wait for the line rather than race it
        _wait_for(lambda: any("llmobs.toml:3: sampling.floor" in r.getMessage() for r in caplog.records))
    finally:
        if watcher:
            watcher.stop()
        config.swap(previous)


def _wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_messages_content_in_kept_traces_survives_stamping(settings):
    settings()
    rig = Rig(policy(ratio=1.0))
    call = rig.recorder.start(sc.OP_CHAT, model="m", provider="openai", parent=ROOT)
    call.set_input([content.message("user", [content.text_part("hello")])])
    call.end()
    (span,) = rig.exporter.get_finished_spans()
    assert "hello" in span.attributes[sc.INPUT_MESSAGES]


def test_per_key_cap_limits_each_key_to_its_rate():
    clock = Clock()
    rig = Rig(policy(ratio=1.0, floor_window_s=60, key_max_traces_per_minute=10), clock=clock)
    for i in range(1200):  # two minutes: "busy" at 500 a minute, "quiet" at 100 a minute
        clock.now += 0.1
        rig.agent_trace("quiet" if i % 6 == 0 else "busy")
    roots = [s for s in rig.exporter.get_finished_spans() if s.parent is None]
    busy = [r for r in roots if r.name == "invoke_agent busy"]
    quiet = [r for r in roots if r.name == "invoke_agent quiet"]
    assert len(busy) < 120 and len(quiet) < 60  # both capped near 10 a minute (plus the first window's ramp)
    assert any("key_cap" in r.attributes[sc.SAMPLING_REASON] for r in busy)
    assert 600 < sum(r.attributes[sc.SAMPLING_ADJUSTED_COUNT] for r in busy) < 1400  # estimates the 1000


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), "inf"])
def test_non_finite_numbers_are_refused_with_their_name(value):
    with pytest.raises(ValueError, match=r"sampling\.floor"):
        parse({"floor": value})


class _OtherSpan(ReadableSpan):
    """A finished span of another type than the SDK's own, read only through its public properties."""


def _other(span: ReadableSpan) -> _OtherSpan:
    copy = _OtherSpan.__new__(_OtherSpan)
    copy.__dict__.update(span.__dict__)
    return copy


def test_spans_read_directly_or_through_properties_are_decided_alike():
    # the SDK's own spans are read field by field on the sampler's path, any other span through its
    # properties; both must give the same decisions, stamps and counts
    from llmobs.sampling import processor as sampling_processor

    assert sampling_processor._READABLE is ReadableSpan  # the installed SDK is read directly
    assert sampling_processor._CONTEXT is SpanContext and sampling_processor._STATUS is not None
    recorded = InMemorySpanExporter()
    provider = TracerProvider(id_generator=SeededIds(3))
    provider.add_span_processor(SimpleSpanProcessor(recorded))
    recorder = Recorder(provider)
    for i in range(300):
        remote = NonRecordingSpan(SpanContext(0x0AF7651916CD43DD8448EB211C803100 + i, 0xB7AD6B7169203331, True,
                                              TraceFlags(TraceFlags.SAMPLED)))  # fmt: skip
        root = recorder.start(sc.OP_INVOKE_AGENT, f"agent-{i % 3}", parent=remote if i % 50 == 1 else ROOT)
        call = recorder.start(sc.OP_CHAT, provider="openai", model=f"m{i % 4}", parent=root)
        call.set_usage(100, 0 if i % 17 == 0 else 20)
        if i % 13 == 0:
            call.set_output(finish_reasons=["length"])
        if i % 29 == 0:
            call.set_attribute(sc.PARTIAL, True)
        call.end(RateLimitError("429") if i % 23 == 0 else None)
        root.end()
    spans = recorded.get_finished_spans()
    assert spans and all(type(s) is ReadableSpan for s in spans)
    rules = (Rule((("name", "*agent-2"),), 0.0),)
    outcomes = []
    for feed in (list(spans), [_other(s) for s in spans]):
        for pol in (SamplingPolicy(ratio=0.2, floor=2, max_traces_per_minute=100), policy(ratio=0.5, rules=rules)):
            exporter = InMemorySpanExporter()
            processor = SamplingProcessor([SimpleSpanProcessor(exporter)], policy=lambda p=pol: p, clock=Clock())
            selfstats.reset()
            for span in feed:
                processor.on_end(span)
            out = [(s.context.span_id, dict(s.attributes)) for s in exporter.get_finished_spans()]
            outcomes.append((out, selfstats.snapshot()))
    assert outcomes[0] == outcomes[2] and outcomes[1] == outcomes[3]
    assert outcomes[0][0] != outcomes[1][0]
    reasons = {a[sc.SAMPLING_REASON] for out, _ in outcomes for _, a in out}
    assert {"parent", "promoted:error", "promoted:finish_reason", "promoted:interrupted"} <= reasons
    assert any(r.startswith("floor") for r in reasons) and "ratio" in reasons
