"""LangChain objects (messages, generations, documents, prompt values) as GenAI content shapes.

Only translation happens here, and only for spans that record content: the result is plain dicts and
lists holding references to the application's strings; the core scrubs, caps and serialises them at
span end. Binary media is described (modality, MIME type, size), never copied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import ChatPromptValue, PromptValue

from llmobs import content
from llmobs import semconv as sc
from llmobs.content import listed

# BaseMessage.type → GenAI role (chunks, as merged by streaming, have their own types)
_ROLES = {
    "human": sc.ROLE_USER,
    "HumanMessageChunk": sc.ROLE_USER,
    "ai": sc.ROLE_ASSISTANT,
    "AIMessageChunk": sc.ROLE_ASSISTANT,
    "system": sc.ROLE_SYSTEM,
    "SystemMessageChunk": sc.ROLE_SYSTEM,
    "tool": sc.ROLE_TOOL,
    "ToolMessageChunk": sc.ROLE_TOOL,
    "function": sc.ROLE_TOOL,
    "FunctionMessageChunk": sc.ROLE_TOOL,
}
_MEDIA = {"image": "image", "image_url": "image", "audio": "audio", "input_audio": "audio", "video": "video",
          "file": "document"}  # fmt: skip
_CALL_BLOCKS = frozenset({"tool_use", "tool_call", "function_call", "server_tool_use"})  # also in tool_calls
_MAX_ITEMS = 100  # items of a list value translated; the rest are counted with the core's marker


# --- model inputs and outputs ---------------------------------------------------------------------


def input_messages(batches: Iterable[Sequence[BaseMessage]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(messages, system instructions)`` of a chat model call: system messages become instructions."""
    messages: list[dict[str, Any]] = []
    system: list[dict[str, Any]] = []
    for batch in listed(batches):
        for msg in listed(batch):
            if _ROLES.get(msg.type) == sc.ROLE_SYSTEM:
                system += _parts(msg.content)
            else:
                messages.append(message(msg))
    return messages, system


def prompt_messages(prompts: Iterable[str]) -> list[dict[str, Any]]:
    """The prompts of a text-completion call, each as a user message."""
    if isinstance(prompts, str):
        prompts = [prompts]
    return [content.message(sc.ROLE_USER, [content.text_part(p)]) for p in listed(prompts)]


def output_messages(generations: Sequence[Any], finish_reasons: Sequence[str | None]) -> list[dict[str, Any]]:
    """One output message per generation; without a reported finish reason, it is inferred."""
    out = []
    for generation, reason in zip(generations, finish_reasons, strict=True):
        msg = getattr(generation, "message", None)
        if msg is not None:
            parts = _ai_parts(msg)
            name = msg.name
        else:
            text = getattr(generation, "text", "")
            parts, name = ([content.text_part(text)] if text else []), None
        if reason is None:
            calls = any(part["type"] == sc.PART_TOOL_CALL for part in parts)
            reason = sc.FINISH_TOOL_CALL if calls else sc.FINISH_STOP
        out.append(content.output_message(parts, reason, name=name))
    return out


def tool_definitions(tools: Any) -> list[dict[str, Any]] | None:
    """Tools bound to a model (OpenAI ``function`` or Anthropic ``input_schema`` shape)."""
    if not isinstance(tools, list | tuple) or not tools:
        return None
    out = []
    for tool in tools:
        if isinstance(tool, Mapping) and "input_schema" in tool and isinstance(tool.get("name"), str):
            out.append(content.tool_definition(tool["name"], tool.get("description"), tool["input_schema"]))
        else:
            out += content.tool_definitions_from_openai([tool])
    return out


# --- messages -------------------------------------------------------------------------------------


def message(msg: BaseMessage) -> dict[str, Any]:
    role = _ROLES.get(msg.type) or getattr(msg, "role", None) or msg.type
    if role == sc.ROLE_TOOL:
        part = content.tool_call_response_part(_tool_response(msg.content), getattr(msg, "tool_call_id", None))
        return content.message(role, [part], msg.name)
    parts = _ai_parts(msg) if role == sc.ROLE_ASSISTANT else _parts(msg.content)
    return content.message(role, parts, msg.name)


def _ai_parts(msg: BaseMessage) -> list[dict[str, Any]]:
    parts = []
    reasoning = msg.additional_kwargs.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        parts.append(content.reasoning_part(reasoning))
    parts += _parts(msg.content)
    for call in (*listed(getattr(msg, "tool_calls", None)), *listed(getattr(msg, "invalid_tool_calls", None))):
        parts.append(content.tool_call_part(call.get("name") or "", call.get("args"), call.get("id")))
    return parts


