"""llmobs for vLLM.

Hooks in through vLLM stat-logger plugins (vllm.stat_logger_plugins entry points), never by patching.
"""

from llmobs import __version__ as core_version

__all__ = ["core_version"]
