"""Find, read, merge and validate ``config.json`` (DESIGN.md §5).

The file is refused as a whole: every problem is collected with its key path and raised in
one :class:`ConfigError`; nothing of an invalid file is applied.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ucore.foundation.config.models import Config
from ucore.foundation.config.schedule import (
    DEFAULT_SCHEDULES,
    ScheduleConfig,
    UnknownTaskError,
    merge_schedule,
    validate_schedule,
)
from ucore.foundation.errors import ConfigError
from ucore.foundation.paths import (
    CONFIG_ENV,
    DATA_DIR_ENV,
    Locations,
    platform_dirs,
    redact_url,
    resolve_locations,
)


@dataclass(frozen=True)
class LoadedConfig:
    """A valid config with its schedules merged over the defaults and its locations resolved."""

    config: Config
    schedules: dict[str, ScheduleConfig]
    locations: Locations
    #: The file it came from; None when no file exists (all defaults).
    source: Path | None
    raw: dict[str, Any] = field(default_factory=dict)
    #: the --data-dir (or UCORE_DATA_DIR) it was loaded with, so a reload resolves alike
    data_dir: Path | None = None

    def effective(self, *, redact: bool = True) -> dict[str, Any]:
        """The effective config in config.json's own schema, with absolute paths."""
        loc = self.locations
        out = self.config.model_dump(mode="json")
        out["paths"] = {
            "data_dir": str(loc.data_dir),
            "cache_dir": str(loc.cache_dir),
            "log_dir": str(loc.log_dir),
        }
        out["database"]["url"] = redact_url(loc.database_url) if redact else loc.database_url
        if out["maintenance"].get("window") is None:
            out["maintenance"].pop("window", None)
        if out["maintenance"]["notify"].get("command") is None:
            out["maintenance"]["notify"].pop("command", None)
        out["maintenance"]["schedule"] = {n: s.to_json() for n, s in self.schedules.items()}
        return out


def find_config_file(
    config: Path | None = None, data_dir: Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[Path, bool]:
    """The config file to read and whether it was named explicitly.

    Order: ``--config``, ``UCORE_CONFIG``, the data dir (``--data-dir``/``UCORE_DATA_DIR``;
    without either, the platform data dir when it holds a config.json), the platform config dir.
    """
    env = os.environ if env is None else env
    if config is not None:
        return config, True
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]), True
    chosen_data = data_dir or (Path(env[DATA_DIR_ENV]) if env.get(DATA_DIR_ENV) else None)
    if chosen_data is not None:
        return chosen_data / "config.json", False
    plat_data, _, _, plat_config = platform_dirs()
    if (plat_data / "config.json").is_file():
        return plat_data / "config.json", False
    return plat_config / "config.json", False


