"""Streams a LlamaIndex span returns, and which run produced the stream the current code is running in.

A LlamaIndex span exits as soon as it returns a generator; the work that generator does runs later, when
the application iterates it, with LlamaIndex's ``active_span_id`` already reset. So spans started while a
stream is consumed (the LLM call of a streaming query, the inner call of ``astream_chat``) arrive with no
parent. The generator's own frame is on the Python stack while it runs, though: registering the frame of
every stream a run returned lets such an orphan find its producer by walking up the stack — no wrapping
of the application's objects. Frames are held by id and checked against a weak reference to their
generator, so nothing here keeps a stream (or its locals) alive.
"""

from __future__ import annotations

import sys
import types
import weakref
from typing import Any

from llmobs_llamaindex import classes

_MAX_DEPTH = 64  # stack frames walked looking for a producer; the stream sits a few frames up

# Result types that carry a stream in an attribute: (dotted class path, attribute names).
_CONTAINERS = (
    ("llama_index.core.base.response.schema.StreamingResponse", ("response_gen",)),
    ("llama_index.core.base.response.schema.AsyncStreamingResponse", ("response_gen",)),
    ("llama_index.core.chat_engine.types.StreamingAgentChatResponse", ("chat_stream", "achat_stream")),
)


def _load_containers() -> dict[type, tuple[str, ...]]:
    found = ((classes.find(path), attributes) for path, attributes in _CONTAINERS)
    return {cls: attributes for cls, attributes in found if cls is not None}


class Streams:
    """Finds the live stream in a span's result and indexes stream frames to the run that returned them."""

    __slots__ = ("_containers", "_frames")

    def __init__(self) -> None:
        self._containers = _load_containers()
        self._frames: dict[int, tuple[weakref.ref[Any], Any]] = {}

    def __bool__(self) -> bool:
        return bool(self._frames)

    def live_stream(self, result: Any) -> Any:
        """The generator or async generator ``result`` is or carries, if it has not finished yet."""
        kind = type(result)
        attributes = self._containers.get(kind)
        if attributes is not None:
            for attribute in attributes:
                stream = getattr(result, attribute, None)
                if stream is not None:
                    return stream if _frame(stream) is not None else None
            return None
        if kind is types.GeneratorType or kind is types.AsyncGeneratorType:
            return result if _frame(result) is not None else None
        return None

    def register(self, stream: Any, run: Any) -> int | None:
        """Index the stream's frame to ``run`` (the first, innermost producer wins); returns the key.

        An entry under the same key whose stream is gone or has another frame is stale: its frame was freed
        (the stream finished while its run waits for the sweeper) and the address reused for this one."""
        frame = _frame(stream)
        if frame is None:
            return None
        key = id(frame)
        entry = self._frames.get(key)
        if entry is not None:
            registered = entry[0]()
            if registered is not None and _frame(registered) is frame:
                return None
        self._frames[key] = (weakref.ref(stream), run)
        return key

    def forget(self, key: int, run: Any) -> None:
        """Drop ``run``'s entry under ``key``, unless the key has been taken over by another run's stream."""
        entry = self._frames.get(key)
        if entry is not None and entry[1] is run:
            del self._frames[key]

    def producer(self) -> Any:
        """The run whose stream is running on the current stack, if any."""
        frames = self._frames
        frame = sys._getframe(1)
        for _ in range(_MAX_DEPTH):
            if frame is None:
                return None
            entry = frames.get(id(frame))
            if entry is not None:
                stream = entry[0]()
                if stream is not None and _frame(stream) is frame:
                    return entry[1]
            frame = frame.f_back
        return None


def _frame(stream: Any) -> Any:
    """The frame of a generator or async generator (None once it has finished)."""
    frame = getattr(stream, "gi_frame", None)
    return frame if frame is not None else getattr(stream, "ag_frame", None)


def finished(stream_ref: weakref.ref[Any] | None) -> bool | None:
    """True if the stream ran to its end, None if it was garbage-collected, False while it is live."""
    if stream_ref is None:
        return True
    stream = stream_ref()
    if stream is None:
        return None
    return _frame(stream) is None
