"""Property-based fuzzing of the LangChain callback handler with hostile framework input.

Two drivers: the handler's callbacks called directly as LangChain's callback manager would — in any order,
repeated, ends without starts, unknown and malformed run ids, hostile payloads (see ``hostile_inputs.py``)
— and hostile values through real LangChain runnables, chat models and tools with the handler attached.
After every example: nothing raised into the caller, the runs table is empty once every run was closed,
every span started was ended, and no OTel context is left attached.
"""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import hostile_inputs as hostile
import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation, LLMResult
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmobs import config
from llmobs.testing import global_tracer_provider
from llmobs_langchain import LLMObsCallbackHandler
from llmobs_langchain.runs import RunRegistry

SPANS = InMemorySpanExporter()
OPEN = hostile.OpenSpans("langchain")
global_tracer_provider().add_span_processor(SimpleSpanProcessor(SPANS))
global_tracer_provider().add_span_processor(OPEN)

POOL = [uuid.UUID(int=i + 1) for i in range(4)]
# Mostly a few known ids, so that starts, ends, errors and repeats meet on the same runs in every order.
_RUN_IDS = st.one_of(st.sampled_from(POOL), st.sampled_from(POOL), st.sampled_from(POOL), st.builds(uuid.uuid4),
                     st.sampled_from(["not-a-uuid", 7, None, b"id"]))
_PARENTS = st.one_of(st.none(), st.sampled_from(POOL), st.builds(uuid.uuid4), st.just("not-a-uuid"))


class GraphInterrupt(Exception):  # LangGraph's pause, by name
    pass


