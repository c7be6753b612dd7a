"""One timeout shared by several flushes, so ``flush(timeout)`` bounds the whole wait, not each part."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


def flush_all(flushes: Iterable[Callable[[int], bool]], timeout_millis: float) -> bool:
    """Call each ``flush(millis_left)`` in turn with what is left of one deadline.

    True when every flush reported done; once the deadline has passed the remaining ones are not
    started, and the answer is False.
    """
    deadline = time.monotonic() + timeout_millis / 1000
    done = True
    for flush in flushes:
        left = int((deadline - time.monotonic()) * 1000)
        if left <= 0:
            return False
        done = flush(left) and done
    return done
