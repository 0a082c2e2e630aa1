"""Registered task handlers and the validation of their parameters."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ucore.foundation.config.loader import format_errors
from ucore.foundation.config.params import params_model
from ucore.tasks.errors import InvalidParamsError, UnknownTaskError

Handler = Callable[..., Any]

#: Failures are retried after base * 2**(n-1) seconds, at most this long.
MAX_BACKOFF_SECONDS = 3600.0


@dataclass(frozen=True)
class Registration:
    name: str
    fn: Handler
    is_async: bool
    params: type[BaseModel] | None
    timeout: float | None
    max_attempts: int
    retry_backoff: float

    def validate(self, params: dict[str, Any] | None) -> Any:
        """The parameters as the handler gets them (a model instance, or the dict)."""
        raw = dict(params or {})
        if self.params is None:
            return raw
        try:
            return self.params.model_validate(raw)
        except ValidationError as exc:
            problems = format_errors(exc)
            raise InvalidParamsError(
                f"invalid parameters for '{self.name}': " + "; ".join(problems)
            ) from None

    def canonical(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """Validated parameters as stored: JSON, defaults filled in."""
        value = self.validate(params)
        if isinstance(value, BaseModel):
            dumped: dict[str, Any] = value.model_dump(mode="json")
            return dumped
        return dict(value)

    def backoff(self, failures: int) -> float:
        return float(min(MAX_BACKOFF_SECONDS, self.retry_backoff * 2.0 ** max(0, failures - 1)))


class HandlerRegistry:
    def __init__(self) -> None:
        self._by_name: dict[str, Registration] = {}
        self._names: frozenset[str] = frozenset()

    def register(
        self,
        name: str,
        fn: Handler,
        *,
        params: type[BaseModel] | None = None,
        timeout: float | None = None,
        max_attempts: int = 1,
        retry_backoff: float = 5.0,
    ) -> Registration:
        if not name or not isinstance(name, str):
            raise ValueError("a task needs a name")
        if max_attempts < 1:
            raise ValueError("max_attempts must be ≥ 1")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be > 0")
        if name in self._by_name:
            raise ValueError(f"task '{name}' is already registered")
        model = params if params is not None else params_model(name)
        reg = Registration(
            name=name,
            fn=fn,
            is_async=inspect.iscoroutinefunction(fn),
            params=model,
            timeout=timeout,
            max_attempts=max_attempts,
            retry_backoff=retry_backoff,
        )
        self._by_name[name] = reg
        self._names = frozenset(self._by_name)
        return reg

    def get(self, name: str) -> Registration:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise UnknownTaskError(f"unknown task '{name}' (registered: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> frozenset[str]:
        return self._names
