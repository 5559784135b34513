"""Link faults through the proxies' control API (drop, delay, error, partition...)."""

from __future__ import annotations

import asyncio

from harness.nemesis.base import Nemesis
from harness.proxy_client import ProxyControlClient


class LinkNemesis(Nemesis):
    """``{"f": "link", "link": L, "for_ms": T, "fault": {kind, method, probability,
    count, after_calls, delay_ms, hold_ms, match: {FIELD: VALUE}, ...}}``: arm the
    fault on the link's proxy for T ms, then remove it (which delivers what a
    ``late`` or delayed ``duplicate`` fault still holds) and return how many
    times it fired. Without ``for_ms`` the fault stays armed until the final
    heal (its count limit ends it).

    With NATS, "producer-broker" and "processor-broker" stand for the client's TCP
    proxy to every server (the fault is a TCP toxic, nodes/tcpproxy): the fault goes
    on each, and the ok op sums ``fired`` (or lists ``fault_ids`` per link when armed)."""

    async def invoke(self, step: dict) -> dict:
        cluster = self.ctx.cluster
        proxies = cluster.link_proxies(step["link"])
        if not proxies:
            return {"skipped": "no proxy on this link (run without --no-proxy)"}
        if list(proxies) != [step["link"]]:
            return await self._on_group(proxies, step)
        spec = dict(step["fault"])
        kind = spec.pop("kind")
        async with ProxyControlClient(proxies[step["link"]].address) as px:
            fid = await px.add(kind, **_spec_kwargs(spec))
            if "for_ms" not in step:
                return {"fault_id": fid, "armed": True}
            try:
                await asyncio.sleep(step["for_ms"] / 1000)
                faults = {f["fault_id"]: f for f in await px.list()}
            finally:
                await px.remove(fid)
        f = faults.get(fid, {})
        return {"fault_id": fid, "matched": int(f.get("matched", 0)), "fired": int(f.get("fired", 0))}

    async def _on_group(self, proxies: dict, step: dict) -> dict:
        spec = dict(step["fault"])
        kind = spec.pop("kind")
        ids: dict[str, str] = {}
        clients = {link: ProxyControlClient(p.address) for link, p in proxies.items()}
        try:
            for link, px in clients.items():
                ids[link] = await px.add(kind, **_spec_kwargs(spec))
            if "for_ms" not in step:
                return {"fault_ids": ids, "armed": True}
            fired = matched = 0
            try:
                await asyncio.sleep(step["for_ms"] / 1000)
                for link, px in clients.items():
                    f = {x["fault_id"]: x for x in await px.list()}.get(ids[link], {})
                    fired, matched = fired + int(f.get("fired", 0)), matched + int(f.get("matched", 0))
            finally:
                for link, px in clients.items():
                    await px.remove(ids[link])
            return {"fault_ids": ids, "matched": matched, "fired": fired}
        finally:
            for px in clients.values():
                await px.close()

    async def heal(self) -> None:
        for p in self.ctx.cluster.proxies.values():
            if p.running:
                async with ProxyControlClient(p.address) as px:
                    await px.heal()


def _spec_kwargs(spec: dict) -> dict:
    rename = {"after_calls": "after"}
    return {rename.get(k, k): v for k, v in spec.items()}
