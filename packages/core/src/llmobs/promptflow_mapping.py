"""Promptflow's span attributes in llmobs' GenAI semantics: a pure function over one finished span.

Promptflow writes its own schema (``span_type``, ``inputs``/``output`` as indented JSON, ``llm.usage.*``,
``llm.response.model``); :func:`translate` turns it into operation, span kind, model, provider, request
parameters, usage, finish reasons and content, and keeps the attributes it does not consume. It parses
JSON only where the result is used: LLM and embedding payloads always (model, usage, finish reasons live
there), other payloads only when content is captured.

One mapping, two users: llmobs-promptflow translates spans in the process as they end (and records their
metrics), and :mod:`llmobs.interop` translates the same spans when they arrive over OTLP at a receiver
(``llmobs serve``, the Dify relay) from a process without llmobs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmobs import selfstats
from llmobs import semconv as sc
from llmobs.content import (
    ContentPolicy,
    listed,
    messages_from_openai,
    output_messages_from_openai,
    tool_definitions_from_openai,
)
from llmobs.recorder import Usage

MAX_PARSED_CHARS = 4 << 20  # a payload longer than this is not parsed (content is still captured, capped)
_CANCELLED = frozenset({"CancelledError", "KeyboardInterrupt"})
_MODEL_KEYS = ("model", "deployment_name", "engine")
_NUMBER_PARAMS = (
    ("temperature", sc.REQUEST_TEMPERATURE),
    ("top_p", sc.REQUEST_TOP_P),
    ("frequency_penalty", sc.REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", sc.REQUEST_PRESENCE_PENALTY),
    ("seed", sc.REQUEST_SEED),
    ("max_completion_tokens", sc.REQUEST_MAX_TOKENS),
    ("max_tokens", sc.REQUEST_MAX_TOKENS),
    ("dimensions", sc.EMBEDDINGS_DIMENSION_COUNT),
)
_VECTOR = re.compile(r"<(\d+) dimensional vector>")


@dataclass(slots=True)
class Translation:
    """What a Promptflow span says, in the recorder's terms. ``content`` holds (attribute, value, as JSON)
    triples for the content policy to render; ``attributes`` holds everything else."""

    name: str
    operation: str
    kind: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    provider: str | None = None
    model: str | None = None
    response_model: str | None = None
    usage: Usage | None = None
    error_type: str | None = None
    cancelled: bool = False
    content: list[tuple[str, Any, bool]] = field(default_factory=list)

    @property
    def inference(self) -> bool:
        return self.operation in sc.INFERENCE_OPERATIONS


def translate(
    name: str,
    attributes: Mapping[str, Any],
    *,
    failed: bool = False,
    exception_type: str | None = None,
    has_children: bool = False,
    capture: bool = True,
) -> Translation:
    """Translate one Promptflow span. ``failed``: its status is an error, ``exception_type`` the type its
    exception event names; ``has_children``: traced work ran inside it (a chain, not a leaf task);
    ``capture``: content will be recorded (else payloads of non-model spans are not parsed)."""
    span_type = attributes.get(sc.PF_SPAN_TYPE)
    reader = _READERS.get(span_type, _function) if isinstance(span_type, str) else _function
    t = reader(name, attributes, capture, has_children)
    kept = t.attributes
    for key, value in attributes.items():
        if key not in _CONSUMED and not key.startswith((sc.PF_LLM_PREFIX, sc.PF_COMPUTED_PREFIX)):
            kept.setdefault(key, value)
    kept[sc.FRAMEWORK] = sc.PF_SCOPE
    if t.response_model:
        kept[sc.RESPONSE_MODEL] = t.response_model
    session = attributes.get(sc.PF_SESSION_ID)
    if session:
        kept[sc.SESSION_ID] = kept[sc.CONVERSATION_ID] = str(session)
    if failed:
        short = (exception_type or "").rpartition(".")[2]
        if short in _CANCELLED:
            t.cancelled = True
        else:
            t.error_type = short or sc.ERROR_TYPE_OTHER
    if capture:
        for attribute in (sc.PF_PROMPT_TEMPLATE, sc.PF_PROMPT_VARIABLES):
            if attribute in attributes:
                t.content.append((attribute, attributes[attribute], False))
    return t


def is_promptflow(attributes: Mapping[str, Any]) -> bool:
    """Whether these are the attributes of a span Promptflow made (and nobody translated yet)."""
    return attributes.get(sc.PF_FRAMEWORK) == sc.PF_SCOPE and isinstance(attributes.get(sc.PF_SPAN_TYPE), str)


def span_attributes(
    t: Translation, policy: ContentPolicy, usage_attributes: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The translated span's attributes — operation, span kind, the given usage attributes (tokens, total,
    cost), error type or cancellation — and its content rendered by ``policy`` (empty when it captures
    none), for the caller to put on the span or in an event as the policy says."""
    attributes = t.attributes
    attributes[sc.OPERATION_NAME] = t.operation
    attributes[sc.SPAN_KIND] = t.kind or sc.KIND_OF_OPERATION.get(t.operation, sc.KIND_TASK)
    attributes.update(usage_attributes)
    if t.error_type:
        attributes[sc.ERROR_TYPE] = t.error_type
    elif t.cancelled:  # cancelled is not failed, as in the recorder
        attributes[sc.STATUS_REASON] = "cancelled"
    content: dict[str, str] = {}
    if policy.mode.on_span or policy.mode.on_event:
        for attribute, value, as_json in t.content:
            content[attribute] = policy.render(value) if as_json else policy.render_text(value)
    return attributes, content


