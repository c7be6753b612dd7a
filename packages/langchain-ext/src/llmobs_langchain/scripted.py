"""A scripted chat model that behaves like a real provider, for the demo, the tests and the benchmark.

LangChain's ``GenericFakeChatModel`` replays scripted ``AIMessage``s but cannot bind tools and streams
only text (no tool-call chunks, no usage). :class:`ScriptedChatModel` adds what a provider integration
such as ``ChatOpenAI(stream_usage=True)`` does: ``bind_tools``, a model name and provider for LangSmith's
``ls_*`` metadata, and streaming that starts with an empty role-only chunk and then sends reasoning,
text tokens, tool-call fragments and, on the last chunk, usage and response metadata. No network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool


class ScriptedChatModel(GenericFakeChatModel):
    """Replays ``messages`` (an iterator of ``AIMessage`` or str) one per call, streaming like a provider."""

    model: str = "scripted-chat"
    provider: str = "openai"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = self.provider
        return params

    def bind_tools(
        self, tools: Sequence[dict[str, Any] | type | Callable | BaseTool], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        scripted = next(self.messages)
        message = AIMessage(content=scripted) if isinstance(scripted, str) else scripted
        for chunk in _chunks(message):
            if run_manager:
                run_manager.on_llm_new_token(chunk.content if isinstance(chunk.content, str) else "", chunk=chunk)
            yield ChatGenerationChunk(message=chunk)


def _chunks(message: AIMessage) -> Iterator[AIMessageChunk]:
    yield AIMessageChunk(content="", id=message.id)  # role only, as OpenAI's first chunk
    reasoning = message.additional_kwargs.get("reasoning_content")
    if reasoning:
        yield AIMessageChunk(content="", additional_kwargs={"reasoning_content": reasoning}, id=message.id)
    text = message.content if isinstance(message.content, str) else ""
    for token in re.split(r"(\s)", text):
        if token:
            yield AIMessageChunk(content=token, id=message.id)
    for index, call in enumerate(message.tool_calls):
        fragment = {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"], "index": index}
        yield AIMessageChunk(content="", tool_call_chunks=[fragment], id=message.id)
    yield AIMessageChunk(
        content="",
        id=message.id,
        usage_metadata=message.usage_metadata,
        response_metadata=message.response_metadata,
        chunk_position="last",
    )
