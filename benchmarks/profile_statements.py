"""Diagnostic: the time of each SQL statement inside one side of bench_throughput.py.

Runs one child of ``bench_throughput.py`` (``ucore``, ``rawaio``, ``raw1``, ...) in this
process with every ``sqlite3`` connection made by a subclass that times ``execute`` by the
statement's text, then prints each statement's share, count and µs per execution. The
timing wrapper costs the same per statement on every side, so the sides compare.

    python benchmarks/profile_statements.py ucore --tasks 5000 --sync NORMAL
    python benchmarks/profile_statements.py rawaio --tasks 5000 --sync NORMAL
"""

from __future__ import annotations

import argparse
import collections
import runpy
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SPENT: collections.defaultdict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])


class TimedConnection(sqlite3.Connection):
    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        t = time.perf_counter()
        try:
            return super().execute(sql, *args)
        finally:
            entry = SPENT[" ".join(sql.split())[:72]]
            entry[0] += 1
            entry[1] += time.perf_counter() - t


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("side", help="a side of bench_throughput.py (ucore, rawaio, raw1, raw, huey)")
    p.add_argument("--tasks", type=int, default=5000)
    p.add_argument("--sync", default="NORMAL", choices=("NORMAL", "FULL"))
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args(argv)
    plain_connect = sqlite3.connect

    def connect(*a: Any, **kw: Any) -> sqlite3.Connection:
        kw.setdefault("factory", TimedConnection)
        return plain_connect(*a, **kw)

    sqlite3.connect = connect  # type: ignore[assignment]
    sys.path.insert(0, str(HERE.parent / "src"))
    with tempfile.TemporaryDirectory() as folder:
        sys.argv = [
            str(HERE / "bench_throughput.py"),
            *("--child", args.side, "--dir", folder, "--sync", args.sync),
            *("--tasks", str(args.tasks), "--no-count"),
        ]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit:
            pass
    total = sum(v[1] for v in SPENT.values())
    per_task = total / args.tasks * 1e6
    print(f"\n{args.side}, {args.sync}, {args.tasks} tasks: SQL {per_task:.0f} us/task")
    for sql, (n, spent) in sorted(SPENT.items(), key=lambda x: -x[1][1])[: args.top]:
        print(f"  {100 * spent / total:5.1f}%  n={int(n):7d}  {spent / n * 1e6:7.1f} us  {sql}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
