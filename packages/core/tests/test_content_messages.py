"""GenAI message JSON builders and the OpenAI chat-completions converters."""

from __future__ import annotations

import base64

import pydantic
import pytest

from llmobs import selfstats
from llmobs.content import (
    blob_part,
    file_part,
    message,
    messages_from_openai,
    output_message,
    output_messages_from_openai,
    reasoning_part,
    text_part,
    tool_call_part,
    tool_call_response_part,
    tool_definition,
    tool_definitions_from_openai,
    uri_part,
)
from llmobs.semconv import (
    FINISH_CONTENT_FILTER,
    FINISH_ERROR,
    FINISH_LENGTH,
    FINISH_STOP,
    FINISH_TOOL_CALL,
)

PNG = base64.b64encode(b"\x89PNG" + bytes(96)).decode()  # 100 bytes
WAV = base64.b64encode(bytes(10)).decode()


def test_builders_follow_the_schema():
    assert text_part("hi") == {"type": "text", "content": "hi"}
    assert tool_call_part("f") == {"type": "tool_call", "name": "f"}
    assert tool_call_part("f", {"a": 1}, "c1") == {
        "type": "tool_call",
        "id": "c1",
        "name": "f",
        "arguments": {"a": 1},
    }
    assert tool_call_response_part("42", "c1") == {"type": "tool_call_response", "id": "c1", "response": "42"}
    assert reasoning_part("hmm") == {"type": "reasoning", "content": "hmm"}
    assert blob_part("image") == {"type": "blob", "modality": "image", "content": "<omitted>"}
    assert blob_part("audio", "audio/wav", size=10) == {
        "type": "blob",
        "modality": "audio",
        "mime_type": "audio/wav",
        "content": "<omitted 10 bytes>",
    }
    assert uri_part("https://x/y.png", "image", "image/png") == {
        "type": "uri",
        "modality": "image",
        "mime_type": "image/png",
        "uri": "https://x/y.png",
    }
    assert file_part("file-1", "document") == {"type": "file", "modality": "document", "file_id": "file-1"}
    assert message("user", (text_part("a"),)) == {"role": "user", "parts": [{"type": "text", "content": "a"}]}
    assert message("user", [], name="bob") == {"role": "user", "parts": [], "name": "bob"}
    assert output_message([text_part("a")], "stop") == {
        "role": "assistant",
        "parts": [{"type": "text", "content": "a"}],
        "finish_reason": "stop",
    }
    assert tool_definition("f") == {"type": "function", "name": "f"}
    assert tool_definition("f", "does f", {"type": "object"}) == {
        "type": "function",
        "name": "f",
        "description": "does f",
        "parameters": {"type": "object"},
    }


def test_full_openai_request():
    request = [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {
            "role": "user",
            "name": "ann",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}},
                {"type": "file", "file": {"file_id": "file-abc"}},
                {
                    "type": "file",
                    "file": {"filename": "a.pdf", "file_data": f"data:application/pdf;base64,{WAV}"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "Need the weather.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "echo", "arguments": "{not json"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
        {
            "role": "tool",
            "tool_call_id": "call_2",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
    ]
    assert messages_from_openai(request) == [
        {"role": "system", "parts": [{"type": "text", "content": "You are terse."}]},
        {"role": "system", "parts": [{"type": "text", "content": "Answer in English."}]},
        {
            "role": "user",
            "name": "ann",
            "parts": [
                {"type": "text", "content": "What is in these?"},
                {"type": "uri", "modality": "image", "uri": "https://example.com/cat.png"},
                {
                    "type": "blob",
                    "modality": "image",
                    "mime_type": "image/png",
                    "content": "<omitted 100 bytes>",
                },
                {
                    "type": "blob",
                    "modality": "audio",
                    "mime_type": "audio/wav",
                    "content": "<omitted 10 bytes>",
                },
                {"type": "file", "modality": "document", "file_id": "file-abc"},
                {
                    "type": "blob",
                    "modality": "document",
                    "mime_type": "application/pdf",
                    "content": "<omitted 10 bytes>",
                },
            ],
        },
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "Need the weather."},
                {"type": "tool_call", "id": "call_1", "name": "weather", "arguments": {"city": "Paris"}},
                {"type": "tool_call", "id": "call_2", "name": "echo", "arguments": "{not json"},
            ],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "18C, sunny"}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_2", "response": "ab"}]},
    ]


def test_no_base64_leaks_into_parts():
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    request = [{"role": "user", "content": [image]}]
    assert PNG not in repr(messages_from_openai(request))


def test_legacy_function_messages():
    request = [
        {"role": "assistant", "function_call": {"name": "f", "arguments": "[1]"}},
        {"role": "function", "name": "f", "content": "done"},
    ]
    assert messages_from_openai(request) == [
        {"role": "assistant", "parts": [{"type": "tool_call", "name": "f", "arguments": [1]}]},
        {"role": "tool", "name": "f", "parts": [{"type": "tool_call_response", "response": "done"}]},
    ]


