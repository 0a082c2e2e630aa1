"""The in-process event bus: order, prefixes, failing subscribers, and ``wants``."""

from __future__ import annotations

import logging

import pytest

from ucore.foundation.events import Event, EventBus


def test_subscribers_get_the_events_of_their_prefix_in_order() -> None:
    bus = EventBus()
    seen: list[str] = []
    bus.subscribe(lambda e: seen.append("all:" + e.kind))
    bus.subscribe(lambda e: seen.append("task:" + e.kind), "task.")
    bus.publish(Event("task.started"))
    bus.publish(Event("schedule.fired"))
    assert seen == ["all:task.started", "task:task.started", "all:schedule.fired"]


def test_a_failing_subscriber_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    seen: list[str] = []

    def boom(event: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe(boom)
    bus.subscribe(lambda e: seen.append(e.kind))
    with caplog.at_level(logging.ERROR, "ucore.events"):
        bus.publish(Event("task.finished"))
    assert seen == ["task.finished"]
    assert "subscriber failed on task.finished" in caplog.text


def test_wants_follows_subscribing_and_unsubscribing() -> None:
    bus = EventBus()
    assert not bus.wants("task.started")
    unsubscribe = bus.subscribe(lambda e: None, "task.finished")
    assert bus.wants("task.finished")
    assert not bus.wants("task.started")  # answered from the cache...
    unsubscribe_all = bus.subscribe(lambda e: None, "task.")
    assert bus.wants("task.started")  # ...which a new subscriber clears
    unsubscribe_all()
    assert not bus.wants("task.started")
    assert bus.wants("task.finished")
    unsubscribe()
    assert not bus.wants("task.finished")
    bus.subscribe(lambda e: None)  # no prefix: everything
    assert bus.wants("anything")
