"""The built .difypkg: layout, manifest and provider files against the schema facts Dify's SDK and daemon
enforce, requirements the daemon can install, and the unpacked package loading with the SDK's real
registration from its own copies of llmobs and llmobs_dify."""

import datetime
import importlib.metadata
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

import llmobs_dify
from llmobs_dify import packaging

# Schema facts (dify.md §1.2-§1.5; dify_plugin/core/entities/plugin/setup.py, daemon plugin_declaration.go,
# config.go, endpoint_declaration.go, marketplace checks).
AUTHOR = re.compile(r"^[a-z0-9_-]{1,64}$")
NAME = re.compile(r"^[a-z0-9_-]{1,128}$")
CONFIG_TYPES = {"secret-input", "text-input", "select", "boolean", "model-selector", "app-selector"}
TOOL_PARAMETER_TYPES = {"string", "number", "boolean", "select", "secret-input", "file", "files", "app-selector",
                        "model-selector", "object", "array", "checkbox", "any", "dynamic-select", "date",
                        "date-range"}
FORMS = {"llm", "form", "schema"}
METHODS = {"HEAD", "GET", "POST", "PUT", "DELETE", "OPTIONS"}
PERMISSIONS = {"tool", "model", "node", "endpoint", "app", "storage"}
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return packaging.build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def archive(package: Path) -> zipfile.ZipFile:
    return zipfile.ZipFile(package)


def _yaml(archive: zipfile.ZipFile, name: str) -> dict:
    return yaml.safe_load(archive.read(name))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _i18n(value: object) -> None:
    assert isinstance(value, dict) and isinstance(value.get("en_US"), str) and value["en_US"].strip()


def test_plugin_runs_on_python_312_with_the_core():
    assert sys.version_info >= (3, 12)
    assert llmobs_dify.core_version == importlib.metadata.version("llmobs")


def test_layout_and_size(package: Path, archive: zipfile.ZipFile):
    names = set(archive.namelist())
    assert package.name == "llmobs-0.1.0.difypkg"
    for required in ("manifest.yaml", "main.py", "README.md", "PRIVACY.md", "requirements.txt",
                     "_assets/icon.svg", "llmobs/__init__.py", "llmobs/interop.py", "llmobs/serve/otlp.py",
                     "llmobs_dify/relay.py"):
        assert required in names, required
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith(("tests/", ".venv/"))]
    assert sum(info.file_size for info in archive.infolist()) < 50 * 1024 * 1024
    assert archive.testzip() is None


def test_manifest(archive: zipfile.ZipFile):
    manifest = _yaml(archive, "manifest.yaml")
    Version(str(manifest["version"]))
    assert manifest["type"] == "plugin"
    assert AUTHOR.match(manifest["author"]) and not re.search("dify|langgenius", manifest["author"])
    assert NAME.match(manifest["name"])
    _i18n(manifest["label"])
    _i18n(manifest["description"])
    assert f"_assets/{manifest['icon']}" in archive.namelist()
    assert archive.read(f"_assets/{manifest['icon']}").lstrip().startswith(b"<svg")
    created = manifest["created_at"]  # RFC 3339, which YAML reads as a timestamp
    assert isinstance(created, datetime.datetime) and created.tzinfo is not None
    assert created <= datetime.datetime.now(datetime.UTC)
    assert manifest["privacy"] in archive.namelist() and archive.read(manifest["privacy"]).strip()
    permission = manifest["resource"]["permission"]
    assert set(permission) <= PERMISSIONS
    assert permission == {"endpoint": {"enabled": True}}  # minimal: register endpoints, nothing else
    assert isinstance(manifest["resource"]["memory"], int)
    runner = manifest["meta"]["runner"]
    assert (runner["language"], str(runner["version"]), runner["entrypoint"]) == ("python", "3.12", "main")
    assert f"{runner['entrypoint']}.py" in archive.namelist()
    assert set(manifest["meta"]["arch"]) <= {"amd64", "arm64"}
    plugins = manifest["plugins"]
    assert set(plugins) == {"tools", "endpoints"}  # tool + endpoint may combine; one provider of each
    assert len(plugins["tools"]) == 1 and len(plugins["endpoints"]) == 1
    for path in plugins["tools"] + plugins["endpoints"]:
        assert path in archive.namelist()


