"""WAL checkpoints off the event loop, at ``synchronous=NORMAL``.

At ``NORMAL`` a commit writes its pages to the WAL without syncing it; the data reaches the
disk when a checkpoint copies the WAL back into the database file, and that checkpoint
first syncs the WAL. SQLite runs it inside the commit that takes the WAL past its
``wal_autocheckpoint`` size. For the quick writes that commit is on the event loop's thread,
so every ~150 task commits the loop stood still for ~3-5 ms while 4 MB went to the disk:
about 20 µs a commit, a tenth of a task's whole cost (docs/performance.md, Round 6).

So at ``NORMAL`` a thread of its own, with its own connection, runs a ``PASSIVE`` checkpoint
every :data:`EVERY_COMMITS` commits of the quick writes: it syncs the WAL and copies the
pages while the loop goes on (a ``PASSIVE`` checkpoint takes no lock that a writer waits
for, and SQLite's call leaves the GIL while it works). The quick writes' connection then
checkpoints by itself only every :data:`QUICK_AUTOCHECKPOINT_PAGES` pages: by then nearly
everything is copied and synced, so that checkpoint is short, and the WAL starts over from
its beginning after it. That is also the WAL's bound when the thread falls behind.

At ``FULL`` every commit syncs the WAL already, so the checkpoint in the commit only copies a
few pages and syncs the database file; a second thread's syncs only competed with the
loop's own (measured: no gain), and none is started.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger("ucore.stores.sqlite")

#: Commits of the quick writes between two background checkpoints (~800 WAL pages when
#: each commits a task's submit, claim and outcome).
EVERY_COMMITS = 128
#: The quick writes' own ``wal_autocheckpoint`` while the background checkpoints run
#: (SQLite's default 1,000): the WAL file grows to about 16 MB before it starts over.
QUICK_AUTOCHECKPOINT_PAGES = 4000


def wanted(synchronous: str) -> bool:
    """Whether checkpoints go to a thread of their own at this ``synchronous`` level."""
    return synchronous.upper() == "NORMAL"


class Checkpointer(threading.Thread):
    """Runs a ``PASSIVE`` checkpoint on its own connection when :meth:`note_commit` asks."""

    def __init__(self, name: str, opener: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(name=name, daemon=True)
        self._opener = opener
        self._wanted = threading.Event()
        self._stopping = False
        self._commits = 0
        #: checkpoints run (they may have copied nothing when another was running)
        self.checkpoints = 0

    def note_commit(self) -> None:
        """A commit of the quick writes (on the loop's thread; a counter and, at times, a
        flag)."""
        self._commits += 1
        if self._commits >= EVERY_COMMITS:
            self._commits = 0
            self._wanted.set()

    def stop(self) -> None:
        """Ask the thread to end (then ``join`` it)."""
        self._stopping = True
        self._wanted.set()

    def run(self) -> None:
        try:
            conn = self._opener()
        except (sqlite3.Error, OSError) as exc:
            log.warning("background checkpoints off: cannot open the database (%s)", exc)
            return
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._stopping:
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    # busy (another checkpoint), or a damaged file: the commits' own
                    # checkpoints still bound the WAL; try again at the next turn
                    log.debug("background checkpoint: %s", exc)
                self.checkpoints += 1
        finally:
            conn.close()
