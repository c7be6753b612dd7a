"""LlamaIndex objects in the shapes the llmobs core records: GenAI messages, documents, usage, finish reasons.

Only cheap attribute reads happen here; the core serialises, scrubs and caps the results later, and only
for spans it records with content. Binary blocks (images, audio, documents) are described by reference
(modality, MIME type, size), never inlined. Embedding vectors are never read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from llmobs import content
from llmobs import semconv as sc

_ROLES = {
    "developer": sc.ROLE_SYSTEM,
    "function": sc.ROLE_TOOL,
    "chatbot": sc.ROLE_ASSISTANT,
    "model": sc.ROLE_ASSISTANT,
}
_FINISH_REASONS = {
    "stop": sc.FINISH_STOP,
    "end_turn": sc.FINISH_STOP,
    "stop_sequence": sc.FINISH_STOP,
    "length": sc.FINISH_LENGTH,
    "max_tokens": sc.FINISH_LENGTH,
    "content_filter": sc.FINISH_CONTENT_FILTER,
    "tool_calls": sc.FINISH_TOOL_CALL,
    "function_call": sc.FINISH_TOOL_CALL,
    "tool_use": sc.FINISH_TOOL_CALL,
}
# media block type -> (field holding inline data, field holding the MIME type)
_MEDIA = {
    "image": ("image", "image_mimetype"),
    "audio": ("audio", None),
    "video": ("video", "video_mimetype"),
    "document": ("data", "document_mimetype"),
}


class Usage(NamedTuple):
    input_tokens: int | None
    output_tokens: int | None
    cache_read: int | None
    cache_write: int | None
    reasoning: int | None
    total: int | None


# --- plain text ------------------------------------------------------------------------------------


def text_of(value: Any) -> Any:
    """The text of a query, a message or a response; other values as they are (the core renders them)."""
    if value is None or isinstance(value, str):
        return value
    for attribute in ("query_str", "response", "content"):
        text = getattr(value, attribute, None)
        if isinstance(text, str):
            return text
    return value


# --- messages --------------------------------------------------------------------------------------


def input_messages(messages: Iterable[Any]) -> list[dict[str, Any]]:
    """``ChatMessage``s as GenAI input messages (a list, as LlamaIndex passes them: anything else might be
    an endless iterator, and is not read)."""
    return [_message(m) for m in messages] if isinstance(messages, list | tuple) else []


def prompt_messages(prompt: str) -> list[dict[str, Any]]:
    """A completion prompt as one GenAI user message."""
    return [content.message(sc.ROLE_USER, [content.text_part(prompt)])]


def output_message(message: Any, finish_reason: str) -> dict[str, Any]:
    role, parts = _role_and_parts(message)
    return content.output_message(parts, finish_reason, role)


def text_output(text: str, finish_reason: str) -> dict[str, Any]:
    return content.output_message([content.text_part(text)], finish_reason)


def has_tool_calls(message: Any) -> bool:
    if message is None:
        return False
    if content.listed(message.additional_kwargs.get("tool_calls")):
        return True
    return any(getattr(block, "block_type", None) == "tool_call" for block in content.listed(message.blocks))


def _message(message: Any) -> dict[str, Any]:
    role, parts = _role_and_parts(message)
    return content.message(role, parts)


def _role_and_parts(message: Any) -> tuple[str, list[dict[str, Any]]]:
    role = getattr(message.role, "value", message.role)
    role = _ROLES.get(role, role)
    extra = message.additional_kwargs
    if role == sc.ROLE_TOOL:
        return role, [content.tool_call_response_part(message.content, extra.get("tool_call_id"))]
    parts = [part for part in map(_part, content.listed(message.blocks)) if part is not None]
    for call in content.listed(extra.get("tool_calls")):  # OpenAI-style calls kept beside the blocks
        parts.append(_openai_tool_call(call))
    return role, parts


def _part(block: Any) -> dict[str, Any] | None:
    kind = getattr(block, "block_type", None)
    if kind == "text":
        return content.text_part(block.text)
    if kind == "tool_call":
        return content.tool_call_part(block.tool_name, block.tool_kwargs, block.tool_call_id)
    if kind == "thinking":
        return content.reasoning_part(block.content) if block.content else None
    if kind in _MEDIA:
        return _media_part(block, kind)
    if kind == "citable":
        texts = (b.text for b in content.listed(block.content) if getattr(b, "block_type", None) == "text")
        return content.text_part("".join(texts))
    if kind == "cache":
        return None
    return {"type": str(kind or type(block).__name__)}


def _media_part(block: Any, modality: str) -> dict[str, Any]:
    data_field, mime_field = _MEDIA[modality]
    mime = getattr(block, mime_field, None) if mime_field else None
    if modality == "audio" and getattr(block, "format", None):
        mime = f"audio/{block.format}"
    url = getattr(block, "url", None)
    if url is not None and not str(url).startswith("data:"):
        return content.uri_part(str(url), modality, mime)
    data = getattr(block, data_field, None)
    return content.blob_part(modality, mime, size=len(data) if isinstance(data, bytes | bytearray) else None)


def _openai_tool_call(call: Any) -> dict[str, Any]:
    fn = call.get("function") if isinstance(call, Mapping) else getattr(call, "function", None)
    call_id = call.get("id") if isinstance(call, Mapping) else getattr(call, "id", None)
    name = _field(fn, "name") or ""
    return content.tool_call_part(name, _field(fn, "arguments"), call_id)


# --- retrieval and reranking -----------------------------------------------------------------------


def documents(nodes: Sequence[Any]) -> list[dict[str, Any]]:
    """``NodeWithScore``s (a list) as GenAI retrieval documents: id, score and content."""
    out = []
    for scored in content.listed(nodes):
        node = scored.node
        doc: dict[str, Any] = {"id": node.node_id}
        if scored.score is not None:
            doc["score"] = scored.score
        doc["content"] = node.get_content()
        out.append(doc)
    return out


# --- responses ---------------------------------------------------------------------------------------


def usage_of(response: Any) -> Usage | None:
    """Token usage from the provider's raw response (``raw.usage``), else from ``additional_kwargs``."""
    raw = getattr(response, "raw", None)
    usage = _field(raw, "usage") if raw is not None else None
    if usage is None:
        usage = getattr(response, "additional_kwargs", None) or None
    if usage is None:
        return None
    inp = _int(_field(usage, "prompt_tokens"))
    out = _int(_field(usage, "completion_tokens"))
    cache_read = _int(_field(_field(usage, "prompt_tokens_details"), "cached_tokens"))
    cache_write = None
    if inp is None and out is None:  # Anthropic's shape: input excludes the cache, which is counted apart
        inp, out = _int(_field(usage, "input_tokens")), _int(_field(usage, "output_tokens"))
        cache_read = _int(_field(usage, "cache_read_input_tokens"))
        cache_write = _int(_field(usage, "cache_creation_input_tokens"))
        if inp is not None:
            inp += (cache_read or 0) + (cache_write or 0)
    if inp is None and out is None:
        return None
    reasoning = _int(_field(_field(usage, "completion_tokens_details"), "reasoning_tokens"))
    return Usage(inp, out, cache_read, cache_write, reasoning, _int(_field(usage, "total_tokens")))


def finish_reason_of(response: Any, tool_calls: bool) -> str:
    """The provider's finish reason in GenAI terms; a finished call without one stopped normally."""
    raw = getattr(response, "raw", None)
    reason = None
    if raw is not None:
        choices = _field(raw, "choices")
        if isinstance(choices, list | tuple) and choices:
            reason = _field(choices[0], "finish_reason")
        if reason is None:
            reason = _field(raw, "stop_reason") or _field(raw, "finish_reason")
    if isinstance(reason, str):
        return _FINISH_REASONS.get(reason, reason)
    return sc.FINISH_TOOL_CALL if tool_calls else sc.FINISH_STOP


def response_identity(response: Any) -> tuple[str | None, str | None]:
    """``(response id, response model)`` from the provider's raw response."""
    raw = getattr(response, "raw", None)
    if raw is None:
        return None, None
    rid, model = _field(raw, "id"), _field(raw, "model")
    return (rid if isinstance(rid, str) else None), (model if isinstance(model, str) else None)


def _field(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
