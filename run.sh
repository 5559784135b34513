#!/usr/bin/env bash
# Entry point: bootstraps .venv on first use, then runs a command.
#   ./run.sh [OPTIONS]  run the default fault campaign (testbed campaign [OPTIONS])
#   ./run.sh up         launch a local cluster and stream a workload through it
#   ./run.sh test       run the test suite (./run.sh test --all includes slow tests)
#   ./run.sh gen        regenerate gRPC code from proto/
#   ./run.sh ARGS...    testbed ARGS... (see ./run.sh --help)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${TESTBED_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.installed-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"

bootstrap() {
    if [[ ! -x "$PY" ]]; then
        echo "run.sh: creating virtual environment in $VENV" >&2
        python3 -m venv "$VENV" || { echo "run.sh: python3 -m venv failed; install python3 (>=3.11) with venv" >&2; exit 2; }
    fi
    if [[ ! -f "$STAMP" ]]; then
        echo "run.sh: installing dependencies (pip install -e .[test])" >&2
        "$PY" -m pip install --quiet --disable-pip-version-check -e "$ROOT[test]" >&2 \
            || { echo "run.sh: dependency install failed (see pip output above)" >&2; exit 2; }
        rm -f "$VENV"/.installed-*
        touch "$STAMP"
    fi
}

bootstrap
CALLER_CWD="$PWD"
cd "$ROOT"
cmd="${1:-campaign}"
case "$cmd" in
    test)
        shift
        args=()
        for a in "$@"; do
            if [[ "$a" == "--all" ]]; then args+=(-m ""); else args+=("$a"); fi
        done
        exec "$PY" -m pytest "${args[@]}"
        ;;
    gen)
        exec "$PY" proto/generate.py
        ;;
    *)
        # No command, or options only (./run.sh --events 5000): the default campaign.
        if [[ $# -eq 0 ]] || [[ "$1" == -* && "$1" != "-h" && "$1" != "--help" ]]; then
            set -- campaign "$@"
        fi
        # Relative paths in ARGS are the caller's: testbed goes back there (harness/cli.py).
        TESTBED_CWD="$CALLER_CWD" exec "$VENV/bin/testbed" "$@"
        ;;
esac
