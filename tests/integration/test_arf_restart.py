"""A forest member through a real worker: its state outgrows one checkpoint record and is split into
parts; a kill -9 in the middle of the Elec2 sample and a restart give the same predictions as an
uninterrupted run (issue #14: `LIVELEARN_MEMBERS=arf` crashed the worker once its checkpoint passed
the topic's 16 MiB record limit)."""

from __future__ import annotations

import pytest

from schemas.codec import AvroCodec
from tests.conftest import DATA, livelearn
from tests.kafka_io import read_topic, wait_for_distinct

# slow: in the chaos lane of `make test` (scripts/test.sh), not the integration lane it kept waiting.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

ELEC2 = DATA / "drift" / "elec2_tiny_capymoa.csv"
ROWS = 2000
# Small parts, so that this short run splits its state as a long one splits it at 4 MiB.
SETTINGS = {"LIVELEARN_MEMBERS": "arf", "LIVELEARN_HORIZON_TICKS": "3", "LIVELEARN_DRIFT_RESPONSE": "off",
            "LIVELEARN_CHECKPOINT_PART_BYTES": str(128 * 1024), "LIVELEARN_MODEL_CHECKPOINT_EVENTS": "250",
            "LIVELEARN_LOG_LEVEL": "info"}


def predictions(env: dict) -> dict[str, float]:
    codec = AvroCodec.for_topic_schema("prediction")
    out: dict[str, float] = {}
    for message in read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"] + "predictions",
                              idle=3.0, timeout=180):
        record = codec.decode(message.value())
        assert out.setdefault(record["prediction_id"], record["probability_up"]) == record["probability_up"]
    return out


def count(env: dict, at_least: int, timeout: float) -> int:
    codec = AvroCodec.for_topic_schema("prediction")
    return len(wait_for_distinct(env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"] + "predictions",
                                 codec.decode, lambda r: r["prediction_id"], at_least, timeout))


def test_arf_runs_to_the_end_with_split_checkpoints_and_restarts_exactly(worker_factory, pipeline_env, run_id):
    uninterrupted = {**pipeline_env, **SETTINGS, "LIVELEARN_TOPIC_PREFIX": f"t{run_id}a.",
                     "LIVELEARN_APP_ID": f"arf-a-{run_id}"}
    worker = worker_factory(uninterrupted).start()
    assert livelearn("replay-dataset", str(ELEC2), "--symbol", "ELEC2", env=uninterrupted, timeout=120).returncode == 0
    assert count(uninterrupted, ROWS, 600) == ROWS
    worker.stop()
    expected = predictions(uninterrupted)

    interrupted = {**uninterrupted, "LIVELEARN_TOPIC_PREFIX": f"t{run_id}b.", "LIVELEARN_APP_ID": f"arf-b-{run_id}"}
    first = worker_factory(interrupted).start()
    assert livelearn("replay-dataset", str(ELEC2), "--symbol", "ELEC2", env=interrupted, timeout=120).returncode == 0
    assert count(interrupted, 1000, 600) >= 1000
    first.stop(kill=True)
    second = worker_factory(interrupted).start(timeout=120)
    assert count(interrupted, ROWS, 600) == ROWS
    second.stop()
    assert predictions(interrupted) == expected

    codec = AvroCodec.for_topic_schema("checkpoint")
    parts = [codec.decode(m.value())["parts"]
             for m in read_topic(interrupted["KAFKA_BOOTSTRAP_SERVERS"], interrupted["LIVELEARN_TOPIC_PREFIX"]
                                 + "checkpoints", idle=2.0)]
    assert max(parts) > 1, "the forest's state should have needed several parts"
    assert "restored at offsets" in second.log_path.read_text()
