"""Contract with vLLM's real classes: base class, entry-point loading, StatLoggerManager, real stats objects."""

from __future__ import annotations

import inspect
import logging
import types

import pytest
from vllm.config import DeviceConfig, ModelConfig, VllmConfig
from vllm.v1.engine import FinishReason
from vllm.v1.metrics import loggers
from vllm.v1.metrics.reader import get_metrics_snapshot
from vllm.v1.metrics.stats import (
    IterationStats,
    PrefixCacheStats,
    RequestStateStats,
    SchedulerStats,
)
from vllm.v1.spec_decode.metrics import SpecDecodingStats

from llmobs import selfstats
from llmobs import semconv as sc
from llmobs_vllm import LLMObsStatLogger


def shape(function):
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.fixture(scope="module")
def vllm_config(tiny_model):
    return VllmConfig(model_config=ModelConfig(model=str(tiny_model), served_model_name="tiny"),
                      device_config=DeviceConfig(device="cpu"))


def test_is_a_complete_aggregate_stat_logger():
    assert issubclass(LLMObsStatLogger, loggers.AggregateStatLoggerBase)
    assert not LLMObsStatLogger.__abstractmethods__
    assert shape(LLMObsStatLogger.record) == shape(loggers.StatLoggerBase.record)
    assert [n for n, *_ in shape(LLMObsStatLogger.__init__)] == ["self", "vllm_config", "engine_indexes"]


def test_the_entry_point_loads_it_and_vllm_plugins_can_exclude_it(monkeypatch):
    monkeypatch.delenv("VLLM_PLUGINS", raising=False)
    assert LLMObsStatLogger in loggers.load_stat_logger_plugin_factories()
    monkeypatch.setenv("VLLM_PLUGINS", "llmobs")
    assert LLMObsStatLogger in loggers.load_stat_logger_plugin_factories()
    monkeypatch.setenv("VLLM_PLUGINS", "some_other_plugin")
    assert LLMObsStatLogger not in loggers.load_stat_logger_plugin_factories()


def finished_step(request_id: str, reason: FinishReason = FinishReason.LENGTH) -> IterationStats:
    """One step as vLLM's output processor builds it: a first token, three decode tokens, one finished request."""
    stats = IterationStats()
    stats.num_generation_tokens = 4
    stats.time_to_first_tokens_iter = [0.05]
    stats.inter_token_latencies_iter = [0.02, 0.02, 0.03]
    state = RequestStateStats(num_generation_tokens=16, arrival_time=stats.iteration_timestamp - 0.8,
                              queued_ts=10.0, scheduled_ts=10.1, first_token_ts=10.2, last_token_ts=10.5)
    stats.update_from_finished_request(reason, request_id, 12, 16, state, num_cached_tokens=4)
    return stats


