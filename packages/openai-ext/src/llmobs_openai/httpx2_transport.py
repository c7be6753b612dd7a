"""The same transports and clients for ``httpx2``, the fork openai ≥ 3 uses by default, so that a transport
of that kind can be wrapped too: ``OpenAI(http_client=llmobs_openai.httpx2_transport.http_client())``.

Needs ``httpx2`` installed (the openai client ≥ 3 brings it); importing this module without it fails.
"""

from __future__ import annotations

from typing import Any

import httpx2

from llmobs_openai.tracing import AsyncObserving, AsyncTracing, SyncObserving, SyncTracing, make_client


class _ObservedStream(SyncObserving, httpx2.SyncByteStream):
    pass


class _AsyncObservedStream(AsyncObserving, httpx2.AsyncByteStream):
    pass


class LLMObsTransport(SyncTracing, httpx2.BaseTransport):
    """Traces OpenAI-API calls sent through ``wrapped`` (default: a new ``httpx2.HTTPTransport()``)."""

    http = httpx2
    default_transport = httpx2.HTTPTransport
    observed = _ObservedStream

    def __init__(self, wrapped: httpx2.BaseTransport | None = None, *, provider: str | None = None) -> None:
        super().__init__(wrapped, provider=provider)


class AsyncLLMObsTransport(AsyncTracing, httpx2.AsyncBaseTransport):
    """The asyncio twin of :class:`LLMObsTransport` (default wrapped: ``httpx2.AsyncHTTPTransport()``)."""

    http = httpx2
    default_transport = httpx2.AsyncHTTPTransport
    observed = _AsyncObservedStream

    def __init__(self, wrapped: httpx2.AsyncBaseTransport | None = None, *, provider: str | None = None) -> None:
        super().__init__(wrapped, provider=provider)


def http_client(
    *, provider: str | None = None, transport: httpx2.BaseTransport | None = None, **kwargs: Any
) -> httpx2.Client:
    """An ``httpx2.Client`` whose OpenAI-API calls are traced (see ``llmobs_openai.http_client``)."""
    return make_client(httpx2.Client, LLMObsTransport, provider, transport, kwargs)


def async_http_client(
    *, provider: str | None = None, transport: httpx2.AsyncBaseTransport | None = None, **kwargs: Any
) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` whose OpenAI-API calls are traced."""
    return make_client(httpx2.AsyncClient, AsyncLLMObsTransport, provider, transport, kwargs)
