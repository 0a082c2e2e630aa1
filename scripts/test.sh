#!/usr/bin/env bash
# Quick start, command 2: set up .venv and run the whole test suite (lint, types, tests).
# Extra arguments go to pytest, e.g. scripts/test.sh -k config -x
UCORE_EXTRAS=gui,postgres,dev source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$ROOT"
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
echo "== ruff" >&2
ruff check .
echo "== mypy" >&2
mypy
echo "== pytest" >&2
exec python -m pytest "$@"
