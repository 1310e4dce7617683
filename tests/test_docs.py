"""The README says what the code does: its configuration tables, defaults and example config."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path

import msgspec
import pytest

from ailb.config import (
    DEFAULT_BASE_URLS,
    ENV_VARS,
    ConfigError,
    DeploymentConfig,
    EnvSettings,
    load_settings,
)

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
ENV_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \| (.+?) \| (.+?) \|$")


def env_table() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    for line in README.splitlines():
        m = ENV_ROW.match(line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} documented twice"
            rows[m.group(1)] = (m.group(2).strip(), m.group(3).strip())
    return rows


def shown(default: str) -> str:
    return f"`{default}`" if default else "(unset)"


def section(heading_start: str) -> list[str]:
    """The table lines that follow the line starting with `heading_start`."""
    lines = README.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading_start))
    out: list[str] = []
    for line in lines[start + 1 :]:
        if out and not line.startswith("|"):
            break
        if line.startswith("|"):
            out.append(line)
    return out


# --- environment variables --------------------------------------------------------------------


def test_readme_documents_exactly_the_variables_the_code_reads() -> None:
    assert set(env_table()) == set(ENV_VARS)
    assert len(ENV_VARS) == 68  # the table is really found, not trivially empty


def test_readme_defaults_and_meanings_match_env_vars() -> None:
    rows = env_table()
    for var, (_, default, meaning) in ENV_VARS.items():
        assert rows[var] == (shown(default), meaning), var


def test_every_variable_field_is_a_real_settings_field_and_none_is_hidden() -> None:
    fields = {f.name for f in msgspec.structs.fields(EnvSettings)}
    mapped = [fld for fld, _, _ in ENV_VARS.values() if fld is not None]
    assert set(mapped) <= fields
    assert len(mapped) == len(set(mapped))  # one variable per field
    assert set(mapped) == fields  # no setting without a variable


@pytest.mark.parametrize("var", [v for v, (fld, _, _) in ENV_VARS.items() if fld is not None])
def test_setting_a_variable_to_its_documented_default_changes_nothing(var: str) -> None:
    default = ENV_VARS[var][1]
    if var == "MODULE_ID":
        # Documented as a pattern: the empty setting resolves to it.
        assert load_settings({}).module_id == f"ailb-{socket.gethostname()}"
        assert default == "ailb-<hostname>"
        return
    assert load_settings({var: default}).env == load_settings({}).env


@pytest.mark.parametrize(
    ("var", "key_var", "provider"),
    [
        ("OPENAI_BASE_URL", "OPENAI_API_KEY", "openai"),
        ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "anthropic"),
        ("OLLAMA_BASE_URL", "OLLAMA_MODELS", "ollama"),
    ],
)
def test_documented_provider_url_defaults_are_the_ones_used(
    var: str, key_var: str, provider: str
) -> None:
    (d,) = load_settings({key_var: "x"}).deployments
    assert d.base_url == ENV_VARS[var][1] == DEFAULT_BASE_URLS[provider]


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: dict[str, str]) -> None:
        self._data = values
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._data[key]

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.read.add(key)
        return self._data.get(key, default)

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the whole environment must not be scanned")

    def __len__(self) -> int:
        return len(self._data)


def test_the_code_reads_no_undocumented_variable(tmp_path: Path) -> None:
    config = tmp_path / "ailb.yaml"
    config.write_text("deployments:\n  - {name: c, provider: openai, api_key_env: FILE_KEY}\n")
    env = RecordingEnv(
        {
            "OPENAI_API_KEY": "k1",
            "ANTHROPIC_API_KEY": "k2",
            "OLLAMA_MODELS": "llama3.2",
            "AILB_CONFIG": str(config),
            "FILE_KEY": "k3",
        }
    )
    load_settings(env)
    # Key variables named by the config file (api_key_env) are the only other reads, besides
    # the lowercase forms of the proxy variables (documented with them, as httpx reads them).
    lowercase_twins = {"https_proxy", "http_proxy", "no_proxy"}
    assert env.read - set(ENV_VARS) - lowercase_twins == {"FILE_KEY"}


# --- the config file section -----------------------------------------------------------------


def test_readme_example_config_file_loads(tmp_path: Path) -> None:
    m = re.search(r"### The config file.*?```yaml\n(.*?)```", README, re.DOTALL)
    assert m is not None
    path = tmp_path / "ailb.yaml"
    path.write_text(m.group(1))
    settings = load_settings(
        {"AILB_CONFIG": str(path), "OPENAI_API_KEY": "sk-a", "ANTHROPIC_API_KEY": "sk-b"}
    )
    names = [d.name for d in settings.deployments]
    # The environment's own openai/anthropic deployments come first, then the file's.
    assert names == ["openai", "anthropic", "openai-primary", "local-vllm", "claude", "demo"]
    assert set(settings.models) == {"gpt-4o-mini"}


def test_readme_example_error_message_is_the_real_one(tmp_path: Path) -> None:
    m = re.search(r"`(AILB_CONFIG ailb\.yaml: deployments\[1\]\.weight: [^`]+)`", README)
    assert m is not None
    path = tmp_path / "ailb.yaml"
    path.write_text(
        "deployments:\n  - {name: a, provider: mock}\n  - {name: b, provider: mock, weight: -1}\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_settings({"AILB_CONFIG": str(path)})
    # A code span cannot hold msgspec's backticks, so the README leaves them out.
    real = str(exc.value).replace(str(path), "ailb.yaml").replace("`", "")
    assert real == m.group(1)


def test_readme_deployment_field_table_lists_every_field_with_its_default() -> None:
    rows = section("Every deployment field")
    assert rows[0].startswith("| Field |")
    documented: dict[str, str] = {}
    for row in rows[2:]:
        names_cell, default_cell = (c.strip() for c in row.strip("|").split("|")[:2])
        for name in re.findall(r"`([a-z_0-9]+)`", names_cell):
            documented[name] = default_cell
    fields = {f.name: f for f in msgspec.structs.fields(DeploymentConfig)}
    assert set(documented) == set(fields)
    for name, f in fields.items():
        if f.required:
            assert documented[name] == "required", name
    plain = DeploymentConfig(name="x", provider="mock")
    for name in ("models", "aliases", "weight", "priority", "max_output_tokens", "headers"):
        value = msgspec.json.encode(getattr(plain, name)).decode()
        assert documented[name] == f"`{value}`", name
    for name in ("input_cost_per_1m", "output_cost_per_1m"):
        assert documented[name] == "none" and getattr(plain, name) is None
    assert documented["max_connections"] == f"`{plain.max_connections}`"
    t = plain.timeouts
    assert documented["timeouts"] == (
        f"`connect {t.connect:g}, first_byte {t.first_byte:g}, idle {t.idle:g}, total {t.total:g}`"
    )
    for name in ("api_key_env", "rpm", "tpm", "context_window"):
        assert documented[name] == "none" and getattr(plain, name) is None, name
    assert documented["mock"] == f"`mode {plain.mock.mode}`"
    assert documented["capabilities"] == "all `true`"
    assert all(msgspec.structs.asdict(plain.capabilities).values())
