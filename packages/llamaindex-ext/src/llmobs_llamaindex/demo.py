"""``llmobs demo`` for LlamaIndex: a small RAG app over an in-memory index, with fake models and no network.

Each session asks one question with a plain query engine and a follow-up with a streaming one, so the
store holds retrieval, embeddings, a completion with token usage and a streamed completion with its time
to first token — all under the session's id. Registered under the ``llmobs.demos`` entry-point group.
"""

from __future__ import annotations

from typing import Any

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback

import llmobs
from llmobs_llamaindex import instrument

MODEL = "mock-rag-llm"
HANDBOOK = [
    "Orders ship within two business days and tracking arrives by email.",
    "Returns are free within 30 days; the label is in the order page.",
    "Gift orders include a packing slip without prices.",
    "Delayed orders can be escalated to support after five business days.",
    "Express shipping is available in the EU and the UK for a flat fee.",
    "Loyalty points expire after twelve months without a purchase.",
]
QUESTIONS = [
    ("How long does shipping take?", "Can I get it faster?"),
    ("How do returns work?", "Do gift orders show prices?"),
    ("My order is late, what can I do?", "When do points expire?"),
]


class HandbookLLM(CustomLLM):
    """A fake LLM that answers from the retrieved context and reports OpenAI-style token usage."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=MODEL, num_output=128)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        answer = self._answer(prompt)
        return CompletionResponse(text=answer, raw=self._raw(prompt, answer))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        answer = self._answer(prompt)
        words = answer.split(" ")

        def chunks() -> CompletionResponseGen:
            text = ""
            for i, word in enumerate(words):
                delta = word if i == 0 else f" {word}"
                text += delta
                last = i == len(words) - 1
                yield CompletionResponse(text=text, delta=delta, raw=self._raw(prompt, answer) if last else None)

        return chunks()

    @staticmethod
    def _answer(prompt: str) -> str:
        parts = prompt.split("---------------------")  # the default QA template fences the context
        facts = [line.strip() for line in parts[1 if len(parts) > 2 else 0].splitlines() if line.strip()]
        return "From the handbook: " + (facts[0] if facts else "I could not find that.")

    @staticmethod
    def _raw(prompt: str, answer: str) -> dict[str, Any]:
        usage = {"prompt_tokens": len(prompt.split()) * 4 // 3, "completion_tokens": len(answer.split()) * 4 // 3}
        return {"model": MODEL, "usage": usage, "choices": [{"finish_reason": "stop"}]}


def build_index() -> VectorStoreIndex:
    documents = [Document(text=text, doc_id=f"handbook-{i}") for i, text in enumerate(HANDBOOK)]
    return VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=64))


def run(sessions: int) -> list[str]:
    """Run ``sessions`` sessions (two traces each) through instrumented LlamaIndex; returns the trace ids."""
    instrument()
    index = build_index()
    llm = HandbookLLM()
    engine = index.as_query_engine(llm=llm, similarity_top_k=2)
    streaming = index.as_query_engine(llm=llm, similarity_top_k=2, streaming=True)
    trace_ids = []
    for i in range(sessions):
        question, follow_up = QUESTIONS[i % len(QUESTIONS)]
        session = f"li-sess-{i + 1:04d}"
        trace_ids.append(_ask(engine, question, session, stream=False))
        trace_ids.append(_ask(streaming, follow_up, session, stream=True))
    return trace_ids


def _ask(engine: Any, question: str, session: str, *, stream: bool) -> str:
    with llmobs.span(
        "handbook-rag", session_id=session, user_id="demo-user", parent=llmobs.ROOT, input=question
    ) as span:
        response = engine.query(question)
        answer = "".join(response.response_gen) if stream else str(response)
        span.set_output(value=answer)
        return span.trace_id
