"""Champion/challenger on the real broker: a truly better challenger is promoted, a worse one is not,
and a promotion that degrades is rolled back; `livelearn models` shows it.

Constructed stream (a labelled CSV replayed onto the external-features topic): the label is
``a + 0.3 b > 0`` throughout; after 1,500 rows the feature ``b`` arrives 100 times larger (a unit
change upstream). The configured ensemble (SGD rate 0.002) learns slowly; challenger ``fast`` (rate
0.05) learns the rule at once and is promoted; challenger ``slow`` (1e-6) is never better. After the
unit change the running scaler lags and ``fast``'s large steps on the huge ``b`` wreck its member,
while the slow previous champion keeps predicting well: the promotion is rolled back. (An ensemble
whose member goes wrong falls back to no skill, not below it, so a rollback needs a previous champion
that is better than no skill.)
"""

from __future__ import annotations

import json
import random

import pytest

from schemas.codec import AvroCodec
from streams.learning import LearnerConfig, SymbolLearner
from tests.conftest import livelearn
from tests.kafka_io import read_topic

pytestmark = pytest.mark.integration

ROWS = 3000


def write_stream(path) -> list[tuple[dict, int]]:
    rng = random.Random(7)
    rows = []
    with path.open("w") as handle:
        handle.write("a,b,y\n")
        for i in range(ROWS):
            a, b = rng.gauss(0, 1), rng.gauss(0, 1)
            up = a + 0.3 * b > 0
            if i >= 1500:
                b *= 100.0
            rows.append(({"a": a, "b": b}, int(up)))
            handle.write(f"{a!r},{b!r},{int(up)}\n")
    return rows


def test_promotion_no_promotion_and_rollback_through_kafka(worker_factory, pipeline_env, tmp_path):
    rows = write_stream(tmp_path / "stream.csv")
    env = {**pipeline_env, "LIVELEARN_MEMBERS": "logreg@0.002", "LIVELEARN_HORIZON_TICKS": "1",
           "LIVELEARN_CHALLENGERS": "fast=logreg@0.05;slow=logreg@0.000001", "LIVELEARN_PROMOTION_ALPHA": "0.01",
           "LIVELEARN_PROMOTION_MIN_SAMPLES": "100", "LIVELEARN_ROLLBACK_MARGIN": "0.02",
           "LIVELEARN_DRIFT_RESPONSE": "off", "LIVELEARN_PERFORMANCE_EVERY": "250"}
    worker_factory(env).start()
    result = livelearn("replay-dataset", str(tmp_path / "stream.csv"), "--symbol", "CONSTRUCTED", env=env, timeout=120)
    assert result.returncode == 0, result.stderr

    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"]
    codec = AvroCodec.for_topic_schema("prediction")
    predictions = sorted((codec.decode(m.value()) for m in read_topic(bootstrap, prefix + "predictions",
                                                                       expect=ROWS, timeout=180)),
                         key=lambda r: r["event_time_ms"])
    assert len(predictions) == ROWS
    codec = AvroCodec.for_topic_schema("model_event")
    events = [codec.decode(m.value()) for m in read_topic(bootstrap, prefix + "model-events", idle=3.0)]
    decisions = [(e["kind"], e["model_id"]) for e in events if e["kind"] in ("PROMOTION", "ROLLBACK")]
    assert decisions == [("PROMOTION", "ensemble/fast"), ("ROLLBACK", "ensemble/default")]
    promotion, rollback = (e for e in events if e["kind"] in ("PROMOTION", "ROLLBACK"))
    assert float(promotion["details"]["e_value"]) >= 100 and int(promotion["details"]["pairs"]) >= 100
    assert promotion["details"]["replaced"] == "default" and rollback["details"]["from"] == "fast"
    assert 1500 * 1000 < rollback["event_time_ms"] - predictions[0]["event_time_ms"] < ROWS * 1000

    # The published predictions follow the champion: fast between the promotion and the rollback.
    served = [p["model_id"] for p in predictions]
    first_fast, last_fast = served.index("ensemble/fast"), len(served) - 1 - served[::-1].index("ensemble/fast")
    assert set(served[first_fast:last_fast + 1]) == {"ensemble/fast"}
    assert set(served[:first_fast]) == set(served[last_fast + 1:]) == {"ensemble"}
    assert 100 < first_fast < 300 and 1500 < last_fast < ROWS - 1
    shadow = read_topic(bootstrap, prefix + "shadow-predictions", expect=2 * ROWS, timeout=120)
    assert len(shadow) == 2 * ROWS  # two variants in shadow on every row

    # Same decisions as the pure core on the same rows (the pipeline adds no behaviour of its own).
    config = LearnerConfig(members=("logreg@0.002",), horizon_ticks=1,
                           challengers=(("fast", ("logreg@0.05",)), ("slow", ("logreg@0.000001",))),
                           promotion_alpha=0.01, promotion_min_samples=100, rollback_margin=0.02)
    # A labelled dataset's learner, as the worker's pipeline makes it for these rows (their own feature set).
    learner = SymbolLearner("CONSTRUCTED", config, model_features=("a", "b"), dataset=True)
    core = []
    for i, (x, y) in enumerate(rows, 1):
        step = learner.process({"symbol": "CONSTRUCTED", "event_time_ms": predictions[i - 1]["event_time_ms"],
                                "tick_index": i, "price": 1.0, "feature_set": "dataset-x", "values": x,
                                "not_ready": [], "label": y})
        assert step.prediction["probability_up"] == predictions[i - 1]["probability_up"]
        core += [(e["kind"], e["model_id"]) for e in step.events if e["kind"] != "REJECTED_UPDATE"]
    assert core == decisions

    shown = livelearn("models", env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "CONSTRUCTED: champion default" in shown.stdout and "challengers fast, slow" in shown.stdout
    assert "event PROMOTION" in shown.stdout and "event ROLLBACK" in shown.stdout
    as_json = json.loads(livelearn("models", "--json", env=env, timeout=60).stdout)
    assert as_json["CONSTRUCTED"]["performance"]["champion"] == "default"
    assert as_json["CONSTRUCTED"]["performance"]["model_version"] == 3
