"""Targeting by request content: ``match`` rules decoded from the request bytes.

A fault with ``match = {"partition": "2"}`` fires only on calls whose request
has partition 2. The request is decoded with the method's request message
class, found from the link's service descriptor (the generated ``nodes.pb``
modules), and only when a fault with match rules is active and its method
matches the call: the no-fault path stays a raw-bytes forward.

A rule ``FIELD=VALUE`` matches a request when

- FIELD is a top-level scalar field of the request and equals VALUE
  (a repeated scalar field: any element equals VALUE), or
- FIELD is not top-level but a scalar field of a message field one level
  down, and ANY element of it equals VALUE (Fetch's ``partitions[].partition``,
  CommitOffset's ``offsets[].partition``, Apply's ``orders[].account``).

Every rule of a fault must match (AND). VALUE is converted to the field's
type once, when the fault is added (int, bool ``true``/``false``, float,
string; bytes as UTF-8). A request that does not decode never matches.
"""

from __future__ import annotations

from typing import Any, Iterable

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from nodes.proxy.fault import InvalidFault
from nodes.proxy.links import LINKS, service_methods

_INTS = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
         FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
         FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED32,
         FieldDescriptor.TYPE_SFIXED64, FieldDescriptor.TYPE_ENUM}
_FLOATS = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}


def _is_repeated(f: FieldDescriptor) -> bool:
    return f.is_repeated


def request_descriptor(method: str) -> Descriptor:
    """The request message descriptor of a full method name ("/testbed.v1.Broker/Produce")."""
    service, name = method.lstrip("/").rsplit("/", 1)
    for svc in LINKS.values():
        if svc.full_name == service:
            return svc.methods_by_name[name].input_type
    raise KeyError(method)


def _paths(desc: Descriptor, name: str) -> list[tuple[FieldDescriptor | None, FieldDescriptor]]:
    """(parent message field or None, scalar field) pairs that FIELD ``name`` denotes."""
    top = desc.fields_by_name.get(name)
    if top is not None and top.type != FieldDescriptor.TYPE_MESSAGE:
        return [(None, top)]
    out = []
    for parent in desc.fields:
        if parent.type == FieldDescriptor.TYPE_MESSAGE:
            f = parent.message_type.fields_by_name.get(name)
            if f is not None and f.type != FieldDescriptor.TYPE_MESSAGE:
                out.append((parent, f))
    return out


def field_names(desc: Descriptor) -> list[str]:
    """Every name a match rule may use on requests of ``desc``, sorted."""
    names = {f.name for f in desc.fields if f.type != FieldDescriptor.TYPE_MESSAGE}
    for parent in desc.fields:
        if parent.type == FieldDescriptor.TYPE_MESSAGE:
            names.update(f.name for f in parent.message_type.fields
                         if f.type != FieldDescriptor.TYPE_MESSAGE)
    return sorted(names)


def _convert(field: FieldDescriptor, name: str, value: str) -> Any:
    """VALUE as the field's Python type. Raises: InvalidFault("match")."""
    try:
        if field.type in _INTS:
            return int(value, 0)
        if field.type in _FLOATS:
            return float(value)
        if field.type == FieldDescriptor.TYPE_BOOL:
            if value.lower() not in ("true", "false"):
                raise ValueError
            return value.lower() == "true"
        if field.type == FieldDescriptor.TYPE_BYTES:
            return value.encode()
        return value
    except ValueError:
        raise InvalidFault("match", f"{name}={value!r}: not a valid value for field "
                                    f"{field.full_name}") from None


class _MethodMatcher:
    """The compiled rules for one method: [(name, value, paths)]."""

    def __init__(self, method: str, rules: list[tuple[str, list[tuple[Any, Any, Any]]]]) -> None:
        self.cls = message_factory.GetMessageClass(request_descriptor(method))
        self.rules = rules

    def matches(self, request: bytes) -> bool:
        try:
            msg = self.cls.FromString(request)
        except DecodeError:
            return False
        return all(any(_path_has(msg, parent, field, value) for parent, field, value in paths)
                   for _, paths in self.rules)


def _path_has(msg: Message, parent: FieldDescriptor | None, field: FieldDescriptor, value: Any) -> bool:
    if parent is None:
        got = getattr(msg, field.name)
        return value in got if _is_repeated(field) else got == value
    if _is_repeated(parent):
        elements: Iterable[Message] = getattr(msg, parent.name)
    else:
        elements = [getattr(msg, parent.name)] if msg.HasField(parent.name) else []
    for el in elements:
        got = getattr(el, field.name)
        if (value in got) if _is_repeated(field) else (got == value):
            return True
    return False


class Matcher:
    """Compiled match rules of one fault on one link.

    Args:
        link: the proxy's link.
        method: the fault's full method name, or "" (every method of the link).
        rules: (FIELD, VALUE) pairs.

    Raises:
        InvalidFault("match"): a FIELD no request of ``method`` has (the
            message names the valid fields), or a VALUE of the wrong type.
    """

    def __init__(self, link: str, method: str, rules: Iterable[tuple[str, str]]) -> None:
        rules = list(rules)
        methods = [method] if method else service_methods(link)
        self.by_method: dict[str, _MethodMatcher] = {}
        for m in methods:
            desc = request_descriptor(m)
            compiled = []
            for name, value in rules:
                paths = _paths(desc, name)
                if not paths:
                    break
                compiled.append((name, [(p, f, _convert(f, name, value)) for p, f in paths]))
            else:
                self.by_method[m] = _MethodMatcher(m, compiled)
        if not self.by_method:
            for name, _ in rules:
                if not any(_paths(request_descriptor(m), name) for m in methods):
                    valid = sorted({n for m in methods for n in field_names(request_descriptor(m))})
                    where = method.rsplit("/", 1)[1] if method else f"any method of {link}"
                    raise InvalidFault("match", f"unknown field {name!r} for {where} "
                                                f"(valid fields: {', '.join(valid)})")
            raise InvalidFault("match", f"no method of {link} has every field of "
                                        f"{', '.join(n for n, _ in rules)}")

    def matches(self, method: str, request: bytes) -> bool:
        """True if the request of a call of ``method`` matches every rule (decodes it)."""
        m = self.by_method.get(method)
        return m is not None and m.matches(request)


def parse_rules(items: Iterable[str]) -> dict[str, str]:
    """["partition=2", ...] -> {"partition": "2"}. Raises: InvalidFault("match")."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidFault("match", f"expected FIELD=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out
