"""Every gen_ai.* name llmobs defines is in the OTel registry or in our documented extension list."""

import inspect
import pathlib
import re

import opentelemetry.semconv._incubating.attributes.gen_ai_attributes as registry_attributes
import opentelemetry.semconv._incubating.metrics.gen_ai_metrics as registry_metrics

from llmobs import semconv as sc


def _string_constants(module) -> dict[str, str]:
    return {k: v for k, v in vars(module).items() if k.isupper() and isinstance(v, str)}


REGISTRY_NAMES = set(_string_constants(registry_attributes).values()) | set(
    _string_constants(registry_metrics).values()
)
REGISTRY_VALUES = {m.value for m in registry_attributes.GenAiOperationNameValues} | {
    m.value for m in registry_attributes.GenAiProviderNameValues
}
OURS = _string_constants(sc)


def test_registry_is_the_one_shipped_with_the_sdk():
    assert "gen_ai.request.model" in REGISTRY_NAMES, "opentelemetry-semantic-conventions lost its gen_ai registry"
    assert "gen_ai.client.operation.duration" in REGISTRY_NAMES


def test_every_gen_ai_name_is_registered_or_a_documented_extension():
    # GEN_AI_FOREIGN: names other tracers emit (OpenLLMetry legacy, vLLM) that llmobs only reads on ingest.
    documented = sc.GEN_AI_EXTENSIONS.keys() | sc.GEN_AI_FOREIGN.keys()
    unknown = {
        const: name
        for const, name in OURS.items()
        if name.startswith("gen_ai.") and name not in REGISTRY_NAMES and name not in documented
    }
    assert not unknown, f"gen_ai names neither in the OTel registry nor in GEN_AI_EXTENSIONS/_FOREIGN: {unknown}"


def test_extension_list_holds_only_names_we_define_and_the_registry_lacks():
    ours = set(OURS.values())
    for documented in (sc.GEN_AI_EXTENSIONS, sc.GEN_AI_FOREIGN):
        for name in documented:
            assert name in ours, f"{name} is documented but not defined"
            assert name not in REGISTRY_NAMES, f"{name} is in the registry now: drop it from the documented list"
    assert not sc.GEN_AI_EXTENSIONS.keys() & sc.GEN_AI_FOREIGN.keys(), "a name is either emitted or only read"


def test_operation_and_provider_values_are_registered_or_documented():
    values = {v for k, v in OURS.items() if k.startswith(("OP_", "PROVIDER_")) and not v.startswith("gen_ai.")}
    unknown = values - REGISTRY_VALUES - set(sc.VALUE_EXTENSIONS)
    assert not unknown, f"values neither in the registry enums nor in VALUE_EXTENSIONS: {sorted(unknown)}"


def test_metric_names_units_and_buckets_follow_the_conventions():
    for const, name in OURS.items():
        if const.startswith("METRIC_"):
            # vllm.*: the vLLM engine's own metrics (llmobs-vllm), as the semconv module docstring explains.
            assert name in REGISTRY_NAMES or name.startswith(("llmobs.", "vllm.")), name
    assert sc.BUCKETS_DURATION[0] == 0.01 and sc.BUCKETS_DURATION[-1] == 81.92
    assert tuple(4**i for i in range(14)) == sc.BUCKETS_TOKENS
    assert list(sc.BUCKETS_DURATION) == sorted(sc.BUCKETS_DURATION)


def test_every_operation_has_an_arms_span_kind():
    ops = {v for k, v in OURS.items() if k.startswith("OP_")}
    assert ops <= set(sc.KIND_OF_OPERATION)
    assert set(sc.KIND_OF_OPERATION.values()) <= set(sc.SPAN_KINDS)


def test_no_other_module_spells_a_gen_ai_attribute():
    root = pathlib.Path(__file__).resolve().parents[3]
    semconv_file = pathlib.Path(inspect.getfile(sc)).resolve()
    literal = re.compile(r"""["'](gen_ai\.[a-z_.]+)["']""")
    offenders = []
    for path in root.glob("packages/*/src/**/*.py"):
        if path.resolve() == semconv_file:
            continue
        offenders += [f"{path.relative_to(root)}: {m}" for m in literal.findall(path.read_text(encoding="utf-8"))]
    assert not offenders, "attribute strings belong in llmobs.semconv:\n" + "\n".join(offenders)
