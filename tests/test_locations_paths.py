"""Locations (DESIGN.md §5): data dir, config file, database URL, precedence, modes, redaction."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ucore.foundation.config import load_config, parse_config
from ucore.foundation.paths import Locations, redact_text, redact_url, sqlite_path, sqlite_url


def write_config(path: Path, doc: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def assert_under(loc: Locations, root: Path) -> None:
    root = root.resolve()
    assert loc.data_dir == root
    assert loc.cache_dir == root / "cache"
    assert loc.log_dir == root / "logs"
    assert loc.database_url == f"sqlite://{root}/ucore.db"
    assert loc.database_url.startswith("sqlite:///")
    assert loc.sqlite_path == root / "ucore.db"


# -- --data-dir / UCORE_DATA_DIR --------------------------------------------------------------


def test_data_dir_option(tmp_path: Path) -> None:
    d = tmp_path / "data"
    loaded = load_config(data_dir=d, env={})
    assert_under(loaded.locations, d)
    assert loaded.locations.config_file == d / "config.json"
    for p in (loaded.locations.data_dir, loaded.locations.cache_dir, loaded.locations.log_dir):
        assert p.is_absolute()


def test_data_dir_env(tmp_path: Path) -> None:
    d = tmp_path / "envdata"
    loaded = load_config(env={"UCORE_DATA_DIR": str(d)})
    assert_under(loaded.locations, d)
    assert loaded.locations.config_file == d / "config.json"


def test_data_dir_option_beats_env(tmp_path: Path) -> None:
    loaded = load_config(data_dir=tmp_path / "opt", env={"UCORE_DATA_DIR": str(tmp_path / "env")})
    assert_under(loaded.locations, tmp_path / "opt")


def test_relative_data_dir_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load_config(data_dir=Path("rel"), env={})
    assert_under(loaded.locations, tmp_path / "rel")
    assert loaded.locations.config_file == tmp_path / "rel" / "config.json"


def test_config_in_the_data_dir_is_read(tmp_path: Path) -> None:
    d = tmp_path / "data"
    write_config(d / "config.json", {"tasks": {"workers": 5}})
    loaded = load_config(data_dir=d, env={})
    assert loaded.source == d / "config.json"
    assert loaded.config.tasks.workers == 5


# -- which config file --------------------------------------------------------------------


def test_ucore_config_env_names_the_file(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "elsewhere" / "my.json", {"tasks": {"workers": 3}})
    d = tmp_path / "data"
    write_config(d / "config.json", {"tasks": {"workers": 9}})
    loaded = load_config(data_dir=d, env={"UCORE_CONFIG": str(cfg)})
    assert loaded.source == cfg
    assert loaded.config.tasks.workers == 3
    # the data dir still places the data
    assert_under(loaded.locations, d)
    assert loaded.locations.config_file == cfg


def test_config_option_beats_env(tmp_path: Path) -> None:
    env_cfg = write_config(tmp_path / "env.json", {"tasks": {"workers": 3}})
    opt_cfg = write_config(tmp_path / "opt.json", {"tasks": {"workers": 4}})
    loaded = load_config(opt_cfg, env={"UCORE_CONFIG": str(env_cfg)})
    assert loaded.source == opt_cfg
    assert loaded.config.tasks.workers == 4


def test_config_option_beats_env_even_when_env_file_is_broken(tmp_path: Path) -> None:
    env_cfg = tmp_path / "env.json"
    env_cfg.write_text("{not json", encoding="utf-8")
    opt_cfg = write_config(tmp_path / "opt.json", {})
    assert load_config(opt_cfg, env={"UCORE_CONFIG": str(env_cfg)}).source == opt_cfg


# -- explicit keys, relative paths, database url -------------------------------------------


def test_explicit_paths_win_over_data_dir(tmp_path: Path) -> None:
    d = tmp_path / "data"
    loaded = parse_config(
        {"paths": {"cache_dir": str(tmp_path / "fastdisk"), "log_dir": str(tmp_path / "var")}},
        data_dir=d,
        env={},
    )
    loc = loaded.locations
    assert loc.data_dir == d
    assert loc.cache_dir == tmp_path / "fastdisk"
    assert loc.log_dir == tmp_path / "var"
    assert loc.sqlite_path == d / "ucore.db"


def test_explicit_data_dir_wins_over_data_dir_option(tmp_path: Path) -> None:
    loaded = parse_config(
        {"paths": {"data_dir": str(tmp_path / "fromfile")}}, data_dir=tmp_path / "opt", env={}
    )
    assert_under(loaded.locations, tmp_path / "fromfile")


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write_config(
        tmp_path / "etc" / "ucore" / "config.json",
        {
            "paths": {"data_dir": "data", "cache_dir": "../cache", "log_dir": "./logs/x"},
            "database": {"url": "sqlite://db/lib.db"},
        },
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loc = load_config(cfg, env={}).locations
    base = tmp_path / "etc" / "ucore"
    assert loc.data_dir == base / "data"
    assert loc.cache_dir == tmp_path / "etc" / "cache"
    assert loc.log_dir == base / "logs" / "x"
    assert loc.database_url == f"sqlite://{base}/db/lib.db"


def test_tilde_in_paths_is_the_home(isolated_home: Path, tmp_path: Path) -> None:
    loaded = parse_config({"paths": {"data_dir": "~/lib"}}, data_dir=tmp_path, env={})
    assert_under(loaded.locations, isolated_home / "lib")


def test_database_url_from_config(tmp_path: Path) -> None:
    url = "postgresql://u:pw@db.example:5432/lib"
    loaded = parse_config({"database": {"url": url}}, data_dir=tmp_path, env={})
    assert loaded.locations.database_url == url
    assert loaded.locations.sqlite_path is None
    assert loaded.locations.data_dir == tmp_path


def test_database_url_env_overrides_everything(tmp_path: Path) -> None:
    env_url = "postgresql://app@db.example/lib"
    loaded = parse_config(
        {"database": {"url": "sqlite:///somewhere/else.db"}},
        data_dir=tmp_path,
        env={"UCORE_DATABASE_URL": env_url},
    )
    assert loaded.locations.database_url == env_url
    loaded = parse_config({}, data_dir=tmp_path, env={"UCORE_DATABASE_URL": env_url})
    assert loaded.locations.database_url == env_url


def test_absolute_sqlite_url_kept(tmp_path: Path) -> None:
    db = tmp_path / "x" / "my.db"
    loaded = parse_config({"database": {"url": f"sqlite://{db}"}}, data_dir=tmp_path, env={})
    assert loaded.locations.database_url == f"sqlite://{db}"
    assert loaded.locations.sqlite_path == db


def test_sqlite_url_helpers(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "a.db")
    assert url == "sqlite://" + str(tmp_path / "a.db")
    assert url.startswith("sqlite:////") or url.startswith("sqlite:///")
    assert sqlite_path(url) == tmp_path / "a.db"
    assert sqlite_path("postgresql://h/db") is None


# -- platform dirs -----------------------------------------------------------------------


def test_platform_dirs_without_any_option(isolated_home: Path) -> None:
    loaded = load_config(env={})
    loc = loaded.locations
    assert loaded.source is None
    assert loc.data_dir == isolated_home / ".local" / "share" / "ucore"
    assert loc.cache_dir == isolated_home / ".cache" / "ucore"
    assert str(loc.log_dir).startswith(str(isolated_home))
    assert loc.config_file == isolated_home / ".config" / "ucore" / "config.json"
    assert loc.sqlite_path == loc.data_dir / "ucore.db"
    # nothing was created by loading
    assert list(isolated_home.iterdir()) == []


def test_platform_dirs_follow_xdg(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = isolated_home.parent / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg / "cache"))
    write_config(xdg / "config" / "ucore" / "config.json", {"tasks": {"workers": 6}})
    loaded = load_config(env={})
    assert loaded.source == xdg / "config" / "ucore" / "config.json"
    assert loaded.config.tasks.workers == 6
    assert loaded.locations.data_dir == xdg / "data" / "ucore"
    assert loaded.locations.cache_dir == xdg / "cache" / "ucore"


def test_platform_data_dir_config_is_found(isolated_home: Path) -> None:
    data = isolated_home / ".local" / "share" / "ucore"
    write_config(data / "config.json", {"tasks": {"workers": 8}})
    loaded = load_config(env={})
    assert loaded.source == data / "config.json"
    assert loaded.config.tasks.workers == 8


# -- ensure() ---------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ensure_creates_private_dirs(tmp_path: Path) -> None:
    d = tmp_path / "data"
    loc = load_config(data_dir=d, env={}).locations
    assert not d.exists()
    loc.ensure()
    for p in (loc.data_dir, loc.cache_dir, loc.log_dir):
        assert p.is_dir()
        assert mode(p) == 0o700, p
    loc.ensure()  # again: harmless
    assert mode(d) == 0o700


def test_ensure_with_separate_dirs_and_database(tmp_path: Path) -> None:
    loaded = parse_config(
        {
            "paths": {"cache_dir": str(tmp_path / "c" / "cache"), "log_dir": str(tmp_path / "l")},
            "database": {"url": f"sqlite://{tmp_path / 'dbdir' / 'x.db'}"},
        },
        data_dir=tmp_path / "d",
        env={},
    )
    loaded.locations.ensure()
    for p in (tmp_path / "d", tmp_path / "c" / "cache", tmp_path / "l", tmp_path / "dbdir"):
        assert mode(p) == 0o700, p
    assert not (tmp_path / "dbdir" / "x.db").exists()


def test_ensure_under_a_restrictive_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0o777)
    try:
        loc = load_config(data_dir=tmp_path / "u", env={}).locations
        loc.ensure()
    finally:
        os.umask(old)
    assert mode(tmp_path / "u") == 0o700
    assert mode(tmp_path / "u" / "logs") == 0o700


# -- redaction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://user:secret@host:5432/db",
            "postgresql://user:***@host:5432/db",
        ),
        ("postgresql://user:secret@host/db", "postgresql://user:***@host/db"),
        (
            "postgresql://host/db?user=u&password=secret",
            "postgresql://host/db?user=u&password=***",
        ),
        (
            "postgresql://host/db?password=secret&sslmode=require",
            "postgresql://host/db?password=***&sslmode=require",
        ),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("host=db password=secret dbname=lib", "host=db password=*** dbname=lib"),
        ("host=db password='se cret' dbname=lib", "host=db password=*** dbname=lib"),
        ("sqlite:///var/lib/ucore.db", "sqlite:///var/lib/ucore.db"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "secret" not in redact_url(url)
    assert "cret" not in redact_url(url)


@settings(max_examples=60, deadline=None)
@given(
    secret=st.text(min_size=1, max_size=20).map(lambda s: "PW" + s),
    in_query=st.booleans(),
)
def test_redact_url_never_leaks_a_password(secret: str, in_query: bool) -> None:
    encoded = quote(secret, safe="")
    if in_query:
        url = f"postgresql://db.example:5432/app?sslmode=require&password={encoded}"
    else:
        url = f"postgresql://app:{encoded}@db.example:5432/app"
    red = redact_url(url)
    assert encoded not in red
    assert "***" in red
    assert "db.example" in red


def test_redact_text_replaces_the_password_everywhere() -> None:
    url = "postgresql://u:s3cr3t@h/db"
    text = f"could not connect to {url}: password s3cr3t refused"
    red = redact_text(text, url)
    assert "s3cr3t" not in red
    assert red.count("***") == 2
    assert redact_text("plain", "sqlite:///x.db") == "plain"


def test_effective_config_redacts_the_password(tmp_path: Path) -> None:
    url = "postgresql://u:topsecret@db.example:5432/lib?password=topsecret"
    loaded = parse_config({"database": {"url": url}}, data_dir=tmp_path, env={})
    shown = json.dumps(loaded.effective())
    assert "topsecret" not in shown
    assert loaded.effective()["database"]["url"] == (
        "postgresql://u:***@db.example:5432/lib?password=***"
    )
    assert loaded.effective(redact=False)["database"]["url"] == url


def test_sqlite_url_with_tilde_is_the_home(isolated_home: Path, tmp_path: Path) -> None:
    assert sqlite_path("sqlite:///~/lib/x.db") == isolated_home / "lib" / "x.db"
    loaded = parse_config({"database": {"url": "sqlite:///~/lib/x.db"}}, data_dir=tmp_path, env={})
    assert loaded.locations.sqlite_path == isolated_home / "lib" / "x.db"
