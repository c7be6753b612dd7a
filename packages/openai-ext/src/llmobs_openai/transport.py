"""The ``httpx`` transports that trace OpenAI-API calls, and the clients built on them (see ``tracing``)."""

from __future__ import annotations

from typing import Any

import httpx

from llmobs_openai.tracing import AsyncObserving, AsyncTracing, SyncObserving, SyncTracing, make_client


class _ObservedStream(SyncObserving, httpx.SyncByteStream):
    pass


class _AsyncObservedStream(AsyncObserving, httpx.AsyncByteStream):
    pass


class LLMObsTransport(SyncTracing, httpx.BaseTransport):
    """Traces OpenAI-API calls sent through ``wrapped`` (default: a new ``httpx.HTTPTransport()``).

    ``provider`` names the provider (``gen_ai.provider.name``) for every call; without it, well-known
    API hosts are recognised (OpenAI, Azure OpenAI, DashScope, DeepSeek...) and other servers get none.
    """

    http = httpx
    default_transport = httpx.HTTPTransport
    observed = _ObservedStream

    def __init__(self, wrapped: httpx.BaseTransport | None = None, *, provider: str | None = None) -> None:
        super().__init__(wrapped, provider=provider)


class AsyncLLMObsTransport(AsyncTracing, httpx.AsyncBaseTransport):
    """The asyncio twin of :class:`LLMObsTransport` (default wrapped: ``httpx.AsyncHTTPTransport()``)."""

    http = httpx
    default_transport = httpx.AsyncHTTPTransport
    observed = _AsyncObservedStream

    def __init__(self, wrapped: httpx.AsyncBaseTransport | None = None, *, provider: str | None = None) -> None:
        super().__init__(wrapped, provider=provider)


def http_client(
    *, provider: str | None = None, transport: httpx.BaseTransport | None = None, **kwargs: Any
) -> httpx.Client:
    """An ``httpx.Client`` whose OpenAI-API calls are traced: ``OpenAI(http_client=http_client())``.

    ``transport`` is wrapped if given, else an ``httpx.HTTPTransport`` built with the transport-level
    keyword arguments (``verify``, ``proxy``, ``limits``, ``http2``...); the others go to the client.
    """
    return make_client(httpx.Client, LLMObsTransport, provider, transport, kwargs)


def async_http_client(
    *, provider: str | None = None, transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any
) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` twin of :func:`http_client`, for ``AsyncOpenAI``."""
    return make_client(httpx.AsyncClient, AsyncLLMObsTransport, provider, transport, kwargs)
