"""LangGraph agents, tools and retrievers: the agent loop's span tree, tool and retrieval attributes,
agents named by LangChain (``lc_agent_name``), interrupts, and runnables nested in tools."""

from __future__ import annotations

import json

import pytest
from langchain_core.agents import AgentAction, AgentFinish
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import StructuredTool, ToolException, tool
from langchain_core.vectorstores import InMemoryVectorStore
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, interrupt
from opentelemetry.trace import StatusCode

from llmobs import semconv as sc
from llmobs.content import CaptureMode
from llmobs_langchain import LLMObsCallbackHandler


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"sunny in {city}"


@tool
def get_forecast(city: str) -> str:
    """Tomorrow's forecast for a city."""
    raise RuntimeError("forecast service down")


def agent_graph(model, tools, **compile_options):
    bound = model.bind_tools(tools)
    graph = StateGraph(MessagesState)
    graph.add_node("agent", lambda state: {"messages": [bound.invoke(state["messages"])]})
    graph.add_node("tools", ToolNode(tools, handle_tool_errors=True))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(**compile_options)


@pytest.fixture
def weather_agent(scripted, reply):
    model = scripted(
        reply(calls=[("get_weather", {"city": "Oslo"}, "call_1")], usage=(40, 9), finish="tool_calls"),
        reply("It is sunny in Oslo.", usage=(60, 7), finish="stop"),
        model="gpt-4o-mini",
    )
    return agent_graph(model, [get_weather])


def config(**metadata):
    return {"callbacks": [LLMObsCallbackHandler()], "metadata": metadata, "configurable": {"thread_id": "t-7"}}


def test_agent_loop_span_tree(weather_agent, recorded):
    weather_agent.invoke({"messages": [("user", "Weather in Oslo?")]}, config=config(user_id="bob"))
    root = recorded.one("invoke_workflow LangGraph")
    assert recorded.parent(root) is None
    assert root.attributes[sc.OPERATION_NAME] == sc.OP_INVOKE_WORKFLOW
    assert root.attributes[sc.WORKFLOW_NAME] == "LangGraph"
    assert recorded.child_names(root) == ["agent", "tools", "agent"]
    first_agent, tools, second_agent = (s for s in recorded.all() if recorded.parent(s) == root)
    assert recorded.child_names(first_agent) == ["chat gpt-4o-mini", "tools_condition"]
    assert recorded.child_names(tools) == ["execute_tool get_weather"]
    assert recorded.child_names(second_agent) == ["chat gpt-4o-mini", "tools_condition"]
    assert len(recorded.all()) == 9
    for span in recorded.all():  # thread_id and user_id from the run metadata, on every span
        assert span.attributes[sc.SESSION_ID] == "t-7"
        assert span.attributes[sc.USER_ID] == "bob"


def test_tool_span_attributes(weather_agent, recorded):
    weather_agent.invoke({"messages": [("user", "Weather in Oslo?")]}, config=config())
    attrs = recorded.one("execute_tool get_weather").attributes
    assert attrs[sc.OPERATION_NAME] == sc.OP_EXECUTE_TOOL
    assert attrs[sc.SPAN_KIND] == sc.KIND_TOOL
    assert attrs[sc.TOOL_NAME] == "get_weather"
    assert attrs[sc.TOOL_CALL_ID] == "call_1"
    assert attrs[sc.TOOL_DESCRIPTION] == "Current weather in a city."
    assert json.loads(attrs[sc.TOOL_CALL_ARGUMENTS]) == {"city": "Oslo"}
    assert attrs[sc.TOOL_CALL_RESULT] == "sunny in Oslo"


def test_token_usage_of_the_loop_sums_to_the_models(weather_agent, recorded):
    weather_agent.invoke({"messages": [("user", "Weather in Oslo?")]}, config=config())
    chats = recorded.named("chat gpt-4o-mini")
    assert [c.attributes[sc.USAGE_INPUT_TOKENS] for c in chats] == [40, 60]
    assert sum(c.attributes[sc.USAGE_TOTAL_TOKENS] for c in chats) == 40 + 9 + 60 + 7


