"""The ``library_scan`` task: bring the index of one root (or all) up to date.

Per root: check it (:func:`~ucore.fs.roots.check_root`); an unavailable or replaced root is
reported and its records left alone. An online root is scanned by
:class:`~ucore.fs.scanner.RootScanner`. The result counts new, changed, vanished and
unchanged files (per root and in total), lists what could not be read or was kept, and says
``partial: true`` when ``time_budget_seconds`` ran out. At the end the scan writes one
journal entry and, when images wait for thumbnails, submits ``thumbnails_generate`` (LOW,
unique, so it is never queued twice).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from ucore.foundation.config.params import LibraryScanParams
from ucore.fs import journal
from ucore.fs.roots import RootStatus, check_root
from ucore.fs.scanner import RootScan, RootScanner, ScanHooks, ScanStopped
from ucore.stores.base import MissingRootError
from ucore.stores.records import Priority, RootRecord
from ucore.tasks.context import TaskContext
from ucore.tasks.errors import TaskCancelled

if TYPE_CHECKING:
    from ucore.fs.system import LibrarySystem

TASK_NAME = "library_scan"
THUMBNAILS_TASK = "thumbnails_generate"


def library_scan(ctx: TaskContext) -> dict[str, Any]:
    from ucore.fs.system import library_of

    return _Scan(library_of(ctx.app), ctx).run()


class _Scan:
    def __init__(self, lib: LibrarySystem, ctx: TaskContext) -> None:
        self.lib = lib
        self.ctx = ctx
        self.bridge = lib.bridge()
        params: LibraryScanParams = ctx.params
        self.params = params
        budget = params.time_budget_seconds
        self.deadline = None if budget is None else time.monotonic() + budget
        self.results: list[RootScan] = []
        self.partial = False

    def check(self) -> None:
        self.ctx.check_cancelled()
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise ScanStopped("time budget used up")

    def run(self) -> dict[str, Any]:
        store = self.bridge.store
        started = time.monotonic()
        if self.params.root is None:
            roots = self.bridge.call(store.list_roots())
        else:
            roots = [self.bridge.call(self.lib.get_root(self.params.root))]
        try:
            for root in roots:
                if self.partial:
                    break
                self.results.append(self._scan_root(root))
        except TaskCancelled:
            self._journal(failure="cancelled")
            raise
        except Exception as exc:
            self._journal(failure=f"failed: {exc}")
            raise
        summary = self._summary(time.monotonic() - started)
        summary["thumbnails_task"] = self._thumbnails()
        self._journal(summary=summary)
        return summary

    def _scan_root(self, root: RootRecord) -> RootScan:
        check = check_root(root)
        if not check.online or check.device is None:
            return RootScan(root.id, root.path, check.status.value, check.reason)
        if check.device != root.device:  # the volume was renumbered (its marker matches)
            self.bridge.call(self.bridge.store.set_root_device(root.id, root.device, check.device))
            root = dataclasses.replace(root, device=check.device)
        scanner = RootScanner(
            self.bridge,
            root,
            check.device,
            cache_dir=self.lib.cache_dir,
            now=self.lib.clock.now,
            hooks=ScanHooks(self.check, self.ctx.progress),
        )
        try:
            scanner.run()
        except ScanStopped as exc:
            self.partial = True
            scanner.result.reason = str(exc)
        except MissingRootError as exc:
            scanner.result.status, scanner.result.reason = "removed", str(exc)
        except BaseException:
            self.results.append(scanner.result)  # for the journal entry
            raise
        result = scanner.result
        if result.complete and result.status == RootStatus.ONLINE.value:
            self.bridge.call(
                self.bridge.store.set_root_scanned(root.id, self.lib.clock.now(), self.ctx.task_id)
            )
        return result

    def _summary(self, seconds: float) -> dict[str, Any]:
        rs = self.results
        return {
            "roots": [r.to_json() for r in rs],
            "new": sum(r.new for r in rs),
            "changed": sum(r.changed for r in rs),
            "vanished": sum(r.vanished for r in rs),
            "unchanged": sum(r.unchanged for r in rs),
            "errors": sum(r.errors_total for r in rs),
            "unavailable": [r.id for r in rs if r.status != RootStatus.ONLINE.value],
            "partial": self.partial,
            "seconds": round(seconds, 3),
        }

    def _thumbnails(self) -> int | None:
        """Queue thumbnails when a scanned root has images waiting for one."""
        store = self.bridge.store
        waiting = any(
            self.bridge.call(store.thumbnail_jobs(r.id, limit=1))
            for r in self.results
            if r.status == RootStatus.ONLINE.value
        )
        if not waiting:
            return None
        return self.bridge.call(
            self.lib.tasks.submit(
                THUMBNAILS_TASK, {}, priority=Priority.LOW, unique_key=THUMBNAILS_TASK
            )
        )

    def _journal(
        self, *, summary: dict[str, Any] | None = None, failure: str | None = None
    ) -> None:
        rs = self.results
        counts = (
            f"{sum(r.new for r in rs):,} new, {sum(r.changed for r in rs):,} changed, "
            f"{sum(r.vanished for r in rs):,} vanished, {sum(r.unchanged for r in rs):,} unchanged"
        )
        scope = "all roots" if self.params.root is None else f"root {self.params.root}"
        if failure is not None:
            message = f"scan of {scope} {failure} (after {counts})"
            data: dict[str, Any] = {"roots": [r.to_json() for r in rs], "outcome": failure}
        else:
            assert summary is not None
            message = f"scan of {scope}: {counts}"
            if summary["unavailable"]:
                message += f"; not scanned: roots {', '.join(map(str, summary['unavailable']))}"
            if summary["partial"]:
                message += " (partial: time budget used up)"
            data = summary
        try:
            self.bridge.call(
                self.lib.journal.write(journal.SCAN, message, data, task_id=self.ctx.task_id)
            )
        except Exception as exc:  # the journal must not hide the scan's own outcome
            if failure is None:
                raise
            self.ctx.log.warning("could not write the journal entry: %s", exc)
