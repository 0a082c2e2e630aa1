"""Nodes (DESIGN.md §1) and runner mode."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from task_helpers import ghost_claim, outcomes

from ucore.stores.records import TaskState


def node_rows(data_dir: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(data_dir / "ucore.db") as conn:
        return [(r[0], r[1]) for r in conn.execute("SELECT id, role FROM nodes")]


async def test_service_node_and_service_alive(make_app: Any, tmp_path: Path) -> None:
    service = await make_app("service")
    client = await make_app("client")
    nodes = {n.id: n for n in await client.tasks.nodes()}
    me = nodes[service.ctx.node_id]
    assert me.role == "service" and me.pid == service.ctx.pid and me.host == service.ctx.host
    assert nodes[client.ctx.node_id].role == "client"
    assert await client.tasks.service_alive()
    assert not await service.tasks.service_alive()  # itself does not count

    await service.shutdown()
    assert not await client.tasks.service_alive()
    assert service.ctx.node_id not in {n.id for n in await client.tasks.nodes(live_only=False)}
    await client.shutdown()
    assert node_rows(tmp_path / "data") == []


async def test_a_dead_service_is_not_alive(make_app: Any) -> None:
    client = await make_app("client")
    task_id = await client.tasks.submit("sleep", {"seconds": 0})
    ghost = await ghost_claim(client, task_id)  # a "service" node whose process is gone
    assert ghost in {n.id for n in await client.tasks.nodes(live_only=False)}
    assert ghost not in {n.id for n in await client.tasks.nodes()}
    assert not await client.tasks.service_alive()


async def test_run_here_runs_only_that_task(make_app: Any) -> None:
    app = await make_app("client")
    other = await app.tasks.submit("sleep", {"seconds": 0.05})
    mine = await app.tasks.submit("sleep", {"seconds": 0.05})
    record = await asyncio.wait_for(app.tasks.run_here(mine), 5)
    assert record.id == mine and record.state is TaskState.COMPLETED
    assert record.result is not None and record.node_id == app.ctx.node_id
    await asyncio.sleep(0.3)
    assert (await app.tasks.get(other)).state is TaskState.PENDING
    assert await outcomes(app, other) == []


async def test_runner_role(make_app: Any) -> None:
    client = await make_app("client")
    queued = await client.tasks.submit("sleep", {"seconds": 0.05})
    runner = await make_app("runner")
    assert runner.tasks.pool is None  # a runner has no workers until it runs something
    mine = await runner.tasks.submit("sleep", {"seconds": 0.05})
    record = await asyncio.wait_for(runner.tasks.run_here(mine), 5)
    assert record.state is TaskState.COMPLETED
    assert (await runner.tasks.get(queued)).state is TaskState.PENDING


async def test_run_here_twice_in_one_process(make_app: Any) -> None:
    # runner mode keeps the ids it ran; a finished one must not hide the next one
    app = await make_app("client")
    first = await app.tasks.submit("sleep", {"seconds": 0.01})
    second = await app.tasks.submit("sleep", {"seconds": 0.01})
    third = await app.tasks.submit("sleep", {"seconds": 0.01})
    for task_id in (first, third):
        record = await asyncio.wait_for(app.tasks.run_here(task_id), 5)
        assert record.state is TaskState.COMPLETED
    assert (await app.tasks.get(second)).state is TaskState.PENDING
