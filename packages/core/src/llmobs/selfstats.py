"""Counters of what llmobs itself dropped, truncated or failed at, so nothing is lost silently.

Instrumentation must never raise into the application; when it swallows a problem it counts it here
(and logs the first occurrence of each kind once). ``llmobs.export`` publishes these counters as the
``llmobs.dropped`` metric; tests and the CLI read them with :func:`snapshot`.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

_log = logging.getLogger("llmobs")
_lock = threading.Lock()
_counts: Counter[str] = Counter()
_logged: set[str] = set()


def count(kind: str, n: int = 1) -> None:
    """Add ``n`` to the counter ``kind`` (e.g. ``"store.dropped_spans"``)."""
    with _lock:
        _counts[kind] += n


def failure(kind: str, exc: BaseException | None = None) -> None:
    """Count a swallowed failure and log it the first time this kind happens in the process."""
    with _lock:
        _counts[kind] += 1
        first = kind not in _logged
        _logged.add(kind)
    if first:
        _log.warning("llmobs: %s (%s); further occurrences are only counted", kind, _describe(exc))


def dropped(kind: str, n: int, why: str) -> None:
    """Count ``n`` items lost for ``kind`` and log the first loss of this kind in the process, with why."""
    if n <= 0:
        return
    with _lock:
        _counts[kind] += n
        first = kind not in _logged
        _logged.add(kind)
    if first:
        _log.warning("llmobs: dropped %d (%s): %s; further drops are only counted", n, kind, why)


def snapshot() -> dict[str, int]:
    """A copy of every counter."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    """Forget every counter (tests)."""
    with _lock:
        _counts.clear()
        _logged.clear()


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no exception"
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:  # an exception whose __str__ raises
        return type(exc).__name__
