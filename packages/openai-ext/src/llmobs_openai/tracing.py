"""What a tracing transport does, whichever httpx it plugs into (``httpx``, or ``httpx2`` which openai ≥ 3
uses by default): the two libraries share their transport and stream interfaces but not their classes,
and each client checks that streams are its own. So the behaviour lives in these mixins, and each
library gets thin classes that combine them with its base classes (``transport``, ``httpx2_transport``).

The transport wraps another one and sees each request before it is sent and each response body as the
application reads it: the body stream is replaced by one that hands every chunk to the call's reader
on its way to the application — nothing held back, no delay beyond noting the chunk (a stream's events are
cut out and timed there, and read later: see ``calls``).
Requests that are not OpenAI-API calls, or that arrive while the integration is disabled, go straight
to the wrapped transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

from llmobs_openai import calls
from llmobs_openai.calls import Call
from llmobs_openai.routes import route_of


class SyncObserving:
    """A response body stream that hands each chunk to its call before the application gets it."""

    def __init__(self, stream: Any, call: Call) -> None:
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


class AsyncObserving:
    """The asyncio twin of :class:`SyncObserving`."""

    def __init__(self, stream: Any, call: Call) -> None:
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


class Tracing:
    """Request and response handling shared by the sync and async transports of either library.

    Subclasses set ``http`` (the httpx-like module), ``default_transport`` (its transport class to wrap
    when none is given) and ``observed`` (their body-stream class).
    """

    http: ModuleType
    default_transport: type
    observed: type

    def __init__(self, wrapped: Any = None, *, provider: str | None = None) -> None:
        self.wrapped = wrapped if wrapped is not None else self.default_transport()
        self.provider = provider

    def _start(self, request: Any) -> Call | None:
        route = route_of(request.method, request.url.path)
        if route is None or not calls.enabled():
            return None
        try:
            content = request.content
        except self.http.RequestNotRead:  # a streamed upload: not an OpenAI-API JSON body
            content = None
        return calls.start(route, request.url, request.headers, content, self.provider)

    def _observe(self, response: Any, call: Call) -> Any:
        consumed = response.is_stream_consumed  # a transport that read (and decoded) the body itself
        call.response(response.status_code, response.headers, decoded=consumed)
        if consumed:
            call.feed(response.content)
            call.complete()
        else:
            response.stream = self.observed(response.stream, call)
        return response


class SyncTracing(Tracing):
    def handle_request(self, request: Any) -> Any:
        call = self._start(request)
        if call is None:
            return self.wrapped.handle_request(request)
        try:
            response = self.wrapped.handle_request(request)
        except BaseException as exc:
            call.fail(exc)
            raise
        return self._observe(response, call)

    def close(self) -> None:
        self.wrapped.close()


class AsyncTracing(Tracing):
    async def handle_async_request(self, request: Any) -> Any:
        call = self._start(request)
        if call is None:
            return await self.wrapped.handle_async_request(request)
        try:
            response = await self.wrapped.handle_async_request(request)
        except BaseException as exc:
            call.fail(exc)
            raise
        return self._observe(response, call)

    async def aclose(self) -> None:
        await self.wrapped.aclose()


# Keyword arguments a client applies to the transport it builds itself; with ours they go to the wrapped one.
_TRANSPORT_KWARGS = frozenset(
    {"verify", "cert", "trust_env", "http1", "http2", "limits", "proxy", "retries", "local_address", "uds"}
)


def make_client(
    client_class: type, tracing_class: type, provider: str | None, transport: Any, kwargs: dict[str, Any]
) -> Any:
    """A client whose transport traces, with the openai client's own defaults: 600 s timeout (5 s to
    connect), redirects followed, up to 1000 connections of which 100 kept alive; and, as a client that
    builds its own transport, the proxies of the environment (``HTTPS_PROXY``, ``NO_PROXY``...)."""
    http = tracing_class.http
    transport_kwargs = {k: kwargs.pop(k) for k in _TRANSPORT_KWARGS & kwargs.keys()}
    transport_kwargs.setdefault("limits", http.Limits(max_connections=1000, max_keepalive_connections=100))
    kwargs.setdefault("timeout", http.Timeout(600.0, connect=5.0))
    kwargs.setdefault("follow_redirects", True)
    if transport is None and transport_kwargs.get("trust_env", True) and transport_kwargs.get("proxy") is None:
        # httpx reads the environment's proxies only for a transport it builds itself: mount them as it would,
        # each proxy's transport traced too, before the application's own mounts (which win, as in httpx).
        mounts = {
            pattern: None if url is None else tracing_class(
                tracing_class.default_transport(proxy=url, **transport_kwargs), provider=provider
            )
            for pattern, url in _environment_proxies(http).items()
        }  # fmt: skip
        if mounts:
            kwargs["mounts"] = {**mounts, **(kwargs.get("mounts") or {})}
    wrapped = transport if transport is not None else tracing_class.default_transport(**transport_kwargs)
    return client_class(transport=tracing_class(wrapped, provider=provider), **kwargs)


def _environment_proxies(http: ModuleType) -> dict[str, str | None]:
    """The library's own reading of the proxy environment variables: URL pattern -> proxy URL (None: direct)."""
    utils = getattr(http, "_utils", None)
    read = getattr(utils, "get_environment_proxies", None)
    return dict(read()) if read is not None else {}
