"""llmobs' own aggregation of GenAI metrics reports exactly what the SDK's aggregation would."""

from __future__ import annotations

import math
from typing import Any

import pytest
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from llmobs import aggregated_metrics, selfstats
from llmobs import semconv as sc
from llmobs.aggregated_metrics import AggregatingInMemoryReader
from llmobs.content import message, output_message, text_part
from llmobs.recorder import Recorder

ANCHOR = "test.anchor"


def _points(reader: Any) -> dict[tuple[str, frozenset], dict[str, Any]]:
    """Every data point a reader reports, keyed by metric name and attribute set."""
    out: dict[tuple[str, frozenset], dict[str, Any]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for scope in rm.scope_metrics:
            for metric in scope.metrics:
                if metric.name == ANCHOR:
                    continue
                for p in metric.data.data_points:
                    key = (metric.name, frozenset(p.attributes.items()))
                    assert key not in out, f"two points for {key}"
                    fields = {"value": p.value} if hasattr(p, "value") else {
                        "count": p.count, "sum": p.sum, "min": p.min, "max": p.max,
                        "buckets": list(p.bucket_counts), "bounds": list(p.explicit_bounds),
                    }
                    out[key] = {"scope": (scope.scope.name, scope.scope.version), "unit": metric.unit, **fields}
    return out


def _aggregating_provider(anchor: bool = True, **reader_kwargs: Any) -> tuple[MeterProvider, AggregatingInMemoryReader]:
    """A provider that aggregates here; ``anchor``: with an SDK metric in every collection, as llmobs' own."""
    reader = AggregatingInMemoryReader(**reader_kwargs)
    provider = MeterProvider(metric_readers=[reader])
    assert aggregated_metrics.register(provider, [reader])
    if anchor:
        provider.get_meter("anchor").create_observable_gauge(ANCHOR, callbacks=[lambda options: [Observation(1)]])
    return provider, reader


def _calls(recorder: Recorder) -> None:
    """A mix: plain and streamed chat calls on two models, an error, an embedding call, tool calls."""
    for i in range(40):
        handle = recorder.start(sc.OP_CHAT, provider="openai", model="gpt-4o-mini" if i % 3 else "gpt-4o",
                                start_time_ns=1_000_000_000 * i)
        handle.set_input([message("user", [text_part(f"question {i}")])])
        if i % 4 == 0:
            for k in range(3):
                handle.chunk(at_ns=1_000_000_000 * i + 50_000_000 * (k + 1) * (i % 7 + 1))
        handle.set_usage(10 + i, 3 * i)
        handle.set_output([output_message([text_part("answer")], "stop")], finish_reasons=["stop"])
        handle.end(ValueError("boom") if i % 10 == 9 else None, end_time_ns=1_000_000_000 * i + 7_000_000 * (i + 1))
    for i in range(5):
        handle = recorder.start(sc.OP_EMBEDDINGS, provider="openai", model="text-embedding-3-small",
                                start_time_ns=0)
        handle.set_usage(100 * i, None)
        handle.end(end_time_ns=(i + 1) * 2_000_000)
    for i in range(3):
        recorder.start(sc.OP_EXECUTE_TOOL, "search", start_time_ns=0).end(end_time_ns=10**9 * (i + 1))


def test_the_aggregated_points_equal_the_sdk_points():
    sdk_reader = InMemoryMetricReader()
    sdk_recorder = Recorder(TracerProvider(), MeterProvider(metric_readers=[sdk_reader]))
    provider, reader = _aggregating_provider()
    ours = Recorder(TracerProvider(), provider)

    _calls(sdk_recorder)
    _calls(ours)

    expected, got = _points(sdk_reader), _points(reader)
    genai = {k for k in expected if k[0] != sc.METRIC_DROPPED}
    assert {k[0] for k in genai} >= {
        sc.METRIC_CLIENT_OPERATION_DURATION, sc.METRIC_CLIENT_TOKEN_USAGE, sc.METRIC_CLIENT_TIME_TO_FIRST_CHUNK,
        sc.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK, sc.METRIC_COST,
    }
    assert set(got) == genai
    for key in genai:
        e, g = expected[key], got[key]
        for field in ("scope", "unit", "count", "min", "max", "buckets", "bounds"):
            assert g.get(field) == e.get(field), (key, field)
        for field in ("sum", "value"):
            if field in e:
                assert math.isclose(g[field], e[field], rel_tol=1e-9), (key, field)


def test_later_collections_are_cumulative_by_default_and_deltas_when_the_reader_asks():
    cumulative_provider, cumulative = _aggregating_provider()
    delta_provider, delta = _aggregating_provider(
        preferred_temporality={Histogram: AggregationTemporality.DELTA}
    )
    recorders = [Recorder(TracerProvider(), cumulative_provider), Recorder(TracerProvider(), delta_provider)]

    def one_call(recorder: Recorder) -> None:
        handle = recorder.start(sc.OP_CHAT, provider="openai", model="m")
        handle.set_usage(5, 7)
        handle.end()

    for recorder in recorders:
        one_call(recorder)
    key = (sc.METRIC_CLIENT_TOKEN_USAGE, frozenset({
        sc.OPERATION_NAME: sc.OP_CHAT, sc.PROVIDER_NAME: "openai", sc.REQUEST_MODEL: "m",
        sc.TOKEN_TYPE: sc.TOKEN_TYPE_INPUT,
    }.items()))
    assert _points(cumulative)[key]["count"] == _points(delta)[key]["count"] == 1
    for recorder in recorders:
        one_call(recorder)
        one_call(recorder)
    assert _points(cumulative)[key]["count"] == 3
    assert _points(delta)[key]["count"] == 2
    assert key not in _points(delta)  # nothing new since the last collection


def test_attribute_sets_beyond_the_limit_fold_into_the_overflow_point(monkeypatch):
    monkeypatch.setattr(aggregated_metrics, "CARDINALITY_LIMIT", 5)
    provider, reader = _aggregating_provider()
    recorder = Recorder(TracerProvider(), provider)
    for i in range(12):
        recorder.start(sc.OP_CHAT, provider="openai", model=f"model-{i}").end()
    durations = {k[1]: v for k, v in _points(reader).items() if k[0] == sc.METRIC_CLIENT_OPERATION_DURATION}
    assert len(durations) == 6
    assert durations[frozenset({("otel.metric.overflow", True)})]["count"] == 7


def test_invalid_measurements_are_counted_not_aggregated():
    selfstats.reset()
    provider, reader = _aggregating_provider()
    meter = aggregated_metrics.Meter("t", None, provider)
    histogram = meter.histogram("h", "s", "", (1.0, 2.0))
    counter = meter.counter("c", "1", "")
    histogram.record(float("nan"), {"a": "x"})
    counter.add(-1, {"a": "x"})
    histogram.record(1.5, {"a": "x"})
    points = _points(reader)
    assert points[("h", frozenset({("a", "x")}))]["count"] == 1
    assert ("c", frozenset({("a", "x")})) not in points
    assert selfstats.snapshot()["metrics.invalid_value"] == 2


def test_a_provider_with_any_plain_reader_keeps_the_sdk_path():
    aggregating, plain = AggregatingInMemoryReader(), InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[aggregating, plain])
    assert not aggregated_metrics.register(provider, [aggregating, plain])
    recorder = Recorder(TracerProvider(), provider)
    recorder.start(sc.OP_CHAT, provider="openai", model="m").end()
    assert any(k[0] == sc.METRIC_CLIENT_OPERATION_DURATION for k in _points(plain))