# --- per span type --------------------------------------------------------------------------------


def _llm(name: str, attributes: Mapping[str, Any], capture: bool, has_children: bool) -> Translation:
    inputs = _mapping(parse(attributes.get(sc.PF_INPUTS)))
    chat = isinstance(inputs.get("messages"), list) or "prompt" not in inputs
    t = _model_call(name, sc.OP_CHAT if chat else sc.OP_TEXT_COMPLETION, attributes, inputs)
    stream = inputs.get("stream") is True or attributes.get(sc.PF_OUTPUT_TYPE) == sc.PF_OUTPUT_ITERATED
    t.attributes[sc.REQUEST_STREAM] = stream
    stop = inputs.get("stop")
    if isinstance(stop, str | list) and stop:
        t.attributes[sc.REQUEST_STOP_SEQUENCES] = [stop] if isinstance(stop, str) else [str(s) for s in stop]
    n = inputs.get("n")
    if type(n) is int and n != 1:
        t.attributes[sc.REQUEST_CHOICE_COUNT] = n

    output = parse(attributes.get(sc.PF_OUTPUT))
    response = _accumulate(output) if isinstance(output, list) else _mapping(output)
    choices = [c for c in listed(response.get("choices")) if isinstance(c, dict)]
    reasons = [c["finish_reason"] for c in choices if isinstance(c.get("finish_reason"), str)]
    if reasons:
        t.attributes[sc.RESPONSE_FINISH_REASONS] = reasons
    if isinstance(response.get("id"), str):
        t.attributes[sc.RESPONSE_ID] = response["id"]
    t.response_model = _text(attributes.get(sc.PF_RESPONSE_MODEL)) or _text(response.get("model"))
    _set_usage(t, response.get("usage"), attributes, stream)

    if capture:
        if chat:
            t.content.append((sc.INPUT_MESSAGES, messages_from_openai(inputs.get("messages") or ()), True))
        else:
            prompts = inputs.get("prompt")
            if not isinstance(prompts, list) or (prompts and type(prompts[0]) is int):
                prompts = [prompts]  # one text, or one prompt as token ids
            prompts = [str(p) if isinstance(p, list) else p for p in prompts]  # token ids, shown as a list
            t.content.append((sc.INPUT_MESSAGES, messages_from_openai({"content": p} for p in prompts), True))
        tools = inputs.get("tools") or inputs.get("functions")
        if tools:
            t.content.append((sc.TOOL_DEFINITIONS, tool_definitions_from_openai(tools), True))
        if not chat:
            choices = [
                {"message": {"content": c.get("text")}, "finish_reason": c.get("finish_reason")} for c in choices
            ]
        if choices:
            t.content.append((sc.OUTPUT_MESSAGES, output_messages_from_openai(choices), True))
    return t


