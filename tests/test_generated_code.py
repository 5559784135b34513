"""The committed gRPC code matches proto/ (regenerate with ./run.sh gen)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_fresh():
    r = subprocess.run([sys.executable, "proto/generate.py", "--check"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
