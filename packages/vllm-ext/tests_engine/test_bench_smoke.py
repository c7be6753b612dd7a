"""Keep bench/bench_vllm.py runnable (it needs vLLM, so its smoke run lives in this tier); no timing asserted."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[3] / "bench"


def test_bench_vllm_quick(capsys):
    sys.path.insert(0, str(BENCH_DIR))
    try:
        report = importlib.import_module("bench_vllm").main(["--quick", "--rounds", "1", "--batch", "8"])
    finally:
        sys.path.remove(str(BENCH_DIR))
    assert set(report["variants"]) == {"vllm_prometheus", "llmobs_record", "llmobs_total", "llmobs_total_no_spans"}
    for name, row in report["variants"].items():
        assert row["median_ns"] > 0, name
    assert "llmobs_record" in capsys.readouterr().out
