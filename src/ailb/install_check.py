"""`ailb check-install`: look for `.pth` files that should not be in the environment.

Python runs every line of a `.pth` file in site-packages that starts with `import` at each
interpreter start-up, before any of our code: the way the malicious LiteLLM 1.82.7/1.82.8
releases ran (March 2026). A clean AILB environment holds only the `.pth` files listed in
ALLOWED -- the editable install's path file and setuptools' distutils shim -- each with
exactly the content that tool writes. Anything else is reported, with what it would run.
"""

from __future__ import annotations

import argparse
import re
import site
import sys
import sysconfig
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

# setuptools' distutils-precedence.pth, as every setuptools since 60 writes it (one line).
_DISTUTILS_SHIM = (
    "import os; var = 'SETUPTOOLS_USE_DISTUTILS'; "
    "enabled = os.environ.get(var, 'local') == 'local'; "
    "enabled and __import__('_distutils_hack').add_shim(); "
)
_SRC = Path(__file__).resolve().parent.parent  # the directory `ailb` is imported from


def _only_paths_to_this_source(text: str) -> str | None:
    """An editable install of AILB: plain path lines, each to the source tree it runs from."""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith(("import ", "import\t")):
            return f"runs code: {line.strip()[:120]}"
        if Path(line.strip()).resolve() != _SRC:
            return f"adds {line.strip()!r} to sys.path (AILB's source is {_SRC})"
    return None


def _is_distutils_shim(text: str) -> str | None:
    if text.strip() == _DISTUTILS_SHIM.strip():
        return None
    return "not the content setuptools writes"


# file name pattern -> (what it is, a check of its content returning a problem or None)
ALLOWED: dict[str, tuple[str, Callable[[str], str | None]]] = {
    r"_editable_impl_ailb\.pth": ("AILB's editable install", _only_paths_to_this_source),
    r"__editable__\.ailb-[\w.]+\.pth": ("AILB's editable install", _only_paths_to_this_source),
    r"ailb\.pth": ("AILB's editable install", _only_paths_to_this_source),
    r"distutils-precedence\.pth": ("setuptools' distutils shim", _is_distutils_shim),
}


@dataclass(frozen=True)
class Finding:
    path: Path
    expected: bool
    note: str  # what it is, or what is wrong with it


def site_packages() -> list[Path]:
    """The directories whose `.pth` files this interpreter processes at start-up."""
    dirs = [sysconfig.get_paths()[k] for k in ("purelib", "platlib")]
    dirs += site.getsitepackages()
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    seen: dict[Path, None] = {}
    for d in dirs:
        p = Path(d)
        if p.is_dir():
            seen.setdefault(p.resolve())
    return list(seen)


def check(dirs: Iterable[Path]) -> list[Finding]:
    findings = []
    for d in dirs:
        for path in sorted(d.glob("*.pth")):
            try:
                text = path.read_text(errors="replace")
            except OSError as e:
                findings.append(Finding(path, False, f"unreadable: {e}"))
                continue
            findings.append(_judge(path, text))
    return findings


def _judge(path: Path, text: str) -> Finding:
    for pattern, (what, problem_in) in ALLOWED.items():
        if re.fullmatch(pattern, path.name):
            problem = problem_in(text)
            return Finding(path, problem is None, what if problem is None else problem)
    runs = [line.strip() for line in text.splitlines() if line.startswith(("import ", "import\t"))]
    note = f"runs code at every Python start-up: {runs[0][:120]}" if runs else "adds sys.path"
    return Finding(path, False, f"not on the allow-list; {note}")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check-install",
        help="look for unexpected .pth files (code run at every Python start-up)",
    )
    p.add_argument(
        "--site-packages",
        action="append",
        type=Path,
        help="directory to check instead of this interpreter's (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    dirs = args.site_packages or site_packages()
    findings = check(dirs)
    print(f"checked {len(findings)} .pth file(s) in: {', '.join(str(d) for d in dirs)}")
    for f in findings:
        print(f"{'ok  ' if f.expected else 'UNEXPECTED'}  {f.path}  ({f.note})")
    bad = [f for f in findings if not f.expected]
    if bad:
        print(
            f"{len(bad)} unexpected .pth file(s): find which package installed each "
            "(pip show -f / the RECORD files) before trusting this environment",
            file=sys.stderr,
        )
        return 1
    return 0
