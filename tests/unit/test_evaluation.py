"""`livelearn evaluate`'s core: the skill table computed from published records equals the learner's
own scores, the references are there, and the queue-imbalance reference learns with the models' delay."""

from __future__ import annotations

import itertools

import pytest

from connectors.replay import read_file
from streams.evaluation import QueueImbalanceReference, evaluate_run
from streams.features import FeatureEngine
from streams.learning import LearnerConfig, SymbolLearner
from tests.conftest import DATA


def run_records(path, emit: str, config: LearnerConfig, limit: int | None = None):
    engine, learners = FeatureEngine(emit=emit), {}
    predictions, outcomes, vectors = [], [], []
    items = (i for i in read_file(path) if i.tick is not None)
    for item in itertools.islice(items, limit):
        vector = engine.update(item.tick)
        if vector is None:
            continue
        vectors.append(vector)
        learner = learners.get(vector["symbol"])
        if learner is None:
            learner = learners[vector["symbol"]] = SymbolLearner(vector["symbol"], config)
        step = learner.process(vector)
        outcomes += step.outcomes
        predictions.append(step.prediction)
    return predictions, outcomes, vectors, learners


def test_the_table_from_records_equals_the_learners_own_scores():
    path = DATA / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-01.zip"
    predictions, outcomes, vectors, learners = run_records(path, "price", LearnerConfig())
    summary = evaluate_run(predictions, outcomes, vectors).summary()
    learner = learners["BTCUSDT"]
    own = learner.performance()
    for name in ("ensemble", "logreg", "mlp", "micro", "prior", "constant", "persistence"):
        row = summary["BTCUSDT"][name]
        assert row["n"] == own[name]["n"]
        assert row["log_loss"] == pytest.approx(own[name]["log_loss"], abs=1e-12), name
        assert row["accuracy"] == pytest.approx(own[name]["accuracy"], abs=1e-12), name
    assert summary["_counts"]["BTCUSDT"]["outcomes"] == learner.outcomes
    # Klines have no book and no trade side: those references would be the constant again.
    assert "queue_imbalance" not in summary["BTCUSDT"] and "trade_side" not in summary["BTCUSDT"]
    row = summary["BTCUSDT"]["ensemble"]
    assert row["skill_vs_prior_low"] < row["skill_vs_prior"] < row["skill_vs_prior_high"]
    assert 0.0 <= row["calibration_error"] < 0.2


def test_book_data_add_the_queue_imbalance_reference_learning_with_the_models_delay():
    path = DATA / "binance" / "ws" / "spot_ethusdt_20240808.gz"
    config = LearnerConfig(label="next_change")
    predictions, outcomes, vectors, _ = run_records(path, "book", config, limit=3000)
    summary = evaluate_run(predictions, outcomes, vectors).summary()
    rows = summary["ETHUSDT"]
    assert {"queue_imbalance", "trade_side", "constant", "prior"} <= set(rows)
    # The reference, rebuilt by hand in the learner's own order: at each vector, first the outcomes
    # that vector matured, then the prediction on it.
    from streams.scoring import log_loss

    reference, issued, losses = QueueImbalanceReference(), {}, []
    engine = FeatureEngine(emit="book")
    learner = SymbolLearner("ETHUSDT", config)
    items = (i for i in read_file(path) if i.tick is not None)
    for item in itertools.islice(items, 3000):
        vector = engine.update(item.tick)
        if vector is None:
            continue
        step = learner.process(vector)
        for outcome in step.outcomes:
            x, p = issued.pop(outcome["prediction_id"])
            if x is not None and outcome["label"] is not None:
                losses.append(log_loss(p, outcome["label"]))
                reference.learn(x, outcome["label"])
        x = QueueImbalanceReference.inputs(vector["values"])
        issued[step.prediction["prediction_id"]] = (x, reference.predict(x) if x else 0.5)
    assert rows["queue_imbalance"]["n"] == len(losses)
    assert rows["queue_imbalance"]["log_loss"] == pytest.approx(sum(losses) / len(losses), abs=1e-12)
    assert summary["_counts"]["ETHUSDT"]["flat"] == 0  # next-change labels are never flat
