"""Property-based fuzzing of llmobs-openai's traced httpx transport with hostile requests and answers.

Whatever an OpenAI-compatible server answers — bodies that are not JSON or JSON of the wrong shape, huge,
with lone surrogates, NaN, deep nesting; event streams cut anywhere, with broken events, read whole, read
partly and closed, or abandoned — the application gets exactly the bytes the server sent, nothing raises
through llmobs, the call's span ends, and no OTel context is left behind. Requests are fuzzed too.
"""

from __future__ import annotations

import json

import hostile_inputs as hostile
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import context as otel_context

import llmobs_openai
from llmobs import config
from llmobs.testing import global_tracer_provider

OPEN = hostile.OpenSpans()
global_tracer_provider().add_span_processor(OPEN)
URL = "http://gateway.local/v1/chat/completions"

_JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from(["stop", "length", "tool_calls", "assistant", "\ud800", "chat.completion.chunk"]),
)
_KEYS = st.sampled_from(["choices", "delta", "message", "content", "role", "usage", "prompt_tokens",
                         "completion_tokens", "total_tokens", "model", "id", "finish_reason", "tool_calls",
                         "function", "arguments", "index", "reasoning_content", "prompt_tokens_details",
                         "cached_tokens", "logprobs", "x"])
_JSON = st.recursive(_JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(_KEYS, inner, max_size=5)), max_leaves=20)


def _dump(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


_BODIES = st.one_of(
    _JSON.map(_dump),
    st.binary(max_size=200),
    st.sampled_from([b"", b"null", b"[" * 10_000, b'{"choices": [' + b"[" * 5_000, b"\xff\xfe",
                     b'{"choices": [{"message": {"content": "' + b"x" * 5_000_000 + b'"}}]}']),
)
_EVENT = st.one_of(
    _JSON.map(lambda v: b"data: " + _dump(v) + b"\n\n"),
    st.sampled_from([b"data: [DONE]\n\n", b": comment\n\n", b"event: error\ndata: {}\n\n", b"data: {\n\n",
                     b"\n\n", b"data:" + b"x" * 100_000 + b"\n\n", b"retry: 5\n", b"data: \xff\n\n"]),
    st.binary(max_size=40),
)
_REQUESTS = st.one_of(
    st.builds(lambda m, s, extra: {"model": m, "messages": extra, "stream": s}, _JSON_LEAF, st.booleans(), _JSON),
    _JSON,
)


@pytest.fixture(autouse=True)
def _settings():
    previous = config.swap(config.Settings())
    yield
    config.swap(previous)


def _content(request: object) -> bytes:
    return request if isinstance(request, bytes) else _dump(request)


@hostile.fuzz(150)
@given(_REQUESTS, st.integers(100, 599), _BODIES)
def test_any_answer_reaches_the_application_unchanged(request, status, body):
    OPEN.forget()
    before = otel_context.get_current()
    transport = httpx.MockTransport(lambda r: httpx.Response(status, headers={"content-type": "application/json"},
                                                             content=body))
    with llmobs_openai.http_client(transport=transport) as http:
        response = http.post(URL, content=_content(request), headers={"content-type": "application/json",
                                                                      "authorization": "Bearer sk-secret"})
    assert response.status_code == status and response.content == body
    assert OPEN.still_open() == []
    hostile.no_context_left(before)


@hostile.fuzz(150)
@given(st.lists(_EVENT, max_size=8), st.sampled_from(["all", "some", "none", "lines"]), st.booleans())
def test_any_stream_reaches_the_application_unchanged(events, read, asynchronous):
    OPEN.forget()
    before = otel_context.get_current()
    sent = b"".join(events)

    def answer(request: httpx.Request) -> httpx.Response:
        content = iter(events) if not asynchronous else _aiter(events)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=content)

    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    if asynchronous:
        import asyncio

        async def run() -> bytes:
            async with llmobs_openai.async_http_client(transport=httpx.MockTransport(answer)) as http:
                response = await http.send(http.build_request("POST", URL, json=body), stream=True)
                got = b""
                if read == "all":
                    got = b"".join([chunk async for chunk in response.aiter_raw()])
                elif read in ("some", "lines"):
                    async for chunk in response.aiter_raw():
                        got += chunk
                        break
                await response.aclose()
                return got

        got = asyncio.run(run())
    else:
        with llmobs_openai.http_client(transport=httpx.MockTransport(answer)) as http:
            response = http.send(http.build_request("POST", URL, json=body), stream=True)
            if read == "all":
                got = b"".join(response.iter_raw())
            elif read == "lines":
                got = "".join(line + "\n" for line in response.iter_lines()).encode("utf-8", "surrogatepass")
            elif read == "some":
                got = next(response.iter_raw(), b"")
            else:
                got = b""
            response.close()
    if read == "all":
        assert got == sent
    elif read == "some":
        assert sent.startswith(got)
    assert OPEN.still_open() == [], "the call's span ended when the application closed the stream"
    hostile.no_context_left(before)


async def _aiter(events):
    for event in events:
        yield event
