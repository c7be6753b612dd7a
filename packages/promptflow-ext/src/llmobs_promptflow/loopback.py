"""A loopback server that speaks the OpenAI API, so Promptflow's traced ``openai`` client runs without a network.

It answers ``/chat/completions`` (JSON, or server-sent events when ``stream`` is true, with the final usage
chunk when ``stream_options.include_usage`` asks for it), ``/completions`` and ``/embeddings``, under any
path prefix. The demo and the tests use it; a model named ``error-429`` gets OpenAI's rate-limit error.
Token counts are words, so tests can predict them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RATE_LIMITED = "error-429"
_RATE_LIMIT = {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}


def words(text: Any) -> int:
    """The token count the server reports for ``text``: its number of words."""
    return len(str(text).split())


def echo(messages: list[dict[str, Any]]) -> str:
    """The default answer: the last message's text, repeated back."""
    return f"You said: {messages[-1].get('content') if messages else ''}"


class LoopbackOpenAI:
    """A threaded server on 127.0.0.1; use as a context manager. ``answer`` turns the request's messages into
    the reply, which streams one word per event."""

    def __init__(self, answer: Callable[[list[dict[str, Any]]], str] = echo) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-openai", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> LoopbackOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def respond(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """(status, JSON body), or (200, iterator of SSE payloads) for a stream."""
        model = body.get("model", "")
        if model == RATE_LIMITED:
            return 429, {"error": {"param": None, **_RATE_LIMIT}}
        if path.endswith("/embeddings"):
            return 200, _embeddings(body)
        chat = path.endswith("/chat/completions")
        messages = body.get("messages") if chat else [{"role": "user", "content": body.get("prompt", "")}]
        text = self.answer(messages or [])
        prompt_tokens = sum(words(m.get("content", "")) for m in messages or [])
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": words(text),
                 "total_tokens": prompt_tokens + words(text)}  # fmt: skip
        head = {"id": "cmpl-loopback", "created": 1, "model": f"{model}-0601"}
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return 200, _events(head, text, usage if include_usage else None, chat)
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            return 200, {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        choice = {"index": 0, "text": text, "finish_reason": "stop"}
        return 200, {**head, "object": "text_completion", "choices": [choice], "usage": usage}


def _events(head: dict[str, Any], text: str, usage: dict[str, int] | None, chat: bool) -> Iterator[Any]:
    pieces = [w if i == 0 else f" {w}" for i, w in enumerate(text.split())]
    if chat:
        head = {**head, "object": "chat.completion.chunk"}
        yield {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        for piece in pieces:
            yield {**head, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        yield {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    else:
        head = {**head, "object": "text_completion"}
        for piece in pieces:
            yield {**head, "choices": [{"index": 0, "text": piece, "finish_reason": None}]}
        yield {**head, "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}
    if usage is not None:
        yield {**head, "choices": [], "usage": usage}
    yield "[DONE]"


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input")
    texts = inputs if isinstance(inputs, list) and inputs and isinstance(inputs[0], str) else [inputs]
    data = [{"object": "embedding", "index": i, "embedding": [0.1 * (i + 1)] * 8} for i in range(len(texts))]
    tokens = sum(words(t) for t in texts)
    return {"object": "list", "data": data, "model": f"{body.get('model')}-0601",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip


def _handler(server: LoopbackOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            body = json.loads(raw) if raw else {}
            server.requests.append({"path": self.path, "body": body})
            status, answer = server.respond(self.path.split("?", 1)[0], body)
            if isinstance(answer, dict):
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for event in answer:
                data = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
                payload = f"data: {data}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

    return Handler
