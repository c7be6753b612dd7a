"""llmobs-openai against the real vLLM server: the official ``openai`` client with llmobs' transport.

The server is ``python -m vllm.entrypoints.openai.api_server`` on CPU with the tiny model, llmobs-vllm's
middleware and ``--enable-per-request-metrics``; the client runs here, recording into this process's SDK
providers (conftest). What llmobs-openai records is checked against what the client itself received, and
the server's own per-request spans (over OTLP at the sink) must join the client's traces.
"""

from __future__ import annotations

import asyncio
import json
import time

import openai
import pytest
from otlp_sink import Sink
from servers import running_server

import llmobs_openai
from llmobs import semconv as sc

MAX_TOKENS = 6
USER = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "hello world"}]
NO_EOS = {"ignore_eos": True}  # vLLM's own sampling parameter: every answer is MAX_TOKENS long


@pytest.fixture(scope="module")
def vllm_server(tiny_model, tmp_path_factory):
    """One server for the module (starting one takes most of a test's time on CPU); spans reach its sink."""
    workdir = tmp_path_factory.mktemp("openai-client")
    with Sink() as sink, running_server(
        tiny_model, workdir, sink, ["--middleware", "llmobs_vllm.TraceMiddleware", "--enable-per-request-metrics"]
    ) as server:
        yield server, sink


@pytest.fixture
def client(vllm_server):
    server, _ = vllm_server
    with llmobs_openai.http_client(provider="vllm") as http:
        yield openai.OpenAI(api_key="sk-engine-test-0123456789", base_url=f"{server.url}/v1", http_client=http,
                            max_retries=0)  # fmt: skip


def attrs_of(spans, count: int = 1) -> list[dict]:
    finished = spans.all()
    assert len(finished) == count, [s.name for s in finished]
    return [dict(s.attributes) for s in finished]


def server_span(sink: Sink, trace_id: str, timeout: float = 30.0) -> dict:
    """The llmobs-vllm span the server exported for a request of the client's trace ``trace_id``."""
    def found(s: Sink) -> list[dict]:
        return [x for x in s.spans if x["scope"] == "llmobs" and x["trace_id"] == trace_id]

    assert sink.wait_for(lambda s: bool(found(s)), timeout=timeout), f"no server span in trace {trace_id}"
    (span,) = found(sink)
    return span


def test_chat_call_records_what_the_client_received_and_joins_the_servers_trace(client, vllm_server, spans):
    server, sink = vllm_server
    answer = client.chat.completions.create(model="tiny", messages=USER, max_tokens=MAX_TOKENS, temperature=0.5,
                                            extra_body=NO_EOS)
    (span,) = spans.all()
    a = dict(span.attributes)
    assert span.name == "chat tiny"
    assert a[sc.OPERATION_NAME] == sc.OP_CHAT and a[sc.PROVIDER_NAME] == "vllm" and a[sc.FRAMEWORK] == "openai"
    assert a[sc.SERVER_ADDRESS] == "127.0.0.1" and a[sc.SERVER_PORT] == server.port
    assert a[sc.REQUEST_MODEL] == "tiny" and a[sc.RESPONSE_MODEL] == answer.model == "tiny"
    assert (a[sc.REQUEST_MAX_TOKENS], a[sc.REQUEST_TEMPERATURE]) == (MAX_TOKENS, 0.5)
    assert a[sc.RESPONSE_ID] == answer.id
    assert tuple(a[sc.RESPONSE_FINISH_REASONS]) == (answer.choices[0].finish_reason,) == ("length",)
    usage = answer.usage
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (usage.prompt_tokens, usage.completion_tokens)
    assert a[sc.USAGE_OUTPUT_TOKENS] == MAX_TOKENS
    user = {"role": "user", "parts": [{"type": "text", "content": "hello world"}]}
    assert json.loads(a[sc.INPUT_MESSAGES])[1] == user
    (output,) = json.loads(a[sc.OUTPUT_MESSAGES])
    assert output["parts"] == [{"type": "text", "content": answer.choices[0].message.content}]
    # vLLM's per-request timings, sent on the response, in seconds; its decode time covers MAX_TOKENS - 1 steps.
    assert a[sc.VLLM_DECODE_TIME] >= 0 and a[sc.VLLM_PREFILL_TIME] >= 0 and a[sc.VLLM_QUEUE_TIME] >= 0
    client_s = (span.end_time - span.start_time) / 1e9
    assert a[sc.VLLM_PREFILL_TIME] + a[sc.VLLM_DECODE_TIME] <= client_s
    assert "sk-engine-test" not in json.dumps(a), "the api key is never recorded"

    # The transport sent the span's traceparent; vLLM's middleware made the server's span its child.
    context = span.get_span_context()
    remote = server_span(sink, format(context.trace_id, "032x"))
    assert remote["parent_id"] == format(context.span_id, "016x")
    assert remote["attributes"][sc.USAGE_OUTPUT_TOKENS] == MAX_TOKENS
    assert (remote["end"] - remote["start"]) / 1e9 <= client_s  # the server's view fits in the client's


