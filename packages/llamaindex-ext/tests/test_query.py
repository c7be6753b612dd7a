"""A real query engine over a real in-memory index: the span tree, kinds and attributes, sync and async."""

from __future__ import annotations

import asyncio
import json

import pytest
from fake_llms import ANSWER, UsageLLM
from llama_index.core.llms import MockLLM
from opentelemetry import trace
from opentelemetry.trace import SpanKind

import llmobs
from llmobs import semconv as sc

QUERY_TREE = (
    "RetrieverQueryEngine.query",
    (
        ("retrieval VectorIndexRetriever", (("embeddings MockEmbedding", ()),)),
        ("CompactAndRefine.synthesize", (("text_completion fake-gpt", ()),)),
    ),
)

pytestmark = pytest.mark.usefixtures("instrumented")


def test_query_is_one_tree_with_a_run_per_component(index, spans):
    response = index.as_query_engine(llm=UsageLLM()).query("What is topic 3 about?")
    assert str(response) == ANSWER
    (root,) = spans.roots()
    assert spans.tree(root) == QUERY_TREE
    kinds = {s.name: s.attributes[sc.SPAN_KIND] for s in spans.all()}
    assert kinds == {
        "RetrieverQueryEngine.query": sc.KIND_CHAIN,
        "retrieval VectorIndexRetriever": sc.KIND_RETRIEVER,
        "embeddings MockEmbedding": sc.KIND_EMBEDDING,
        "CompactAndRefine.synthesize": sc.KIND_CHAIN,
        "text_completion fake-gpt": sc.KIND_LLM,
    }
    assert {s.attributes[sc.FRAMEWORK] for s in spans.all()} == {"llama_index"}
    assert root.attributes[sc.INPUT_VALUE] == "What is topic 3 about?"
    assert root.attributes[sc.OUTPUT_VALUE] == ANSWER
    assert all(s.status.is_ok for s in spans.all())


def test_retrieval_records_query_and_scored_documents(index, spans):
    index.as_query_engine(llm=UsageLLM(), similarity_top_k=3).query("topic 2")
    retrieval = spans.one("retrieval VectorIndexRetriever")
    assert retrieval.attributes[sc.OPERATION_NAME] == sc.OP_RETRIEVAL
    assert retrieval.attributes[sc.RETRIEVAL_QUERY_TEXT] == "topic 2"
    assert retrieval.attributes[sc.REQUEST_TOP_K] == 3
    documents = json.loads(retrieval.attributes[sc.RETRIEVAL_DOCUMENTS])
    assert len(documents) == 3
    for doc in documents:
        assert doc["id"] and isinstance(doc["score"], float)
        assert doc["content"].startswith("Document ")


def test_embeddings_record_model_and_sizes_never_vectors(index, spans):
    index.as_query_engine(llm=UsageLLM()).query("topic 1")
    embedding = spans.one("embeddings MockEmbedding")
    assert embedding.kind == SpanKind.CLIENT
    assert embedding.attributes[sc.OPERATION_NAME] == sc.OP_EMBEDDINGS
    assert embedding.attributes[sc.REQUEST_MODEL] == "MockEmbedding"
    assert embedding.attributes[sc.EMBEDDINGS_DIMENSION_COUNT] == 16
    assert embedding.attributes[sc.EMBEDDINGS_INPUT_COUNT] == 1
    recorded = json.dumps(dict(embedding.attributes))
    assert "0.5" not in recorded  # MockEmbedding's vector is all 0.5


def test_an_embedding_model_used_as_a_transformation_records_texts_and_size_never_vectors(spans):
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.schema import TextNode

    nodes = [TextNode(text=f"node {i}") for i in range(5)]
    embedded = IngestionPipeline(transformations=[MockEmbedding(embed_dim=3)]).run(nodes=nodes)
    assert [n.embedding for n in embedded] == [[0.5, 0.5, 0.5]] * 5
    embedding = spans.one("embeddings MockEmbedding")
    assert embedding.attributes[sc.EMBEDDINGS_DIMENSION_COUNT] == 3
    assert embedding.attributes[sc.EMBEDDINGS_INPUT_COUNT] == 5
    assert json.loads(embedding.attributes[sc.INPUT_VALUE]) == [f"node {i}" for i in range(5)]
    assert "0.5" not in json.dumps(dict(embedding.attributes))


def test_llm_call_records_model_parameters_messages_output_and_usage(index, spans):
    index.as_query_engine(llm=UsageLLM()).query("topic 4")
    llm = spans.one("text_completion fake-gpt")
    a = llm.attributes
    assert llm.kind == SpanKind.CLIENT
    assert a[sc.OPERATION_NAME] == sc.OP_TEXT_COMPLETION
    assert a[sc.REQUEST_MODEL] == "fake-gpt"
    assert a[sc.RESPONSE_MODEL] == "fake-gpt-2025"
    assert a[sc.RESPONSE_ID] == "resp-1"
    assert a[sc.REQUEST_TEMPERATURE] == 0.3
    assert a[sc.RESPONSE_FINISH_REASONS] == (sc.FINISH_LENGTH,)
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS], a[sc.USAGE_TOTAL_TOKENS]) == (30, 5, 35)
    (message,) = json.loads(a[sc.INPUT_MESSAGES])
    assert message["role"] == sc.ROLE_USER and "topic 4" in message["parts"][0]["content"]
    (output,) = json.loads(a[sc.OUTPUT_MESSAGES])
    assert output == {"role": "assistant", "parts": [{"type": "text", "content": ANSWER}], "finish_reason": "length"}
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK not in a  # not streamed


