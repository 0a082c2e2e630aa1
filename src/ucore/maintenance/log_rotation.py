"""log_rotation (being written: see issue 9)."""

from __future__ import annotations

from typing import Any

from ucore.maintenance.run import MaintenanceRun

NAME = "log_rotation"


async def body(run: MaintenanceRun) -> None:
    raise NotImplementedError(NAME)


def summary(result: dict[str, Any]) -> str:
    return NAME
