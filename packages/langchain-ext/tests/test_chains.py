"""Chains and runnables: span trees, CHAIN attributes, streaming TTFT, retries, custom events, errors."""

from __future__ import annotations

import asyncio
import json

import pytest
from langchain_core.callbacks.manager import adispatch_custom_event, dispatch_custom_event
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel
from opentelemetry.trace import SpanKind, StatusCode

from llmobs import selfstats
from llmobs import semconv as sc
from llmobs.content import CaptureMode
from llmobs_langchain import LLMObsCallbackHandler

PROMPT = ChatPromptTemplate.from_messages([("system", "You are terse."), ("human", "{question}")])


@pytest.fixture
def chain(scripted, reply):
    model = scripted(reply("Paris is the capital.", usage=(12, 5), finish="stop"), repeat=True, model="gpt-4o-mini")
    return PROMPT | model | StrOutputParser()


def callbacks(**metadata):
    return {"callbacks": [LLMObsCallbackHandler()], "metadata": metadata}


def test_prompt_chat_parser_is_one_tree_of_four_spans(chain, recorded):
    assert chain.invoke({"question": "Capital of France?"}, config=callbacks()) == "Paris is the capital."
    root = recorded.one("RunnableSequence")
    assert recorded.parent(root) is None
    assert recorded.child_names(root) == ["ChatPromptTemplate", "chat gpt-4o-mini", "StrOutputParser"]
    assert len(recorded.trace_of(root)) == 4
    for name in ("RunnableSequence", "ChatPromptTemplate", "StrOutputParser"):
        span = recorded.one(name)
        assert span.attributes[sc.OPERATION_NAME] == sc.OP_CHAIN
        assert span.attributes[sc.SPAN_KIND] == sc.KIND_CHAIN
        assert span.attributes[sc.FRAMEWORK] == "langchain"
        assert span.kind is SpanKind.INTERNAL
    chat = recorded.one("chat gpt-4o-mini")
    assert chat.kind is SpanKind.CLIENT and chat.attributes[sc.SPAN_KIND] == sc.KIND_LLM


