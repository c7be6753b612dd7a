"""Whole (non-streamed) response bodies: kept as they pass, within bounds, and read once at their end.

A body up to ``head_limit`` bytes is kept whole and parsed once. Past that only its head and its last
``TAIL_BYTES`` are kept, and usage, model and id are found by scanning: in JSON a quoted key can only
be a key (quotes inside strings are escaped), and these sit at the top level at either end of the
body — id and model first in its head (chat, completions, Responses), usage last in its tail.
Embeddings are always read that way: their bulk is numbers (or base64), which only costs time to
parse, and their model and ``usage`` come last.
"""

from __future__ import annotations

import json
from typing import Any

from llmobs import selfstats
from llmobs import semconv as sc
from llmobs.recorder import SpanHandle
from llmobs_openai import messages, payloads, streams
from llmobs_openai.routes import Api

MAX_JSON_BYTES = 4 << 20
EMBEDDINGS_HEAD_BYTES = 128 << 10
TAIL_BYTES = 16 << 10
_DECODER = json.JSONDecoder()
_SPACE = (b" ", b"\n", b"\r", b"\t")


class BodyTap:
    """The bytes of a body as they pass: all of it up to ``head_limit``, then the head and a rolling tail
    (which may overlap the head)."""

    __slots__ = ("head", "head_limit", "head_size", "overflowed", "tail", "tail_size")

    def __init__(self, head_limit: int) -> None:
        self.head: list[bytes] = []
        self.head_size = 0
        self.head_limit = head_limit
        self.tail: list[bytes] = []
        self.tail_size = 0
        self.overflowed = False

    def feed(self, chunk: bytes) -> None:
        if not self.overflowed:
            if self.head_size + len(chunk) <= self.head_limit:
                self.head.append(chunk)
                self.head_size += len(chunk)
                return
            self.overflowed = True
            room = self.head_limit - self.head_size
            if room:  # the head is the body's first head_limit bytes, however the body was cut into chunks
                self.head.append(chunk[:room])
                self.head_size += room
        tail = self.tail
        tail.append(chunk)
        self.tail_size += len(chunk)
        while len(tail) > 1 and self.tail_size - len(tail[0]) >= TAIL_BYTES:
            self.tail_size -= len(tail.pop(0))

    def parts(self) -> tuple[bytes, bytes]:
        """(head, tail); the tail is empty when the head is the whole body."""
        return b"".join(self.head), b"".join(self.tail)


def tap_for(api: str, status: int) -> BodyTap:
    return BodyTap(EMBEDDINGS_HEAD_BYTES if api is Api.EMBEDDINGS and status < 400 else MAX_JSON_BYTES)


def finish_span(handle: SpanHandle, api: str, status: int, tap: BodyTap, capture: bool) -> str | None:
    """Record what a finished body says; the error type when the call failed."""
    head, tail = tap.parts()
    if status >= 400:
        handle.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, status)
        return payloads.error_type(_loads(head) if not tail else None, f"http.{status}")
    if api is Api.EMBEDDINGS or tail:
        if tail and api is not Api.EMBEDDINGS:
            selfstats.count("openai.response_too_large")
        _scan(handle, api, head, tail)
        return None
    body = _loads(head)
    if not isinstance(body, dict):
        selfstats.count("openai.response_unreadable")
        return None
    if api is Api.RESPONSES:
        return streams.apply_response(handle, body, capture, len(head))
    if isinstance(body.get("error"), dict) and not body.get("choices"):  # a gateway's error sent with HTTP 200
        return payloads.error_type(body, "response_error")
    choices = body.get("choices")
    choices = choices if isinstance(choices, list) else []
    output = None
    if capture:
        output = messages.completion_output(choices) if api is Api.COMPLETIONS else messages.chat_output(choices)
    response_id, model = body.get("id"), body.get("model")
    handle.set_output(
        output,
        finish_reasons=[c["finish_reason"] for c in choices if isinstance(c, dict) and c.get("finish_reason")],
        response_id=response_id if isinstance(response_id, str) else None,
        response_model=model if isinstance(model, str) else None,
        json_size=len(head),
    )
    payloads.set_usage(handle, body.get("usage"))
    metrics = body.get("metrics")
    if metrics is not None:  # vLLM's, on request
        payloads.set_vllm_metrics(handle, metrics)
    return None


def _loads(data: bytes) -> Any:
    try:
        return payloads.loads(data)
    except ValueError:
        return None


def _scan(handle: SpanHandle, api: str, head: bytes, tail: bytes) -> None:
    ends = (tail, head) if tail else (head,)
    if api is Api.EMBEDDINGS:  # the vectors first, then model and usage
        model, response_id = _value_of(b"model", ends), None
    else:  # id and model open the object, before content whose own "id"/"model" keys (tool configs...) follow
        model, response_id = _value_of(b"model", (head,), last=False), _value_of(b"id", (head,), last=False)
    handle.set_output(
        response_id=response_id if isinstance(response_id, str) else None,
        response_model=model if isinstance(model, str) else None,
    )
    payloads.set_usage(handle, _value_of(b"usage", ends))
    if api is Api.EMBEDDINGS:
        dimensions = _first_embedding_size(head)
        if dimensions:
            handle.set_attribute(sc.EMBEDDINGS_DIMENSION_COUNT, dimensions)


def _value_of(key: bytes, ends: tuple[bytes, ...], *, last: bool = True) -> Any:
    """The value of the last (or first) ``"key":`` in the first of ``ends`` that has one."""
    for data in ends:
        start = _after_key(data, key, last=last)
        if start is None:
            continue
        text = data[start : start + TAIL_BYTES].decode("utf-8", "replace")
        try:
            return _DECODER.raw_decode(text)[0]
        except ValueError:
            continue
    return None


def _after_key(data: bytes, key: bytes, *, last: bool) -> int | None:
    """Where the value of ``"key":`` starts (the last or first such key), skipping ``"key"`` as a value."""
    quoted = b'"' + key + b'"'
    at = data.rfind(quoted) if last else data.find(quoted)
    while at >= 0:
        end = _skip_space(data, at + len(quoted))
        if data[end : end + 1] == b":":
            return _skip_space(data, end + 1)
        at = data.rfind(quoted, 0, at) if last else data.find(quoted, end)
    return None


def _skip_space(data: bytes, at: int) -> int:
    while data[at : at + 1] in _SPACE:
        at += 1
    return at


def _first_embedding_size(head: bytes) -> int | None:
    """Dimensions of the first vector: counted in a float list, or from a base64 string's length."""
    start = _after_key(head, b"embedding", last=False)
    if start is None:
        return None
    opener = head[start : start + 1]
    if opener == b"[":
        end = head.find(b"]", start)
        return head.count(b",", start, end) + 1 if end > start + 1 else None
    if opener == b'"':
        end = head.find(b'"', start + 1)
        if end < 0:
            return None
        encoded = end - start - 1 - head.count(b"=", end - 2, end)
        return encoded * 3 // 4 // 4  # float32 values
    return None
