"""Fail open and stay out of the way: pass-through, live disabling, hostile bodies, bounded parsing."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

import llmobs_openai
from llmobs import selfstats
from llmobs import semconv as sc
from llmobs_openai import bodies, payloads
from llmobs_openai.sse import SSEParser
from llmobs_openai.streams import _Choice

USER = [{"role": "user", "content": "Hello?"}]


def test_disabling_the_integration_applies_to_the_next_request(client, server, spans, settings):
    client.chat.completions.create(model="m", messages=USER)
    settings(disabled_integrations=frozenset({"openai"}))
    client.chat.completions.create(model="m", messages=USER)
    assert len(spans()) == 1
    assert "traceparent" in server.requests[0]["headers"]
    assert "traceparent" not in server.requests[1]["headers"], "a disabled integration leaves requests untouched"
    settings()
    client.chat.completions.create(model="m", messages=USER)
    assert len(spans()) == 2


def test_other_requests_pass_through_untouched(spans):
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.headers))
        return httpx.Response(200, json={"object": "list", "data": [{"id": "m", "object": "model"}]})

    with llmobs_openai.http_client(transport=httpx.MockTransport(answer)) as http:
        c = openai.OpenAI(api_key="k", base_url="http://gateway.local/v1", http_client=http)
        assert [m.id for m in c.models.list()] == ["m"]
    assert spans() == [] and "traceparent" not in seen[0]


def test_an_existing_transport_is_wrapped(spans):
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"id": "c", "model": "m", "choices": [], "usage": {"prompt_tokens": 3}})

    transport = llmobs_openai.LLMObsTransport(httpx.MockTransport(answer), provider="my-gateway")
    c = openai.OpenAI(api_key="k", base_url="http://gateway.local/v1", http_client=httpx.Client(transport=transport))
    c.chat.completions.create(model="m", messages=USER)
    assert calls == ["/v1/chat/completions"]
    assert spans()[0].attributes[sc.PROVIDER_NAME] == "my-gateway"


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b'{"choices": "nope", "usage": [1, 2], "model": 7}',
        b'{"choices": [{"message": 5, "finish_reason": ["x"]}], "usage": {"prompt_tokens": "many"}}',
        b"[1, 2, 3]",
    ],
)
def test_a_strange_answer_never_breaks_the_application(spans, body):
    transport = httpx.MockTransport(
        lambda r: httpx.Response(200, headers={"content-type": "application/json"}, content=body)
    )
    with llmobs_openai.http_client(transport=transport) as http:
        response = http.post("http://gateway.local/v1/chat/completions", json={"model": "m", "messages": USER})
    assert response.content == body
    (span,) = spans()
    assert span.name == "chat m"


@pytest.mark.parametrize(
    "events",
    [
        [b"data: {not json}\n\n", b"data: [DONE]\n\n"],
        [b'data: {"choices": [{"delta": "x"}]}\n\n', b'data: {"choices": 3}\n\n'],
        [b"data: " + b"x" * (5 << 20)],
    ],
)
def test_a_strange_stream_never_breaks_the_application(spans, events):
    transport = httpx.MockTransport(
        lambda r: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=iter(events))
    )
    with llmobs_openai.http_client(transport=transport) as http:
        request = http.build_request(
            "POST", "http://gateway.local/v1/chat/completions", json={"model": "m", "stream": True}
        )
        response = http.send(request, stream=True)
        assert b"".join(response.iter_raw()) == b"".join(events)
        response.close()
    assert len(spans()) == 1
    assert sum(selfstats.snapshot().values()) >= 1, "what we could not read is counted"


def test_a_request_body_that_is_not_json_is_still_sent(spans):
    sent = []
    transport = httpx.MockTransport(lambda r: sent.append(r.content) or httpx.Response(200, json={}))
    with llmobs_openai.http_client(transport=transport) as http:
        http.post("http://gateway.local/v1/chat/completions", content=b"\xff\xfe not json")
    assert sent == [b"\xff\xfe not json"]
    assert selfstats.snapshot().get("openai.start_failed") == 1
    assert spans() == []


@pytest.mark.parametrize(
    "data",
    [b'{"a": [1, 2.5, "x", null, true], "b": {}}', b'{"t": NaN, "u": -Infinity}', b'\xef\xbb\xbf{"a": 1}',
     b'{"s": "\\ud800"}', '{"a": "\u00e9"}'],
    ids=["plain", "nan", "bom", "lone surrogate", "str"],
)  # fmt: skip
def test_json_is_read_as_the_standard_parser_reads_it(data):
    assert repr(payloads.loads(data)) == repr(json.loads(data))


@pytest.mark.parametrize("data", [b"", b"{", b"\xff", b'{"a": 1} x'])
def test_json_neither_parser_reads_raises_value_error(data):
    with pytest.raises(ValueError):
        payloads.loads(data)


def test_transport_keyword_arguments_reach_the_wrapped_transport():
    with llmobs_openai.http_client(verify=False, http2=False, timeout=3.0) as http:
        transport = http._transport
        assert isinstance(transport, llmobs_openai.LLMObsTransport)
        assert isinstance(transport.wrapped, httpx.HTTPTransport)
        assert http.timeout.read == 3.0


# --- the SSE parser --------------------------------------------------------------------------------


def _parse(*chunks: bytes) -> list[bytes]:
    parser = SSEParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_sse_events_split_anywhere_are_reassembled():
    stream = b'event: x\ndata: {"a": 1}\n\ndata: {"b": 2}\r\n\r\n: comment\ndata:[DONE]\n\n'
    expected = [b'{"a": 1}', b'{"b": 2}', b"[DONE]"]
    assert _parse(stream) == expected
    for cut in range(1, len(stream)):
        assert _parse(stream[:cut], stream[cut:]) == expected, cut
    assert _parse(*[stream[i : i + 1] for i in range(len(stream))]) == expected


def test_sse_multi_line_data_and_cr_line_endings():
    assert _parse(b"data: a\rdata: b\r\r") == [b"a\nb"]
    assert _parse(b"data: a\r", b"\n\r", b"\n") == [b"a"]


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ((b"data: a\n\n", b"data: b\n\n"), [b"a", b"b"]),  # one whole event per chunk: the quick way
        ((b"data: \n\n",), [b""]),
        ((b"data: a\n", b"data: b\n\n"), [b"a\nb"]),  # an event still open: the next chunk continues it
        ((b"data: {", b"data: x\n\n"), [b"{data: x"]),  # a line carried over
        ((b"data: a\r", b"data: b\n\n"), [b"a\nb"]),  # a \r line ending: a \n may follow
        ((b"data: a\r\n\r\n", b"data: b\n\n"), [b"a", b"b"]),
        ((b"data: a\rb\n\n",), [b"a"]),  # \r ends a line: "b" is no field
        ((b"data: a\n\ndata: b\n\n",), [b"a", b"b"]),
    ],
)
def test_sse_whole_events_per_chunk_read_as_any_split(chunks, expected):
    assert _parse(*chunks) == expected
    whole = b"".join(chunks)
    assert _parse(*[whole[i : i + 1] for i in range(len(whole))]) == expected


def test_sse_parser_gives_up_on_an_endless_line():
    parser = SSEParser(max_bytes=1024)
    assert parser.feed(b"data: " + b"x" * 2048) == []
    assert parser.overflowed


def test_events_keep_their_data_as_sent():
    assert json.loads(_parse(b'data: {"x": "a\\nb"}\n\n')[0]) == {"x": "a\nb"}


def test_a_streamed_choice_past_its_budget_keeps_no_more_pieces():
    """Past its character budget a long stream adds nothing to what it keeps, only to the dropped count."""
    choice = _Choice(budget=10)
    for _ in range(1000):
        choice.fold({"content": "abcd"}, "abcd")
    assert choice.text == ["abcd", "abcd", "ab"]
    assert choice.dropped == 4000 - 10
    assert choice.message()["content"] == "abcdabcdab…[+3990 chars]"


def test_a_failure_after_the_span_started_ends_it_and_the_request_goes_on(client, server, spans, monkeypatch):
    from llmobs_openai import propagation

    def broken(*args, **kwargs):
        raise RuntimeError("propagator bug")

    monkeypatch.setattr(propagation, "inject", broken)
    answer = client.chat.completions.create(model="m", messages=USER)
    assert answer.choices[0].message.content.startswith("Hello")
    assert "traceparent" not in server.requests[-1]["headers"]
    (span,) = spans()
    assert span.attributes[sc.STATUS_REASON] == "instrumentation_failed"
    assert selfstats.snapshot()["openai.start_failed"] == 1


def test_a_request_that_cannot_be_read_at_the_end_keeps_the_answer(client, server, spans, monkeypatch):
    """The request's content is read when the call is finished; failing there loses that part only."""
    from llmobs_openai import messages

    def broken(*args, **kwargs):
        raise RuntimeError("converter bug")

    monkeypatch.setattr(messages, "set_input", broken)
    answer = client.chat.completions.create(model="m", messages=USER, temperature=0.5)
    assert answer.choices[0].message.content.startswith("Hello")
    assert "traceparent" in server.requests[-1]["headers"]
    (span,) = spans()
    assert span.attributes[sc.REQUEST_TEMPERATURE] == 0.5
    assert sc.INPUT_MESSAGES not in span.attributes
    assert span.attributes[sc.OUTPUT_MESSAGES]
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] > 0
    assert selfstats.snapshot()["openai.request_failed"] == 1


