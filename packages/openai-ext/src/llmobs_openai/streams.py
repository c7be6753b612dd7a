"""Streamed responses folded event by event.

Each event's data is one small JSON object, read with the time it arrived (the call holds events and reads
several together, see ``calls``): a content-bearing one (text, tool-call, reasoning or refusal delta) marks a
chunk on the span at that time — the first is the time to first chunk. Chat and completion
deltas are folded into choices only when content is captured, each choice holding at most
``budget`` characters (the rest is counted and marked, as the core's truncation does); finish
reasons, usage (sent on the final chunk with ``stream_options.include_usage``), ids and vLLM's
``metrics`` are kept in any case. A Responses API stream needs no folding: its final event carries
the whole response.
"""

from __future__ import annotations

from typing import Any

import orjson

from llmobs.recorder import SpanHandle
from llmobs_openai import messages, payloads
from llmobs_openai.routes import Api

_DONE = b"[DONE]"


class _Choice:
    """The text, reasoning, refusal and tool calls of one streamed choice, within a character budget."""

    __slots__ = ("budget", "calls", "dropped", "function", "reasoning", "refusal", "role", "text")

    def __init__(self, budget: int) -> None:
        self.role: str | None = None
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, list[Any]] = {}  # index -> [id, name, argument fragments]
        self.function: list[Any] | None = None  # the legacy ``function_call``: [name, argument fragments]
        self.budget = budget
        self.dropped = 0

    def take(self, into: list[str], value: Any) -> None:
        if not isinstance(value, str) or not value:
            return
        if len(value) <= self.budget:
            self.budget -= len(value)
            into.append(value)
        else:
            if self.budget:
                into.append(value[: self.budget])
            self.dropped += len(value) - self.budget
            self.budget = 0

    def fold(self, delta: dict[str, Any], text: Any) -> None:
        """Fold a delta whose ``content`` is ``text``."""
        if len(delta) == 1 and type(text) is str and 0 < len(text) <= self.budget:
            self.budget -= len(text)  # the usual delta: a piece of text and nothing else, within the budget
            self.text.append(text)
            return
        self.take(self.text, text)
        role = delta.get("role")
        if role and self.role is None:
            self.role = role
        self.take(self.reasoning, delta.get("reasoning_content") or delta.get("reasoning"))
        self.take(self.refusal, delta.get("refusal"))
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            index = call.get("index", len(self.calls))
            state = self.calls.get(index)
            if state is None:
                state = self.calls[index] = [None, None, []]
            if call.get("id"):
                state[0] = call["id"]
            function = call.get("function")
            if isinstance(function, dict):
                if function.get("name"):
                    state[1] = function["name"]
                self.take(state[2], function.get("arguments"))
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):
            if self.function is None:
                self.function = [None, []]
            if legacy.get("name"):
                self.function[0] = legacy["name"]
            self.take(self.function[1], legacy.get("arguments"))

    def message(self) -> dict[str, Any]:
        text = "".join(self.text)
        if self.dropped:
            text += f"…[+{self.dropped} chars]"
        message: dict[str, Any] = {"role": self.role or "assistant", "content": text or None}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.function is not None:
            message["function_call"] = {"name": self.function[0] or "", "arguments": "".join(self.function[1])}
        if self.calls:
            message["tool_calls"] = [
                {"id": cid, "type": "function", "function": {"name": name or "", "arguments": "".join(args)}}
                for cid, name, args in (self.calls[i] for i in sorted(self.calls))
            ]
        return message


