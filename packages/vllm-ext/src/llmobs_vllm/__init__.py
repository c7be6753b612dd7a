"""llmobs for vLLM: GenAI server metrics and per-request spans from vLLM's stat-logger plugin API.

``pip install llmobs-vllm`` is enough for ``vllm serve``: the ``vllm.stat_logger_plugins`` entry point
loads :class:`LLMObsStatLogger`. ``TraceMiddleware`` (``--middleware llmobs_vllm.TraceMiddleware``) adds
the client's trace context and the operation name. Importing this package does not import vLLM: the
stat logger's module is loaded only when ``LLMObsStatLogger`` is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmobs import __version__ as core_version
from llmobs_vllm.middleware import TraceMiddleware

if TYPE_CHECKING:
    from llmobs_vllm.stat_logger import LLMObsStatLogger


def __getattr__(name: str) -> Any:
    if name == "LLMObsStatLogger":
        from llmobs_vllm.stat_logger import LLMObsStatLogger

        globals()[name] = LLMObsStatLogger
        return LLMObsStatLogger
    raise AttributeError(f"module 'llmobs_vllm' has no attribute {name!r}")


__all__ = ["LLMObsStatLogger", "TraceMiddleware", "core_version"]
