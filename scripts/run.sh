#!/usr/bin/env bash
# Quick start, command 1: set up .venv and run the app.
# With a display: UExplorer. Without one: the headless service.
# Extra arguments go to the program.
UCORE_EXTRAS=gui source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$ROOT"

# First start (no library root yet): offer a demo library. Only the global options
# (--data-dir, --config) are passed on to these commands.
globals=()
while [ $# -gt 0 ] && [ ${#globals[@]} -lt 8 ]; do
    case "$1" in
        --data-dir|--config) [ $# -ge 2 ] && globals+=("$1" "$2"); shift 2 || break ;;
        --data-dir=*|--config=*) globals+=("$1"); shift ;;
        *) break ;;
    esac
done
set -- "${globals[@]}" "$@"
if [ "$(ucore "${globals[@]}" library list --json 2>/dev/null)" = "[]" ]; then
    demo="${UCORE_DEMO_DIR:-$HOME/ucore-demo}"
    echo "No library yet. A demo library (2,000 files) can be made in $demo." >&2
    answer=n
    if [ -t 0 ] && [ ! -e "$demo" ]; then
        read -r -p "Create it and add it as a library root? [y/N] " answer
    else
        echo "  ucore demo create $demo && ucore library add $demo" >&2
    fi
    if [ "$answer" = y ] || [ "$answer" = Y ]; then
        ucore "${globals[@]}" demo create "$demo" \
            && ucore "${globals[@]}" library add "$demo" >/dev/null \
            && ucore "${globals[@]}" library scan "$demo" --wait >/dev/null \
            && echo "Demo library added and scanned: ucore library list" >&2
    fi
fi

if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -z "${UCORE_HEADLESS:-}" ]; then
    exec uexplorer "$@"
fi
echo "No display: starting the headless service (ucore run). Ctrl+C stops it." >&2
exec ucore run "$@"
