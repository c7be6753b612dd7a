"""Promptflow's own LLM spans — the ``openai`` client it wraps in ``start_trace()`` — against a loopback
server: GenAI attributes, usage (reported, estimated or missing), content, errors and metrics."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from promptflow.tracing import start_trace
from promptflow.tracing import trace as pf_trace

import llmobs_promptflow
from llmobs import semconv as sc
from llmobs.pricing import ModelPrice
from llmobs.sampling import Promote, SamplingPolicy, SamplingProcessor
from llmobs_openai import testing as loopback
from llmobs_promptflow import pipeline

# Promptflow 1.18 serialises OpenAI responses with pydantic's deprecated .dict(): its warning, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:The `dict` method is deprecated")

QUESTION = "What is the capital of Portugal?"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]
# What the loopback server answers, and the usage it reports for every call
ANSWER = "".join(loopback.WORDS)
PROMPT_TOKENS, OUTPUT_TOKENS = loopback.USAGE[:2]


@pf_trace
def ask(client: openai.OpenAI, model: str, **options) -> str:
    response = client.chat.completions.create(model=model, messages=MESSAGES, **options)
    if options.get("stream"):
        return "".join(c.choices[0].delta.content or "" for c in response if c.choices)
    return response.choices[0].message.content


@pf_trace
async def ask_async(client: openai.AsyncOpenAI, model: str) -> str:
    stream = await client.chat.completions.create(model=model, messages=MESSAGES, stream=True)
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


@pytest.fixture(params=["before", "after"])
def traced(request):
    """Promptflow's documented set-up, with ``start_trace()`` before or after ``instrument()``."""
    if request.param == "before":
        start_trace(collection="pf-tests")
        assert llmobs_promptflow.instrument()
    else:
        assert llmobs_promptflow.instrument()
        start_trace(collection="pf-tests")


def llm_span(spans):
    (span,) = [s for s in spans.all() if s.attributes.get(sc.SPAN_KIND) in (sc.KIND_LLM, sc.KIND_EMBEDDING)]
    return span


def test_a_chat_call_is_an_llm_span_under_its_function(traced, client, spans, metric_points, settings):
    settings(prices={"loop-chat": ModelPrice(input=1.0, output=2.0)})
    assert ask(client, "loop-chat", temperature=0.3, max_tokens=64, stop="\n") == ANSWER
    (root,) = spans.roots()
    assert spans.tree(root, kinds=True) == ("ask", sc.KIND_CHAIN, (("chat loop-chat", sc.KIND_LLM, ()),))
    span = llm_span(spans)
    a = span.attributes
    assert span.kind is SpanKind.CLIENT and span.status.status_code is StatusCode.OK
    assert a[sc.OPERATION_NAME] == sc.OP_CHAT and a[sc.PROVIDER_NAME] == sc.PROVIDER_OPENAI
    assert (a[sc.REQUEST_MODEL], a[sc.RESPONSE_MODEL]) == ("loop-chat", "loop-chat-served")
    assert a[sc.REQUEST_TEMPERATURE] == 0.3 and a[sc.REQUEST_MAX_TOKENS] == 64
    assert list(a[sc.REQUEST_STOP_SEQUENCES]) == ["\n"] and a[sc.REQUEST_STREAM] is False
    assert list(a[sc.RESPONSE_FINISH_REASONS]) == ["stop"] and a[sc.RESPONSE_ID] == "chatcmpl-1"
    output_tokens = OUTPUT_TOKENS
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (PROMPT_TOKENS, output_tokens)
    assert a[sc.USAGE_TOTAL_TOKENS] == PROMPT_TOKENS + output_tokens and sc.USAGE_SOURCE not in a
    assert a[sc.COST_USD] == pytest.approx((PROMPT_TOKENS * 1.0 + output_tokens * 2.0) / 1e6)
    assert json.loads(a[sc.INPUT_MESSAGES]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": QUESTION}]},
    ]
    assert json.loads(a[sc.OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": ANSWER}], "finish_reason": "stop"}
    ]
    assert "sk-test-key" not in json.dumps(dict(a))
    assert [e.name for e in span.events] == []

    labels = {
        sc.OPERATION_NAME: sc.OP_CHAT,
        sc.PROVIDER_NAME: sc.PROVIDER_OPENAI,
        sc.REQUEST_MODEL: "loop-chat",
        sc.RESPONSE_MODEL: "loop-chat-served",
    }
    (duration,) = metric_points(sc.METRIC_CLIENT_OPERATION_DURATION)
    assert duration.attributes == labels and duration.count == 1
    assert duration.sum == pytest.approx((span.end_time - span.start_time) / 1e9)
    tokens = {p.attributes[sc.TOKEN_TYPE]: p.sum for p in metric_points(sc.METRIC_CLIENT_TOKEN_USAGE)}
    assert tokens == {sc.TOKEN_TYPE_INPUT: PROMPT_TOKENS, sc.TOKEN_TYPE_OUTPUT: output_tokens}
    (cost,) = metric_points(sc.METRIC_COST)
    assert cost.sum == pytest.approx(a[sc.COST_USD])


def test_a_stream_promptflow_could_not_count_says_so_and_invents_nothing(traced, client, spans, metric_points):
    assert ask(client, "loop-chat", stream=True) == ANSWER
    a = llm_span(spans).attributes
    assert a[sc.REQUEST_STREAM] is True
    assert a[sc.USAGE_SOURCE] == sc.USAGE_SOURCE_NONE
    assert not {sc.USAGE_INPUT_TOKENS, sc.USAGE_OUTPUT_TOKENS, sc.USAGE_TOTAL_TOKENS} & set(a)
    assert json.loads(a[sc.OUTPUT_MESSAGES])[0]["parts"] == [{"type": "text", "content": ANSWER}]
    assert list(a[sc.RESPONSE_FINISH_REASONS]) == ["stop"]
    assert metric_points(sc.METRIC_CLIENT_TOKEN_USAGE) == []
    assert [p.count for p in metric_points(sc.METRIC_CLIENT_OPERATION_DURATION)] == [1]


def test_a_streams_final_usage_chunk_is_used_although_promptflow_ignores_it(traced, client, spans, metric_points):
    ask(client, "loop-chat", stream=True, stream_options={"include_usage": True})
    a = llm_span(spans).attributes
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS]) == (PROMPT_TOKENS, OUTPUT_TOKENS)
    assert sc.USAGE_SOURCE not in a
    assert {p.attributes[sc.TOKEN_TYPE] for p in metric_points(sc.METRIC_CLIENT_TOKEN_USAGE)} == {"input", "output"}


