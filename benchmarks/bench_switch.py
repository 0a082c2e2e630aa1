"""What a 1 ms thread switch interval costs CPU-bound Python threads.

The worker pool lowers ``sys.setswitchinterval`` from CPython's 5 ms to 1 ms (see
``ucore.tasks.workers.SWITCH_INTERVAL_SECONDS``). This runs two threads spinning in pure
Python for ``--seconds`` in a fresh child process per run, alternating 5 ms and 1 ms, and
prints the rounds each setting got done (medians) and their ratio.

    .venv/bin/python benchmarks/bench_switch.py            # 5 runs per side of 3 s
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time


def child(interval: float, seconds: float) -> int:
    sys.setswitchinterval(interval)
    stop = time.monotonic() + seconds
    counts = [0, 0]

    def spin(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            for _ in range(1000):
                pass
            n += 1
        counts[i] = n

    threads = [threading.Thread(target=spin, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(child(args.child, args.seconds))
        return 0
    rounds: dict[float, list[int]] = {0.005: [], 0.001: []}
    for run in range(1, args.runs + 1):
        for interval, got in rounds.items():
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(interval),
                    "--seconds",
                    str(args.seconds),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            got.append(int(out.stdout))
        print(f"run {run}: 5 ms {rounds[0.005][-1]:,} rounds, 1 ms {rounds[0.001][-1]:,} rounds")
    five, one = statistics.median(rounds[0.005]), statistics.median(rounds[0.001])
    print(
        f"medians: 5 ms {five:,.0f}, 1 ms {one:,.0f} rounds of 1,000 additions; "
        f"1 ms / 5 ms = {one / five:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
