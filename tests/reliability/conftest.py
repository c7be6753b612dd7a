"""Makes the helper modules beside these tests (``hostile_inputs``, ``faultserver``) importable by name, and
makes a fuzz test that hangs end the run at once.

The test modules here are not a package and pytest imports them with ``--import-mode=importlib``, which does
not put their folder on ``sys.path``; conftest.py is loaded before any of them is collected.

pytest-timeout's default (signal) method raises inside the test: Hypothesis takes that for a failure and goes on
shrinking it, and the next example that hangs is never interrupted. The thread method dumps every thread's stack
and exits, so a hanging input fails the run in minutes with the place it hung.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if hasattr(getattr(item, "obj", None), "hypothesis") and str(item.path).startswith(_HERE):
            item.add_marker(pytest.mark.timeout(method="thread"))
