"""The static checks `make lint` and `make typecheck` run, as part of the suite: a type error in the pure
core or a lint finding fails `make test`, not only a target nobody runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# mypy's incremental cache beside the environment ($LIVELEARN_HOME/mypy/<environment key>), not in the
# clone: a fresh clone on a machine that has checked these files before re-checks only what changed
# (about a minute from cold here). mypy validates every cached entry against the files themselves.
MYPY_CACHE = BIN.parent.parent.parent / "mypy" / BIN.parent.name


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"PATH": f"{BIN}:/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(Path.home())})


# The readers of recorded files (what every replay, backtest and evaluation of history goes through).
MYPY_CONNECTORS = ("connectors/recorded.py", "connectors/replay.py", "connectors/text_lines.py")


@pytest.mark.heavy
def test_mypy_is_clean_on_the_core_the_settings_and_the_benchmarks():
    # The benchmarks too: no test runs most of them (they need the broker or data not shipped), and two
    # had stopped running unnoticed when a helper they call began returning a pair (bench/scaling.py,
    # bench/learning.py's worker rate: a float minus a tuple), which mypy reports.
    done = run(str(BIN / "mypy"), "--cache-dir", str(MYPY_CACHE), "--ignore-missing-imports", "streams", "schemas",
               "agents/sections.py", "agents/settings.py", *MYPY_CONNECTORS, "bench")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_ruff_finds_nothing():
    done = run(str(BIN / "ruff"), "check", "streams", "agents", "schemas", "connectors", "cli", "bench", "tests")
    assert done.returncode == 0, done.stdout[-3000:]
