"""Load: 100 threads and 100 asyncio tasks through LangChain and LlamaIndex at once.

Each thread or task is one "request": it opens its own request span, then runs a LangChain chain or LangGraph
graph (GenericFakeChatModel) and a LlamaIndex query engine (MockLLM, which echoes its prompt) on an input
carrying its own marker. Threads pass an explicit LLMObsCallbackHandler while ``instrument()`` is also on
(two handlers, one span per run); tasks rely on ``instrument()`` alone. Checked afterwards:

* one trace per request, all of the same shape, every span's parent in its own trace;
* no cross-talk: every marker found in a trace's attributes is that request's marker, and its model spans
  carry it;
* no OTel context left behind in any thread or in the event loop's thread;
* nothing left in flight: the LangChain runs table and the LlamaIndex span map are empty, every span ended.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter, defaultdict

import hostile_inputs as hostile
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, MessagesState, StateGraph
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmobs_langchain
import llmobs_llamaindex
from llmobs import config
from llmobs import semconv as sc
from llmobs.testing import global_tracer_provider
from llmobs_langchain import LLMObsCallbackHandler
from llmobs_langchain.runs import RUNS
from llmobs_llamaindex.handlers import SpanHandler

THREADS = 100
TASKS = 100
SPANS = InMemorySpanExporter()
OPEN = hostile.OpenSpans()
global_tracer_provider().add_span_processor(SimpleSpanProcessor(SPANS))
global_tracer_provider().add_span_processor(OPEN)
TRACER = trace.get_tracer("load-test")
MARKER = re.compile(r"marker-(\d+)-end")


def _marker(i: int) -> str:
    return f"marker-{i}-end"


def _chain(i: int):
    prompt = ChatPromptTemplate.from_messages([("system", "be brief"), ("human", "{question}")])
    model = GenericFakeChatModel(messages=iter([AIMessage(content=f"answer to {_marker(i)}")]))
    return prompt | model | StrOutputParser()


def _graph(i: int):
    model = GenericFakeChatModel(messages=iter([AIMessage(content=f"answer to {_marker(i)}")]))

    def call(state: MessagesState) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call)
    builder.add_edge(START, "model")
    builder.add_edge("model", END)
    return builder.compile()


def _langchain(i: int, callbacks: list) -> str:
    if i % 2:
        return _chain(i).invoke({"question": _marker(i)}, config={"callbacks": callbacks})
    result = _graph(i).invoke({"messages": [("human", _marker(i))]}, config={"callbacks": callbacks})
    return result["messages"][-1].content


async def _alangchain(i: int) -> str:
    if i % 2:
        return await _chain(i).ainvoke({"question": _marker(i)})
    result = await _graph(i).ainvoke({"messages": [("human", _marker(i))]})
    return result["messages"][-1].content


@pytest.fixture(scope="module")
def engine():
    previous = config.swap(config.Settings())
    llmobs_langchain.instrument()
    assert llmobs_llamaindex.instrument()
    documents = [Document(text=f"reference document {d}", doc_id=f"doc-{d}") for d in range(4)]
    index = VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=8))
    yield index.as_query_engine(llm=MockLLM(), similarity_top_k=2)
    llmobs_llamaindex.uninstrument()
    llmobs_langchain.uninstrument()
    config.swap(previous)


def _tracker():
    (handler,) = [h for h in llmobs_llamaindex._installed if isinstance(h, SpanHandler)]
    return handler.tracker


def test_100_threads_and_100_tasks_through_langchain_and_llamaindex_at_once(engine):
    SPANS.clear()
    OPEN.forget()
    go = threading.Event()
    failures: list[str] = []
    results: dict[int, tuple[str, str]] = {}

    def thread_request(i: int) -> None:
        before = otel_context.get_current()
        go.wait()
        try:
            with TRACER.start_as_current_span(f"request {i}", attributes={"request.marker": _marker(i)}):
                answer = _langchain(i, [LLMObsCallbackHandler()])
                response = str(engine.query(f"question {_marker(i)}"))
            results[i] = (answer, response)
            if otel_context.get_current() != before:
                failures.append(f"thread {i}: context left attached")
        except Exception as exc:  # reported below with the request that failed
            failures.append(f"thread {i}: {exc!r}")

    async def task_request(i: int) -> None:
        with TRACER.start_as_current_span(f"request {i}", attributes={"request.marker": _marker(i)}):
            answer = await _alangchain(i)
            response = str(await engine.aquery(f"question {_marker(i)}"))
        results[i] = (answer, response)

    async def tasks() -> None:
        before = otel_context.get_current()
        go.set()  # the threads start with the tasks
        await asyncio.gather(*(task_request(THREADS + i) for i in range(TASKS)))
        if otel_context.get_current() != before:
            failures.append("event loop: context left attached")

    threads = [threading.Thread(target=thread_request, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    main_before = otel_context.get_current()
    asyncio.run(tasks())
    for t in threads:
        t.join(timeout=300)
    assert not [t for t in threads if t.is_alive()], "a request never finished"
    assert failures == []
    assert otel_context.get_current() == main_before

    # Each request got its own answers back.
    assert len(results) == THREADS + TASKS
    for i, (answer, response) in results.items():
        assert _marker(i) in answer and _marker(i) in response, i

    # Nothing in flight.
    assert len(RUNS) == 0
    _tracker().sweep()
    assert _tracker()._ids == {}
    assert OPEN.still_open() == []

    spans = SPANS.get_finished_spans()
    by_trace = defaultdict(list)
    for span in spans:
        by_trace[span.context.trace_id].append(span)
    assert len(by_trace) == THREADS + TASKS, "one trace per request"

    shapes = Counter()
    for trace_spans in by_trace.values():
        (root,) = [s for s in trace_spans if s.parent is None]
        own = MARKER.search(root.attributes["request.marker"]).group(1)
        ids = {s.context.span_id for s in trace_spans}
        for span in trace_spans:
            assert span is root or span.parent.span_id in ids, f"{span.name}: parent outside its trace"
            found = {m for value in span.attributes.values() if isinstance(value, str) for m in MARKER.findall(value)}
            assert found <= {own}, f"request {own}: {span.name} carries markers {found}"
        models = [s for s in trace_spans if s.attributes.get(sc.OPERATION_NAME) in ("chat", "text_completion")]
        assert models and all(own in str(s.attributes.get(sc.INPUT_MESSAGES)) for s in models), own
        frameworks = Counter(s.attributes.get(sc.FRAMEWORK) for s in trace_spans)
        shapes[(int(own) < THREADS, int(own) % 2, tuple(sorted(frameworks.items(), key=str)))] += 1
    # Every request of a kind (thread or task, chain or graph) traced the same spans.
    assert len(shapes) == 4, shapes
    assert sorted(shapes.values()) == [50, 50, 50, 50]
