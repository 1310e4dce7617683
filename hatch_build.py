"""Build hook: the gRPC modules are generated from proto/ whenever the package is built.

`uv sync` builds AILB (editable) on every clean clone, so the generated modules, which are not
committed, always come from the .proto in the same checkout. An editable install reads them
from src/; a wheel gets them force-included (git-ignored files are otherwise left out).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class ProtoBuildHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        spec = importlib.util.spec_from_file_location(
            "ailb_proto_generate", Path(self.root) / "proto" / "generate.py"
        )
        assert spec is not None and spec.loader is not None
        generate = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(generate)
        root = Path(self.root)
        for path in generate.write():
            if version != "editable":
                build_data["force_include"][str(path)] = str(path.relative_to(root / "src"))
