"""Compressed response bodies read as the application will read them.

The transport sees a body's bytes as they come off the wire; httpx decompresses them only later, as the
application reads the response. The openai client asks for what httpx can undo — ``gzip`` and ``deflate``,
plus ``br`` and ``zstd`` when ``brotli`` (or ``brotlicffi``) and ``zstandard`` are installed — and providers
and gateways do compress: so the call reader decompresses each chunk itself, incrementally, as httpx will
(``deflate`` as zlib data, else raw deflate), with the same modules. Without them a ``br`` or ``zstd`` body
(which httpx would not have asked for) is not read: the span keeps what the response head says, and the
case is counted.
"""

from __future__ import annotations

import importlib
import zlib
from types import ModuleType
from typing import Any


def _optional(*names: str) -> ModuleType | None:
    """The first of these modules that imports, if any."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


# Already imported by httpx when installed (its decoders import them at start): no cost here.
_brotli = _optional("brotli", "brotlicffi")
_zstandard = _optional("zstandard")


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


class _Brotli:
    __slots__ = ("_decompress", "_object")

    def __init__(self, module: Any) -> None:
        self._object = module.Decompressor()
        # brotli names it process(), brotlicffi decompress().
        self._decompress = getattr(self._object, "process", None) or self._object.decompress

    def decode(self, data: bytes) -> bytes:
        return self._decompress(data) if data else b""

    def flush(self) -> bytes:
        return b""  # both decompress eagerly: nothing is held back


class _Zstd:
    """Zstandard frames, one after another as a server may send them (each frame gets a new decompressor)."""

    __slots__ = ("_module", "_object")

    def __init__(self, module: Any) -> None:
        self._module = module
        self._object = module.ZstdDecompressor().decompressobj()

    def decode(self, data: bytes) -> bytes:
        out = []
        while data:
            if self._object.eof:  # the frame before ended, here or at the end of the last chunk
                self._object = self._module.ZstdDecompressor().decompressobj()
            out.append(self._object.decompress(data))
            data = self._object.unused_data if self._object.eof else b""
        return b"".join(out)

    def flush(self) -> bytes:
        return b""


def _step(name: str) -> _Zlib | _Brotli | _Zstd:
    if name in ("gzip", "x-gzip"):
        return _Zlib(zlib.MAX_WBITS | 16)
    if name == "deflate":
        return _Zlib(zlib.MAX_WBITS, raw_fallback=True)
    if name == "br" and _brotli is not None:
        return _Brotli(_brotli)
    if name == "zstd" and _zstandard is not None:
        return _Zstd(_zstandard)
    raise UnsupportedEncoding(name)
