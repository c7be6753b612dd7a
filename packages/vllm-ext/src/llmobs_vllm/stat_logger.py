"""The vLLM stat logger itself; importing this module imports vLLM.

vLLM loads it through the ``vllm.stat_logger_plugins`` entry point (``llmobs``) in the API-server
process, or an application passes it: ``AsyncLLM.from_engine_args(args, stat_loggers=[LLMObsStatLogger])``.
"""

from __future__ import annotations

try:
    from vllm.v1.metrics.loggers import AggregateStatLoggerBase as _Base
except ImportError:  # vLLM < 0.11.1 has no aggregate base: one instance per engine then
    from vllm.v1.metrics.loggers import StatLoggerBase as _Base

from llmobs_vllm._logger import StatLoggerMixin


class LLMObsStatLogger(StatLoggerMixin, _Base):
    """GenAI server metrics and per-request spans from vLLM's engine stats, through llmobs.

    One instance serves every data-parallel engine of an ``AsyncLLM`` (``engine_idx`` on each
    ``record()``). ``record()`` costs a constant few microseconds per engine step and never raises.
    """


__all__ = ["LLMObsStatLogger"]
