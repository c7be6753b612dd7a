"""The LangChain callback handler: each run becomes a span through the llmobs recorder.

A raw ``BaseCallbackHandler`` (not LangChain's ``BaseTracer``, which keeps whole run trees and an
``order_map`` that grows for the life of a global tracer), with ``run_inline = True`` so that async runs
call it in the caller's task rather than on an executor thread — which also sidesteps LangChain's async
``on_llm_start`` dispatch bug for non-inline handlers. It never attaches anything to the OTel context: a
run's parent is its ``parent_run_id``'s span, and a root run's parent is the span current when it
starts (e.g. a web request), so nothing leaks into the caller after sync or async runs.

Every ``on_*`` callback is fail-open: its body is one ``try`` whose ``except`` counts what went wrong in
``llmobs.selfstats`` (``langchain.<callback>_failed``), so it never reaches the application. Written
out in each callback rather than by a wrapping decorator: a wrapper re-packs LangChain's keyword
arguments on every call, which cost more than the body of a streamed chunk's callback.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from llmobs import config, selfstats
from llmobs import semconv as sc
from llmobs.content import CaptureMode
from llmobs.recorder import SpanHandle, get_recorder
from llmobs_langchain import models, translate
from llmobs_langchain.runs import RUNS, Run, RunRegistry

FRAMEWORK = "langchain"
_EMPTY: Mapping[str, Any] = {}
_RETRY_TAG = "retry:attempt:"
_AGENT_KEY = "lc_agent_name"  # metadata LangChain's create_agent (and deep agents) put on an agent's runs
_SESSION_KEYS = ("session_id", "thread_id", "conversation_id")  # the keys LangSmith groups threads by
_INTERRUPT_TYPES = frozenset({"GraphInterrupt", "NodeInterrupt"})  # LangGraph: a pause, not a failure
_BUBBLE_UP = "GraphBubbleUp"  # LangGraph control flow (interrupts, Command(graph=PARENT))
_monotonic = time.monotonic


class LLMObsCallbackHandler(BaseCallbackHandler):
    """Traces LangChain runs (chains, LangGraph graphs and nodes, chat models, LLMs, tools, retrievers,
    agents) as OpenTelemetry GenAI spans with metrics.

    Pass it in ``config={"callbacks": [LLMObsCallbackHandler()]}``, or call
    :func:`llmobs_langchain.instrument` once to trace every run in the process. ``registry``: the table
    of runs in flight; the default is shared by every handler in the process, so a run seen by two
    llmobs handlers gives one span.
    """

    run_inline = True
    raise_error = False

    def __init__(self, *, registry: RunRegistry | None = None) -> None:
        self._runs = registry if registry is not None else RUNS

    def __copy__(self) -> LLMObsCallbackHandler:
        """Itself: a copied ``RunnableConfig`` keeps tracing into the same table of runs (as LangChain's own
        tracers do); copying the table, with its lock, would fail."""
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> LLMObsCallbackHandler:
        return self

    # --- chains, runnables, graphs --------------------------------------------------------------------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            metadata = metadata or _EMPTY
            parent = self._runs.get(parent_run_id)
            name = kwargs.get("name") or _name(serialized) or "chain"
            agent = metadata.get(_AGENT_KEY)
            operation = _chain_operation(name, metadata, agent, parent)
            if operation == sc.OP_INVOKE_AGENT and agent:
                name = str(agent)
            handle = self._open(run_id, parent, operation, name, tags, metadata, agent=agent)
            if handle is None:
                return
            if operation == sc.OP_INVOKE_AGENT:
                handle.set_request(agent_name=name)
            elif operation == sc.OP_INVOKE_WORKFLOW:
                handle.set_request(workflow_name=name)
            if _capturing(handle):
                handle.set_input(value=translate.compact(inputs), snapshot=True)
        except Exception as exc:
            selfstats.failure("langchain.on_chain_start_failed", exc)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            run = self._runs.pop(run_id, self)
            if run is None:
                return
            handle = run.handle
            try:
                if _capturing(handle):
                    if "inputs" in kwargs:  # streamed runs learn their input only at the end
                        handle.set_input(value=translate.compact(kwargs["inputs"]))
                    handle.set_output(value=translate.compact(outputs))
            finally:
                handle.end()  # even when translating fails: a run off the table is never swept
        except Exception as exc:
            selfstats.failure("langchain.on_chain_end_failed", exc)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._fail(run_id, error, kwargs.get("inputs"))
        except Exception as exc:
            selfstats.failure("langchain.on_chain_error_failed", exc)

    def on_agent_action(self, action: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            run = self._owned(run_id)
            if run is not None:
                attributes = {sc.TOOL_NAME: getattr(action, "tool", None) or ""}
                if _capturing(run.handle):
                    attributes[sc.TOOL_CALL_ARGUMENTS] = _render(getattr(action, "tool_input", None))
                run.handle.add_event(sc.EVENT_AGENT_ACTION, attributes)
        except Exception as exc:
            selfstats.failure("langchain.on_agent_action_failed", exc)

    def on_agent_finish(self, finish: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            run = self._owned(run_id)
            if run is not None:
                attributes = {}
                if _capturing(run.handle):
                    attributes[sc.OUTPUT_VALUE] = _render(getattr(finish, "return_values", None))
                run.handle.add_event(sc.EVENT_AGENT_FINISH, attributes)
        except Exception as exc:
            selfstats.failure("langchain.on_agent_finish_failed", exc)

    # --- models ---------------------------------------------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            handle = self._open_model(sc.OP_CHAT, serialized, run_id, parent_run_id, tags, metadata, kwargs)
            if handle is not None and _capturing(handle):
                inputs, system = translate.input_messages(messages)
                tools = translate.tool_definitions((kwargs.get("invocation_params") or _EMPTY).get("tools"))
                handle.set_input(inputs, system=system or None, tools=tools)
        except Exception as exc:
            selfstats.failure("langchain.on_chat_model_start_failed", exc)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            handle = self._open_model(sc.OP_TEXT_COMPLETION, serialized, run_id, parent_run_id, tags, metadata, kwargs)
            if handle is not None and _capturing(handle):
                handle.set_input(translate.prompt_messages(prompts))
        except Exception as exc:
            selfstats.failure("langchain.on_llm_start_failed", exc)

    def on_llm_new_token(self, token: Any, *, chunk: Any = None, run_id: UUID, **kwargs: Any) -> None:
        try:  # once per streamed chunk: kept to a dict lookup and a few attribute writes
            run = self._runs.get(run_id)
            if run is None or run.owner is not self:
                return
            run.streamed = True
            run.touched = _monotonic()
            if (token and isinstance(token, str)) or _bears_content(token, chunk):
                run.handle.chunk()
        except Exception as exc:
            selfstats.failure("langchain.on_llm_new_token_failed", exc)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            run = self._runs.pop(run_id, self)
            if run is None:
                return
            try:
                self._llm_end(run, response)
            finally:
                run.handle.end()  # a no-op when it ended; else translating failed, and the run is off the table
        except Exception as exc:
            selfstats.failure("langchain.on_llm_end_failed", exc)

    def _llm_end(self, run: Run, response: LLMResult) -> None:
        handle = run.handle
        if run.streamed:
            handle.set_request(stream=True)
        generations = [g for batch in translate.listed(response.generations) for g in translate.listed(batch)]
        found = models.usage(generations, response.llm_output)
        if found is not None:
            handle.set_usage(
                found.input_tokens,
                found.output_tokens,
                cache_read=found.cache_read,
                cache_write=found.cache_write,
                reasoning=found.reasoning,
                total=found.total,
            )
        reasons = [models.finish_reason(g) for g in generations]
        response_id, response_model = models.response_identity(generations, response.llm_output)
        handle.set_output(
            translate.output_messages(generations, reasons) if _capturing(handle) else None,
            finish_reasons=[r for r in reasons if r] or None,
            response_id=response_id,
            response_model=response_model,
        )
        handle.end()

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._fail(run_id, error)
        except Exception as exc:
            selfstats.failure("langchain.on_llm_error_failed", exc)

    # --- tools and retrievers -------------------------------------------------------------------------
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            serialized = serialized or _EMPTY
            name = kwargs.get("name") or serialized.get("name") or "tool"
            parent = self._runs.get(parent_run_id)
            handle = self._open(run_id, parent, sc.OP_EXECUTE_TOOL, name, tags, metadata or _EMPTY)
            if handle is None:
                return
            handle.set_request(
                tool_name=name,
                tool_call_id=kwargs.get("tool_call_id"),
                tool_description=serialized.get("description"),
                tool_type="function",
            )
            if _capturing(handle):
                handle.set_input(value=inputs if inputs is not None else input_str, snapshot=True)
        except Exception as exc:
            selfstats.failure("langchain.on_tool_start_failed", exc)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            run = self._runs.pop(run_id, self)
            if run is None:
                return
            handle = run.handle
            try:
                if _capturing(handle):
                    handle.set_output(value=translate.tool_result(output))
                # A tool that handled its own exception returns a ToolMessage with status "error".
                handle.end("tool_error" if getattr(output, "status", None) == "error" else None)
            finally:
                handle.end()  # a no-op when it ended; else translating failed, and the run is off the table
        except Exception as exc:
            selfstats.failure("langchain.on_tool_end_failed", exc)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._fail(run_id, error)
        except Exception as exc:
            selfstats.failure("langchain.on_tool_error_failed", exc)

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            metadata = metadata or _EMPTY
            name = kwargs.get("name") or _name(serialized) or "retriever"
            handle = self._open(run_id, self._runs.get(parent_run_id), sc.OP_RETRIEVAL, name, tags, metadata)
            if handle is None:
                return
            handle.set_request(data_source_id=metadata.get("ls_vector_store_provider"))
            if _capturing(handle):
                handle.set_input(value=query)
        except Exception as exc:
            selfstats.failure("langchain.on_retriever_start_failed", exc)

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        try:
            run = self._runs.pop(run_id, self)
            if run is None:
                return
            try:
                if _capturing(run.handle):
                    run.handle.set_output(value=[translate.compact(doc) for doc in translate.listed(documents)])
            finally:
                run.handle.end()
        except Exception as exc:
            selfstats.failure("langchain.on_retriever_end_failed", exc)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._fail(run_id, error)
        except Exception as exc:
            selfstats.failure("langchain.on_retriever_error_failed", exc)

    # --- events on a run ------------------------------------------------------------------------------
    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            run = self._owned(run_id)
            if run is not None:
                attributes = {sc.EVENT_DATA: _render(data)} if _capturing(run.handle) and data is not None else {}
                run.handle.add_event(str(name), attributes)
        except Exception as exc:
            selfstats.failure("langchain.on_custom_event_failed", exc)

    def on_retry(self, retry_state: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            run = self._owned(run_id)
            if run is None:
                return
            attributes: dict[str, Any] = {sc.RETRY_ATTEMPT: retry_state.attempt_number}
            outcome = retry_state.outcome
            if outcome is not None and outcome.failed:
                attributes[sc.ERROR_TYPE] = type(outcome.exception()).__qualname__
            run.handle.add_event(sc.EVENT_RETRY, attributes)
        except Exception as exc:
            selfstats.failure("langchain.on_retry_failed", exc)

    # --- plumbing -------------------------------------------------------------------------------------
    def _open_model(
        self,
        operation: str,
        serialized: dict[str, Any] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> SpanHandle | None:
        metadata = metadata or _EMPTY
        params = kwargs.get("invocation_params") or _EMPTY
        handle = self._open(
            run_id,
            self._runs.get(parent_run_id),
            operation,
            kwargs.get("name") or _name(serialized),
            tags,
            metadata,
            provider=models.provider(metadata),
            model=models.model_name(metadata, params),
        )
        if handle is not None:
            request = models.request_parameters(metadata, params)
            if request:
                handle.set_request(**request)
        return handle

    def _open(
        self,
        run_id: UUID,
        parent: Run | None,
        operation: str,
        name: str | None,
        tags: list[str] | None,
        metadata: Mapping[str, Any],
        *,
        provider: str | None = None,
        model: str | None = None,
        agent: str | None = None,
    ) -> SpanHandle | None:
        """Start the span of a run and track it; None if another llmobs handler traces it already, or
        if it would start a trace while the integration is disabled in the settings."""
        runs = self._runs
        if run_id in runs:
            return None
        if parent is None and not config.current().integration_enabled(FRAMEWORK):
            return None
        session_id, user_id = _trace_ids(metadata)
        handle = get_recorder().start(
            operation,
            name,
            parent=parent.handle if parent is not None else None,
            provider=provider,
            model=model,
            framework=FRAMEWORK,
            session_id=session_id,
            user_id=user_id,
            attributes=_retry_attempt(tags) if tags else None,
        )
        if not runs.add(run_id, Run(handle, self, parent, agent or (parent.agent if parent else None))):
            handle.end(cancelled=True, reason="duplicate")
            return None
        return handle

    def _owned(self, run_id: UUID) -> Run | None:
        """The run of ``run_id`` if this handler traces it, marked alive: a run that only dispatches events
        (custom events, agent actions, retries) is still running and must not be swept."""
        run = self._runs.get(run_id)
        if run is None or run.owner is not self:
            return None
        run.touched = _monotonic()
        return run

    def _fail(self, run_id: UUID, error: BaseException, inputs: Any = None) -> None:
        run = self._runs.pop(run_id, self)
        if run is None:
            return
        try:
            self._failed(run, error, inputs)
        finally:
            run.handle.end(error)  # a no-op when it ended; else translating failed, and the run is off the table

    @staticmethod
    def _failed(run: Run, error: BaseException, inputs: Any) -> None:
        if inputs is not None and _capturing(run.handle):  # a streamed chain's input, known at its end
            run.handle.set_input(value=translate.compact(inputs))
        if run.streamed:  # chunks arrived before the failure or cancellation
            run.handle.set_request(stream=True)
        bubbled = {cls.__name__ for cls in type(error).__mro__}
        if bubbled & _INTERRUPT_TYPES:
            run.handle.end(cancelled=True, reason="interrupted")
        elif _BUBBLE_UP in bubbled:
            run.handle.end(reason="control_flow")  # e.g. a LangGraph Command to the parent graph
        else:
            run.handle.end(error)  # a cancellation (one of the core's INTERRUPTS) ends as cancelled there


def _chain_operation(name: str, metadata: Mapping[str, Any], agent: Any, parent: Run | None) -> str:
    """invoke_agent for an agent's own run (``lc_agent_name`` new in this run, or a legacy
    AgentExecutor); invoke_workflow for a LangGraph graph called from outside a graph; else chain."""
    if agent and agent != (parent.agent if parent is not None else None):
        return sc.OP_INVOKE_AGENT
    if name == "AgentExecutor":
        return sc.OP_INVOKE_AGENT
    if metadata.get("ls_integration") == "langgraph" and "langgraph_node" not in metadata:
        return sc.OP_INVOKE_WORKFLOW
    return sc.OP_CHAIN


def _name(serialized: Mapping[str, Any] | None) -> str | None:
    if not serialized:
        return None
    name = serialized.get("name")
    if isinstance(name, str) and name:
        return name
    path = serialized.get("id")
    return str(path[-1]) if isinstance(path, list) and path else None


def _trace_ids(metadata: Mapping[str, Any]) -> tuple[str | None, str | None]:
    if not metadata:
        return None, None
    session = None
    for key in _SESSION_KEYS:
        session = metadata.get(key)
        if session:
            break
    user = metadata.get("user_id")
    return (str(session) if session else None), (str(user) if user else None)


def _retry_attempt(tags: list[str]) -> dict[str, Any] | None:
    """RunnableRetry tags every attempt after the first ``retry:attempt:N``."""
    for tag in translate.listed(tags):
        if isinstance(tag, str) and tag.startswith(_RETRY_TAG) and tag[len(_RETRY_TAG) :].isdigit():
            return {sc.RETRY_ATTEMPT: int(tag[len(_RETRY_TAG) :])}
    return None


def _capturing(handle: SpanHandle) -> bool:
    """Content is translated only for spans that are recorded with content."""
    return config.current().capture is not CaptureMode.NO_CONTENT and handle.is_recording


def _render(value: Any) -> str:
    """Content for a span event (events are not deferred like span content): scrubbed and capped now."""
    return get_recorder().derived.policy.render_text(translate.compact(value))


def _bears_content(token: Any, chunk: Any) -> bool:
    """A streamed chunk with text, a tool-call fragment or reasoning (role-only and empty chunks are not)."""
    if isinstance(token, str) and token:
        return True
    message = getattr(chunk, "message", None)
    if message is None:
        return bool(token) or bool(getattr(chunk, "text", None))
    body = message.content
    if isinstance(body, str):
        if body:
            return True
    elif any(_block_bears_content(block) for block in translate.listed(body)):  # never an endless iterator
        return True
    if getattr(message, "tool_call_chunks", None):
        return True
    extra = message.additional_kwargs
    return bool(extra) and bool(extra.get("reasoning_content") or extra.get("tool_calls") or extra.get("function_call"))


def _block_bears_content(block: Any) -> bool:
    if isinstance(block, str):
        return bool(block)
    if not isinstance(block, Mapping):
        return False
    return any(block.get(key) for key in ("text", "reasoning", "thinking", "summary", "partial_json", "args"))