def test_a_stream_traced_by_llmobs_openai_too_gets_its_ttft_and_is_counted_once(traced, server, spans, metric_points):
    """The openai client given llmobs-openai's transport: its chat span (a child of Promptflow's) measures
    TTFT where the stream is read; Promptflow's span takes it and leaves the call's metrics to that span."""
    import llmobs_openai

    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-key", max_retries=0,
                           http_client=llmobs_openai.http_client())  # fmt: skip
    assert ask(client, "loop-chat", stream=True, stream_options={"include_usage": True}) == ANSWER
    llm, transport = sorted(spans.named("chat loop-chat"), key=lambda s: s.start_time)
    assert transport.parent.span_id == llm.context.span_id
    assert llm.attributes[sc.SPAN_KIND] == sc.KIND_LLM and llm.instrumentation_scope.name == "promptflow"
    ttft = transport.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK]
    assert ttft > 0 and llm.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] == ttft
    assert llm.attributes[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS] == round(ttft * 1e9)
    assert llm.attributes[sc.USAGE_INPUT_TOKENS] == PROMPT_TOKENS  # usage still on Promptflow's span
    # one call, counted once: by the transport's span
    assert [p.count for p in metric_points(sc.METRIC_CLIENT_OPERATION_DURATION)] == [1]
    assert [p.count for p in metric_points(sc.METRIC_CLIENT_TIME_TO_FIRST_CHUNK)] == [1]
    inputs = [p for p in metric_points(sc.METRIC_CLIENT_TOKEN_USAGE) if p.attributes[sc.TOKEN_TYPE] == "input"]
    assert [(p.sum, p.count) for p in inputs] == [(PROMPT_TOKENS, 1)]


@pytest.mark.parametrize("include_usage", [True, False])
def test_llmobs_stats_count_a_call_traced_by_both_once(traced, server, spans, tmp_path, include_usage):
    """Promptflow's span and llmobs-openai's under it are one call in the store's aggregates, with or
    without usage on either (without ``include_usage`` neither has any here: tiktoken is offline)."""
    import llmobs_openai
    from llmobs.store import SQLiteSpanExporter, TraceStore

    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-key", max_retries=0,
                           http_client=llmobs_openai.http_client())  # fmt: skip
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    assert ask(client, "loop-chat", stream=True, **options) == ANSWER
    exporter = SQLiteSpanExporter(tmp_path / "t.db", retention=None)
    exporter.export(spans.all())
    exporter.shutdown()
    with TraceStore(tmp_path / "t.db") as store:
        (stats,) = store.model_stats()
    assert stats.calls == 1
    assert stats.input_tokens == (PROMPT_TOKENS if include_usage else 0)


def test_an_async_stream(traced, async_client, spans):
    assert asyncio.run(ask_async(async_client, "loop-chat")) == ANSWER
    (root,) = spans.roots()
    assert spans.tree(root, kinds=True) == ("ask_async", sc.KIND_CHAIN, (("chat loop-chat", sc.KIND_LLM, ()),))
    assert json.loads(llm_span(spans).attributes[sc.OUTPUT_MESSAGES])[0]["parts"][0]["content"] == ANSWER


