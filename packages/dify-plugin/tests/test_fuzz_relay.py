"""The relay endpoint fuzzed in the plugin's own environment (Python >= 3.12, the Dify SDK installed): auth,
content type, inflate, decode, normalise and forward over mutated requests, coverage-guided by atheris and
by a plain random mutator. Every answer must be a clean 200/400/401/413/415, never the relay's catch-all 500.

The targets are the repository's reliability fuzz targets (``tests/reliability/fuzz_targets.py``), where the
core's decoders are fuzzed the same way; longer runs: ``packages/dify-plugin/.venv/bin/python
tests/reliability/fuzz_targets.py dify -max_total_time=300``.
"""

from __future__ import annotations

import importlib.util
import platform
import re
import subprocess
import sys
from pathlib import Path

TARGETS = Path(__file__).resolve().parents[3] / "tests" / "reliability" / "fuzz_targets.py"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, str(TARGETS), "dify", *args], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


def test_relay_coverage_guided(tmp_path):
    if sys.platform == "linux" and platform.machine() == "x86_64":
        assert importlib.util.find_spec("atheris"), "atheris missing: the plugin's dev dependencies install it"
    else:  # atheris ships wheels for x86-64 Linux only: the plain mutator below still runs
        return
    done = _run(tmp_path, "-runs=20000", "-max_total_time=60", "-print_final_stats=1", f"-artifact_prefix={tmp_path}/")
    executed = int(re.search(r"stat::number_of_executed_units:\s+(\d+)", done.stderr).group(1))
    assert executed >= 1000, done.stderr[-2000:]
    print(f"atheris dify relay: {executed} inputs")


def test_relay_plain_mutations(tmp_path):
    done = _run(tmp_path, "--plain-runs", "5000")
    assert "plain dify: 5000 inputs" in done.stdout, done.stdout
