"""Library scan: a first scan and a rescan of an unchanged tree, against the floor.

    python benchmarks/bench_scan.py [--files 200000] [--runs 5] [--quick] [--dir BASE] [--keep]
                                    [--no-snapshot]

Builds a tree of ``--files`` plain files (about 100 per folder, three levels deep, mixed
extensions, a third of them "images" by name) in a temporary folder, then, ``--runs``
times, alternating, each in a fresh child process on the same (warm) tree:

* ``find ROOT -type f -printf '%s %T@ %p\\n' > /dev/null``: the C tool's floor;
* the **Python floor**: a bare ``os.scandir`` + ``stat`` walk, nothing else;
* **ucore**: a new database, ``add_root`` (not timed), then ``library_scan`` end to end
  (submit -> completed, runner mode in the child) twice: the **first scan** (every record
  new) and the **rescan** of the unchanged tree.

Prints each run, the medians and the ratios against the targets: first scan within 3x of
the Python floor, rescan at least twice as fast as the first scan. Like the other scripts, the
children import a copy of ``src`` taken at the start (``--no-snapshot``: the live tree).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    cleanup,
    load_line,
    make_tmp,
    median,
    print_header,
    run_child,
    snapshot_src,
)

EXTENSIONS = ("jpg", "png", "txt", "pdf", "mp3", "bin")
PER_DIR = 100


def make_tree(root: Path, files: int) -> float:
    """``files`` small files in nested folders; returns the seconds it took."""
    start = time.perf_counter()
    made = folder = 0
    while made < files:
        top, mid = f"set-{folder // 400:03d}", f"album-{folder // 20 % 20:02d}"
        path = root / top / mid / f"f{folder:05d}"
        path.mkdir(parents=True, exist_ok=True)
        for k in range(min(PER_DIR, files - made)):
            name = f"item-{k:03d}.{EXTENSIONS[(folder + k) % len(EXTENSIONS)]}"
            fd = os.open(path / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, b"x" * ((folder * 7 + k) % 200))
            os.close(fd)
            made += 1
        folder += 1
    return time.perf_counter() - start


# -- children -------------------------------------------------------------------------------
def child_floor(root: str) -> dict[str, Any]:
    start = time.perf_counter()
    count = 0
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    entry.stat(follow_symlinks=False)
                    count += 1
    return {"seconds": time.perf_counter() - start, "files": count}


def child_ucore(
    root: str, data: str, batch_rows: str = "0", in_flight: str = "-1"
) -> dict[str, Any]:
    import ucore.fs.scanner
    from ucore.app import bootstrap
    from ucore.foundation.config import parse_config

    if int(batch_rows):
        ucore.fs.scanner.BATCH_ROWS = int(batch_rows)  # read at each scanner's creation
    if int(in_flight) >= 0:  # batches in flight while the walk goes on (default 1)
        original = ucore.fs.scanner.RootScanner.__init__

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            kwargs["in_flight"] = int(in_flight)
            original(self, *args, **kwargs)

        ucore.fs.scanner.RootScanner.__init__ = init  # type: ignore[method-assign]

    async def go() -> dict[str, Any]:
        app = await bootstrap(parse_config({}, data_dir=Path(data), env={}), role="client")
        try:
            added, _ = await app.library.add_root(root)
            out: dict[str, Any] = {}
            for label in ("first", "rescan"):
                start = time.perf_counter()
                record = await app.tasks.run_here(await app.library.scan(added.id))
                out[label] = time.perf_counter() - start
                assert record.state.value == "completed", record.error
                result = record.result
                out[f"{label}_task"] = result["seconds"]
                out[f"{label}_counts"] = {k: result[k] for k in ("new", "changed", "unchanged")}
            return out
        finally:
            await app.shutdown()

    return asyncio.run(go())


def time_find(root: Path) -> float:
    start = time.perf_counter()
    with open(os.devnull, "w") as sink:
        subprocess.run(
            ["find", str(root), "-type", "f", "-printf", "%s %T@ %p\\n"], stdout=sink, check=True
        )
    return time.perf_counter() - start


# -- the run --------------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20,000 files, 3 runs")
    parser.add_argument("--dir", type=Path, help="make the tree and databases under this folder")
    parser.add_argument("--keep", action="store_true", help="keep the tree afterwards")
    parser.add_argument(
        "--no-snapshot",
        dest="snapshot",
        action="store_false",
        help="import the live src tree instead of a copy taken at the start",
    )
    parser.add_argument(
        "--batch-rows", type=int, default=0, help="rows per write transaction (default: ucore's)"
    )
    parser.add_argument(
        "--in-flight", type=int, default=-1, help="scan batches in flight: 0 or 1 (default: 1)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        doc = child_floor(*rest) if kind == "floor" else child_ucore(*rest)
        print(json.dumps(doc))
        return 0
    if args.quick:
        args.files, args.runs = 20_000, 3
    base = make_tmp(args.dir, "ucore-bench-scan-")
    if args.snapshot:
        snapshot_src(base)
    print_header("library scan", ["benchmarks/bench_scan.py", *argv], base)
    script = Path(__file__).resolve()
    try:
        tree = base / "tree"
        seconds = make_tree(tree, args.files)
        print(f"tree            : {args.files:,} files in {tree} (made in {seconds:.1f} s)")
        print(f"runs            : {args.runs}, alternating find / Python floor / ucore\n")
        rows: list[dict[str, float]] = []
        for run in range(args.runs):
            find = time_find(tree)
            floor = run_child(script, ["--child", "floor", str(tree)])
            assert floor["files"] >= args.files, floor  # + the root's marker after run 1
            data = base / f"data-{run}"
            ours = run_child(
                script,
                [
                    "--child",
                    "ucore",
                    str(tree),
                    str(data),
                    str(args.batch_rows),
                    str(args.in_flight),
                ],
            )
            assert ours["first_counts"]["new"] == args.files, ours
            assert ours["rescan_counts"]["unchanged"] == args.files, ours
            cleanup(data, keep=False)
            row = {
                "find": find,
                "floor": floor["seconds"],
                "first": ours["first"],
                "rescan": ours["rescan"],
                "first_task": ours["first_task"],
                "rescan_task": ours["rescan_task"],
            }
            rows.append(row)
            print(
                f"run {run + 1}: find {find:.3f} s, floor {row['floor']:.3f} s, "
                f"first scan {row['first']:.3f} s, rescan {row['rescan']:.3f} s",
                flush=True,
            )
        med = {key: median(r[key] for r in rows) for key in rows[0]}
        first_ratio = med["first"] / med["floor"]
        rescan_speedup = med["first"] / med["rescan"]
        print("\nmedians (seconds, end to end: submit -> completed; in the task: its own timer)")
        print(f"  find -type f -printf      : {med['find']:.3f}")
        print(f"  Python scandir+stat floor : {med['floor']:.3f}")
        print(f"  ucore first scan          : {med['first']:.3f}  (task {med['first_task']:.3f})")
        print(f"  ucore rescan (unchanged)  : {med['rescan']:.3f}  (task {med['rescan_task']:.3f})")
        print("ratios")
        print(
            f"  first scan / Python floor : {first_ratio:.2f}x  (target <= 3x: "
            f"{'met' if first_ratio <= 3 else 'MISSED'})"
        )
        print(
            f"  first scan / rescan       : {rescan_speedup:.2f}x  (target >= 2x: "
            f"{'met' if rescan_speedup >= 2 else 'MISSED'})"
        )
        print(f"  first scan / find         : {med['first'] / med['find']:.2f}x")
        print(
            f"  per file: first {med['first'] / args.files * 1e6:.1f} us, "
            f"rescan {med['rescan'] / args.files * 1e6:.1f} us, "
            f"floor {med['floor'] / args.files * 1e6:.1f} us"
        )
        print(load_line())
    finally:
        cleanup(base, keep=args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
