"""Which of AILB's modules run compiled (mypyc, built by `make install` where a C compiler is
present) and whether any compiled one is older than its source.

The compiled modules are listed in the Makefile (NATIVE). What differs once compiled, found the
hard way: a class deriving from a Python class (an APIError, say) does not override the base's
class attributes, so such classes live in uncompiled modules; fixed-size tuples are rebuilt
when passed around, so their identity (`is`) means nothing; methods of compiled classes cannot
be replaced on an instance (tests patch behaviour through attributes instead)."""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def compiled_modules() -> list[str]:
    """The imported ailb modules that run as compiled C."""
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name.startswith("ailb.") and str(getattr(module, "__file__", "")).endswith(".so")
    )


def stale_builds(package: Path = PACKAGE) -> list[str]:
    """Compiled modules older than their source: Python would import them instead of the
    edited source (`make native` rebuilds them)."""
    stale = []
    for built in package.rglob("*.so"):
        source = built.with_name(built.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > built.stat().st_mtime:
            stale.append(str(source.relative_to(package.parent)))
    return sorted(stale)
