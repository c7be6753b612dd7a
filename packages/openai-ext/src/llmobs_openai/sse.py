"""An incremental server-sent-events parser over the raw bytes an application reads.

It only collects ``data`` fields (OpenAI-API events carry their type inside the JSON) and returns
each event's data when the blank line that ends it arrives. Network chunks may split lines and
events anywhere, including between the ``\\r`` and ``\\n`` of one line ending. A line or event
longer than ``max_bytes`` makes the parser give up (:attr:`overflowed`) rather than grow.
"""

from __future__ import annotations


class SSEParser:
    __slots__ = ("_data", "_partial", "_skip_lf", "max_bytes", "overflowed")

    def __init__(self, max_bytes: int = 4 << 20) -> None:
        self._partial = b""  # an unfinished line carried over from the previous chunk
        self._data: bytes | None = None  # data of the event being read
        self._skip_lf = False  # the previous chunk ended in \r: a leading \n belongs to that line ending
        self.max_bytes = max_bytes
        self.overflowed = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data of every event completed by ``chunk``, in order."""
        if (  # the usual chunk, as servers write them: one whole event of one data line, nothing carried over
            chunk[:6] == b"data: " and chunk[-2:] == b"\n\n" and chunk.count(b"\n") == 2 and b"\r" not in chunk
            and not self._partial and self._data is None and not self._skip_lf and len(chunk) <= self.max_bytes
        ):  # fmt: skip
            return [chunk[6:-2]]
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._partial:
            chunk = self._partial + chunk
            self._partial = b""
        if not chunk:
            return []
        lines = chunk.splitlines()
        last = chunk[-1]
        if last == 13:  # \r
            self._skip_lf = True
        elif last != 10:  # the last line is unfinished
            self._partial = lines.pop()
            if len(self._partial) > self.max_bytes:
                return self._overflow()
        events: list[bytes] = []
        data = self._data
        for line in lines:
            if not line:
                if data is not None:
                    events.append(data)
                    data = None
            elif line.startswith(b"data:"):
                value = line[6:] if line[5:6] == b" " else line[5:]
                data = value if data is None else data + b"\n" + value
                if len(data) > self.max_bytes:
                    return self._overflow()
        self._data = data
        return events

    def _overflow(self) -> list[bytes]:
        self.overflowed = True
        self._partial = b""
        self._data = None
        return []
