"""Errors: HTTP statuses with the provider's error code, failed connections, errors inside a stream."""

from __future__ import annotations

import httpx
import openai
import pytest
from opentelemetry.trace import StatusCode

import llmobs_openai
from llmobs import semconv as sc
from llmobs_openai.testing import VLLM_METRICS

USER = [{"role": "user", "content": "Hello?"}]


@pytest.mark.parametrize(
    ("model", "status", "error_type", "raised"),
    [
        ("error-429", 429, "rate_limit_exceeded", openai.RateLimitError),
        ("error-400", 400, "context_length_exceeded", openai.BadRequestError),
        ("error-500", 500, "server_error", openai.InternalServerError),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_error_answers_carry_status_and_provider_code(client, spans, points, model, status, error_type, raised, stream):
    with pytest.raises(raised):
        client.chat.completions.create(model=model, messages=USER, stream=stream)
    (span,) = spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == error_type
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == status
    assert points(sc.METRIC_CLIENT_OPERATION_DURATION, **{sc.REQUEST_MODEL: model, sc.ERROR_TYPE: error_type})


def test_an_error_without_a_code_is_named_by_its_status(spans):
    transport = httpx.MockTransport(lambda request: httpx.Response(503, text="upstream unavailable"))
    with llmobs_openai.http_client(transport=transport) as http:
        c = openai.OpenAI(api_key="k", base_url="http://gateway.local/v1", http_client=http, max_retries=0)
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="m", messages=USER)
    assert spans()[0].attributes[sc.ERROR_TYPE] == "http.503"


def test_a_refused_connection_ends_the_span_with_the_exception(spans):
    with llmobs_openai.http_client() as http:
        c = openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1", http_client=http, max_retries=0)
        with pytest.raises(openai.APIConnectionError):
            c.chat.completions.create(model="m", messages=USER)
    (span,) = spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "ConnectError"


def test_a_failed_call_is_finished_at_once_not_queued(exported, monkeypatch):
    """The exception is the application's (its traceback holds their frames): read where the call failed."""
    from llmobs import finisher

    monkeypatch.setattr(finisher._default, "delay_s", 60.0)
    monkeypatch.setattr(finisher._default, "batch", 1000)
    with llmobs_openai.http_client() as http:
        c = openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1", http_client=http, max_retries=0)
        with pytest.raises(openai.APIConnectionError):
            c.chat.completions.create(model="m", messages=USER)
    (span,) = exported()  # not flushed
    assert span.attributes[sc.ERROR_TYPE] == "ConnectError"
    assert [e.name for e in span.events] == [sc.EVENT_EXCEPTION]


def test_an_error_event_inside_a_stream(spans):
    events = (
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
        b'data: {"error":{"message":"overloaded","type":"server_error","code":"engine_overloaded"}}\n\n'
    )
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=iter([events]))
    )
    with llmobs_openai.http_client(transport=transport) as http:
        c = openai.OpenAI(api_key="k", base_url="http://gateway.local/v1", http_client=http, max_retries=0)
        with pytest.raises(openai.APIError):
            for _ in c.chat.completions.create(model="m", messages=USER, stream=True):
                pass
    (span,) = spans()
    assert span.attributes[sc.ERROR_TYPE] == "engine_overloaded"


@pytest.mark.parametrize("stream", [False, True])
def test_vllm_per_request_metrics_are_recorded(client, spans, stream):
    answer = client.chat.completions.create(
        model="vllm", messages=USER, stream=stream, **({"stream_options": {"include_usage": True}} if stream else {})
    )
    if stream:
        for _ in answer:
            pass
    a = spans()[0].attributes
    assert a[sc.VLLM_QUEUE_TIME] == VLLM_METRICS["queue_time_ms"] / 1000
    assert a[sc.VLLM_PREFILL_TIME] == VLLM_METRICS["time_to_first_token_ms"] / 1000
    assert a[sc.VLLM_DECODE_TIME] == VLLM_METRICS["generation_time_ms"] / 1000
    assert a[sc.VLLM_TIME_PER_OUTPUT_TOKEN] == VLLM_METRICS["mean_itl_ms"] / 1000


def test_an_error_object_sent_with_http_200_is_an_error(spans, mock_client):
    """Some gateways answer a failed call with status 200 and the provider's error object as the body."""
    error = {"error": {"message": "upstream quota exhausted", "type": "insufficient_quota", "code": None}}
    client = mock_client(lambda request: httpx.Response(200, json=error))
    client.chat.completions.create(model="m", messages=USER)  # the openai client returns it as a completion
    (span,) = spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "insufficient_quota"
