#!/usr/bin/env bash
# Quick start, command 1: set up .venv and run the app.
# With a display: UExplorer. Without one: the headless service.
# Extra arguments go to the program.
UCORE_EXTRAS=gui source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$ROOT"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -z "${UCORE_HEADLESS:-}" ]; then
    exec uexplorer "$@"
fi
if ucore run --help >/dev/null 2>&1; then
    exec ucore run "$@"
fi
echo "No display, and the headless service 'ucore run' is not built yet:" >&2
echo "showing the effective configuration instead (ucore config show)." >&2
exec ucore config show "$@"
