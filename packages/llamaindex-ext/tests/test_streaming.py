"""Streams: spans end when the stream does, TTFT only on streams, abandoned streams swept, tokens counted once."""

from __future__ import annotations

import asyncio
import gc
import json
import time

import pytest
from fake_llms import ANSWER, FailingStreamLLM, RouterLLM, UsageLLM
from llama_index.core.llms import ChatMessage
from llama_index.core.llms.callbacks import llm_completion_callback
from pydantic import BaseModel

import llmobs_llamaindex
from llmobs import selfstats
from llmobs import semconv as sc

STREAM_TREE = (
    "RetrieverQueryEngine.query",
    (
        ("retrieval VectorIndexRetriever", (("embeddings MockEmbedding", ()),)),
        ("CompactAndRefine.synthesize", (("text_completion fake-gpt", ()),)),
    ),
)


@pytest.fixture
def quick_sweep():
    """Instrumented with a short stream timeout, so the sweeper acts within a test."""
    llmobs_llamaindex.instrument(stream_timeout=0.2)
    yield
    llmobs_llamaindex.uninstrument()


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.usefixtures("instrumented")
def test_streaming_query_ends_when_the_stream_ends(index, spans):
    response = index.as_query_engine(llm=UsageLLM(), streaming=True).query("topic 3")
    assert {s.name for s in spans.all()} == {"retrieval VectorIndexRetriever", "embeddings MockEmbedding"}
    returned_ns = time.time_ns()
    assert "".join(response.response_gen) == ANSWER
    (root,) = spans.roots()
    assert spans.tree(root) == STREAM_TREE
    llm = spans.one("text_completion fake-gpt")
    assert llm.end_time > returned_ns and root.end_time >= llm.end_time
    assert llm.attributes[sc.REQUEST_STREAM] is True
    assert 0 < llm.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] * 1e9 < llm.end_time - llm.start_time
    assert llm.attributes[sc.USAGE_OUTPUT_TOKENS] == 5  # the last chunk's usage
    (output,) = json.loads(llm.attributes[sc.OUTPUT_MESSAGES])
    assert output["parts"][0]["content"] == ANSWER
    assert root.attributes[sc.USER_TIME_TO_FIRST_TOKEN_NS] > 0
    ttft_spans = [s.name for s in spans.all() if sc.RESPONSE_TIME_TO_FIRST_CHUNK in s.attributes]
    assert ttft_spans == ["text_completion fake-gpt"]


@pytest.mark.usefixtures("instrumented")
def test_async_streaming_query(index, spans):
    async def ask() -> str:
        response = await index.as_query_engine(llm=UsageLLM(), streaming=True).aquery("topic 3")
        return "".join([token async for token in response.async_response_gen()])

    assert asyncio.run(ask()) == ANSWER
    (root,) = spans.roots()
    assert root.name == "RetrieverQueryEngine.aquery"
    assert [s.name for s in spans.kind(sc.KIND_LLM)] == ["text_completion fake-gpt"]
    llm = spans.kind(sc.KIND_LLM)[0]
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK in llm.attributes
    assert {s.context.trace_id for s in spans.all()} == {root.context.trace_id}


@pytest.mark.usefixtures("instrumented")
def test_chunks_feed_ttft_and_time_per_chunk(spans, metric_points):
    words = list(UsageLLM().stream_complete("hi"))
    (llm,) = spans.all()
    assert len(words) == 5 and llm.attributes[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS] > 0
    per_chunk = [
        p
        for p in metric_points(sc.METRIC_CLIENT_TIME_PER_OUTPUT_CHUNK)
        if p.attributes.get(sc.REQUEST_MODEL) == "fake-gpt"
    ]
    assert sum(p.count for p in per_chunk) == 4  # every chunk after the first
    assert sum(p.count for p in metric_points(sc.METRIC_CLIENT_TIME_TO_FIRST_CHUNK)) == 1


