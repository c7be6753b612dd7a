"""What a LlamaIndex span is, and what its component says about itself when it starts and returns.

LlamaIndex opens a span for every decorated method: ``query`` and ``_query``, ``retrieve`` and
``_retrieve``, ``predict`` around ``complete``, text splitters, prompt programs. Recording all of them
would cost as much again as the query itself and bury the calls that matter, so a span becomes a run
only when its component is one of the kinds below (and, for LLMs and tools, the method is the call
itself); everything else is folded into its parent. The kind is decided once per (class, method).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from llmobs import semconv as sc
from llmobs_llamaindex import classes, translate

FRAMEWORK = "llama_index"

# run categories
LLM = "llm"
EMBEDDING = "embedding"
RETRIEVER = "retriever"
RERANKER = "reranker"
CHAIN = "chain"
TOOL = "tool"
AGENT = "agent"
WORKFLOW = "workflow"
STEP = "step"

#: The step of llama-index's AgentWorkflow in which one of its agents takes a turn.
_AGENT_WORKFLOW_TURN = "AgentWorkflow.run_agent_step"
_CHAT_METHODS = frozenset({"chat", "achat", "stream_chat", "astream_chat"})
_COMPLETE_METHODS = frozenset({"complete", "acomplete", "stream_complete", "astream_complete"})
_TOOL_METHODS = frozenset({"call", "acall", "__call__"})
_LLM_PARAMETERS = ("temperature", "max_tokens", "top_p")
_UUID_SUFFIX = 37  # LlamaIndex span ids end in "-" + a uuid4
_CACHE_LIMIT = 4096

# (dotted class path, category): the first base a component's class derives from decides.
_BASES = (
    ("llama_index.core.agent.workflow.base_agent.BaseWorkflowAgent", AGENT),
    ("workflows.workflow.Workflow", WORKFLOW),
    ("llama_index.core.base.llms.base.BaseLLM", LLM),
    ("llama_index.core.base.embeddings.base.BaseEmbedding", EMBEDDING),
    ("llama_index.core.base.base_retriever.BaseRetriever", RETRIEVER),
    ("llama_index.core.postprocessor.types.BaseNodePostprocessor", RERANKER),
    ("llama_index.core.tools.types.BaseTool", TOOL),
    ("llama_index.core.base.base_query_engine.BaseQueryEngine", CHAIN),
    ("llama_index.core.chat_engine.types.BaseChatEngine", CHAIN),
    ("llama_index.core.response_synthesizers.base.BaseSynthesizer", CHAIN),
)

# Provider (gen_ai.provider.name) by the integration package an LLM or embedding class comes from.
_PROVIDERS = (
    ("azure", sc.PROVIDER_AZURE_OPENAI),
    ("openai_like", None),
    ("openai", sc.PROVIDER_OPENAI),
    ("anthropic", sc.PROVIDER_ANTHROPIC),
    ("dashscope", sc.PROVIDER_DASHSCOPE),
    ("deepseek", sc.PROVIDER_DEEPSEEK),
    ("vllm", sc.PROVIDER_VLLM),
)


class Spec(NamedTuple):
    """How one (class, method) is recorded."""

    category: str
    operation: str
    name: str
    kind: str | None = None
    stream: bool = False
    provider: str | None = None


def _load_bases() -> tuple[tuple[type, str], ...]:
    found = ((classes.find(path), category) for path, category in _BASES)
    return tuple((cls, category) for cls, category in found if cls is not None)


class Classifier:
    """Decides, once per (class, method), whether a span is a run and of which kind."""

    __slots__ = ("_bases", "_categories", "_specs")

    def __init__(self) -> None:
        self._bases = _load_bases()
        self._categories: dict[type, str | None] = {}
        self._specs: dict[tuple[type, str], Spec | None] = {}

    def spec(self, instance: Any, span_id: str, parent_category: str | None) -> Spec | None:
        """The run spec for a span, or None to fold it into its parent."""
        if instance is None and parent_category not in (WORKFLOW, AGENT):
            return None  # a plain function outside a workflow (inside one, it is a step)
        head = span_id[:-_UUID_SUFFIX] if len(span_id) > _UUID_SUFFIX else span_id
        key = (type(instance), head)
        try:
            return self._specs[key]
        except KeyError:
            if len(self._specs) >= _CACHE_LIMIT:
                self._specs.clear()
            spec = self._specs[key] = self._decide(type(instance), head)
            return spec

    def _category(self, cls: type) -> str | None:
        try:
            return self._categories[cls]
        except KeyError:
            category = next((c for base, c in self._bases if issubclass(cls, base)), None)
            if category == RERANKER and "rerank" not in cls.__name__.lower():
                category = CHAIN  # a filtering or reordering postprocessor
            self._categories[cls] = category
            return category

    def _decide(self, cls: type, head: str) -> Spec | None:
        if cls is type(None):
            if head == _AGENT_WORKFLOW_TURN:  # one agent's turn in a multi-agent workflow: that agent's invocation
                return Spec(AGENT, sc.OP_INVOKE_AGENT, head.rpartition(".")[2])
            return Spec(STEP, sc.OP_CHAIN, head.rpartition(".")[2], kind=sc.KIND_TASK)
        category = self._category(cls)
        if category is None:
            return None
        name = cls.__name__
        method = head[len(name) + 1 :] if head.startswith(name + ".") else head.rpartition(".")[2]
        stream = "stream" in method
        if category == LLM:
            if "llm" in (getattr(cls, "model_fields", None) or {}) and method in _CHAT_METHODS | _COMPLETE_METHODS:
                return Spec(CHAIN, sc.OP_CHAIN, head)  # a wrapper of another LLM (StructuredLLM): that one is the call
            if method in _CHAT_METHODS:
                return Spec(LLM, sc.OP_CHAT, name, stream=stream, provider=_provider(cls))
            if method in _COMPLETE_METHODS:
                return Spec(LLM, sc.OP_TEXT_COMPLETION, name, stream=stream, provider=_provider(cls))
            return None
        if category == TOOL:
            return Spec(TOOL, sc.OP_EXECUTE_TOOL, name) if method in _TOOL_METHODS else None
        if category in (AGENT, WORKFLOW):
            if method != "run":
                return None
            return Spec(category, sc.OP_INVOKE_AGENT if category == AGENT else sc.OP_INVOKE_WORKFLOW, name)
        if category == EMBEDDING:
            return Spec(EMBEDDING, sc.OP_EMBEDDINGS, name, provider=_provider(cls))
        if category == RETRIEVER:
            return Spec(RETRIEVER, sc.OP_RETRIEVAL, name)
        if category == RERANKER:
            return Spec(RERANKER, sc.OP_RERANK, name)
        return Spec(CHAIN, sc.OP_CHAIN, head)


def _provider(cls: type) -> str | None:
    module = cls.__module__
    return next((provider for marker, provider in _PROVIDERS if marker in module), None)


# --- what a component says when it starts ------------------------------------------------------------


class Start(NamedTuple):
    """Everything the recorder needs to open a run's span."""

    name: str | None
    model: str | None
    request: dict[str, Any]
    attributes: dict[str, Any] | None
    input: Any


