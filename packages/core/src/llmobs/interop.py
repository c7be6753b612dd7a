"""The one mapping of other tracers' conventions onto llmobs semantics.

Spans that llmobs did not record — OpenInference (Phoenix, and Dify's Phoenix provider), OpenLLMetry's
legacy attributes, Promptflow, vLLM's own ``llm_request`` span, older OTel GenAI, Dify's Phoenix and
ARMS exports — carry the same facts
under other names. :func:`normalise` adds llmobs' names for them (operation, span kind, provider, models,
usage with its total, TTFT, messages as GenAI JSON, session, user, cost) so the console, ``llmobs stats``
and any analysis treat those spans like our own. ``llmobs serve`` calls it on every received span; the
Promptflow and Dify integrations call it too, so there is exactly one copy of this knowledge.

Rules:

* The original attributes are kept. A name llmobs already has is never overwritten, and each llmobs
  name is filled from the first foreign source present, so llmobs' own spans come back unchanged and
  ``normalise(normalise(a)) == normalise(a)``.
* Content goes through a :class:`~llmobs.content.ContentPolicy`, as in the recorder: foreign messages
  become GenAI JSON rendered by the policy (secrets scrubbed, redactors applied, capped), content-bearing
  originals are scrubbed and capped the same way, and under ``NO_CONTENT`` all of it is dropped.
* Nothing raises on odd values: a number that is not a number, or JSON that is not JSON, is skipped.

Promptflow's spans are translated by :mod:`llmobs.promptflow_mapping`, the same translation
llmobs-promptflow applies in the process: they are renamed as the recorder names spans (``chat <model>``)
— :func:`normalise_span` gives the name — and Promptflow's payload attributes and events, once turned
into GenAI content, are not kept a second time.

Dify (its Phoenix and ARMS tracing providers, relayed by the Dify plugin) is the one source whose own
values are corrected rather than only complemented, because they are wrong for llmobs as sent: token
counts and TTFT sent as strings become numbers, Dify's plugin provider ids (``langgenius/openai/openai``)
become the provider (``openai``), and operation names that are no GenAI operation (``workflow``,
``node``, ``message``, ``react``) become ``invoke_workflow`` or ``chain``. Dify's ids (app, workflow,
workflow run, message, conversation, user) come out of Phoenix's ``metadata`` JSON as ``dify.*``
attributes, and an LLM node's outputs JSON gives TTFT, finish reason and the output message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from llmobs import promptflow_mapping
from llmobs import semconv as sc
from llmobs.content import (
    CaptureMode,
    ContentPolicy,
    messages_from_openai,
    output_messages_from_openai,
    tool_definitions_from_openai,
)
from llmobs.pricing import ModelPrice

#: ``(provider, model) -> price or None``, e.g. a cached ``llmobs.plugins.price_of``.
PriceLookup = Callable[[str | None, str], ModelPrice | None]

__all__ = ["PriceLookup", "normalise", "normalise_event", "normalise_resource", "normalise_span"]

_DEFAULT_POLICY = ContentPolicy()

# --- operation and span kind ----------------------------------------------------------------------
_OPENINFERENCE_KINDS = {
    "LLM": sc.OP_CHAT,
    "EMBEDDING": sc.OP_EMBEDDINGS,
    "RETRIEVER": sc.OP_RETRIEVAL,
    "RERANKER": sc.OP_RERANK,
    "TOOL": sc.OP_EXECUTE_TOOL,
    "AGENT": sc.OP_INVOKE_AGENT,
    "CHAIN": sc.OP_CHAIN,
}  # GUARDRAIL, EVALUATOR, PROMPT, UNKNOWN...: a chain step of kind TASK
_TRACELOOP_KINDS = {
    "workflow": sc.OP_INVOKE_WORKFLOW,
    "agent": sc.OP_INVOKE_AGENT,
    "tool": sc.OP_EXECUTE_TOOL,
}  # task, unknown: TASK
_REQUEST_TYPES = {
    "chat": sc.OP_CHAT,
    "completion": sc.OP_TEXT_COMPLETION,
    "embedding": sc.OP_EMBEDDINGS,
    "rerank": sc.OP_RERANK,
}
# Words of a span name that give the operation away (older GenAI and OpenLLMetry name spans so).
_NAME_WORDS = {"chat": sc.OP_CHAT, "completion": sc.OP_TEXT_COMPLETION, "completions": sc.OP_TEXT_COMPLETION,
               "embeddings": sc.OP_EMBEDDINGS, "embedding": sc.OP_EMBEDDINGS}

#: LoongSuite / ARMS span kinds (``gen_ai.span.kind``) → operation, for spans that state no operation.
_LOONGSUITE_KINDS = {
    sc.KIND_LLM: sc.OP_CHAT,
    sc.KIND_EMBEDDING: sc.OP_EMBEDDINGS,
    sc.KIND_RETRIEVER: sc.OP_RETRIEVAL,
    sc.KIND_RERANKER: sc.OP_RERANK,
    sc.KIND_TOOL: sc.OP_EXECUTE_TOOL,
    sc.KIND_AGENT: sc.OP_INVOKE_AGENT,
}  # CHAIN, TASK, STEP and the rest: chain

# --- providers ------------------------------------------------------------------------------------
_PROVIDERS = {
    "azure": sc.PROVIDER_AZURE_OPENAI,
    "az.ai.openai": sc.PROVIDER_AZURE_OPENAI,
    "azureopenai": sc.PROVIDER_AZURE_OPENAI,
    "aws": sc.PROVIDER_AWS_BEDROCK,
    "bedrock": sc.PROVIDER_AWS_BEDROCK,
    "google": sc.PROVIDER_GCP_GEMINI,
    "gemini": sc.PROVIDER_GCP_GEMINI,
    "vertexai": sc.PROVIDER_GCP_VERTEX_AI,
    "mistralai": sc.PROVIDER_MISTRAL_AI,
    "mistral": sc.PROVIDER_MISTRAL_AI,
    "xai": sc.PROVIDER_X_AI,
    "watsonx": sc.PROVIDER_IBM_WATSONX_AI,
    "tongyi": sc.PROVIDER_DASHSCOPE,
    "qwen": sc.PROVIDER_DASHSCOPE,
}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number == number and abs(number) < 2**63 else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _seconds(value: Any) -> float | None:
    """A duration in seconds; integers over 10,000 are nanoseconds (vLLM builds disagree on the unit)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 10_000:
        return value / 1e9
    return _float(value)


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _reasons(value: Any) -> list[str] | None:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _json(value: Any) -> Any:
    """``value`` parsed when it is a JSON object or array in a string; else None."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            return None
    return None


#: (llmobs name, foreign sources in priority order, conversion). Applied in order; a name already
#: present is never touched, so later rows may read what earlier rows filled.
_SCALARS: tuple[tuple[str, tuple[str, ...], Callable[[Any], Any]], ...] = (
    (sc.REQUEST_MODEL, (sc.OI_REQUEST_MODEL_NAME, sc.OI_MODEL_NAME, sc.OI_EMBEDDING_MODEL_NAME,
                        sc.OI_RERANKER_MODEL_NAME, sc.LEGACY_MODEL_NAME), _text),
    (sc.RESPONSE_MODEL, (sc.OI_RESPONSE_MODEL_NAME,), _text),
    (sc.USAGE_INPUT_TOKENS, (sc.OI_TOKENS_PROMPT, sc.LEGACY_USAGE_PROMPT_TOKENS), _int),
    (sc.USAGE_OUTPUT_TOKENS, (sc.OI_TOKENS_COMPLETION, sc.LEGACY_USAGE_COMPLETION_TOKENS), _int),
    (sc.USAGE_TOTAL_TOKENS, (sc.OI_TOKENS_TOTAL, sc.LLM_USAGE_TOTAL_TOKENS), _int),
    (sc.USAGE_CACHE_READ_INPUT_TOKENS, (sc.OI_TOKENS_CACHE_READ, sc.LEGACY_USAGE_CACHE_READ), _int),
    (sc.USAGE_CACHE_CREATION_INPUT_TOKENS, (sc.OI_TOKENS_CACHE_WRITE, sc.LEGACY_USAGE_CACHE_CREATION), _int),
    (sc.USAGE_CACHE_WRITE_INPUT_TOKENS, (sc.USAGE_CACHE_CREATION_INPUT_TOKENS,), _int),
    (sc.USAGE_REASONING_OUTPUT_TOKENS, (sc.OI_TOKENS_REASONING, sc.LEGACY_USAGE_REASONING_TOKENS,
                                        sc.LLM_USAGE_REASONING_TOKENS), _int),
    (sc.COST_USD, (sc.OI_COST_TOTAL,), _float),
    (sc.COST_INPUT_USD, (sc.OI_COST_PROMPT,), _float),
    (sc.COST_OUTPUT_USD, (sc.OI_COST_COMPLETION,), _float),
    (sc.RESPONSE_FINISH_REASONS, (sc.OI_FINISH_REASON, sc.LEGACY_FINISH_REASON), _reasons),
    (sc.REQUEST_STREAM, (sc.LLM_IS_STREAMING, sc.LEGACY_IS_STREAMING), _flag),
    (sc.REQUEST_CHOICE_COUNT, (sc.LEGACY_REQUEST_N,), _int),
    (sc.SESSION_ID, (sc.OI_SESSION_ID, sc.TRACELOOP_SESSION_ID, sc.CONVERSATION_ID), _text),
    (sc.CONVERSATION_ID, (sc.SESSION_ID,), _text),
    (sc.USER_ID, (sc.OI_USER_ID, sc.TRACELOOP_USER_ID), _text),
    (sc.AGENT_NAME, (sc.OI_AGENT_NAME,), _text),
    (sc.TOOL_NAME, (sc.OI_TOOL_NAME,), _text),
    (sc.TOOL_DESCRIPTION, (sc.OI_TOOL_DESCRIPTION,), _text),
    (sc.WORKFLOW_NAME, (sc.TRACELOOP_WORKFLOW_NAME,), _text),
    (sc.VLLM_QUEUE_TIME, (sc.VLLM_LATENCY_QUEUE,), _seconds),
    (sc.VLLM_PREFILL_TIME, (sc.VLLM_LATENCY_PREFILL,), _seconds),
    (sc.VLLM_DECODE_TIME, (sc.VLLM_LATENCY_DECODE,), _seconds),
    (sc.VLLM_INFERENCE_TIME, (sc.VLLM_LATENCY_INFERENCE,), _seconds),
)

#: ``llm.invocation_parameters`` keys (OpenAI-style request bodies) → llmobs request attributes.
_PARAMETERS: tuple[tuple[str, tuple[str, ...], Callable[[Any], Any]], ...] = (
    (sc.REQUEST_MODEL, ("model",), _text),
    (sc.REQUEST_TEMPERATURE, ("temperature",), _float),
    (sc.REQUEST_TOP_P, ("top_p",), _float),
    (sc.REQUEST_TOP_K, ("top_k",), _int),
    (sc.REQUEST_MAX_TOKENS, ("max_tokens", "max_completion_tokens", "max_new_tokens", "max_output_tokens"), _int),
    (sc.REQUEST_SEED, ("seed",), _int),
    (sc.REQUEST_FREQUENCY_PENALTY, ("frequency_penalty",), _float),
    (sc.REQUEST_PRESENCE_PENALTY, ("presence_penalty",), _float),
    (sc.REQUEST_CHOICE_COUNT, ("n",), _int),
    (sc.REQUEST_STREAM, ("stream",), _flag),
    (sc.REQUEST_STOP_SEQUENCES, ("stop",), _reasons),
)

#: Attributes holding prompts, completions, documents or tool payloads: made safe by the content
#: policy, dropped under NO_CONTENT. Exact names, then name prefixes (flattened foreign lists).
_CONTENT = frozenset({
    sc.INPUT_MESSAGES, sc.OUTPUT_MESSAGES, sc.SYSTEM_INSTRUCTIONS, sc.TOOL_DEFINITIONS, sc.INPUT_VALUE,
    sc.OUTPUT_VALUE, sc.TOOL_CALL_ARGUMENTS, sc.TOOL_CALL_RESULT, sc.RETRIEVAL_QUERY_TEXT, sc.RETRIEVAL_DOCUMENTS,
    sc.OI_PROMPTS, sc.TRACELOOP_ENTITY_INPUT, sc.TRACELOOP_ENTITY_OUTPUT, sc.TRACELOOP_TASK_INPUT,
    sc.TRACELOOP_TASK_OUTPUT, sc.LEGACY_PROMPT, sc.LEGACY_COMPLETION, sc.PF_INPUTS, sc.PF_OUTPUT,
    sc.PF_GENERATED_MESSAGE, sc.DIFY_RETRIEVAL_QUERY, sc.DIFY_RETRIEVAL_DOCUMENT,
})  # fmt: skip
_CONTENT_PREFIXES = (
    sc.OI_INPUT_MESSAGES, sc.OI_OUTPUT_MESSAGES, sc.OI_PROMPTS + ".", sc.OI_PROMPT_TEMPLATE,
    sc.OI_RETRIEVAL_DOCUMENTS, sc.OI_RERANKER_INPUT_DOCUMENTS, sc.OI_RERANKER_OUTPUT_DOCUMENTS, sc.OI_EMBEDDINGS,
    sc.LEGACY_PROMPTS, sc.LEGACY_COMPLETIONS,
)  # fmt: skip
#: Flattened lists that are rebuilt into structures.
_FLATTENED = (
    sc.OI_INPUT_MESSAGES, sc.OI_OUTPUT_MESSAGES, sc.OI_PROMPTS + ".", sc.OI_TOOLS, sc.OI_RETRIEVAL_DOCUMENTS,
    sc.OI_RERANKER_OUTPUT_DOCUMENTS, sc.LEGACY_PROMPTS, sc.LEGACY_COMPLETIONS,
)  # fmt: skip


def normalise(
    attributes: Mapping[str, Any],
    *,
    name: str = "",
    policy: ContentPolicy | None = None,
    price: PriceLookup | None = None,
) -> dict[str, Any]:
    """A copy of a span's ``attributes`` with llmobs' names added for what foreign conventions say.

    ``name`` is the span name (vLLM's span and older GenAI spans are recognised by it); ``policy`` makes
    content safe (default: capture on, secret scrubbing, 8 KiB cap); ``price`` prices spans that have
    a model and tokens but no cost (none: no cost is computed). Never raises on odd values.
    """
    policy = policy or _DEFAULT_POLICY
    if promptflow_mapping.is_promptflow(attributes):
        return _promptflow(attributes, name, policy, price)[1]
    attrs = dict(attributes)
    dify = _dify_metadata(attrs)
    if dify is not None:
        _dify_operation(attrs, name, dify)
    flattened = _flattened(attrs)
    operation = _classify(attrs, name, flattened)
    _fill(attrs, attrs, _SCALARS)
    parameters = _json(attrs.get(sc.OI_INVOCATION_PARAMETERS))
    if isinstance(parameters, dict):
        _fill(attrs, parameters, _PARAMETERS)
    _provider(attrs)
    if dify is not None:
        _dify_facts(attrs, name, operation, dify, policy)
    _timing(attrs)
    entity = _text(attrs.get(sc.TRACELOOP_ENTITY_NAME))
    if entity is not None and operation in (sc.OP_EXECUTE_TOOL, sc.OP_INVOKE_AGENT):
        attrs.setdefault(sc.TOOL_NAME if operation == sc.OP_EXECUTE_TOOL else sc.AGENT_NAME, entity)
    if policy.mode is CaptureMode.NO_CONTENT:
        for key in [k for k in attrs if _is_content(k)]:
            del attrs[key]
    else:
        _content(attrs, operation, flattened, policy)
        for key in attributes:
            if _is_content(key):
                attrs[key] = _safe(policy, attrs[key])
    _totals_and_cost(attrs, price)
    return attrs


def normalise_span(
    attributes: Mapping[str, Any],
    *,
    name: str = "",
    policy: ContentPolicy | None = None,
    price: PriceLookup | None = None,
) -> tuple[str, dict[str, Any]]:
    """:func:`normalise`, and the span's name in llmobs' terms (a Promptflow span is renamed as the recorder
    would have named it; any other span keeps its name)."""
    policy = policy or _DEFAULT_POLICY
    if promptflow_mapping.is_promptflow(attributes):
        return _promptflow(attributes, name, policy, price)
    return name, normalise(attributes, name=name, policy=policy, price=price)


def _promptflow(
    attributes: Mapping[str, Any], name: str, policy: ContentPolicy, price: PriceLookup | None
) -> tuple[str, dict[str, Any]]:
    """A Promptflow span as llmobs-promptflow translates it in the process, less what a receiver cannot
    know from one span: whether traced work ran inside a function (it is a TASK here, a CHAIN there) and
    its exception (the span's status and exception event stay as sent)."""
    t = promptflow_mapping.translate(name, attributes, capture=policy.mode is not CaptureMode.NO_CONTENT)
    usage: dict[str, Any] = {}
    if t.usage is not None:
        for attribute, value in zip(_USAGE_ATTRIBUTES, t.usage, strict=True):
            if value is not None:
                usage[attribute] = value
    attrs, content = promptflow_mapping.span_attributes(t, policy, usage)
    attrs.update(content)
    _totals_and_cost(attrs, price)
    return t.name, attrs


#: The recorder's usage tuple, attribute by attribute (cache writes go under the name readers use).
_USAGE_ATTRIBUTES = (
    sc.USAGE_INPUT_TOKENS,
    sc.USAGE_OUTPUT_TOKENS,
    sc.USAGE_CACHE_READ_INPUT_TOKENS,
    sc.USAGE_CACHE_CREATION_INPUT_TOKENS,
    sc.USAGE_REASONING_OUTPUT_TOKENS,
    sc.USAGE_TOTAL_TOKENS,
)


def normalise_resource(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of resource attributes with ``service.name`` taken from a Phoenix project when missing
    (or the SDK's ``unknown_service`` default, which Phoenix users never see)."""
    attrs = dict(attributes)
    service = _text(attrs.get(sc.SERVICE_NAME)) or ""
    if (not service or service.startswith("unknown_service")) and _text(attrs.get(sc.OI_PROJECT_NAME)):
        attrs[sc.SERVICE_NAME] = attrs[sc.OI_PROJECT_NAME]
    return attrs


def normalise_event(name: str, attributes: Mapping[str, Any], policy: ContentPolicy | None = None
                    ) -> dict[str, Any] | None:
    """A span event's attributes made safe by ``policy``; None when the event only carries content
    (llmobs' inference-details event) and the policy captures none, and for Promptflow's payload events,
    whose span carries their content after translation."""
    policy = policy or _DEFAULT_POLICY
    if name.startswith(sc.PF_EVENT_PREFIX):
        return None  # Promptflow's payloads, which its span's translation carries as content already
    if policy.mode is CaptureMode.NO_CONTENT and name == sc.EVENT_INFERENCE_DETAILS:
        return None
    return {k: _safe(policy, v) if isinstance(v, str) else v for k, v in attributes.items()}


# --- classification ---------------------------------------------------------------------------------


def _classify(attrs: dict[str, Any], name: str, flattened: Mapping[str, Any]) -> str | None:
    """Set operation and span kind when missing; return the operation."""
    operation = _text(attrs.get(sc.OPERATION_NAME))
    foreign_kind = None
    if operation is None:
        operation, foreign_kind = _foreign_operation(attrs, name, flattened)
        if operation is not None:
            attrs[sc.OPERATION_NAME] = operation
    if sc.SPAN_KIND not in attrs:
        kind = foreign_kind or sc.KIND_OF_OPERATION.get(operation or "")
        if kind is None and _text(attrs.get(sc.TRACELOOP_SPAN_KIND)):
            kind = sc.KIND_TASK  # a step under an operation name of its own (OpenLLMetry's execute_task)
        if kind is not None:
            attrs[sc.SPAN_KIND] = kind
    return operation


def _foreign_operation(attrs: Mapping[str, Any], name: str, flattened: Mapping[str, Any]
                       ) -> tuple[str | None, str | None]:
    """(operation, span kind when the operation alone does not say it) from foreign attributes."""
    kind = _text(attrs.get(sc.OI_SPAN_KIND))
    if kind is not None:
        operation = _OPENINFERENCE_KINDS.get(kind.upper())
        if operation == sc.OP_CHAT and sc.OI_INPUT_MESSAGES not in flattened and (
            sc.OI_PROMPTS in attrs or sc.OI_PROMPTS + "." in flattened
        ):
            operation = sc.OP_TEXT_COMPLETION
        return (operation, None) if operation else (sc.OP_CHAIN, sc.KIND_TASK)
    kind = _text(attrs.get(sc.SPAN_KIND))
    if kind is not None:  # LoongSuite / ARMS: a span kind without an operation
        return _LOONGSUITE_KINDS.get(kind.upper(), sc.OP_CHAIN), None
    request_type = _text(attrs.get(sc.LLM_REQUEST_TYPE))
    if request_type in _REQUEST_TYPES:
        return _REQUEST_TYPES[request_type], None
    kind = _text(attrs.get(sc.TRACELOOP_SPAN_KIND))
    if kind is not None:
        operation = _TRACELOOP_KINDS.get(kind.lower())
        return (operation, None) if operation else (sc.OP_CHAIN, sc.KIND_TASK)
    if name == sc.VLLM_REQUEST_SPAN and (sc.LEGACY_USAGE_PROMPT_TOKENS in attrs or sc.REQUEST_ID in attrs):
        return sc.OP_TEXT_COMPLETION, None
    if sc.LEGACY_SYSTEM in attrs or sc.LEGACY_USAGE_PROMPT_TOKENS in attrs or sc.LEGACY_PROMPTS in flattened:
        words = name.replace(".", " ").lower().split()
        return next((_NAME_WORDS[w] for w in words if w in _NAME_WORDS), sc.OP_CHAT), None
    return None, None


def _provider(attrs: dict[str, Any]) -> None:
    if sc.PROVIDER_NAME in attrs:
        return
    for key in (sc.OI_PROVIDER, sc.OI_SYSTEM, sc.LEGACY_SYSTEM):
        value = _text(attrs.get(key))
        if value is not None:
            value = value.lower()
            attrs[sc.PROVIDER_NAME] = _PROVIDERS.get(value, value)
            return
    if sc.VLLM_LATENCY_TTFT in attrs or sc.VLLM_LATENCY_E2E in attrs:
        attrs[sc.PROVIDER_NAME] = sc.PROVIDER_VLLM


def _fill(attrs: dict[str, Any], source: Mapping[str, Any],
          table: tuple[tuple[str, tuple[str, ...], Callable[[Any], Any]], ...]) -> None:
    for target, keys, convert in table:
        if target in attrs:
            continue
        for key in keys:
            if key in source:
                value = convert(source[key])
                if value is not None:
                    attrs[target] = value
                    break


def _timing(attrs: dict[str, Any]) -> None:
    """TTFT in both llmobs forms (seconds, and ARMS nanoseconds), from whichever form is present."""
    seconds = _seconds(attrs.get(sc.RESPONSE_TIME_TO_FIRST_CHUNK))
    if seconds is None:
        nanoseconds = _int(attrs.get(sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS))
        seconds = nanoseconds / 1e9 if nanoseconds is not None else _seconds(attrs.get(sc.VLLM_LATENCY_TTFT))
    if seconds is None or seconds < 0:
        return
    attrs.setdefault(sc.RESPONSE_TIME_TO_FIRST_CHUNK, seconds)
    attrs.setdefault(sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS, round(seconds * 1e9))


def _totals_and_cost(attrs: dict[str, Any], price: PriceLookup | None) -> None:
    tokens_in = _int(attrs.get(sc.USAGE_INPUT_TOKENS))
    tokens_out = _int(attrs.get(sc.USAGE_OUTPUT_TOKENS))
    if sc.USAGE_TOTAL_TOKENS not in attrs and (tokens_in is not None or tokens_out is not None):
        attrs[sc.USAGE_TOTAL_TOKENS] = (tokens_in or 0) + (tokens_out or 0)
    if price is None or sc.COST_USD in attrs or not (tokens_in or tokens_out):
        return
    provider = _text(attrs.get(sc.PROVIDER_NAME))
    models = [m for m in (_text(attrs.get(sc.RESPONSE_MODEL)), _text(attrs.get(sc.REQUEST_MODEL))) if m]
    found = next((p for p in (price(provider, m) for m in models) if p is not None), None)
    if found is None:
        return
    cost_in, cost_out = found.cost(
        tokens_in or 0, tokens_out or 0,
        _int(attrs.get(sc.USAGE_CACHE_READ_INPUT_TOKENS)) or 0,
        _int(attrs.get(sc.USAGE_CACHE_CREATION_INPUT_TOKENS)) or 0,
    )
    attrs[sc.COST_INPUT_USD] = cost_in
    attrs[sc.COST_OUTPUT_USD] = cost_out
    attrs[sc.COST_USD] = cost_in + cost_out


# --- content --------------------------------------------------------------------------------------


def _is_content(key: str) -> bool:
    return key in _CONTENT or key.startswith(_CONTENT_PREFIXES)


def _safe(policy: ContentPolicy, value: Any) -> Any:
    """A content value scrubbed, redacted and capped; JSON text stays valid JSON."""
    if isinstance(value, list | tuple):
        return [_safe(policy, v) if isinstance(v, str) else v for v in value]
    if not isinstance(value, str):
        return value
    text = policy.render_text(value)
    if text is value:
        return text
    parsed = _json(value)
    return policy.render(parsed) if parsed is not None else text


def _flattened(attrs: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Flattened foreign lists (``llm.input_messages.0.message.role`` ...) rebuilt, by prefix."""
    found: dict[str, list[tuple[str, Any]]] = {}
    for key, value in attrs.items():
        if key.startswith(_FLATTENED):
            prefix = next(p for p in _FLATTENED if key.startswith(p))
            found.setdefault(prefix, []).append((key[len(prefix):], value))
    return {prefix: _listify(_tree(items)) for prefix, items in found.items()}


#: Levels a flattened foreign key may have (a tool call's argument inside a message is about six).
_MAX_FLATTENED_DEPTH = 64


def _tree(items: Iterable[tuple[str, Any]]) -> dict[Any, Any]:
    """``"0.message.tool_calls.1.tool_call.id"`` → ``{0: {"message.tool_calls": {1: {"tool_call.id": v}}}}``:
    numeric segments are list positions, the dotted words between them one name."""
    root: dict[Any, Any] = {}
    for rest, value in items:
        path: list[Any] = []
        words: list[str] = []
        for segment in rest.split("."):
            if segment.isascii() and segment.isdigit() and len(segment) < 10:
                if words:
                    path.append(".".join(words))
                    words = []
                path.append(int(segment))
            else:
                words.append(segment)
        if words:
            path.append(".".join(words))
        if len(path) > _MAX_FLATTENED_DEPTH:
            continue  # no message, tool or document is nested this deep: a hostile key, ignored
        node = root
        for step in path[:-1]:
            child = node.setdefault(step, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            if path:
                node.setdefault(path[-1], value)
    return root


def _listify(node: Any) -> Any:
    """Dicts keyed by positions become lists, in order; other dicts are converted inside."""
    if not isinstance(node, dict):
        return node
    if node and all(isinstance(k, int) for k in node):
        return [_listify(node[k]) for k in sorted(node)]
    return {k: _listify(v) for k, v in node.items() if isinstance(k, str)}


def _items(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _content(attrs: dict[str, Any], operation: str | None, flattened: Mapping[str, Any],
             policy: ContentPolicy) -> None:
    """Foreign messages, tools, documents and payloads as llmobs content attributes."""
    inputs = _input_messages(attrs, flattened, operation)
    if inputs and sc.INPUT_MESSAGES not in attrs:
        attrs[sc.INPUT_MESSAGES] = policy.render(inputs)
    outputs = _output_messages(attrs, flattened, operation)
    if outputs and sc.OUTPUT_MESSAGES not in attrs:
        attrs[sc.OUTPUT_MESSAGES] = policy.render(outputs)
    tools = [t for t in (_json(e.get(sc.OI_TOOL_JSON_SCHEMA)) for e in _items(flattened.get(sc.OI_TOOLS))) if t]
    if tools and sc.TOOL_DEFINITIONS not in attrs:
        attrs[sc.TOOL_DEFINITIONS] = policy.render(tool_definitions_from_openai(tools))
    documents = _documents(attrs, flattened)
    if documents and sc.RETRIEVAL_DOCUMENTS not in attrs:
        attrs[sc.RETRIEVAL_DOCUMENTS] = policy.render(documents)

    value_in = _first_text(attrs, (sc.INPUT_VALUE, sc.TRACELOOP_ENTITY_INPUT, sc.TRACELOOP_TASK_INPUT,
                                   sc.LEGACY_PROMPT))
    value_out = _first_text(attrs, (sc.OUTPUT_VALUE, sc.TRACELOOP_ENTITY_OUTPUT, sc.TRACELOOP_TASK_OUTPUT,
                                    sc.LEGACY_COMPLETION))
    # Free-form values stand in for messages only where there are none (as the recorder records them).
    targets_in = [] if sc.INPUT_MESSAGES in attrs else [sc.INPUT_VALUE]
    targets_out = [] if sc.OUTPUT_MESSAGES in attrs else [sc.OUTPUT_VALUE]
    if operation == sc.OP_EXECUTE_TOOL:
        targets_in.append(sc.TOOL_CALL_ARGUMENTS)
        targets_out.append(sc.TOOL_CALL_RESULT)
    elif operation == sc.OP_RETRIEVAL:
        targets_in.append(sc.RETRIEVAL_QUERY_TEXT)
        value_in = value_in or _text(attrs.get(sc.DIFY_RETRIEVAL_QUERY))
    for value, targets in ((value_in, targets_in), (value_out, targets_out)):
        for target in targets:
            if value is not None and target not in attrs:
                attrs[target] = policy.render_text(value)


def _first_text(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    return next((attrs[k] for k in keys if _text(attrs.get(k))), None)


def _input_messages(attrs: Mapping[str, Any], flattened: Mapping[str, Any], operation: str | None
                    ) -> list[dict[str, Any]]:
    openinference = _items(flattened.get(sc.OI_INPUT_MESSAGES))
    if openinference:
        return messages_from_openai(_openinference_message(m) for m in openinference)
    legacy = _items(flattened.get(sc.LEGACY_PROMPTS))
    if legacy:
        return messages_from_openai(_legacy_message(m) for m in legacy)
    prompts = attrs.get(sc.OI_PROMPTS)
    if not isinstance(prompts, list | tuple):
        prompts = [p.get(sc.OI_PROMPT_TEXT) for p in _items(flattened.get(sc.OI_PROMPTS + "."))]
    texts = [p for p in prompts if isinstance(p, str)]
    if texts:
        return messages_from_openai({"role": sc.ROLE_USER, "content": t} for t in texts)
    return []


def _output_messages(attrs: Mapping[str, Any], flattened: Mapping[str, Any], operation: str | None
                     ) -> list[dict[str, Any]]:
    finish = _reasons(attrs.get(sc.OI_FINISH_REASON)) or _reasons(attrs.get(sc.LEGACY_FINISH_REASON))
    openinference = _items(flattened.get(sc.OI_OUTPUT_MESSAGES))
    if openinference:
        messages = [_openinference_message(m) for m in openinference]
        return output_messages_from_openai(_choice(m, finish, i) for i, m in enumerate(messages))
    legacy = _items(flattened.get(sc.LEGACY_COMPLETIONS))
    if legacy:
        return output_messages_from_openai(
            _choice(_legacy_message(m), _reasons(m.get(sc.LEGACY_FINISH)) or finish, 0) for m in legacy
        )
    return []


def _choice(message: dict[str, Any], finish: list[str] | None, index: int) -> dict[str, Any]:
    """An OpenAI-style choice; without a stated finish reason: tool_calls if it calls tools, else stop."""
    reason = finish[min(index, len(finish) - 1)] if finish else None
    return {"message": message, "finish_reason": reason or ("tool_calls" if message.get("tool_calls") else "stop")}


def _openinference_message(m: Mapping[str, Any]) -> dict[str, Any]:
    """One flattened OpenInference message as an OpenAI chat message."""
    message: dict[str, Any] = {"role": _text(m.get(sc.OI_MESSAGE_ROLE)) or sc.ROLE_USER}
    contents = _items(m.get(sc.OI_MESSAGE_CONTENTS))
    if contents:
        message["content"] = [_openinference_part(c) for c in contents]
    else:
        message["content"] = m.get(sc.OI_MESSAGE_CONTENT)
    for key, source in (("name", sc.OI_MESSAGE_NAME), ("tool_call_id", sc.OI_MESSAGE_TOOL_CALL_ID)):
        if _text(m.get(source)):
            message[key] = m[source]
    calls = _items(m.get(sc.OI_MESSAGE_TOOL_CALLS))
    if calls:
        message["tool_calls"] = [
            _call(c.get(sc.OI_TOOL_CALL_ID), c.get(sc.OI_TOOL_CALL_NAME), c.get(sc.OI_TOOL_CALL_ARGUMENTS))
            for c in calls
        ]
    if _text(m.get(sc.OI_MESSAGE_FUNCTION_CALL_NAME)):
        message["function_call"] = {"name": m[sc.OI_MESSAGE_FUNCTION_CALL_NAME],
                                    "arguments": m.get(sc.OI_MESSAGE_FUNCTION_CALL_ARGUMENTS)}
    return message


def _openinference_part(c: Mapping[str, Any]) -> dict[str, Any]:
    url = _text(c.get(sc.OI_CONTENT_IMAGE_URL))
    if url is not None:
        return {"type": "image_url", "image_url": {"url": url}}
    return {"type": "text", "text": c.get(sc.OI_CONTENT_TEXT) or ""}


def _legacy_message(m: Mapping[str, Any]) -> dict[str, Any]:
    """One flattened OpenLLMetry prompt or completion as an OpenAI chat message."""
    content = m.get(sc.LEGACY_CONTENT)
    parts = _json(content)
    if isinstance(parts, list) and parts and all(isinstance(p, dict) and "type" in p for p in parts):
        content = parts  # OpenLLMetry writes multi-part content as JSON text
    message: dict[str, Any] = {"role": _text(m.get(sc.LEGACY_ROLE)) or sc.ROLE_USER, "content": content}
    if _text(m.get(sc.LEGACY_TOOL_CALL_ID)):
        message["tool_call_id"] = m[sc.LEGACY_TOOL_CALL_ID]
    calls = _items(m.get(sc.LEGACY_TOOL_CALLS))
    if calls:
        message["tool_calls"] = [
            _call(c.get(sc.LEGACY_CALL_ID), c.get(sc.LEGACY_CALL_NAME), c.get(sc.LEGACY_CALL_ARGUMENTS))
            for c in calls
        ]
    return message


def _call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    call: dict[str, Any] = {"type": "function", "function": {"name": name if isinstance(name, str) else "",
                                                             "arguments": arguments}}
    if isinstance(call_id, str):
        call["id"] = call_id
    return call


def _documents(attrs: Mapping[str, Any], flattened: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Retrieved (or reranked) documents as ``{id, score, content, metadata}`` entries."""
    entries = _items(flattened.get(sc.OI_RETRIEVAL_DOCUMENTS)) or _items(flattened.get(sc.OI_RERANKER_OUTPUT_DOCUMENTS))
    documents = []
    for entry in entries:
        document = {"id": entry.get(sc.OI_DOCUMENT_ID), "score": _float(entry.get(sc.OI_DOCUMENT_SCORE)),
                    "content": entry.get(sc.OI_DOCUMENT_CONTENT)}
        metadata = entry.get(sc.OI_DOCUMENT_METADATA)
        parsed = _json(metadata)
        document["metadata"] = metadata if parsed is None else parsed
        documents.append({k: v for k, v in document.items() if v is not None})
    if not documents:
        dify = _json(attrs.get(sc.DIFY_RETRIEVAL_DOCUMENT))
        documents = _items(dify) if isinstance(dify, list) else []
        # Newer ARMS exports wrap each entry: {"document": {content, metadata, score, id}}.
        documents = [d[sc.DIFY_RETRIEVAL_WRAPPED] if isinstance(d.get(sc.DIFY_RETRIEVAL_WRAPPED), dict) else d
                     for d in documents]
    return documents


# --- Dify (Phoenix and ARMS exports) ----------------------------------------------------------------

_DIFY_IDS = (
    (sc.DIFY_APP_ID, sc.DIFY_META_APP_ID),
    (sc.DIFY_WORKFLOW_ID, sc.DIFY_META_WORKFLOW_ID),
    (sc.DIFY_WORKFLOW_RUN_ID, sc.DIFY_META_WORKFLOW_RUN_ID),
    (sc.DIFY_MESSAGE_ID, sc.DIFY_META_MESSAGE_ID),
    (sc.CONVERSATION_ID, sc.DIFY_META_CONVERSATION_ID),
    (sc.SESSION_ID, sc.DIFY_META_CONVERSATION_ID),
    (sc.USER_ID, sc.DIFY_META_END_USER_ID),
    (sc.USER_ID, sc.DIFY_META_USER_ID),
)
#: Dify's own gen_ai.operation.name values (newer ARMS export) that are no GenAI operation.
_DIFY_OPERATIONS = {sc.DIFY_WORKFLOW_SPAN: sc.OP_INVOKE_WORKFLOW}  # node, message, react, ...: chain
_DIFY_NUMBERS = (sc.USAGE_INPUT_TOKENS, sc.USAGE_OUTPUT_TOKENS, sc.USAGE_TOTAL_TOKENS,
                 sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS)
_DIFY_NODE_PREFIXES = {sc.OP_EXECUTE_TOOL: "tool_", sc.OP_INVOKE_AGENT: "agent_"}  # Phoenix: <node type>_<title>


def _dify_metadata(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """Dify's metadata JSON (empty when the span has none) if the span comes from Dify; else None."""
    metadata = _json(attrs.get(sc.OI_METADATA))
    metadata = metadata if isinstance(metadata, dict) else {}
    if (
        metadata.get(sc.DIFY_META_CREATED_FROM) == sc.DIFY_META_CREATED_FROM_VALUE
        or attrs.get(sc.FRAMEWORK) == sc.DIFY_FRAMEWORK
        or sc.DIFY_PHOENIX_TRACE_ID in attrs
        or any(key.startswith(sc.DIFY_PREFIX) for key in attrs)
    ):
        return metadata
    return None


def _dify_operation(attrs: dict[str, Any], name: str, metadata: Mapping[str, Any]) -> None:
    """The workflow span's operation, and Dify's non-GenAI operation names replaced (before classification)."""
    operation = _text(attrs.get(sc.OPERATION_NAME))
    if operation is not None and operation not in sc.KIND_OF_OPERATION:
        attrs[sc.OPERATION_NAME] = _DIFY_OPERATIONS.get(operation, sc.OP_CHAIN)
    elif operation is None and (
        metadata.get(sc.DIFY_META_ENTITY_TYPE) == sc.DIFY_WORKFLOW_SPAN
        or (name == sc.DIFY_WORKFLOW_SPAN and attrs.get(sc.FRAMEWORK) == sc.DIFY_FRAMEWORK)
    ):
        attrs[sc.OPERATION_NAME] = sc.OP_INVOKE_WORKFLOW
    for key in _DIFY_NUMBERS:
        if isinstance(attrs.get(key), str):  # the ARMS export sends token counts as strings
            number = _int(attrs[key])
            if number is None:
                del attrs[key]
            else:
                attrs[key] = number


def _dify_facts(attrs: dict[str, Any], name: str, operation: str | None, metadata: Mapping[str, Any],
                policy: ContentPolicy) -> None:
    """Ids, model, provider, TTFT, finish reason, documents and output message from Dify's shapes."""
    for target, key in _DIFY_IDS:
        value = _text(metadata.get(key))
        if value is not None:
            attrs.setdefault(target, value)
    prefix = _DIFY_NODE_PREFIXES.get(operation or "")
    if prefix is not None and name.startswith(prefix) and len(name) > len(prefix):
        attrs.setdefault(sc.TOOL_NAME if operation == sc.OP_EXECUTE_TOOL else sc.AGENT_NAME, name[len(prefix):])
    provider = _text(attrs.get(sc.PROVIDER_NAME))
    if operation in sc.INFERENCE_OPERATIONS:
        attrs.setdefault(sc.REQUEST_MODEL, _text(metadata.get(sc.DIFY_META_MODEL)))
        if attrs[sc.REQUEST_MODEL] is None:
            del attrs[sc.REQUEST_MODEL]
        provider = provider or _text(metadata.get(sc.DIFY_META_PROVIDER))
    if provider is not None:  # Dify's plugin provider ids: <organisation>/<plugin>/<provider>
        provider = provider.rsplit("/", 1)[-1].lower()
        attrs[sc.PROVIDER_NAME] = _PROVIDERS.get(provider, provider)
    outputs = _json(attrs.get(sc.OUTPUT_VALUE))
    if operation == sc.OP_RETRIEVAL:
        _dify_retrieval(attrs, outputs, policy)
    if operation not in sc.INFERENCE_OPERATIONS or operation == sc.OP_EMBEDDINGS:
        return
    usage = outputs.get(sc.DIFY_OUTPUT_USAGE) if isinstance(outputs, dict) else None
    ttft = _float(usage.get(sc.DIFY_USAGE_TTFT)) if isinstance(usage, dict) else None
    ttft = ttft or _float(metadata.get(sc.DIFY_META_TTFT))
    if ttft is not None and ttft > 0 and sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS not in attrs:
        attrs.setdefault(sc.RESPONSE_TIME_TO_FIRST_CHUNK, ttft)
    reason = _text(outputs.get(sc.DIFY_OUTPUT_FINISH_REASON)) if isinstance(outputs, dict) else None
    if reason is not None:
        attrs.setdefault(sc.RESPONSE_FINISH_REASONS, [reason])
    if isinstance(outputs, dict):
        text = _text(outputs.get(sc.DIFY_OUTPUT_TEXT))
    else:
        text = _text(attrs.get(sc.OUTPUT_VALUE)) if outputs is None else None
    if text is not None and sc.OUTPUT_MESSAGES not in attrs and policy.mode is not CaptureMode.NO_CONTENT:
        choice = {"message": {"role": sc.ROLE_ASSISTANT, "content": text}, "finish_reason": reason or "stop"}
        attrs[sc.OUTPUT_MESSAGES] = policy.render(output_messages_from_openai([choice]))


def _dify_retrieval(attrs: dict[str, Any], outputs: Any, policy: ContentPolicy) -> None:
    """A knowledge-retrieval node (Phoenix export): the query from its inputs, documents from its result."""
    if policy.mode is CaptureMode.NO_CONTENT:
        return
    inputs = _json(attrs.get(sc.INPUT_VALUE))
    query = _text(inputs.get(sc.DIFY_INPUT_QUERY)) if isinstance(inputs, dict) else None
    if query is not None:
        attrs.setdefault(sc.RETRIEVAL_QUERY_TEXT, policy.render_text(query))
    results = outputs.get(sc.DIFY_OUTPUT_RESULT) if isinstance(outputs, dict) else None
    documents = []
    for entry in _items(results):
        metadata = entry.get(sc.DIFY_DOCUMENT_METADATA)
        metadata = metadata if isinstance(metadata, dict) else {}
        document = {"id": metadata.get(sc.DIFY_DOCUMENT_ID), "score": _float(metadata.get(sc.DIFY_DOCUMENT_SCORE)),
                    "content": entry.get(sc.DIFY_DOCUMENT_CONTENT), "metadata": metadata or None}
        documents.append({k: v for k, v in document.items() if v is not None})
    if documents and sc.RETRIEVAL_DOCUMENTS not in attrs:
        attrs[sc.RETRIEVAL_DOCUMENTS] = policy.render(documents)
