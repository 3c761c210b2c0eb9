#!/usr/bin/env bash
# Install headless Chromium (Debian package, /usr/bin/chromium) for the report screenshot test
# (tests/test_reports.py). Idempotent: does nothing when it is already there. Exit 1 with a
# one-line reason when it cannot be installed; the test then skips and says why.
set -uo pipefail

if [[ -x /usr/bin/chromium ]]; then
  echo "ci_chromium: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ci_chromium: no apt-get on this machine (not Debian/Ubuntu)" >&2
  exit 1
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "ci_chromium: not root and no passwordless sudo" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends chromium >/tmp/ci_chromium.log 2>&1; then
  # The package lists may be stale or absent on a fresh machine.
  if ! { $SUDO apt-get update >>/tmp/ci_chromium.log 2>&1 &&
         $SUDO apt-get install -y --no-install-recommends chromium >>/tmp/ci_chromium.log 2>&1; }; then
    echo "ci_chromium: apt-get install chromium failed: $(tail -n 1 /tmp/ci_chromium.log)" >&2
    exit 1
  fi
fi
if [[ ! -x /usr/bin/chromium ]]; then
  echo "ci_chromium: package installed but /usr/bin/chromium is missing" >&2
  exit 1
fi
echo "ci_chromium: installed $(/usr/bin/chromium --version 2>/dev/null)"
