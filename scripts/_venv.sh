# Sourced by scripts/run.sh and scripts/test.sh: make sure .venv exists and holds this
# checkout (editable) with the extras named in $UCORE_EXTRAS. Idempotent; when pyproject.toml
# and the extras are unchanged since the last install it does nothing (well under a second).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
EXTRAS="${UCORE_EXTRAS:-gui}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "setting up $VENV ..." >&2
    "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.ucore-install-stamp"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1) $EXTRAS"
if [ ! -f "$STAMP" ] || ! grep -qxF "$WANT" "$STAMP"; then
    echo "installing ucore[$EXTRAS] into $VENV ..." >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$EXTRAS]"
    # remember every extras set installed for this pyproject.toml
    { grep -v "^$(echo "$WANT" | cut -d' ' -f1) " "$STAMP" 2>/dev/null || true; echo "$WANT"; } > "$STAMP.new"
    mv "$STAMP.new" "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
