"""Property-based fuzzing of the LlamaIndex span and event handlers with hostile framework input.

The handlers registered on LlamaIndex's root dispatcher are called as the dispatcher would — new, exit and
drop in any order, repeated, for unknown span ids and unknown parents, with hostile bound arguments,
instances, results (including endless generators, which look like live streams) and events whose fields
hold hostile values — and real LlamaIndex components (MockLLM, a query engine) run with hostile text.
After every example: nothing raised, the tracker's span map and deferred set are empty once every span
exited and abandoned streams were swept, every span started was ended, no OTel context is left.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import traceback
import uuid
from pathlib import Path

import hostile_inputs as hostile
import pytest
from hypothesis import given
from hypothesis import strategies as st
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation.events import exception, llm, rerank
from llama_index.core.llms import MockLLM
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmobs_llamaindex
from llmobs import config
from llmobs.testing import global_tracer_provider
from llmobs_llamaindex.handlers import EventHandler, SpanHandler
from llmobs_llamaindex.tracker import Tracker

SPANS = InMemorySpanExporter()
OPEN = hostile.OpenSpans("llama_index")
global_tracer_provider().add_span_processor(SimpleSpanProcessor(SPANS))
global_tracer_provider().add_span_processor(OPEN)

# Span ids as LlamaIndex makes them: "<class>.<method>-<uuid4>".
POOL = [f"{name}-{uuid.UUID(int=i + 1)}" for i, name in enumerate(
    ["MockLLM.chat", "MockLLM.stream_complete", "RetrieverQueryEngine.query", "MockEmbedding.get_query_embedding"]
)]
_SPAN_IDS = st.one_of(st.sampled_from(POOL), st.sampled_from(POOL), st.text(max_size=8), st.sampled_from(["", None]))
_PARENT_IDS = st.one_of(st.none(), st.sampled_from(POOL), st.just("unknown-parent"))


def _instances():
    llm_ = MockLLM(max_tokens=5)
    return st.one_of(st.just(llm_), st.just(None), st.just(MockEmbedding(embed_dim=4)), hostile.VALUES)


def _bound(values: list) -> inspect.BoundArguments:
    def signature(messages=None, *args, query_str=None, **kwargs):  # what LlamaIndex binds its calls to
        return None

    return inspect.signature(signature).bind(*values[:3], query_str=values[-1] if values else None)


def _chat_message(value):
    return ChatMessage.model_construct(role=value, content=value, additional_kwargs={}, blocks=value)


_EVENT_BUILDERS = [
    lambda v, w: llm.LLMChatStartEvent.model_construct(messages=[_chat_message(v), v], additional_kwargs=w,
                                                       model_dict=w if isinstance(w, dict) else {"model_name": w}),
    lambda v, w: llm.LLMChatInProgressEvent.model_construct(
        messages=v, response=ChatResponse.model_construct(message=_chat_message(v), delta=w, raw=w,
                                                          additional_kwargs=w)),
    lambda v, w: llm.LLMChatEndEvent.model_construct(
        messages=v, response=ChatResponse.model_construct(message=_chat_message(w), raw=v, additional_kwargs=v)),
    lambda v, w: llm.LLMChatEndEvent.model_construct(messages=v, response=w),
    lambda v, w: llm.LLMCompletionStartEvent.model_construct(prompt=v, additional_kwargs=w, model_dict=v),
    lambda v, w: llm.LLMCompletionInProgressEvent.model_construct(
        prompt=v, response=CompletionResponse.model_construct(text=w, delta=v, raw=w, additional_kwargs=w)),
    lambda v, w: llm.LLMCompletionEndEvent.model_construct(
        prompt=v, response=CompletionResponse.model_construct(text=v, raw=w, additional_kwargs=v)),
    lambda v, w: exception.ExceptionEvent.model_construct(exception=v),
    lambda v, w: rerank.ReRankStartEvent.model_construct(query=v, nodes=w, top_n=v, model_name=w),
]


@st.composite
def _events(draw, span_id):
    event = draw(st.sampled_from(_EVENT_BUILDERS))(draw(hostile.VALUES), draw(hostile.VALUES))
    object.__setattr__(event, "span_id", span_id)
    return event


_RESULTS = st.one_of(
    hostile.VALUES,
    st.sampled_from([
        lambda: (i for i in itertools.count()),  # a live stream that never ends
        lambda: iter(range(3)),
        lambda: (c for c in "abc"),
    ]).map(lambda make: make()),
)
_ERRORS = st.one_of(
    st.sampled_from([ValueError("boom"), asyncio.CancelledError(), GeneratorExit(), KeyboardInterrupt(), None]),
    hostile.VALUES,
)


@st.composite
def _scripts(draw) -> list[tuple]:
    """Spans that open, get events and close (children inside parents), with stray calls in between."""
    steps: list[tuple] = []
    ids = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=4))
    for i, span_id in enumerate(ids):
        parent = draw(st.sampled_from([None, *ids[:i]])) if i else draw(_PARENT_IDS)
        steps.append(("new", span_id, parent, draw(_instances()), draw(st.lists(hostile.VALUES, max_size=4)),
                      draw(hostile.VALUES)))
        for _ in range(draw(st.integers(0, 3))):
            steps.append(("event", draw(_events(span_id))))
    for span_id in reversed(ids):
        if draw(st.booleans()):
            steps.append(("exit", span_id, draw(_RESULTS)))
        else:
            steps.append(("drop", span_id, draw(_ERRORS)))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["new", "exit", "drop", "event", "propagate"]))
        span_id = draw(_SPAN_IDS)
        if kind == "new":
            stray = ("new", span_id, draw(_PARENT_IDS), draw(_instances()), [], draw(hostile.VALUES))
        elif kind == "exit":
            stray = ("exit", span_id, draw(_RESULTS))
        elif kind == "drop":
            stray = ("drop", span_id, draw(_ERRORS))
        elif kind == "event":
            stray = ("event", draw(_events(span_id)))
        else:
            stray = ("propagate", draw(hostile.VALUES))
        steps.insert(draw(st.integers(0, len(steps))), stray)
    if draw(st.integers(0, 3)) == 0:
        steps = draw(st.permutations(steps))
    return steps


def _run(spans: SpanHandler, events: EventHandler, step: tuple) -> None:
    kind = step[0]
    if kind == "new":
        _, span_id, parent, instance, args, tags = step
        spans.new_span(span_id, _bound(args), instance=instance, parent_span_id=parent, tags=tags)
    elif kind == "exit":
        spans.prepare_to_exit_span(step[1], _bound([]), instance=None, result=step[2])
    elif kind == "drop":
        spans.prepare_to_drop_span(step[1], _bound([]), instance=None, err=step[2])
    elif kind == "event":
        events.handle(step[1])
    else:
        spans.restore_propagation_context(step[1])
        spans.capture_propagation_context()


@pytest.fixture(autouse=True)
def _settings():
    previous = config.swap(config.Settings())
    yield
    config.swap(previous)


def _check_bounded(tracker: Tracker, before: otel_context.Context) -> None:
    tracker.sweep()  # streams abandoned: the timeout is 0 here, as if their idle time had passed
    assert tracker._ids == {}, f"span ids left: {list(tracker._ids)[:5]}"
    assert tracker._deferred == {}, "deferred runs left"
    assert OPEN.still_open() == [], f"spans never ended: {OPEN.still_open()[:5]}"
    hostile.no_context_left(before)


@hostile.fuzz(150)
@given(_scripts())
def test_dispatcher_calls_in_any_order_with_hostile_arguments_and_events(steps):
    OPEN.forget()
    SPANS.clear()
    tracker = Tracker(stream_timeout_s=0.0, max_spans=4)
    spans, events = SpanHandler(tracker), EventHandler(tracker)
    before = otel_context.get_current()
    try:
        for step in steps:
            _run(spans, events, step)
        for span_id in {s[1] for s in steps if s[0] == "new"}:  # the application's calls return
            spans.prepare_to_exit_span(span_id, _bound([]), instance=None, result=None)
        _check_bounded(tracker, before)
    finally:
        tracker.close("test over")


_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(categories=["Cs", "Co", "Cc"]), min_size=1, max_size=10),
    st.sampled_from([hostile.HUGE[:100_000], hostile.HUGE_UNICODE[:30_000], "\x00" * 100]),  # LlamaIndex tokenizes it
)


@pytest.fixture(scope="module")
def instrumented():
    llmobs_llamaindex.uninstrument()
    assert llmobs_llamaindex.instrument(stream_timeout=0.0)
    yield
    llmobs_llamaindex.uninstrument()


@pytest.fixture(scope="module")
def query_engine(instrumented):
    documents = [Document(text=f"document {i}", doc_id=f"d{i}") for i in range(3)]
    index = VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=8))
    return index.as_query_engine(llm=MockLLM(max_tokens=8))


def _not_ours(exc: BaseException) -> None:
    """An exception the application sees may come from LlamaIndex, never from llmobs."""
    frames = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(exc.__traceback__)]
    assert not [f for f in frames if "llmobs" in Path(f).parts[-2]], f"raised through llmobs: {exc!r}"


def _tracker() -> Tracker:
    (handler,) = [h for h in llmobs_llamaindex._installed if isinstance(h, SpanHandler)]
    return handler.tracker


@hostile.fuzz(40)
@given(_TEXT, _TEXT, st.booleans())
def test_hostile_text_through_a_real_query_engine_and_llm(query_engine, query, message, stream):
    OPEN.forget()
    before = otel_context.get_current()
    mock = MockLLM(max_tokens=4)
    try:
        assert query_engine.query(query) is not None
    except Exception as exc:  # LlamaIndex's own refusal (a context window overflow, an empty query's embedding)
        _not_ours(exc)
    question = [ChatMessage(role="user", content=message)]
    if stream:
        assert "".join(r.delta or "" for r in mock.stream_chat(question)) is not None
    else:
        assert mock.chat(question).message is not None
        assert mock.complete(message).text is not None
    _check_bounded(_tracker(), before)
    SPANS.clear()
