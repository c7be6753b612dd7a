"""The stat-logger methods, kept apart from vLLM's base class so they are testable without vLLM.

``llmobs_vllm.stat_logger.LLMObsStatLogger`` is this mixin on top of vLLM's ``AggregateStatLoggerBase``.
Every method is fail-open: an exception from ``__init__`` would abort vLLM's start-up and one from
``record()`` would kill its output handler, so both end in a counted, logged-once failure instead.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from opentelemetry import trace

from llmobs import selfstats
from llmobs_vllm import _span_index
from llmobs_vllm._telemetry import ENV_SPANS, EngineTelemetry, env_flag

_log = logging.getLogger("llmobs.vllm")

# One active logger per engine configuration: with the entry point installed, a user who also passes
# stat_loggers=[LLMObsStatLogger] to AsyncLLM gets two instances; the second stays idle.
_ACTIVE: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


class StatLoggerMixin:
    """``__init__``, ``record``, ``log_engine_initialized`` and friends of vLLM's stat-logger interface."""

    def __init__(self, vllm_config: Any, engine_indexes: Any = None) -> None:
        self.vllm_config = vllm_config
        self.telemetry: EngineTelemetry | None = None
        self.mode = "idle"
        try:
            self._setup(vllm_config, engine_indexes)
        except Exception as exc:
            selfstats.failure("vllm.init_failed", exc)

    def _setup(self, vllm_config: Any, engine_indexes: Any) -> None:
        if isinstance(engine_indexes, int) and not isinstance(engine_indexes, bool):
            engine_indexes = [engine_indexes]  # called as a per-engine logger: (vllm_config, engine_index)
        self.engine_indexes = [i for i in (engine_indexes or [0]) if isinstance(i, int)] or [0]
        other = _ACTIVE.get(id(vllm_config))
        if other is not None and other.vllm_config is vllm_config:
            _log.info("llmobs-vllm: this engine already has an llmobs stat logger; this second one stays idle")
            return
        _ACTIVE[id(vllm_config)] = self
        model_config = getattr(vllm_config, "model_config", None)
        model = getattr(model_config, "served_model_name", None) or getattr(model_config, "model", None)
        if isinstance(model, list | tuple):
            model = model[0] if model else None
        tracing = getattr(getattr(vllm_config, "observability_config", None), "otlp_traces_endpoint", None)
        configure_llmobs()
        index = None
        if not env_flag(ENV_SPANS, True):
            spans = "off"
        elif tracing:
            # vLLM installed the global tracer provider and makes its own llm_request span per request.
            index = _span_index.install(trace.get_tracer_provider())
            spans = "enrich"
        else:
            spans = "own"
        self.mode = spans
        self.telemetry = EngineTelemetry(str(model) if model else None, self.engine_indexes, spans=spans,
                                         span_index=index)

    def record(
        self,
        scheduler_stats: Any,
        iteration_stats: Any,
        mm_cache_stats: Any = None,
        engine_idx: int = 0,
    ) -> None:
        telemetry = self.telemetry
        if telemetry is not None:
            telemetry.record(scheduler_stats, iteration_stats, engine_idx)

    def log_engine_initialized(self) -> None:
        telemetry = self.telemetry
        if telemetry is not None:
            _log.info(
                "llmobs-vllm: recording GenAI server metrics for model %s (engines %s); per-request spans: %s",
                telemetry.model, self.engine_indexes,
                {"own": "llmobs spans", "enrich": "under vLLM's llm_request spans", "off": "off"}[self.mode],
            )

    def log(self) -> None:
        """Nothing: export runs on the OpenTelemetry reader's thread and our flusher, never here."""

    def record_admission_rejection(self, reason: str) -> None:
        telemetry = self.telemetry
        if telemetry is not None:
            telemetry.record_rejection(reason)

    def record_sleep_state(self, *args: Any, **kwargs: Any) -> None:
        """Sleep mode is not reported."""

    def close(self) -> None:
        """Flush and stop (vLLM has no shutdown hook for stat loggers; this also runs at exit)."""
        telemetry = self.telemetry
        if telemetry is not None:
            telemetry.close()


def configure_llmobs() -> None:
    """Configure llmobs once, as any integration would on first use, so metrics and spans are exported.

    Unlike ``get_recorder()``'s automatic configuration, this also runs when vLLM's OTLP tracing has
    installed the global tracer provider: llmobs then adds no span exporter but still wires metrics
    (``OTEL_METRICS_EXPORTER`` / an OTLP endpoint). An application that configured llmobs itself is left
    alone, and so is ``LLMOBS_AUTO_CONFIGURE=false``.
    """
    if not env_flag("LLMOBS_AUTO_CONFIGURE", True):
        return
    from llmobs import export

    if export.is_configured():
        return
    try:
        export.configure()
    except Exception as exc:
        _log.warning("llmobs-vllm: llmobs.configure() failed (%s); vLLM metrics and spans are not exported", exc)
