"""Which requests are OpenAI-API calls, and which provider serves them.

Recognition is by method and path suffix only, so it works under any prefix (``/v1``,
``/compatible-mode/v1``, Azure's ``/openai/deployments/{name}``) and costs a string comparison for
every request that is not a call we trace.
"""

from __future__ import annotations

from typing import NamedTuple

from llmobs import semconv as sc


class Api:
    """The request and response shape of a recognised endpoint: one of these names. Plain class attributes, not
    an enum: on Python 3.11 each read of an enum member is a slow lookup, and a traced call reads several."""

    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    RESPONSES = "responses"


class Route(NamedTuple):
    api: str
    operation: str


_CHAT = Route(Api.CHAT, sc.OP_CHAT)
_COMPLETIONS = Route(Api.COMPLETIONS, sc.OP_TEXT_COMPLETION)
_EMBEDDINGS = Route(Api.EMBEDDINGS, sc.OP_EMBEDDINGS)
_RESPONSES = Route(Api.RESPONSES, sc.OP_CHAT)  # the Responses API is a chat operation in GenAI terms

_SUFFIXES = ("/completions", "/embeddings", "/responses")
_AZURE_DEPLOYMENTS = "/openai/deployments/"


def route_of(method: str, path: str) -> Route | None:
    """The route of a request, or None when it is not a call we trace."""
    if method != "POST" or not path.endswith(_SUFFIXES):
        return None
    if path.endswith("/chat/completions"):
        return _CHAT
    if path.endswith("/completions"):
        return _COMPLETIONS
    if path.endswith("/embeddings"):
        return _EMBEDDINGS
    return _RESPONSES


def azure_deployment(path: str) -> str | None:
    """The deployment name in an Azure OpenAI path, which stands for the model when the body has none."""
    start = path.find(_AZURE_DEPLOYMENTS)
    if start < 0:
        return None
    name = path[start + len(_AZURE_DEPLOYMENTS) :].split("/", 1)[0]
    return name or None


_EXACT_HOSTS = {
    "api.openai.com": sc.PROVIDER_OPENAI,
    "api.deepseek.com": sc.PROVIDER_DEEPSEEK,
    "dashscope.aliyuncs.com": sc.PROVIDER_DASHSCOPE,
    "dashscope-intl.aliyuncs.com": sc.PROVIDER_DASHSCOPE,
    "api.groq.com": sc.PROVIDER_GROQ,
    "api.mistral.ai": sc.PROVIDER_MISTRAL_AI,
    "api.x.ai": sc.PROVIDER_X_AI,
    "api.perplexity.ai": sc.PROVIDER_PERPLEXITY,
    "generativelanguage.googleapis.com": sc.PROVIDER_GCP_GEMINI,
}
_HOST_SUFFIXES = (
    (".openai.azure.com", sc.PROVIDER_AZURE_OPENAI),
    (".cognitiveservices.azure.com", sc.PROVIDER_AZURE_OPENAI),
    (".dashscope.aliyuncs.com", sc.PROVIDER_DASHSCOPE),
)
_MAX_CACHED_HOSTS = 256
_cache: dict[str, str | None] = {}


def provider_of(host: str) -> str | None:
    """The ``gen_ai.provider.name`` of a well-known API host, or None for any other server."""
    try:
        return _cache[host]
    except KeyError:
        pass
    name = host.lower()
    provider = _EXACT_HOSTS.get(name)
    if provider is None:
        provider = next((p for suffix, p in _HOST_SUFFIXES if name.endswith(suffix)), None)
    if len(_cache) >= _MAX_CACHED_HOSTS:  # bounded: hosts can come from configuration or user input
        _cache.clear()
    _cache[host] = provider
    return provider
