"""The fault table of one link: validation, add / remove / heal, and per-call decisions.

The table is the wrapper every fault kind shares (Toxiproxy's toxic
collection with its ``toxicity``): for each active fault, in order of
addition, a call that matches the fault's method counts as *matched*; from
the ``after_calls``-th match on it is *eligible*; an eligible call fires the
fault with ``probability`` (one draw from the link's generator when
0 < p < 1, none otherwise), at most ``count`` times. A fault with ``match``
rules (nodes/proxy/match.py) also needs the decoded request to match before
the call counts as matched; only such a fault decodes requests.

Determinism: the generator is ``random.Random(seed ^ crc32(link))`` (no
``hash()``, which Python salts per process), consulted only here and in
``Fault.draw``, synchronously when a call arrives. The same seed, faults and
call sequence therefore give the same decisions (same ``call`` numbers and
drawn parameters in faults.jsonl).
"""

from __future__ import annotations

import asyncio
import math
import random
import zlib
from typing import Any, Callable, Iterable, Mapping

from nodes.common.limits import MAX_FAULT_MATCH_RULES, MAX_FAULT_MS, short, too_long
from nodes.proxy.fault import Fault, InvalidFault, Spec
from nodes.proxy.faults import FAULTS
from nodes.proxy.history import FaultHistory
from nodes.proxy.links import LINKS, resolve_method
from nodes.proxy.match import Matcher


def link_seed(seed: int, link: str) -> int:
    """The seed of a link's generator: ``seed`` mixed with a stable checksum of its name."""
    return seed ^ zlib.crc32(link.encode())


def make_spec(link: str, *, kind: str, method: str = "", probability: float | None = None,
              count: int = 0, after_calls: int = 0, delay_ms: int = 0, jitter_ms: int = 0,
              side: str = "", code: str = "", spec_link: str = "", hold_ms: int = 0,
              match: Mapping[str, str] | None = None) -> Spec:
    """Validate FaultSpec fields for a proxy on ``link``.

    Raises:
        InvalidFault: naming the field: kind (unknown), link (not this proxy's),
            method (not of the link's service), probability (outside [0, 1]),
            count / after_calls / delay_ms / jitter_ms / hold_ms (negative), side,
            code, match (a field no request of the method has: the message
            lists the valid ones; a value of the wrong type).
    """
    if kind not in FAULTS:
        raise InvalidFault("kind", f"unknown fault kind {short(kind)} (one of {', '.join(FAULTS)})")
    if spec_link and spec_link != link:
        known = "a known link" if spec_link in LINKS else f"unknown (one of {', '.join(LINKS)})"
        raise InvalidFault("link", f"{short(spec_link)} is {known}, but this proxy serves {link!r}")
    p = 1.0 if probability is None else float(probability)
    if math.isnan(p) or not 0.0 <= p <= 1.0:
        raise InvalidFault("probability", f"must be in [0, 1], got {probability}")
    for name, value in (("count", count), ("after_calls", after_calls),
                        ("delay_ms", delay_ms), ("jitter_ms", jitter_ms), ("hold_ms", hold_ms)):
        if value < 0:
            raise InvalidFault(name, f"must be >= 0, got {value}")
        if name.endswith("_ms") and value > MAX_FAULT_MS:
            raise InvalidFault(name, f"must be <= {MAX_FAULT_MS} ms (one hour), got {value}")
    if match and (len(match) > MAX_FAULT_MATCH_RULES
                  or any(too_long(k, 256) or too_long(v, 256) for k, v in match.items())):
        raise InvalidFault("match", f"at most {MAX_FAULT_MATCH_RULES} rules, each key and value "
                                    "at most 256 bytes")
    spec = Spec(kind=kind, method=resolve_method(link, method), probability=p, count=count,
                after_calls=after_calls, delay_ms=delay_ms, jitter_ms=jitter_ms, side=side,
                code=code.upper(), hold_ms=hold_ms, match=tuple(sorted((match or {}).items())))
    FAULTS[kind].validate(spec)
    if spec.match:
        Matcher(link, spec.method, spec.match)  # raises InvalidFault("match")
    return spec


class ActiveFault:
    """One added fault with its counters."""

    __slots__ = ("fault_id", "spec", "fault", "matched", "fired", "added_after_call", "matcher")

    def __init__(self, fault_id: str, fault: Fault, added_after_call: int = 0,
                 matcher: Matcher | None = None) -> None:
        self.fault_id, self.fault, self.spec = fault_id, fault, fault.spec
        self.added_after_call = added_after_call
        self.matcher = matcher
        self.matched = 0
        self.fired = 0

    @property
    def exhausted(self) -> bool:
        return self.spec.count > 0 and self.fired >= self.spec.count

    def to_json(self) -> dict[str, Any]:
        return {"fault_id": self.fault_id, **self.spec.to_json(), "matched": self.matched,
                "fired": self.fired, "exhausted": self.exhausted}


