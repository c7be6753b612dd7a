"""LlamaIndex instrumentation events → the run they belong to.

Only events that carry something the span handler cannot see are handled: an LLM call's messages,
chunks, response and usage; a reranker's model; a workflow step's output; a cancellation. Retrieval,
embedding and query inputs and outputs are read from the span's own arguments and result instead.

LLM events name the span that emitted them. When a call is implemented by another call on the same
LLM (``chat`` → ``complete``, ``astream_chat`` → ``stream_chat``), both spans belong to one run and the
first span to announce a start is its *owner*: its messages, chunks and response describe the call, so
tokens and chunks are counted once. An LLM run wrapping another LLM's run (``nested``) leaves usage and
chunks to the inner one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmobs import content
from llmobs_llamaindex import classes, components, translate

if TYPE_CHECKING:
    from llmobs_llamaindex.tracker import Run, Tracker

_LLM_PARAMETERS = ("temperature", "max_tokens", "top_p", "seed")


def by_event_class() -> dict[type, Callable[[Tracker, Run, Any], None]]:
    """Event class → handler, for the event classes this LlamaIndex version has."""
    table = {
        "llama_index.core.instrumentation.events.llm.LLMChatStartEvent": _chat_start,
        "llama_index.core.instrumentation.events.llm.LLMCompletionStartEvent": _completion_start,
        "llama_index.core.instrumentation.events.llm.LLMChatInProgressEvent": _chat_chunk,
        "llama_index.core.instrumentation.events.llm.LLMCompletionInProgressEvent": _completion_chunk,
        "llama_index.core.instrumentation.events.llm.LLMChatEndEvent": _chat_end,
        "llama_index.core.instrumentation.events.llm.LLMCompletionEndEvent": _completion_end,
        "llama_index.core.instrumentation.events.exception.ExceptionEvent": _exception,
        "llama_index.core.instrumentation.events.rerank.ReRankStartEvent": _rerank_start,
        "workflows.runtime.types.step_function.WorkflowStepOutputEvent": _step_output,
        "workflows.runtime.types.step_function.SpanCancelledEvent": _cancelled,
    }
    found = ((classes.find(path), handler) for path, handler in table.items())
    return {cls: handler for cls, handler in found if cls is not None}


# --- LLM calls -------------------------------------------------------------------------------------


def _record_request(run: Run, event: Any, messages: list[dict[str, Any]]) -> None:
    handle = run.handle
    model = event.model_dict.get("model_name")
    request = {"model": model} if isinstance(model, str) and model != "unknown" and model != handle.model else {}
    extra = event.additional_kwargs
    if extra:
        request.update((k, extra[k]) for k in _LLM_PARAMETERS if extra.get(k) is not None)
        if extra.get("stop"):
            request["stop_sequences"] = extra["stop"]
    if request:
        handle.set_request(**request)
    tools = extra.get("tools") if extra else None
    handle.set_input(messages, tools=_ToolDefinitions(tools) if tools else None)


def _chat_start(tracker: Tracker, run: Run, event: Any) -> None:
    if run.owner is None and run.spec.category == components.LLM:
        run.owner = event.span_id
        _record_request(run, event, translate.input_messages(event.messages))


def _completion_start(tracker: Tracker, run: Run, event: Any) -> None:
    if run.owner is None and run.spec.category == components.LLM:
        run.owner = event.span_id
        _record_request(run, event, translate.prompt_messages(event.prompt))


def _chat_chunk(tracker: Tracker, run: Run, event: Any) -> None:
    if run.owner == event.span_id:
        run.last_ns = time.time_ns()
        response = event.response
        if not run.nested and (response.delta or translate.has_tool_calls(response.message)):
            run.handle.chunk()


def _completion_chunk(tracker: Tracker, run: Run, event: Any) -> None:
    if run.owner == event.span_id:
        run.last_ns = time.time_ns()
        if not run.nested and event.response.delta:
            run.handle.chunk()


def _chat_end(tracker: Tracker, run: Run, event: Any) -> None:
    response = event.response
    message = response.message if response is not None else None
    _end(
        tracker,
        run,
        event,
        response,
        lambda finish: translate.output_message(message, finish),
        translate.has_tool_calls(message),
    )


def _completion_end(tracker: Tracker, run: Run, event: Any) -> None:
    response = event.response
    _end(tracker, run, event, response, lambda finish: translate.text_output(response.text, finish), False)


def _end(tracker: Tracker, run: Run, event: Any, response: Any, output: Callable[[str], Any], tools: bool) -> None:
    if run.spec.category != components.LLM:
        return
    handle = run.handle
    if response is not None and not run.nested:
        usage = translate.usage_of(response)
        if usage is not None:  # any span of the run may report it; the owner's report, coming last, wins
            handle.set_usage(
                *usage[:2],
                cache_read=usage.cache_read,
                cache_write=usage.cache_write,
                reasoning=usage.reasoning,
                total=usage.total,
            )
    if run.owner != event.span_id:
        return
    if response is not None:
        finish = translate.finish_reason_of(response, tools)
        response_id, response_model = translate.response_identity(response)
        handle.set_output(
            [output(finish)], finish_reasons=[finish], response_id=response_id, response_model=response_model
        )
    if run.deferred:
        tracker.end(run)


def _exception(tracker: Tracker, run: Run, event: Any) -> None:
    """A stream failed (or was closed early) after its span exited: end the deferred run with it."""
    if run.deferred and event.span_id in (run.owner, run.id):
        tracker.fail(run, event.exception)


class _ToolDefinitions:
    """Tools offered to an LLM, converted to GenAI tool definitions only if the span's content is recorded.

    Building a tool's JSON schema is costly; the core renders content lazily and calls ``model_dump``
    on objects it serialises, so the conversion happens there, once, or never.
    """

    __slots__ = ("_tools",)

    def __init__(self, tools: Any) -> None:
        self._tools = tools

    def model_dump(self) -> list[dict[str, Any]]:
        out = []
        for tool in self._tools:
            metadata = getattr(tool, "metadata", None)
            if metadata is None:
                out.extend(content.tool_definitions_from_openai([tool]))
            else:
                out.append(
                    content.tool_definition(metadata.name or "", metadata.description, metadata.get_parameters_dict())
                )
        return out


# --- other components -------------------------------------------------------------------------------


def _rerank_start(tracker: Tracker, run: Run, event: Any) -> None:
    if run.spec.category == components.RERANKER:
        request = {"top_k": event.top_n} if isinstance(event.top_n, int) else {}
        if isinstance(event.model_name, str) and event.model_name:
            request["model"] = event.model_name
        run.handle.set_request(**request)


def _step_output(tracker: Tracker, run: Run, event: Any) -> None:
    if run.spec.category == components.STEP:
        run.handle.set_output(value=event.output)


def _cancelled(tracker: Tracker, run: Run, event: Any) -> None:
    run.reason = event.reason or "cancelled"
