"""A loopback server that speaks the OpenAI API, for tests and benchmarks without a real provider.

It answers chat completions, completions, embeddings and the Responses API under any path prefix,
streams server-sent events with HTTP/1.1 chunked encoding (one chunk per event, sent at once), and
records every request it receives (headers lower-cased). The request's ``model`` picks a behaviour:

``error-429`` / ``error-400`` / ``error-500``
    an OpenAI error body (``rate_limit_exceeded``, ``context_length_exceeded``, ``server_error``);
``drop``
    a stream whose connection is cut after two events;
``tools``
    a tool call (``get_weather``) instead of text;
``vllm``
    vLLM's per-request ``metrics`` field on the response (or the final usage chunk).

``before_event`` (if set) is called with each event's index before that event is sent, so a test can
hold the stream until the client has read what came before. ``python -m llmobs_openai.testing [N]``
serves on a free port (printed on the first line) until interrupted, answering with N words (default 5).
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import sys
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ERRORS = {
    "error-429": (
        429,
        {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"},
    ),
    "error-400": (
        400,
        {
            "message": "This model's maximum context length is 8192 tokens.",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        },
    ),
    "error-500": (500, {"message": "The server had an error processing your request.", "type": "server_error"}),
}
VLLM_METRICS = {
    "time_to_first_token_ms": 12.5,
    "generation_time_ms": 40.0,
    "queue_time_ms": 1.5,
    "mean_itl_ms": 10.0,
    "tokens_per_second": 80.0,
}
TOOL_ARGUMENTS = '{"city": "Paris"}'
#: The default answer, one word per stream event, and the default usage (input, output, cached input, reasoning).
WORDS = ("Hello", " from", " the", " loopback", " server.")
USAGE = (12, 5, 4, 2)


class FakeOpenAIServer:
    """A threaded loopback server; use as a context manager, or :meth:`start` / :meth:`stop`.

    ``words`` is the answer, streamed one word per event; ``usage`` the token counts it reports
    (input, output, cached input, reasoning). ``reply``, if given, makes the chat and completion answers
    from the request instead: it is called with the request's messages (a completion's prompt as one user
    message) and its text is streamed one word per event. ``content_encoding`` compresses every body as
    providers behind a CDN or gateway do: ``"gzip"``, ``"deflate"`` (zlib data), ``"deflate-raw"`` (raw
    deflate data under ``Content-Encoding: deflate``, as some servers send), ``"br"`` or ``"zstd"``; a
    stream is flushed event by event.
    """

    def __init__(self, words: list[str] | None = None, usage: tuple[int, int, int, int] = USAGE,
                 reply: Callable[[list[dict[str, Any]]], str] | None = None,
                 content_encoding: str | None = None) -> None:  # fmt: skip
        self.words = words or list(WORDS)
        self.usage = usage
        self.reply = reply
        if content_encoding is not None and content_encoding not in ENCODINGS:
            raise ValueError(f"content_encoding must be one of {sorted(ENCODINGS)}, not {content_encoding!r}")
        self.content_encoding = content_encoding
        self.requests: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.before_event: Callable[[int], None] | None = None
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- answers ------------------------------------------------------------------------------------
    def usage_object(self, responses: bool = False) -> dict[str, Any]:
        inp, out, cached, reasoning = self.usage
        if responses:
            return {
                "input_tokens": inp,
                "output_tokens": out,
                "total_tokens": inp + out,
                "input_tokens_details": {"cached_tokens": cached},
                "output_tokens_details": {"reasoning_tokens": reasoning},
            }
        return {
            "prompt_tokens": inp,
            "completion_tokens": out,
            "total_tokens": inp + out,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """(status, JSON body) or (200, iterator of SSE event dicts / the string ``[DONE]``)."""
        model = body.get("model", "")
        if model in _ERRORS:
            status, error = _ERRORS[model]
            return status, {"error": {"param": None, "code": None, **error}}
        stream = body.get("stream") is True
        if path.endswith("/chat/completions"):
            return 200, self._chat_events(body) if stream else self._chat(body)
        if path.endswith("/completions"):
            return 200, self._completion_events(body) if stream else self._completion(body)
        if path.endswith("/embeddings"):
            return 200, self._embeddings(body)
        if path.endswith("/responses"):
            return 200, self._response_events(body) if stream else self._response(body, "completed")
        return 404, {"error": {"message": f"no route {path}", "type": "invalid_request_error", "code": None}}

    def _pieces(self, body: dict[str, Any], chat: bool) -> list[str]:
        """The answer's text, one word per piece: ``words``, or what ``reply`` makes of the request."""
        if self.reply is None:
            return self.words
        messages = (body.get("messages") or []) if chat else [{"role": "user", "content": body.get("prompt", "")}]
        return [w if i == 0 else f" {w}" for i, w in enumerate(self.reply(messages).split())]

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("model", "")
        if model == "tools":
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": "".join(self._pieces(body, True))}, "stop"
        answer = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": f"{model}-served",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": self.usage_object(),
        }
        if model == "vllm":
            answer["metrics"] = VLLM_METRICS
        return answer

    def _chat_events(self, body: dict[str, Any]) -> Iterator[Any]:
        model = body.get("model", "")
        head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": f"{model}-served"}
        yield {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        if model == "tools":
            first = {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
            yield {**head, "choices": [{"index": 0, "delta": {"tool_calls": [first]}, "finish_reason": None}]}
            for piece in (TOOL_ARGUMENTS[:9], TOOL_ARGUMENTS[9:]):
                delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                yield {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            finish = "tool_calls"
        else:
            for word in self._pieces(body, True):
                yield {**head, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            finish = "stop"
        yield {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        if (body.get("stream_options") or {}).get("include_usage"):
            final = {**head, "choices": [], "usage": self.usage_object()}
            if model == "vllm":
                final["metrics"] = VLLM_METRICS
            yield final
        yield "[DONE]"

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        choice = {"index": 0, "text": "".join(self._pieces(body, False)), "finish_reason": "length"}
        return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": body.get("model"),
                "choices": [choice], "usage": self.usage_object()}  # fmt: skip

    def _completion_events(self, body: dict[str, Any]) -> Iterator[Any]:
        head = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": body.get("model")}
        for word in self._pieces(body, False):
            yield {**head, "choices": [{"index": 0, "text": word, "finish_reason": None}]}
        yield {**head, "choices": [{"index": 0, "text": "", "finish_reason": "length"}]}
        if (body.get("stream_options") or {}).get("include_usage"):
            yield {**head, "choices": [], "usage": self.usage_object()}
        yield "[DONE]"

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else 1
        dimensions = body.get("dimensions") or 8
        vector = [round(0.1 * (i + 1), 3) for i in range(dimensions)]
        if body.get("encoding_format") == "base64":
            encoded: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        else:
            encoded = vector
        data = [{"object": "embedding", "index": i, "embedding": encoded} for i in range(count)]
        inp = self.usage[0]
        return {"object": "list", "data": data, "model": body.get("model"),
                "usage": {"prompt_tokens": inp, "total_tokens": inp}}  # fmt: skip

    def _response(self, body: dict[str, Any], status: str) -> dict[str, Any]:
        model = body.get("model", "")
        if model == "tools":
            output = [{"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
                       "arguments": TOOL_ARGUMENTS, "status": "completed"}]  # fmt: skip
        else:
            text = {"type": "output_text", "text": "".join(self.words), "annotations": []}
            output = [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": [text]}]
        return {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "status": status,
            "model": f"{model}-served",
            "output": output if status == "completed" else [],
            "usage": self.usage_object(responses=True) if status == "completed" else None,
            "error": None,
            "incomplete_details": None,
        }

    def _response_events(self, body: dict[str, Any]) -> Iterator[Any]:
        created = self._response(body, "in_progress")
        done = self._response(body, "completed")
        item, text = done["output"][0], "".join(self.words)
        where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
        part = {"type": "output_text", "text": "", "annotations": []}
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": created},
            {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}},
            {"type": "response.content_part.added", **where, "part": part},
            *({"type": "response.output_text.delta", **where, "delta": w, "logprobs": []} for w in self.words),
            {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **where, "part": {**part, "text": text}},
            {"type": "response.output_item.done", "output_index": 0, "item": item},
            {"type": "response.completed", "response": done},
        ]
        for number, event in enumerate(events):
            yield {**event, "sequence_number": number}


_WBITS = {"gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS, "deflate-raw": -zlib.MAX_WBITS}
#: Every ``content_encoding`` the server takes; ``br`` and ``zstd`` need ``brotli`` and ``zstandard``.
ENCODINGS = (*_WBITS, "br", "zstd")


class _Compressor:
    """One body's compressor: :meth:`chunk` compresses and flushes what it was given (an event reaches the
    client at once), :meth:`end` finishes the body."""

    def __init__(self, encoding: str) -> None:
        self._flush: Callable[[], bytes]
        if encoding == "br":
            import brotli

            self._object = brotli.Compressor()
            self._compress, self._flush, self._end = self._object.process, self._object.flush, self._object.finish
        elif encoding == "zstd":
            import zstandard

            self._object = zstandard.ZstdCompressor().compressobj()
            self._compress, self._end = self._object.compress, self._object.flush
            self._flush = lambda: self._object.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        else:
            self._object = zlib.compressobj(wbits=_WBITS[encoding])
            self._compress, self._end = self._object.compress, self._object.flush
            self._flush = lambda: self._object.flush(zlib.Z_SYNC_FLUSH)

    def chunk(self, data: bytes) -> bytes:
        return self._compress(data) + self._flush()

    def end(self) -> bytes:
        return self._end()


def sse_event(event: Any) -> bytes:
    """One event of :meth:`FakeOpenAIServer.answer`'s stream as the server sends it: its ``data`` line (JSON,
    or the text ``[DONE]``), after an ``event`` line naming a Responses API event's type."""
    data = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
    named = f"event: {event['type']}\n" if isinstance(event, dict) and "type" in event else ""
    return f"{named}data: {data}\n\n".encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that went away is no error here
            super().handle_error(request, client_address)


def _handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            body = json.loads(raw) if raw else {}
            headers = {k.lower(): v for k, v in self.headers.items()}
            server.requests.append({"path": self.path, "headers": headers, "body": body})
            status, answer = server.answer(self.path.split("?", 1)[0], body)
            if isinstance(answer, dict):
                self._json(status, answer)
            else:
                self._events(answer, drop=body.get("model") == "drop")

        def _json(self, status: int, answer: dict[str, Any]) -> None:
            data = json.dumps(answer).encode()
            compressor = self._compressor()
            if compressor is not None:
                data = compressor.chunk(data) + compressor.end()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self._encoding_header()
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _events(self, events: Iterator[Any], drop: bool) -> None:
            compressor = self._compressor()
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self._encoding_header()
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for index, event in enumerate(events):
                if drop and index == 2:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if server.before_event is not None:
                    server.before_event(index)
                payload = sse_event(event)
                if compressor is not None:
                    payload = compressor.chunk(payload)
                self._chunk(payload)
            if compressor is not None:
                self._chunk(compressor.end())
            self.wfile.write(b"0\r\n\r\n")

        def _chunk(self, payload: bytes) -> None:
            if payload:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))

        def _compressor(self) -> _Compressor | None:
            """A compressor for the server's ``content_encoding``; None for identity."""
            encoding = server.content_encoding
            return None if encoding is None else _Compressor(encoding)

        def _encoding_header(self) -> None:
            if server.content_encoding is not None:
                self.send_header("content-encoding", server.content_encoding.split("-")[0])

    return Handler


if __name__ == "__main__":
    words = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    with FakeOpenAIServer([f" w{i}" for i in range(words)] if words else None) as fake:
        print(fake.port, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            sys.exit(0)
