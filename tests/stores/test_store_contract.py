"""The store contract: every backend passes this suite (DESIGN.md §2, §3).

Written against the :class:`~ucore.stores.base.Store` interface only (no SQL), so that a new
backend runs it unchanged through the ``store`` / ``backend`` fixtures of conftest.py. Times
are passed in by the caller (a store never reads a clock), so the suite uses a fixed epoch.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from ucore.stores.base import Store
from ucore.stores.records import (
    ClaimRequest,
    NewTask,
    NodeRecord,
    Outcome,
    Priority,
    Recovered,
    TaskFilter,
    TaskRecord,
    TaskState,
)

T0 = datetime(2031, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
NODE = "node-a"
HOST = "host-a"
PID = 4242
LEASE = 30.0
#: stored times may lose a little float precision, never more than this
EPS = timedelta(microseconds=2)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new(
    name: str = "job",
    *,
    params: dict[str, Any] | None = None,
    priority: Priority = Priority.NORMAL,
    origin: str = "api",
    at: float = 0.0,
    unique_key: str | None = None,
    not_before: datetime | None = None,
    max_attempts: int = 1,
) -> NewTask:
    return NewTask(
        name=name,
        params={} if params is None else params,
        priority=priority,
        origin=origin,
        submitted_at=t(at),
        max_attempts=max_attempts,
        unique_key=unique_key,
        not_before=not_before,
    )


async def insert(store: Store, task: NewTask | None = None, **kw: Any) -> int:
    task_id, created = await store.insert_task(task or new(**kw))
    assert created
    return task_id


async def claim(
    store: Store,
    *,
    node: str = NODE,
    now: float = 0.0,
    lease: float = LEASE,
    **kw: Any,
) -> TaskRecord | None:
    return await store.claim_task(
        node_id=node, host=HOST, pid=PID, now=t(now), lease_until=t(now + lease), **kw
    )


async def claim_one(store: Store, **kw: Any) -> TaskRecord:
    got = await claim(store, **kw)
    assert got is not None
    assert got.run_id is not None
    return got


async def must_get(store: Store, task_id: int) -> TaskRecord:
    got = await store.get_task(task_id)
    assert got is not None
    return got


def same_time(a: datetime | None, b: datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= EPS


def is_utc(value: datetime | None) -> bool:
    return value is not None and value.utcoffset() == timedelta(0)


async def finish(
    store: Store,
    task: TaskRecord,
    outcome: Outcome = Outcome.COMPLETED,
    next_state: TaskState = TaskState.COMPLETED,
    *,
    now: float = 1.0,
    **kw: Any,
) -> TaskRecord | None:
    assert task.run_id is not None
    return await store.finish_run(
        task.id, task.run_id, outcome=outcome, now=t(now), next_state=next_state, **kw
    )


# -- lifecycle ---------------------------------------------------------------------------


async def test_fresh_database_is_healthy_and_empty(store: Store) -> None:
    assert await store.integrity_check() == []
    assert await store.schema_version() >= 1
    assert await store.list_tasks(TaskFilter()) == []
    assert await store.list_runs() == []
    assert await store.list_nodes() == []
    assert await store.next_due(T0) is None
    assert await claim(store) is None
    assert store.kind
    assert store.display_url


async def test_data_survives_close_and_reopen(backend: Any, store: Store) -> None:
    task_id = await insert(store, new("persist", params={"k": 1}))
    await store.close()
    async with backend.opened() as again:
        got = await must_get(again, task_id)
        assert got.name == "persist"
        assert got.params == {"k": 1}
    await store.open()  # the fixture closes it


# -- insert / get / list -----------------------------------------------------------------


async def test_insert_and_get(store: Store) -> None:
    task_id = await insert(
        store,
        new(
            "thumbs",
            params={"dir": "/x"},
            priority=Priority.HIGH,
            origin="manual",
            at=5,
            max_attempts=3,
        ),
    )
    got = await must_get(store, task_id)
    assert got.id == task_id
    assert got.name == "thumbs"
    assert got.params == {"dir": "/x"}
    assert got.priority is Priority.HIGH
    assert got.origin == "manual"
    assert got.state is TaskState.PENDING
    assert got.unique_key is None
    assert (got.attempts, got.failures, got.interruptions) == (0, 0, 0)
    assert got.max_attempts == 3
    assert same_time(got.submitted_at, t(5))
    assert got.not_before is None
    assert got.started_at is None
    assert got.finished_at is None
    assert got.progress is None
    assert got.progress_message is None
    assert got.result is None
    assert got.error is None
    assert got.traceback is None
    assert got.node_id is None
    assert got.host is None
    assert got.pid is None
    assert got.lease_expires is None
    assert got.cancel_requested is False
    assert got.run_id is None


async def test_get_unknown_task_is_none(store: Store) -> None:
    assert await store.get_task(123456) is None


async def test_ids_are_distinct_and_increasing(store: Store) -> None:
    ids = [await insert(store, new(at=i)) for i in range(5)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5


async def test_list_tasks_newest_first_with_filters(store: Store) -> None:
    a1 = await insert(store, new("a", at=1))
    b1 = await insert(store, new("b", at=2))
    a2 = await insert(store, new("a", at=3))
    b2 = await insert(store, new("b", at=4))
    a3 = await insert(store, new("a", at=5))
    # a1 runs, b1 completes
    running = await claim_one(store, task_id=a1)
    done = await claim_one(store, task_id=b1)
    assert await finish(store, done)

    assert [x.id for x in await store.list_tasks(TaskFilter())] == [a3, b2, a2, b1, a1]
    assert [x.id for x in await store.list_tasks(TaskFilter(name="a"))] == [a3, a2, a1]
    assert [x.id for x in await store.list_tasks(TaskFilter(limit=2))] == [a3, b2]
    pending = await store.list_tasks(TaskFilter(states=("pending",)))
    assert [x.id for x in pending] == [a3, b2, a2]
    assert all(x.state is TaskState.PENDING for x in pending)
    assert [x.id for x in await store.list_tasks(TaskFilter(states=("running",)))] == [running.id]
    assert [x.id for x in await store.list_tasks(TaskFilter(states=("completed",)))] == [b1]
    both = await store.list_tasks(TaskFilter(states=("running", "completed")))
    assert [x.id for x in both] == [b1, a1]
    assert [x.id for x in await store.list_tasks(TaskFilter(name="a", states=("pending",)))] == [
        a3,
        a2,
    ]
    assert [x.id for x in await store.list_tasks(TaskFilter(ids=(a1, b2)))] == [b2, a1]
    assert await store.list_tasks(TaskFilter(name="nope")) == []


# -- unique_key --------------------------------------------------------------------------


async def test_unique_key_while_pending_or_running(store: Store) -> None:
    first, created = await store.insert_task(new("scan", unique_key="scan:/a"))
    assert created
    again, created = await store.insert_task(new("scan", unique_key="scan:/a", at=1))
    assert (again, created) == (first, False)
    other, created = await store.insert_task(new("scan", unique_key="scan:/b"))
    assert created and other != first

    running = await claim_one(store, task_id=first)
    again, created = await store.insert_task(new("scan", unique_key="scan:/a", at=2))
    assert (again, created) == (first, False)

    assert await finish(store, running)
    fresh, created = await store.insert_task(new("scan", unique_key="scan:/a", at=3))
    assert created
    assert fresh != first
    assert (await must_get(store, fresh)).unique_key == "scan:/a"
    # only one task per key is queued
    pending = await store.list_tasks(TaskFilter(states=("pending",), name="scan"))
    assert sorted(x.id for x in pending) == sorted([other, fresh])


@pytest.mark.parametrize(
    ("outcome", "state"),
    [
        (Outcome.FAILED, TaskState.FAILED),
        (Outcome.CANCELLED, TaskState.CANCELLED),
        (Outcome.TIMED_OUT, TaskState.TIMED_OUT),
    ],
)
async def test_unique_key_is_free_after_any_end(
    store: Store, outcome: Outcome, state: TaskState
) -> None:
    first = await insert(store, new(unique_key="k"))
    assert await finish(store, await claim_one(store), outcome, state)
    second, created = await store.insert_task(new(unique_key="k"))
    assert created and second != first


async def test_unique_key_is_free_after_pending_cancel(store: Store) -> None:
    first = await insert(store, new(unique_key="k"))
    assert await store.request_cancel(first, t(1)) is not None
    second, created = await store.insert_task(new(unique_key="k"))
    assert created and second != first


async def test_unique_key_is_kept_by_a_requeued_task(store: Store) -> None:
    first = await insert(store, new(unique_key="k", max_attempts=2))
    task = await claim_one(store)
    assert await finish(
        store, task, Outcome.FAILED, TaskState.PENDING, not_before=t(10), add_failure=True
    )
    again, created = await store.insert_task(new(unique_key="k"))
    assert (again, created) == (first, False)


async def test_concurrent_inserts_with_one_unique_key_queue_one(store: Store) -> None:
    results = await asyncio.gather(
        *(store.insert_task(new(unique_key="same", at=i)) for i in range(20))
    )
    assert len({task_id for task_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1


# -- claim -------------------------------------------------------------------------------


async def test_claim_priority_then_fifo(store: Store) -> None:
    low1 = await insert(store, new("l1", priority=Priority.LOW, at=1))
    norm1 = await insert(store, new("n1", priority=Priority.NORMAL, at=2))
    high1 = await insert(store, new("h1", priority=Priority.HIGH, at=3))
    norm2 = await insert(store, new("n2", priority=Priority.NORMAL, at=4))
    low2 = await insert(store, new("l2", priority=Priority.LOW, at=5))
    high2 = await insert(store, new("h2", priority=Priority.HIGH, at=6))
    order = []
    for i in range(6):
        got = await claim_one(store, now=10 + i)
        order.append(got.id)
    assert order == [high1, high2, norm1, norm2, low1, low2]
    assert await claim(store, now=20) is None


def claim_request(now: float, limit: int, **kw: Any) -> ClaimRequest:
    return ClaimRequest(
        node_id=NODE,
        host=HOST,
        pid=PID,
        now=t(now),
        lease_until=t(now + LEASE),
        limit=limit,
        **kw,
    )


async def test_one_claim_takes_up_to_its_limit_in_claim_order(store: Store) -> None:
    low = await insert(store, new("l", priority=Priority.LOW, at=1))
    norm = await insert(store, new("n", priority=Priority.NORMAL, at=2))
    high = await insert(store, new("h", priority=Priority.HIGH, at=3))
    await insert(store, new("later", not_before=t(500)))
    got = await store.claim_tasks(claim_request(10, 2))
    assert [r.id for r in got.records] == [high, norm]
    assert all(r.state is TaskState.RUNNING and r.run_id for r in got.records)
    assert len({r.run_id for r in got.records}) == 2  # one history row each
    rest = await store.claim_tasks(claim_request(11, 5))
    assert [r.id for r in rest.records] == [low]
    # fewer than asked for were due: it says when the next one is
    assert same_time(rest.next_due, t(500))
    low2 = await insert(store, new("l2", priority=Priority.LOW, at=4))
    normal_only = claim_request(12, 2, min_priority=Priority.NORMAL)
    assert (await store.claim_tasks(normal_only)).records == []  # LOW slots all busy
    assert [r.id for r in (await store.claim_tasks(claim_request(13, 2))).records] == [low2]


async def test_a_claim_with_no_known_names_takes_nothing(store: Store) -> None:
    await insert(store, new("x"))
    got = await store.claim_tasks(claim_request(1, 2, names=frozenset()))
    assert got.records == []
    assert (await store.claim_tasks(claim_request(2, 2, names=frozenset({"x"})))).records


async def test_claim_marks_running_under_the_lease(store: Store) -> None:
    task_id = await insert(store, new("x", max_attempts=2))
    got = await claim_one(store, now=7, lease=30)
    assert got.id == task_id
    assert got.state is TaskState.RUNNING
    assert got.attempts == 1
    assert same_time(got.started_at, t(7))
    assert got.finished_at is None
    assert (got.node_id, got.host, got.pid) == (NODE, HOST, PID)
    assert same_time(got.lease_expires, t(37))
    assert got.cancel_requested is False
    stored = await must_get(store, task_id)
    assert stored.state is TaskState.RUNNING
    assert stored.run_id == got.run_id
    assert same_time(stored.lease_expires, t(37))
    assert await claim(store, now=8) is None


async def test_a_claim_answers_the_records_a_read_returns(store: Store) -> None:
    """A store may build the claimed records from the rows it picked: they must be the
    records a read returns right after, whatever the earlier attempts left behind."""
    first = await insert(
        store, new("x", params={"n": [1, "é"]}, unique_key="k", max_attempts=3, at=1)
    )
    second = await insert(store, new("y", priority=Priority.HIGH, not_before=t(2), at=2))
    task = await claim_one(store, now=5, task_id=first)
    await store.set_progress(first, task.run_id or 0, 0.5, "half")
    assert await finish(
        store, task, Outcome.FAILED, TaskState.PENDING, now=6, error="E", add_failure=True
    )
    got = await store.claim_tasks(
        ClaimRequest(node_id="B", host=HOST, pid=PID, now=t(7), lease_until=t(40), limit=5)
    )
    assert [r.id for r in got.records] == [second, first]  # priority, then age
    for record in got.records:
        assert record == await must_get(store, record.id)
    again = got.records[1]
    assert again.attempts == 2 and again.failures == 1 and again.progress is None
    assert again.error == "E"  # the last attempt's error stays until this one ends


# -- insert and claim in one (the submit's fast path) --------------------------------------
def _backend_insert_and_claim(store: Store, task: NewTask, req: ClaimRequest) -> Any:
    return store.insert_and_claim(task, req)


INSERT_AND_CLAIM = {
    "backend": _backend_insert_and_claim,
    # the base class's two-transaction default, which other backends inherit
    "default": Store._insert_then_claim,
}


@pytest.mark.parametrize("way", sorted(INSERT_AND_CLAIM))
async def test_insert_and_claim_answers_the_record_a_read_returns(store: Store, way: str) -> None:
    call = INSERT_AND_CLAIM[way]
    task = new("x", params={"n": [1, "é"], "t": (1, 2)}, max_attempts=3, at=1)
    task_id, created, record = await call(store, task, claim_request(5, 1))
    assert created and record is not None
    assert record.id == task_id and record.state is TaskState.RUNNING
    assert record.attempts == 1 and record.run_id is not None
    assert same_time(record.lease_expires, t(5 + LEASE))
    assert record == await must_get(store, task_id)
    assert record.params == {"n": [1, "é"], "t": [1, 2]}  # as stored: JSON
    assert [r.attempt for r in await store.list_runs(task_id=task_id)] == [1]
    # the attempt ends like any claimed one
    assert await finish(store, record, Outcome.COMPLETED, TaskState.COMPLETED, now=6)
    assert (await must_get(store, task_id)).state is TaskState.COMPLETED


@pytest.mark.parametrize("way", sorted(INSERT_AND_CLAIM))
async def test_insert_and_claim_leaves_a_task_not_due_yet_or_already_there(
    store: Store, way: str
) -> None:
    call = INSERT_AND_CLAIM[way]
    later, created, record = await call(store, new("x", not_before=t(100)), claim_request(5, 1))
    assert created and record is None
    assert (await must_get(store, later)).state is TaskState.PENDING
    first, created, record = await call(store, new("k", unique_key="u"), claim_request(6, 1))
    assert created and record is not None
    again, created, record = await call(store, new("k", unique_key="u"), claim_request(7, 1))
    assert (again, created, record) == (first, False, None)
    assert (await must_get(store, first)).attempts == 1  # not claimed twice
    # it claims the new task only, even with other tasks due
    other = await insert(store, new("o", priority=Priority.HIGH))
    mine, _, record = await call(store, new("m"), claim_request(8, 1))
    assert record is not None and record.id == mine
    assert (await must_get(store, other)).state is TaskState.PENDING


async def test_not_before_is_respected(store: Store) -> None:
    task_id = await insert(store, new(not_before=t(100)))
    assert await claim(store, now=50) is None
    assert same_time(await store.next_due(t(50)), t(100))
    assert await claim(store, now=99.5) is None
    got = await claim_one(store, now=100)
    assert got.id == task_id
    assert await store.next_due(t(100)) is None


async def test_not_before_later_is_claimed_when_due(store: Store) -> None:
    task_id = await insert(store, new(not_before=t(100)))
    got = await claim_one(store, now=250)
    assert got.id == task_id


async def test_next_due_is_the_earliest_future_pending(store: Store) -> None:
    assert await store.next_due(t(0)) is None
    await insert(store, new(not_before=t(300)))
    await insert(store, new(not_before=t(200)))
    await insert(store, new())  # due now: not a wake-up
    await insert(store, new(not_before=t(-5)))  # overdue: not a wake-up
    assert same_time(await store.next_due(t(0)), t(200))
    assert same_time(await store.next_due(t(200)), t(300))
    assert await store.next_due(t(300)) is None


async def test_next_due_ignores_tasks_that_are_not_pending(store: Store) -> None:
    task_id = await insert(store, new(not_before=t(100)))
    assert await store.request_cancel(task_id, t(1)) is not None
    assert await store.next_due(t(0)) is None


async def test_not_before_does_not_block_other_tasks(store: Store) -> None:
    await insert(store, new("later", priority=Priority.HIGH, not_before=t(100)))
    now_id = await insert(store, new("now", priority=Priority.LOW))
    got = await claim_one(store, now=1)
    assert got.id == now_id


async def test_min_priority_excludes_lower(store: Store) -> None:
    low = await insert(store, new(priority=Priority.LOW))
    assert await claim(store, min_priority=Priority.NORMAL) is None
    normal = await insert(store, new(priority=Priority.NORMAL))
    high = await insert(store, new(priority=Priority.HIGH))
    assert (await claim_one(store, min_priority=Priority.NORMAL)).id == high
    assert (await claim_one(store, min_priority=Priority.NORMAL)).id == normal
    assert await claim(store, min_priority=Priority.HIGH) is None
    assert await claim(store, min_priority=Priority.NORMAL) is None
    assert (await claim_one(store, min_priority=Priority.LOW)).id == low


async def test_claim_one_task_by_id(store: Store) -> None:
    a = await insert(store, new("a", priority=Priority.HIGH))
    b = await insert(store, new("b", priority=Priority.LOW))
    got = await claim_one(store, task_id=b)
    assert got.id == b
    assert await claim(store, task_id=b) is None  # running already
    assert await claim(store, task_id=987654) is None
    future = await insert(store, new("c", not_before=t(100)))
    assert await claim(store, task_id=future, now=1) is None
    assert (await claim_one(store, task_id=future, now=100)).id == future
    assert (await must_get(store, a)).state is TaskState.PENDING


async def test_claim_by_names(store: Store) -> None:
    x = await insert(store, new("x", priority=Priority.HIGH))
    y = await insert(store, new("y"))
    assert await claim(store, names=frozenset()) is None
    assert (await claim_one(store, names=frozenset({"y"}))).id == y
    assert await claim(store, names=frozenset({"y", "z"})) is None
    assert (await claim_one(store, names=frozenset({"x", "z"}))).id == x
    assert await claim(store, names=None) is None


async def test_claim_filters_combine(store: Store) -> None:
    low_x = await insert(store, new("x", priority=Priority.LOW))
    await insert(store, new("y", priority=Priority.HIGH))
    assert await claim(store, names=frozenset({"x"}), min_priority=Priority.NORMAL) is None
    got = await claim_one(store, names=frozenset({"x"}), task_id=low_x)
    assert got.id == low_x


async def test_concurrent_claims_never_share_a_task(store: Store) -> None:
    ids = {await insert(store, new(f"t{i}", at=i)) for i in range(20)}
    got = await asyncio.gather(*(claim(store, node=f"node-{i}", now=10) for i in range(50)))
    claimed = [x for x in got if x is not None]
    assert len(claimed) == 20
    assert {x.id for x in claimed} == ids
    assert len({x.run_id for x in claimed}) == 20
    for x in claimed:
        stored = await must_get(store, x.id)
        assert stored.node_id == x.node_id
        assert stored.run_id == x.run_id
    assert len(await store.list_runs(limit=1000)) == 20


# -- run history -------------------------------------------------------------------------


async def test_each_attempt_is_one_run_row(store: Store) -> None:
    task_id = await insert(store, new("retry", max_attempts=3))
    first = await claim_one(store, now=1)
    runs = await store.list_runs(task_id=task_id)
    assert len(runs) == 1
    run = runs[0]
    assert run.id == first.run_id
    assert run.task_id == task_id
    assert run.task_name == "retry"
    assert run.attempt == 1
    assert (run.node_id, run.host, run.pid) == (NODE, HOST, PID)
    assert same_time(run.started_at, t(1))
    assert run.finished_at is None
    assert run.duration is None
    assert run.outcome is None

    assert await finish(
        store, first, Outcome.FAILED, TaskState.PENDING, now=3, error="boom", add_failure=True
    )
    second = await claim_one(store, now=5, node="node-b")
    assert second.attempts == 2
    assert second.run_id != first.run_id
    assert await finish(store, second, now=9, result={"n": 1})

    runs = await store.list_runs(task_id=task_id)
    assert [r.attempt for r in runs] == [2, 1]  # newest first
    assert [r.id for r in runs] == [second.run_id, first.run_id]
    assert [r.outcome for r in runs] == [Outcome.COMPLETED, Outcome.FAILED]
    assert runs[1].error == "boom"
    assert runs[1].duration == pytest.approx(2.0, abs=1e-3)
    assert runs[0].duration == pytest.approx(4.0, abs=1e-3)
    assert runs[0].node_id == "node-b"
    assert same_time(runs[0].finished_at, t(9))
    assert (await must_get(store, task_id)).attempts == 2


async def test_list_runs_filters_and_limit(store: Store) -> None:
    a = await insert(store, new("a"))
    b = await insert(store, new("b"))
    ra = await claim_one(store, task_id=a)
    rb = await claim_one(store, task_id=b)
    assert [r.id for r in await store.list_runs()] == [rb.run_id, ra.run_id]
    assert [r.id for r in await store.list_runs(name="a")] == [ra.run_id]
    assert [r.id for r in await store.list_runs(task_id=b)] == [rb.run_id]
    assert [r.id for r in await store.list_runs(limit=1)] == [rb.run_id]
    assert await store.list_runs(name="zzz") == []


# -- leases, progress --------------------------------------------------------------------


async def test_renew_leases_only_for_this_nodes_running_tasks(store: Store) -> None:
    for i in range(4):
        await insert(store, new(f"t{i}", at=i))
    a1 = await claim_one(store, node="A", now=0)
    a2 = await claim_one(store, node="A", now=0)
    b1 = await claim_one(store, node="B", now=0)
    pending = (await store.list_tasks(TaskFilter(states=("pending",))))[0]

    held = await store.renew_leases("A", [a1.id, a2.id, b1.id, pending.id, 999999], t(100))
    assert held == {a1.id, a2.id}
    assert same_time((await must_get(store, a1.id)).lease_expires, t(100))
    assert same_time((await must_get(store, b1.id)).lease_expires, t(LEASE))
    assert (await must_get(store, pending.id)).lease_expires is None

    assert await finish(store, a2)
    assert await store.renew_leases("A", [a1.id, a2.id], t(200)) == {a1.id}
    assert await store.renew_leases("A", [], t(300)) == set()
    assert await store.renew_leases("C", [a1.id], t(300)) == set()


async def test_set_progress(store: Store) -> None:
    await insert(store, new(max_attempts=2))
    task = await claim_one(store)
    assert task.run_id is not None
    await store.set_progress(task.id, task.run_id, 0.25, "a quarter")
    got = await must_get(store, task.id)
    assert got.progress == pytest.approx(0.25)
    assert got.progress_message == "a quarter"
    await store.set_progress(task.id, task.run_id, None, "working…")
    got = await must_get(store, task.id)
    assert got.progress is None
    assert got.progress_message == "working…"
    # a stale attempt does not write over the current one
    await store.set_progress(task.id, task.run_id + 1000, 0.9, "stale")
    got = await must_get(store, task.id)
    assert got.progress_message == "working…"


# -- finish_run --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "state"),
    [
        (Outcome.COMPLETED, TaskState.COMPLETED),
        (Outcome.FAILED, TaskState.FAILED),
        (Outcome.CANCELLED, TaskState.CANCELLED),
        (Outcome.TIMED_OUT, TaskState.TIMED_OUT),
    ],
)
async def test_finish_run_to_a_final_state(
    store: Store, outcome: Outcome, state: TaskState
) -> None:
    task_id = await insert(store, new("x"))
    task = await claim_one(store, now=10)
    failed = outcome is not Outcome.COMPLETED
    result = None if failed else {"files": 3}
    error = f"{outcome.value}!" if failed else None
    tb = "Traceback (most recent call last):\n  ..." if outcome is Outcome.FAILED else None
    assert await finish(
        store,
        task,
        outcome,
        state,
        now=12.5,
        result=result,
        error=error,
        traceback=tb,
        add_failure=outcome is Outcome.FAILED,
    )
    got = await must_get(store, task_id)
    assert got.state is state
    assert same_time(got.finished_at, t(12.5))
    assert same_time(got.started_at, t(10))
    assert got.result == result
    assert got.error == error
    assert got.traceback == tb
    assert got.failures == (1 if outcome is Outcome.FAILED else 0)
    assert got.interruptions == 0
    assert got.attempts == 1
    assert got.lease_expires is None
    assert got.cancel_requested is False
    assert got.run_id is None
    (run,) = await store.list_runs(task_id=task_id)
    assert run.outcome is outcome
    assert same_time(run.finished_at, t(12.5))
    assert run.duration == pytest.approx(2.5, abs=1e-3)
    assert run.error == error
    # a finished task is not claimed again, and cannot be finished twice
    assert await claim(store, now=20) is None
    assert not await finish(store, task, Outcome.COMPLETED, TaskState.COMPLETED, now=30)
    assert (await must_get(store, task_id)).state is state


async def test_finish_run_failed_with_requeue(store: Store) -> None:
    task_id = await insert(store, new("flaky", max_attempts=3))
    task = await claim_one(store, now=0)
    assert await finish(
        store,
        task,
        Outcome.FAILED,
        TaskState.PENDING,
        now=2,
        not_before=t(60),
        error="try again",
        traceback="tb",
        add_failure=True,
    )
    got = await must_get(store, task_id)
    assert got.state is TaskState.PENDING
    assert same_time(got.not_before, t(60))
    assert got.failures == 1
    assert got.attempts == 1
    assert got.finished_at is None
    assert got.run_id is None
    assert got.lease_expires is None
    assert got.error == "try again"
    (run,) = await store.list_runs(task_id=task_id)
    assert run.outcome is Outcome.FAILED
    assert same_time(await store.next_due(t(2)), t(60))

    assert await claim(store, now=30) is None
    again = await claim_one(store, now=60)
    assert again.id == task_id
    assert again.attempts == 2
    assert again.failures == 1
    assert await finish(store, again, now=61, result="ok")
    got = await must_get(store, task_id)
    assert got.state is TaskState.COMPLETED
    assert got.result == "ok"
    assert got.failures == 1


async def test_finish_run_interrupted_requeues(store: Store) -> None:
    task_id = await insert(store, new())
    task = await claim_one(store, now=0)
    await store.set_progress(task.id, task.run_id or 0, 0.5, "half")
    assert await finish(
        store,
        task,
        Outcome.INTERRUPTED,
        TaskState.PENDING,
        now=4,
        error="interrupted: shutdown",
        add_interruption=True,
    )
    got = await must_get(store, task_id)
    assert got.state is TaskState.PENDING
    assert got.interruptions == 1
    assert got.failures == 0
    assert got.finished_at is None
    (run,) = await store.list_runs(task_id=task_id)
    assert run.outcome is Outcome.INTERRUPTED
    again = await claim_one(store, now=5)
    assert again.id == task_id
    assert again.attempts == 2
    assert again.progress is None
    assert again.progress_message is None


@pytest.mark.parametrize(
    "case", ["completed", "failed, retried later", "retry cancelled", "interrupted", "timed out"]
)
async def test_finish_run_from_the_claimed_record_answers_what_the_row_says(
    store: Store, case: str
) -> None:
    """Given the claimed record, a store may build its answer instead of reading the row:
    the answer must be the record a read returns, whatever happened while the task ran."""
    answers = []
    for mode in ("read back", "claimed", "claimed, with progress"):
        task_id = await insert(store, new("x", params={"n": [1, 2]}, max_attempts=2))
        task = await claim_one(store, now=10, task_id=task_id)
        await store.set_progress(task.id, task.run_id or 0, 0.25, "a quarter")
        kw: dict[str, Any] = {} if mode == "read back" else {"claimed": task}
        if mode == "claimed, with progress":
            kw["progress"] = (0.75, "three quarters")
        if case == "completed":
            kw.update(result={"files": (3, 4)}, outcome=Outcome.COMPLETED)
            kw.update(next_state=TaskState.COMPLETED)
        elif case in ("failed, retried later", "retry cancelled"):
            if case == "retry cancelled":
                assert await store.request_cancel(task_id, t(11)) is not None
            kw.update(outcome=Outcome.FAILED, next_state=TaskState.PENDING, not_before=t(70))
            kw.update(error="E: no", traceback="tb", add_failure=True)
        elif case == "interrupted":
            kw.update(outcome=Outcome.INTERRUPTED, next_state=TaskState.PENDING)
            kw.update(error="interrupted: shutdown", add_interruption=True)
        else:
            kw.update(outcome=Outcome.TIMED_OUT, next_state=TaskState.TIMED_OUT)
            kw.update(error="timed out after 1 s", add_failure=True)
        answer = await store.finish_run(task.id, task.run_id or 0, now=t(12.5), **kw)
        assert answer is not None
        assert answer == await must_get(store, task_id)
        requeued = answer.state is TaskState.PENDING
        if "progress" in kw and not requeued:
            assert (answer.progress, answer.progress_message) == (0.75, "three quarters")
        if requeued:
            assert (answer.progress, answer.progress_message) == (None, None)
        answers.append(answer)
    plain, built, with_progress = answers
    assert dataclasses.replace(built, id=plain.id) == plain
    if plain.state is not TaskState.PENDING:
        assert with_progress.progress == 0.75
    # a second finish of an attempt (no longer running under it) answers None either way
    assert not await finish(store, task, now=13, claimed=task, progress=(1.0, None))
    # a claimed record of another attempt is not used
    task_id = await insert(store, new("y"))
    task = await claim_one(store, now=20, task_id=task_id)
    other = task.changed(run_id=(task.run_id or 0) + 1)
    answer = await finish(store, task, now=21, claimed=other)
    assert answer == await must_get(store, task_id)


async def test_finish_run_with_a_stale_run_id_changes_nothing(store: Store) -> None:
    task_id = await insert(store, new())
    task = await claim_one(store, now=0)
    assert task.run_id is not None
    assert not await store.finish_run(
        task_id,
        task.run_id + 1000,
        outcome=Outcome.COMPLETED,
        now=t(1),
        next_state=TaskState.COMPLETED,
        result={"stale": True},
    )
    assert not await store.finish_run(
        task_id + 1000,
        task.run_id,
        outcome=Outcome.COMPLETED,
        now=t(1),
        next_state=TaskState.COMPLETED,
    )
    got = await must_get(store, task_id)
    assert got.state is TaskState.RUNNING
    assert got.run_id == task.run_id
    assert got.result is None
    (run,) = await store.list_runs(task_id=task_id)
    assert run.outcome is None
    assert run.finished_at is None


async def test_finish_after_the_lease_was_taken_over_is_refused(store: Store) -> None:
    task_id = await insert(store, new())
    old = await claim_one(store, node="A", now=0, lease=10)
    assert await store.recover_expired(t(11), 5) == [Recovered(task_id, "job", True)]
    new_run = await claim_one(store, node="B", now=12)
    assert not await finish(store, old, now=13, result="late")
    assert await store.renew_leases("A", [task_id], t(100)) == set()
    got = await must_get(store, task_id)
    assert got.state is TaskState.RUNNING
    assert got.node_id == "B"
    assert got.run_id == new_run.run_id
    assert await finish(store, new_run, now=14, result="ok")
    runs = await store.list_runs(task_id=task_id)
    assert [r.outcome for r in runs] == [Outcome.COMPLETED, Outcome.INTERRUPTED]


# -- cancel ------------------------------------------------------------------------------


async def test_cancel_pending_is_immediate(store: Store) -> None:
    task_id = await insert(store, new())
    got = await store.request_cancel(task_id, t(3))
    assert got is not None
    assert got.id == task_id
    assert got.state is TaskState.CANCELLED
    assert same_time(got.finished_at, t(3))
    stored = await must_get(store, task_id)
    assert stored.state is TaskState.CANCELLED
    assert same_time(stored.finished_at, t(3))
    assert await claim(store, now=4) is None
    assert await store.list_runs(task_id=task_id) == []


async def test_cancel_running_is_a_request(store: Store) -> None:
    task_id = await insert(store, new())
    other = await insert(store, new())
    task = await claim_one(store, task_id=task_id)
    await claim_one(store, task_id=other)
    assert await store.cancel_requests([task_id, other]) == set()
    got = await store.request_cancel(task_id, t(2))
    assert got is not None
    assert got.state is TaskState.RUNNING
    assert got.cancel_requested is True
    assert got.finished_at is None
    assert (await must_get(store, task_id)).cancel_requested is True
    assert await store.cancel_requests([task_id, other, 999999]) == {task_id}
    assert await store.cancel_requests([]) == set()
    # the worker honours it
    assert await finish(store, task, Outcome.CANCELLED, TaskState.CANCELLED, now=3)
    done = await must_get(store, task_id)
    assert done.state is TaskState.CANCELLED
    assert done.cancel_requested is False
    assert await store.cancel_requests([task_id]) == set()


async def test_cancel_unknown_is_none(store: Store) -> None:
    assert await store.request_cancel(424242, t(0)) is None


async def test_cancel_finished_changes_nothing(store: Store) -> None:
    task_id = await insert(store, new())
    assert await finish(store, await claim_one(store), now=1, result=1)
    got = await store.request_cancel(task_id, t(5))
    assert got is not None
    assert got.state is TaskState.COMPLETED
    assert same_time(got.finished_at, t(1))
    assert got.result == 1


# -- recovery ----------------------------------------------------------------------------


async def test_recover_expired(store: Store) -> None:
    task_id = await insert(store, new("dies"))
    fresh_id = await insert(store, new("lives"))
    await claim_one(store, task_id=task_id, node="A", now=0, lease=30)
    await claim_one(store, task_id=fresh_id, node="B", now=0, lease=300)
    assert await store.recover_expired(t(10), 5) == []

    assert await store.recover_expired(t(31), 5) == [Recovered(task_id, "dies", True)]
    got = await must_get(store, task_id)
    assert got.state is TaskState.PENDING
    assert got.interruptions == 1
    assert got.failures == 0
    assert got.lease_expires is None
    assert got.run_id is None
    assert got.finished_at is None
    (run,) = await store.list_runs(task_id=task_id)
    assert run.outcome is Outcome.INTERRUPTED
    assert same_time(run.finished_at, t(31))
    assert run.error
    assert (await must_get(store, fresh_id)).state is TaskState.RUNNING
    assert await store.recover_expired(t(32), 5) == []
    again = await claim_one(store, task_id=task_id, now=33)
    assert again.attempts == 2


async def test_recover_expired_stops_at_max_interruptions(store: Store) -> None:
    task_id = await insert(store, new("crasher"))
    for i in range(2):
        await claim_one(store, now=100 * i, lease=10)
        assert await store.recover_expired(t(100 * i + 11), 3) == [
            Recovered(task_id, "crasher", True)
        ]
    await claim_one(store, now=200, lease=10)
    assert await store.recover_expired(t(211), 3) == [Recovered(task_id, "crasher", False)]
    got = await must_get(store, task_id)
    assert got.state is TaskState.FAILED
    assert got.interruptions == 3
    assert same_time(got.finished_at, t(211))
    assert got.error
    runs = await store.list_runs(task_id=task_id)
    assert [r.outcome for r in runs] == [Outcome.INTERRUPTED] * 3
    assert [r.attempt for r in runs] == [3, 2, 1]
    assert await claim(store, now=300) is None


async def test_recover_nodes(store: Store) -> None:
    a = await insert(store, new("on-a"))
    b = await insert(store, new("on-b"))
    await claim_one(store, task_id=a, node="A", lease=1000)
    await claim_one(store, task_id=b, node="B", lease=1000)
    assert await store.recover_nodes([], t(1), 5) == []
    assert await store.recover_nodes(["C"], t(1), 5) == []
    assert await store.recover_nodes(["A"], t(2), 5) == [Recovered(a, "on-a", True)]
    got = await must_get(store, a)
    assert got.state is TaskState.PENDING
    assert got.interruptions == 1
    (run,) = await store.list_runs(task_id=a)
    assert run.outcome is Outcome.INTERRUPTED
    assert (await must_get(store, b)).state is TaskState.RUNNING


async def test_recover_nodes_at_max_interruptions_fails(store: Store) -> None:
    a = await insert(store, new("on-a"))
    await claim_one(store, task_id=a, node="A")
    assert await store.recover_nodes(["A"], t(2), 1) == [Recovered(a, "on-a", False)]
    assert (await must_get(store, a)).state is TaskState.FAILED


# -- promote -----------------------------------------------------------------------------


async def test_promote_raises_only_and_pending_only(store: Store) -> None:
    low = await insert(store, new("low", priority=Priority.LOW))
    normal = await insert(store, new("normal", priority=Priority.NORMAL))
    assert await store.promote_task(low, Priority.HIGH)
    assert (await must_get(store, low)).priority is Priority.HIGH
    await store.promote_task(low, Priority.LOW)  # never lowers
    assert (await must_get(store, low)).priority is Priority.HIGH
    assert (await claim_one(store)).id == low  # now ahead of the older NORMAL task
    assert not await store.promote_task(low, Priority.HIGH)  # running
    assert not await store.promote_task(999999, Priority.HIGH)
    assert (await must_get(store, normal)).priority is Priority.NORMAL


# -- nodes -------------------------------------------------------------------------------


def node(node_id: str, *, started: float = 0.0, **kw: Any) -> NodeRecord:
    return NodeRecord(
        id=node_id,
        host=kw.pop("host", "h1"),
        pid=kw.pop("pid", 100),
        role=kw.pop("role", "service"),
        started_at=t(started),
        heartbeat_at=t(started),
        **kw,
    )


async def test_nodes_register_heartbeat_list_remove(store: Store) -> None:
    await store.register_node(node("n1", proc_started=1234.5, info={"version": "1.0", "ü": [1]}))
    await store.register_node(node("n2", started=1, host="h2", pid=200, role="cli"))
    nodes = {n.id: n for n in await store.list_nodes()}
    assert set(nodes) == {"n1", "n2"}
    n1 = nodes["n1"]
    assert (n1.host, n1.pid, n1.role) == ("h1", 100, "service")
    assert n1.proc_started == pytest.approx(1234.5)
    assert n1.info == {"version": "1.0", "ü": [1]}
    assert same_time(n1.started_at, t(0))
    assert is_utc(n1.heartbeat_at)
    assert nodes["n2"].info == {}
    assert nodes["n2"].proc_started is None

    await store.heartbeat("n1", t(50))
    await store.heartbeat("unknown", t(50))  # no error
    nodes = {n.id: n for n in await store.list_nodes()}
    assert same_time(nodes["n1"].heartbeat_at, t(50))
    assert same_time(nodes["n2"].heartbeat_at, t(1))

    # registering the same id again replaces it
    await store.register_node(node("n2", started=5, pid=201))
    nodes = {n.id: n for n in await store.list_nodes()}
    assert len(nodes) == 2
    assert nodes["n2"].pid == 201

    await store.remove_nodes([])
    await store.remove_nodes(["n1", "gone"])
    assert [n.id for n in await store.list_nodes()] == ["n2"]


# -- values round-trip -------------------------------------------------------------------

NESTED: dict[str, Any] = {
    "text": 'Grüße, 東京, emoji 🎉, quote " and \\ backslash, nul-free\nnew line',
    "nested": {"list": [1, 2.5, -3, True, False, None, "x"], "empty": {}, "deep": [[[{}]]]},
    "big": 2**53,
    "neg": -1e-9,
    "ключ": "значение",
    "": "empty key",
}


async def test_json_params_and_results_round_trip(store: Store) -> None:
    task_id = await insert(store, new("json", params=NESTED))
    assert (await must_get(store, task_id)).params == NESTED
    task = await claim_one(store)
    assert task.params == NESTED
    assert await finish(store, task, result=NESTED)
    got = await must_get(store, task_id)
    assert got.result == NESTED
    assert got.params == NESTED
    listed = await store.list_tasks(TaskFilter(ids=(task_id,)))
    assert listed[0].params == NESTED
    assert listed[0].result == NESTED


@pytest.mark.parametrize("result", [0, "", [], "text", [1, "two"], False, 3.5])
async def test_scalar_results_round_trip(store: Store, result: Any) -> None:
    task_id = await insert(store, new())
    assert await finish(store, await claim_one(store), result=result)
    assert (await must_get(store, task_id)).result == result


async def test_error_and_traceback_round_trip(store: Store) -> None:
    task_id = await insert(store, new())
    text = "Fehler: ‘ünïcode’ ✗\nline 2"
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: ✗'
    assert await finish(
        store, await claim_one(store), Outcome.FAILED, TaskState.FAILED, error=text, traceback=tb
    )
    got = await must_get(store, task_id)
    assert (got.error, got.traceback) == (text, tb)


async def test_times_round_trip_as_aware_utc(store: Store) -> None:
    submitted = datetime(2030, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    # a non-UTC aware time comes back as the same instant in UTC
    not_before = datetime(2031, 1, 1, 2, 0, 0, 654321, tzinfo=timezone(timedelta(hours=2)))
    task_id, _ = await store.insert_task(
        NewTask("when", {}, Priority.NORMAL, "api", submitted, not_before=not_before)
    )
    got = await must_get(store, task_id)
    assert is_utc(got.submitted_at)
    assert is_utc(got.not_before)
    assert same_time(got.submitted_at, submitted)
    assert same_time(got.not_before, not_before)
    assert got.not_before is not None
    assert got.not_before.hour == 0  # 02:00+02:00 == 00:00 UTC

    now = datetime(2031, 1, 1, 0, 0, 0, 654321, tzinfo=UTC)
    task = await store.claim_task(
        node_id=NODE, host=HOST, pid=PID, now=now, lease_until=now + timedelta(seconds=1.5)
    )
    assert task is not None
    assert is_utc(task.started_at) and same_time(task.started_at, now)
    assert is_utc(task.lease_expires)
    assert same_time(task.lease_expires, now + timedelta(seconds=1.5))
    end = now + timedelta(microseconds=1)
    assert task.run_id is not None
    assert await store.finish_run(
        task_id, task.run_id, outcome=Outcome.COMPLETED, now=end, next_state=TaskState.COMPLETED
    )
    got = await must_get(store, task_id)
    assert is_utc(got.finished_at) and same_time(got.finished_at, end)
    (run,) = await store.list_runs(task_id=task_id)
    assert is_utc(run.started_at) and same_time(run.started_at, now)
    assert is_utc(run.finished_at) and same_time(run.finished_at, end)
    assert run.duration is not None
    assert run.duration == pytest.approx(1e-6, abs=2e-6)


# -- cross-connection --------------------------------------------------------------------


async def token_changes(store: Store, before: int, within: float = 2.0) -> bool:
    """The change token moves away from ``before`` soon (at once for SQLite; a backend
    whose wake-ups arrive asynchronously gets the design's ~1 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while await store.change_token() == before:
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_change_token_sees_another_connections_write(backend: Any, store: Store) -> None:
    async with backend.opened() as other:
        before = await store.change_token()
        assert await store.change_token() == before  # idle: stable
        task_id = await insert(other, new("from-elsewhere"))
        assert await token_changes(store, before)
        assert (await must_get(store, task_id)).name == "from-elsewhere"
        # and the other way round
        other_before = await other.change_token()
        cancelled = await store.request_cancel(task_id, t(1))
        assert cancelled is not None
        assert cancelled.state is TaskState.CANCELLED
        assert await token_changes(other, other_before)
        assert (await must_get(other, task_id)).state is TaskState.CANCELLED


async def test_claims_from_two_connections_never_share_a_task(backend: Any, store: Store) -> None:
    ids = {await insert(store, new(at=i)) for i in range(20)}
    async with backend.opened() as other:
        got = await asyncio.gather(
            *(claim(s, node=f"n{i}") for i in range(20) for s in (store, other))
        )
    claimed = [x.id for x in got if x is not None]
    assert sorted(claimed) == sorted(ids)
