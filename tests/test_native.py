"""The compiled-module bookkeeping: which modules run compiled, and which builds are stale."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from ailb.native import PACKAGE, compiled_modules, stale_builds


def test_a_build_older_than_its_source_is_stale(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    source, built = package / "sub" / "mod.py", package / "sub" / "mod.cpython-311-x.so"
    fresh, fresh_built = package / "fresh.py", package / "fresh.cpython-311-x.so"
    for path in (source, built, fresh, fresh_built):
        path.write_text("")
    os.utime(built, (1_000, 1_000))
    os.utime(source, (2_000, 2_000))  # edited after the build
    os.utime(fresh, (1_000, 1_000))
    os.utime(fresh_built, (2_000, 2_000))
    (package / "shared__mypyc.cpython-311-x.so").write_text("")  # no source: never stale
    assert stale_builds(package) == ["pkg/sub/mod.py"]


def test_compiled_modules_are_the_imported_ones_built_beside_their_source() -> None:
    expected = []
    for built in PACKAGE.rglob("*.so"):
        source = built.with_name(built.name.split(".", 1)[0] + ".py")
        if source.exists():
            name = ".".join(("ailb", *source.relative_to(PACKAGE).with_suffix("").parts))
            importlib.import_module(name)
            expected.append(name)
    assert compiled_modules() == sorted(expected)  # [] where no compiler built any
