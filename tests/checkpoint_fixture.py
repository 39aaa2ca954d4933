"""A partition's checkpointed state as a released worker wrote it, kept so that later code is tested
against it (tests/unit/test_checkpoint_fixture.py).

Why: during a rolling upgrade a partition checkpointed by the previous release is restored by the new
one, and the suite otherwise only round-trips states written by the code under test. A class moved to
another module, an attribute renamed or dropped, or a container changed shape passes every such test
and fails (or silently starts fresh) on the first restore of a real deployment.

The fixture is the pipeline's state after the first ``TICKS_BEFORE`` ticks of the shipped BTCUSDT
capture, exactly the bytes a checkpoint record's ``state`` holds (zlib of :func:`streams.snapshots.dumps`),
plus what that release published next: two feedback records naming predictions made before the
checkpoint (one matured and frozen, one still pending), then the following ``TICKS_AFTER`` ticks.

Written once per release that changes the checkpoint's format version (``agents.worker.checkpoint_version``):
``python -m tests.checkpoint_fixture`` from a clean checkout of that release. A worker restores only
checkpoints of its own version, so a fixture of an older version says nothing; the test asks for a
new one then. ``LIVELEARN_WRITE_GOLDEN=1`` rewrites only the expected outputs (for a deliberate change
of behaviour, in its own commit, as the golden backtest), never the state.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import zlib
from pathlib import Path
from typing import Any

from tests.conftest import DATA, ROOT

CAPTURE = "binance/ws/spot_btcusdt_20240808.gz"
TICKS_BEFORE, TICKS_AFTER = 3000, 3000
FIXTURES = ROOT / "tests" / "golden"
WALL_CLOCK = {"latency_ms"}


def ticks() -> list[dict[str, Any]]:
    from connectors.recorded import read_file

    return [item.tick for item in read_file(DATA / CAPTURE) if item.tick is not None][:TICKS_BEFORE + TICKS_AFTER]


def feedback(symbol: str, prediction_id: str, label: int, at_ms: int) -> dict[str, Any]:
    return {"prediction_id": prediction_id, "symbol": symbol, "event_time_ms": None, "label": label,
            "realised_return": None, "score": None, "source": "desk", "feedback_time_ms": at_ms,
            "matured_tick_index": None}


def outputs(step: Any) -> list[list[Any]]:
    """A step's records (and rejection) as JSON-ready lines, without wall-clock fields."""
    lines: list[list[Any]] = [[o.stage, o.key.decode(), {k: v for k, v in o.record.items() if k not in WALL_CLOCK}]
                              for o in step.records]
    if step.rejection is not None:
        lines.append(["rejected", step.rejection[0], step.rejection[1]])
    return lines


def continued(pipeline: Any, named: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[list[Any]]:
    """What the pipeline publishes given the feedback records, then the ticks."""
    lines = []
    for record in named:
        step = pipeline.on_feedback(record)
        lines += [["feedback_learned", step.stats.feedback_learned], *outputs(step)]
    for tick in after:
        lines += outputs(pipeline.on_tick(tick))
    return lines


def paths(release: str) -> tuple[Path, Path, Path]:
    stem = FIXTURES / f"checkpoint_{release}"
    return stem.with_suffix(".json"), stem.with_suffix(".state.zz"), stem.with_suffix(".outputs.jsonl.gz")


def write_outputs(path: Path, lines: list[list[Any]]) -> None:
    with gzip.open(path, "wt") as out:
        out.writelines(json.dumps(line, sort_keys=True) + "\n" for line in lines)


def read_outputs(path: Path) -> list[list[Any]]:
    with gzip.open(path, "rt") as lines:
        return [json.loads(line) for line in lines]


def write() -> Path:
    """Write this checkout's fixture (it must be a clean checkout of a commit: the commit names it)."""
    from agents.app import pipeline_config
    from agents.settings import Settings
    from agents.worker import checkpoint_version
    from streams import snapshots
    from streams.pipeline import PartitionPipeline

    if subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip():
        raise SystemExit("the working tree has changes: write the fixture from a clean checkout of a commit")
    release = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
    settings = Settings()
    pipeline, stream = PartitionPipeline(pipeline_config(settings)), ticks()
    for tick in stream[:TICKS_BEFORE]:
        pipeline.on_tick(tick)
    state = zlib.compress(snapshots.dumps(pipeline))
    (symbol, learner), = pipeline.learners.items()
    remembered = list(learner.issued._items.items())
    frozen = next(pid for pid, item in remembered if isinstance(item, bytes))
    pending = next(pid for pid, item in reversed(remembered) if not isinstance(item, bytes))
    clock = stream[TICKS_BEFORE - 1]["event_time_ms"]
    named = [feedback(symbol, frozen, 1, clock), feedback(symbol, pending, 0, clock)]
    meta, state_path, outputs_path = paths(release)
    meta.write_text(json.dumps({"release": release, "version": checkpoint_version(settings), "capture": CAPTURE,
                                "ticks_before": TICKS_BEFORE, "ticks_after": TICKS_AFTER, "feedback": named,
                                "frozen": frozen, "pending": pending}, indent=1, sort_keys=True) + "\n")
    state_path.write_bytes(state)
    write_outputs(outputs_path, continued(pipeline, named, stream[TICKS_BEFORE:]))
    return meta


if __name__ == "__main__":
    print(write())