@pytest.mark.parametrize("temporality", [AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA])
def test_nothing_is_lost_when_a_collection_has_no_sdk_metrics(temporality):
    """Ours ride on the SDK's collection; one with nothing from the SDK keeps them for the next."""
    provider, reader = _aggregating_provider(anchor=False, preferred_temporality={Histogram: temporality})
    recorder = Recorder(TracerProvider(), provider)
    recorder.start(sc.OP_CHAT, provider="openai", model="m").end()
    assert _points(reader) == {}  # no SDK instrument had data: the SDK reports nothing at all
    provider.get_meter("app").create_observable_gauge("app.gauge", callbacks=[lambda options: [Observation(1)]])
    points = _points(reader)
    assert [v["count"] for k, v in points.items() if k[0] == sc.METRIC_CLIENT_OPERATION_DURATION] == [1]


def test_on_an_application_provider_a_counter_reports_totals_kept_here():
    """Counters cost a dict update on the SDK path too: an observable counter reads the totals."""
    selfstats.reset()
    reader = InMemoryMetricReader()
    counter = aggregated_metrics.Meter("t", None, MeterProvider(metric_readers=[reader])).counter("c", "1", "")
    counter.add(1.5, {"a": "x"})
    counter.add(1.5, {"a": "x"})
    counter.add(2, {"a": "y"})
    counter.add(-1, {"a": "x"})
    counter.add(float("nan"), {"a": "x"})
    points = _points(reader)
    assert points[("c", frozenset({("a", "x")}))]["value"] == 3.0
    assert points[("c", frozenset({("a", "y")}))]["value"] == 2
    assert selfstats.snapshot()["metrics.invalid_value"] == 2
    counter.add(1, {"a": "y"})
    assert _points(reader)[("c", frozenset({("a", "y")}))]["value"] == 3  # cumulative


