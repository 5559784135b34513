"""The primitives of the validation layer: strict reads of files, JSON and JSONL, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import orjson

OP_TYPES = ("invoke", "ok", "fail", "info")
MAX_JSON_BYTES = 256 * 1024 * 1024
"""Largest JSON document (not JSONL) the audit reads into memory (bytes)."""


class InputError(Exception):
    """A run directory lacks a file the audit needs, or holds an unreadable one.
    The message is one line: the file, then what is wrong."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """Strict JSON (NaN / Infinity refused). Raises: ValueError."""
    return json.loads(data, parse_constant=_no_constant)


def fast_loads(raw: bytes) -> Any:
    """:func:`loads` of one UTF-8 line, by orjson (strict RFC 8259 too: no NaN, no
    Infinity; about 3x faster) with the standard library as the fallback for what orjson
    refuses and Python reads (integers beyond 64 bits) or to raise the same errors.
    Raises: UnicodeDecodeError, ValueError."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return loads(raw.decode("utf-8"))


def read_bytes(path: Path, *, allow_empty: bool = False, limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of a regular file. Raises: InputError (missing, a directory, unreadable,
    empty unless ``allow_empty``, larger than ``limit`` bytes)."""
    path = Path(path)
    try:
        if path.is_dir():
            raise InputError(f"{path}: is a directory, expected a file")
        size = path.stat().st_size
        if size > limit:
            raise InputError(f"{path}: {size:,} bytes, more than the audit reads ({limit:,})")
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: missing") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data.strip() and not allow_empty:
        raise InputError(f"{path}: empty")
    return data


def read_json(path: Path) -> Any:
    """A JSON document (strict). Raises: InputError (see read_bytes; not UTF-8, not JSON)."""
    data = read_bytes(path)
    try:
        return loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 (byte {e.start})") from None
    except ValueError as e:
        raise InputError(f"{path}: not valid JSON, truncated or damaged ({e})") from None


def json_object(path: Path, required: dict[str, type | tuple[type, ...]]) -> dict:
    """A JSON object with ``required`` keys of the given types (bool never counts as int).
    Raises: InputError naming the key."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    for key, types in required.items():
        if key not in obj:
            raise InputError(f"{path}: no {key!r} field")
        if not _is(obj[key], types):
            raise InputError(f"{path}: {key!r} should be {_names(types)}, got {obj[key]!r:.60}")
    return obj


def _is(value: Any, types: type | tuple[type, ...]) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _names(types: type | tuple[type, ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join({int: "an integer", str: "a string", dict: "an object", list: "a list",
                        bool: "true/false", float: "a number", type(None): "null"}.get(t, t.__name__)
                       for t in types)


def jsonl_objects(path: Path, *, allow_torn_tail: bool = True) -> Iterator[tuple[int, dict]]:
    """(line number, object) per line of a JSONL file. A blank line is skipped; the last line
    may be torn (no newline, not JSON) when ``allow_torn_tail``; any other bad line is an error.
    Raises: InputError naming the line."""
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: missing") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    with f:
        n = 0
        try:
            for raw in f:
                n += 1
                if not raw.strip():
                    continue
                try:
                    obj = fast_loads(raw)
                except (UnicodeDecodeError, ValueError) as e:
                    if allow_torn_tail and not raw.endswith(b"\n"):
                        return  # torn by a kill -9 in the middle of a write
                    what = "not UTF-8" if isinstance(e, UnicodeDecodeError) else "not a JSON line"
                    raise InputError(f"{path}: line {n} is {what} (damaged or not this file's format)") \
                        from None
                if not isinstance(obj, dict):
                    raise InputError(f"{path}: line {n} is not a JSON object")
                yield n, obj
        except OSError as e:
            raise InputError(f"{path}: cannot read at line {n + 1} ({e.strerror or e})") from None
