"""Fixtures of the store suites.

``store`` is an opened :class:`~ucore.stores.base.Store` on a fresh, empty database, once per
backend:

* ``sqlite`` always: a file in the test's ``tmp_path``;
* ``postgresql`` only when ``UCORE_TEST_POSTGRES_URL`` is set (a server URL, for example
  ``postgresql://user:pw@localhost/postgres``). Each test then gets a uniquely named database,
  created through that URL and dropped afterwards. While ``ucore.stores.factory.open_store``
  does not support PostgreSQL yet, those tests are skipped with the reason.

Tests that need a second connection to the same database (another process, in effect) use
``backend.new_store()`` / ``backend.opened()``; tests written against the ``Store`` interface
only run unchanged on every backend.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from ucore.stores.base import Store, StoreError
from ucore.stores.factory import open_store

POSTGRES_ENV = "UCORE_TEST_POSTGRES_URL"


@dataclass(frozen=True)
class StoreBackend:
    """One backend's fresh test database."""

    kind: str
    #: the ``database.url`` of this test's database
    url: str

    def new_store(self) -> Store:
        """Another (unopened) store on the same database: a second process, in effect."""
        return open_store(self.url)

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[Store]:
        store = self.new_store()
        await store.open()
        try:
            yield store
        finally:
            await store.close()


def _backend_params() -> list[Any]:
    kinds: list[Any] = ["sqlite"]
    if os.environ.get(POSTGRES_ENV):
        kinds.append(pytest.param("postgresql", marks=pytest.mark.postgres))
    return kinds


def _with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


@contextlib.asynccontextmanager
async def _postgres_database(server_url: str) -> AsyncIterator[str]:
    """A new, uniquely named database on the server; dropped on exit. Yields its URL."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg is needed for the PostgreSQL tests")
    dbname = f"ucore_test_{uuid.uuid4().hex[:16]}"
    admin = await psycopg.AsyncConnection.connect(server_url, autocommit=True)
    try:
        await admin.execute(f'CREATE DATABASE "{dbname}"')
        try:
            yield _with_database(server_url, dbname)
        finally:
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            except psycopg.Error:  # PostgreSQL < 13 has no FORCE
                await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
    finally:
        await admin.close()


@pytest.fixture(params=_backend_params())
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreBackend]:
    kind: str = request.param
    if kind == "sqlite":
        yield StoreBackend("sqlite", f"sqlite://{tmp_path / 'ucore.db'}")
        return
    server_url = os.environ[POSTGRES_ENV]
    try:
        open_store(server_url)
    except StoreError as exc:
        pytest.skip(f"{POSTGRES_ENV} is set but open_store() cannot open PostgreSQL yet: {exc}")
    async with _postgres_database(server_url) as url:
        yield StoreBackend("postgresql", url)


@pytest.fixture
async def store(backend: StoreBackend) -> AsyncIterator[Store]:
    """An opened store on a fresh database; closed after the test."""
    async with backend.opened() as opened:
        yield opened
