"""Settings from environment variables and the YAML file; invalid ones name the field."""

from __future__ import annotations

import pytest

from ailb.config import ConfigError, Secret, load_settings
from ailb.server import apply_demo


def test_providers_enabled_by_key_or_url_and_shared_models():
    s = load_settings(
        {
            "OPENAI_API_KEY": "sk-openai-123456789",
            "OPENAI_MODELS": "m,gpt-x",
            "ANTHROPIC_API_KEY": "sk-ant-123456789",
            "ANTHROPIC_MODELS": "m",
            "OLLAMA_MODELS": "llama3.2",
        }
    )
    by_name = {d.name: d for d in s.deployments}
    assert set(by_name) == {"openai", "anthropic", "ollama"}
    assert by_name["openai"].models == ("m", "gpt-x")
    assert by_name["anthropic"].models == ("m",)
    assert by_name["ollama"].base_url == "http://localhost:11434"
    assert isinstance(s.credentials["openai"], Secret)
    assert "sk-openai" not in repr(s) and "sk-ant" not in repr(s)
    assert load_settings({}).deployments == ()


def test_yaml_file_deployments(tmp_path):
    path = tmp_path / "ailb.yaml"
    path.write_text(
        """
deployments:
  - name: a
    provider: openai
    base_url: http://127.0.0.1:9/v1
    api_key_env: KEY_A
    models: [m]
    aliases: {fast: m}
    weight: 3
    priority: 2
    input_cost_per_1m: 0.15
    output_cost_per_1m: 0.6
    rpm: 100
    tpm: 1000
    context_window: 8000
    timeouts: {connect: 1, first_byte: 2, idle: 3, total: 4}
models:
  m: {strategy: cost_optimized, hedging: true}
"""
    )
    s = load_settings({"AILB_CONFIG": str(path), "KEY_A": "sk-file-key-0000"})
    (d,) = s.deployments
    assert d.served_models() == {"m": "m", "fast": "m"}
    assert (d.weight, d.priority, d.rpm, d.tpm, d.context_window) == (3, 2, 100, 1000, 8000)
    assert d.timeouts.first_byte == 2
    assert s.models["m"].hedging
    assert "sk-file-key" not in str(d.redacted())


@pytest.mark.parametrize(
    ("env", "yaml", "expected"),
    [
        ({"HTTP_PORT": "70000"}, None, "HTTP_PORT"),
        ({"ROUTING_STRATEGY": "fastest"}, None, "ROUTING_STRATEGY"),
        ({"ENABLE_MEMORY": "maybe"}, None, "ENABLE_MEMORY"),
        ({"CHROMA_URL": "ftp://x"}, None, "base_url"),
        ({}, "deployments:\n  - {name: a, provider: openai, wieght: 1}\n", "deployments[0].wieght"),
        (
            {},
            "deployments:\n  - {name: a, provider: openai, weight: -1}\n",
            "deployments[0].weight",
        ),
        ({}, "deployments:\n  - {name: a, provider: nope}\n", "deployments[0].provider"),
        (
            {},
            "deployments:\n  - {name: a, provider: openai, base_url: 'http://u:p@h/v1'}\n",
            "credentials",
        ),
        (
            {},
            "deployments:\n  - {name: a, provider: openai, models: [m], aliases: {x: y}}\n",
            "alias",
        ),
        (
            {},
            "deployments:\n  - {name: a, provider: openai, api_key_env: UNSET_VAR}\n",
            "UNSET_VAR",
        ),
        ({}, "deployments:\n  - {name: a, provider: anthropic}\n", "api_key_env"),
        ({}, "deployments: [\n", "not valid YAML"),
    ],
)
def test_invalid_configuration_names_the_problem(tmp_path, env, yaml, expected):
    if yaml is not None:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml)
        env = {**env, "AILB_CONFIG": str(path)}
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert expected in str(info.value)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({"AILB_CONFIG": "/nonexistent/ailb.yaml"})


def test_demo_mode_only_when_nothing_is_configured():
    demo = apply_demo(load_settings({}, demo=True))
    assert demo.demo and [d.provider for d in demo.deployments] == ["mock"]
    configured = apply_demo(load_settings({"OLLAMA_MODELS": "x"}, demo=True))
    assert not configured.demo and [d.name for d in configured.deployments] == ["ollama"]
    plain = apply_demo(load_settings({}))
    assert plain.deployments == ()
