"""Progress bars on stderr for ``llmobs analyze``: drawn only on a terminal, silent otherwise."""

from __future__ import annotations

import sys
import time
from typing import IO


class Progress:
    """One bar per stage, redrawn in place at most every 0.1 s; ``enabled=False`` draws nothing."""

    def __init__(self, enabled: bool, stream: IO[str] | None = None, width: int = 28) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.width = width
        self._label = ""
        self._total = 0
        self._done = 0
        self._drawn = 0.0
        self._started = 0.0

    @classmethod
    def for_terminal(cls, quiet: bool = False) -> Progress:
        return cls(enabled=not quiet and sys.stderr.isatty())

    def stage(self, label: str, total: int) -> None:
        self._finish_line()
        self._label, self._total, self._done = label, max(total, 0), 0
        self._started = time.monotonic()
        self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        self._done = min(self._done + n, self._total) if self._total else self._done + n
        self._draw()

    def close(self) -> None:
        self._finish_line()

    def _finish_line(self) -> None:
        if self.enabled and self._label:
            self._done = self._total
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
        self._label = ""

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        share = self._done / self._total if self._total else 1.0
        filled = round(share * self.width)
        bar = "█" * filled + "░" * (self.width - filled)
        elapsed = now - self._started
        self.stream.write(f"\r{self._label:<12} {bar} {self._done:>6}/{self._total:<6} {elapsed:5.1f}s")
        self.stream.flush()
