"""The stat-logger surface, over a stand-in for vLLM's base class (no vLLM needed), and packaging."""

from __future__ import annotations

import inspect
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

import llmobs_vllm
from llmobs import selfstats
from llmobs_vllm import _logger
from llmobs_vllm._logger import StatLoggerMixin

PACKAGE = Path(__file__).resolve().parents[1]


class Base:
    """The methods of vLLM's AggregateStatLoggerBase that the mixin must provide."""

    def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=0): ...


class Logger(StatLoggerMixin, Base):
    pass


def config(model="tiny", tracing=None):
    return types.SimpleNamespace(
        model_config=types.SimpleNamespace(served_model_name=model, model="/models/tiny"),
        observability_config=types.SimpleNamespace(otlp_traces_endpoint=tracing),
    )


def shape(function):
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_record_has_vllms_signature():
    assert shape(StatLoggerMixin.record) == shape(Base.record)


def test_constructed_with_keywords_as_vllm_does(fake):
    logger = Logger(vllm_config=config(), engine_indexes=[0, 1])
    assert logger.engine_indexes == [0, 1] and logger.mode == "own"
    assert logger.telemetry.model == "tiny"
    logger.record(scheduler_stats=fake.scheduler(), iteration_stats=None, mm_cache_stats=None, engine_idx=1)
    assert logger.telemetry._engines[1].running == 3
    logger.log_engine_initialized()
    logger.log()
    logger.record_admission_rejection("max_num_queued_reqs")
    logger.record_sleep_state(1, 1)
    logger.close()


def test_per_engine_positional_use():
    logger = Logger(config(), 3)
    assert logger.engine_indexes == [3]


def test_second_logger_for_the_same_engine_stays_idle():
    cfg = config()
    first, second = Logger(cfg, [0]), Logger(vllm_config=cfg, engine_indexes=[0])
    assert first.telemetry is not None and second.telemetry is None and second.mode == "idle"
    second.record(None, None)  # idle, harmless
    assert Logger(config(), [0]).telemetry is not None  # another engine's config is independent


def test_init_never_raises(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(_logger, "EngineTelemetry", broken)
    logger = Logger(config(), [0])
    assert logger.telemetry is None
    logger.record(object(), object())
    assert selfstats.snapshot()["vllm.init_failed"] == 1


def test_model_name_falls_back_and_lists_take_the_first():
    assert Logger(config(model=["a", "b"]), [0]).telemetry.model == "a"
    cfg = types.SimpleNamespace(model_config=types.SimpleNamespace(served_model_name=None, model="/m/x"))
    assert Logger(cfg, [0]).telemetry.model == "/m/x"
    assert Logger(object(), [0]).telemetry.model is None


def test_vllm_tracing_on_switches_to_enrichment(monkeypatch):
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    monkeypatch.setattr(_logger.trace, "get_tracer_provider", lambda: provider)
    logger = Logger(config(tracing="http://127.0.0.1:4317"), [0])
    assert logger.mode == "enrich" and logger.telemetry.span_index is not None


def test_spans_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("LLMOBS_VLLM_SPANS", "false")
    assert Logger(config(), [0]).mode == "off"


def test_configure_respects_auto_configure_false(monkeypatch):
    calls = []
    monkeypatch.setattr("llmobs.export.configure", lambda: calls.append(1))
    _logger.configure_llmobs()  # LLMOBS_AUTO_CONFIGURE=false in these tests
    assert calls == []


def test_configure_failure_is_one_clear_line(monkeypatch, caplog):
    from llmobs import config as llmobs_config
    from llmobs import export

    monkeypatch.setenv("LLMOBS_AUTO_CONFIGURE", "true")
    monkeypatch.setattr(export, "_state", types.SimpleNamespace(configured=False))

    def bad():
        raise llmobs_config.ConfigError("OTEL_METRICS_EXPORTER: unsupported value 'x'")

    monkeypatch.setattr(export, "configure", bad)
    _logger.configure_llmobs()
    assert [r for r in caplog.records if "configure() failed" in r.getMessage()]


def test_entry_point_is_declared():
    meta = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["vllm.stat_logger_plugins"] == {
        "llmobs": "llmobs_vllm.stat_logger:LLMObsStatLogger"
    }


def test_import_does_not_import_vllm():
    code = "import sys, llmobs_vllm; llmobs_vllm.TraceMiddleware; print('vllm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_stat_logger_needs_vllm_only_when_asked_for():
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError):
            llmobs_vllm.LLMObsStatLogger  # noqa: B018
    else:  # pragma: no cover - the engine tier covers this
        assert llmobs_vllm.LLMObsStatLogger.__name__ == "LLMObsStatLogger"
