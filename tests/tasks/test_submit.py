"""Submit (DESIGN.md §3): validation at submit, unique keys, not_before, canonical params."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from task_helpers import finished, wait_state

from ucore.stores.records import TaskState
from ucore.tasks.errors import InvalidParamsError, UnknownTaskError


async def test_unknown_task_is_refused_at_submit(make_app: Any) -> None:
    app = await make_app("client")
    with pytest.raises(UnknownTaskError, match="no_such_task") as info:
        await app.tasks.submit("no_such_task", {})
    assert "sleep" in str(info.value)  # says which tasks exist
    assert await app.tasks.list_tasks() == []


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"seconds": "soon"}, "seconds"),
        ({"seconds": -1}, "seconds"),
        ({"secnds": 1}, "secnds"),
        ({"fail": "yes"}, "fail"),
    ],
)
async def test_bad_params_are_refused_at_submit_naming_the_key(
    make_app: Any, params: dict[str, Any], key: str
) -> None:
    app = await make_app("client")
    with pytest.raises(InvalidParamsError, match="sleep") as info:
        await app.tasks.submit("sleep", params)
    assert key in str(info.value)
    assert await app.tasks.list_tasks() == []


async def test_params_are_stored_canonical_with_defaults(make_app: Any) -> None:
    app = await make_app("client")
    task_id = await app.tasks.submit("sleep", {"seconds": 2})
    record = await app.tasks.get(task_id)
    assert record.params == {"time_budget_seconds": None, "seconds": 2.0, "fail": False}
    assert record.state is TaskState.PENDING and record.origin == "api"
    default_id = await app.tasks.submit("sleep")
    assert (await app.tasks.get(default_id)).params == {
        "time_budget_seconds": None,
        "seconds": 1.0,
        "fail": False,
    }
    # a handler without a parameter model gets (and stores) the dict as given
    app.tasks.register("free", lambda ctx: None)
    free_id = await app.tasks.submit("free", {"a": [1, 2], "b": None})
    assert (await app.tasks.get(free_id)).params == {"a": [1, 2], "b": None}


async def test_unique_key_returns_the_live_task(make_app: Any) -> None:
    app = await make_app("service", workers=1)
    first, created = await app.tasks.submit_ex("sleep", {"seconds": 0.3}, unique_key="k")
    assert created
    # pending or running: the same id, nothing new queued
    again, created_again = await app.tasks.submit_ex("sleep", {"seconds": 9}, unique_key="k")
    assert (again, created_again) == (first, False)
    await wait_state(app, first, TaskState.RUNNING)
    assert await app.tasks.submit("sleep", {"seconds": 0.3}, unique_key="k") == first
    # another key is another task
    other = await app.tasks.submit("sleep", {"seconds": 0.01}, unique_key="other")
    assert other != first
    assert (await finished(app, first)).state is TaskState.COMPLETED
    # once finished, the key is free again
    later = await app.tasks.submit("sleep", {"seconds": 0.01}, unique_key="k")
    assert later not in (first, other)
    assert len(await app.tasks.list_tasks(name="sleep")) == 3


async def test_not_before_delays_the_start(make_app: Any) -> None:
    app = await make_app("service")
    delay = 0.5
    not_before = app.ctx.clock.now() + timedelta(seconds=delay)
    t0 = time.monotonic()
    task_id = await app.tasks.submit("sleep", {"seconds": 0}, not_before=not_before)
    soon = await app.tasks.submit("sleep", {"seconds": 0})
    assert (await finished(app, soon)).state is TaskState.COMPLETED
    waiting = await app.tasks.get(task_id)
    assert waiting.state is TaskState.PENDING and waiting.not_before == not_before
    record = await finished(app, task_id)
    took = time.monotonic() - t0
    assert record.state is TaskState.COMPLETED
    assert record.started_at is not None and record.started_at >= not_before
    # and it starts when due, not at the next idle poll
    assert (record.started_at - not_before).total_seconds() < 0.3
    assert delay - 0.05 <= took < delay + 1.0
