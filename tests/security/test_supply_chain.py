"""Supply chain: every dependency bounded and locked with hashes, and no unexpected `.pth`
file (code Python runs at every start-up) in the environment (`ailb check-install`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import ailb
from ailb.install_check import check

ROOT = Path(__file__).resolve().parent.parent.parent
AILB = str(Path(sys.executable).with_name("ailb"))
SHIM = (
    "import os; var = 'SETUPTOOLS_USE_DISTUTILS'; enabled = os.environ.get(var, 'local') == "
    "'local'; enabled and __import__('_distutils_hack').add_shim(); \n"
)
SOURCE = str(Path(ailb.__file__).resolve().parent.parent)


def check_install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AILB, "check-install", *args], capture_output=True, text=True, timeout=60
    )


def test_this_environment_has_only_the_expected_pth_files() -> None:
    result = check_install()
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "UNEXPECTED" not in result.stdout
    assert result.stdout.startswith("checked ")
    found = [line for line in result.stdout.splitlines() if line.startswith("ok")]
    # uv's editable install of AILB writes one .pth (its path): really looked at, not skipped.
    assert any("_editable_impl_ailb.pth" in line for line in found), result.stdout


def test_unexpected_or_altered_pth_files_are_reported(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "distutils-precedence.pth").write_text(SHIM)
    (good / "_editable_impl_ailb.pth").write_text(SOURCE + "\n")
    assert check_install("--site-packages", str(good)).returncode == 0

    bad = tmp_path / "bad"
    bad.mkdir()
    # What the malicious LiteLLM releases shipped: a .pth that runs code at start-up.
    (bad / "litellm_init.pth").write_text(
        "import os, subprocess; subprocess.Popen(['python', '-c', 'steal()'])\n"
    )
    tampered = SHIM + "import base64; exec(base64.b64decode('cHJpbnQoMSk='))\n"
    (bad / "distutils-precedence.pth").write_text(tampered)
    (bad / "_editable_impl_ailb.pth").write_text("/tmp/elsewhere/src\n")
    (bad / "ailb.pth").write_text("import evil\n")
    (bad / "extra-paths.pth").write_text("/opt/shadow\n")
    result = check_install("--site-packages", str(good), "--site-packages", str(bad))
    out = result.stdout
    print(out)
    assert result.returncode == 1
    flagged = {line.split()[1] for line in out.splitlines() if line.startswith("UNEXPECTED")}
    assert flagged == {str(bad / n) for n in (
        "litellm_init.pth", "distutils-precedence.pth", "_editable_impl_ailb.pth", "ailb.pth",
        "extra-paths.pth")}  # fmt: skip
    assert "runs code at every Python start-up: import os, subprocess" in out
    assert "not the content setuptools writes" in out
    assert "/tmp/elsewhere/src" in out and "runs code: import evil" in out
    assert all(f.expected for f in check([good]))


def requirements() -> list[tuple[str, str]]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    out = [("project.dependencies", r) for r in meta["project"]["dependencies"]]
    for group, reqs in meta.get("dependency-groups", {}).items():
        out += [(f"dependency-groups.{group}", r) for r in reqs if isinstance(r, str)]
    out += [("build-system.requires", r) for r in meta["build-system"]["requires"]]
    return out


def test_every_dependency_has_an_upper_bound() -> None:
    found = requirements()
    assert len(found) > 20  # the file was really read
    unbounded = []
    for where, text in found:
        spec = Requirement(text).specifier
        if not any(s.operator in ("<", "<=", "==", "===", "~=") for s in spec):
            unbounded.append(f"{where}: {text}")
    assert not unbounded, "no upper bound:\n" + "\n".join(unbounded)


def test_every_locked_package_comes_with_hashes() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = lock["package"]
    assert len(packages) > 50
    # Kept out by [tool.uv] override-dependencies: in the graph, never downloaded (no files).
    never = {o["name"] for o in lock["manifest"]["overrides"] if "never" in o.get("marker", "")}
    missing = []
    for p in packages:
        if "registry" not in p.get("source", {}):
            continue  # the project itself (editable)
        files = ([p["sdist"]] if "sdist" in p else []) + p.get("wheels", [])
        if not files and p["name"] in never:
            continue
        if not files or not all(str(f.get("hash", "")).startswith("sha256:") for f in files):
            missing.append(f"{p['name']} {p.get('version')}")
    assert not missing, "locked without hashes: " + ", ".join(missing)


def test_the_lock_file_matches_pyproject() -> None:
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    if not Path(uv).exists():
        pytest.skip("uv is not installed (make install puts it in .tools/)")
    result = subprocess.run(
        [uv, "lock", "--check", "--offline"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
