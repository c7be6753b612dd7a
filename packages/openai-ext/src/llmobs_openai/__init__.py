"""llmobs for OpenAI-compatible clients (OpenAI, Azure OpenAI, DashScope/Qwen, DeepSeek, vLLM, gateways).

Hooks in through the openai client's ``http_client=``: an httpx (or httpx2) transport that traces every
chat-completions, completions, embeddings and Responses API call, never by patching::

    client = OpenAI(base_url=..., http_client=llmobs_openai.http_client())
"""

from llmobs import __version__ as core_version
from llmobs_openai.transport import AsyncLLMObsTransport, LLMObsTransport, async_http_client, http_client

__all__ = ["AsyncLLMObsTransport", "LLMObsTransport", "async_http_client", "core_version", "http_client"]