class ChatStream:
    """A chat-completions or legacy completions stream."""

    __slots__ = (
        "budget", "capture", "choices", "completions", "done", "error", "finish", "handle", "metrics", "model",
        "response_id", "usage",
    )  # fmt: skip

    def __init__(self, handle: SpanHandle, api: str, capture: bool, budget: int) -> None:
        self.handle = handle
        self.completions = api is Api.COMPLETIONS
        self.capture = capture
        self.budget = budget
        self.choices: dict[int, _Choice] = {}
        self.finish: dict[int, str] = {}
        self.usage: Any = None
        self.metrics: Any = None
        self.response_id: Any = None
        self.model: Any = None
        self.error: str | None = None
        self.done = False

    def event(self, data: bytes, arrived: int) -> None:
        """One event's data, which arrived at ``arrived`` (a ``time.perf_counter_ns()`` reading)."""
        if data.startswith(_DONE):
            self.done = True
            return
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            event = payloads.loads(data)  # what only the standard parser reads, or a ValueError
        if type(event) is not dict:
            return
        if not self.response_id:  # Azure's first chunk (its prompt filter results) has an empty id and model
            self.response_id = event.get("id")
            self.model = event.get("model")
        choices = event.get("choices")
        if choices:
            self._choices(choices, arrived)
        if event.get("usage"):
            self.usage = event["usage"]
        if event.get("metrics"):
            self.metrics = event["metrics"]
        if event.get("error"):
            self.error = payloads.error_type(event, "stream_error")

    def _choices(self, choices: list[Any], arrived: int) -> None:
        bearing = False
        for choice in choices:
            if self.completions:
                text = choice.get("text")
                delta = {"content": text} if text else None
                content = text
            else:
                delta = choice.get("delta")
                text = delta and delta.get("content")
                content = delta and (
                    text
                    or delta.get("tool_calls")
                    or delta.get("reasoning_content")
                    or delta.get("reasoning")
                    or delta.get("refusal")
                    or delta.get("function_call")
                )
            if content:
                bearing = True
                if self.capture:
                    index = choice.get("index", 0)
                    state = self.choices.get(index)
                    if state is None:
                        state = self.choices[index] = _Choice(self.budget)
                    state.fold(delta, text)
            reason = choice.get("finish_reason")
            if reason:
                self.finish[choice.get("index", 0)] = reason
        if bearing:
            self.handle.chunk(perf_ns=arrived)

    def finish_span(self) -> str | None:
        """Hand what the stream said to the span; the error type if the stream reported one."""
        handle = self.handle
        indexes = sorted(self.finish.keys() | self.choices.keys())
        output = None
        if self.capture:
            output = messages.chat_output(
                [
                    {"message": (self.choices.get(i) or _Choice(0)).message(), "finish_reason": self.finish.get(i)}
                    for i in indexes
                ]
            )
        handle.set_output(
            output,
            finish_reasons=[self.finish[i] for i in indexes if i in self.finish],
            response_id=self.response_id if isinstance(self.response_id, str) else None,
            response_model=self.model if isinstance(self.model, str) else None,
        )
        payloads.set_usage(handle, self.usage)
        payloads.set_vllm_metrics(handle, self.metrics)
        return self.error


# Responses API event types that carry output content.
_CONTENT_EVENTS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.audio.delta",
        "response.audio.transcript.delta",
    }
)
_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_TEXT_DELTA_PREFIX = b'{"type":"response.output_text.delta"'


class ResponsesStream:
    """A Responses API stream: content deltas mark chunks; the final event says everything else."""

    __slots__ = ("capture", "done", "error", "final", "handle", "model", "response_id")

    def __init__(self, handle: SpanHandle, capture: bool) -> None:
        self.handle = handle
        self.capture = capture
        self.final: dict[str, Any] | None = None
        self.response_id: Any = None
        self.model: Any = None
        self.error: str | None = None
        self.done = False

    def event(self, data: bytes, arrived: int) -> None:
        """One event's data, which arrived at ``arrived`` (a ``time.perf_counter_ns()`` reading)."""
        if data.startswith(_TEXT_DELTA_PREFIX):  # the most frequent event, as OpenAI orders its keys
            self.handle.chunk(perf_ns=arrived)
            return
        event = payloads.loads(data)
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind in _CONTENT_EVENTS:
            self.handle.chunk(perf_ns=arrived)
        elif kind in _FINAL_EVENTS:
            response = event.get("response")
            self.final = response if isinstance(response, dict) else None
            self.done = True
        elif kind == "response.created":
            response = event.get("response")
            if isinstance(response, dict):
                self.response_id, self.model = response.get("id"), response.get("model")
        elif kind == "error":
            self.error = payloads.error_type(event, "stream_error")

    def finish_span(self) -> str | None:
        if self.final is not None:
            return apply_response(self.handle, self.final, self.capture)
        self.handle.set_output(
            response_id=self.response_id if isinstance(self.response_id, str) else None,
            response_model=self.model if isinstance(self.model, str) else None,
        )
        return self.error


def apply_response(
    handle: SpanHandle, response: dict[str, Any], capture: bool, json_size: int | None = None
) -> str | None:
    """Record a whole Responses API response, parsed from ``json_size`` bytes of JSON when known; the error type
    when it failed."""
    finish = messages.responses_finish_reason(response)
    response_id, model = response.get("id"), response.get("model")
    handle.set_output(
        messages.responses_output(response, finish) if capture else None,
        finish_reasons=[finish],
        response_id=response_id if isinstance(response_id, str) else None,
        response_model=model if isinstance(model, str) else None,
        json_size=json_size,
    )
    payloads.set_usage(handle, response.get("usage"))
    if response.get("status") == "failed":
        return payloads.error_type(response, "response_failed")
    return None
