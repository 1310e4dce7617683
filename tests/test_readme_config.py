"""The README's configuration table says exactly what the code reads."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from ailb.config import ENV_VARS, EnvSettings, load_settings

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \| (.+?) \| (.+?) \|$")


def readme_rows() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in README.read_text().splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = (m.group(2).strip(), m.group(3).strip())
    return rows


def test_every_variable_is_documented_and_nothing_else():
    assert set(readme_rows()) == set(ENV_VARS)


def test_documented_defaults_match_the_code():
    rows = readme_rows()
    for var, (_, default, _) in ENV_VARS.items():
        shown = rows[var][0]
        assert shown == (f"`{default}`" if default else "(unset)"), var


def test_defaults_are_what_the_settings_hold():
    env = load_settings({}).env
    fields = {f.name for f in msgspec.structs.fields(EnvSettings)}
    for var, (field, default, _) in ENV_VARS.items():
        if field is None:
            continue
        assert field in fields, var
        value = getattr(env, field)
        if var == "MODULE_ID":
            assert value == ""  # resolved to ailb-<hostname> by Settings.module_id
            continue
        if value is None:
            assert default == "", var  # optional: unset by default
        elif isinstance(value, bool):
            assert str(value).lower() == default, var
        elif isinstance(value, float):
            assert value == float(default), var
        else:
            assert str(value) == default, var
