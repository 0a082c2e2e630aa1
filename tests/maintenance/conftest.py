"""Fixtures of the maintenance tests (issue 8: the service, the database tasks, the CLI).

* ``apps``: ``await apps(role="client", clock=..., maintenance=..., workers=True)`` bootstraps
  an app on this test's data dir (``tmp_path/data``) and, by default, starts its workers; every
  app it made is shut down at the end of the test.
* the helpers of ``maint_helpers`` insert old rows through the store API, dump the database
  and run a maintenance task to its end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from maint_helpers import AppFactory


@pytest.fixture
async def apps(tmp_path: Path) -> AsyncIterator[AppFactory]:
    factory = AppFactory(tmp_path / "data")
    yield factory
    await factory.close_all()
