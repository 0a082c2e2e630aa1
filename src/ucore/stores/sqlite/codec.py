"""JSON text as the SQLite store keeps it (params, results, payloads): compact, UTF-8 as is."""

from __future__ import annotations

import json
from typing import Any

#: one encoder for every call: ``json.dumps`` with options builds a new one each time
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    """``value`` as compact JSON text (TypeError when it is not JSON data)."""
    return _ENCODER.encode(value)
