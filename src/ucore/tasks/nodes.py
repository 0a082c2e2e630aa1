"""Processes that share the database: who they are and whether they are alive."""

from __future__ import annotations

from datetime import datetime, timedelta

import psutil

from ucore.stores.records import NodeRecord

#: How often a process with workers writes its heartbeat.
HEARTBEAT_SECONDS = 10.0
#: A heartbeat older than this means the process is gone (three missed beats).
STALE_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS


def process_start_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


def local_process_alive(node: NodeRecord) -> bool:
    """Whether the process of ``node`` (on this host) still exists; a reused pid is not it."""
    started = process_start_time(node.pid)
    if started is None:
        return False
    if node.proc_started is None:
        return True
    return abs(started - node.proc_started) < 1.0


def is_fresh(node: NodeRecord, now: datetime) -> bool:
    return node.heartbeat_at >= now - timedelta(seconds=STALE_AFTER_SECONDS)


def dead_local_nodes(nodes: list[NodeRecord], host: str, own_id: str) -> list[str]:
    return [n.id for n in nodes if n.host == host and n.id != own_id and not local_process_alive(n)]
