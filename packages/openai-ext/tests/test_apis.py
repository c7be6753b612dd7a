"""Completions, embeddings and the Responses API; routes and providers."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

import llmobs_openai
from llmobs import semconv as sc
from llmobs_openai.routes import Api, provider_of, route_of


def test_legacy_completions(client, spans):
    client.completions.create(model="text-m", prompt="Say hi", max_tokens=5)
    for _ in client.completions.create(
        model="text-m", prompt="Say hi", stream=True, stream_options={"include_usage": True}
    ):
        pass
    plain, streamed = spans()
    for span in (plain, streamed):
        a = span.attributes
        assert span.name == "text_completion text-m" and a[sc.OPERATION_NAME] == sc.OP_TEXT_COMPLETION
        assert json.loads(a[sc.INPUT_MESSAGES]) == [{"role": "user", "parts": [{"type": "text", "content": "Say hi"}]}]
        (output,) = json.loads(a[sc.OUTPUT_MESSAGES])
        assert output["parts"] == [{"type": "text", "content": "Hello from the loopback server."}]
        assert output["finish_reason"] == "length"
        assert a[sc.USAGE_OUTPUT_TOKENS] == 5
    assert plain.attributes[sc.REQUEST_MAX_TOKENS] == 5
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK in streamed.attributes


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings(client, spans, points, encoding):
    client.embeddings.create(model=f"emb-{encoding}", input=["a", "b", "c"], encoding_format=encoding)
    (span,) = spans()
    a = span.attributes
    assert span.name == f"embeddings emb-{encoding}" and a[sc.SPAN_KIND] == sc.KIND_EMBEDDING
    assert a[sc.EMBEDDINGS_INPUT_COUNT] == 3 and a[sc.EMBEDDINGS_DIMENSION_COUNT] == 8
    assert tuple(a[sc.REQUEST_ENCODING_FORMATS]) == (encoding,)
    assert a[sc.USAGE_INPUT_TOKENS] == 12 and sc.USAGE_OUTPUT_TOKENS not in a
    assert a[sc.RESPONSE_MODEL] == f"emb-{encoding}"
    (tokens,) = points(sc.METRIC_CLIENT_TOKEN_USAGE, **{sc.REQUEST_MODEL: f"emb-{encoding}"})
    assert tokens.sum == 12


def test_a_large_embeddings_answer_is_read_from_its_ends(client, spans):
    client.embeddings.create(model="emb-big", input=["x"] * 64, dimensions=3072, encoding_format="float")
    a = spans()[0].attributes
    assert a[sc.EMBEDDINGS_DIMENSION_COUNT] == 3072 and a[sc.USAGE_INPUT_TOKENS] == 12
    assert a[sc.EMBEDDINGS_INPUT_COUNT] == 64


def test_responses_api(client, spans):
    answer = client.responses.create(model="resp-m", input="Hi", instructions="Be brief.", max_output_tokens=50)
    assert answer.output_text == "Hello from the loopback server."
    (span,) = spans()
    a = span.attributes
    assert span.name == "chat resp-m" and a[sc.REQUEST_MAX_TOKENS] == 50
    assert a[sc.RESPONSE_ID] == "resp_1" and a[sc.RESPONSE_MODEL] == "resp-m-served"
    assert json.loads(a[sc.SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(a[sc.INPUT_MESSAGES]) == [{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]
    assert json.loads(a[sc.OUTPUT_MESSAGES])[0]["parts"] == [{"type": "text", "content": answer.output_text}]
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_CACHE_READ_INPUT_TOKENS], a[sc.USAGE_REASONING_OUTPUT_TOKENS]) == (
        12,
        4,
        2,
    )


def test_responses_api_items_and_tool_calls(client, spans):
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                                     {"type": "input_image", "image_url": "https://example.com/a.png"}]},
        {"type": "function_call", "call_id": "call_0", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "call_0", "output": "cold"},
    ]  # fmt: skip
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    client.responses.create(model="tools", input=items, tools=tools)
    a = spans()[0].attributes
    user, call, result = json.loads(a[sc.INPUT_MESSAGES])
    assert user["parts"] == [{"type": "text", "content": "Weather?"},
                             {"type": "uri", "modality": "image", "uri": "https://example.com/a.png"}]  # fmt: skip
    assert call["parts"][0] == {
        "type": "tool_call",
        "id": "call_0",
        "name": "get_weather",
        "arguments": {"city": "Oslo"},
    }
    assert result == {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_0", "response": "cold"}]}
    assert json.loads(a[sc.TOOL_DEFINITIONS])[0]["name"] == "get_weather"
    assert tuple(a[sc.RESPONSE_FINISH_REASONS]) == ("tool_calls",)
    assert json.loads(a[sc.OUTPUT_MESSAGES])[0]["parts"][0]["name"] == "get_weather"


def test_responses_api_streaming(client, spans, async_client):
    with client.responses.stream(model="resp-stream", input="Hi") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert text == "Hello from the loopback server."

    async def call():
        async with async_client:
            stream = await async_client.responses.create(model="resp-stream", input="Hi", stream=True)
            return [e.type async for e in stream]

    assert asyncio.run(call())[-1] == "response.completed"
    for span in spans():
        a = span.attributes
        assert a[sc.RESPONSE_ID] == "resp_1" and a[sc.USAGE_OUTPUT_TOKENS] == 5
        assert sc.RESPONSE_TIME_TO_FIRST_CHUNK in a and sc.STATUS_REASON not in a
        assert json.loads(a[sc.OUTPUT_MESSAGES])[0]["parts"][0]["content"] == text


def test_azure_deployment_path_and_api_version(server, spans):
    with llmobs_openai.http_client() as http:
        azure = openai.AzureOpenAI(api_key="k", api_version="2024-10-21", azure_endpoint=f"http://127.0.0.1:{server.port}",
                                   azure_deployment="gpt-4o-prod", http_client=http)  # fmt: skip
        azure.chat.completions.create(model="gpt-4o-prod", messages=[{"role": "user", "content": "hi"}])
    assert server.requests[-1]["path"].startswith("/openai/deployments/gpt-4o-prod/chat/completions?api-version=")
    (span,) = spans()
    assert span.name == "chat gpt-4o-prod"
    assert sc.PROVIDER_NAME not in span.attributes, "a loopback host is no known provider"


@pytest.mark.parametrize(
    ("path", "api"),
    [
        ("/v1/chat/completions", Api.CHAT),
        ("/compatible-mode/v1/chat/completions", Api.CHAT),
        ("/openai/deployments/d/chat/completions", Api.CHAT),
        ("/v1/completions", Api.COMPLETIONS),
        ("/v1/embeddings", Api.EMBEDDINGS),
        ("/api/v1/services/openai/v1/responses", Api.RESPONSES),
    ],
)
def test_routes_are_recognised_under_any_prefix(path, api):
    assert route_of("POST", path).api is api


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/models"), ("GET", "/v1/responses/resp_1"), ("POST", "/v1/responses/resp_1/cancel"),
     ("POST", "/v1/files"), ("GET", "/v1/chat/completions")],
)  # fmt: skip
def test_other_requests_are_not_calls(method, path):
    assert route_of(method, path) is None


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        ("api.openai.com", sc.PROVIDER_OPENAI),
        ("my-resource.openai.azure.com", sc.PROVIDER_AZURE_OPENAI),
        ("dashscope.aliyuncs.com", sc.PROVIDER_DASHSCOPE),
        ("dashscope-intl.aliyuncs.com", sc.PROVIDER_DASHSCOPE),
        ("api.deepseek.com", sc.PROVIDER_DEEPSEEK),
        ("my-resource.cognitiveservices.azure.com", sc.PROVIDER_AZURE_OPENAI),
        ("workspace.dashscope.aliyuncs.com", sc.PROVIDER_DASHSCOPE),
        ("api.groq.com", sc.PROVIDER_GROQ),
        ("api.mistral.ai", sc.PROVIDER_MISTRAL_AI),
        ("api.x.ai", sc.PROVIDER_X_AI),
        ("api.perplexity.ai", sc.PROVIDER_PERPLEXITY),
        ("generativelanguage.googleapis.com", sc.PROVIDER_GCP_GEMINI),
        ("API.OPENAI.COM", sc.PROVIDER_OPENAI),
        ("openai.azure.com.attacker.example", None),
        ("localhost", None),
        ("vllm.internal", None),
    ],
)
def test_providers_from_the_host(host, provider):
    assert provider_of(host) == provider


def test_the_provider_of_a_well_known_host_is_recorded(spans, mock_client):
    body = {"id": "x", "model": "qwen-plus", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    dashscope = mock_client(lambda request: httpx.Response(200, json=body),
                            base_url="https://dashscope.aliyuncs.com/compatible-mode/v1")
    dashscope.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "hi"}])
    a = spans()[0].attributes
    assert a[sc.PROVIDER_NAME] == sc.PROVIDER_DASHSCOPE
    assert (a[sc.SERVER_ADDRESS], a[sc.SERVER_PORT]) == ("dashscope.aliyuncs.com", 443)
