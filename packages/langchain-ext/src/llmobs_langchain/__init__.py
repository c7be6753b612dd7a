"""llmobs for LangChain: hooks in through LangChain callbacks (BaseCallbackHandler, register_configure_hook), never by patching."""

from llmobs import __version__ as core_version

__all__ = ["core_version"]
