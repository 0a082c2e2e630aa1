"""Fixtures of the TaskSystem tests: apps on a temporary database, shut down after the test."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import ucore.app
from ucore.app import App
from ucore.foundation.config import LoadedConfig, parse_config


def tasks_config(data_dir: Path, **tasks: Any) -> LoadedConfig:
    """A config on ``data_dir`` with ``tasks.*`` set from the keywords."""
    return parse_config({"tasks": tasks}, data_dir=data_dir, env={})


class AppFactory:
    """``await make_app(role, **tasks_config)``: an app on this test's database.

    Every app it made is shut down at the end of the test (a second shutdown is harmless).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.apps: list[App] = []

    async def __call__(self, role: str = "service", **tasks: Any) -> App:
        app = await ucore.app.bootstrap(tasks_config(self.data_dir, **tasks), role=role)
        self.apps.append(app)
        return app

    async def close_all(self) -> None:
        for app in reversed(self.apps):
            try:
                await app.shutdown()
            except Exception as exc:  # keep closing the others
                logging.getLogger("tests").warning("app shutdown failed: %s", exc)


@pytest.fixture
async def make_app(tmp_path: Path) -> AsyncIterator[AppFactory]:
    factory = AppFactory(tmp_path / "data")
    yield factory
    await factory.close_all()
