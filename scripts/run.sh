#!/usr/bin/env bash
# Quick start, command 1: set up .venv and run the app.
# With a display: UExplorer. Without one: the headless service.
# Extra arguments go to the program.
UCORE_EXTRAS=gui source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$ROOT"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -z "${UCORE_HEADLESS:-}" ]; then
    exec uexplorer "$@"
fi
echo "No display: starting the headless service (ucore run). Ctrl+C stops it." >&2
exec ucore run "$@"
