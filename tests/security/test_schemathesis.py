"""schemathesis against the OpenAPI document the gateway serves, every operation, with
authentication on: no 5xx, and every answer conforms to the document (status codes, content
types, bodies -- streamed events included -- and headers); what the document says is invalid is
refused, an unknown method gets 405 with `Allow`, a request without the key gets 401.

The run is bounded: deterministic generation (the same cases every run) and few examples per
operation, about 1,500 requests in 10 s. AILB_FUZZ_EXAMPLES=<n> runs a deeper search, seeded
anew each time (the seed is in the output).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
ST = str(Path(sys.executable).with_name("st"))
MASTER = "master-key-for-the-schemathesis-run"
CONFIG = """
deployments:
  - name: demo
    provider: mock
    models: [mock]
    embedding_models: [mock-embed]
    mock: {chunks: 3}
"""


def run_st(gw: Any, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    examples = os.environ.get("AILB_FUZZ_EXAMPLES")
    if examples:  # a deeper search, seeded anew each time (the seed is in the output)
        extra = ["--max-examples", examples, "--seed", str(time.time_ns() % 2**32)]
    else:  # the suite's run: the same cases every time
        extra = ["--generation-deterministic"]
    return subprocess.run(
        [
            ST,
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "--no-color",
            "run",
            f"{gw.url}/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            "use_after_free",  # DELETE /api/keys/{id} revokes; the record stays, by design
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path / "report"),
            *args,
            *extra,
        ],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),  # the hooks module: tests.security.st_hooks
            "AILB_TEST_MASTER_KEY": MASTER,
        },
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_every_operation_conforms_to_the_served_schema(
    gateway_factory: Any, tmp_path: Path
) -> None:
    gw = gateway_factory(CONFIG, {"AILB_MASTER_KEY": MASTER, "ENABLE_RAG": "true"})
    started = time.monotonic()
    result = run_st(gw, tmp_path, "--max-examples", "8")
    took = time.monotonic() - started
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    # It really tested every operation (the document lists 25 today; more is fine).
    selected = re.search(r"Selected: (\d+)/(\d+)", out)
    assert selected and selected[1] == selected[2] and int(selected[2]) >= 25, out
    summary = out[out.find("SUMMARY") :]
    assert "Tested: " in summary and "❌" not in summary, out
    print(f"schemathesis: {took:.1f} s\n{summary}")


@pytest.mark.parametrize("removed", ["a documented status", "the Allow header"])
def test_the_run_fails_when_the_gateway_breaks_its_schema(
    gateway_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, removed: str
) -> None:
    """The check above can fail: with a status the document does not list, or a 405 whose
    `Allow` header is wrong, the same run reports it."""
    import ailb.app

    if removed == "a documented status":
        monkeypatch.setattr(
            ailb.app, "_chat_operation", _without_status(ailb.app._chat_operation, "404")
        )
    else:
        monkeypatch.setattr(ailb.app, "_allowed_methods", lambda request: "GET")
    gw = gateway_factory(CONFIG, {"AILB_MASTER_KEY": MASTER})
    include = ["--include-path", "/v1/chat/completions", "--max-examples", "5"]
    result = run_st(gw, tmp_path, *include)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert ("Undocumented status code" if removed == "a documented status" else "Allow") in out


def _without_status(make: Any, status: str) -> Any:
    import dataclasses

    def patched() -> Any:
        op = make()
        return dataclasses.replace(op, errors=tuple(e for e in op.errors if str(e) != status))

    return patched
