"""Agents, tools and workflows (llama-index-workflows), rerankers and chat engines, and trace propagation."""

from __future__ import annotations

import asyncio
import contextvars
import json

import pytest
from fake_llms import ANSWER, UsageLLM
from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms import MockFunctionCallingLLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.tools import FunctionTool
from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent

from llmobs import semconv as sc
from llmobs.recorder import get_recorder

pytestmark = [
    pytest.mark.usefixtures("instrumented"),
    # llama-index-workflows reads deprecated pydantic attributes while it collects an agent's steps
    pytest.mark.filterwarnings("ignore::DeprecationWarning:inspect"),
]


def get_weather(city: str = "Paris") -> str:
    """Get the weather in a city."""
    return f"sunny in {city}"


def flaky_lookup(code: str = "X1") -> str:
    """Look up a code (always fails)."""
    raise LookupError(f"no such code {code}")


def run_agent(tools, question: str = "What is the weather?"):
    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(fn=t) for t in tools],
        llm=MockFunctionCallingLLM(),
        system_prompt="You are helpful.",
        name="weather_agent",
        description="Answers weather",
    )

    async def go():
        return await agent.run(question)

    return asyncio.run(go())


def test_function_agent_tree(spans):
    result = run_agent([get_weather])
    assert str(result) == "Tool calls complete."
    (root,) = spans.roots()
    assert root.name == "invoke_agent weather_agent"
    a = root.attributes
    assert (a[sc.OPERATION_NAME], a[sc.SPAN_KIND], a[sc.AGENT_NAME]) == (
        sc.OP_INVOKE_AGENT,
        sc.KIND_AGENT,
        "weather_agent",
    )
    assert a[sc.AGENT_DESCRIPTION] == "Answers weather"
    assert a[sc.INPUT_VALUE] == "What is the weather?" and a[sc.OUTPUT_VALUE] == "Tool calls complete."
    steps = spans.children(root)
    assert {s.attributes[sc.SPAN_KIND] for s in steps} == {sc.KIND_TASK}
    assert [s.name for s in steps][:4] == ["init_run", "setup_agent", "run_agent_step", "parse_agent_output"]
    llm_steps = [s for s in steps if s.name == "run_agent_step"]
    assert [[c.name for c in spans.children(s)] for s in llm_steps] == [["chat MockFunctionCallingLLM"]] * 2
    (call_tool,) = [s for s in steps if s.name == "call_tool"]
    (tool,) = spans.children(call_tool)
    assert tool.name == "execute_tool get_weather"
    t = tool.attributes
    assert (t[sc.OPERATION_NAME], t[sc.SPAN_KIND], t[sc.TOOL_NAME]) == (sc.OP_EXECUTE_TOOL, sc.KIND_TOOL, "get_weather")
    assert json.loads(t[sc.TOOL_CALL_ARGUMENTS]) == {"city": "Paris"}
    assert t[sc.TOOL_CALL_RESULT] == "sunny in Paris"
    assert t[sc.TOOL_CALL_ID].startswith("mock-tool-call-")
    first_llm = spans.children(llm_steps[0])[0].attributes
    assert first_llm[sc.RESPONSE_FINISH_REASONS] == (sc.FINISH_TOOL_CALL,)
    (message,) = json.loads(first_llm[sc.OUTPUT_MESSAGES])
    (call,) = message["parts"]
    assert (call["type"], call["name"], call["id"]) == ("tool_call", "get_weather", t[sc.TOOL_CALL_ID])
    (tool_definition,) = json.loads(first_llm[sc.TOOL_DEFINITIONS])
    assert tool_definition["name"] == "get_weather" and "city" in json.dumps(tool_definition["parameters"])
    assert first_llm[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0


def test_a_tool_error_is_recorded_on_the_tool_span(spans):
    run_agent([flaky_lookup])
    tool = spans.one("execute_tool flaky_lookup")
    assert not tool.status.is_ok and tool.attributes[sc.ERROR_TYPE] == "LookupError"
    assert spans.one("invoke_agent weather_agent").status.is_ok  # the agent handled it


def hand_off_to_writer(messages, **kwargs):
    """The planner's model: hand the conversation to the writer (a real handoff tool call)."""
    handoff = ToolCallBlock(tool_call_id="call-handoff", tool_name="handoff",
                            tool_kwargs={"to_agent": "writer", "reason": "the user wants prose"})  # fmt: skip
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=[handoff])


def test_agent_workflow_turns_are_invocations_of_each_agent(spans):
    planner = FunctionAgent(
        name="planner", description="Plans the answer", tools=[FunctionTool.from_defaults(fn=get_weather)],
        llm=MockFunctionCallingLLM(response_generator=hand_off_to_writer), can_handoff_to=["writer"],
    )  # fmt: skip
    writer = FunctionAgent(name="writer", description="Writes prose", tools=[], llm=MockFunctionCallingLLM())

    async def go():
        return await AgentWorkflow(agents=[planner, writer], root_agent="planner").run(user_msg="A poem on rain?")

    answer = str(asyncio.run(go()))
    assert answer == "Tool calls complete."  # the writer's mock model, after the handoff's tool result
    (root,) = spans.roots()
    assert root.name == "invoke_workflow AgentWorkflow"
    turns = [s for s in spans.children(root) if s.attributes[sc.OPERATION_NAME] == sc.OP_INVOKE_AGENT]
    assert [t.name for t in turns] == ["invoke_agent planner", "invoke_agent writer"]
    for turn, description in zip(turns, ["Plans the answer", "Writes prose"], strict=True):
        a = turn.attributes
        assert (a[sc.SPAN_KIND], a[sc.AGENT_DESCRIPTION]) == (sc.KIND_AGENT, description)
        assert a[sc.INPUT_VALUE] == "A poem on rain?"
        assert [c.name for c in spans.children(turn)] == ["chat MockFunctionCallingLLM"]
    assert turns[1].attributes[sc.OUTPUT_VALUE] == answer
    assert spans.one("execute_tool handoff").attributes[sc.TOOL_CALL_ID] == "call-handoff"
    # a single agent's own step stays a step inside its invoke_agent span (no agent-in-agent)
    spans.clear()
    run_agent([get_weather])
    (single,) = spans.roots()
    assert [s.name for s in spans.all() if s.attributes[sc.OPERATION_NAME] == sc.OP_INVOKE_AGENT] == [single.name]


