"""The ``thumbnails_generate`` task: make the thumbnails that are pending.

Root by root (online roots only), pending records in id order, a few hundred per query;
each image is made by :func:`~ucore.fs.thumbnails.make_thumbnail` and its new state written
back in one batch per query. A broken or huge image is ``failed`` (that file only); a file
that is gone or no longer a library file stays ``pending`` for the next scan to settle.
Progress per image, cancel within one image, ``time_budget_seconds`` ends it with
``partial: true``. One journal entry per run.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ucore.foundation.config.params import ThumbnailsGenerateParams
from ucore.fs import journal
from ucore.fs.filter import LibraryFilter, NotALibraryFile
from ucore.fs.roots import check_root
from ucore.fs.thumbnails import DEFAULT_SIZE, ThumbnailFailed, make_thumbnail, thumbnail_path
from ucore.stores.records import RootRecord, ThumbnailUpdate, ThumbState
from ucore.tasks.context import TaskContext
from ucore.tasks.errors import TaskCancelled

if TYPE_CHECKING:
    from ucore.fs.pipeline import LoopBridge
    from ucore.fs.system import LibrarySystem

TASK_NAME = "thumbnails_generate"
JOBS_PER_QUERY = 256
MAX_REPORTED = 50


def thumbnails_generate(ctx: TaskContext) -> dict[str, Any]:
    from ucore.fs.system import library_of

    return _Thumbnails(library_of(ctx.app), ctx).run()


class _Thumbnails:
    def __init__(self, lib: LibrarySystem, ctx: TaskContext) -> None:
        self.lib = lib
        self.ctx = ctx
        self.bridge: LoopBridge = lib.bridge()
        params: ThumbnailsGenerateParams = ctx.params
        self.params = params
        budget = params.time_budget_seconds
        self.deadline = None if budget is None else time.monotonic() + budget
        self.size = DEFAULT_SIZE
        self.generated = self.failed = self.missing = self.done = 0
        self.total = 0
        self.failures: list[dict[str, str]] = []
        self.skipped: list[dict[str, Any]] = []
        self.partial = False
        self._last_progress = 0.0

    def run(self) -> dict[str, Any]:
        store = self.bridge.store
        if self.params.root is None:
            roots = self.bridge.call(store.list_roots())
        else:
            roots = [self.bridge.call(self.lib.get_root(self.params.root))]
        stats = self.bridge.call(store.root_stats())
        self.total = sum(
            stats[r.id].thumbnail_count(ThumbState.PENDING) for r in roots if r.id in stats
        )
        try:
            for root in roots:
                if self.partial:
                    break
                self._root(root)
        except TaskCancelled:
            self._journal(outcome="cancelled")
            raise
        except Exception as exc:
            self._journal(outcome=f"failed: {exc}")
            raise
        self._progress(final=True)
        result = self._result()
        self._journal()
        return result

    def _root(self, root: RootRecord) -> None:
        check = check_root(root)
        if not check.online:
            self.skipped.append(
                {"id": root.id, "status": check.status.value, "reason": check.reason}
            )
            return
        flt = LibraryFilter(root.path, root.ignore, device=check.device)
        after = 0
        while not self.partial:
            jobs = self.bridge.call(
                self.bridge.store.thumbnail_jobs(root.id, after_id=after, limit=JOBS_PER_QUERY)
            )
            if not jobs:
                return
            updates: list[ThumbnailUpdate] = []
            try:
                for job in jobs:
                    self.ctx.check_cancelled()
                    if self.deadline is not None and time.monotonic() >= self.deadline:
                        self.partial = True
                        break
                    after = job.id
                    update = self._one(flt, root.id, job.id, job.rel_path)
                    if update is not None:
                        updates.append(update)
                    self._progress()
            finally:
                self.bridge.call(self.bridge.store.set_thumbnail_states(updates))

    def _one(
        self, flt: LibraryFilter, root_id: int, file_id: int, rel_path: str
    ) -> ThumbnailUpdate | None:
        self.done += 1
        dest = thumbnail_path(self.lib.cache_dir, root_id, rel_path, self.size)
        try:
            mtime_ns = make_thumbnail(flt, rel_path, dest, self.size)
        except (FileNotFoundError, NotALibraryFile):
            self.missing += 1
            return None
        except ThumbnailFailed as exc:
            self.failed += 1
            if len(self.failures) < MAX_REPORTED:
                self.failures.append({"root": str(root_id), "path": rel_path, "error": str(exc)})
            return ThumbnailUpdate(file_id, ThumbState.FAILED, None)
        self.generated += 1
        return ThumbnailUpdate(file_id, ThumbState.DONE, mtime_ns)

    def _progress(self, *, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self._last_progress >= 0.2:
            self._last_progress = now
            total = self.done if final else max(self.total, self.done)
            self.ctx.progress(self.done, total, f"{self.done:,} of {total:,} images")

    def _result(self) -> dict[str, Any]:
        return {
            "generated": self.generated,
            "failed": self.failed,
            "missing": self.missing,
            "failures": self.failures,
            "skipped_roots": self.skipped,
            "size": self.size,
            "partial": self.partial,
        }

    def _journal(self, *, outcome: str | None = None) -> None:
        message = (
            f"thumbnails: {self.generated:,} made, {self.failed:,} failed, "
            f"{self.missing:,} sources missing"
        )
        if outcome is not None:
            message += f" ({outcome})"
        elif self.partial:
            message += " (partial: time budget used up)"
        if self.skipped:
            message += f"; roots not online: {', '.join(str(s['id']) for s in self.skipped)}"
        data = self._result() | {"outcome": outcome or "completed"}
        try:
            self.bridge.call(
                self.lib.journal.write(journal.THUMBNAILS, message, data, task_id=self.ctx.task_id)
            )
        except Exception as exc:  # the journal must not hide the task's own outcome
            if outcome is None:
                raise
            self.ctx.log.warning("could not write the journal entry: %s", exc)
