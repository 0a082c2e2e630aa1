"""Opening the app for one CLI command, in the right role, with errors kept to one line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from ucore.app import App, bootstrap
from ucore.cli.common import config_from_args
from ucore.foundation.errors import UsageError
from ucore.foundation.logs import LOG_FILE_NAME, setup_logging
from ucore.foundation.system import Role

T = TypeVar("T")


@asynccontextmanager
async def open_app(args: argparse.Namespace, role: Role = Role.CLIENT) -> AsyncIterator[App]:
    config = config_from_args(args)
    app = await bootstrap(config, role=role)
    try:
        yield app
    finally:
        await app.shutdown()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def log_to_file(app: App, level: int = logging.INFO) -> None:
    """Long-running roles (service, runner) also log to ucore.log in the log dir.

    stderr keeps the level the command line asked for.
    """
    console_level = logging.getLogger().level or logging.WARNING
    setup_logging(console_level, app.config.locations.log_dir / LOG_FILE_NAME, file_level=level)


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs: the value is JSON when it parses, otherwise a string."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--param needs KEY=VALUE, got '{item}'")
        try:
            value: Any = json.loads(raw, parse_constant=_not_json, parse_float=_finite_float)
        except ValueError:  # JSONDecodeError, and the two hooks below
            value = raw
        params[key] = value
    return params


def _not_json(constant: str) -> Any:
    # NaN and Infinity are Python's extensions, not JSON: such a value stays a string
    raise ValueError(f"not JSON: {constant}")


def _finite_float(text: str) -> float:
    # 1e400 would become inf: stored, it makes every later --json output invalid JSON
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"out of range: {text}")
    return value