class BadMessage(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str of an exception")


_ERRORS = st.one_of(
    st.sampled_from([
        ValueError("boom"), asyncio.CancelledError(), GeneratorExit(), KeyboardInterrupt(), GraphInterrupt("pause"),
        BadMessage(), RuntimeError("\ud800" * 10), MemoryError(),
    ]),
    hostile.VALUES,
)
_METADATA = st.one_of(
    st.none(),
    hostile.VALUES,
    st.fixed_dictionaries({}, optional={
        key: hostile.VALUES for key in (
            "ls_provider", "ls_model_name", "ls_temperature", "ls_max_tokens", "ls_stop", "session_id", "thread_id",
            "user_id", "lc_agent_name", "ls_integration", "langgraph_node", "ls_vector_store_provider",
        )
    }),
)
_TAGS = st.one_of(st.none(), st.lists(st.one_of(st.text(max_size=20), st.sampled_from(
    ["retry:attempt:3", "retry:attempt:" + "9" * 400, "retry:attempt:\u0663", "retry:attempt:"]
)), max_size=3), hostile.VALUES)


def _response(content, usage, info, llm_output):
    """LLMResults as a model could produce them, built without validation (as a buggy model might)."""
    message = AIMessage.model_construct(content=content, usage_metadata=usage, response_metadata=info,
                                        tool_calls=[], additional_kwargs={}, id=None)
    return st.sampled_from([
        LLMResult.model_construct(generations=[[ChatGeneration.model_construct(message=message, text="",
                                                                              generation_info=info)]],
                                  llm_output=llm_output),
        LLMResult.model_construct(generations=[[Generation.model_construct(text=content, generation_info=info)]],
                                  llm_output=llm_output),
        LLMResult.model_construct(generations=[[], [None]], llm_output=None),
        LLMResult.model_construct(generations=content, llm_output=usage),
        content,
    ])


_RESPONSES = st.builds(_response, hostile.VALUES, hostile.VALUES, hostile.VALUES, hostile.VALUES).flatmap(lambda s: s)
_CHUNKS = st.one_of(
    st.none(),
    hostile.VALUES,
    st.builds(lambda c: ChatGenerationChunk.model_construct(message=AIMessageChunk.model_construct(
        content=c, tool_call_chunks=c, additional_kwargs={"reasoning_content": c}), text=""), hostile.VALUES),
)

_START = ("on_chain_start", "on_chat_model_start", "on_llm_start", "on_tool_start", "on_retriever_start")
_START_STEP = st.tuples(st.sampled_from(_START), _RUN_IDS, _PARENTS, hostile.VALUES, hostile.VALUES, _METADATA, _TAGS,
                        hostile.VALUES)
_END_STEP = st.one_of(
    st.tuples(st.sampled_from(["on_chain_end", "on_tool_end", "on_retriever_end"]), _RUN_IDS, hostile.VALUES),
    st.tuples(st.sampled_from(["on_chain_error", "on_llm_error", "on_tool_error", "on_retriever_error"]), _RUN_IDS,
              _ERRORS),
    st.tuples(st.just("on_llm_end"), _RUN_IDS, _RESPONSES),
)
_EVENT_STEP = st.one_of(
    st.tuples(st.just("on_llm_new_token"), _RUN_IDS, hostile.VALUES, _CHUNKS),
    st.tuples(st.sampled_from(["on_agent_action", "on_agent_finish", "on_custom_event", "on_retry"]), _RUN_IDS,
              hostile.VALUES, hostile.VALUES),
)
_STEP = st.one_of(_START_STEP, _END_STEP, _EVENT_STEP)


@st.composite
def _scripts(draw) -> list[tuple[int, tuple]]:
    """Runs that start, get events and end (children inside parents), with stray callbacks slipped in between
    — ends without starts, repeats, unknown ids — and now and then the whole script shuffled."""
    steps: list[tuple] = []
    ids = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=4))  # an id may come twice: a repeated run
    for i, run_id in enumerate(ids):
        start = draw(_START_STEP)
        parent = draw(st.sampled_from([None, *ids[:i]])) if i else start[2]
        steps.append((start[0], run_id, parent, *start[3:]))
        for event in draw(st.lists(_EVENT_STEP, max_size=3)):
            steps.append((event[0], run_id, *event[2:]))
    for run_id in reversed(ids):
        end = draw(_END_STEP)
        steps.append((end[0], run_id, *end[2:]))
    for stray in draw(st.lists(_STEP, max_size=5)):
        steps.insert(draw(st.integers(0, len(steps))), stray)
    if draw(st.integers(0, 3)) == 0:
        steps = draw(st.permutations(steps))
    return [(draw(st.integers(0, 4)), step) for step in steps]


def _call(handler: LLMObsCallbackHandler, step: tuple) -> None:
    name, run_id, *rest = step
    method = getattr(handler, name)
    if name in _START:
        parent, first, second, metadata, tags, extra = rest
        serialized = first if isinstance(first, dict) or first is None else {"name": first, "id": [first]}
        kwargs = {"name": extra, "invocation_params": extra, "tool_call_id": extra}
        if name == "on_tool_start":
            kwargs["inputs"] = extra
        method(serialized, second, run_id=run_id, parent_run_id=parent, tags=tags, metadata=metadata, **kwargs)
    elif name == "on_llm_new_token":
        method(rest[0], chunk=rest[1], run_id=run_id)
    elif name == "on_agent_action":
        method(SimpleNamespace(tool=rest[0], tool_input=rest[1]), run_id=run_id)
    elif name == "on_agent_finish":
        method(SimpleNamespace(return_values=rest[0]), run_id=run_id)
    elif name == "on_custom_event":
        method(rest[0], rest[1], run_id=run_id)
    elif name == "on_retry":
        outcome = SimpleNamespace(failed=True, exception=lambda: rest[1]) if rest[1] is not None else None
        method(SimpleNamespace(attempt_number=rest[0], outcome=outcome), run_id=run_id)
    else:
        method(rest[0], run_id=run_id, inputs=rest[0])


@pytest.fixture(autouse=True)
def _settings():
    previous = config.swap(config.Settings())
    yield
    config.swap(previous)


