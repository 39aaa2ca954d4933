"""`livelearn evaluate`'s core: the skill table computed from published records equals the learner's
own scores, the references are there, and the queue-imbalance reference learns with the models' delay."""

from __future__ import annotations

import itertools

import pytest

from connectors.recorded import read_file
from streams.evaluation import evaluate_run
from streams.features import FeatureEngine
from streams.learning import LearnerConfig, SymbolLearner
from streams.references import QueueImbalanceReference
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
    # Klines have no book and no trade side: those references, and the rule members that read them,
    # would be the constant again; the counts name the members left out, and the text table says so.
    assert "queue_imbalance" not in summary["BTCUSDT"] and "trade_side" not in summary["BTCUSDT"]
    assert "side" not in summary["BTCUSDT"] and "imbalance" not in summary["BTCUSDT"]
    assert {"side", "imbalance"} <= set(summary["_counts"]["BTCUSDT"]["at_one_half"])
    assert own["side"]["log_loss"] == own["constant"]["log_loss"]
    from cli.evaluate import render

    said = ("  (imbalance, side, trade_side: 0.5 at every outcome, no input of theirs in these ticks; "
            "the constant's row)")
    assert said in render(summary).splitlines()
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


def test_a_run_scored_as_it_goes_equals_the_table_from_its_records():
    """`livelearn evaluate FILE` scores the pipeline's steps as they come (RunScorer) instead of keeping
    every record: the same table, the queue-imbalance reference included, to the last bit."""
    from agents.app import pipeline_config
    from agents.settings import Settings
    from streams.evaluation import RunScorer, read_for_scoring
    from streams.pipeline import PartitionPipeline

    path = DATA / "binance" / "ws" / "spot_btcusdt_20240808.gz"
    pipeline, scorer = PartitionPipeline(pipeline_config(Settings())), RunScorer()
    records: dict[str, list[dict]] = {"predictions": [], "outcomes": [], "features": []}

    def keep(step):
        for output in step.records:
            if output.stage in records:
                records[output.stage].append(output.record)
        for released, _ in step.released:
            keep(released)

    items = (i for i in read_file(path) if i.tick is not None)
    for item in itertools.islice(items, 6000):
        step = pipeline.on_tick(item.tick)
        scorer.add_step(step)
        keep(step)
    for released, _ in pipeline.flush():
        scorer.add_step(released)
        keep(released)
    streamed = scorer.evaluation().summary()
    assert streamed == evaluate_run(records["predictions"], records["outcomes"], records["features"]).summary()
    # What `livelearn evaluate` keeps of a run's topics is all the table reads.
    kept = {stage: [read_for_scoring(stage, r) for r in rs] for stage, rs in records.items()}
    assert streamed == evaluate_run(kept["predictions"], kept["outcomes"], kept["features"]).summary()
    rows = streamed["BTCUSDT"]
    assert {"ensemble", "prior", "queue_imbalance"} <= set(rows) and rows["ensemble"]["n"] > 100
    # Where trades and a book come, the rule members have rows of their own.
    assert {"side", "imbalance"} <= set(rows) and not streamed["_counts"]["BTCUSDT"]["at_one_half"]


def test_a_scored_outcome_keeps_a_few_doubles_not_its_records():
    import random
    import tracemalloc

    from streams.evaluation import RunScorer

    rng, scorer = random.Random(3), RunScorer()
    members = {f"m{i}": 0.5 for i in range(8)}

    def one(i):
        pid = f"X-{i}-{i}"
        scorer.predict({"symbol": "X", "prediction_id": pid, "probability_up": rng.random(),
                        "member_probabilities": {name: rng.random() for name in members}})
        if i >= 5:
            scorer.mature(f"X-{i - 5}-{i - 5}", rng.randint(0, 1))

    for i in range(1000):
        one(i)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(1000, 21000):
        one(i)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # Nine forecasters, a label and a lag: about 90 bytes an outcome; keeping the records took about 2 KB.
    assert grown / 20000 < 200, grown / 20000
    assert scorer.evaluation().summary()["X"]["ensemble"]["n"] == 20995


def test_outcomes_that_mature_at_one_event_share_a_block():
    from streams.scoring import BlockedScores

    scores = BlockedScores(("model", "constant"), block=2)
    for _ in range(5):
        scores.add({"model": 0.6, "constant": 0.5}, 1, hold=True)
    assert scores.sums == [] and scores.in_current == 5
    scores.settle()
    assert len(scores.sums) == 1 and scores.in_current == 0
    scores.add({"model": 0.6, "constant": 0.5}, 0)
    scores.add({"model": 0.6, "constant": 0.5}, 0)  # one outcome an event: blocks of two, as before
    assert len(scores.sums) == 2


def test_the_interval_holds_its_level_when_outcomes_mature_in_bursts():
    """Forecasts waiting for the next change of the mid mature together, dozens at once on a quiet book,
    with one label (the futures capture's CTKUSDT: 131 outcomes from 4 mid changes). Simulated: most
    events resolve 1-3 forecasts, one in fifty resolves 40-100; a forecaster always at 0.6 on a fair
    coin per event, whose true skill against the constant 0.5 is known. Its 95% interval must cover
    that skill in most runs; with blocks of a fixed length cut through the bursts it did in 110 of these 150."""
    import math
    import random

    from streams.evaluation import RunScorer

    truth = 1 - 0.5 * (-math.log(0.6) - math.log(0.4)) / math.log(2)
    covered = runs = 0
    for seed in range(150):
        rng, scorer, k = random.Random(seed), RunScorer(), 0
        for _ in range(400):
            size = rng.randint(1, 3) if rng.random() < 0.98 else rng.randint(40, 100)
            ids = [f"X-{k + i}" for i in range(size)]
            k += size
            for pid in ids:
                scorer.predict({"prediction_id": pid, "symbol": "X", "probability_up": 0.6,
                                "member_probabilities": {"prior": 0.5}})
            y = rng.randint(0, 1)
            for pid in ids:
                scorer.mature(pid, y)
        row = scorer.evaluation().summary()["X"]["ensemble"]
        low, high = row["skill_vs_constant_low"], row["skill_vs_constant_high"]
        runs += 1
        covered += low <= truth <= high
    assert covered / runs >= 0.85, f"covered in {covered} of {runs} runs"


def test_each_symbol_gets_blocks_from_its_own_lags():
    """A busy pair (each outcome one prediction late) beside a thin one (fifty late) in one file: the
    thin pair's blocks span four of its own lags, not the pooled median's."""
    from streams.evaluation import RunScorer

    scorer = RunScorer()
    for symbol, lag, n in (("BUSY", 1, 2000), ("THIN", 50, 400)):
        waiting = []
        for k in range(n):
            pid = f"{symbol}-{k}"
            scorer.predict({"prediction_id": pid, "symbol": symbol, "probability_up": 0.6,
                            "member_probabilities": {"prior": 0.5}})
            waiting.append(pid)
            if len(waiting) > lag:
                scorer.mature(waiting.pop(0), k % 2)
    table = scorer.evaluation()
    assert table.blocks["BUSY"]["ensemble"].block == 20
    assert table.blocks["THIN"]["ensemble"].block >= 200
