"""Generate AILB's Python modules from the .proto files under proto/ with grpcio-tools.

Run by the package build (hatch_build.py), so `uv sync` on a clean clone writes them; also
imported by the test that proves the installed modules match the .proto. Usable by hand:
`python proto/generate.py` (needs grpcio-tools, a dev dependency).

The .proto keeps its path `marchproxy/module_service.proto` (the name MarchProxy's tools and
reflection clients see), while the modules live in `ailb.control.proto`: protoc's one import
that follows the .proto's path is rewritten to the package's.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PROTO_FILE = "marchproxy/module_service.proto"
PACKAGE = "ailb.control.proto"
OUTPUT = PROTO_ROOT.parent / "src" / "ailb" / "control" / "proto"
GENERATED = ("module_service_pb2.py", "module_service_pb2.pyi", "module_service_pb2_grpc.py")
_IMPORT = re.compile(r"^from marchproxy import (module_service_pb2 as \w+)$", re.MULTILINE)


def render() -> dict[str, bytes]:
    """The generated modules' contents, by file name (nothing is written)."""
    from grpc_tools import protoc  # only needed when generating

    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(PROTO_ROOT / PROTO_FILE),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {PROTO_FILE}")
        out_dir = Path(tmp) / Path(PROTO_FILE).parent
        files = {name: (out_dir / name).read_bytes() for name in GENERATED}
    grpc_module = files["module_service_pb2_grpc.py"].decode()
    fixed, n = _IMPORT.subn(rf"from {PACKAGE} import \1", grpc_module)
    if n != 1:
        raise RuntimeError("protoc's import of module_service_pb2 was not found to rewrite")
    files["module_service_pb2_grpc.py"] = fixed.encode()
    return files


def write(out_dir: Path = OUTPUT) -> list[Path]:
    """Write the modules into `out_dir`; a file already up to date is left untouched (so its
    timestamp, and anything keyed on it, does not change)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in render().items():
        path = out_dir / name
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT):
        print(p)
