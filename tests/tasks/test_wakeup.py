"""The SQLite store's cross-process wake-up: a datagram per commit to every other node, own
commits never looking foreign, and a service that needs no poll to see a submit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from task_helpers import finished, wait_until

from ucore.stores.records import NewTask, NodeRecord, Priority, TaskState
from ucore.stores.sqlite.store import SQLiteStore
from ucore.stores.sqlite.wakeup import WakeChannel, supported
from ucore.tasks import workers

pytestmark = pytest.mark.skipif(not supported(), reason="abstract Unix sockets are Linux only")

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def node(node_id: str) -> NodeRecord:
    return NodeRecord(
        id=node_id,
        host="h",
        pid=1,
        role="service",
        started_at=NOW,
        heartbeat_at=NOW,
        proc_started=None,
    )


def new_task(name: str = "t") -> NewTask:
    return NewTask(name=name, params={}, priority=Priority.NORMAL, origin="test", submitted_at=NOW)


async def test_a_datagram_reaches_the_listener_and_gone_nodes_are_ignored(
    tmp_path: Path,
) -> None:
    db = tmp_path / "ucore.db"
    woken: list[int] = []
    receiver, sender = WakeChannel(db), WakeChannel(db)
    assert receiver.listen("node-a", lambda: woken.append(1))
    try:
        sender.set_peers(["node-a", "node-gone"])
        assert sender.notify() == 1  # node-gone refuses: no error
        await wait_until(lambda: woken, within=5, what="the wake-up")
        # another database's channel does not reach this one
        other = WakeChannel(tmp_path / "other.db")
        other.set_peers(["node-a"])
        assert other.notify() == 0
    finally:
        receiver.close()
        sender.close()


async def test_own_commits_are_not_foreign_and_another_stores_are(tmp_path: Path) -> None:
    path = tmp_path / "ucore.db"
    a, b = SQLiteStore(path), SQLiteStore(path)
    await a.open()
    pushes: list[int] = []
    try:
        # a service is up; a client opens the database after it (it reads the nodes then)
        await a.register_node(node("node-a"))
        assert a.listen("node-a", lambda: pushes.append(1))
        await b.open()  # its own commits (the schema check) already wake a
        await wait_until(lambda: pushes, within=5, what="the push of b's opening")
        await asyncio.sleep(0.05)
        pushes.clear()
        token = await a.change_token()
        for i in range(5):
            await a.insert_task(new_task(f"own-{i}"))
        assert await a.change_token() == token, "its own commits looked foreign"
        assert pushes == []
        await b.insert_task(new_task("foreign"))
        await wait_until(lambda: pushes, within=5, what="the push from the other store")
        assert await a.change_token() != token
    finally:
        await a.close()
        await b.close()


async def test_a_submit_from_another_app_needs_no_poll(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # with the fallback poll an hour away, only the wake-up can start the task
    monkeypatch.setattr(workers, "PUSHED_POLL_SECONDS", 3600.0)
    service = await make_app("service")
    assert service.tasks.pool is not None and service.tasks.pool._listening
    client = await make_app("client")
    await asyncio.sleep(0.1)  # the service's first claim round is over: it waits now
    task_id = await client.tasks.submit("sleep", {"seconds": 0})
    record = await finished(client, task_id, within=10)
    assert record.state is TaskState.COMPLETED
    assert record.node_id == service.ctx.node_id
