"""Shared benchmark helpers: real data from ../shared/data, timing, the RESULT line."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


def pin_one_core() -> None:
    """Run on one CPU (the issue's 'one core' figures) and keep BLAS/torch single-threaded."""
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass


def best_of(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` runs (the least disturbed by the other tenant of a 2-core box)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def result(name: str, **fields) -> None:
    print("RESULT " + json.dumps({"bench": name, **fields}, sort_keys=True), flush=True)
