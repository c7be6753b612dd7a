import importlib.metadata

import llmobs_langchain


def test_package_installs_on_the_core():
    assert llmobs_langchain.core_version == importlib.metadata.version("llmobs")
    requires = importlib.metadata.requires("llmobs-langchain") or []
    assert any(r.split(";")[0].strip().startswith("llmobs") for r in requires)
