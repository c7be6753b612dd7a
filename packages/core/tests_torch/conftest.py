"""The core's tests that need PyTorch: run by ``python dev.py test`` in the CPU-torch environment it builds
for the vLLM engine tests (the workspace itself never installs PyTorch). The corpus generator is shared
with the main suite's analysis tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
