"""Strict JSON for what llmobs prints and serves.

JSON has no NaN or Infinity: browsers, ``jq`` and most parsers reject the standard encoder's spelling of
them, so non-finite numbers are written as ``null``. Stored attribute JSON keeps them as sent.
"""

from __future__ import annotations

import json
import math
from typing import Any


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps(value, **options)``, with non-finite numbers as ``null``."""
    try:
        return json.dumps(value, allow_nan=False, **options)
    except ValueError:  # a non-finite number somewhere: only then is the value copied
        return json.dumps(_finite(value), allow_nan=False, **options)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