class FaultTable:
    """The faults of one link and its seeded generator.

    Args:
        link: the link name (a key of ``LINKS``).
        seed: the run's seed.
        history: where firings and control events are recorded.
    """

    def __init__(self, link: str, seed: int, history: FaultHistory) -> None:
        self.link = link
        self.seed = seed
        self.rng = random.Random(link_seed(seed, link))
        self.history = history
        self.faults: dict[str, ActiveFault] = {}
        self.active: tuple[ActiveFault, ...] = ()
        """Faults that can still fire or still watch calls, in order of addition;
        empty = the lean path."""
        self.on_change: Callable[[], None] | None = None
        """Called when ``active`` turns empty or non-empty (the data port,
        nodes/proxy/fastpath.py, switches its connections)."""
        self._next_id = 1

    def _refresh(self) -> None:
        was = bool(self.active)
        self.active = tuple(f for f in self.faults.values()
                            if not f.exhausted or f.fault.watching)
        if self.on_change is not None and was != bool(self.active):
            self.on_change()

    def add(self, spec: Spec, calls_so_far: int = 0) -> str:
        """Add a validated fault; return its id ("f1", "f2"...).

        ``calls_so_far``: the link's call count now; calls up to it are in
        flight or done (used by :meth:`cut_in_flight`).
        """
        fault_id = f"f{self._next_id}"
        self._next_id += 1
        fault = FAULTS[spec.kind](spec)
        fault.bind(fault_id, self.history, self._refresh)
        matcher = Matcher(self.link, spec.method, spec.match) if spec.match else None
        self.faults[fault_id] = ActiveFault(fault_id, fault, calls_so_far, matcher)
        self.history.control("add", fault_id=fault_id, spec=spec.to_json())
        self._refresh()
        return fault_id

    def remove(self, fault_id: str) -> ActiveFault:
        """Remove one fault and return it (the caller then awaits :meth:`release`).

        Raises: KeyError if the id is unknown.
        """
        af = self.faults.pop(fault_id)
        self._refresh()
        self.history.control("remove", fault_id=fault_id)
        return af

    def heal(self) -> list[ActiveFault]:
        """Remove every fault; return them (the caller then awaits :meth:`release`)."""
        removed = list(self.faults.values())
        self.faults.clear()
        self._refresh()
        self.history.control("heal", removed=[af.fault_id for af in removed])
        return removed

    @staticmethod
    async def release(removed: Iterable[ActiveFault]) -> None:
        """Deliver what removed faults still hold (``late``, delayed ``duplicate``) and
        forward held ``reorder`` calls, now; waits (bounded) for the deliveries."""
        await asyncio.gather(*(af.fault.release() for af in removed))

    async def close(self) -> None:
        """Proxy stop: cancel every held request (recorded by its fault)."""
        await asyncio.gather(*(af.fault.close() for af in self.faults.values()))

    def forwarded(self, method: str, number: int) -> None:
        """Call ``number`` of ``method`` came back from upstream: tell watching faults."""
        for af in self.active:
            if af.fault.watching:
                af.fault.on_forwarded(method, number)

    def select(self, method: str, call: int,
               request: bytes = b"") -> list[tuple[ActiveFault, dict[str, Any]]]:
        """Decide which faults fire on call number ``call`` of ``method``; record them.

        Must be called synchronously when the call arrives (the generator's
        order is the calls' arrival order). ``request`` (raw bytes) is decoded
        only for a fault with match rules. Returns (fault, drawn params) pairs
        in order of addition.
        """
        fired: list[tuple[ActiveFault, dict[str, Any]]] = []
        for af in self.active:
            spec = af.spec
            if spec.method and spec.method != method:
                continue
            if af.exhausted:
                continue
            if af.matcher is not None and not af.matcher.matches(method, request):
                continue
            af.matched += 1
            if af.matched < spec.after_calls or af.exhausted:
                continue
            p = spec.probability
            if p <= 0.0 or (p < 1.0 and self.rng.random() >= p):
                continue
            af.fired += 1
            params = af.fault.draw(self.rng)
            fired.append((af, params))
            self.history.fault(method=method, fault=spec.kind, fault_id=af.fault_id, call=call,
                               action=af.fault.action, params=params)
        if fired and any(af.exhausted for af, _ in fired):
            self._refresh()
        return fired

    def cut_in_flight(self, method: str, call: int) -> bool:
        """True if a partition added while call ``call`` was upstream cuts its response.

        Records the cut ("black-holed-response") in the history. No random
        draw and no ``fired`` count: the cut follows from timing, not from a decision.
        """
        for af in self.active:
            if (af.fault.cuts_in_flight and call <= af.added_after_call
                    and (not af.spec.method or af.spec.method == method)):
                self.history.fault(method=method, fault=af.spec.kind, fault_id=af.fault_id,
                                   call=call, action="black-holed-response", params={})
                return True
        return False