def test_usage_from_additional_kwargs(index, spans):
    index.as_query_engine(llm=UsageLLM(usage_in_kwargs=True, input_tokens=11, output_tokens=7)).query("topic 0")
    llm = spans.one("text_completion fake-gpt")
    assert (llm.attributes[sc.USAGE_INPUT_TOKENS], llm.attributes[sc.USAGE_OUTPUT_TOKENS]) == (11, 7)


def test_usage_sums_over_queries_match_the_token_metric(index, spans, metric_points):
    engine = index.as_query_engine(llm=UsageLLM(input_tokens=20, output_tokens=3))
    for question in ("a", "b", "c"):
        engine.query(question)
    llms = spans.kind(sc.KIND_LLM)
    assert len(llms) == 3
    assert sum(s.attributes[sc.USAGE_INPUT_TOKENS] for s in llms) == 60
    by_type = {
        p.attributes[sc.TOKEN_TYPE]: p
        for p in metric_points(sc.METRIC_CLIENT_TOKEN_USAGE)
        if p.attributes.get(sc.REQUEST_MODEL) == "fake-gpt"
    }
    assert (by_type["input"].sum, by_type["input"].count) == (60, 3)
    assert (by_type["output"].sum, by_type["output"].count) == (9, 3)


def test_async_query_has_the_same_tree(index, spans):
    response = asyncio.run(index.as_query_engine(llm=UsageLLM()).aquery("topic 3"))
    assert str(response) == ANSWER
    (root,) = spans.roots()
    assert spans.tree(root) == (
        "RetrieverQueryEngine.aquery",
        (
            ("retrieval VectorIndexRetriever", (("embeddings MockEmbedding", ()),)),
            ("CompactAndRefine.asynthesize", (("text_completion fake-gpt", ()),)),
        ),
    )


def test_concurrent_async_queries_stay_in_their_own_traces(index, spans):
    engine = index.as_query_engine(llm=UsageLLM())

    async def many():
        await asyncio.gather(*(engine.aquery(f"topic {i}") for i in range(5)))

    asyncio.run(many())
    traces = spans.traces()
    assert len(traces) == 5
    for members in traces.values():
        assert sorted(s.name for s in members) == sorted(
            [
                "RetrieverQueryEngine.aquery",
                "retrieval VectorIndexRetriever",
                "embeddings MockEmbedding",
                "CompactAndRefine.asynthesize",
                "text_completion fake-gpt",
            ]
        )


def test_an_enclosing_otel_span_parents_the_root_and_no_context_leaks(index, spans):
    with llmobs.span("request", session_id="s-42", user_id="u-7") as outer:
        index.as_query_engine(llm=MockLLM(max_tokens=4)).query("topic 1")
        assert trace.get_current_span().get_span_context().span_id == outer.span.get_span_context().span_id
    assert not trace.get_current_span().get_span_context().is_valid
    (root,) = spans.roots()
    assert root.name == "request"
    (query,) = spans.children(root)
    assert query.name == "RetrieverQueryEngine.query"
    assert {s.attributes.get(sc.SESSION_ID) for s in spans.all()} == {"s-42"}
    assert {s.attributes.get(sc.USER_ID) for s in spans.all()} == {"u-7"}


def test_session_and_user_from_instrument_tags(index, spans):
    from llama_index.core.instrumentation.dispatcher import instrument_tags

    with instrument_tags({"session_id": "chat-9", "user_id": "ana"}):
        index.as_query_engine(llm=MockLLM(max_tokens=4)).query("topic 1")
    assert {s.attributes.get(sc.SESSION_ID) for s in spans.all()} == {"chat-9"}
    assert {s.attributes.get(sc.USER_ID) for s in spans.all()} == {"ana"}


def test_mock_llm_chat_implemented_by_complete_is_one_span(spans):
    from llama_index.core.llms import ChatMessage

    MockLLM(max_tokens=3).chat([ChatMessage(role="system", content="Be brief."), ChatMessage(content="hi")])
    (llm,) = spans.all()
    assert llm.name == "chat MockLLM"
    assert llm.attributes[sc.REQUEST_MAX_TOKENS] == 3
    messages = json.loads(llm.attributes[sc.INPUT_MESSAGES])
    assert [m["role"] for m in messages] == ["system", "user"]
    (output,) = json.loads(llm.attributes[sc.OUTPUT_MESSAGES])
    assert output["parts"] == [{"type": "text", "content": "text text text"}]


def test_errors_mark_the_failing_span_and_its_ancestors(index, spans):
    class BrokenLLM(UsageLLM):
        def complete(self, prompt, formatted=False, **kwargs):
            raise TimeoutError("model timed out")

    with pytest.raises(TimeoutError):
        index.as_query_engine(llm=BrokenLLM()).query("topic 1")
    for span in [*spans.kind(sc.KIND_LLM), *spans.named("CompactAndRefine.synthesize"), *spans.roots()]:
        assert not span.status.is_ok and span.attributes[sc.ERROR_TYPE] == "TimeoutError"
    assert spans.one("retrieval VectorIndexRetriever").status.is_ok
