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

# Lazy storage (--storage lazy, Jepsen LazyFS-like) needs FUSE: Debian's fuse3 (fusermount3,
# libfuse3). Installed here when root and missing; tried once per venv; never fatal.
ensure_fuse() {
    command -v fusermount3 >/dev/null 2>&1 && return 0
    [[ -f "$VENV/.fuse3-tried" ]] && return 0
    touch "$VENV/.fuse3-tried"
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "run.sh: installing fuse3 (for --storage lazy)" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3; } >/dev/null 2>&1 \
            || echo "run.sh: could not install fuse3; --storage lazy is unavailable and its tests skip" >&2
    else
        echo "run.sh: no fusermount3; --storage lazy needs Debian's fuse3 (as root: apt-get install fuse3)" >&2
    fi
}

# --broker mosquitto needs Debian's mosquitto (the MQTT broker). Installed here when root and
# missing; tried once per venv; never fatal (its tests skip, saying how to install it).
ensure_mosquitto() {
    command -v mosquitto >/dev/null 2>&1 && return 0
    [[ -x /usr/sbin/mosquitto ]] && return 0
    [[ -f "$VENV/.mosquitto-tried" ]] && return 0
    touch "$VENV/.mosquitto-tried"
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "run.sh: installing mosquitto (for --broker mosquitto)" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; } >/dev/null 2>&1 \
            || echo "run.sh: could not install mosquitto; --broker mosquitto is unavailable and its tests skip" >&2
    else
        echo "run.sh: no mosquitto; --broker mosquitto needs Debian's mosquitto (as root: apt-get install mosquitto)" >&2
    fi
}

bootstrap
CALLER_CWD="$PWD"
ensure_fuse
ensure_mosquitto
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
