"""Streamed responses: observed as the application reads them, never delayed, always ended."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time

import httpx
import openai
import pytest
from opentelemetry.trace import StatusCode

import llmobs_openai
from llmobs import semconv as sc
from llmobs_openai.testing import sse_event

USER = [{"role": "user", "content": "Hello?"}]
USAGE = {"include_usage": True}


def test_a_stream_gets_ttft_chunk_timings_usage_and_the_folded_output(client, spans, points):
    stream = client.chat.completions.create(model="stream-m", messages=USER, stream=True, stream_options=USAGE)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from the loopback server."
    (span,) = spans()
    a = span.attributes
    assert span.status.status_code is StatusCode.UNSET and sc.STATUS_REASON not in a
    assert a[sc.REQUEST_STREAM] is True
    assert 0 < a[sc.RESPONSE_TIME_TO_FIRST_CHUNK] < (span.end_time - span.start_time) / 1e9
    assert a[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS] > 0
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS], a[sc.USAGE_CACHE_READ_INPUT_TOKENS]) == (12, 5, 4)
    assert a[sc.RESPONSE_ID] == "chatcmpl-1" and a[sc.RESPONSE_MODEL] == "stream-m-served"
    assert tuple(a[sc.RESPONSE_FINISH_REASONS]) == ("stop",)
    assert json.loads(a[sc.OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": "stop"}
    ]
    attrs = {sc.REQUEST_MODEL: "stream-m"}
    (ttfc,) = points(sc.METRIC_CLIENT_TIME_TO_FIRST_CHUNK, **attrs)
    (per_chunk,) = points(sc.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK, **attrs)
    assert ttfc.count == 1
    assert per_chunk.count == 4, "five content chunks: the first is TTFT, four gaps after it"


def test_streamed_tool_calls_are_folded_from_their_fragments(client, spans):
    stream = client.chat.completions.create(model="tools", messages=USER, stream=True)
    for _ in stream:
        pass
    a = spans()[0].attributes
    (output,) = json.loads(a[sc.OUTPUT_MESSAGES])
    assert output["parts"] == [{"type": "tool_call", "id": "call_1", "name": "get_weather",
                                "arguments": {"city": "Paris"}}]  # fmt: skip
    assert output["finish_reason"] == "tool_call"
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK in a, "a tool-call delta is content"
    assert sc.USAGE_INPUT_TOKENS not in a, "no usage unless the stream sends it"


def test_no_chunk_is_held_back(client, server, spans):
    """The server sends event N+1 only once the application has read event N."""
    read = [threading.Event() for _ in range(16)]
    stalls = []

    def wait_for_the_reader(index: int) -> None:
        if index > 0 and not read[index - 1].wait(timeout=5):
            stalls.append(index)

    server.before_event = wait_for_the_reader
    stream = client.chat.completions.create(model="m", messages=USER, stream=True, stream_options=USAGE)
    for count, _chunk in enumerate(stream):
        read[count].set()
    assert stalls == [], f"events {stalls} were not delivered before the next one was sent"
    assert count == 7  # role, five words, finish, usage
    assert spans()[0].attributes[sc.USAGE_OUTPUT_TOKENS] == 5


def test_chunks_are_timed_as_they_arrive_though_read_at_the_finish(client, server, spans, points):
    """The application pauses after the first word; the server sends each event once the one before was read.
    The events are read when the call is finished, but TTFT and the gaps between chunks are their arrival's."""
    read = [threading.Event() for _ in range(16)]
    server.before_event = lambda index: index == 0 or read[index - 1].wait(timeout=5)
    stream = client.chat.completions.create(model="paced", messages=USER, stream=True, stream_options=USAGE)
    paused = False
    for count, chunk in enumerate(stream):
        if not paused and chunk.choices and chunk.choices[0].delta.content:
            time.sleep(0.3)
            paused = True
        read[count].set()
    (span,) = spans()
    assert (span.end_time - span.start_time) / 1e9 >= 0.3
    assert span.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] < 0.25, "the first word came before the pause"
    (gaps,) = points(sc.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK, **{sc.REQUEST_MODEL: "paced"})
    assert gaps.count == 4
    assert gaps.max >= 0.3 and gaps.min < 0.25, "one gap holds the pause, the others do not"


def test_a_long_stream_holds_a_bounded_number_of_events_and_reads_them_all(spans, points):
    from llmobs import get_recorder
    from llmobs_openai import calls
    from llmobs_openai.routes import Api

    handle = get_recorder().start(sc.OP_CHAT, provider="vllm", model="long", framework="openai")
    call = calls.Call(handle, Api.CHAT, True, True)
    call.response(200, httpx.Headers({"content-type": "text/event-stream"}))

    def word(text: str) -> bytes:
        return sse_event({"id": "c", "model": "long", "choices": [{"index": 0, "delta": {"content": text}}]})

    for i in range(300):
        call.feed(word(f"w{i} "))
        assert len(call.held) < calls.HOLD_EVENTS
    call.feed(word("x" * calls.HOLD_BYTES))
    assert call.held == [], "an event past the byte bound is read at once"
    call.feed(b"data: [DONE]\n\n")
    call.close()
    (span,) = spans()
    assert sc.STATUS_REASON not in span.attributes, "closed after [DONE]: nothing was lost"
    (output,) = json.loads(span.attributes[sc.OUTPUT_MESSAGES])
    assert output["parts"][0]["content"].startswith("w0 w1 w2 ")
    (gaps,) = points(sc.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK, **{sc.REQUEST_MODEL: "long"})
    assert gaps.count == 300, "301 content events: every one timed"


