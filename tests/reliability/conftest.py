"""Makes the helper modules beside these tests (``hostile_inputs``, ``faultserver``) importable by name.

The test modules here are not a package and pytest imports them with ``--import-mode=importlib``, which does
not put their folder on ``sys.path``; conftest.py is loaded before any of them is collected.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