def _check_bounded(registry: RunRegistry, before: otel_context.Context) -> None:
    assert len(registry) == 0, "runs left in the table"
    assert OPEN.still_open() == [], f"spans never ended: {OPEN.still_open()[:5]}"
    hostile.no_context_left(before)


@hostile.fuzz(120)
@given(_scripts())
def test_callbacks_in_any_order_with_hostile_payloads(steps):
    OPEN.forget()
    SPANS.clear()
    registry = RunRegistry(max_runs=4)  # small: the cap's eviction is exercised too
    handler, other = LLMObsCallbackHandler(registry=registry), LLMObsCallbackHandler(registry=registry)
    before = otel_context.get_current()
    started = set()
    for which, step in steps:
        _call(other if which == 0 else handler, step)  # now and then a second handler sharing the table
        if step[0] in _START and isinstance(step[1], uuid.UUID):
            started.add(step[1])
    for run_id in started:  # the application finishes whatever is still running, by its owner
        handler.on_chain_end({}, run_id=run_id)
        other.on_chain_end({}, run_id=run_id)
    _check_bounded(registry, before)


_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(categories=["Cs", "Co", "Cc"]), max_size=10),
    st.sampled_from([hostile.HUGE, hostile.HUGE_UNICODE, "", "\x00" * 100]),
)
_CONTENT = st.one_of(_TEXT, st.lists(st.one_of(_TEXT, st.fixed_dictionaries({"type": st.just("text"), "text": _TEXT}),
                                               st.dictionaries(st.text(max_size=5), hostile.VALUES, max_size=3)),
                                     max_size=3))


_ANSWER = _TEXT.map(lambda text: "a" + text)  # the fake model streams a non-empty string, split on spaces


@hostile.fuzz(60)
@given(hostile.VALUES, hostile.VALUES, _CONTENT, _ANSWER, st.booleans())
def test_hostile_values_through_real_runnables_models_and_tools(value_in, value_out, prompt, answer, stream):
    OPEN.forget()
    registry = RunRegistry()
    handler = LLMObsCallbackHandler(registry=registry)
    callbacks = {"callbacks": [handler]}
    before = otel_context.get_current()

    identity = RunnableLambda(lambda _: value_out, name="hostile")
    assert identity.invoke(value_in, config=callbacks) is value_out

    try:
        reply = AIMessage(content=answer)
        question = HumanMessage(content=prompt)
    except Exception:  # content LangChain itself refuses is not ours to trace
        reply, question = AIMessage(content="fine"), HumanMessage(content="q")
    model = GenericFakeChatModel(messages=iter([reply]))
    if stream:
        chunks = list(model.stream([question], config=callbacks))
        assert chunks or not reply.content
    else:
        assert model.invoke([question], config=callbacks).content == reply.content

    @tool
    def lookup(query: str) -> object:
        """Return a hostile value."""
        return value_out

    result = lookup.invoke({"query": "q"}, config=callbacks)
    assert result is value_out or isinstance(result, ToolMessage | str)
    _check_bounded(registry, before)
    SPANS.clear()


@hostile.fuzz(40)
@given(st.lists(st.tuples(hostile.VALUES, _ANSWER), min_size=1, max_size=6))
def test_concurrent_async_runs_with_hostile_values_leave_nothing_behind(items):
    OPEN.forget()
    registry = RunRegistry()
    handler = LLMObsCallbackHandler(registry=registry)
    before = otel_context.get_current()

    async def one(value, answer):
        try:
            reply = AIMessage(content=answer)
        except Exception:
            reply = AIMessage(content="fine")
        model = GenericFakeChatModel(messages=iter([reply]))
        chain = RunnableLambda(lambda _: [HumanMessage(content="q")]) | model
        return await chain.ainvoke(value, config={"callbacks": [handler]})

    async def main():
        return await asyncio.gather(*(one(v, a) for v, a in items), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, AIMessage) for r in results), results
    _check_bounded(registry, before)
    SPANS.clear()
