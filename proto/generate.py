"""Generate the Python gRPC code for proto/nodes/pb/*.proto into nodes/pb/.

The -I root (proto/) mirrors the Python package path (nodes/pb), so the
generated modules import each other as ``from nodes.pb import events_pb2``.

Usage:
    python proto/generate.py            # (re)write nodes/pb/*_pb2*.py
    python proto/generate.py --check    # exit 1 if the committed code is stale
"""

from __future__ import annotations

import filecmp
import pathlib
import sys
import tempfile

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = pathlib.Path("nodes") / "pb"


def generate(out_root: pathlib.Path) -> list[pathlib.Path]:
    """Run protoc for every .proto file; return the generated files' paths relative to out_root."""
    protos = sorted((PROTO_ROOT / PACKAGE).glob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p.relative_to(out_root) for p in (out_root / PACKAGE).glob("*_pb2*.py*"))


def main() -> int:
    if "--check" in sys.argv[1:]:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = generate(pathlib.Path(tmp))
            committed = sorted(p.relative_to(ROOT) for p in (ROOT / PACKAGE).glob("*_pb2*.py*"))
            stale = [str(p) for p in fresh if not (ROOT / p).exists()
                     or not filecmp.cmp(pathlib.Path(tmp) / p, ROOT / p, shallow=False)]
            extra = [str(p) for p in committed if p not in fresh]
            if stale or extra:
                print("generated code is stale; run: python proto/generate.py", file=sys.stderr)
                for p in stale + extra:
                    print(f"  {p}", file=sys.stderr)
                return 1
        return 0
    for p in generate(ROOT):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
