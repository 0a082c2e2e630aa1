"""Where UCore keeps its files (DESIGN.md §5, Locations).

Precedence, highest first: explicit ``paths.*`` keys and ``database.url`` in the config (and
``UCORE_DATABASE_URL`` over the file's url), then ``--data-dir`` / ``UCORE_DATA_DIR`` (data =
DIR, cache = DIR/cache, logs = DIR/logs, database = DIR/ucore.db), then the platform's
directories from platformdirs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import platformdirs

from ucore.foundation.errors import ConfigError

APP_NAME = "ucore"
DATA_DIR_ENV = "UCORE_DATA_DIR"
CONFIG_ENV = "UCORE_CONFIG"
DATABASE_URL_ENV = "UCORE_DATABASE_URL"


@dataclass(frozen=True)
class Locations:
    data_dir: Path
    cache_dir: Path
    log_dir: Path
    database_url: str
    config_file: Path

    @property
    def sqlite_path(self) -> Path | None:
        """The database file when the store is SQLite, else None."""
        return sqlite_path(self.database_url)

    def ensure(self) -> None:
        """Create the data, cache and log directories, each 0700 (the database file is
        created 0600 by its store, log files 0600 by the log handler)."""
        for d in (self.data_dir, self.cache_dir, self.log_dir):
            make_private_dir(d)
        db = self.sqlite_path
        if db is not None:
            make_private_dir(db.parent)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700 for the parts it creates."""
    if path.is_dir():
        return
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def platform_dirs() -> tuple[Path, Path, Path, Path]:
    """(data, cache, log, config) directories of this platform for UCore."""
    return (
        Path(platformdirs.user_data_dir(APP_NAME)),
        Path(platformdirs.user_cache_dir(APP_NAME)),
        Path(platformdirs.user_log_dir(APP_NAME)),
        Path(platformdirs.user_config_dir(APP_NAME)),
    )


def sqlite_url(path: Path) -> str:
    """``sqlite:///abs/path``: the scheme, then the absolute path of the file."""
    return f"sqlite://{path.absolute()}"


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL (``~`` expanded), or None for another scheme."""
    if not url.startswith("sqlite://"):
        return None
    rest = url[len("sqlite://") :]
    if rest.startswith("/~"):  # sqlite:///~/x.db
        rest = rest[1:]
    return Path(os.path.expanduser(rest))


def resolve_locations(
    *,
    paths: Mapping[str, str | None],
    database_url: str | None,
    data_dir: Path | None,
    config_file: Path,
    base_dir: Path,
    env: Mapping[str, str],
) -> Locations:
    """Apply the precedence rules; relative config paths are relative to ``base_dir``."""
    plat_data, plat_cache, plat_log, _ = platform_dirs()

    def given(key: str) -> Path | None:
        value = paths.get(key)
        if not value:
            return None
        p = Path(os.path.expanduser(value))
        return (p if p.is_absolute() else base_dir / p).resolve()

    root = given("data_dir") or (data_dir.resolve() if data_dir else None)
    data = root or plat_data
    cache = given("cache_dir") or (root / "cache" if root else plat_cache)
    logs = given("log_dir") or (root / "logs" if root else plat_log)

    env_url = env.get(DATABASE_URL_ENV)
    if env_url and not env_url.startswith(("sqlite://", "postgresql://", "postgres://")):
        raise ConfigError([f"{DATABASE_URL_ENV}: must start with sqlite:/// or postgresql://"])
    url = env_url or database_url
    if url is None:
        url = sqlite_url(data / "ucore.db")
    else:
        db = sqlite_path(url)
        if db is not None and not db.is_absolute():
            url = sqlite_url((base_dir / os.path.expanduser(str(db))).resolve())
    return Locations(data, cache, logs, url, config_file)


_PASSWORD_KV = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (URL userinfo and key=value forms)."""
    if url.startswith("sqlite:"):
        return url
    if "://" not in url:  # a libpq key=value DSN ("host=h password=x"), e.g. from the env
        return _PASSWORD_KV.sub(r"\1***", url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return _PASSWORD_KV.sub(r"\1***", url)
    if not parts.password and "password" not in parts.query.lower():
        return url
    if parts.password:
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:***@{host}"
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    query = re.sub(r"(password=)[^&]*", r"\1***", parts.query, flags=re.IGNORECASE)
    return urlunsplit(parts._replace(query=query))


def redact_text(text: str, url: str) -> str:
    """``text`` with the password of ``url`` (if any) replaced everywhere."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text