class Pipeline(Workflow):
    @step
    async def draft(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=f"draft about {ev.topic}")


def test_workflow_run_and_steps(spans):
    async def go():
        return await Pipeline().run(topic="otters")

    assert asyncio.run(go()) == "draft about otters"
    (root,) = spans.roots()
    assert root.name == "invoke_workflow Pipeline"
    assert root.attributes[sc.WORKFLOW_NAME] == "Pipeline"
    assert root.attributes[sc.OUTPUT_VALUE] == "draft about otters"
    (draft,) = spans.children(root)
    assert (draft.name, draft.attributes[sc.SPAN_KIND]) == ("draft", sc.KIND_TASK)
    assert "otters" in draft.attributes[sc.INPUT_VALUE] and "otters" in draft.attributes[sc.OUTPUT_VALUE]


class KeywordRerank(BaseNodePostprocessor):
    """A reranker scoring nodes by keyword overlap with the query."""

    top_n: int = 2

    def _postprocess_nodes(self, nodes, query_bundle=None):
        words = set(query_bundle.query_str.lower().split())
        for node in nodes:
            node.score = float(len(words & set(node.node.get_content().lower().split())))
        return sorted(nodes, key=lambda n: n.score, reverse=True)[: self.top_n]


def test_reranker_records_top_n_counts_and_scores(index, spans):
    engine = index.as_query_engine(llm=UsageLLM(), similarity_top_k=4, node_postprocessors=[KeywordRerank()])
    assert str(engine.query("figures number 7")) == ANSWER
    rerank = spans.one("rerank_documents KeywordRerank")
    a = rerank.attributes
    assert (a[sc.OPERATION_NAME], a[sc.SPAN_KIND]) == (sc.OP_RERANK, sc.KIND_RERANKER)
    assert a[sc.REQUEST_TOP_K] == 2 and a[sc.RERANK_DOCUMENTS_COUNT] == 4
    documents = json.loads(a[sc.RETRIEVAL_DOCUMENTS])  # where a retriever's documents go
    assert len(documents) == 2 and documents[0]["score"] >= documents[1]["score"] >= 0
    assert a[sc.RETRIEVAL_QUERY_TEXT] == "figures number 7" and sc.OUTPUT_VALUE not in a
    assert rerank.parent.span_id == spans.one("RetrieverQueryEngine.query").context.span_id


def test_chat_engine_plain_and_streaming(spans):
    engine = SimpleChatEngine.from_defaults(llm=UsageLLM())
    assert str(engine.chat("hello")) == ANSWER
    streamed = engine.stream_chat("again")
    assert "".join(streamed.response_gen) == ANSWER
    roots = spans.roots()
    assert [spans.tree(r) for r in roots] == [
        ("SimpleChatEngine.chat", (("chat fake-gpt", ()),)),
        ("SimpleChatEngine.stream_chat", (("chat fake-gpt", ()),)),
    ]
    plain, stream = spans.named("chat fake-gpt")
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK not in plain.attributes
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK in stream.attributes
    assert roots[1].end_time >= stream.end_time


def test_propagation_context_carries_the_traceparent(index, spans):
    dispatcher = get_dispatcher()
    outer = get_recorder().start(sc.OP_CHAIN, "upstream service")
    carried = {"llmobs.traceparent": outer.traceparent}

    def remote_side():  # e.g. a workflow resumed in another process, or a worker thread without our context
        dispatcher.restore_propagation_context(carried)
        index.as_query_engine(llm=UsageLLM()).query("topic 1")

    contextvars.Context().run(remote_side)
    outer.end()
    query = spans.one("RetrieverQueryEngine.query")
    assert query.parent.span_id == outer.span.get_span_context().span_id
    assert query.context.trace_id == outer.span.get_span_context().trace_id

    captured = {}

    class CapturingLLM(UsageLLM):
        def complete(self, prompt, formatted=False, **kwargs):
            captured.update(dispatcher.capture_propagation_context())
            return super().complete(prompt, formatted=formatted, **kwargs)

    spans.clear()
    index.as_query_engine(llm=CapturingLLM()).query("topic 2")
    llm = spans.one("text_completion fake-gpt")
    assert captured["llmobs.traceparent"].startswith(f"00-{llm.context.trace_id:032x}-{llm.context.span_id:016x}-")


def test_an_agent_inside_an_llmobs_span_carries_its_session_and_user(spans):
    """The agent's workflow task gets its caller's trace context as a traceparent string: its spans still take
    the session and user of the enclosing span."""
    import llmobs

    async def go():
        with llmobs.span("answer", session_id="S1", user_id="U1"):
            agent = FunctionAgent(tools=[FunctionTool.from_defaults(fn=get_weather)], llm=MockFunctionCallingLLM(),
                                  name="weather_agent", description="Answers weather")  # fmt: skip
            return await agent.run("What is the weather?")

    asyncio.run(go())
    inside = [s for s in spans.all() if s.name != "answer"]
    assert len(inside) > 5
    assert {(s.attributes.get(sc.SESSION_ID), s.attributes.get(sc.USER_ID)) for s in inside} == {("S1", "U1")}
