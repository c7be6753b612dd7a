"""Compressed response bodies read as the application will read them.

The transport sees a body's bytes as they come off the wire; httpx decompresses them only later, as the
application reads the response. The openai client asks for ``gzip, deflate`` (httpx's default), and
providers and gateways do compress: so the call reader decompresses each chunk itself, incrementally, as
httpx will (``deflate`` as zlib data, else raw deflate). Encodings that need third-party modules
(``br``, ``zstd``) are not read: the span keeps what the response head says, and the case is counted.
"""

from __future__ import annotations

import zlib


class UnsupportedEncoding(ValueError):
    """A ``Content-Encoding`` this reader cannot undo."""


class Decoder:
    """Undoes a ``Content-Encoding`` (one or several, e.g. ``gzip, deflate``) chunk by chunk."""

    __slots__ = ("_steps",)

    def __init__(self, content_encoding: str) -> None:
        names = [name.strip().lower() for name in content_encoding.split(",")]
        # Encodings are listed in the order they were applied: undo them last first.
        self._steps = [_step(name) for name in reversed(names) if name not in ("", "identity")]

    def __bool__(self) -> bool:
        return bool(self._steps)

    def decode(self, data: bytes) -> bytes:
        for step in self._steps:
            data = step.decode(data)
        return data

    def flush(self) -> bytes:
        """What is left once the body has ended."""
        data = b""
        for step in self._steps:
            data = step.decode(data) + step.flush()
        return data


class _Zlib:
    __slots__ = ("_object", "_raw_fallback", "_started")

    def __init__(self, wbits: int, raw_fallback: bool = False) -> None:
        self._object = zlib.decompressobj(wbits)
        self._raw_fallback = raw_fallback  # deflate: zlib-wrapped as the standard says, or raw as some servers send
        self._started = False

    def decode(self, data: bytes) -> bytes:
        if not data:
            return b""
        try:
            out = self._object.decompress(data)
        except zlib.error:
            if not self._raw_fallback or self._started:
                raise
            self._object = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._object.decompress(data)
        self._started = True
        return out

    def flush(self) -> bytes:
        return self._object.flush()


def _step(name: str) -> _Zlib:
    if name in ("gzip", "x-gzip"):
        return _Zlib(zlib.MAX_WBITS | 16)
    if name == "deflate":
        return _Zlib(zlib.MAX_WBITS, raw_fallback=True)
    raise UnsupportedEncoding(name)
