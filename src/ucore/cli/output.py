"""The CLI's output contract (DESIGN.md §7).

stdout carries the command's output only (with ``--json``, exactly one JSON document);
logs, progress and errors go to stderr. Times are ISO 8601 UTC.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from ucore.foundation.clock import iso

__all__ = ["err", "iso", "out", "print_json"]


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=_default) + "\n")


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def err(line: str) -> None:
    sys.stderr.write(line + "\n")
