"""partition: every matching call is black-holed until the fault is removed or healed.

A network partition between the caller and the upstream node: requests
never arrive, callers hang until their deadlines. Calls that were already
upstream when the partition came up lose their response (the upstream
executed them: action "black-holed-response" in faults.jsonl, not counted in
``fired``, no random draw). Calls already black-holed stay so (their requests
are lost); calls arriving after Heal or RemoveFault are forwarded again. Unlike ``drop-request`` it is meant without a count or
probability: "the link is down for a while".
"""

from __future__ import annotations

from typing import Any

from nodes.proxy.fault import Call, Fault, Forward


class Partition(Fault):
    kind = "partition"
    action = "black-holed"
    stat = "dropped"
    cuts_in_flight = True

    async def apply(self, call: Call, forward: Forward, params: dict[str, Any]) -> bytes:
        await call.hang()
