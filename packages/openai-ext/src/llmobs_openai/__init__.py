"""llmobs for OpenAI-compatible clients.

Hooks in through the openai client's http_client= (an httpx transport), never by patching.
"""

from llmobs import __version__ as core_version

__all__ = ["core_version"]
