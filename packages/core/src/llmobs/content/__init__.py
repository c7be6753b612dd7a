"""Message content capture: what is recorded, how it is made safe, and its GenAI JSON shape."""

from llmobs.content.pii import redact_pii
from llmobs.content.scrub import is_secret_key, scrub_text
from llmobs.content.serialize import cap_text, dumps_capped, to_jsonable

__all__ = ["cap_text", "dumps_capped", "is_secret_key", "redact_pii", "scrub_text", "to_jsonable"]
