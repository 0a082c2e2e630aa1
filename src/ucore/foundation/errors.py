"""The error types every layer raises, and how the CLI maps them to exit codes.

Exit codes follow DESIGN.md §7: 2 for anything wrong with the command line or the config,
1 for what went wrong while doing the work.
"""

from __future__ import annotations


class UCoreError(Exception):
    """Base of every error UCore reports to a user as one clear line."""

    exit_code = 1

    def lines(self) -> list[str]:
        return [str(self)]


class UsageError(UCoreError):
    """Something is wrong with the command line itself (unknown name, bad value)."""

    exit_code = 2


class ConfigError(UCoreError):
    """An invalid config: one problem per line, each naming its key path."""

    exit_code = 2

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(self.problems))

    def lines(self) -> list[str]:
        prefix = f"{self.source}: " if self.source else ""
        return [prefix + p for p in self.problems]


class SystemInitError(UCoreError):
    """A system failed to initialize; the systems started before it were shut down."""

    def __init__(self, system: str, cause: BaseException) -> None:
        self.system = system
        self.cause = cause
        detail = cause.lines()[0] if isinstance(cause, UCoreError) else _describe(cause)
        if isinstance(cause, UCoreError):
            # a bad config stays exit 2, a damaged database exit 1
            self.exit_code = cause.exit_code
        super().__init__(f"system '{system}' failed to initialize: {detail}")


class NotFoundError(UCoreError):
    """An id or name that does not exist."""


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
