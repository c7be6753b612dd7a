"""One traced call, from its request to the end of its response body.

:func:`start` parses the request's JSON body (once), starts the span and puts its W3C trace context in the
request headers; what else the body says (parameters, input content) is read when the call is finished. The
transport then hands the call every response chunk the application reads (:meth:`Call.feed`) and tells it how
the body ended: read to its end, closed early, dropped by the network, or garbage-collected unread. A streamed
body's events are only cut out and timed as they arrive; what they say is read a batch of events at a time (at
most :data:`HOLD_EVENTS` events or :data:`HOLD_BYTES` bytes held), mostly when the call is finished. Every
method here swallows its own failures (counted in ``llmobs.selfstats``): the application's request and bytes
never depend on it.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from time import perf_counter_ns
from typing import Any

from llmobs import config, get_recorder, selfstats
from llmobs import semconv as sc
from llmobs.recorder import INTERRUPTS, SpanHandle
from llmobs_openai import bodies, messages, payloads, propagation, routes
from llmobs_openai.decoding import Decoder, UnsupportedEncoding
from llmobs_openai.headers import values as header_values
from llmobs_openai.routes import Api, Route
from llmobs_openai.sse import SSEParser
from llmobs_openai.streams import ChatStream, ResponsesStream

FRAMEWORK = "openai"
#: Calls answered with a redirect, by the ``traceparent`` put in their request (which the client copies into
#: the redirected request): the parent they had and their body (which the client re-sends unread). Bounded:
#: a client that does not follow redirects leaves its entries behind.
_REDIRECTED: dict[str, tuple[Any, bytes | None]] = {}
_REDIRECTED_MAX = 256
_DEFAULT_PORTS = {"https": 443, "http": 80}
_BODY_HEADERS = (b"content-encoding", b"content-type")
#: A stream's events held unread at most, by count and by the bytes of the chunks that brought them: between
#: the application's reads of its chunks, each event is only cut out and its arrival time taken; they are read
#: together, warm, when these fill or the call is finished (a 50-chunk answer: all at its finish).
HOLD_EVENTS = 64
HOLD_BYTES = 64 << 10


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
        parent, carried = propagation.incoming(headers)
        if parent is not None and _REDIRECTED:
            followed = _REDIRECTED.pop(parent["traceparent"], None)
            if followed is not None:  # our own request again, redirected: its caller's parent, its body
                parent, original = followed
                content = content if content is not None else original
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
            route.operation, parent=parent, provider=provider or routes.provider_of(host), model=model,
            framework=FRAMEWORK,
        )  # fmt: skip
        mode = recorder.derived.policy.mode
        capture = handle.is_recording and (mode.on_span or mode.on_event)
        propagation.inject(headers, handle, carried)
        stream_requested = api is not Api.EMBEDDINGS and body.get("stream") is True
        return Call(handle, api, capture, stream_requested, request=(parent, content), body=body, url=url)
    except Exception as exc:
        selfstats.failure("openai.start_failed", exc)
        if handle is not None:  # the call goes on untraced: do not leave its span open
            handle.end(cancelled=True, reason="instrumentation_failed")
        return None


def _remember_redirect(handle: SpanHandle, request: tuple[Any, bytes | None]) -> None:
    traceparent = handle.inject({}).get("traceparent")
    if traceparent is None:
        return
    _REDIRECTED[traceparent] = request
    try:
        while len(_REDIRECTED) > _REDIRECTED_MAX:
            del _REDIRECTED[next(iter(_REDIRECTED))]
    except (KeyError, RuntimeError, StopIteration):  # another thread got there first
        pass


def _read_request(handle: SpanHandle, api: str, body: dict[str, Any], url: Any, json_size: int | None,
                  capture: bool) -> None:
    """What the request said — parameters, server, input content — read when the call is finished, with
    other calls' (its body is parsed JSON, its URL an immutable httpx URL, both this call's own): on the
    request's path only the span starts."""
    port = url.port or _DEFAULT_PORTS.get(url.scheme)
    handle.set_request(server_address=url.host, server_port=port, **payloads.request_params(body, api))
    if api is Api.EMBEDDINGS:
        _embeddings_request(handle, body)
    if capture:
        messages.set_input(handle, body, api, json_size)


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

    __slots__ = (
        "api", "body", "capture", "decoder", "ended", "events", "handle", "held", "held_bytes", "parser", "request",
        "status", "stream_requested", "tap", "url",
    )  # fmt: skip

    def __init__(
        self,
        handle: SpanHandle,
        api: str,
        capture: bool,
        stream_requested: bool,
        *,
        request: tuple[Any, bytes | None] | None = None,
        body: dict[str, Any] | None = None,
        url: Any = None,
    ) -> None:
        self.handle = handle
        self.api = api
        self.capture = capture
        self.stream_requested = stream_requested
        self.status = 0
        self.tap: bodies.BodyTap | None = None
        self.parser: SSEParser | None = None
        self.events: ChatStream | ResponsesStream | None = None
        self.decoder: Decoder | None = None
        self.held: list[tuple[int, bytes]] | None = None  # a stream's events not read yet: (arrival, data)
        self.held_bytes = 0
        self.request = request  # the request's parent context and body (the bytes)
        self.body = body  # the request's body, parsed; read at the call's finish
        self.url = url  # the request's URL (httpx's)
        self.ended = False

    def response(self, status: int, headers: Mapping[str, str], *, decoded: bool = False) -> None:
        """The response head arrived: choose how its body will be read (``decoded``: the body will be fed
        already decompressed, not as it came off the wire)."""
        try:
            self.status = status
            if 300 <= status < 400 and self.request is not None:
                _remember_redirect(self.handle, self.request)
            encoding, content_type = header_values(headers, _BODY_HEADERS)
            if encoding and not decoded:
                try:
                    self.decoder = Decoder(encoding) or None
                except UnsupportedEncoding:
                    selfstats.count("openai.unsupported_encoding")
                    return  # nothing of the body is read: the span keeps the status
            content_type = content_type or ""
            streamed = "event-stream" in content_type or (self.stream_requested and "json" not in content_type)
            if status < 400 and streamed:
                self.parser = SSEParser()
                self.held = []
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
            if self.decoder is not None:
                chunk = self.decoder.decode(chunk)
            parser = self.parser
            if parser is not None:
                arrived = perf_counter_ns()
                held = self.held
                for data in parser.feed(chunk):
                    held.append((arrived, data))
                self.held_bytes += len(chunk)
                if parser.overflowed:
                    self._read_held()
                    self._broken(None, "openai.event_too_large")
                elif len(held) >= HOLD_EVENTS or self.held_bytes > HOLD_BYTES:
                    self._read_held()
            elif self.tap is not None:
                self.tap.feed(chunk)
        except Exception as exc:
            self._broken(exc)

    def complete(self) -> None:
        """The body was read to its end."""
        decoder = self.decoder
        if decoder is not None:
            try:
                rest = decoder.flush()
                self.decoder = None
                if rest:
                    self.feed(rest)
            except Exception as exc:
                self._broken(exc)
        self._end()

    def close(self) -> None:
        """The application closed the response; before its end, the call is cancelled — unless the stream had
        said its last word ([DONE] or a final event), which its finish tells once its events are read."""
        if not self.ended:
            self._end(cancelled="closed_early")

    def abandon(self) -> None:
        """The response was garbage-collected without being closed (called from a finalizer)."""
        if not self.ended:
            self._end(cancelled="garbage_collected", finalizer=True)

    def fail(self, error: BaseException) -> None:
        """The request or the body's transfer failed (connection refused, dropped, timed out...), or the
        application was interrupted meanwhile (its task cancelled, Ctrl-C): then the call is cancelled."""
        if isinstance(error, INTERRUPTS):
            self._end(cancelled="cancelled")
        else:
            self._end(error=error)

    def _read_held(self) -> None:
        """Read the stream's events held so far, in order, each at the time it arrived."""
        held, self.held, self.held_bytes = self.held, [], 0
        if held:
            event = self.events.event
            for arrived, data in held:
                event(data, arrived)

    def _broken(self, exc: BaseException | None, kind: str = "openai.observe_failed") -> None:
        """Our reading failed: stop reading, keep what the span has, let the bytes flow."""
        if exc is None:
            selfstats.count(kind)
        else:
            selfstats.failure(kind, exc)
        self._stop_reading()

    def _stop_reading(self) -> None:
        """Drop the body's readers and whatever they hold: nothing more is read."""
        self.parser = self.events = self.tap = self.decoder = self.held = None

    def _end(self, error: BaseException | None = None, cancelled: str | None = None, finalizer: bool = False) -> None:
        """The call ended now; what its body says is read, and its span ended, with other calls' on the core's
        finisher (all of it data this call owns: the bytes it kept, the events it folded) — at once when it
        failed: the exception is not this call's own (its traceback holds the application's frames and it
        may still change), so its message and stack are read as they are now."""
        if self.ended:
            return
        self.ended = True
        handle = self.handle
        end_ns = handle.clock_ns()
        if error is not None:
            self._finish(end_ns, error, cancelled)
        else:
            handle.finish_later(lambda: self._finish(end_ns, None, cancelled), finalizer=finalizer)

    def _finish(self, end_ns: int, error: BaseException | None, cancelled: str | None) -> None:
        handle = self.handle
        reported: str | None = None
        body, self.body = self.body, None
        if body is not None:
            try:
                content = self.request[1] if self.request is not None else None
                _read_request(handle, self.api, body, self.url, len(content) if content else None, self.capture)
            except Exception as exc:
                selfstats.failure("openai.request_failed", exc)
        try:
            events = self.events
            if events is not None:
                self._read_held()
                if cancelled == "closed_early" and events.done:
                    cancelled = None  # closed after the stream's last word: nothing was lost
                reported = events.finish_span()
            elif self.tap is not None:
                reported = bodies.finish_span(handle, self.api, self.status, self.tap, self.capture)
            elif self.status >= 400:
                reported = f"http.{self.status}"
        except Exception as exc:
            selfstats.failure("openai.observe_failed", exc)
        self._stop_reading()
        if error is not None:
            handle.end(error=error, end_time_ns=end_ns)
        elif reported is not None:
            handle.end(error=reported, end_time_ns=end_ns)
        elif cancelled is not None:
            handle.end(cancelled=True, reason=cancelled, end_time_ns=end_ns)
        else:
            handle.end(end_time_ns=end_ns)
