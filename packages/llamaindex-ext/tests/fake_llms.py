"""Fake LLMs for the tests: real LlamaIndex ``CustomLLM``s that report token usage the way providers do."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from pydantic import PrivateAttr

ANSWER = "The answer is forty two"


class UsageLLM(CustomLLM):
    """Answers ``ANSWER``; usage in ``raw.usage`` (OpenAI's shape) or, with ``usage_in_kwargs``, in
    ``additional_kwargs`` (how llama-index-llms-openai reports it)."""

    input_tokens: int = 30
    output_tokens: int = 5
    usage_in_kwargs: bool = False
    temperature: float = 0.3

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="fake-gpt", num_output=64)

    def _response(self, text: str, delta: str | None = None, final: bool = True) -> CompletionResponse:
        usage = {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }
        if not final:
            return CompletionResponse(text=text, delta=delta)
        if self.usage_in_kwargs:
            return CompletionResponse(text=text, delta=delta, additional_kwargs=usage)
        raw = {"id": "resp-1", "model": "fake-gpt-2025", "usage": usage, "choices": [{"finish_reason": "length"}]}
        return CompletionResponse(text=text, delta=delta, raw=raw)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._response(ANSWER)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        words = ANSWER.split(" ")

        def chunks() -> CompletionResponseGen:
            for i, word in enumerate(words):
                delta = word if i == 0 else f" {word}"
                yield self._response(" ".join(words[: i + 1]), delta, final=i == len(words) - 1)

        return chunks()


class FailingStreamLLM(UsageLLM):
    """Streams one chunk, then the connection drops."""

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def chunks() -> CompletionResponseGen:
            yield CompletionResponse(text="The", delta="The")
            raise ConnectionError("stream reset by peer")

        return chunks()


class RouterLLM(CustomLLM):
    """An LLM implemented by calling another LLM instance (a router or fallback wrapper)."""

    _inner: Any = PrivateAttr()

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self._inner = inner

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="router")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._inner.complete(prompt, formatted=formatted)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        return self._inner.stream_complete(prompt, formatted=formatted)
