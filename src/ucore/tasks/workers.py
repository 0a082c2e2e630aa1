"""The worker pool of a process: claims due tasks into free slots and keeps their leases.

Wake-ups: a submit or cancel in this process, and a handler that returns, wake the claim loop
at once. Another process's commit arrives as a wake-up pushed by the store (SQLite: a
datagram, see :mod:`ucore.stores.sqlite.wakeup`); the store's change token (SQLite:
``PRAGMA data_version``) is read only then and on a fallback poll (every 5 s, or every 0.5-1 s
where the store pushes nothing and while this process is new to the others: they may not
send it wake-ups before they have looked at the nodes again). A claim takes as many due
tasks as there are free slots; a slot is free as soon as its handler returns, so the claim
joins the transaction of the outcome being written (quick writes, :mod:`ucore.stores.sqlite.quick`).

Claiming at submit time: when a claim found fewer due tasks than it asked for, the pool is
*drained* until something may have come due (every :meth:`WorkerPool.wake`: a submit that
queued, a retry, another process's commit, a due timer, a new handler, a recovery, the
fallback poll). While drained, a freed slot does not look again, and a submit in this
process with a free slot for its priority inserts and claims its task in one transaction
(:meth:`WorkerPool.reserve`, ``Store.insert_and_claim``): the task is running when the
submit returns, with no pick and no hop through the claim loop. A pick that was on its way
while something came due does not count as drained.

Housekeeping every few seconds: heartbeat, lease renewal of the running tasks, and (service
role) recovery of tasks whose lease expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ucore.foundation.clock import aligned_deadline, aligned_delay
from ucore.foundation.events import Event
from ucore.stores.records import Claimed, ClaimRequest, Priority, TaskRecord
from ucore.tasks.execution import Execution
from ucore.tasks.nodes import HEARTBEAT_SECONDS, dead_local_nodes

if TYPE_CHECKING:
    from ucore.tasks.system import TaskSystem

log = logging.getLogger("ucore.tasks")

IDLE_POLL_SECONDS = 1.0
BUSY_POLL_SECONDS = 0.5
#: The poll when the store pushes wake-ups (SQLite's datagrams): only a fallback for
#: writers that send none (another program on the database file).
PUSHED_POLL_SECONDS = 5.0
#: How long a shutdown waits for the claim loop to leave on its own (then it is cancelled).
CLAIM_LOOP_EXIT_SECONDS = 5.0
#: How long a shutdown waits for the tasks of interrupted async handlers to unwind once
#: cancelled (their attempts are recorded by then; only their own cleanup is left).
UNWIND_SECONDS = 0.25
#: The interpreter's thread switch interval while workers run (CPython's default: 5 ms).
#: Sync handlers run in threads; a CPU-bound one holds the GIL for a whole interval each
#: time the event loop or a store thread wants it back, and the loop needs it several times
#: per decision (each SQLite statement releases it). At 5 ms that made a due schedule fire
#: 90-130 ms late; at 1 ms a hand-over costs at most a millisecond (docs/performance.md,
#: "Firing lateness"). A lower interval set by the embedding app is kept.
SWITCH_INTERVAL_SECONDS = 0.001
_LOW = int(Priority.LOW)


class WorkerPool:
    def __init__(
        self,
        system: TaskSystem,
        *,
        slots: int,
        low_slots: int,
        only_ids: set[int] | None = None,
        recover: bool = True,
    ) -> None:
        self.system = system
        self.slots = slots
        self.low_slots = low_slots
        #: runner mode: claim only these ids
        self.only_ids = only_ids
        self.recover = recover
        self.running: dict[int, Execution] = {}
        #: the claim loop's wake-up: a flag and the future it waits on
        self._woken = False
        self._waiter: asyncio.Future[None] | None = None
        #: the claim loop's timer; kept while its deadline stays (most waits end by a wake)
        self._timer: asyncio.TimerHandle | None = None
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._exec_tasks: set[asyncio.Task[None]] = set()
        #: outcomes of tasks claimed by a submit that landed while the pool was stopping
        self._late: set[asyncio.Future[None]] = set()
        self._token: int | None = None
        #: the last pick found every task due for this pool, and nothing has come due since
        #: as far as this process knows: a freed slot need not look (see :meth:`wake`)
        self._drained = False
        #: moves on whenever something may have come due: a pick sets ``_drained`` only when
        #: nothing moved it while the pick was on its way
        self._due_events = 0
        #: slots promised to submits on their way (:meth:`reserve`), all and LOW ones
        self._reserved = 0
        self._reserved_low = 0
        self._due_at: float | None = None  # loop time when a delayed task comes due
        #: the store pushes wake-ups from other processes (then the poll is a fallback)
        self._listening = False
        self._pushes_from = 0.0  # loop time from which the other processes wake this one
        self._pushed = False

    # -- control ------------------------------------------------------------------------
    async def start(self) -> None:
        if sys.getswitchinterval() > SWITCH_INTERVAL_SECONDS:
            sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        if self.recover:
            await self.recover_now(at_start=True)
        store = self.system.store
        self._listening = store.listen(self.system.ctx.node_id, self._on_push)
        # until the others know this node they send it nothing: poll as if not listening
        self._pushes_from = asyncio.get_running_loop().time() + store.listen_warmup_seconds
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="ucore-claim-loop"),
            asyncio.create_task(self._housekeeping_loop(), name="ucore-housekeeping"),
        ]

    def wake(self) -> None:
        """Something may have come due (a submit, a re-queue, another process's commit, a
        new handler, a recovery): the claim loop looks at once."""
        self._may_be_due()
        self._slot_freed()

    def _may_be_due(self) -> None:
        self._drained = False
        self._due_events += 1

    def _slot_freed(self) -> None:
        """A slot is free: the claim loop looks unless it knows that nothing is due."""
        self._woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_push(self) -> None:
        """Another process committed (its wake-up datagram arrived)."""
        if not self._stopping:
            self._pushed = True
            self.wake()

    def stop_task(self, task_id: int, reason: str) -> bool:
        ex = self.running.get(task_id)
        if ex is None:
            return False
        ex.stop(reason)
        return True

    async def stop(self, grace: float) -> None:
        """Stop claiming, ask running tasks to stop, wait ``grace`` s, interrupt the rest."""
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        claim_loop, *others = self._tasks
        for task in others:
            task.cancel()
        # The claim loop is woken, not cancelled: a claim already committed must reach
        # _launch (and so be stopped below), or the task would stay "running" with no worker.
        self.wake()
        try:
            await asyncio.wait_for(asyncio.shield(claim_loop), CLAIM_LOOP_EXIT_SECONDS)
        except TimeoutError:
            claim_loop.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        executions = list(self.running.values())
        for ex in executions:
            ex.stop("shutdown")
        if executions:
            waits = [asyncio.ensure_future(ex.finished.wait()) for ex in executions]
            _, pending = await asyncio.wait(waits, timeout=grace)
            for w in pending:
                w.cancel()
        for ex in executions:
            if not ex.settled:
                log.warning("task %s did not stop within %s s; re-queued", ex.record.id, grace)
                await ex.interrupt("the process shut down before the task stopped")
        left = list(self._exec_tasks)
        for task in left:
            task.cancel()
        if left:
            # a handler that ignores its cancellation is left to itself (asyncio.run's own
            # teardown cancels it again)
            await asyncio.wait(left, timeout=UNWIND_SECONDS)
        self._exec_tasks.clear()  # those cancelled before their first step left no trace
        if self._late:
            await asyncio.wait(set(self._late), timeout=UNWIND_SECONDS)

    # -- claiming -----------------------------------------------------------------------
    def _busy(self) -> tuple[int, int]:
        """Slots held (all, and by LOW tasks), reservations included. A task whose handler
        has returned no longer holds its slot while its outcome is written: the claim for
        the slot then joins the same transaction."""
        busy, low = self._reserved, self._reserved_low
        for ex in self.running.values():
            if not ex.returned:
                busy += 1
                if ex.record.priority <= _LOW:
                    low += 1
        return busy, low

    async def _fill_slots(self) -> None:
        sys = self.system
        while not self._stopping and not self._drained:
            busy, low_running = self._busy()
            free = self.slots - busy
            if free <= 0:
                return
            ids = self.only_ids
            if ids is not None:
                # runner mode: try each of its ids (one that finished must not hide the others)
                wanted: list[int | None] = [i for i in sorted(ids) if i not in self.running]
                if not wanted:
                    return
            else:
                wanted = [None]
            low_free = self.low_slots - low_running
            limit = free if low_free <= 0 else min(free, low_free)
            now = sys.clock.now()
            claimed = Claimed([])
            due_events = self._due_events
            for task_id in wanted:
                claimed = await sys.store.claim_tasks(
                    self._claim_request(
                        now,
                        min_priority=Priority.NORMAL if low_free <= 0 else Priority.LOW,
                        task_id=task_id,
                        limit=1 if task_id is not None else limit,
                    )
                )
                if claimed.records:
                    break
            for record in claimed.records:
                self._launch(record)
            if len(claimed.records) < (1 if ids is not None else limit):
                # everything due for this pool is taken (LOW tasks too, unless LOW slots
                # were full); runner mode looks each time
                self._drained = ids is None and low_free > 0 and due_events == self._due_events
                nxt = claimed.next_due
                loop = asyncio.get_running_loop()
                self._due_at = (
                    None if nxt is None else loop.time() + max(0.0, (nxt - now).total_seconds())
                )
                return

    # -- claiming at submit time ----------------------------------------------------------
    def reserve(self, priority: Priority) -> ClaimRequest | None:
        """A claim for a task being submitted, with a slot held for it, when this pool would
        take it at once: a slot is free (a LOW one for a LOW task) and no other task is due
        for the pool. Then the submit inserts and claims in one transaction
        (:meth:`Store.insert_and_claim`) and hands the outcome to :meth:`submitted`."""
        if self._stopping or not self._drained or self.only_ids is not None:
            return None
        busy, low_running = self._busy()
        if busy >= self.slots:
            return None
        low = priority <= _LOW
        if low and low_running >= self.low_slots:
            return None
        self._reserved += 1
        self._reserved_low += low
        now = self.system.clock.now()
        return self._claim_request(now, min_priority=Priority.LOW, task_id=None, limit=1)

    def _claim_request(
        self, now: datetime, *, min_priority: Priority, task_id: int | None, limit: int
    ) -> ClaimRequest:
        """A claim by this node at ``now``, under a fresh lease, of the tasks it has
        handlers for."""
        sys = self.system
        ctx = sys.ctx
        return ClaimRequest(
            node_id=ctx.node_id,
            host=ctx.host,
            pid=ctx.pid,
            now=now,
            lease_until=now + timedelta(seconds=sys.lease_seconds),
            min_priority=min_priority,
            task_id=task_id,
            names=sys.handlers.names(),
            limit=limit,
        )

    def submitted(self, priority: Priority, record: TaskRecord | None) -> None:
        """The submit of a :meth:`reserve` is committed (or failed: ``record`` None)."""
        self._reserved -= 1
        self._reserved_low -= priority <= _LOW
        if record is None:
            self.wake()
        elif self._stopping:
            # claimed while the pool shuts down: recorded interrupted and re-queued
            ex = Execution(self.system, record, self.system.handlers.get(record.name))
            write = asyncio.ensure_future(ex.interrupt("the process shut down before it ran"))
            self._late.add(write)
            write.add_done_callback(self._late.discard)
        else:
            self._launch(record)

    def _launch(self, record: TaskRecord) -> None:
        reg = self.system.handlers.get(record.name)
        ex = Execution(
            self.system, record, reg, on_returned=self._returned, on_abandoned=self._forget
        )
        self.running[record.id] = ex
        self._exec_tasks.add(asyncio.create_task(self._run(ex), name=f"ucore-task-{record.id}"))

    def _returned(self, requeued: bool) -> None:
        """An execution's handler returned; its outcome is being written (``requeued``: the
        task goes back to pending, to be retried)."""
        if requeued:
            self.wake()
        else:
            self._slot_freed()

    def _forget(self, ex: Execution) -> None:
        """An execution whose handler ignored its timeout: it is no longer this pool's (the
        handler goes on in its task until it returns; the task may run again meanwhile)."""
        if self.running.get(ex.record.id) is ex:
            del self.running[ex.record.id]

    async def _run(self, ex: Execution) -> None:
        try:
            await ex.run()
        except Exception:
            log.exception("task %s: recording its outcome failed", ex.record.id)
        finally:
            self._exec_tasks.discard(asyncio.current_task())
            self._forget(ex)
            ex.finished.set()
            # a slot is free; when the handler returned it was woken then, except that in
            # runner mode a task is wanted again only once it has left ``running``
            if not ex.returned or self.only_ids is not None:
                self.wake()

    async def _wait_for_wake(self, loop: asyncio.AbstractEventLoop, deadline: float) -> bool:
        """Until :meth:`wake` or ``deadline`` (loop time): whether it was woken."""
        if not self._woken:
            timer = self._timer
            if timer is None or timer.when() != deadline:
                if timer is not None:
                    timer.cancel()
                self._timer = loop.call_at(deadline, self._on_timer)
            waiter = self._waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        woken, self._woken = self._woken, False
        return woken

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _claim_loop(self) -> None:
        store = self.system.store
        loop = asyncio.get_running_loop()
        need_claim = True
        while not self._stopping:
            try:
                if need_claim:
                    await self._fill_slots()
                if self._listening and loop.time() >= self._pushes_from:
                    poll = PUSHED_POLL_SECONDS
                else:
                    poll = BUSY_POLL_SECONDS if self.running else IDLE_POLL_SECONDS
                # with housekeeping's and the config watch's timers (one wake-up for all)
                deadline = aligned_deadline(loop, poll)
                if self._due_at is not None:
                    deadline = min(deadline, self._due_at)
                need_claim = await self._wait_for_wake(loop, deadline)
                if not need_claim:
                    # the fallback poll: what no wake-up told of is looked for again
                    self._may_be_due()
                pushed, self._pushed = self._pushed, False
                # Another process's commit shows in the change token. With wake-ups pushed
                # by the store, it is read only when one came or on the fallback poll; a
                # local wake (a submit, a freed slot) needs no look at it.
                if not need_claim or pushed or not self._listening:
                    token = await store.change_token()
                    if token != self._token or pushed:
                        self._token = token
                        need_claim = True
                        self._may_be_due()
                        # another connection committed: tasks may have finished elsewhere
                        self.system.ctx.events.publish(Event("store.changed"))
                        if self.running:
                            for task_id in await store.cancel_requests(list(self.running)):
                                self.stop_task(task_id, "cancel")
                if self._due_at is not None and loop.time() >= self._due_at:
                    self._due_at = None
                    need_claim = True
                    self._may_be_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("worker loop: %s; retrying in 1 s", exc)
                need_claim = True
                await asyncio.sleep(1.0)

    # -- housekeeping -------------------------------------------------------------------
    async def _housekeeping_loop(self) -> None:
        sys = self.system
        period = min(HEARTBEAT_SECONDS, sys.lease_seconds / 3)
        rounds = 0
        while not self._stopping:
            await asyncio.sleep(aligned_delay(period))
            rounds += 1
            try:
                now = sys.clock.now()
                await sys.store.heartbeat(sys.ctx.node_id, now)
                if self.running:
                    # only the ids asked about: a task claimed while this renewal is on its
                    # way is not in the answer and has not lost its lease
                    asked = list(self.running)
                    held = await sys.store.renew_leases(
                        sys.ctx.node_id, asked, now + timedelta(seconds=sys.lease_seconds)
                    )
                    for task_id in set(asked) - held:
                        self.stop_task(task_id, "lease")
                if self.recover and rounds % 3 == 0:
                    await self.recover_now()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("housekeeping: %s", exc)

    async def recover_now(self, *, at_start: bool = False) -> int:
        """Re-queue tasks of dead processes of this host and tasks with expired leases."""
        sys = self.system
        now = sys.clock.now()
        nodes = await sys.store.list_nodes()
        dead = dead_local_nodes(nodes, sys.ctx.host, sys.ctx.node_id)
        recovered = await sys.store.recover_nodes(dead, now, sys.max_interruptions)
        if dead:
            await sys.store.remove_nodes(dead)
        recovered += await sys.store.recover_expired(now, sys.max_interruptions)
        for r in recovered:
            what = "re-queued" if r.requeued else "failed (too many interruptions)"
            log.warning("task %s %s was interrupted; %s", r.task_id, r.name, what)
        if recovered:
            self.wake()
        return len(recovered)
