"""The same tracing on httpx2, the HTTP client openai ≥ 3 uses by default."""

from __future__ import annotations

import asyncio
import json

import httpx2
import openai
import pytest

from llmobs import semconv as sc
from llmobs_openai import httpx2_transport

USER = [{"role": "user", "content": "Hello?"}]


@pytest.fixture
def client2(server):
    with httpx2_transport.http_client(provider="vllm") as http:
        yield openai.OpenAI(api_key="k", base_url=server.base_url, http_client=http, max_retries=0)


def test_a_chat_call(client2, server, spans):
    client2.chat.completions.create(model="m2", messages=USER)
    (span,) = spans()
    assert span.name == "chat m2" and span.attributes[sc.USAGE_INPUT_TOKENS] == 12
    assert server.requests[-1]["headers"]["traceparent"].split("-")[2] == f"{span.context.span_id:016x}"


def test_a_stream_read_to_its_end_and_one_closed_early(client2, spans):
    for _ in client2.chat.completions.create(
        model="m2", messages=USER, stream=True, stream_options={"include_usage": True}
    ):
        pass
    stream = client2.chat.completions.create(model="m2", messages=USER, stream=True)
    next(iter(stream))
    stream.close()
    whole, early = spans()
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK in whole.attributes and whole.attributes[sc.USAGE_OUTPUT_TOKENS] == 5
    assert json.loads(whole.attributes[sc.OUTPUT_MESSAGES])[0]["parts"][0]["content"].startswith("Hello")
    assert early.attributes[sc.STATUS_REASON] == "closed_early"


def test_async_streaming(server, spans):
    async def call():
        async with httpx2_transport.async_http_client() as http:
            client = openai.AsyncOpenAI(api_key="k", base_url=server.base_url, http_client=http, max_retries=0)
            stream = await client.chat.completions.create(model="m2", messages=USER, stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(call()) == "Hello from the loopback server."
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK in spans()[0].attributes


def test_an_existing_httpx2_transport_is_wrapped(spans):
    error = {"error": {"message": "slow down", "code": "rate_limit_exceeded"}}
    mock = httpx2.MockTransport(lambda request: httpx2.Response(429, json=error))
    http = httpx2.Client(transport=httpx2_transport.LLMObsTransport(mock, provider="my-gateway"))
    client = openai.OpenAI(api_key="k", base_url="http://gateway.local/v1", http_client=http, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m", messages=USER)
    a = spans()[0].attributes
    assert a[sc.PROVIDER_NAME] == "my-gateway" and a[sc.ERROR_TYPE] == "rate_limit_exceeded"
