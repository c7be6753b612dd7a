"""Keep bench/bench_vllm.py runnable (it needs vLLM, so its smoke run lives in this tier); no timing asserted.

It runs as a script in a child process, as it is meant to be run: the bench installs global OTel
providers of its own, which must not mix with this test process's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_vllm.py"


def test_bench_vllm_quick(tmp_path):
    report_path = tmp_path / "report.json"
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--rounds", "1", "--batch", "8",
                           "--json", str(report_path)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(report_path.read_text())
    assert set(report["variants"]) == {"vllm_prometheus", "llmobs_record", "llmobs_total", "llmobs_total_no_spans",
                                       "llmobs_total_own_metrics"}
    for name, row in report["variants"].items():
        assert row["median_ns"] > 0, name
    assert "llmobs_record" in done.stdout
