"""The Dockerfile, read without Docker (no engine here): the properties the image must have, and
the build steps it runs, replayed with uv on exactly the files it copies."""

from __future__ import annotations

import fnmatch
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            found.append([])
        found[-1].append(ins)
    return found


def args_of(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [rest for ins, rest in stage if ins == name]


def test_multi_stage_builder_then_a_slim_runtime() -> None:
    builder, runtime = stages()
    assert builder[0][1].endswith(" AS builder")
    assert "slim" in builder[0][1] and "slim" in runtime[0][1]
    # The same Python in both: the venv's interpreter links point at it.
    assert builder[0][1].split()[0] == runtime[0][1].split()[0]
    assert "--from=builder /app/.venv /app/.venv" in args_of(runtime, "COPY")
    # Only the venv crosses over: no sources, no build tools.
    assert all(c.startswith("--from=builder /app/.venv") for c in args_of(runtime, "COPY"))


def test_builder_installs_from_the_lock_without_dev_dependencies() -> None:
    builder = stages()[0]
    syncs = [r for r in args_of(builder, "RUN") if "uv sync" in r]
    assert len(syncs) == 2  # dependencies (a cached layer), then the project
    for command in syncs:
        assert "--locked" in command and "--no-dev" in command
    assert "--no-editable" in syncs[-1]
    assert "MiniLM().embed" in syncs[-1]  # the shipped model loads offline, at build time


def test_runtime_runs_unprivileged_with_health_volume_and_ports() -> None:
    runtime = stages()[-1]
    users = args_of(runtime, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    [health] = args_of(runtime, "HEALTHCHECK")
    assert "/livez" in health and "HTTP_PORT" in health
    assert args_of(runtime, "VOLUME") == ["/app/ailb_memory"]
    # A new volume copies the directory's mode: the data directory is the owner's alone.
    assert any("mkdir -p -m 0700 /app/ailb_memory" in r for r in args_of(runtime, "RUN"))
    assert "AILB_DATA_DIR=/app/ailb_memory" in " ".join(args_of(runtime, "ENV"))
    assert args_of(runtime, "EXPOSE") == ["8080 50051"]
    assert args_of(runtime, "ENTRYPOINT") == ['["ailb"]']
    assert args_of(runtime, "CMD") == ['["serve"]']
    assert args_of(runtime, "STOPSIGNAL") == ["SIGTERM"]


def copied_sources() -> list[str]:
    """What the build COPYs from the context (not from another stage)."""
    sources: list[str] = []
    for stage in stages():
        for rest in args_of(stage, "COPY"):
            words = [w for w in shlex.split(rest) if not w.startswith("--")]
            if "--from=" not in rest:
                sources += words[:-1]
    return sources


def ignored(path: str) -> bool:
    """.dockerignore's verdict (last matching pattern wins; `!` re-includes)."""
    verdict = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!")
        if pattern == "**" or fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            verdict = not negate
    return verdict


def test_every_copied_file_exists_and_is_in_the_build_context() -> None:
    sources = copied_sources()
    assert {"pyproject.toml", "uv.lock", "README.md", "hatch_build.py", "proto", "src"} <= set(
        sources
    )
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not ignored(src), f"{src} is excluded by .dockerignore"
    assert ignored("tests") and ignored(".venv") and ignored("bench")


def test_the_image_build_steps_work_on_the_copied_files(tmp_path: Path) -> None:
    """The builder stage's two `uv sync` runs, replayed on a copy of only what the Dockerfile
    copies (from uv's cache: no network): AILB installs as a wheel with its generated gRPC
    modules, without dev tools, and the embedder loads."""
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    if not os.access(uv, os.X_OK):
        pytest.skip("uv is not installed (make install puts it in .tools/)")
    context = tmp_path / "context"
    context.mkdir()
    for src in copied_sources():
        if (ROOT / src).is_dir():
            shutil.copytree(
                ROOT / src,
                context / src,
                ignore=shutil.ignore_patterns("__pycache__", "*_pb2*.py", "*_pb2*.pyi"),
            )
        else:
            shutil.copy(ROOT / src, context / src)
    venv = tmp_path / "venv"
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_OFFLINE": "1",
    }
    for command in [r for r in args_of(stages()[0], "RUN") if "uv sync" in r]:
        sync = [uv, *command.split("&&")[0].split()[1:]]  # uv sync ... as the RUN says
        done = subprocess.run(sync, cwd=context, env=env, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert (site / "ailb" / "control" / "proto" / "module_service_pb2_grpc.py").exists()
    assert not (site / "pytest").exists() and not (site / "grpc_tools").exists()
    assert not (site / "torch").exists()
    check = "from ailb.embeddings.minilm import MiniLM; print(MiniLM().embed(['ok']).shape)"
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", check], capture_output=True, timeout=120
    )
    assert done.stdout.strip() == b"(1, 384)", done.stderr.decode()
