"""httpx transports that trace OpenAI-API calls, and the clients built on them.

The transport wraps another one (by default httpx's own) and sees each request before it is sent and
each response body as the application reads it: the body stream is replaced by one that hands every
chunk to the call's reader on its way to the application — no buffering, no extra copy, no delay
beyond reading one chunk. Requests that are not OpenAI-API calls, or that arrive while the
integration is disabled, go straight to the wrapped transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from llmobs_openai import calls
from llmobs_openai.calls import Call
from llmobs_openai.routes import route_of


def _content(request: httpx.Request) -> bytes | None:
    try:
        return request.content
    except httpx.RequestNotRead:  # a streamed upload: not an OpenAI-API JSON body
        return None


class _ObservedStream(httpx.SyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream, call: Call) -> None:
        self._stream = stream
        self._call = call

    def __iter__(self) -> Iterator[bytes]:
        call = self._call
        try:
            for chunk in self._stream:
                call.feed(chunk)
                yield chunk
        except GeneratorExit:
            raise  # the reader stopped early: close() says how the call ends
        except BaseException as exc:
            call.fail(exc)
            raise
        call.complete()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._call.close()

    def __del__(self) -> None:
        self._call.abandon()


class _AsyncObservedStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, call: Call) -> None:
        self._stream = stream
        self._call = call

    async def __aiter__(self) -> AsyncIterator[bytes]:
        call = self._call
        try:
            async for chunk in self._stream:
                call.feed(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            call.fail(exc)
            raise
        call.complete()

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._call.close()

    def __del__(self) -> None:
        self._call.abandon()


class LLMObsTransport(httpx.BaseTransport):
    """Traces OpenAI-API calls sent through ``wrapped`` (default: a new ``httpx.HTTPTransport()``).

    ``provider`` names the provider (``gen_ai.provider.name``) for every call; without it, well-known
    API hosts are recognised (OpenAI, Azure OpenAI, DashScope, DeepSeek...) and other servers get none.
    """

    def __init__(self, wrapped: httpx.BaseTransport | None = None, *, provider: str | None = None) -> None:
        self.wrapped = wrapped if wrapped is not None else httpx.HTTPTransport()
        self.provider = provider

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        route = route_of(request.method, request.url.path)
        call = None
        if route is not None and calls.enabled():
            call = calls.start(route, request.url, request.headers, _content(request), self.provider)
        if call is None:
            return self.wrapped.handle_request(request)
        try:
            response = self.wrapped.handle_request(request)
        except BaseException as exc:
            call.fail(exc)
            raise
        call.response(response.status_code, response.headers)
        if response.is_stream_consumed:  # a transport that read the body itself (e.g. httpx.MockTransport)
            call.feed(response.content)
            call.complete()
        else:
            response.stream = _ObservedStream(response.stream, call)  # type: ignore[arg-type]
        return response

    def close(self) -> None:
        self.wrapped.close()


class AsyncLLMObsTransport(httpx.AsyncBaseTransport):
    """The asyncio twin of :class:`LLMObsTransport` (default wrapped: ``httpx.AsyncHTTPTransport()``)."""

    def __init__(self, wrapped: httpx.AsyncBaseTransport | None = None, *, provider: str | None = None) -> None:
        self.wrapped = wrapped if wrapped is not None else httpx.AsyncHTTPTransport()
        self.provider = provider

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = route_of(request.method, request.url.path)
        call = None
        if route is not None and calls.enabled():
            call = calls.start(route, request.url, request.headers, _content(request), self.provider)
        if call is None:
            return await self.wrapped.handle_async_request(request)
        try:
            response = await self.wrapped.handle_async_request(request)
        except BaseException as exc:
            call.fail(exc)
            raise
        call.response(response.status_code, response.headers)
        if response.is_stream_consumed:  # a transport that read the body itself (e.g. httpx.MockTransport)
            call.feed(response.content)
            call.complete()
        else:
            response.stream = _AsyncObservedStream(response.stream, call)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        await self.wrapped.aclose()


# Keyword arguments httpx applies to the transport it builds itself; with ours they go to the wrapped one.
_TRANSPORT_KWARGS = frozenset(
    {"verify", "cert", "trust_env", "http1", "http2", "limits", "proxy", "retries", "local_address", "uds"}
)


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(client kwargs, transport kwargs), with the openai client's defaults: 600 s timeout (5 s to connect),
    redirects followed, up to 1000 connections of which 100 kept alive."""
    transport_kwargs = {k: kwargs.pop(k) for k in _TRANSPORT_KWARGS & kwargs.keys()}
    transport_kwargs.setdefault("limits", httpx.Limits(max_connections=1000, max_keepalive_connections=100))
    kwargs.setdefault("timeout", httpx.Timeout(600.0, connect=5.0))
    kwargs.setdefault("follow_redirects", True)
    return kwargs, transport_kwargs


def http_client(
    *, provider: str | None = None, transport: httpx.BaseTransport | None = None, **kwargs: Any
) -> httpx.Client:
    """An ``httpx.Client`` whose OpenAI-API calls are traced: ``OpenAI(http_client=http_client())``.

    ``transport`` is wrapped if given, else an ``httpx.HTTPTransport`` built with the transport-level
    keyword arguments (``verify``, ``proxy``, ``limits``, ``http2``...); the others go to the client.
    """
    kwargs, transport_kwargs = _split(kwargs)
    wrapped = transport if transport is not None else httpx.HTTPTransport(**transport_kwargs)
    return httpx.Client(transport=LLMObsTransport(wrapped, provider=provider), **kwargs)


def async_http_client(
    *, provider: str | None = None, transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any
) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` twin of :func:`http_client`, for ``AsyncOpenAI``."""
    kwargs, transport_kwargs = _split(kwargs)
    wrapped = transport if transport is not None else httpx.AsyncHTTPTransport(**transport_kwargs)
    return httpx.AsyncClient(transport=AsyncLLMObsTransport(wrapped, provider=provider), **kwargs)