@pytest.mark.usefixtures("instrumented")
def test_a_failing_stream_marks_its_span_as_an_error(spans):
    stream = FailingStreamLLM().stream_complete("hi")
    with pytest.raises(ConnectionError):
        list(stream)
    (llm,) = spans.all()
    assert not llm.status.is_ok and llm.attributes[sc.ERROR_TYPE] == "ConnectionError"
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK in llm.attributes


@pytest.mark.usefixtures("instrumented")
def test_a_stream_closed_early_is_cancelled_not_failed(spans):
    stream = UsageLLM().stream_complete("hi")
    next(stream)
    stream.close()
    (llm,) = spans.all()
    assert llm.status.is_ok and llm.attributes[sc.STATUS_REASON] == "cancelled"


@pytest.mark.usefixtures("quick_sweep")
def test_an_idle_stream_is_swept_as_abandoned(spans):
    stream = UsageLLM().stream_complete("hi")
    next(stream)
    assert wait_for(lambda: spans.all())
    (llm,) = spans.all()
    assert llm.attributes[sc.STATUS_REASON] == "stream abandoned"
    assert selfstats.snapshot()["llamaindex.abandoned_streams"] == 1
    del stream


@pytest.mark.usefixtures("quick_sweep")
def test_streams_are_still_swept_after_a_dispatcher_shutdown(spans):
    from llama_index.core.instrumentation import get_dispatcher

    get_dispatcher().shutdown()  # ends the runs open then; the handlers stay registered
    stream = UsageLLM().stream_complete("hi")
    next(stream)
    assert wait_for(lambda: spans.all())
    (llm,) = spans.all()
    assert llm.attributes[sc.STATUS_REASON] == "stream abandoned"
    del stream


@pytest.mark.usefixtures("quick_sweep")
def test_a_stream_never_read_and_dropped_is_swept(index, spans):
    response = index.as_query_engine(llm=UsageLLM(), streaming=True).query("topic 3")
    del response
    gc.collect()
    assert wait_for(lambda: len(spans.all()) == 4)  # the query and its synthesizer; the LLM never started
    (root,) = spans.roots()
    assert root.name == "RetrieverQueryEngine.query"
    cancelled = [s.name for s in spans.all() if s.attributes.get(sc.STATUS_REASON) == "stream abandoned"]
    assert sorted(cancelled) == ["CompactAndRefine.synthesize", "RetrieverQueryEngine.query"]


@pytest.mark.usefixtures("instrumented")
def test_chat_implemented_by_complete_counts_tokens_once(spans, metric_points):
    UsageLLM().chat([ChatMessage(content="hi")])
    (llm,) = spans.all()
    assert llm.name == "chat fake-gpt"
    assert llm.attributes[sc.USAGE_INPUT_TOKENS] == 30
    inputs = [p for p in metric_points(sc.METRIC_CLIENT_TOKEN_USAGE) if p.attributes[sc.TOKEN_TYPE] == "input"]
    assert [(p.sum, p.count) for p in inputs] == [(30, 1)]
    assert sum(p.count for p in metric_points(sc.METRIC_CLIENT_OPERATION_DURATION)) == 1  # one call, once


@pytest.mark.usefixtures("instrumented")
def test_an_llm_wrapping_another_leaves_usage_and_ttft_to_the_inner_one(spans, metric_points):
    router = RouterLLM(UsageLLM())
    router.complete("hi")
    assert "".join(r.delta for r in router.stream_complete("hi")) == ANSWER
    outer = spans.named("text_completion router")
    inner = spans.named("text_completion fake-gpt")
    assert len(outer) == len(inner) == 2
    for wrapper, call in zip(outer, inner, strict=True):
        assert call.parent.span_id == wrapper.context.span_id
        assert sc.USAGE_INPUT_TOKENS not in wrapper.attributes and call.attributes[sc.USAGE_INPUT_TOKENS] == 30
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK not in outer[1].attributes
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK in inner[1].attributes
    inputs = [p for p in metric_points(sc.METRIC_CLIENT_TOKEN_USAGE) if p.attributes[sc.TOKEN_TYPE] == "input"]
    assert sum(p.sum for p in inputs) == 60 and sum(p.count for p in inputs) == 2
    assert sum(p.count for p in metric_points(sc.METRIC_CLIENT_TIME_TO_FIRST_CHUNK)) == 1
    # two calls, not four: the wrapper's span records no operation-duration point of its own
    durations = metric_points(sc.METRIC_CLIENT_OPERATION_DURATION)
    assert {p.attributes[sc.REQUEST_MODEL] for p in durations} == {"fake-gpt"}
    assert sum(p.count for p in durations) == 2


