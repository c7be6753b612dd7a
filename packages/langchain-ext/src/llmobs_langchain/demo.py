"""``llmobs demo`` for LangChain: a LangGraph support agent driven end to end, with scripted models.

Each session is a conversation of two turns on one LangGraph thread (a checkpointer keeps the history).
A turn arrives as a web request (an OTel span the agent's trace hangs under), the agent calls a chat
model with tools bound, runs the tools it asks for — one of them searches a knowledge base through a
retriever over an in-memory vector store — and streams its answer. One order lookup fails, so the
store holds a tool error to look at. The models are :class:`ScriptedChatModel` and LangChain's
deterministic fake embeddings: real LangChain and LangGraph code paths, no network, no API key.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.messages import AIMessage, SystemMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool
from langchain_core.vectorstores import InMemoryVectorStore
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

import llmobs
from llmobs_langchain.handler import LLMObsCallbackHandler
from llmobs_langchain.scripted import ScriptedChatModel

AGENT = "support-agent"
MODEL = "gpt-4.1-mini"
SYSTEM = "You are the support agent of an online shop. Look orders up and cite the help centre."
KB = [
    ("kb-12", "Orders ship within 2 business days; tracking arrives by email."),
    ("kb-07", "Delayed orders can be escalated after 5 business days."),
    ("kb-31", "The delivery address can be changed until the parcel has shipped."),
    ("kb-44", "Refunds reach the original payment method within 5 to 10 days."),
]
ORDERS = {"A1043": "shipped", "B2211": "processing", "D0042": "out_for_delivery"}
CONVERSATIONS = [
    ("A1043", "Where is my order #A1043?", "Can I still change the delivery address?"),
    ("B2211", "Has order #B2211 shipped yet? It is a birthday gift.", "How long do refunds take if I cancel?"),
    ("C7310", "Can you check order #C7310, please?", "Then how do I escalate a delayed order?"),
]


@tool
def get_order_status(order_id: str) -> dict[str, str]:
    """Look up the shipping status of an order."""
    if order_id not in ORDERS:
        raise LookupError(f"no order {order_id}")
    return {"order_id": order_id, "status": ORDERS[order_id]}


def knowledge_base() -> BaseRetriever:
    """A retriever over the help-centre articles, in memory, with deterministic fake embeddings."""
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=64))
    store.add_documents([Document(page_content=text, id=doc_id) for doc_id, text in KB])
    return store.as_retriever(search_kwargs={"k": 2})


def search_tool(retriever: BaseRetriever) -> BaseTool:
    @tool
    def search_help_centre(query: str) -> str:
        """Search the help-centre articles."""
        return "\n".join(f"[{doc.id}] {doc.page_content}" for doc in retriever.invoke(query))

    return search_help_centre


def support_agent(model: ScriptedChatModel, tools: list[BaseTool]) -> Runnable:
    """A tool-calling agent graph: the model decides, tools run, until the model answers. Named the way
    LangChain's ``create_agent`` names its agents (``lc_agent_name``), so it is traced as an agent."""
    bound = model.bind_tools(tools)

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [bound.invoke([SystemMessage(SYSTEM), *state["messages"]])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools, handle_tool_errors=True))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    compiled = graph.compile(checkpointer=InMemorySaver(), name=AGENT)
    return compiled.with_config(metadata={"lc_agent_name": AGENT})


def script(session: int) -> Iterator[AIMessage]:
    """What the model answers, call by call, in one session's two turns."""
    order_id, _, follow_up = CONVERSATIONS[session % len(CONVERSATIONS)]
    status = ORDERS.get(order_id)
    answer = (
        f"Your order {order_id} is {status.replace('_', ' ')}; tracking details are in your email [kb-12]."
        if status
        else f"I could not find order {order_id}. Please check the number on your confirmation email."
    )
    yield _reply(
        session, 1, "", 212, 31, calls=[("get_order_status", {"order_id": order_id}),
                                        ("search_help_centre", {"query": "shipping times"})])  # fmt: skip
    yield _reply(session, 2, answer, 356, len(answer.split()) + 6)
    yield _reply(session, 3, "", 401, 18, calls=[("search_help_centre", {"query": follow_up})], cached=256)
    yield _reply(session, 4, "Yes — see the help-centre article I found for the details.", 489, 17, cached=384)


def _reply(
    session: int,
    call: int,
    text: str,
    input_tokens: int,
    output_tokens: int,
    *,
    calls: list[tuple[str, dict[str, Any]]] = (),  # type: ignore[assignment]
    cached: int = 0,
) -> AIMessage:
    usage: dict[str, Any] = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
    if cached:
        usage["input_token_details"] = {"cache_read": cached}
    return AIMessage(
        content=text,
        id=f"chatcmpl-demo-{session:02d}{call:02d}",
        tool_calls=[{"name": n, "args": a, "id": f"call_{session}{call}{i}"} for i, (n, a) in enumerate(calls)],
        usage_metadata=usage,
        response_metadata={"finish_reason": "tool_calls" if calls else "stop", "model_name": f"{MODEL}-2025-04-14"},
    )


def run(sessions: int = 3) -> list[str]:
    """Run ``sessions`` two-turn conversations through the traced agent; returns their trace ids."""
    handler = LLMObsCallbackHandler()
    retriever = knowledge_base()
    trace_ids = []
    for session in range(sessions):
        order_id, question, follow_up = CONVERSATIONS[session % len(CONVERSATIONS)]
        model = ScriptedChatModel(messages=script(session), model=MODEL, provider="openai")
        agent = support_agent(model, [get_order_status, search_tool(retriever)])
        thread = f"lc-thread-{session + 1:04d}"
        user = f"customer-{order_id}"
        for text in (question, follow_up):
            with llmobs.span("POST /support/chat", session_id=thread, user_id=user) as request:
                config = {
                    "callbacks": [handler],
                    "configurable": {"thread_id": thread},
                    "metadata": {"user_id": user},
                }
                for _ in agent.stream({"messages": [("user", text)]}, config, stream_mode="messages"):
                    pass  # a web app would forward each token to the browser here
                trace_ids.append(request.trace_id)
    return trace_ids
