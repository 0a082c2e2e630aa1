"""Lifecycle and bootstrap (DESIGN.md §1): dependency order, reverse shutdown, roles, errors."""

from __future__ import annotations

import asyncio
import inspect
import logging
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

import ucore
from ucore.app import App, bootstrap
from ucore.foundation.config import LoadedConfig, parse_config
from ucore.foundation.context import Context, new_node_id
from ucore.foundation.errors import SystemInitError, UCoreError
from ucore.foundation.system import BaseSystem, Role, SystemOrderError, SystemSpec, order_specs
from ucore.testing import FakeClock

Log = list[tuple[str, str]]


@pytest.fixture
def config(tmp_path: Path) -> LoadedConfig:
    return parse_config({}, data_dir=tmp_path / "data", env={})


def recorder(
    name: str,
    log: Log,
    *,
    depends_on: tuple[str, ...] = (),
    roles: frozenset[Role] = frozenset(Role),
    fail_init: BaseException | None = None,
    fail_shutdown: Exception | None = None,
    built: list[str] | None = None,
) -> SystemSpec:
    """A spec whose system records ("init"|"down", name) in ``log``."""

    class Recorder(BaseSystem):
        async def initialize(self) -> None:
            log.append(("init", self.name))
            # every dependency is reachable through the context
            for dep in depends_on:
                assert self.ctx.system(dep).name == dep
            if fail_init is not None:
                raise fail_init

        async def shutdown(self) -> None:
            log.append(("down", self.name))
            if fail_shutdown is not None:
                raise fail_shutdown

    def factory(ctx: Context) -> BaseSystem:
        if built is not None:
            built.append(name)
        return Recorder(ctx)

    return SystemSpec(name, factory, roles=roles, depends_on=depends_on)


def inits(log: Log) -> list[str]:
    return [n for op, n in log if op == "init"]


def downs(log: Log) -> list[str]:
    return [n for op, n in log if op == "down"]


async def test_initialized_in_dependency_order_and_shut_down_in_reverse(
    config: LoadedConfig,
) -> None:
    log: Log = []
    specs = [
        recorder("scheduler", log, depends_on=("tasks", "store")),
        recorder("tasks", log, depends_on=("store",)),
        recorder("store", log),
        recorder("extra", log),
    ]
    app = await bootstrap(config, role=Role.SERVICE, systems=specs, defaults=False)
    assert inits(log) == ["store", "tasks", "scheduler", "extra"]
    assert downs(log) == []
    assert list(app.systems) == ["store", "tasks", "scheduler", "extra"]
    assert app.role is Role.SERVICE
    assert app.config is config
    await app.shutdown()
    assert downs(log) == ["extra", "scheduler", "tasks", "store"]
    await app.shutdown()  # twice: nothing shut down twice
    assert len(downs(log)) == 4


async def test_default_systems_come_first_and_create_the_dirs(config: LoadedConfig) -> None:
    log: Log = []
    app = await bootstrap(config, systems=[recorder("mine", log, depends_on=("locations",))])
    async with app:
        assert next(iter(app.systems)) == "locations"
        assert "mine" in app.systems
        loc = config.locations
        for d in (loc.data_dir, loc.cache_dir, loc.log_dir):
            assert d.is_dir()
            assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert downs(log) == ["mine"]


async def test_failing_initialize_shuts_down_the_started_ones(config: LoadedConfig) -> None:
    log: Log = []
    built: list[str] = []
    specs = [
        recorder("a", log, built=built),
        recorder("b", log, depends_on=("a",), built=built),
        recorder("c", log, depends_on=("b",), fail_init=RuntimeError("disk on fire"), built=built),
        recorder("d", log, depends_on=("c",), built=built),
        recorder("e", log, built=built),
    ]
    with pytest.raises(SystemInitError) as info:
        await bootstrap(config, systems=specs, defaults=False)
    err = info.value
    assert err.system == "c"
    assert isinstance(err.cause, RuntimeError)
    assert "'c'" in str(err)
    assert "disk on fire" in str(err)
    assert err.lines() == [str(err)]
    assert "\n" not in str(err)
    # a, b and c were initialized; c failed; d and e never started
    assert inits(log) == ["a", "b", "c"]
    # only the started ones, in reverse; not the failed one, not the later ones
    assert downs(log) == ["b", "a"]