def describe(
    spec: Spec,
    instance: Any,
    arguments: Mapping[str, Any],
    tags: Mapping[str, Any] | None,
    parent_tool_call_id: str | None,
    owner: Any = None,
) -> Start:
    """The span name, model, request parameters, extra attributes and input of a starting run
    (``owner``: the component of the enclosing run — for a workflow step, its workflow)."""
    category = spec.category
    if category == LLM:
        request = {}
        for parameter in _LLM_PARAMETERS:
            value = getattr(instance, parameter, None)
            if _number(value):
                request[parameter] = value
        if spec.stream:
            request["stream"] = True
        return Start(None, _model(instance, "model", "model_name") or spec.name, request, None, None)
    first = next(iter(arguments.values()), None)
    if category == EMBEDDING:
        count = len(first) if isinstance(first, list | tuple) else 1
        texts = [_embedded_text(x) for x in first] if isinstance(first, list | tuple) else _embedded_text(first)
        return Start(None, _model(instance, "model_name") or spec.name, {}, {sc.EMBEDDINGS_INPUT_COUNT: count}, texts)
    if category == RETRIEVER:
        top_k = getattr(instance, "similarity_top_k", None)
        return Start(spec.name, None, {"top_k": top_k} if _number(top_k) else {}, None, translate.text_of(first))
    if category == RERANKER:
        top_n = getattr(instance, "top_n", None)
        nodes = arguments.get("nodes")
        query = arguments.get("query_bundle") or arguments.get("query_str")
        return Start(
            spec.name,
            _model(instance, "model") or spec.name,
            {"top_k": top_n} if _number(top_n) else {},
            {sc.RERANK_DOCUMENTS_COUNT: len(nodes)} if isinstance(nodes, list) else None,
            translate.text_of(query),
        )
    if category == TOOL:
        metadata = instance.metadata
        name = metadata.name or spec.name
        request = {"tool_name": name, "tool_type": "function"}
        if metadata.description:
            request["tool_description"] = metadata.description
        if parent_tool_call_id:
            request["tool_call_id"] = parent_tool_call_id
        return Start(name, None, request, None, arguments.get("kwargs") or arguments.get("args") or first)
    if category == AGENT:
        if instance is None:  # an agent's turn inside an AgentWorkflow: the agent is named by the step's event
            return _agent_turn(spec, arguments, owner)
        name = getattr(instance, "name", None) or spec.name
        request = {"agent_name": name}
        if getattr(instance, "description", None):
            request["agent_description"] = instance.description
        return Start(name, None, request, None, _user_message(arguments, tags))
    if category == WORKFLOW:
        return Start(spec.name, None, {"workflow_name": spec.name}, None, _user_message(arguments, tags))
    if category == STEP:
        return Start(spec.name, None, {}, None, tags.get("llamaindex.step.input_summary") if tags else None)
    text = translate.text_of(first)
    return Start(spec.name, None, {}, None, text if isinstance(text, str) else None)


