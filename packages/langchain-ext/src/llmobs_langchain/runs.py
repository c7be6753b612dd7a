"""The LangChain runs in flight: a bounded, thread-safe table shared by every llmobs handler in the process.

LangChain identifies each run by ``run_id`` and names its parent by ``parent_run_id``; start and end
callbacks arrive on different threads and asyncio tasks, so the span of a run lives here between them,
never in the OTel context. One table for the whole process is what makes a run seen by two llmobs
handlers (one global, one passed explicitly) produce one span: the first handler to see the start owns
the run, the other ignores it.

Memory is bounded three ways: a run leaves the table at its end or error callback; a run that has had
no callback for ``stale_after_s`` and has no child in flight (an abandoned generator, a killed task) is
ended as ``timeout`` by a sweep that piggybacks on run starts; and at ``max_runs`` the oldest run is
ended as ``evicted`` to make room.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any
from uuid import UUID

from llmobs import selfstats

if TYPE_CHECKING:
    from llmobs.recorder import SpanHandle

DEFAULT_MAX_RUNS = 10_000
DEFAULT_STALE_AFTER_S = 1800.0


class Run:
    """One traced run: its span handle, the handler that owns it, and what the sweeper needs."""

    __slots__ = ("agent", "children", "handle", "owner", "parent", "streamed", "touched")

    def __init__(self, handle: SpanHandle, owner: Any, parent: Run | None, agent: str | None = None) -> None:
        self.handle = handle
        self.owner = owner
        self.parent = parent
        self.agent = agent  # the LangChain agent name (``lc_agent_name``) this run belongs to
        self.children = 0  # child runs in flight: a parent waiting on a child is not stale
        self.streamed = False
        self.touched = 0.0  # monotonic time of the last callback for this run or one of its children


class RunRegistry:
    """``run_id`` → :class:`Run`, with a cap and a sweep of stale runs. Safe from any thread."""

    def __init__(self, max_runs: int = DEFAULT_MAX_RUNS, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> None:
        self.max_runs = max(1, max_runs)
        self.stale_after_s = stale_after_s
        self._sweep_every = max(0.0, min(60.0, stale_after_s / 4))
        self._next_sweep = time.monotonic() + self._sweep_every
        self._runs: dict[int, Run] = {}
        self._lock = threading.Lock()

    # Runs are keyed by ``UUID.int``: hashing an int is native, hashing a UUID is a Python call.
    def __len__(self) -> int:
        return len(self._runs)

    def __contains__(self, run_id: UUID) -> bool:
        return run_id.int in self._runs

    def get(self, run_id: UUID | None) -> Run | None:
        return self._runs.get(run_id.int) if run_id is not None else None

    def add(self, run_id: UUID, run: Run) -> bool:
        """Track a started run; False if ``run_id`` is already tracked (the caller then drops its span)."""
        now = time.monotonic()
        overflow: list[tuple[Run, str]] = []
        with self._lock:
            runs = self._runs
            if now >= self._next_sweep:
                self._next_sweep = now + self._sweep_every
                overflow += self._take_stale(now)
            if len(runs) >= self.max_runs:
                overflow += self._take_stale(now) or self._take_oldest()
            if runs.setdefault(run_id.int, run) is not run:
                return False
            run.touched = now
            parent = run.parent
            if parent is not None:
                parent.children += 1
                parent.touched = now
        _end_all(overflow)
        return True

    def pop(self, run_id: UUID, owner: Any) -> Run | None:
        """Remove and return the run if ``owner`` owns it; None if it is unknown or another handler's."""
        key = run_id.int
        with self._lock:
            run = self._runs.get(key)
            if run is None or run.owner is not owner:
                return None
            del self._runs[key]
            parent = run.parent
            if parent is not None:
                parent.children -= 1
                parent.touched = time.monotonic()
        return run

    def sweep(self, now: float | None = None) -> int:
        """End every stale run now (as ``timeout``); returns how many. Runs also sweep on their own."""
        with self._lock:
            stale = self._take_stale(time.monotonic() if now is None else now)
        _end_all(stale)
        return len(stale)

    def _take_stale(self, now: float) -> list[tuple[Run, str]]:
        """Remove stale runs, children before parents, so an abandoned tree goes in one sweep."""
        taken: list[tuple[Run, str]] = []
        runs = self._runs
        for key, run in reversed(list(runs.items())):  # children were added after their parents
            if run.children <= 0 and now - run.touched > self.stale_after_s:
                del runs[key]
                if run.parent is not None:
                    run.parent.children -= 1
                taken.append((run, "timeout"))
        if taken:
            selfstats.count("langchain.runs_timed_out", len(taken))
        return taken

    def _take_oldest(self) -> list[tuple[Run, str]]:
        run = self._runs.pop(next(iter(self._runs)))
        if run.parent is not None:
            run.parent.children -= 1
        selfstats.count("langchain.runs_evicted")
        return [(run, "evicted")]


def _end_all(runs: list[tuple[Run, str]]) -> None:
    """End runs removed without their end callback: not an error, but not finished either."""
    for run, reason in runs:
        run.handle.end(cancelled=True, reason=reason)


#: The table every handler uses unless given its own.
RUNS = RunRegistry()
