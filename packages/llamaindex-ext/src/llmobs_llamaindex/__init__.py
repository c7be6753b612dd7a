"""llmobs for LlamaIndex.

Hooks in through the LlamaIndex root dispatcher (span and event handlers), never by patching.
"""

from llmobs import __version__ as core_version

__all__ = ["core_version"]