def test_failing_tool_is_an_error_span_and_the_agent_carries_on(scripted, reply, recorded):
    model = scripted(
        reply(calls=[("get_forecast", {"city": "Oslo"}, "call_2")]),
        reply("The forecast is unavailable."),
        model="m",
    )
    out = agent_graph(model, [get_forecast]).invoke({"messages": [("user", "Forecast?")]}, config=config())
    assert out["messages"][-1].content == "The forecast is unavailable."
    failed = recorded.one("execute_tool get_forecast")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes[sc.ERROR_TYPE] == "RuntimeError"
    assert recorded.one("invoke_workflow LangGraph").status.status_code is StatusCode.UNSET


def test_tool_that_handles_its_own_error_is_still_marked_failed(recorded):
    def look_up(key: str) -> str:
        raise ToolException(f"no key {key}")

    lookup = StructuredTool.from_function(look_up, name="lookup", description="Look a key up.", handle_tool_error=True)

    call = {"name": "lookup", "args": {"key": "k"}, "id": "call_k", "type": "tool_call"}  # as an agent calls it
    result = lookup.invoke(call, config=config())
    assert (result.content, result.status) == ("no key k", "error")
    span = recorded.one("execute_tool lookup")
    assert span.status.status_code is StatusCode.ERROR and span.attributes[sc.ERROR_TYPE] == "tool_error"


def test_lc_agent_name_makes_agent_spans_including_a_subagent_inside_a_tool(scripted, reply, recorded):
    researcher = agent_graph(scripted(reply("Oslo has 700k people."), model="small"), []).with_config(
        metadata={"lc_agent_name": "researcher"}
    )

    @tool
    def ask_researcher(question: str) -> str:
        """Delegate a research question."""
        return researcher.invoke({"messages": [("user", question)]})["messages"][-1].content

    supervisor_model = scripted(
        reply(calls=[("ask_researcher", {"question": "Population of Oslo?"}, "call_r")]),
        reply("About 700k."),
        model="big",
    )
    supervisor = agent_graph(supervisor_model, [ask_researcher]).with_config(metadata={"lc_agent_name": "supervisor"})
    supervisor.invoke({"messages": [("user", "How many people live in Oslo?")]}, config=config())

    root = recorded.one("invoke_agent supervisor")
    assert recorded.parent(root) is None
    assert root.attributes[sc.SPAN_KIND] == sc.KIND_AGENT
    assert root.attributes[sc.AGENT_NAME] == "supervisor"
    sub = recorded.one("invoke_agent researcher")
    assert recorded.parent(sub).name == "execute_tool ask_researcher"  # nested runnable inside a tool
    assert recorded.child_names(sub) == ["agent"]
    assert recorded.named("agent")  # the supervisor's own nodes stay chain steps
    assert all(s.attributes[sc.OPERATION_NAME] == sc.OP_CHAIN for s in recorded.named("agent"))


def test_runnable_called_inside_a_tool_is_its_child(recorded):
    shout = RunnableLambda(lambda text: text.upper(), name="shout")

    @tool
    def loud(text: str) -> str:
        """Say it loud."""
        return shout.invoke(text)

    assert loud.invoke({"text": "hi"}, config=config()) == "HI"
    assert recorded.parent(recorded.one("shout")).name == "execute_tool loud"


def test_interrupt_is_not_an_error(recorded):
    def ask_human(state: MessagesState):
        answer = interrupt("approve?")
        return {"messages": [("user", answer)]}

    graph = StateGraph(MessagesState)
    graph.add_node("ask_human", ask_human)
    graph.add_edge(START, "ask_human")
    app = graph.compile(checkpointer=InMemorySaver())
    paused = app.invoke({"messages": [("user", "deploy")]}, config=config())
    assert "__interrupt__" in paused
    node = recorded.one("ask_human")
    assert node.status.status_code is StatusCode.UNSET
    assert node.attributes[sc.STATUS_REASON] == "interrupted"
    assert recorded.one("invoke_workflow LangGraph").status.status_code is StatusCode.UNSET

    app.invoke(Command(resume="yes"), config=config())
    resumed = recorded.named("ask_human")[-1]
    assert resumed.status.status_code is StatusCode.UNSET and sc.STATUS_REASON not in resumed.attributes


