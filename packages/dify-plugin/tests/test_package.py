import importlib.metadata
import sys

import llmobs_dify


def test_plugin_runs_on_python_312_with_the_core():
    assert sys.version_info >= (3, 12)
    assert llmobs_dify.core_version == importlib.metadata.version("llmobs")