def test_chain_input_and_output_values_are_readable(chain, recorded):
    chain.invoke({"question": "Capital of France?"}, config=callbacks())
    assert json.loads(recorded.one("RunnableSequence").attributes[sc.INPUT_VALUE]) == {"question": "Capital of France?"}
    assert recorded.one("RunnableSequence").attributes[sc.OUTPUT_VALUE] == "Paris is the capital."
    prompt_out = json.loads(recorded.one("ChatPromptTemplate").attributes[sc.OUTPUT_VALUE])
    assert prompt_out == [
        {"role": "system", "parts": [{"type": "text", "content": "You are terse."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Capital of France?"}]},
    ]
    parser_in = json.loads(recorded.one("StrOutputParser").attributes[sc.INPUT_VALUE])
    assert parser_in == {"role": "assistant", "parts": [{"type": "text", "content": "Paris is the capital."}]}


def test_ttft_only_when_streaming(chain, recorded):
    chain.invoke({"question": "q"}, config=callbacks())
    invoked = recorded.one("chat gpt-4o-mini")
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK not in invoked.attributes
    assert sc.REQUEST_STREAM not in invoked.attributes
    recorded_before = len(recorded.all())

    chunks = list(chain.stream({"question": "q"}, config=callbacks()))
    assert "".join(chunks) == "Paris is the capital."
    streamed = recorded.all()[recorded_before:]
    chat = next(s for s in streamed if s.name == "chat gpt-4o-mini")
    assert chat.attributes[sc.REQUEST_STREAM] is True
    ttft = chat.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK]
    assert 0 < ttft * 1e9 < chat.end_time - chat.start_time
    assert chat.attributes[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS] > 0
    root = next(s for s in streamed if s.name == "RunnableSequence")
    assert root.attributes[sc.USER_TIME_TO_FIRST_TOKEN_NS] >= chat.attributes[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS]
    assert json.loads(root.attributes[sc.INPUT_VALUE]) == {"question": "q"}  # streamed input, known at end


def test_async_invoke_and_stream_give_the_same_tree(chain, recorded):
    async def main():
        await chain.ainvoke({"question": "q"}, config=callbacks())
        return [c async for c in chain.astream({"question": "q"}, config=callbacks())]

    assert "".join(asyncio.run(main())) == "Paris is the capital."
    roots = recorded.named("RunnableSequence")
    assert len(roots) == 2
    for root in roots:
        assert recorded.child_names(root) == ["ChatPromptTemplate", "chat gpt-4o-mini", "StrOutputParser"]
    invoked, streamed = (next(s for s in recorded.trace_of(r) if s.name == "chat gpt-4o-mini") for r in roots)
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK not in invoked.attributes
    assert streamed.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0


def test_batch_with_max_concurrency_gives_one_trace_per_input(chain, recorded):
    questions = [{"question": f"q{i}"} for i in range(6)]
    chain.batch(questions, config={**callbacks(), "max_concurrency": 3})
    roots = recorded.named("RunnableSequence")
    assert len(roots) == 6 and len({r.context.trace_id for r in roots}) == 6
    for root in roots:
        question = json.loads(root.attributes[sc.INPUT_VALUE])["question"]
        prompt = next(s for s in recorded.trace_of(root) if s.name == "ChatPromptTemplate")
        assert recorded.parent(prompt) == root
        assert question in prompt.attributes[sc.OUTPUT_VALUE]


def test_parallel_branches_run_on_threads_under_their_parent(scripted, reply, recorded):
    parallel = RunnableParallel(
        a=RunnableLambda(lambda x: x + 1, name="add"), b=RunnableLambda(lambda x: x * 2, name="double")
    )
    assert parallel.invoke(3, config=callbacks()) == {"a": 4, "b": 6}
    root = recorded.one("RunnableParallel<a,b>")
    assert sorted(recorded.child_names(root)) == ["add", "double"]


def test_retry_attempts_are_siblings_with_their_attempt_number(recorded):
    attempts = []

    def flaky(x):
        attempts.append(x)
        if len(attempts) < 3:
            raise ConnectionError("upstream reset")
        return x

    runnable = RunnableLambda(flaky, name="flaky").with_retry(
        stop_after_attempt=3, wait_exponential_jitter=False, retry_if_exception_type=(ConnectionError,)
    )
    assert runnable.invoke("ok", config=callbacks()) == "ok"
    retry, *tries = recorded.named("flaky")  # the retry wrapper keeps the name of what it retries
    assert recorded.parent(retry) is None and retry.status.status_code is StatusCode.UNSET
    assert [s.status.status_code for s in tries] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    assert [s.attributes.get(sc.RETRY_ATTEMPT) for s in tries] == [None, 2, 3]
    assert all(recorded.parent(s) == retry for s in tries)


def test_custom_events_become_span_events_on_the_enclosing_run(recorded):
    def step(x):
        dispatch_custom_event("progress", {"done": 1, "of": 2})
        return x

    async def astep(x):
        await adispatch_custom_event("progress", {"done": 2, "of": 2})
        return x

    RunnableLambda(step, name="step").invoke(1, config=callbacks())
    asyncio.run(RunnableLambda(astep, name="astep").ainvoke(1, config=callbacks()))
    for name, done in (("step", 1), ("astep", 2)):
        (event,) = recorded.one(name).events
        assert event.name == "progress"
        assert json.loads(event.attributes[sc.EVENT_DATA]) == {"done": done, "of": 2}


def test_custom_event_data_follows_the_capture_mode(settings, recorded):
    settings(capture=CaptureMode.NO_CONTENT)

    def step(x):
        dispatch_custom_event("progress", {"secret": "data"})
        return x

    RunnableLambda(step, name="step").invoke(1, config=callbacks())
    (event,) = recorded.one("step").events
    assert event.name == "progress" and dict(event.attributes) == {}


def test_an_error_marks_the_failing_run_and_its_ancestors(scripted, recorded):
    def boom(_):
        raise ValueError("bad input")

    chain = PROMPT | RunnableLambda(boom, name="boom")
    with pytest.raises(ValueError, match="bad input"):
        chain.invoke({"question": "q"}, config=callbacks())
    failed = recorded.one("boom")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes[sc.ERROR_TYPE] == "ValueError"
    assert [e.name for e in failed.events] == ["exception"]
    root = recorded.one("RunnableSequence")
    assert root.status.status_code is StatusCode.ERROR and root.attributes[sc.ERROR_TYPE] == "ValueError"
    assert selfstats.snapshot() == {}

    with pytest.raises(ValueError):  # streamed: the input is only known when the run fails
        list(chain.stream({"question": "streamed"}, config=callbacks()))
    streamed_root = recorded.named("RunnableSequence")[-1]
    assert json.loads(streamed_root.attributes[sc.INPUT_VALUE]) == {"question": "streamed"}


def test_leaving_a_stream_early_ends_every_run_and_none_as_an_error(chain, scripted, recorded):
    stream = chain.stream({"question": "q"}, config=callbacks())
    next(stream)
    stream.close()  # LangChain ends a closed chain stream's runs normally, with what was produced
    assert len(recorded.all()) == 4
    assert all(s.status.status_code is StatusCode.UNSET for s in recorded.all())

    model = scripted("hello big world", model="direct")
    stream = model.stream("q", config=callbacks())
    next(stream)
    stream.close()  # a model stream closed early reports GeneratorExit: cancelled, not failed
    chat = recorded.one("chat direct")
    assert chat.status.status_code is StatusCode.UNSET
    assert chat.attributes[sc.STATUS_REASON] == "cancelled" and sc.ERROR_TYPE not in chat.attributes


def test_session_and_user_ids_from_metadata_reach_every_span(chain, recorded):
    chain.invoke({"question": "q"}, config=callbacks(session_id="sess-42", user_id="alice"))
    for span in recorded.all():
        assert span.attributes[sc.SESSION_ID] == "sess-42"
        assert span.attributes[sc.CONVERSATION_ID] == "sess-42"
        assert span.attributes[sc.USER_ID] == "alice"


def test_a_conversation_id_is_the_session_when_no_session_or_thread_is_given(chain, recorded):
    chain.invoke({"question": "q"}, config=callbacks(conversation_id="conv-7"))
    assert {span.attributes[sc.SESSION_ID] for span in recorded.all()} == {"conv-7"}


def test_ids_of_an_enclosing_llmobs_span_reach_the_runs_inside(chain, recorded):
    import llmobs

    with llmobs.span("POST /chat", session_id="sess-web", user_id="u-web"):
        chain.invoke({"question": "q"}, config=callbacks())
    runs = [span for span in recorded.all() if span.name != "POST /chat"]
    assert runs and {(s.attributes[sc.SESSION_ID], s.attributes[sc.USER_ID]) for s in runs} == {("sess-web", "u-web")}
    assert recorded.parent(recorded.one("RunnableSequence")).name == "POST /chat"


def test_a_chain_input_is_recorded_as_it_was_when_the_run_started(recorded):
    """Steps that change their input in place do not rewrite what the spans say they were given."""

    def add_user(state: dict) -> dict:
        state["chat"]["history"].append("user: hi")
        return state

    def add_bot(state: dict) -> dict:
        state["chat"]["history"].append("bot: hello")
        return state

    chain = RunnableLambda(add_user) | RunnableLambda(add_bot)
    chain.invoke({"chat": {"history": ["system: be nice"]}}, config={"callbacks": [LLMObsCallbackHandler()]})
    inputs = {s.name: json.loads(s.attributes[sc.INPUT_VALUE]) for s in recorded.all()}
    assert inputs["RunnableSequence"] == inputs["add_user"] == {"chat": {"history": ["system: be nice"]}}
    assert inputs["add_bot"] == {"chat": {"history": ["system: be nice", "user: hi"]}}
