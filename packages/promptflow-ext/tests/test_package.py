import importlib.metadata

import llmobs_promptflow


def test_package_installs_on_the_core():
    assert llmobs_promptflow.core_version == importlib.metadata.version("llmobs")
    requires = importlib.metadata.requires("llmobs-promptflow") or []
    assert any(r.split(";")[0].strip().startswith("llmobs") for r in requires)