def test_a_stream_closed_early_ends_its_span_as_cancelled(client, spans):
    stream = client.chat.completions.create(model="m", messages=USER, stream=True)
    next(iter(stream))
    stream.close()
    (span,) = spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes[sc.STATUS_REASON] == "closed_early"


def test_a_stream_never_closed_ends_its_span_when_collected(server, spans):
    with llmobs_openai.http_client() as http:
        request = http.build_request("POST", server.base_url + "/chat/completions",
                                     json={"model": "m", "messages": USER, "stream": True})  # fmt: skip
        response = http.send(request, stream=True)
        next(response.iter_raw())
        del response
        gc.collect()
        (span,) = spans()
        assert span.attributes[sc.STATUS_REASON] in ("garbage_collected", "closed_early")
        assert sc.RESPONSE_TIME_TO_FIRST_CHUNK not in span.attributes, "the role chunk carries no content"


def test_a_connection_dropped_mid_stream_ends_the_span_with_the_error(client, spans):
    stream = client.chat.completions.create(model="drop", messages=USER, stream=True)
    with pytest.raises(openai.APIConnectionError):
        for _ in stream:
            pass
    (span,) = spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "RemoteProtocolError"
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK in span.attributes, "the word before the drop was seen"
    (output,) = json.loads(span.attributes[sc.OUTPUT_MESSAGES])
    assert output["parts"] == [{"type": "text", "content": "Hello"}]
    assert output["finish_reason"] == "error"


