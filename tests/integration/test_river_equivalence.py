"""A labelled stream through Kafka and the real worker equals River's progressive validation.

Phishing (River's bundled dataset) and the Elec2 sample in data/drift/ are replayed onto the
external-features topic; the worker predicts each row and learns it ``DELAY`` rows later. The pipeline's own
performance records (cumulative accuracy and log-loss of the member and of the ensemble) and every
published probability must equal ``river.evaluate.iter_progressive_val_score(..., delay=DELAY)`` for
the same model and order.
"""

from __future__ import annotations

import pytest
from river import datasets, evaluate, metrics, stream

from schemas.codec import AvroCodec
from streams.models import river_model
from tests.conftest import DATA, livelearn
from tests.kafka_io import read_topic

pytestmark = pytest.mark.integration

DELAY = 5  # the default horizon (LIVELEARN_HORIZON_TICKS)
ELEC2 = DATA / "drift" / "elec2_tiny_capymoa.csv"


def elec2_rows():
    """The Elec2 sample read by River's own CSV reader (independent of the project's connector)."""
    converters = {name: float for name in ("period", "nswprice", "nswdemand", "vicprice", "vicdemand", "transfer")}
    converters["class"] = int
    return stream.iter_csv(str(ELEC2), target="class", converters=converters)


def phishing_rows():
    return iter(datasets.Phishing())


def river_reference(rows, n_answers: int) -> tuple[float, float, list[float]]:
    """Accuracy and log-loss after ``n_answers`` answers, and every predicted P(class 1), from River."""
    results = {}
    for metric in (metrics.Accuracy(), metrics.LogLoss()):
        checkpoint = None
        for checkpoint in evaluate.iter_progressive_val_score(rows(), river_model("logreg"), metric, delay=DELAY,
                                                              step=1):
            if checkpoint["Step"] == n_answers:
                break
        assert checkpoint["Step"] == n_answers
        results[type(metric).__name__] = checkpoint[type(metric).__name__].get()
    model, probabilities = river_model("logreg"), []
    for _, x, y in stream.simulate_qa(rows(), moment=None, delay=DELAY):
        if y is None:
            probabilities.append(model.predict_proba_one(x).get(True, 0.0))
        else:
            model.learn_one(x, y)
    return results["Accuracy"], results["LogLoss"], probabilities


@pytest.mark.heavy
@pytest.mark.parametrize("source, rows, n", [("phishing", phishing_rows, 1250), (str(ELEC2), elec2_rows, 2000)],
                         ids=["phishing", "elec2"])
def test_pipeline_equals_river_progressive_validation(worker_factory, pipeline_env, source, rows, n):
    # The default members (logreg, mlp, micro); drift response off, so no reset interrupts the member
    # that is compared with River.
    env = {**pipeline_env, "LIVELEARN_HORIZON_TICKS": str(DELAY), "LIVELEARN_DRIFT_RESPONSE": "off",
           "LIVELEARN_PERFORMANCE_EVERY": "1"}
    worker_factory(env).start()
    result = livelearn("replay-dataset", source, "--symbol", "DATASET", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"produced {n} labelled vectors" in result.stdout

    prefix, bootstrap = env["LIVELEARN_TOPIC_PREFIX"], env["KAFKA_BOOTSTRAP_SERVERS"]
    codec = AvroCodec.for_topic_schema("prediction")
    predictions = {}
    for message in read_topic(bootstrap, prefix + "predictions", expect=n, timeout=180):
        record = codec.decode(message.value())
        predictions[record["prediction_id"]] = record
    assert len(predictions) == n
    ordered = sorted(predictions.values(), key=lambda r: r["event_time_ms"])

    codec = AvroCodec.for_topic_schema("performance")
    records = [codec.decode(m.value()) for m in read_topic(bootstrap, prefix + "performance", expect=n - DELAY,
                                                            timeout=120)]
    final = max(records, key=lambda r: r["labelled"])
    # Every vector but the last DELAY has had its label revealed; River's metric at that step:
    assert final["labelled"] == n - DELAY
    accuracy, log_loss, probabilities = river_reference(rows, n - DELAY)

    scores = final["members"]["logreg"]
    assert scores["n"] == n - DELAY
    assert scores["accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert scores["log_loss"] == pytest.approx(log_loss, abs=1e-9)
    assert len(probabilities) == n
    for record, expected in zip(ordered, probabilities, strict=True):
        assert record["member_probabilities"]["logreg"] == pytest.approx(expected, abs=1e-12)
    # Not a constant model: it learned something on both datasets.
    assert accuracy > 0.6
    # The ensemble against its best member (issue #14): accuracy within 0.002, log-loss within 0.005.
    members = ("logreg", "mlp", "micro")
    ensemble = final["members"]["ensemble"]
    assert ensemble["n"] == n - DELAY
    assert ensemble["accuracy"] >= max(final["members"][m]["accuracy"] for m in members) - 0.002
    assert ensemble["log_loss"] <= min(final["members"][m]["log_loss"] for m in members) + 0.005
    # And it says so itself: skill against the running prior with its interval.
    skill = final["skill"]["ensemble"]
    assert skill["vs_prior_low"] > 0.2

    # The same rows through `livelearn backtest` (no worker, no Faust): every prediction equals the
    # worker's, latency aside.
    backtest_env = {**env, "LIVELEARN_TOPIC_PREFIX": "b" + prefix, "LIVELEARN_APP_ID": "b" + env["LIVELEARN_APP_ID"]}
    assert livelearn("replay-dataset", source, "--symbol", "DATASET", env=backtest_env, timeout=120).returncode == 0
    result = livelearn("backtest", "--quiet", env=backtest_env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{n:,} vectors of b{prefix}external-features" in result.stdout, result.stdout
    codec = AvroCodec.for_topic_schema("prediction")
    backtested = {}
    for message in read_topic(bootstrap, "b" + prefix + "predictions", to_end=True):
        record = codec.decode(message.value())
        backtested[record["prediction_id"]] = record

    def latency_aside(records: dict[str, dict]) -> dict[str, dict]:
        return {pid: {k: v for k, v in r.items() if k != "latency_ms"} for pid, r in records.items()}

    assert latency_aside(backtested) == latency_aside(predictions)
