#!/usr/bin/env bash
# Creates (once) the Python environment for livelearn and prints its path.
#
# The environment lives outside the clone, in $LIVELEARN_HOME/venvs/<key>, where the key hashes
# requirements.lock and the interpreter version: a fresh machine builds it from scratch (torch from
# PyPI is a large download), a machine that already built it for the same spec reuses it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
home="${LIVELEARN_HOME:-$HOME/.cache/livelearn}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python="$candidate"; break
    fi
  done
fi
if [ -z "$python" ]; then
  echo "bootstrap: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
key="$( (cat "$root/requirements.lock"; "$python" -VV) | sha256sum | cut -c1-16)"
venv="$home/venvs/$key"
if [ ! -f "$venv/.complete" ]; then
  echo "bootstrap: creating $venv (first run on this machine downloads torch and friends; a few minutes)" >&2
  rm -rf "$venv"
  mkdir -p "$home/venvs"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q --progress-bar off -r "$root/requirements.lock" >&2
  touch "$venv/.complete"
fi
# The project itself is not installed into this shared environment (several clones may use it):
# scripts/livelearn and the Makefile run this clone's code with PYTHONPATH set to it.
echo "$venv"
