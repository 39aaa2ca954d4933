"""kill -9, restart: feedback answering a prediction the killed worker published after its last
checkpoint is learned by its successor.

At-least-once, the successor makes those predictions again (byte-identical) as it re-applies the ticks
from the checkpoint, but its feedback agent reads the one feedback record before its ticks agent has
re-applied the ticks: the feedback named a prediction the restored state had not made yet and was
dead-lettered as ``unknown_prediction``, never learned (streams.early_feedback).
"""

from __future__ import annotations

import json
import time

import pytest

from schemas.codec import AvroCodec
from tests.conftest import ROOT, livelearn
from tests.integration.test_restart import wait_for_predictions
from tests.kafka_io import read_topic

pytestmark = pytest.mark.integration

DAY = ROOT / "data" / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-01.zip"


def _learned(worker) -> float:
    status, body = worker.get("/metrics")
    line = next((line for line in body.splitlines() if line.startswith('livelearn_events_total{stage="learn"}')), None)
    return float(line.split()[-1]) if status == 200 and line else 0.0


def test_feedback_on_predictions_a_killed_worker_published_is_learned_by_its_successor(worker_factory, pipeline_env):
    # Checkpoints after 500 and 1,000 vectors and no more: the successor restores the second and
    # re-applies the day's last 440 ticks.
    env = {**pipeline_env, "LIVELEARN_MODEL_CHECKPOINT_EVENTS": "500", "LIVELEARN_MODEL_CHECKPOINT_SECONDS": "600"}
    first = worker_factory(env).start()
    assert livelearn("replay", str(DAY), "--quiet", env=env, timeout=120).returncode == 0
    assert wait_for_predictions(env, 1440, 240) >= 1440
    first.stop(kill=True)

    codec = AvroCodec.for_topic_schema("prediction")
    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"]
    predictions = [codec.decode(m.value()) for m in read_topic(bootstrap, prefix + "predictions", to_end=True)]
    late = predictions[1200]  # made about 20 hours into the day, after the last checkpoint
    answer = {"prediction_id": late["prediction_id"], "symbol": "BTCUSDT", "label": 1}
    assert livelearn("produce", "feedback", env=env, input=json.dumps(answer) + "\n", timeout=60).returncode == 0

    second = worker_factory(env).start()
    deadline = time.monotonic() + 120
    while _learned(second) < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    status, body = second.get("/metrics")
    assert _learned(second) == 1, body[-3000:]
    assert 'livelearn_model_events_total{kind="FEEDBACK_HELD"} 1.0' in body  # it came before its prediction
    assert read_topic(bootstrap, prefix + "dead-letters", to_end=True) == []