async def test_first_system_failing_shuts_nothing_down(config: LoadedConfig) -> None:
    log: Log = []
    with pytest.raises(SystemInitError, match="'first'"):
        await bootstrap(
            config,
            systems=[
                recorder("first", log, fail_init=OSError(28, "No space left")),
                recorder("second", log),
            ],
            defaults=False,
        )
    assert log == [("init", "first")]


async def test_ucore_error_cause_keeps_its_own_message(config: LoadedConfig) -> None:
    log: Log = []
    with pytest.raises(SystemInitError) as info:
        await bootstrap(
            config,
            systems=[recorder("store", log, fail_init=UCoreError("database is locked"))],
            defaults=False,
        )
    assert str(info.value) == "system 'store' failed to initialize: database is locked"


async def test_cancelled_initialize_shuts_down_and_propagates(config: LoadedConfig) -> None:
    log: Log = []
    specs = [recorder("a", log), recorder("b", log, fail_init=asyncio.CancelledError())]
    with pytest.raises(asyncio.CancelledError):
        await bootstrap(config, systems=specs, defaults=False)
    assert downs(log) == ["a"]


async def test_failing_shutdown_does_not_stop_the_others(config: LoadedConfig) -> None:
    log: Log = []
    specs = [
        recorder("a", log),
        recorder("b", log, fail_shutdown=RuntimeError("stuck")),
        recorder("c", log),
    ]
    app = await bootstrap(config, systems=specs, defaults=False)
    with pytest.raises(UCoreError, match=r"'b'.*stuck"):
        await app.shutdown()
    assert downs(log) == ["c", "b", "a"]


@pytest.mark.parametrize(
    ("deps", "match"),
    [
        ({"a": ("b",), "b": ("a",)}, "cycle"),
        ({"a": ("b",), "b": ("c",), "c": ("a",)}, "cycle"),
        ({"a": ("a",)}, "cycle"),
        ({"a": ("ghost",)}, "unknown system 'ghost'"),
    ],
    ids=["two", "three", "self", "unknown"],
)
async def test_bad_dependencies_raise_before_anything_starts(
    deps: dict[str, tuple[str, ...]], match: str, config: LoadedConfig
) -> None:
    log: Log = []
    specs = [recorder(name, log, depends_on=d) for name, d in deps.items()]
    with pytest.raises(SystemOrderError, match=match):
        await bootstrap(config, systems=specs)
    assert log == []
    with pytest.raises(SystemOrderError):
        order_specs(specs)


async def test_two_systems_with_one_name_raise(config: LoadedConfig) -> None:
    log: Log = []
    with pytest.raises(SystemOrderError, match="'x'"):
        await bootstrap(config, systems=[recorder("x", log), recorder("x", log)], defaults=False)
    assert log == []


def test_order_is_stable_in_declaration_order() -> None:
    log: Log = []
    names = ["z", "y", "x", "w"]
    specs = [recorder(n, log) for n in names]
    assert [s.name for s in order_specs(specs)] == names


@pytest.mark.parametrize("role", [Role.CLIENT, Role.RUNNER, "client"])
async def test_service_only_system_is_not_built_for_other_roles(
    role: Role | str, config: LoadedConfig
) -> None:
    log: Log = []
    built: list[str] = []
    specs = [
        recorder("store", log, built=built),
        recorder("scheduler", log, roles=frozenset({Role.SERVICE}), built=built),
        recorder("runner_only", log, roles=frozenset({Role.RUNNER}), built=built),
    ]
    async with await bootstrap(config, role=role, systems=specs, defaults=False) as app:
        assert "scheduler" not in app.systems
        assert "scheduler" not in built
        assert app.role is Role(role)
        assert ("runner_only" in app.systems) == (Role(role) is Role.RUNNER)
    assert "scheduler" not in inits(log)