@pytest.mark.usefixtures("instrumented")
def test_a_structured_llm_is_a_chain_around_the_real_call(spans):
    class Answer(BaseModel):
        answer: str

    class JsonLLM(UsageLLM):
        @llm_completion_callback()
        def complete(self, prompt, formatted=False, **kwargs):
            return self._response('{"answer": "42"}')

    reply = JsonLLM().as_structured_llm(Answer).chat([ChatMessage(content="what?")])
    assert json.loads(reply.message.content) == {"answer": "42"}
    (root,) = spans.roots()
    assert spans.tree(root) == ("StructuredLLM.chat", (("text_completion fake-gpt", ()),))
    assert root.attributes[sc.SPAN_KIND] == sc.KIND_CHAIN
    assert spans.one("text_completion fake-gpt").attributes[sc.USAGE_INPUT_TOKENS] == 30


@pytest.mark.usefixtures("instrumented")
def test_an_async_chat_stream_whose_call_starts_as_it_is_read_is_one_llm_span(spans, metric_points):
    """A CustomLLM's ``astream_chat`` calls its ``stream_chat`` lazily, from inside the returned stream, which
    the chat engine reads under its own span: the inner call is the same LLM run, not a second one."""
    from llama_index.core.chat_engine import SimpleChatEngine

    async def chat() -> str:
        response = await SimpleChatEngine.from_defaults(llm=UsageLLM()).astream_chat("hi")
        return "".join([token async for token in response.async_response_gen()])

    assert asyncio.run(chat()) == ANSWER
    (llm,) = spans.named("chat fake-gpt")
    assert llm.parent.span_id == spans.one("SimpleChatEngine.astream_chat").context.span_id
    assert llm.attributes[sc.USAGE_OUTPUT_TOKENS] == 5 and sc.RESPONSE_TIME_TO_FIRST_CHUNK in llm.attributes
    outputs = [p for p in metric_points(sc.METRIC_CLIENT_TOKEN_USAGE) if p.attributes[sc.TOKEN_TYPE] == "output"]
    assert [(p.sum, p.count) for p in outputs] == [(5, 1)]


@pytest.mark.usefixtures("instrumented")
def test_a_chat_engine_stream_read_on_its_own_thread_keeps_the_llm_under_the_synthesizer(index, spans):
    """ContextChatEngine.stream_chat reads the synthesizer's stream in a thread whose LlamaIndex context is the
    engine's span; the model call still belongs to the synthesizer, and nothing is reported abandoned."""
    from llama_index.core.chat_engine import ContextChatEngine

    engine = ContextChatEngine.from_defaults(retriever=index.as_retriever(), llm=UsageLLM())
    response = engine.stream_chat("topic 3")
    assert "".join(response.response_gen) == ANSWER
    del response  # a web handler drops the response once it is sent
    gc.collect()
    assert wait_for(lambda: len(spans.all()) == 5), [s.name for s in spans.all()]
    llm = next(s for s in spans.all() if s.attributes.get(sc.SPAN_KIND) == sc.KIND_LLM)
    synthesizer = spans.one("CompactAndRefine.synthesize")
    assert llm.parent.span_id == synthesizer.context.span_id
    assert all(sc.STATUS_REASON not in s.attributes for s in spans.all())
    assert "llamaindex.abandoned_streams" not in selfstats.snapshot()