def load_config(
    config: Path | None = None,
    data_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Find and load the config; a missing file that was not named explicitly means defaults."""
    env = os.environ if env is None else env
    path, explicit = find_config_file(config, data_dir, env)
    path = Path(os.path.expanduser(str(path))).absolute()
    raw: dict[str, Any] | None = None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(["file not found"], source=str(path)) from None
    except IsADirectoryError:
        raise ConfigError(["is a directory, not a file"], source=str(path)) from None
    except PermissionError:
        raise ConfigError(["cannot be read: permission denied"], source=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError(["is not UTF-8 text"], source=str(path)) from None
    except OSError as exc:
        raise ConfigError([f"cannot be read: {exc.strerror or exc}"], source=str(path)) from None
    else:
        raw = _parse_json(text, str(path))
    if data_dir is None and env.get(DATA_DIR_ENV):
        data_dir = Path(env[DATA_DIR_ENV])
    return parse_config(
        raw or {},
        source=path if raw is not None else None,
        config_file=path,
        data_dir=data_dir,
        env=env,
    )


def _parse_json(text: str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"], source=source
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(["must be a JSON object"], source=source)
    return data


def parse_config(
    raw: Mapping[str, Any],
    *,
    source: Path | None = None,
    config_file: Path | None = None,
    data_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Validate a config document (already parsed JSON) and resolve its locations."""
    env = os.environ if env is None else env
    where = str(source) if source else None
    problems: list[str] = []
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        problems.extend(format_errors(exc))
        cfg = None
    schedules: dict[str, ScheduleConfig] = {}
    given = raw.get("maintenance", {}) if isinstance(raw.get("maintenance"), dict) else {}
    user_sched = given.get("schedule", {})
    if isinstance(user_sched, dict):
        schedules = _schedules(user_sched, problems)
        known = set(DEFAULT_SCHEDULES) | set(user_sched)
        problems.extend(_cross_checks(schedules, known))
    if problems or cfg is None:
        # a non-object schedule entry is reported by both Config and _schedules: once is enough
        raise ConfigError(list(dict.fromkeys(problems)), source=where)
    if config_file is None:
        config_file = find_config_file(None, data_dir, env)[0]
    base = (source or config_file).parent
    loc = resolve_locations(
        paths=cfg.paths.model_dump(),
        database_url=cfg.database.url,
        data_dir=data_dir,
        config_file=config_file,
        base_dir=base,
        env=env,
    )
    return LoadedConfig(cfg, schedules, loc, source, dict(raw), data_dir)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _schedules(user: dict[str, Any], problems: list[str]) -> dict[str, ScheduleConfig]:
    out: dict[str, ScheduleConfig] = {}
    names = list(DEFAULT_SCHEDULES) + [n for n in user if n not in DEFAULT_SCHEDULES]
    for name in names:
        prefix = f"maintenance.schedule.{name}"
        if not _NAME.match(name):
            problems.append(f"{prefix}: a schedule name is letters, digits, '_' and '-'")
            continue
        entry = user.get(name, {})
        if not isinstance(entry, dict):
            problems.append(f"{prefix}: must be an object")
            continue
        merged = merge_schedule(DEFAULT_SCHEDULES.get(name), entry)
        try:
            out[name] = validate_schedule(name, merged)
        except UnknownTaskError as exc:
            problems.append(f"{prefix}.{exc}")
        except ValidationError as exc:
            problems.extend(format_errors(exc, prefix))
    return out


def _cross_checks(schedules: dict[str, ScheduleConfig], known: set[str]) -> list[str]:
    """Checks across schedules: ``after`` names must exist and must not form a cycle.

    ``known`` holds every schedule name of the file, the invalid ones too (already reported).
    """
    problems: list[str] = []
    for name, sched in schedules.items():
        for i, dep in enumerate(sched.fields.after):
            if dep not in known:
                problems.append(f"maintenance.schedule.{name}.after.{i}: unknown schedule '{dep}'")
            elif dep == name:
                problems.append(
                    f"maintenance.schedule.{name}.after.{i}: a schedule cannot follow itself"
                )
    reported: set[frozenset[str]] = set()
    for name in schedules:
        cycle = _find_cycle(name, schedules)
        if cycle and frozenset(cycle) not in reported and len(cycle) > 2:
            reported.add(frozenset(cycle))
            problems.append(
                f"maintenance.schedule.{name}.after: dependency cycle {' -> '.join(cycle)}"
            )
    return problems


def _find_cycle(start: str, schedules: dict[str, ScheduleConfig]) -> list[str] | None:
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node not in schedules:
            return None
        path.append(node)
        for dep in schedules[node].fields.after:
            if dep == node:
                continue
            found = visit(dep)
            if found:
                return found
        path.pop()
        return None

    found = visit(start)
    return found if found and found[0] == start else None


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
}


def format_errors(exc: ValidationError, prefix: str = "") -> list[str]:
    """One ``key.path: message`` line per pydantic error."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"] if not _is_internal(p))
        path = ".".join(p for p in (prefix, loc) if p) or "(top level)"
        lines.append(f"{path}: {error_message(err)}")
    return lines


_INTERNAL_TAGS = frozenset(
    {"str", "int", "float", "bool", "list[str]", "constrained-float", "constrained-int", "none"}
)


def _is_internal(part: object) -> bool:
    # pydantic adds tags for unions / function validators to locations; they mean nothing to users
    return isinstance(part, str) and (part.startswith("function-") or part in _INTERNAL_TAGS)


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def error_message(err: Any) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    for key, op in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
        if key in ctx and kind.startswith(("greater_than", "less_than")):
            return f"must be {op} {_num(ctx[key])}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    msg = str(err["msg"])
    return msg[:1].lower() + msg[1:]