def test_async_streaming(async_client, spans):
    async def call():
        async with async_client:
            stream = await async_client.chat.completions.create(
                model="async-stream", messages=USER, stream=True, stream_options=USAGE
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(call()) == "Hello from the loopback server."
    (span,) = spans()
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == 5
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK in span.attributes
    assert sc.STATUS_REASON not in span.attributes


def test_async_stream_closed_early(async_client, spans):
    async def call():
        async with async_client:
            stream = await async_client.chat.completions.create(model="m", messages=USER, stream=True)
            async for _ in stream:
                break
            await stream.close()

    asyncio.run(call())
    (span,) = spans()
    assert span.attributes[sc.STATUS_REASON] == "closed_early"


def test_the_folded_output_is_bounded(client, server, spans, settings):
    settings(max_attribute_bytes=1024)
    server.words = ["x" * 500] * 10
    stream = client.chat.completions.create(model="m", messages=USER, stream=True)
    assert sum(len(c.choices[0].delta.content or "") for c in stream if c.choices) == 5000
    (output,) = json.loads(spans()[0].attributes[sc.OUTPUT_MESSAGES])
    assert len(output["parts"][0]["content"]) < 1100


def test_no_content_mode_keeps_metadata_but_no_messages(client, spans, settings):
    from llmobs.content import CaptureMode

    settings(capture=CaptureMode.NO_CONTENT)
    for _ in client.chat.completions.create(model="m", messages=USER, stream=True, stream_options=USAGE):
        pass
    a = spans()[0].attributes
    assert sc.INPUT_MESSAGES not in a and sc.OUTPUT_MESSAGES not in a
    assert tuple(a[sc.RESPONSE_FINISH_REASONS]) == ("stop",) and a[sc.USAGE_OUTPUT_TOKENS] == 5
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK in a


class _Handle:
    """Counts chunks and keeps what the stream hands over at its end."""

    def __init__(self):
        self.chunks = 0
        self.output = None

    def chunk(self, at_ns=None, *, perf_ns=None):
        self.chunks += 1

    def set_output(self, messages=None, **metadata):
        self.output = messages, metadata

    def set_usage(self, *args, **kwargs):
        pass

    def set_attribute(self, key, value):
        pass


def _chat_stream(deltas, capture=True, budget=1000):
    from llmobs_openai.routes import Api
    from llmobs_openai.streams import ChatStream

    handle = _Handle()
    stream = ChatStream(handle, Api.CHAT, capture, budget)
    for choices in deltas:
        stream.event(json.dumps({"id": "c1", "model": "m", "choices": choices}).encode(), time.perf_counter_ns())
    return stream, handle


def test_every_kind_of_delta_is_folded_per_choice():
    call = {"index": 0, "id": "t1", "function": {"name": "f", "arguments": "{"}}
    stream, handle = _chat_stream([
        [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
        [{"index": 0, "delta": {"reasoning_content": "think "}}],
        [{"index": 0, "delta": {"reasoning": "more"}}],
        [{"index": 0, "delta": {"content": "Hel"}}, {"index": 1, "delta": {"role": "assistant", "refusal": "No"}}],
        [{"index": 0, "delta": {"content": "lo", "reasoning_content": None, "tool_calls": None}}],
        [{"index": 1, "delta": {"tool_calls": [call]}}],
        [{"index": 1, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}}],
        [{"index": 0, "delta": {}, "finish_reason": "stop"}, {"index": 1, "delta": {}, "finish_reason": "tool_calls"}],
    ])  # fmt: skip
    assert handle.chunks == 6, "the role-only and the final deltas carry no content"
    assert stream.choices[0].message() == {"role": "assistant", "content": "Hello", "reasoning_content": "think more"}
    assert stream.choices[1].message() == {
        "role": "assistant", "content": None, "refusal": "No",
        "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }  # fmt: skip
    assert stream.finish == {0: "stop", 1: "tool_calls"}


def test_deltas_are_not_folded_without_content_capture_but_still_timed():
    deltas = [[{"delta": {"content": "a"}}], [{"delta": {"content": "b"}, "finish_reason": "stop"}]]
    stream, handle = _chat_stream(deltas, capture=False)
    assert handle.chunks == 2 and stream.choices == {} and stream.finish == {0: "stop"}


def test_folded_text_beyond_the_budget_is_counted():
    stream, _ = _chat_stream([[{"delta": {"content": "abcd"}}], [{"delta": {"content": "efgh"}}]], budget=6)
    assert stream.choices[0].message()["content"] == "abcdef…[+2 chars]"


def _streaming(*events: dict):
    """An answer that streams ``events`` as OpenAI's Responses API does."""
    body = b"".join(sse_event(e) for e in events)
    return lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)


_CREATED = {"type": "response.created", "sequence_number": 0,
            "response": {"id": "resp_9", "object": "response", "model": "gpt-4o", "status": "in_progress",
                         "output": [], "created_at": 1}}  # fmt: skip
_DELTA = {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1", "output_index": 0,
          "content_index": 0, "delta": "Hel", "logprobs": []}  # fmt: skip


def test_a_failed_responses_stream_is_an_error_with_the_providers_code(spans, mock_client):
    failed = {"type": "response.failed", "sequence_number": 2,
              "response": {**_CREATED["response"], "status": "failed", "usage": {"input_tokens": 5, "output_tokens": 1,
                           "total_tokens": 6}, "error": {"code": "server_error", "message": "try again"}}}  # fmt: skip
    client = mock_client(_streaming(_CREATED, _DELTA, failed))
    kinds = [event.type for event in client.responses.create(model="gpt-4o", input="Hi", stream=True)]
    assert kinds == ["response.created", "response.output_text.delta", "response.failed"]
    (span,) = spans()
    assert span.status.status_code is StatusCode.ERROR
    a = span.attributes
    assert a[sc.ERROR_TYPE] == "server_error" and a[sc.RESPONSE_ID] == "resp_9"
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (5, 1)
    assert a[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0


def test_an_error_event_in_a_responses_stream_is_an_error_with_its_code(spans, mock_client):
    error = {"type": "error", "sequence_number": 2, "code": "rate_limit_exceeded", "message": "slow down",
             "param": None}  # fmt: skip
    client = mock_client(_streaming(_CREATED, _DELTA, error))
    kinds = [event.type for event in client.responses.create(model="gpt-4o", input="Hi", stream=True)]
    assert kinds[-1] == "error"  # handed to the application as an event; the stream then ends
    (span,) = spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "rate_limit_exceeded"
    assert span.attributes[sc.RESPONSE_ID] == "resp_9"


def _chunk(delta: dict, finish: str | None = None, **fields) -> dict:
    return {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **fields}  # fmt: skip


def test_azures_prompt_filter_chunk_does_not_hide_the_response_id_and_model(spans, mock_client):
    """Azure OpenAI streams first a chunk of prompt filter results, with an empty id and model."""
    filtered = {"id": "", "object": "", "created": 0, "model": "", "choices": [],
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}  # fmt: skip
    client = mock_client(_streaming(filtered, _chunk({"role": "assistant", "content": "Hi"}), _chunk({}, "stop")))
    assert [c.id for c in client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)][1:] == [
        "chatcmpl-7", "chatcmpl-7"]  # fmt: skip
    (span,) = spans()
    assert span.attributes[sc.RESPONSE_ID] == "chatcmpl-7"
    assert span.attributes[sc.RESPONSE_MODEL] == "gpt-4o-2024-08-06"


def test_a_streamed_legacy_function_call_is_output_and_first_chunk(spans, mock_client):
    pieces = [
        _chunk({"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": ""}}),
        _chunk({"function_call": {"arguments": '{"city": '}}),
        _chunk({"function_call": {"arguments": '"Paris"}'}}),
        _chunk({}, "function_call"),
    ]
    functions = [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    client = mock_client(_streaming(*pieces))
    list(client.chat.completions.create(model="gpt-4o", messages=USER, functions=functions, stream=True))
    (span,) = spans()
    (output,) = json.loads(span.attributes[sc.OUTPUT_MESSAGES])
    assert output["parts"] == [{"type": "tool_call", "name": "get_weather", "arguments": {"city": "Paris"}}]
    assert span.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] >= 0
