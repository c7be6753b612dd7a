"""Builders for the GenAI message JSON (``gen_ai.input.messages``, ``gen_ai.output.messages``,
``gen_ai.tool.definitions``) and converters from the OpenAI chat-completions shapes, which most
providers (DeepSeek, DashScope/Qwen, vLLM, Azure) also speak.

Binary content is recorded by reference only: a blob part carries its modality, MIME type and
size, and ``content`` is a placeholder (``"<omitted N bytes>"``) instead of base64. Inlining images
or audio would blow the attribute cap and ship user media to the trace backend.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from llmobs import selfstats
from llmobs.semconv import (
    FINISH_CONTENT_FILTER,
    FINISH_ERROR,
    FINISH_LENGTH,
    FINISH_STOP,
    FINISH_TOOL_CALL,
    PART_BLOB,
    PART_FILE,
    PART_REASONING,
    PART_TEXT,
    PART_TOOL_CALL,
    PART_TOOL_CALL_RESPONSE,
    PART_URI,
    ROLE_ASSISTANT,
    ROLE_SYSTEM,
    ROLE_TOOL,
    ROLE_USER,
)

# --- builders -------------------------------------------------------------------------------------


def text_part(content: str) -> dict[str, Any]:
    return {"type": PART_TEXT, "content": content}


def tool_call_part(name: str, arguments: Any = None, id: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": PART_TOOL_CALL}
    if id is not None:
        part["id"] = id
    part["name"] = name
    if arguments is not None:
        part["arguments"] = arguments
    return part


def tool_call_response_part(response: Any, id: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": PART_TOOL_CALL_RESPONSE}
    if id is not None:
        part["id"] = id
    part["response"] = response
    return part


def reasoning_part(content: str) -> dict[str, Any]:
    return {"type": PART_REASONING, "content": content}


def blob_part(modality: str, mime_type: str | None = None, *, size: int | None = None) -> dict[str, Any]:
    """A blob recorded by reference: ``content`` is ``"<omitted N bytes>"`` (or ``"<omitted>"``
    when the size is unknown), never the data itself."""
    part: dict[str, Any] = {"type": PART_BLOB, "modality": modality}
    if mime_type is not None:
        part["mime_type"] = mime_type
    part["content"] = "<omitted>" if size is None else f"<omitted {size} bytes>"
    return part


def uri_part(uri: str, modality: str, mime_type: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": PART_URI, "modality": modality}
    if mime_type is not None:
        part["mime_type"] = mime_type
    part["uri"] = uri
    return part


def file_part(file_id: str, modality: str, mime_type: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": PART_FILE, "modality": modality}
    if mime_type is not None:
        part["mime_type"] = mime_type
    part["file_id"] = file_id
    return part


def message(role: str, parts: Iterable[Mapping[str, Any]], name: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": role, "parts": list(parts)}
    if name is not None:
        msg["name"] = name
    return msg


def output_message(
    parts: Iterable[Mapping[str, Any]],
    finish_reason: str,
    role: str = ROLE_ASSISTANT,
    name: str | None = None,
) -> dict[str, Any]:
    msg = message(role, parts, name)
    msg["finish_reason"] = finish_reason
    return msg


def tool_definition(name: str, description: str | None = None, parameters: Any = None) -> dict[str, Any]:
    tool: dict[str, Any] = {"type": "function", "name": name}
    if description is not None:
        tool["description"] = description
    if parameters is not None:
        tool["parameters"] = parameters
    return tool


# --- OpenAI chat-completions converters -----------------------------------------------------------

_ROLES = {"developer": ROLE_SYSTEM, "function": ROLE_TOOL}
_FINISH_REASONS = {
    "stop": FINISH_STOP,
    "length": FINISH_LENGTH,
    "content_filter": FINISH_CONTENT_FILTER,
    "tool_calls": FINISH_TOOL_CALL,
    "function_call": FINISH_TOOL_CALL,
}
_TEXT_MESSAGE_KEYS = frozenset({"role", "content", "name"})
_DATA_URL = re.compile(r"data:([^;,]*)((?:;[^;,]*)*),", re.I)
_AUDIO_MIME = {"mp3": "audio/mpeg", "wav": "audio/wav"}


def messages_from_openai(messages: Iterable[Any]) -> list[dict[str, Any]]:
    """OpenAI chat-completions request ``messages`` as GenAI input messages. Entries that are not
    messages are skipped and counted as ``content.unrecognised_message``; never raises."""
    out: list[dict[str, Any]] = []
    for raw in _iterate(messages):
        converted = _convert(raw, ROLE_USER)
        if converted is not None:
            out.append(message(*converted))
    return out


def output_messages_from_openai(choices: Iterable[Any]) -> list[dict[str, Any]]:
    """Chat-completion ``choices`` (each with ``message``, or an accumulated stream ``delta``, and
    ``finish_reason``) as GenAI output messages. A choice without a finish reason (an interrupted
    stream) gets ``error``; unknown finish reasons pass through unchanged."""
    out: list[dict[str, Any]] = []
    for raw in _iterate(choices):
        choice = _as_mapping(raw)
        if choice is None:
            selfstats.count("content.unrecognised_message")
            continue
        converted = _convert(choice.get("message") or choice.get("delta") or {}, ROLE_ASSISTANT)
        if converted is None:
            continue
        role, parts, name = converted
        reason = choice.get("finish_reason")
        finish = _FINISH_REASONS.get(reason, reason) if isinstance(reason, str) else FINISH_ERROR
        out.append(output_message(parts, finish, role, name))
    return out


def tool_definitions_from_openai(tools: Iterable[Any]) -> list[dict[str, Any]]:
    """``tools`` (``{"type": "function", "function": {...}}``, or legacy ``functions`` entries) as
    GenAI tool definitions; other tool types become ``{"type": ..., "name": ...}``."""
    out: list[dict[str, Any]] = []
    for raw in _iterate(tools):
        tool = _as_mapping(raw)
        if tool is None:
            selfstats.count("content.unrecognised_message")
            continue
        kind = tool.get("type", "function")
        fn = _as_mapping(tool.get("function")) if kind == "function" and "function" in tool else tool
        if kind == "function" and fn is not None and isinstance(fn.get("name"), str):
            out.append(tool_definition(fn["name"], fn.get("description"), fn.get("parameters")))
        else:
            out.append({"type": str(kind), "name": str(tool.get("name") or kind)})
    return out


def listed(value: Any) -> Sequence[Any]:
    """``value`` when it is a list or tuple, else nothing: where a framework passes a list, anything else may be
    an endless iterator (a hostile or broken caller's), and reading one would never finish nor stop growing."""
    return value if isinstance(value, (list, tuple)) else ()


def _iterate(items: Iterable[Any]) -> list[Any]:
    try:
        return list(items or ())
    except Exception as exc:
        selfstats.failure("content.unrecognised_message", exc)
        return []


def _as_mapping(obj: Any) -> Mapping[str, Any] | None:
    """Dicts as they are; SDK objects (pydantic models such as ``ChatCompletionMessage``) dumped."""
    if type(obj) is dict:  # the usual case, without the ABC check below (a Python-level call)
        return obj
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj
    try:
        if callable(getattr(type(obj), "model_dump", None)):
            dumped = obj.model_dump(exclude_none=True)
            return dumped if isinstance(dumped, Mapping) else None
    except Exception as exc:
        selfstats.failure("content.unrecognised_message", exc)
    return None


def _convert(raw: Any, default_role: str) -> tuple[str, list[dict[str, Any]], str | None] | None:
    """``(role, parts, name)`` of one OpenAI message, or None (counted) if it is not one."""
    msg = _as_mapping(raw)
    if msg is None:
        selfstats.count("content.unrecognised_message")
        return None
    try:
        role = msg.get("role") or default_role
        role = _ROLES.get(role, role) if isinstance(role, str) else str(role)
        name = msg.get("name") if isinstance(msg.get("name"), str) else None
        if role == ROLE_TOOL:
            parts = [tool_call_response_part(_tool_response(msg.get("content")), msg.get("tool_call_id"))]
        else:
            parts = _parts(msg)
    except Exception as exc:
        selfstats.failure("content.unrecognised_message", exc)
        return None
    return role, parts, name


def _parts(msg: Mapping[str, Any]) -> list[dict[str, Any]]:
    if _TEXT_MESSAGE_KEYS.issuperset(msg):  # most input messages: a role and a text, nothing else to look for
        content = msg.get("content")
        if type(content) is str:
            return [text_part(content)] if content else []
    parts: list[dict[str, Any]] = []
    # DeepSeek and Qwen send ``reasoning_content``; newer vLLM servers send ``reasoning``.
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts.append(reasoning_part(reasoning))
    parts.extend(_content_parts(msg.get("content")))
    refusal = msg.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append({"type": "refusal", "content": refusal})
    for call in msg.get("tool_calls") or ():
        call = _as_mapping(call) or {}
        fn = _as_mapping(call.get("function")) or {}
        parts.append(tool_call_part(fn.get("name") or "", _arguments(fn.get("arguments")), call.get("id")))
    legacy = _as_mapping(msg.get("function_call"))
    if legacy is not None:
        parts.append(tool_call_part(legacy.get("name") or "", _arguments(legacy.get("arguments"))))
    return parts


def _content_parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [text_part(content)] if content else []
    if not isinstance(content, (list, tuple)):  # a tuple: ~6x faster than a union in isinstance
        text = _text_of(content)
        if text is None:  # a mapping's text would carry its keys past the secret-key check
            selfstats.count("content.unrecognised_part")
            return []
        return [text_part(text)] if text else []
    parts = []
    for raw in content:
        part = _content_part(raw)
        if part is None:
            selfstats.count("content.unrecognised_part")
        else:
            parts.append(part)
    return parts


def _content_part(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, str):
        return text_part(raw)
    part = _as_mapping(raw)
    kind = part.get("type") if part is not None else None
    if part is None or not isinstance(kind, str):
        return None
    if kind == "text":
        text = _text_of(part.get("text"))
        return None if text is None else text_part(text)
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        return _url_part(url, "image") if isinstance(url, str) else {"type": kind}
    if kind == "input_audio":
        audio = _as_mapping(part.get("input_audio")) or {}
        fmt = audio.get("format")
        mime = _AUDIO_MIME.get(fmt, f"audio/{fmt}") if isinstance(fmt, str) else None
        return blob_part("audio", mime, size=_decoded_size(audio.get("data")))
    if kind == "file":
        file = _as_mapping(part.get("file")) or {}
        if isinstance(file.get("file_id"), str):
            return file_part(file["file_id"], "document")
        data = file.get("file_data")
        if isinstance(data, str) and _DATA_URL.match(data):
            return _url_part(data, "document")
        return blob_part("document", size=_decoded_size(data))
    if kind == "refusal":
        text = _text_of(part.get("refusal"))
        return None if text is None else {"type": "refusal", "content": text}
    return {"type": kind}  # unknown part: its type only, its payload may be binary


def _text_of(value: Any) -> str | None:
    """A text part's text: a string, a number as text, none as empty; None (an unrecognised part) for anything
    else, which a text part cannot be (a GenAI part's content is a string)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return str(value) if type(value) in (int, float) else None


def _url_part(url: str, modality: str) -> dict[str, Any]:
    """http(s) URLs by reference; ``data:`` URLs as a blob with their MIME type and decoded size."""
    m = _DATA_URL.match(url)
    if m is None:
        return uri_part(url, modality)
    base64 = ";base64" in m.group(2).lower()
    size = _decoded_size(url, m.end()) if base64 else len(url) - m.end()
    return blob_part(modality, m.group(1) or None, size=size)


def _decoded_size(data: Any, start: int = 0) -> int | None:
    """Decoded size of the base64 text ``data[start:]``, from its length alone (no copy, no decode)."""
    if not isinstance(data, str):
        return None
    n = len(data) - start - (data.endswith("==") + data.endswith("="))
    return max(0, n) * 3 // 4


def _arguments(arguments: Any) -> Any:
    """Tool-call arguments as parsed JSON when they are valid JSON, else as given."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except (ValueError, RecursionError):
            return arguments
    return arguments


def _tool_response(content: Any) -> Any:
    if isinstance(content, list | tuple):
        texts = [p.get("text") for p in content if isinstance(p, Mapping) and p.get("type") == "text"]
        if len(texts) == len(content) and all(isinstance(t, str) for t in texts):
            return "".join(texts)
        return _content_parts(content)
    return content
