"""Click parameter types shared by the nodes' and the harness's command lines."""

from __future__ import annotations

import math

import click


class FiniteFloat(click.FloatRange):
    """A float option that refuses ``nan`` and ``inf`` (one line, exit code 2, like every
    bad flag): a NaN rate would reach result.json as the invalid JSON token ``NaN``.
    Takes FloatRange's ``min`` / ``max`` bounds."""

    name = "finite float"

    def _describe_range(self) -> str:
        """No bounds: nothing to say (click's FloatRange wrote "x<=None" in --help)."""
        if self.min is None and self.max is None:
            return ""
        return super()._describe_range()

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if rv is not None and not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv
