"""The shipped Collector configs parse, use only documented components and keys, and mirror our defaults."""

from __future__ import annotations

from pathlib import Path

import yaml

from llmobs.sampling import Promote
from llmobs.sampling.policy import DEFAULT_RATIO

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"

# tailsamplingprocessor (collector-contrib README): policy types and the keys each takes.
POLICY_KEYS = {
    "always_sample": set(),
    "latency": {"threshold_ms", "upper_threshold_ms"},
    "numeric_attribute": {"key", "min_value", "max_value", "invert_match"},
    "probabilistic": {"hash_salt", "sampling_percentage"},
    "status_code": {"status_codes"},
    "string_attribute": {"key", "values", "enabled_regex_matching", "cache_max_size", "invert_match"},
    "trace_state": {"key", "values"},
    "rate_limiting": {"spans_per_second"},
    "bytes_limiting": {"bytes_per_second", "burst_capacity"},
    "span_count": {"min_spans", "max_spans"},
    "boolean_attribute": {"key", "value", "invert_match"},
    "ottl_condition": {"error_mode", "span", "spanevent"},
    "and": {"and_sub_policy"},
    "drop": {"drop_sub_policy"},
    "composite": {"max_total_spans_per_second", "policy_order", "composite_sub_policy", "rate_allocation"},
}
TAIL_SAMPLING_KEYS = {
    "decision_wait", "num_traces", "expected_new_traces_per_sec", "policies", "decision_cache",
    "sample_on_first_match", "drop_pending_traces_on_shutdown",
}  # fmt: skip
LOADBALANCING_KEYS = {"routing_key", "protocol", "resolver", "timeout"}
RESOLVERS = {"static": {"hostnames"}, "dns": {"hostname", "port", "interval", "timeout"}, "k8s": {"service", "ports"}}


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def pipelines_reference_defined_components(config: dict) -> None:
    for pipeline in config["service"]["pipelines"].values():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section, []):
                assert component in config.get(section, {}), f"{component} is used but not defined in {section}"


def test_gateway_balances_by_trace_id():
    config = load("collector-gateway.yaml")
    pipelines_reference_defined_components(config)
    lb = config["exporters"]["loadbalancing"]
    assert set(lb) <= LOADBALANCING_KEYS
    assert lb["routing_key"] == "traceID"
    ((resolver, settings),) = lb["resolver"].items()
    assert resolver in RESOLVERS and set(settings) <= RESOLVERS[resolver]


def test_sampler_names_only_documented_policies_and_keys():
    config = load("collector-sampler.yaml")
    pipelines_reference_defined_components(config)
    tail = config["processors"]["tail_sampling"]
    assert set(tail) <= TAIL_SAMPLING_KEYS
    names = [p["name"] for p in tail["policies"]]
    assert len(names) == len(set(names)), "policy names must be unique"
    for policy in tail["policies"]:
        kind = policy["type"]
        assert kind in POLICY_KEYS, f"undocumented policy type {kind}"
        assert set(policy) <= {"name", "type", kind}
        assert set(policy.get(kind) or {}) <= POLICY_KEYS[kind], f"{policy['name']}: undocumented keys"


def test_sampler_mirrors_the_in_process_defaults():
    policies = {p["name"]: p for p in load("collector-sampler.yaml")["processors"]["tail_sampling"]["policies"]}
    defaults = Promote()
    assert policies["errors"]["status_code"]["status_codes"] == ["ERROR"]
    assert policies["slow"]["latency"]["threshold_ms"] == defaults.latency_s * 1000
    assert policies["many-tokens"]["numeric_attribute"]["min_value"] == defaults.tokens + 1
    assert str(defaults.cost_usd) in policies["costly"]["ottl_condition"]["span"][0]
    finish = policies["truncated-or-filtered"]["ottl_condition"]["span"][0]
    assert all(reason in finish for reason in defaults.finish_reasons)
    assert policies["the-rest"]["probabilistic"]["sampling_percentage"] == DEFAULT_RATIO * 100