def test_legacy_agent_actions_and_finish_are_span_events(recorded):
    def executor(inputs, run_manager):
        run_manager.on_agent_action(AgentAction("search", {"q": "otel"}, "I should search"))
        run_manager.on_agent_finish(AgentFinish({"output": "done"}, "final"))
        return "done"

    RunnableLambda(executor, name="AgentExecutor").invoke("go", config=config())
    span = recorded.one("invoke_agent AgentExecutor")
    action, finish = span.events
    assert action.name == sc.EVENT_AGENT_ACTION
    assert action.attributes[sc.TOOL_NAME] == "search"
    assert json.loads(action.attributes[sc.TOOL_CALL_ARGUMENTS]) == {"q": "otel"}
    assert finish.name == sc.EVENT_AGENT_FINISH
    assert json.loads(finish.attributes[sc.OUTPUT_VALUE]) == {"output": "done"}


@pytest.fixture
def retriever():
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents([
        Document("Orders ship in 2 days.", id="kb-1"),
        Document("Refunds take a week.", id="kb-2", metadata={"score": 0.5}),
    ])  # fmt: skip
    return store.as_retriever(search_kwargs={"k": 2})


def test_retriever_span_with_query_and_documents(retriever, recorded):
    docs = retriever.invoke("shipping time", config=config())
    span = recorded.one("retrieval VectorStoreRetriever")
    assert span.attributes[sc.OPERATION_NAME] == sc.OP_RETRIEVAL
    assert span.attributes[sc.SPAN_KIND] == sc.KIND_RETRIEVER
    assert span.attributes[sc.DATA_SOURCE_ID] == "InMemoryVectorStore"
    assert span.attributes[sc.RETRIEVAL_QUERY_TEXT] == "shipping time"
    recorded_docs = json.loads(span.attributes[sc.RETRIEVAL_DOCUMENTS])
    assert [d["id"] for d in recorded_docs] == [d.id for d in docs]
    assert {d["content"] for d in recorded_docs} == {"Orders ship in 2 days.", "Refunds take a week."}
    assert next(d for d in recorded_docs if d["id"] == "kb-2")["score"] == 0.5


def test_retriever_without_content_capture(settings, retriever, recorded):
    settings(capture=CaptureMode.NO_CONTENT)
    retriever.invoke("shipping time", config=config())
    attrs = recorded.one("retrieval VectorStoreRetriever").attributes
    assert sc.RETRIEVAL_QUERY_TEXT not in attrs and sc.RETRIEVAL_DOCUMENTS not in attrs
    assert attrs[sc.OPERATION_NAME] == sc.OP_RETRIEVAL


def test_streaming_agent_gets_ttft_on_every_model_call(weather_agent, recorded):
    tokens = [m.content for m, _ in weather_agent.stream(
        {"messages": [("user", "Weather?")]}, config=config(), stream_mode="messages"
    ) if isinstance(m, AIMessage)]  # fmt: skip
    assert "".join(tokens).endswith("It is sunny in Oslo.")
    for chat in recorded.named("chat gpt-4o-mini"):  # the first call streams only a tool-call chunk
        assert chat.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] > 0
        assert chat.attributes[sc.REQUEST_STREAM] is True


def test_a_command_to_the_parent_graph_is_control_flow_not_an_error(recorded):
    """A subgraph node that hands control to its parent graph (``Command(graph=Command.PARENT)``) raises
    LangGraph's ParentCommand through the subgraph: its runs end as control flow."""
    class State(MessagesState):
        route: str

    def escalate(state: State):
        return Command(graph=Command.PARENT, goto="human", update={"route": "escalated"})

    inner = StateGraph(State)
    inner.add_node("escalate", escalate)
    inner.add_edge(START, "escalate")
    outer = StateGraph(State)
    outer.add_node("triage", inner.compile())
    outer.add_node("human", lambda state: {"messages": [("user", "taken over")]})
    outer.add_edge(START, "triage")
    result = outer.compile().invoke({"messages": [("user", "help")], "route": ""}, config=config())
    assert result["route"] == "escalated" and result["messages"][-1].content == "taken over"
    node = recorded.one("escalate")
    assert node.status.status_code is StatusCode.UNSET and sc.ERROR_TYPE not in node.attributes
    assert node.attributes[sc.STATUS_REASON] == "control_flow"
    assert all(s.status.status_code is StatusCode.UNSET for s in recorded.all())
    assert recorded.one("human").attributes.get(sc.STATUS_REASON) is None
