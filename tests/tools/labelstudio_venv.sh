#!/usr/bin/env bash
# Build the virtual environment that tests/test_labelstudio_server.py runs Label Studio from.
#
#   bash tests/tools/labelstudio_venv.sh       # idempotent: keeps a venv that already has this version
#
# Label Studio pins its own Django, DRF and friends, so it never goes into viscurate's environment: it gets
# one of its own, bench/.venvs/label-studio (git-ignored), like the benchmark peers. The test skips when that
# venv is absent, except under CI (env CI set), where it fails.
#
# It also migrates an empty SQLite database once into $VENV/template-data (Label Studio's ~100 migrations
# take about two minutes on 2 cores); the test starts each Label Studio from a copy of it, in seconds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VISCURATE_LABELSTUDIO_VENV:-$HERE/bench/.venvs/label-studio}"
SPEC="${LABELSTUDIO_SPEC:-label-studio==1.23.2}"
# its whole package set, pinned as resolved when the test was written (refresh: pip freeze of the venv)
CONSTRAINTS="$HERE/tests/tools/labelstudio-constraints.txt"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [[ -x "$VENV/bin/label-studio" && -f "$VENV/.spec" && "$(cat "$VENV/.spec")" == "$SPEC" \
      && -f "$VENV/template-data/label_studio.sqlite3" ]]; then
  echo "[labelstudio_venv] $SPEC already in $VENV"
  exit 0
fi
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# --no-compile: no bytecode for its ~150 packages up front (CI waits on this venv); the migration below
# compiles what Label Studio imports, and most of the rest never runs.
"$VENV/bin/python" -m pip install -q --no-compile -c "$CONSTRAINTS" "$SPEC"
# Nothing leaves the machine while it migrates: no version check, no analytics, proxies to a closed port.
env LABEL_STUDIO_BASE_DATA_DIR="$VENV/template-data" DJANGO_DB=sqlite LATEST_VERSION_CHECK=false \
    COLLECT_ANALYTICS=false SENTRY_DSN= HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 \
    "$VENV/bin/python" "$VENV/lib/python"*/site-packages/label_studio/manage.py migrate --noinput >/dev/null
echo "$SPEC" > "$VENV/.spec"
echo "[labelstudio_venv] installed $SPEC in $VENV"
