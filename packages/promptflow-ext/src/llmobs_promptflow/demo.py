"""``llmobs demo`` for Promptflow: a flex-style travel-desk flow of ``@trace`` functions whose model calls
go through Promptflow's own traced ``openai`` client to llmobs-openai's loopback server — no network, no key.

Each session asks a question (embedding, retrieval, a chat answer) and a follow-up (a streamed answer
that asks for its usage chunk), so the store holds Promptflow chains, tasks, embeddings and chat calls
with usage, all under the session's id. Registered under the ``llmobs.demos`` entry-point group.
"""

from __future__ import annotations

import os
from typing import Any

import openai
from promptflow.tracing import start_trace, trace

import llmobs
from llmobs_openai.testing import FakeOpenAIServer
from llmobs_promptflow import instrument

CHAT_MODEL = "desk-chat-lite"
EMBED_MODEL = "desk-embed-lite"
GUIDE = [
    "Lisbon trams run from 6am to 11pm; a day pass covers trams, buses and the metro.",
    "Porto's riverside cellars offer tastings most afternoons; book ahead in summer.",
    "Madeira flights can divert in strong wind; keep a spare day at the end of the trip.",
    "The Algarve coast trail is best walked in spring or autumn, with water for the day.",
]
QUESTIONS = [
    ("How late do Lisbon trams run?", "Is there a day pass?"),
    ("Can I visit Porto cellars?", "Do I need to book?"),
    ("Any advice for flying to Madeira?", "How much spare time should I keep?"),
]


def _reply(messages: list[dict[str, Any]]) -> str:
    """The loopback model: answers from the first guide entry the system prompt was given."""
    context = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
    fact = context.split("\n")[1] if "\n" in context else "I have no notes on that."
    return f"From the travel guide: {fact}"


@trace
def embed(client: openai.OpenAI, text: str) -> int:
    return len(client.embeddings.create(model=EMBED_MODEL, input=[text]).data[0].embedding)


@trace
def retrieve(question: str) -> list[str]:
    words = {w.strip("?,.").lower() for w in question.split() if len(w) > 3}
    return sorted(GUIDE, key=lambda fact: -len(words & {w.strip(";,.").lower() for w in fact.split()}))[:2]


@trace
def answer(client: openai.OpenAI, question: str, facts: list[str], *, stream: bool) -> str:
    messages = [
        {"role": "system", "content": "Answer from these notes:\n" + "\n".join(facts)},
        {"role": "user", "content": question},
    ]
    if not stream:
        return client.chat.completions.create(model=CHAT_MODEL, messages=messages).choices[0].message.content
    chunks = client.chat.completions.create(
        model=CHAT_MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@trace
def travel_desk(client: openai.OpenAI, question: str, *, stream: bool = False) -> str:
    embed(client, question)
    return answer(client, question, retrieve(question), stream=stream)


def run(sessions: int) -> list[str]:
    """Run ``sessions`` sessions (two traces each) through Promptflow with llmobs; returns the trace ids."""
    previous = os.environ.get("PF_DISABLE_TRACING")
    os.environ["PF_DISABLE_TRACING"] = "false"  # Promptflow traces nothing unless told to
    try:
        instrument()
        start_trace(collection="llmobs-demo")
        trace_ids = []
        with FakeOpenAIServer(reply=_reply) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="demo-key", max_retries=0)
            for i in range(sessions):
                session = f"pf-sess-{i + 1:04d}"
                for turn, question in enumerate(QUESTIONS[i % len(QUESTIONS)]):
                    with llmobs.span("travel-desk", session_id=session, user_id="demo-traveller", parent=llmobs.ROOT,
                                     input=question) as span:  # fmt: skip
                        span.set_output(value=travel_desk(client, question, stream=turn == 1))
                        trace_ids.append(span.trace_id)
        return trace_ids
    finally:
        if previous is None:
            os.environ.pop("PF_DISABLE_TRACING", None)
        else:
            os.environ["PF_DISABLE_TRACING"] = previous