def _parts(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [content.text_part(value)] if value else []
    if not isinstance(value, list):
        return [content.text_part(str(value))]
    parts = []
    for block in value:
        part = _block(block)
        if part is not None:
            parts.append(part)
    return parts


def _block(block: Any) -> dict[str, Any] | None:
    """One content block (str, OpenAI, Anthropic or LangChain standard shape) as a GenAI part."""
    if isinstance(block, str):
        return content.text_part(block) if block else None
    if not isinstance(block, Mapping):
        return None
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return content.text_part(text) if isinstance(text, str) and text else None
    if kind in ("reasoning", "thinking"):
        text = block.get("reasoning") or block.get("thinking") or _summary(block.get("summary"))
        return content.reasoning_part(text) if isinstance(text, str) and text else None
    if kind in _CALL_BLOCKS:
        return None
    if kind == "tool_result":
        return content.tool_call_response_part(_tool_response(block.get("content")), block.get("tool_use_id"))
    modality = _modality(block)
    if modality is not None:
        return _media(block, modality)
    return {"type": str(kind)}  # unknown block: its type only, its payload may be binary


def _media(block: Mapping[str, Any], modality: str) -> dict[str, Any]:
    mime = block.get("mime_type")
    url = block.get("url")
    image_url = block.get("image_url")  # OpenAI: {"url": ...} or the URL itself
    if url is None and image_url is not None:
        url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
    if isinstance(url, str) and not url.startswith("data:"):
        return content.uri_part(url, modality, mime)
    if isinstance(url, str):  # a data: URL
        head, _, data = url.partition(",")
        return content.blob_part(modality, head[5:].split(";")[0] or mime, size=len(data) * 3 // 4)
    # LangChain's v0 blocks name the source: {"source_type": "id", "id": ...} / "base64" with "data"
    file_id = block.get("file_id") or (block.get("id") if block.get("source_type") == "id" else None)
    if isinstance(file_id, str):
        return content.file_part(file_id, modality, mime)
    data = block.get("base64") or block.get("data")
    return content.blob_part(modality, mime, size=len(data) * 3 // 4 if isinstance(data, str) else None)


def _summary(summary: Any) -> str | None:
    """The text of an OpenAI Responses reasoning block's ``summary`` (``summary_text`` items)."""
    if not isinstance(summary, list):
        return None
    texts = [item["text"] for item in summary if isinstance(item, Mapping) and isinstance(item.get("text"), str)]
    return "\n\n".join(texts) or None


def _tool_response(value: Any) -> Any:
    """A tool's result content: text blocks joined; in any other list, media blocks described, not copied."""
    if not isinstance(value, list):
        return value
    if all(isinstance(b, Mapping) and b.get("type") == "text" for b in value):
        return "".join(str(b.get("text", "")) for b in value)
    return [_media(b, modality) if (modality := _modality(b)) else b for b in value]


def _modality(block: Any) -> str | None:
    kind = block.get("type") if isinstance(block, Mapping) else None
    return _MEDIA.get(kind) if isinstance(kind, str) else None


# --- free-form values (chain inputs and outputs, tool results, documents) -------------------------


def document(doc: Document) -> dict[str, Any]:
    """A retrieved document: id, score (when the retriever put one in its metadata) and content."""
    out: dict[str, Any] = {}
    if doc.id is not None:
        out["id"] = doc.id
    metadata = doc.metadata
    score = metadata.get("score", metadata.get("relevance_score")) if metadata else None
    if score is not None:
        out["score"] = score
    out["content"] = doc.page_content
    return out


def tool_result(output: Any) -> Any:
    """What a tool returned: a ``ToolMessage``'s content, else the value itself (content blocks read as in a
    ``ToolMessage``: media described, not copied)."""
    if isinstance(output, BaseMessage):
        return _tool_response(output.content)
    value = compact(output)
    return _tool_response(value) if isinstance(value, list) and value else value


def compact(value: Any, depth: int = 0) -> Any:
    """A chain value with LangChain objects in it made small and readable (two levels deep; the core
    converts anything else). Long lists keep their head and end with the core's ``…[+N items]`` marker."""
    kind = _kinds.get(type(value)) or _classify(type(value))
    if kind is _AS_IS:
        return value
    if kind is _MESSAGE:
        return message(value)
    if kind is _DOCUMENT:
        return document(value)
    if kind is _CHAT_PROMPT:
        return [message(m) for m in value.messages]
    if kind is _PROMPT:
        return value.to_string()
    if depth >= 2:
        return value
    if kind is _DICT:
        return {key: compact(item, depth + 1) for key, item in value.items()}
    items = [compact(item, depth + 1) for item in value[:_MAX_ITEMS]]
    if len(value) > _MAX_ITEMS:
        items.append(f"…[+{len(value) - _MAX_ITEMS} items]")
    return items


# What compact does with a value, by its exact type: isinstance on pydantic models goes through
# ABCMeta and costs a microsecond a check, a dict lookup does not.
_AS_IS, _MESSAGE, _DOCUMENT, _CHAT_PROMPT, _PROMPT, _DICT, _LIST = range(1, 8)
_kinds: dict[type, int] = {t: _AS_IS for t in (str, int, float, bool, type(None))}
_kinds.update({dict: _DICT, list: _LIST, tuple: _LIST})


def _classify(cls: type) -> int:
    if issubclass(cls, BaseMessage):
        kind = _MESSAGE
    elif issubclass(cls, Document):
        kind = _DOCUMENT
    elif issubclass(cls, ChatPromptValue):
        kind = _CHAT_PROMPT
    elif issubclass(cls, PromptValue):
        kind = _PROMPT
    else:
        kind = _AS_IS  # the core serialises anything else
    if len(_kinds) < 1024:  # types are few; a bound all the same
        _kinds[cls] = kind
    return kind