def test_embeddings_record_texts_and_counts_never_vectors(traced, client, spans, metric_points):
    @pf_trace
    def embed(texts: list[str]) -> int:
        return len(client.embeddings.create(model="loop-embed", input=texts).data)

    assert embed(["red apples", "green pears"]) == 2
    span = llm_span(spans)
    a = span.attributes
    assert span.name == "embeddings loop-embed" and a[sc.OPERATION_NAME] == sc.OP_EMBEDDINGS
    assert a[sc.EMBEDDINGS_INPUT_COUNT] == 2 and a[sc.EMBEDDINGS_DIMENSION_COUNT] == 8
    assert a[sc.USAGE_INPUT_TOKENS] == PROMPT_TOKENS and a[sc.RESPONSE_MODEL] == "loop-embed"
    assert json.loads(a[sc.INPUT_VALUE]) == ["red apples", "green pears"]
    assert "0.1" not in json.dumps(dict(a)) and sc.OUTPUT_VALUE not in a
    tokens = [(p.attributes[sc.TOKEN_TYPE], p.sum) for p in metric_points(sc.METRIC_CLIENT_TOKEN_USAGE)]
    assert tokens == [(sc.TOKEN_TYPE_INPUT, PROMPT_TOKENS)]


def test_a_text_completion(traced, client, spans):
    client.completions.create(model="loop-complete", prompt="Once upon a time")
    span = llm_span(spans)
    assert span.name == "text_completion loop-complete"
    assert json.loads(span.attributes[sc.INPUT_MESSAGES])[0]["parts"][0]["content"] == "Once upon a time"
    assert json.loads(span.attributes[sc.OUTPUT_MESSAGES])[0]["parts"][0]["content"] == ANSWER


def test_a_failed_call_is_an_error_in_spans_and_metrics(traced, client, spans, metric_points):
    with pytest.raises(openai.RateLimitError):
        ask(client, "error-429")  # the loopback server's rate-limit error
    span = llm_span(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "RateLimitError"
    assert spans.one("ask").attributes[sc.ERROR_TYPE] == "RateLimitError"
    (duration,) = metric_points(sc.METRIC_CLIENT_OPERATION_DURATION)
    assert duration.attributes[sc.ERROR_TYPE] == "RateLimitError"


def test_without_start_trace_promptflow_does_not_trace_the_client(client, spans):
    assert llmobs_promptflow.instrument()
    ask(client, "loop-chat")
    assert [s.name for s in spans.all()] == ["ask"]  # only start_trace() wraps openai; llmobs never does


def test_metrics_cover_every_call_even_when_sampling_drops_the_trace(traced, client, metric_points):
    """The translator sits ahead of llmobs' sampling: what is exported is sampled, the metrics are not."""
    exported = InMemorySpanExporter()
    policy = SamplingPolicy(enabled=True, ratio=0.0, floor=0, promote=Promote(empty_output=False))
    sampling = SamplingProcessor([SimpleSpanProcessor(exported)], policy=lambda: policy)
    trace.get_tracer_provider().add_span_processor(sampling)
    try:
        for _ in range(3):
            ask(client, "loop-chat")
    finally:
        pipeline.detach(trace.get_tracer_provider(), sampling)
    assert exported.get_finished_spans() == ()
    assert [p.count for p in metric_points(sc.METRIC_CLIENT_OPERATION_DURATION)] == [3]


def test_an_embedding_of_one_string_counts_one_input(traced, client, spans):
    @pf_trace
    def embed_one(text: str) -> int:
        return len(client.embeddings.create(model="loop-embed", input=text).data)

    embed_one("red apples")
    assert llm_span(spans).attributes[sc.EMBEDDINGS_INPUT_COUNT] == 1


def test_a_call_whose_body_is_read_after_promptflows_span_ended_is_counted_once(traced, server, spans, metric_points):
    """``with_streaming_response``: Promptflow's span ends when ``create()`` returns, before llmobs-openai's span
    under it, which ends when the body has been read; that span counts the call, Promptflow's does not."""
    import llmobs_openai

    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-key", max_retries=0,
                           http_client=llmobs_openai.http_client())  # fmt: skip
    with client.chat.completions.with_streaming_response.create(model="loop-chat", messages=MESSAGES) as response:
        assert response.parse().choices[0].message.content == ANSWER
    llm, transport = sorted(spans.named("chat loop-chat"), key=lambda s: s.start_time)
    assert llm.end_time < transport.end_time and transport.parent.span_id == llm.context.span_id
    assert [p.count for p in metric_points(sc.METRIC_CLIENT_OPERATION_DURATION)] == [1]
    inputs = [p for p in metric_points(sc.METRIC_CLIENT_TOKEN_USAGE) if p.attributes[sc.TOKEN_TYPE] == "input"]
    assert [(p.sum, p.count) for p in inputs] == [(PROMPT_TOKENS, 1)]