def test_an_attribute_set_and_a_plain_mapping_of_the_same_attributes_share_a_point():
    provider, reader = _aggregating_provider()
    histogram = aggregated_metrics.Meter("t", None, provider).histogram("h", "s", "", (1.0,))
    same = aggregated_metrics.AttributeSet({"a": "x", "b": 1})
    histogram.record(0.5, same)
    histogram.record(2.0, {"b": 1, "a": "x"})
    histogram.record_many([0.1, 0.2], same)
    point = _points(reader)[("h", frozenset({("a", "x"), ("b", 1)}))]
    assert (point["count"], point["buckets"]) == (4, [3, 1])


def test_many_values_at_once_aggregate_as_the_sdk_records_them_one_by_one(monkeypatch):
    """record_many (a stream's chunk intervals) counts buckets, sum and extremes for all values at once: the same
    point as the SDK's, values on a bound included; a NaN among them is counted and left out; past the
    cardinality limit they fold into the overflow point, as single measurements do."""
    selfstats.reset()
    bounds = (0.01, 0.1, 1.0, 10.0)
    values = [0.5, 0.01, 20.0, 0.1, 0.005, 3, 0.1, 1.0, 7.25, 0.0, 10.0, 11]
    sdk_reader = InMemoryMetricReader()
    sdk = MeterProvider(metric_readers=[sdk_reader]).get_meter("t").create_histogram(
        "h", "s", "", explicit_bucket_boundaries_advisory=list(bounds)
    )
    for value in values:
        sdk.record(value, {"a": "x"})
    provider, reader = _aggregating_provider()
    meter = aggregated_metrics.Meter("t", None, provider)
    ours = meter.histogram("h", "s", "", bounds)
    ours.record_many(values[:5], {"a": "x"})
    ours.record_many([*values[5:], float("nan")], aggregated_metrics.AttributeSet({"a": "x"}))
    expected, got = _points(sdk_reader)[("h", frozenset({("a", "x")}))], _points(reader)[("h", frozenset({("a", "x")}))]
    for field in ("count", "min", "max", "buckets", "bounds"):
        assert got[field] == expected[field], field
    assert math.isclose(got["sum"], expected["sum"], rel_tol=1e-12)
    assert selfstats.snapshot()["metrics.invalid_value"] == 1

    counter = meter.counter("c", "1", "")
    counter.record_many([1, 2, 3.5], {"a": "x"})
    counter.record_many([4, -1], {"a": "x"})  # a counter never goes down: -1 is left out
    assert _points(reader)[("c", frozenset({("a", "x")}))]["value"] == 10.5
    assert selfstats.snapshot()["metrics.invalid_value"] == 2

    monkeypatch.setattr(aggregated_metrics, "CARDINALITY_LIMIT", 1)
    ours.record_many([0.5, 50.0], {"a": "y"})
    overflow = _points(reader)[("h", aggregated_metrics._OVERFLOW)]
    assert (overflow["count"], overflow["min"], overflow["max"], overflow["buckets"]) == (2, 0.5, 50.0, [0, 0, 1, 0, 1])


def _exemplar_ids(reader: Any) -> dict[str, set[tuple[int, int]]]:
    seen: dict[str, set[tuple[int, int]]] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for scope in rm.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    for exemplar in getattr(point, "exemplars", ()):
                        seen.setdefault(metric.name, set()).add((exemplar.trace_id, exemplar.span_id))
    return seen


