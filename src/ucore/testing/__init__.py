"""Helpers for testing apps built on UCore: a deterministic :class:`FakeClock`."""

from ucore.testing.fake_clock import FakeClock

__all__ = ["FakeClock"]
