"""Request and response content of each API as GenAI messages, through the core's OpenAI converters.

The core converts chat-completions shapes; legacy completions and the Responses API are first
rewritten into that shape here, so every API ends in the same converter (data URLs recorded by
reference, tool calls, reasoning, finish reasons). vLLM and some gateways name the reasoning text
``reasoning`` rather than ``reasoning_content``; both are read.
"""

from __future__ import annotations

from typing import Any

from llmobs.content import (
    messages_from_openai,
    output_messages_from_openai,
    text_part,
    tool_definitions_from_openai,
)
from llmobs.recorder import SpanHandle
from llmobs_openai.routes import Api

# --- input -----------------------------------------------------------------------------------------


def set_input(handle: SpanHandle, body: dict[str, Any], api: str, json_size: int | None = None) -> None:
    """Input messages, system instructions and tool definitions of a request (content capture on), its body
    parsed from ``json_size`` bytes."""
    tools = body.get("tools") or body.get("functions")
    tools = tool_definitions_from_openai(tools) if isinstance(tools, list) else None
    if api is Api.CHAT:
        messages = body.get("messages")
        if isinstance(messages, list):
            handle.set_input(messages_from_openai(messages), tools=tools, json_size=json_size)
    elif api is Api.COMPLETIONS:
        prompts = _prompts(body.get("prompt"))
        if prompts:
            handle.set_input(
                messages_from_openai([{"role": "user", "content": p} for p in prompts]), json_size=json_size
            )
    elif api is Api.RESPONSES:
        instructions = body.get("instructions")
        system = [text_part(instructions)] if isinstance(instructions, str) and instructions else None
        handle.set_input(
            messages_from_openai(_responses_input(body.get("input"))), system=system, tools=tools, json_size=json_size
        )


def _prompts(prompt: Any) -> list[str]:
    """Text prompts of a completions request (token-id prompts carry no text)."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list):
        return [p for p in prompt if isinstance(p, str)]
    return []


def _responses_input(items: Any) -> list[dict[str, Any]]:
    """Responses API ``input`` (a string or a list of items) as chat-completions messages."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        return []
    messages = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            content = item.get("content")
            parts = [_chat_part(p) for p in content] if isinstance(content, list) else content
            messages.append({"role": item.get("role") or "user", "content": parts})
        elif kind == "function_call":
            messages.append({"role": "assistant", "tool_calls": [_tool_call(item)]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output")})
        elif kind == "reasoning":
            messages.append({"role": "assistant", "reasoning_content": _reasoning_text(item)})
    return messages


def _chat_part(part: Any) -> Any:
    """A Responses API content part as the chat-completions part the core converter knows."""
    if not isinstance(part, dict):
        return part
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part.get("text")}
    if kind == "input_image":
        if isinstance(part.get("image_url"), str):
            return {"type": "image_url", "image_url": {"url": part["image_url"]}}
        return {"type": "file", "file": {"file_id": part.get("file_id")}}
    if kind == "input_file":
        return {"type": "file", "file": {k: part[k] for k in ("file_id", "file_data") if k in part}}
    if kind == "input_audio":
        return {"type": "input_audio", "input_audio": part.get("input_audio") or {}}
    return part


def _tool_call(item: dict[str, Any]) -> dict[str, Any]:
    function = {"name": item.get("name"), "arguments": item.get("arguments")}
    return {"id": item.get("call_id"), "type": "function", "function": function}


def _reasoning_text(item: dict[str, Any]) -> str:
    texts = [p.get("text") for p in (item.get("content") or item.get("summary") or ()) if isinstance(p, dict)]
    return "\n".join(t for t in texts if isinstance(t, str))


# --- output ----------------------------------------------------------------------------------------


def chat_output(choices: list[Any]) -> list[dict[str, Any]]:
    """Output messages of chat-completion ``choices`` (or accumulated stream choices)."""
    return output_messages_from_openai(choices)


def completion_output(choices: list[Any]) -> list[dict[str, Any]]:
    """Output messages of legacy completion ``choices`` (``text`` per choice)."""
    return output_messages_from_openai(
        [
            {"message": {"role": "assistant", "content": c.get("text")}, "finish_reason": c.get("finish_reason")}
            for c in choices
            if isinstance(c, dict)
        ]
    )


def responses_finish_reason(response: dict[str, Any]) -> str:
    """A chat-style finish reason for a Responses API response, from its status."""
    status = response.get("status")
    if status == "completed":
        output = response.get("output")
        items = output if isinstance(output, list) else ()
        calls = any(isinstance(item, dict) and item.get("type") == "function_call" for item in items)
        return "tool_calls" if calls else "stop"
    if status == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return "length" if reason == "max_output_tokens" else str(reason or status)
    return "error" if status == "failed" else str(status)


def responses_output(response: dict[str, Any], finish_reason: str) -> list[dict[str, Any]]:
    """The output items of a Responses API response as one assistant output message."""
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    for item in response.get("output") or ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text":
                    parts.append({"type": "text", "text": part.get("text")})
                elif isinstance(part, dict) and part.get("type") == "refusal":
                    parts.append({"type": "refusal", "refusal": part.get("refusal")})
        elif kind == "function_call":
            calls.append(_tool_call(item))
        elif kind == "reasoning":
            reasoning.append(_reasoning_text(item))
    message: dict[str, Any] = {"role": "assistant", "content": parts, "tool_calls": calls}
    if any(reasoning):
        message["reasoning_content"] = "\n".join(r for r in reasoning if r)
    return output_messages_from_openai([{"message": message, "finish_reason": finish_reason}])