def test_tool_provider_and_tools(archive: zipfile.ZipFile):
    manifest = _yaml(archive, "manifest.yaml")
    provider = _yaml(archive, manifest["plugins"]["tools"][0])
    identity = provider["identity"]
    assert identity["author"] == manifest["author"] and NAME.match(identity["name"])
    _i18n(identity["label"])
    _i18n(identity["description"])
    assert f"_assets/{identity['icon']}" in archive.namelist()
    credentials = provider["credentials_for_provider"]
    assert isinstance(credentials, dict)  # a map keyed by name, not a list (the SDK iterates .items())
    for name, field in credentials.items():
        assert field["type"] in CONFIG_TYPES, name
        _i18n(field["label"])
    assert credentials["otlp_headers"]["type"] == "secret-input"
    assert provider["extra"]["python"]["source"] in archive.namelist()
    names = []
    for path in provider["tools"]:
        tool = _yaml(archive, path)
        names.append(tool["identity"]["name"])
        assert tool["identity"]["author"] == manifest["author"]
        _i18n(tool["identity"]["label"])
        _i18n(tool["description"]["human"])
        assert tool["description"]["llm"].strip()
        assert tool["extra"]["python"]["source"] in archive.namelist()
        for parameter in tool["parameters"]:
            assert parameter["type"] in TOOL_PARAMETER_TYPES and parameter["form"] in FORMS
            _i18n(parameter["label"])
            _i18n(parameter["human_description"])
            if parameter["type"] == "select":
                assert parameter["options"] and all(len(o["value"]) < 128 for o in parameter["options"])
        assert "workflow_run_id" in {p["name"] for p in tool["parameters"]}
    assert names == ["record_score", "record_feedback", "log_event"]


def test_endpoint_group(archive: zipfile.ZipFile):
    manifest = _yaml(archive, "manifest.yaml")
    group = _yaml(archive, manifest["plugins"]["endpoints"][0])
    settings = group["settings"]
    assert isinstance(settings, list)
    by_name = {s["name"]: s for s in settings}
    assert set(by_name) == {"api_key", "otlp_endpoint", "otlp_headers", "service_name", "capture_content",
                            "max_attribute_bytes", "redact_pii"}
    for setting in settings:
        assert setting["type"] in CONFIG_TYPES
        _i18n(setting["label"])
        default = setting.get("default")
        if setting["type"] in ("text-input", "secret-input", "select") and default is not None:
            assert isinstance(default, str)  # the daemon checks values against the type
        if setting["type"] == "select":
            assert default in {o["value"] for o in setting["options"]}
        if setting["type"] == "boolean":
            assert isinstance(default, bool)
    assert by_name["api_key"]["type"] == "secret-input" and by_name["api_key"]["required"] is True
    assert by_name["otlp_headers"]["type"] == "secret-input"
    endpoints = [_yaml(archive, path) for path in group["endpoints"]]
    routes = {(e["path"], e["method"]) for e in endpoints}
    assert {("/v1/traces", "POST"), ("/feedback", "POST"),
            ("/adapt_<license_key>/api/otlp/traces", "POST")} <= routes
    for endpoint in endpoints:
        assert endpoint["method"] in METHODS and endpoint["path"].startswith("/")
        assert endpoint["extra"]["python"]["source"] in archive.namelist()


def test_requirements_are_the_locked_third_party_closure(archive: zipfile.ZipFile):
    lines = [ln.split(";")[0].strip() for ln in archive.read("requirements.txt").decode().splitlines()
             if ln.strip() and not ln.startswith("#")]
    pins = {}
    for line in lines:
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", line
        pins[_normal(requirement.name)] = spec.version
    assert Version(pins["dify-plugin"]) >= Version("0.5.0")  # a Marketplace check
    assert "llmobs" not in pins and "llmobs-dify-plugin" not in pins  # shipped inside the package
    # every package the plugin needs at run time is pinned, at the version this environment was synced to
    seen, todo = set(), ["llmobs-dify-plugin"]
    while todo:
        name = todo.pop()
        for raw in importlib.metadata.requires(name) or []:
            requirement = Requirement(raw)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            dep = _normal(requirement.name)
            if dep in seen:
                continue
            seen.add(dep)
            todo.append(dep)
    seen.discard("llmobs")
    assert seen <= set(pins), sorted(seen - set(pins))
    for dep in seen:
        assert pins[dep] == importlib.metadata.version(dep), dep


def test_unpacked_package_loads_with_the_sdk(archive: zipfile.ZipFile, tmp_path: Path):
    archive.extractall(tmp_path)
    probe = (
        "import dify_plugin, llmobs, llmobs_dify\n"
        "from dify_plugin import DifyPluginEnv\n"
        "from dify_plugin.core.plugin_registration import PluginRegistration\n"
        "reg = PluginRegistration(DifyPluginEnv())\n"
        "print(llmobs.__file__)\nprint(llmobs_dify.__file__)\n"
        "print(sorted(reg.tools_mapping['llmobs'][2]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    core_file, plugin_file, tools = out.stdout.strip().splitlines()[-3:]
    assert Path(core_file).is_relative_to(tmp_path) and Path(plugin_file).is_relative_to(tmp_path)
    assert tools == "['log_event', 'record_feedback', 'record_score']"
