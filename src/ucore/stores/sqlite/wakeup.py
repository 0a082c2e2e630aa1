"""The cross-process wake-up of the SQLite store: a datagram to each worker process.

SQLite has no NOTIFY. Each process that runs workers (``service``, ``runner``) listens on a
Unix datagram socket in Linux's *abstract* namespace, named after the database file and its
node id (``\\0ucore-wake-<hash of the database path>-<node id>``): no file to create or clean
up, no path-length limit, gone when the process is. After every commit, the writer thread
of every process sends one byte to each other node of the database (their ids come from the
``nodes`` table, read again at most every :data:`PEERS_SECONDS`). A send is a few
microseconds, never blocks (a full queue already means "wake up"), and a node that is gone
just refuses it.

The receiver drains its socket on the event loop and calls back once: the worker pool then
claims and looks for cancel requests at once, instead of on its next poll. The
``PRAGMA data_version`` poll stays as the fallback (every few seconds) for writers that do
not send (another program, a platform without abstract sockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger("ucore.stores")

#: How long a sender keeps its list of nodes before reading it again.
PEERS_SECONDS = 2.0
_MESSAGE = b"!"


def supported() -> bool:
    """Abstract Unix sockets exist on Linux only."""
    return sys.platform.startswith("linux")


def _nothing() -> None:
    pass


class WakeChannel:
    """Send and receive wake-ups for one database file."""

    def __init__(self, db_path: Path) -> None:
        digest = hashlib.sha256(os.fsencode(os.path.realpath(db_path))).hexdigest()[:20]
        self._prefix = f"\0ucore-wake-{digest}-"
        self._listener: socket.socket | None = None
        self._node: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sender: socket.socket | None = None
        self._peers: list[str] = []
        self._peers_at = -PEERS_SECONDS
        self._lock = threading.Lock()
        self._callback: Callable[[], None] = _nothing

    def address(self, node_id: str) -> str:
        return self._prefix + node_id

    # -- receiving (event loop) ---------------------------------------------------------
    def listen(self, node_id: str, callback: Callable[[], None]) -> bool:
        """Receive wake-ups for ``node_id``; ``callback`` runs on the running loop, once per
        burst (listening again only replaces the callback). False when this platform or
        process cannot listen (the poll remains)."""
        self._callback = callback
        if self._listener is not None:
            return True
        if not supported():
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind(self.address(node_id))
        except OSError as exc:
            sock.close()
            log.debug("wake-up socket unavailable (%s): polling only", exc)
            return False
        loop = asyncio.get_running_loop()

        def drain() -> None:
            while True:
                try:
                    sock.recv(64)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
            self._callback()

        loop.add_reader(sock.fileno(), drain)
        self._listener, self._node, self._loop = sock, node_id, loop
        return True

    def close(self) -> None:
        sock, self._listener = self._listener, None
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(sock.fileno())
            sock.close()
        with self._lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None

    # -- sending (any thread; the writer's after each commit) ---------------------------
    def peers_stale(self) -> bool:
        return time.monotonic() - self._peers_at >= PEERS_SECONDS

    def set_peers(self, node_ids: Iterable[str]) -> None:
        self._peers = [n for n in node_ids if n != self._node]
        self._peers_at = time.monotonic()

    def notify(self) -> int:
        """Wake every other node; returns how many took the message."""
        if not self._peers or not supported():
            return 0
        sent = 0
        with self._lock:
            if self._sender is None:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
            for node in self._peers:
                try:
                    self._sender.sendto(_MESSAGE, self.address(node))
                    sent += 1
                except BlockingIOError:
                    sent += 1  # its queue is full: it has wake-ups waiting already
                except OSError:
                    pass  # that node is gone (or not listening): nothing to wake
        return sent
