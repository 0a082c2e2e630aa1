"""Config drift between processes (issue 6): every process sharing the database announces a
hash of each schedule's definition; status shows a schedule whose definition differs between
live processes, naming each process and its hash.
"""

from __future__ import annotations

from typing import Any

from sched_helpers import DEFAULT_NAMES, START, AppFactory, idle, tick_schedule

from ucore.app import App
from ucore.testing import FakeClock


async def drift_of(app: App) -> dict[str, tuple[dict[str, Any], ...]]:
    return {s.name: s.drift for s in await app.scheduler.status()}


def hash_of(app: App, name: str = "tick") -> str:
    return app.scheduler.schedules[name].definition_hash


async def test_different_definitions_show_drift_in_both_processes(apps: AppFactory) -> None:
    clock = FakeClock(START)
    service = await apps(apps.config({"tick": tick_schedule()}), clock)
    client = await apps(
        apps.config({"tick": tick_schedule(interval_seconds=120)}), clock, role="client"
    )
    await idle(clock)
    assert hash_of(service) != hash_of(client)

    for me, other in ((service, client), (client, service)):
        drift = await drift_of(me)
        entries = drift["tick"]
        by_node = {e["node"]: e for e in entries}
        assert set(by_node) == {me.ctx.node_id, other.ctx.node_id}
        assert by_node[other.ctx.node_id]["hash"] == hash_of(other)
        assert by_node[me.ctx.node_id]["hash"] == hash_of(me)
        assert by_node[other.ctx.node_id]["role"] == other.role.value
        assert by_node[other.ctx.node_id]["pid"] == other.ctx.pid
        for name in DEFAULT_NAMES:  # same definitions everywhere: no drift
            assert drift[name] == (), name
        tick = next(s for s in await me.scheduler.status() if s.name == "tick")
        assert tick.to_json()["drift"] == list(entries)

    # the client takes the service's definition (a live change): the drift is gone
    await client.scheduler.apply(apps.config({"tick": tick_schedule()}))
    assert hash_of(client) == hash_of(service)
    assert (await drift_of(service))["tick"] == ()
    assert (await drift_of(client))["tick"] == ()


async def test_identical_definitions_no_drift(apps: AppFactory) -> None:
    clock = FakeClock(START)
    cfg = apps.config({"tick": tick_schedule(), "other": tick_schedule(interval_seconds=300)})
    first = await apps(cfg, clock)
    second = await apps(cfg, clock)
    client = await apps(cfg, clock, role="client")
    await idle(clock, 2)
    nodes = await first.tasks.nodes()
    assert {n.id for n in nodes} >= {first.ctx.node_id, second.ctx.node_id, client.ctx.node_id}
    for app in (first, second, client):
        drift = await drift_of(app)
        assert set(drift) == {*DEFAULT_NAMES, "tick", "other"}
        assert all(entries == () for entries in drift.values()), drift


async def test_a_process_that_has_gone_no_longer_counts(apps: AppFactory) -> None:
    clock = FakeClock(START)
    service = await apps(apps.config({"tick": tick_schedule()}), clock)
    client = await apps(apps.config({"tick": tick_schedule(seconds=1)}), clock, role="client")
    await idle(clock)
    assert (await drift_of(service))["tick"] != ()
    await client.shutdown()
    apps.apps.remove(client)
    assert (await drift_of(service))["tick"] == ()