async def test_service_role_builds_service_systems(config: LoadedConfig) -> None:
    log: Log = []
    specs = [recorder("watcher", log, roles=frozenset({Role.SERVICE}))]
    async with await bootstrap(config, role=Role.SERVICE, systems=specs) as app:
        assert "watcher" in app.systems
        assert "scheduler" in app.systems  # a default of every Foundation app
    assert downs(log) == ["watcher"]


async def test_dependency_missing_in_a_role_is_an_error(config: LoadedConfig) -> None:
    log: Log = []
    specs = [
        recorder("scheduler", log, roles=frozenset({Role.SERVICE})),
        recorder("panel", log, depends_on=("scheduler",)),
    ]
    with pytest.raises(ValueError, match="scheduler"):
        await bootstrap(config, role=Role.CLIENT, systems=specs, defaults=False)
    assert log == []


async def test_disabled_spec_is_not_built(config: LoadedConfig) -> None:
    log: Log = []
    spec = recorder("optional", log)
    off = SystemSpec(spec.name, spec.factory, enabled=lambda ctx: False)
    async with await bootstrap(config, systems=[off], defaults=False) as app:
        assert "optional" not in app.systems
    assert log == []


async def test_async_with_shuts_down_even_on_error(config: LoadedConfig) -> None:
    log: Log = []
    specs = [recorder("a", log), recorder("b", log, depends_on=("a",))]
    with pytest.raises(KeyError):
        async with await bootstrap(config, systems=specs, defaults=False) as app:
            assert isinstance(app, App)
            raise KeyError("boom")
    assert downs(log) == ["b", "a"]


async def test_context_carries_the_clock_and_role(config: LoadedConfig) -> None:
    clock = FakeClock()
    seen: list[Context] = []

    def factory(ctx: Context) -> BaseSystem:
        seen.append(ctx)
        return recorder("x", []).factory(ctx)

    spec = SystemSpec("probe", factory)
    async with await bootstrap(
        config, role=Role.RUNNER, clock=clock, systems=[spec], defaults=False
    ) as app:
        (ctx,) = seen
        assert ctx.clock is clock
        assert ctx.role is Role.RUNNER
        assert ctx.config is config
        assert ctx.locations == config.locations
        assert app.system("probe") is ctx.systems["probe"]
        assert app.system("probe").name == "probe"
        with pytest.raises(KeyError, match="no system 'nope'"):
            app.system("nope")


def test_bootstrap_is_exported_from_the_package() -> None:
    assert ucore.bootstrap is bootstrap
    assert ucore.App is App
    factory: Callable[..., object] = ucore.bootstrap
    assert inspect.iscoroutinefunction(factory)


async def test_init_failure_is_reported_even_if_a_cleanup_shutdown_fails(
    config: LoadedConfig, caplog: pytest.LogCaptureFixture
) -> None:
    log: Log = []
    specs = [
        recorder("a", log),
        recorder("b", log, fail_shutdown=RuntimeError("stuck")),
        recorder("c", log),
        recorder("d", log, fail_init=RuntimeError("boom")),
    ]
    with (
        caplog.at_level(logging.ERROR, logger="ucore.systems"),
        pytest.raises(SystemInitError) as info,
    ):
        await bootstrap(config, systems=specs, defaults=False)
    assert info.value.system == "d"
    assert "boom" in str(info.value)
    # the other started systems were still shut down, and the failed shutdown was logged
    assert downs(log) == ["c", "b", "a"]
    assert any("'b'" in r.getMessage() and "stuck" in r.getMessage() for r in caplog.records)


def test_node_ids_are_short_random_and_distinct() -> None:
    """Every attempt's rows carry the node id (docs/performance.md): 12 hex digits."""
    ids = {new_node_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 12 and int(i, 16) >= 0 for i in ids)