def _embeddings(name: str, attributes: Mapping[str, Any], capture: bool, has_children: bool) -> Translation:
    inputs = _mapping(parse(attributes.get(sc.PF_INPUTS)))
    t = _model_call(name, sc.OP_EMBEDDINGS, attributes, inputs)
    t.response_model = _text(attributes.get(sc.PF_RESPONSE_MODEL))
    texts = inputs.get("input")
    if isinstance(texts, str) or (isinstance(texts, list) and texts and isinstance(texts[0], int)):
        t.attributes[sc.EMBEDDINGS_INPUT_COUNT] = 1  # one text, or one input as token ids
    elif isinstance(texts, list) and texts:
        t.attributes[sc.EMBEDDINGS_INPUT_COUNT] = len(texts)
    encoding = inputs.get("encoding_format")
    if isinstance(encoding, str):
        t.attributes[sc.REQUEST_ENCODING_FORMATS] = [encoding]
    dimensions = _int(inputs.get("dimensions"))
    vector = _VECTOR.search(str(attributes.get(sc.PF_EMBEDDINGS, "")))
    if dimensions is None and vector is not None and encoding != "base64":
        dimensions = int(vector.group(1))  # Promptflow's len() of each vector: of a base64 one, its text length
    if dimensions is not None:
        t.attributes[sc.EMBEDDINGS_DIMENSION_COUNT] = dimensions
    _set_usage(t, None, attributes, stream=False)
    if capture and texts is not None:
        t.content.append((sc.INPUT_VALUE, texts, False))  # the texts; the vectors are never recorded
    return t


def _retrieval(name: str, attributes: Mapping[str, Any], capture: bool, has_children: bool) -> Translation:
    t = Translation(_named(sc.OP_RETRIEVAL, name), sc.OP_RETRIEVAL, attributes={sc.COMPONENT_NAME: name})
    if capture:
        inputs = parse(attributes.get(sc.PF_INPUTS))
        query = next(iter(inputs.values())) if isinstance(inputs, dict) and len(inputs) == 1 else inputs
        _add_payload(t, sc.RETRIEVAL_QUERY_TEXT, query, False)
        _add_payload(t, sc.RETRIEVAL_DOCUMENTS, parse(attributes.get(sc.PF_OUTPUT)), True)
    return t


def _flow(name: str, attributes: Mapping[str, Any], capture: bool, has_children: bool) -> Translation:
    attrs = {sc.COMPONENT_NAME: name, sc.WORKFLOW_NAME: name}
    t = Translation(_named(sc.OP_INVOKE_WORKFLOW, name), sc.OP_INVOKE_WORKFLOW, attributes=attrs)
    _values(t, attributes, capture)
    return t


def _function(name: str, attributes: Mapping[str, Any], capture: bool, has_children: bool) -> Translation:
    """A traced function: a chain when traced work ran inside it, else a leaf task (e.g. a tool)."""
    kind = sc.KIND_CHAIN if has_children else sc.KIND_TASK
    t = Translation(name, sc.OP_CHAIN, kind=kind, attributes={sc.COMPONENT_NAME: name})
    _values(t, attributes, capture)
    return t


_READERS: dict[Any, Callable[[str, Mapping[str, Any], bool, bool], Translation]] = {
    sc.PF_TYPE_LLM: _llm,
    sc.PF_TYPE_EMBEDDING: _embeddings,
    sc.PF_TYPE_RETRIEVAL: _retrieval,
    sc.PF_TYPE_FLOW: _flow,
}
_CONSUMED = frozenset(
    {
        sc.PF_FRAMEWORK,
        sc.PF_SPAN_TYPE,
        sc.PF_SESSION_ID,
        sc.PF_INPUTS,
        sc.PF_OUTPUT,
        sc.PF_OUTPUT_TYPE,
        sc.PF_EMBEDDINGS,
        sc.PF_PROMPT_TEMPLATE,
        sc.PF_PROMPT_VARIABLES,
    }
)


# --- helpers --------------------------------------------------------------------------------------


def parse(text: Any) -> Any:
    """A payload attribute's JSON value; the text itself when it is no JSON or too long to parse."""
    if not isinstance(text, str):
        return text
    if len(text) > MAX_PARSED_CHARS:
        selfstats.count("promptflow.payload_not_parsed")
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return text


def _model_call(name: str, operation: str, attributes: Mapping[str, Any], inputs: dict[str, Any]) -> Translation:
    model = next((inputs[k] for k in _MODEL_KEYS if isinstance(inputs.get(k), str) and inputs[k]), None)
    function = str(attributes.get(sc.PF_FUNCTION, ""))
    provider = sc.PROVIDER_OPENAI if function.startswith("openai.") else None  # Promptflow traces the openai client
    t = Translation(_named(operation, name, model), operation, provider=provider, model=model)
    for key, attribute in _NUMBER_PARAMS:
        value = inputs.get(key)
        if type(value) in (int, float) and attribute not in t.attributes:
            t.attributes[attribute] = value
    if model:
        t.attributes[sc.REQUEST_MODEL] = model
    if provider:
        t.attributes[sc.PROVIDER_NAME] = provider
    return t


