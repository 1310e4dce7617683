"""`make test` on a fresh clone passes with nothing beside it: no test reads outside the
repository (fixtures are copied in, e.g. tests/embeddings/fixtures)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARENTS = re.compile(r"\.parents\[(\d+)\]")
OUTSIDE = re.compile(r"""["'](?:\.\./)+shared|/shared/fixtures""")


def test_no_test_reads_outside_the_repository() -> None:
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.resolve() == Path(__file__).resolve():
            continue  # its patterns name what they look for
        text = path.read_text(encoding="utf-8")
        depth = len(path.relative_to(ROOT).parts) - 1  # parents[depth] is the root
        for m in PARENTS.finditer(text):
            if int(m.group(1)) > depth:
                offenders.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    assert not offenders, offenders