def _one_chat(client: openai.OpenAI) -> None:
    client.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "hi"}])


def test_a_chat_body_past_the_json_limit_keeps_its_ids_and_usage_and_is_counted(spans, mock_client):
    huge = "x" * (bodies.MAX_JSON_BYTES + 1024)
    body = {"id": "chatcmpl-big", "model": "m-served", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": huge}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2_000_000, "total_tokens": 2_000_003}}  # fmt: skip
    _one_chat(mock_client(lambda request: httpx.Response(200, json=body)))
    a = spans()[0].attributes
    assert (a[sc.RESPONSE_ID], a[sc.RESPONSE_MODEL]) == ("chatcmpl-big", "m-served")
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (3, 2_000_000)  # read from the body's tail
    assert sc.OUTPUT_MESSAGES not in a  # a 4 MiB answer is not parsed for its content
    assert selfstats.snapshot()["openai.response_too_large"] == 1


def test_a_responses_body_past_the_limit_takes_its_own_id_and_model_not_nested_ones(spans, mock_client):
    """An image-generation answer: its tool config ("model") and reusable prompt ("id") come after the output."""
    image = "A" * (bodies.MAX_JSON_BYTES + 1024)
    body = {"id": "resp_big", "object": "response", "created_at": 1, "status": "completed", "model": "gpt-4.1-x",
            "output": [{"id": "ig_1", "type": "image_generation_call", "status": "completed", "result": image}],
            "prompt": {"id": "pmpt_abc", "version": "2"},
            "tools": [{"type": "image_generation", "model": "gpt-image-1"}],
            "usage": {"input_tokens": 10, "output_tokens": 20, "total_tokens": 30}}  # fmt: skip
    client = mock_client(lambda request: httpx.Response(200, json=body))
    client.responses.create(model="gpt-4.1", input="draw a cat", tools=[{"type": "image_generation"}])
    a = spans()[0].attributes
    assert (a[sc.RESPONSE_ID], a[sc.RESPONSE_MODEL]) == ("resp_big", "gpt-4.1-x")
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (10, 20)


def test_an_unreadable_success_body_is_counted_and_the_call_still_ends(spans, mock_client):
    _one_chat(mock_client(lambda request: httpx.Response(200, content=b"<html>gateway</html>",
                                                         headers={"content-type": "application/json"})))
    (span,) = spans()
    assert span.status.status_code.name == "UNSET"
    assert selfstats.snapshot()["openai.response_unreadable"] == 1


def test_the_client_gets_the_openai_clients_own_defaults():
    with llmobs_openai.http_client() as http:
        assert (http.timeout.read, http.timeout.connect) == (600.0, 5.0)
        assert http.follow_redirects is True
        pool = http._transport.wrapped._pool
        assert (pool._max_connections, pool._max_keepalive_connections) == (1000, 100)


class _UsageSink:
    usage = None

    def set_usage(self, *args, **kwargs):
        self.usage = (args, kwargs)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": "10", "completion_tokens": 5, "total_tokens": 5.0,
          "prompt_tokens_details": {"cached_tokens": "x"}, "prompt_cache_hit_tokens": 3,
          "completion_tokens_details": {"reasoning_tokens": True}},
         ((None, 5), {"cache_read": 3, "reasoning": None, "total": None})),
        ({"input_tokens": 7, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 4},
          "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 9},
         ((7, 2), {"cache_read": 4, "reasoning": 1, "total": 9})),
        ({"prompt_tokens": None, "completion_tokens": [1]}, None),
        (["not", "usage"], None),
    ],
    ids=["odd values", "responses api", "no counts", "not a mapping"],
)  # fmt: skip
def test_usage_counts_are_integers_or_nothing(usage, expected):
    sink = _UsageSink()
    payloads.set_usage(sink, usage)
    assert sink.usage == expected