def test_on_an_application_provider_exemplars_point_to_the_measured_call_not_the_current_span():
    """A call's end may be recorded later, in another context (llmobs.finisher runs a batch of calls' ends in
    whichever thread fills it): the SDK's exemplars still name that call's own span."""
    reader = InMemoryMetricReader()
    tracer_provider = TracerProvider()
    recorder = Recorder(tracer_provider, MeterProvider(metric_readers=[reader]))
    handle = recorder.start(sc.OP_CHAT, provider="openai", model="m")
    for _ in range(3):
        handle.chunk()
    handle.set_usage(5, 7)
    with tracer_provider.get_tracer("app").start_as_current_span("another request") as other:
        handle.end()
    own = handle.span.get_span_context()
    assert own.span_id != other.get_span_context().span_id
    seen = _exemplar_ids(reader)
    assert set(seen) == {
        sc.METRIC_CLIENT_OPERATION_DURATION, sc.METRIC_CLIENT_TOKEN_USAGE, sc.METRIC_CLIENT_TIME_TO_FIRST_CHUNK,
        sc.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK,
    }, seen
    assert all(ids == {(own.trace_id, own.span_id)} for ids in seen.values()), seen


def test_a_call_recorded_for_another_tracer_names_its_span_in_exemplars_else_the_current_one():
    """``record_call`` (a framework's own span, as Promptflow's): exemplars name the span given, else the
    current span as any SDK measurement's would."""
    from opentelemetry.trace import SpanContext, TraceFlags

    reader = InMemoryMetricReader()
    tracer_provider = TracerProvider()
    recorder = Recorder(tracer_provider, MeterProvider(metric_readers=[reader]))
    given = SpanContext(trace_id=7, span_id=9, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    recorder.record_call(sc.OP_CHAT, duration_s=0.5, provider="openai", model="given", span_context=given)
    with tracer_provider.get_tracer("app").start_as_current_span("current") as current:
        recorder.record_call(sc.OP_CHAT, duration_s=0.5, provider="openai", model="ambient")
    ambient = current.get_span_context()
    assert _exemplar_ids(reader)[sc.METRIC_CLIENT_OPERATION_DURATION] == {(7, 9), (ambient.trace_id, ambient.span_id)}


def test_measurements_taken_together_each_go_where_their_own_record_would():
    """One lock for a call's measurements where they aggregate here; the SDK path, and values to refuse, as ever."""
    selfstats.reset()
    provider, reader = _aggregating_provider()
    ours = aggregated_metrics.Meter("ours", None, provider)
    histogram, counter = ours.histogram("h", "s", "", (1.0, 2.0)), ours.counter("c", "1", "")
    sdk_reader = InMemoryMetricReader()
    theirs = aggregated_metrics.Meter("theirs", None, MeterProvider(metric_readers=[sdk_reader])).histogram(
        "sdk.h", "s", "", (1.0,)
    )
    attrs = aggregated_metrics.AttributeSet({"a": "x"})
    aggregated_metrics.measure_together([
        (histogram, 1.5, attrs), (theirs, 0.5, {"a": "x"}), (counter, 2, attrs), (histogram, float("nan"), attrs),
        (counter, -1, {"a": "y"}), (histogram, 0.5, {"a": "y"}),
    ])  # fmt: skip
    points = _points(reader)
    assert points[("h", frozenset({("a", "x")}))]["count"] == 1
    assert points[("h", frozenset({("a", "y")}))]["count"] == 1
    assert points[("c", frozenset({("a", "x")}))]["value"] == 2
    assert ("c", frozenset({("a", "y")})) not in points
    assert _points(sdk_reader)[("sdk.h", frozenset({("a", "x")}))]["count"] == 1
    assert selfstats.snapshot()["metrics.invalid_value"] == 2


def test_the_recorders_attribute_sets_are_bounded_and_every_model_keeps_its_points(monkeypatch):
    from llmobs import recorder as recorder_module

    monkeypatch.setattr(recorder_module, "_METRIC_SETS_MAX", 4)
    provider, reader = _aggregating_provider()
    recorder = Recorder(TracerProvider(), provider)
    for _ in range(2):
        for i in range(10):
            handle = recorder.start(sc.OP_CHAT, provider="openai", model=f"model-{i}")
            handle.set_usage(i, 2 * i)
            handle.end()
            assert len(recorder._metric_sets) <= 4
    points = _points(reader)
    for i in range(10):
        base = {sc.OPERATION_NAME: sc.OP_CHAT, sc.PROVIDER_NAME: "openai", sc.REQUEST_MODEL: f"model-{i}"}
        output = (sc.METRIC_CLIENT_TOKEN_USAGE, frozenset({**base, sc.TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT}.items()))
        assert points[(sc.METRIC_CLIENT_OPERATION_DURATION, frozenset(base.items()))]["count"] == 2
        assert points[output]["sum"] == 4 * i