def test_streamed_chat_has_ttft_chunks_usage_and_the_text_the_application_read(client, vllm_server, spans):
    started = time.perf_counter()
    text, first, usage = [], None, None
    stream = client.chat.completions.create(model="tiny", messages=USER, max_tokens=MAX_TOKENS, stream=True,
                                            stream_options={"include_usage": True}, extra_body=NO_EOS)
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                first = first if first is not None else time.perf_counter() - started
                text.append(choice.delta.content)
        usage = chunk.usage or usage
    (a,) = attrs_of(spans)
    assert a[sc.REQUEST_STREAM] is True
    assert 0 < a[sc.RESPONSE_TIME_TO_FIRST_CHUNK] <= first
    assert abs(a[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS] - a[sc.RESPONSE_TIME_TO_FIRST_CHUNK] * 1e9) <= 1
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (usage.prompt_tokens, usage.completion_tokens)
    assert tuple(a[sc.RESPONSE_FINISH_REASONS]) == ("length",)
    (output,) = json.loads(a[sc.OUTPUT_MESSAGES])
    assert output["parts"] == [{"type": "text", "content": "".join(text)}]


def test_text_completion_and_its_stream(client, spans):
    answer = client.completions.create(model="tiny", prompt="the engine schedules", max_tokens=MAX_TOKENS,
                                       extra_body=NO_EOS)
    pieces = [c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="time to first token", max_tokens=MAX_TOKENS, stream=True, extra_body=NO_EOS)
        if c.choices]  # fmt: skip
    plain, streamed = attrs_of(spans, 2)
    for a in (plain, streamed):
        assert a[sc.OPERATION_NAME] == sc.OP_TEXT_COMPLETION and a[sc.REQUEST_MODEL] == "tiny"
        assert tuple(a[sc.RESPONSE_FINISH_REASONS]) == ("length",)
    assert plain[sc.USAGE_OUTPUT_TOKENS] == answer.usage.completion_tokens == MAX_TOKENS
    assert json.loads(plain[sc.OUTPUT_MESSAGES])[0]["parts"][0]["content"] == answer.choices[0].text
    assert json.loads(streamed[sc.OUTPUT_MESSAGES])[0]["parts"][0]["content"] == "".join(pieces)
    assert streamed[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0


def test_async_streaming_chat(vllm_server, spans):
    server, _ = vllm_server

    async def run() -> list[str]:
        http = llmobs_openai.async_http_client(provider="vllm")
        async with openai.AsyncOpenAI(api_key="sk-x", base_url=f"{server.url}/v1", http_client=http,
                                      max_retries=0) as aclient:  # fmt: skip
            stream = await aclient.chat.completions.create(model="tiny", messages=USER, max_tokens=MAX_TOKENS,
                                                           stream=True, extra_body=NO_EOS)
            return [c.choices[0].delta.content or "" async for c in stream if c.choices]

    text = asyncio.run(run())
    (a,) = attrs_of(spans)
    assert a[sc.OPERATION_NAME] == sc.OP_CHAT and a[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert json.loads(a[sc.OUTPUT_MESSAGES])[0]["parts"] == [{"type": "text", "content": "".join(text)}]


def test_server_errors_become_error_spans_with_the_servers_error_type(client, spans):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=USER, max_tokens=MAX_TOKENS)
    with pytest.raises(openai.BadRequestError) as too_long:  # far past --max-model-len 256
        client.chat.completions.create(model="tiny", messages=USER, max_tokens=10_000)
    for span, error in zip(spans.all(), (missing.value, too_long.value), strict=True):
        assert span.status.status_code.name == "ERROR"
        fields = error.response.json()["error"]  # vLLM: {"error": {"type", "code" (the HTTP status), ...}}
        assert fields["code"] == error.status_code
        assert span.attributes[sc.ERROR_TYPE] == fields["type"]  # the numeric code says less than the type


def test_a_stream_the_application_closes_early_ends_its_span_as_cancelled(client, spans):
    stream = client.chat.completions.create(model="tiny", messages=USER, max_tokens=MAX_TOKENS, stream=True,
                                            extra_body=NO_EOS)
    next(iter(stream))
    stream.close()
    (span,) = spans.all()
    assert span.status.status_code.name != "ERROR"
    assert span.attributes[sc.STATUS_REASON] == "closed_early"
