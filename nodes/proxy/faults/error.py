"""error: a chosen gRPC status code is returned without forwarding.

The upstream never sees the call (a definite failure). ``code`` is a
grpc.StatusCode name; UNAVAILABLE when omitted. OK is refused: an "error"
that answers OK would have to invent a response.
"""

from __future__ import annotations

from typing import Any

import grpc

from nodes.common.limits import short
from nodes.proxy.fault import Call, Fault, Forward, InvalidFault, Spec

DEFAULT_CODE = "UNAVAILABLE"


def status_code(name: str) -> grpc.StatusCode:
    """The grpc.StatusCode called ``name`` (case-insensitive). Raises: InvalidFault("code")."""
    code = grpc.StatusCode.__members__.get((name or DEFAULT_CODE).upper())
    if code is None or code is grpc.StatusCode.OK:
        names = ", ".join(n for n in grpc.StatusCode.__members__ if n != "OK")
        raise InvalidFault("code", f"unknown or non-error status code {short(name)} (one of {names})")
    return code


class Error(Fault):
    kind = "error"
    action = "errored"
    stat = "errored"

    @classmethod
    def validate(cls, spec: Spec) -> None:
        status_code(spec.code)

    def draw(self, rng) -> dict[str, Any]:
        return {"code": status_code(self.spec.code).name}

    async def apply(self, call: Call, forward: Forward, params: dict[str, Any]) -> bytes:
        await call.context.abort(grpc.StatusCode[params["code"]],
                                 f"injected by proxy on {call.link}")
        raise AssertionError("unreachable")  # context.abort raises