def test_manager_builds_it_with_keywords_and_fans_out_real_stats(vllm_config, metric_reader, spans, caplog):
    with caplog.at_level(logging.WARNING, logger="llmobs.vllm"):
        manager = loggers.StatLoggerManager(vllm_config, engine_idxs=[0, 1], custom_stat_loggers=[LLMObsStatLogger],
                                            enable_default_loggers=False)
        ours = [lg for lg in manager.stat_loggers if isinstance(lg, LLMObsStatLogger)]
        assert len(ours) == 1 and ours[0].engine_indexes == [0, 1]
        assert any(isinstance(lg, loggers.PrometheusStatLogger) for lg in manager.stat_loggers)  # vLLM's stays
        logger = ours[0]
        assert logger.mode == "own" and logger.telemetry.model == "tiny"

        prefix = PrefixCacheStats()
        prefix.record(num_tokens=12, num_hits=4, preempted=False)
        spec = SpecDecodingStats.new(3)
        spec.observe_draft(num_draft_tokens=3, num_accepted_tokens=2)
        scheduler = SchedulerStats(num_running_reqs=3, num_waiting_reqs=1, num_skipped_waiting_reqs=1,
                                   kv_cache_usage=0.25, prefix_cache_stats=prefix, spec_decoding_stats=spec)
        manager.record(scheduler, finished_step("cmpl-r2-0"), engine_idx=1)
        manager.record(SchedulerStats(num_running_reqs=0, kv_cache_usage=0.0), finished_step("cmpl-r3-0"),
                       engine_idx=0)
        logger.telemetry.flush()
    assert not [r for r in caplog.records if "has no" in r.getMessage()], "this vLLM lacks fields we read"

    data = {m.name: m.data.data_points for rm in metric_reader.get_metrics_data().resource_metrics
            for s in rm.scope_metrics for m in s.metrics}

    def total(name, field="count", **attrs):
        return sum(getattr(p, field) for p in data[name] if all(p.attributes.get(k) == v for k, v in attrs.items()))

    assert total(sc.METRIC_SERVER_REQUEST_DURATION, **{sc.REQUEST_MODEL: "tiny"}) == 2
    assert total(sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN) == 2
    assert total(sc.METRIC_VLLM_INTER_TOKEN_LATENCY) == 6
    assert total(sc.METRIC_SERVER_TIME_PER_OUTPUT_TOKEN, "sum") == pytest.approx(2 * 0.3 / 15)
    assert total(sc.METRIC_VLLM_REQUEST_TOKENS, "sum", **{sc.TOKEN_TYPE: "input"}) == 24
    assert total(sc.METRIC_VLLM_REQUEST_TOKENS, "sum", **{sc.TOKEN_TYPE: "output"}) == 32
    assert total(sc.METRIC_VLLM_REQUEST_CACHED_TOKENS, "sum") == 8
    assert total(sc.METRIC_VLLM_REQUEST_QUEUE_DURATION, "sum") == pytest.approx(0.2)
    assert total(sc.METRIC_VLLM_REQUESTS_FINISHED, "value", **{sc.VLLM_FINISH_REASON: "length"}) == 2
    running = {p.attributes[sc.VLLM_ENGINE_INDEX]: p.value for p in data[sc.METRIC_VLLM_REQUESTS_RUNNING]}
    assert running == {0: 0, 1: 3}
    assert total(sc.METRIC_VLLM_REQUESTS_WAITING, "value", **{sc.VLLM_ENGINE_INDEX: 1}) == 2
    assert total(sc.METRIC_VLLM_PREFIX_CACHE_HITS, "value", **{sc.VLLM_ENGINE_INDEX: 1}) == 4
    assert total(sc.METRIC_VLLM_SPEC_DECODE_ACCEPTED_TOKENS, "value", **{sc.VLLM_ENGINE_INDEX: 1}) == 2

    # The same stats through vLLM's own Prometheus logger: the numbers agree.
    prom = {(m.name, tuple(sorted(m.labels.items()))): m for m in get_metrics_snapshot()}
    e2e = [m for (name, _), m in prom.items() if name == "vllm:e2e_request_latency_seconds"]
    assert sum(m.count for m in e2e) == 2
    assert sum(m.sum for m in e2e) == pytest.approx(total(sc.METRIC_SERVER_REQUEST_DURATION, "sum"))

    by_id = {s.attributes[sc.REQUEST_ID]: s for s in spans.all()}
    assert set(by_id) == {"cmpl-r2-0", "cmpl-r3-0"}
    span = by_id["cmpl-r2-0"]
    assert span.attributes[sc.VLLM_ENGINE_INDEX] == 1
    assert span.attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 4
    assert span.end_time - span.start_time == pytest.approx(0.8e9, rel=1e-6)


def test_garbage_into_record_never_raises():
    config = types.SimpleNamespace(model_config=types.SimpleNamespace(served_model_name="tiny"))
    logger = LLMObsStatLogger(vllm_config=config, engine_indexes=[0])
    assert logger.telemetry is not None
    for args in [(object(), object()), ("s", "i"), (SchedulerStats(prefix_cache_stats=None), None),
                 (None, types.SimpleNamespace(finished_requests=[object()]))]:
        logger.record(*args, mm_cache_stats=object(), engine_idx=0)
        logger.record(*args, engine_idx="not an engine")
    logger.telemetry.flush()
    assert selfstats.snapshot().get("vllm.record_failed", 0) >= 1
