import importlib.metadata

import llmobs_vllm


def test_package_installs_on_the_core():
    assert llmobs_vllm.core_version == importlib.metadata.version("llmobs")
    requires = importlib.metadata.requires("llmobs-vllm") or []
    assert any(r.split(";")[0].strip().startswith("llmobs") for r in requires)
