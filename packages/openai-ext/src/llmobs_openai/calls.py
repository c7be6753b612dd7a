"""One traced call, from its request to the end of its response body.

:func:`start` reads the request (its JSON body parsed once), starts the span and puts its W3C trace
context in the request headers. The transport then hands the call every response chunk the
application reads (:meth:`Call.feed`) and tells it how the body ended: read to its end, closed
early, dropped by the network, or garbage-collected unread. Every method here swallows its own
failures (counted in ``llmobs.selfstats``): the application's request and bytes never depend on it.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from llmobs import config, get_recorder, selfstats
from llmobs import semconv as sc
from llmobs.recorder import SpanHandle
from llmobs_openai import bodies, messages, payloads, propagation, routes
from llmobs_openai.routes import Api, Route
from llmobs_openai.sse import SSEParser
from llmobs_openai.streams import ChatStream, ResponsesStream

FRAMEWORK = "openai"
_DEFAULT_PORTS = {"https": 443, "http": 80}


def start(
    route: Route,
    url: Any,
    headers: MutableMapping[str, str],
    content: bytes | None,
    provider: str | None,
) -> Call | None:
    """Start tracing a recognised request (``url`` an httpx URL); None (counted) if that failed."""
    handle = None
    try:
        body = payloads.loads(content) if content else {}
        if not isinstance(body, dict):
            body = {}
        api = route.api
        model = body.get("model")
        if not isinstance(model, str):
            model = routes.azure_deployment(url.path)
        host = url.host
        recorder = get_recorder()
        handle = recorder.start(
            route.operation, parent=propagation.incoming(headers), provider=provider or routes.provider_of(host),
            model=model, framework=FRAMEWORK,
        )  # fmt: skip
        params = payloads.request_params(body, api)
        handle.set_request(server_address=host, server_port=url.port or _DEFAULT_PORTS.get(url.scheme), **params)
        if api is Api.EMBEDDINGS:
            _embeddings_request(handle, body)
        mode = recorder.derived.policy.mode
        capture = handle.is_recording and (mode.on_span or mode.on_event)
        if capture:
            messages.set_input(handle, body, api)
        propagation.inject(headers, handle)
        return Call(handle, api, capture, params.get("stream") is True)
    except Exception as exc:
        selfstats.failure("openai.start_failed", exc)
        if handle is not None:  # the call goes on untraced: do not leave its span open
            handle.end(cancelled=True, reason="instrumentation_failed")
        return None


def _embeddings_request(handle: SpanHandle, body: dict[str, Any]) -> None:
    inputs = body.get("input")
    count = len(inputs) if isinstance(inputs, list) and not (inputs and type(inputs[0]) is int) else 1
    handle.set_attribute(sc.EMBEDDINGS_INPUT_COUNT, count)
    dimensions = payloads.integer(body.get("dimensions"))
    if dimensions is not None:
        handle.set_attribute(sc.EMBEDDINGS_DIMENSION_COUNT, dimensions)


def enabled() -> bool:
    """Whether the integration is on; read per request so that it can be turned off live."""
    return config.current().integration_enabled(FRAMEWORK)


class Call:
    """The span of one call and the reader of its response body (a whole JSON body or an event stream)."""

    __slots__ = ("api", "capture", "ended", "events", "handle", "parser", "status", "stream_requested", "tap")

    def __init__(self, handle: SpanHandle, api: Api, capture: bool, stream_requested: bool) -> None:
        self.handle = handle
        self.api = api
        self.capture = capture
        self.stream_requested = stream_requested
        self.status = 0
        self.tap: bodies.BodyTap | None = None
        self.parser: SSEParser | None = None
        self.events: ChatStream | ResponsesStream | None = None
        self.ended = False

    def response(self, status: int, headers: Mapping[str, str]) -> None:
        """The response head arrived: choose how its body will be read."""
        try:
            self.status = status
            content_type = headers.get("content-type", "")
            streamed = "event-stream" in content_type or (self.stream_requested and "json" not in content_type)
            if status < 400 and streamed:
                self.parser = SSEParser()
                if self.api is Api.RESPONSES:
                    self.events = ResponsesStream(self.handle, self.capture)
                else:
                    budget = config.current().max_attribute_bytes
                    self.events = ChatStream(self.handle, self.api, self.capture, budget)
            else:
                self.tap = bodies.tap_for(self.api, status)
        except Exception as exc:
            self._broken(exc)

    def feed(self, chunk: bytes) -> None:
        """A chunk of the body, just before the application gets it."""
        try:
            parser = self.parser
            if parser is not None:
                events = self.events
                for data in parser.feed(chunk):
                    events.event(data)
                if parser.overflowed:
                    self._broken(None, "openai.event_too_large")
            elif self.tap is not None:
                self.tap.feed(chunk)
        except Exception as exc:
            self._broken(exc)

    def complete(self) -> None:
        """The body was read to its end."""
        self._end()

    def close(self) -> None:
        """The application closed the response; before its end, the call is cancelled."""
        if self.ended:
            return
        events = self.events
        if events is not None and events.done:
            self._end()  # the stream said its last word ([DONE] or a final event): nothing was lost
        else:
            self._end(cancelled="closed_early")

    def abandon(self) -> None:
        """The response was garbage-collected without being closed."""
        if not self.ended:
            self._end(cancelled="garbage_collected")

    def fail(self, error: BaseException) -> None:
        """The request or the body's transfer failed (connection refused, dropped, timed out...)."""
        self._end(error=error)

    def _broken(self, exc: BaseException | None, kind: str = "openai.observe_failed") -> None:
        """Our reading failed: stop reading, keep what the span has, let the bytes flow."""
        if exc is None:
            selfstats.count(kind)
        else:
            selfstats.failure(kind, exc)
        self.parser = self.events = self.tap = None

    def _end(self, error: BaseException | None = None, cancelled: str | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        handle = self.handle
        reported: str | None = None
        try:
            if self.events is not None:
                reported = self.events.finish_span()
            elif self.tap is not None:
                reported = bodies.finish_span(handle, self.api, self.status, self.tap, self.capture)
            elif self.status >= 400:
                reported = f"http.{self.status}"
        except Exception as exc:
            selfstats.failure("openai.observe_failed", exc)
        self.parser = self.events = self.tap = None
        if error is not None:
            handle.end(error=error)
        elif reported is not None:
            handle.end(error=reported)
        elif cancelled is not None:
            handle.end(cancelled=True, reason=cancelled)
        else:
            handle.end()