def test_garbage_entries_are_skipped_and_counted():
    selfstats.reset()
    request = [
        None,
        42,
        "just a string",
        {"role": "user", "content": 7},
        {"role": "user", "content": [None, "bare", {"type": "mystery", "data": "x"}, {"type": "image_url"}]},
        {"role": "assistant", "tool_calls": [None, {"function": "nope"}]},
    ]
    assert messages_from_openai(request) == [
        {"role": "user", "parts": [{"type": "text", "content": "7"}]},
        {
            "role": "user",
            "parts": [{"type": "text", "content": "bare"}, {"type": "mystery"}, {"type": "image_url"}],
        },
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "name": ""}, {"type": "tool_call", "name": ""}],
        },
    ]
    assert selfstats.snapshot()["content.unrecognised_message"] == 3
    assert selfstats.snapshot()["content.unrecognised_part"] == 1
    assert messages_from_openai(None) == []  # type: ignore[arg-type]


def test_sdk_objects_are_accepted():
    class Function(pydantic.BaseModel):
        name: str
        arguments: str

    class ToolCall(pydantic.BaseModel):
        id: str
        type: str = "function"
        function: Function

    class Message(pydantic.BaseModel):
        role: str
        content: str | None = None
        tool_calls: list[ToolCall] | None = None

    msg = Message(
        role="assistant", tool_calls=[ToolCall(id="c", function=Function(name="f", arguments="{}"))]
    )
    assert messages_from_openai([msg]) == [
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "c", "name": "f", "arguments": {}}]}
    ]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("stop", FINISH_STOP),
        ("length", FINISH_LENGTH),
        ("content_filter", FINISH_CONTENT_FILTER),
        ("tool_calls", FINISH_TOOL_CALL),
        ("function_call", FINISH_TOOL_CALL),
        ("insufficient_system_resource", "insufficient_system_resource"),
        (None, FINISH_ERROR),
    ],
)
def test_output_finish_reasons(reason, expected):
    choices = [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": reason}]
    assert output_messages_from_openai(choices) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "hi"}], "finish_reason": expected}
    ]


def test_output_from_accumulated_stream_and_multiple_choices():
    choices = [
        {
            "index": 0,
            "delta": {
                "reasoning_content": "think",
                "content": "Calling.",
                "tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"x": 1}'}}],
            },
            "finish_reason": "tool_calls",
        },
        {
            "index": 1,
            "message": {"role": "assistant", "content": None, "refusal": "No."},
            "finish_reason": "stop",
        },
        "garbage",
    ]
    assert output_messages_from_openai(choices) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "think"},
                {"type": "text", "content": "Calling."},
                {"type": "tool_call", "id": "c1", "name": "f", "arguments": {"x": 1}},
            ],
            "finish_reason": "tool_call",
        },
        {"role": "assistant", "parts": [{"type": "refusal", "content": "No."}], "finish_reason": "stop"},
    ]


def test_tool_definitions():
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Get weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        },
        {"type": "function", "function": {"name": "bare"}},
        {"name": "legacy_fn", "parameters": {"type": "object"}},
        {"type": "web_search_preview"},
        None,
    ]
    assert tool_definitions_from_openai(tools) == [
        {
            "type": "function",
            "name": "weather",
            "description": "Get weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"type": "function", "name": "bare"},
        {"type": "function", "name": "legacy_fn", "parameters": {"type": "object"}},
        {"type": "web_search_preview", "name": "web_search_preview"},
    ]


def test_reasoning_is_read_under_both_names_servers_use():
    for key in ("reasoning_content", "reasoning"):
        (msg,) = messages_from_openai([{"role": "assistant", "content": "4", key: "2 + 2 is 4"}])
        assert msg["parts"][0] == {"type": "reasoning", "content": "2 + 2 is 4"}


def test_text_parts_hold_text_and_nothing_that_would_hide_keys():
    """A text part's text is a string: numbers become text; a mapping or list (a malformed request) is an
    unrecognised part, not its repr, which would carry its keys past the secret-key check."""
    before = selfstats.snapshot().get("content.unrecognised_part", 0)
    converted = messages_from_openai(
        [
            {"role": "user", "content": [{"type": "text", "text": 42}, {"type": "text", "text": None}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": {"api_key": "x"}}, {"type": "refusal", "refusal": []}],
            },
            {"role": "user", "content": {"password": "hunter2"}},
            {"role": "user", "content": 1.5},
        ]
    )
    assert [m["parts"] for m in converted] == [
        [{"type": "text", "content": "42"}, {"type": "text", "content": ""}],
        [],
        [],
        [{"type": "text", "content": "1.5"}],
    ]
    assert selfstats.snapshot().get("content.unrecognised_part", 0) - before == 3
