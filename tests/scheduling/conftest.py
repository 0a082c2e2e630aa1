"""Fixtures of the scheduling tests (helpers: ``sched_helpers``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sched_helpers import AppFactory


@pytest.fixture
async def apps(tmp_path: Path) -> AsyncIterator[AppFactory]:
    factory = AppFactory(tmp_path / "data")
    yield factory
    await factory.close_all()
