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
HASH="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
WANT="$HASH $EXTRAS"
if [ ! -f "$STAMP" ] || ! grep -qxF "$WANT" "$STAMP"; then
    echo "installing ucore[$EXTRAS] into $VENV ..." >&2
    # (this machine's pip config names local indexes that may not exist: drop that noise)
    set +e
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$EXTRAS]" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    rc=$?
    set -e
    [ $rc -eq 0 ] || { echo "pip install failed (exit $rc)" >&2; exit $rc; }
    # remember every extras set installed for this pyproject.toml (forget older ones)
    { grep "^$HASH " "$STAMP" 2>/dev/null || true; echo "$WANT"; } > "$STAMP.new"
    mv "$STAMP.new" "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
