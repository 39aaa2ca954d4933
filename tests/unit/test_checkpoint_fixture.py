"""A checkpoint written by a released worker is restored by this code and goes on as that worker did
(the fixture and why: tests/checkpoint_fixture.py)."""

from __future__ import annotations

import json
import os
import zlib

from tests.checkpoint_fixture import FIXTURES, continued, paths, read_outputs, ticks, write_outputs
from tests.conftest import same_up_to_float32

# Defaults changed since the fixture's release. A worker keeps the settings a state was written under
# (agents.checkpoints, with a warning naming these), so the restored partition goes on as the release did.
CHANGED_DEFAULTS = ["drift.variance_test: 'volatility' -> 'cusum'", "drift.persist_ms: 0 -> 60000"]


def test_a_checkpoint_of_the_released_worker_is_restored_and_goes_on_as_it_did():
    from agents.app import pipeline_config
    from agents.checkpoints import config_differences
    from agents.settings import Settings
    from agents.worker import checkpoint_version
    from streams import snapshots

    written = sorted(FIXTURES.glob("checkpoint_*.json"))
    assert len(written) == 1, f"one checkpoint fixture expected in {FIXTURES}, found {written}"
    meta = json.loads(written[0].read_text())
    _, state_path, outputs_path = paths(meta["release"])
    settings = Settings()
    assert meta["version"] == checkpoint_version(settings), (
        f"the checkpoint format is now {checkpoint_version(settings)}, the fixture's {meta['version']} (release "
        f"{meta['release']}): a worker restores neither, so checkpoints of the running release are dropped at "
        "the upgrade. Say so in the release notes and write a fixture of this release (tests/checkpoint_fixture.py)")

    state = snapshots.loads(zlib.decompress(state_path.read_bytes()))
    # A worker keeps the settings a state was written under (agents.checkpoints): none may differ here.
    assert config_differences(state.config, pipeline_config(settings)) == CHANGED_DEFAULTS
    (symbol, learner), = state.learners.items()
    assert meta["frozen"] in learner.issued and meta["pending"] in learner.issued
    before = len(learner.issued)

    stream = ticks()
    lines = continued(state, meta["feedback"], stream[meta["ticks_before"]:])
    # Both feedback records learned: the frozen prediction is rebuilt, the pending one read as it is.
    assert [line for line in lines if line[0] == "feedback_learned"] == [["feedback_learned", True]] * 2
    assert sum(line[0] == "predictions" for line in lines) > 300
    assert {line[2]["prediction_id"] for line in lines if line[0] == "outcomes"} & {meta["pending"]}
    assert len(learner.issued) >= before  # its memory of predictions went on, not restarted
    if os.environ.get("LIVELEARN_WRITE_GOLDEN") == "1":
        write_outputs(outputs_path, lines)
    expected = read_outputs(outputs_path)
    assert len(lines) == len(expected)
    mismatched = [i for i, (a, b) in enumerate(zip(lines, expected, strict=True))
                  if not same_up_to_float32(a, b)]
    assert not mismatched, (f"{len(mismatched)} of {len(lines)} outputs differ from release {meta['release']}'s, "
                            f"first: {json.dumps(expected[mismatched[0]])[:300]}")
