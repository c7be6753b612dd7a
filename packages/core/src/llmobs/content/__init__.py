"""Message content capture: what is recorded, how it is made safe, and its GenAI JSON shape."""

from llmobs.content.messages import (
    blob_part,
    file_part,
    listed,
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
from llmobs.content.pii import redact_pii
from llmobs.content.policy import CaptureMode, ContentPolicy
from llmobs.content.scrub import is_secret_key, scrub_text
from llmobs.content.serialize import cap_text, dumps_capped, to_jsonable

__all__ = [
    "CaptureMode",
    "ContentPolicy",
    "blob_part",
    "cap_text",
    "dumps_capped",
    "file_part",
    "is_secret_key",
    "listed",
    "message",
    "messages_from_openai",
    "output_message",
    "output_messages_from_openai",
    "reasoning_part",
    "redact_pii",
    "scrub_text",
    "text_part",
    "to_jsonable",
    "tool_call_part",
    "tool_call_response_part",
    "tool_definition",
    "tool_definitions_from_openai",
    "uri_part",
]