def _named(operation: str, name: str, model: str | None = None) -> str:
    """The recorder's span names: ``{operation} {model}`` for model calls, ``{operation} {name}`` else."""
    if operation in sc.MODEL_NAMED_OPERATIONS:
        return f"{operation} {model}" if model else name
    return f"{operation} {name}"


def _set_usage(t: Translation, reported: Any, attributes: Mapping[str, Any], stream: bool) -> None:
    """Usage the provider reported (a response's or a stream's final ``usage``), else Promptflow's counts —
    estimates for a stream, flagged as such — else nothing, flagged too. Never a number of our own."""
    if isinstance(reported, dict) and _int(reported.get("prompt_tokens")) is not None:
        cached = _int(_mapping(reported.get("prompt_tokens_details")).get("cached_tokens"))
        reasoning = _int(_mapping(reported.get("completion_tokens_details")).get("reasoning_tokens"))
        inp, out = _int(reported.get("prompt_tokens")), _int(reported.get("completion_tokens"))
        t.usage = (inp, out, cached, None, reasoning, _int(reported.get("total_tokens")))
        return
    inp, out = _int(attributes.get(sc.PF_USAGE_PROMPT_TOKENS)), _int(attributes.get(sc.PF_USAGE_COMPLETION_TOKENS))
    if inp is None and out is None:
        t.attributes[sc.USAGE_SOURCE] = sc.USAGE_SOURCE_NONE
        return
    t.usage = (inp, out, None, None, None, _int(attributes.get(sc.LLM_USAGE_TOTAL_TOKENS)))
    if stream:
        t.attributes[sc.USAGE_SOURCE] = sc.USAGE_SOURCE_ESTIMATE


def _accumulate(chunks: list[Any]) -> dict[str, Any]:
    """A stream's chunks as one response: choices with their text, tool calls and finish reason, the
    final ``usage`` chunk if the request asked for one (Promptflow itself ignores it)."""
    response: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    calls: dict[int, dict[int, dict[str, Any]]] = {}
    for chunk in chunks:
        if not isinstance(chunk, dict):
            continue
        for key in ("id", "model", "usage"):
            if chunk.get(key):
                response[key] = chunk[key]
        for raw in listed(chunk.get("choices")):
            if not isinstance(raw, dict):
                continue
            index = _int(raw.get("index")) or 0
            choice = choices.setdefault(index, {"message": {"role": sc.ROLE_ASSISTANT}})
            if raw.get("finish_reason"):
                choice["finish_reason"] = raw["finish_reason"]
            if isinstance(raw.get("text"), str):  # a completion stream
                choice["text"] = choice.get("text", "") + raw["text"]
            delta = _mapping(raw.get("delta"))
            for key in ("content", "reasoning_content", "refusal"):
                if isinstance(delta.get(key), str):
                    choice["message"][key] = choice["message"].get(key, "") + delta[key]
            for call in listed(delta.get("tool_calls")):
                _merge_call(calls.setdefault(index, {}), _mapping(call))
            legacy = _mapping(delta.get("function_call"))
            if legacy:  # the pre-tools ``functions`` API: one call, its arguments in pieces
                function = choice["message"].setdefault("function_call", {"name": "", "arguments": ""})
                if legacy.get("name"):
                    function["name"] = legacy["name"]
                if isinstance(legacy.get("arguments"), str):
                    function["arguments"] += legacy["arguments"]
    for index, by_position in calls.items():
        choices[index]["message"]["tool_calls"] = [by_position[i] for i in sorted(by_position)]
    response["choices"] = [choices[i] for i in sorted(choices)]
    return response


def _merge_call(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    """One streamed tool-call fragment into the calls of its choice (arguments arrive in pieces)."""
    call = calls.setdefault(_int(delta.get("index")) or 0, {"type": "function", "function": {}})
    if delta.get("id"):
        call["id"] = delta["id"]
    function = _mapping(delta.get("function"))
    if function.get("name"):
        call["function"]["name"] = function["name"]
    if isinstance(function.get("arguments"), str):
        call["function"]["arguments"] = call["function"].get("arguments", "") + function["arguments"]


def _values(t: Translation, attributes: Mapping[str, Any], capture: bool) -> None:
    if capture:
        _add_payload(t, sc.INPUT_VALUE, parse(attributes.get(sc.PF_INPUTS)), False)
        _add_payload(t, sc.OUTPUT_VALUE, parse(attributes.get(sc.PF_OUTPUT)), False)


def _add_payload(t: Translation, attribute: str, value: Any, as_json: bool) -> None:
    if value is not None:
        t.content.append((attribute, value, as_json))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