def _agent_turn(spec: Spec, arguments: Mapping[str, Any], workflow: Any) -> Start:
    """``AgentWorkflow.run_agent_step(ctx, ev)``: ``ev.current_agent_name`` names the agent taking this
    turn, the workflow's ``agents`` describe it, ``ev.input`` holds the conversation it is given."""
    event = arguments.get("ev")
    name = getattr(event, "current_agent_name", None)
    name = name if isinstance(name, str) and name else spec.name
    request = {"agent_name": name}
    agents = getattr(workflow, "agents", None)
    agent = agents.get(name) if isinstance(agents, dict) else None
    if isinstance(getattr(agent, "description", None), str) and agent.description:
        request["agent_description"] = agent.description
    messages = getattr(event, "input", None)
    last_user = None
    if isinstance(messages, list):
        users = (m for m in reversed(messages) if getattr(getattr(m, "role", None), "value", None) == "user")
        last_user = next(users, None)
    return Start(name, None, request, None, translate.text_of(last_user) if last_user is not None else None)


def step_tool_call_id(arguments: Mapping[str, Any]) -> str | None:
    """The tool call id a workflow step is about to execute (agents' ``call_tool`` step), if any."""
    tool_id = getattr(arguments.get("ev"), "tool_id", None)
    return tool_id if isinstance(tool_id, str) else None


def _user_message(arguments: Mapping[str, Any], tags: Mapping[str, Any] | None) -> Any:
    start_event = arguments.get("start_event")
    message = start_event.get("user_msg") if start_event is not None else None
    if message is not None:
        return translate.text_of(message)
    return tags.get("llamaindex.start_event") if tags else None


def _model(instance: Any, *fields: str) -> str | None:
    for field in fields:
        value = getattr(instance, field, None)
        if isinstance(value, str) and value and value != "unknown":
            return value
    return None


def _embedded_text(value: Any) -> Any:
    """What is embedded: a text as it is, a node's text (never the node, which gets its vector meanwhile)."""
    if isinstance(value, str):
        return value
    text = getattr(value, "text", None)
    return text if isinstance(text, str) else type(value).__name__


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- what a component returns ----------------------------------------------------------------------


def record_result(spec: Spec, handle: Any, result: Any) -> BaseException | str | None:
    """Record a returning run's output on its handle; returns the error a result reports, if any."""
    category = spec.category
    if category in (RETRIEVER, RERANKER):
        if isinstance(result, list):
            handle.set_output(value=translate.documents(result))
    elif category == EMBEDDING:
        if isinstance(result, list) and result:
            first = result[0]  # a vector, a list of vectors, or nodes (an embedding model used as a transformation)
            vector = first if isinstance(first, list) else getattr(first, "embedding", result)
            if isinstance(vector, list):
                handle.set_attribute(sc.EMBEDDINGS_DIMENSION_COUNT, len(vector))
    elif category == TOOL:
        if getattr(result, "is_error", False):
            handle.set_output(value=result.content)
            return result.exception or "ToolError"
        handle.set_output(value=translate.text_of(result))
    elif category in (AGENT, WORKFLOW):
        output = getattr(result, "result", result)
        output = getattr(output, "response", output)
        handle.set_output(value=translate.text_of(output))
    elif category == CHAIN:
        text = translate.text_of(result)
        if isinstance(text, str):
            handle.set_output(value=text)
    return None
