import importlib.metadata

import llmobs_llamaindex


def test_package_installs_on_the_core():
    assert llmobs_llamaindex.core_version == importlib.metadata.version("llmobs")
    requires = importlib.metadata.requires("llmobs-llamaindex") or []
    assert any(r.split(";")[0].strip().startswith("llmobs") for r in requires)
