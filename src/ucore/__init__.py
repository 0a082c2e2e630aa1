"""UCore Foundation: a self-maintaining file-library framework.

The public entry point is :func:`ucore.bootstrap`, which builds the default systems for a
process role from a loaded config and initializes them in dependency order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ucore.app import App, bootstrap

__all__ = ["App", "__version__", "bootstrap"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import ucore` (and the CLI's --version) stays cheap.
    if name in ("bootstrap", "App"):
        from ucore import app

        return getattr(app, name)
    raise AttributeError(name)
