"""The skill gate (streams/skill_gate.py): market forecasts are exactly 0.5 until the experts show skill
by a test that holds its level at every moment, on outcomes that overlap as market outcomes do."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from streams.ensemble import START, Ensemble
from streams.skill_gate import SkillGate
from tests.unit.test_ensemble import noise_rows, run


def overlapping_runs(runs: int, n: int, horizon: int, seed: int):
    """Fair-coin outcomes that overlap: ``y_t`` is the sign of the next ``horizon`` steps of a random
    walk. The expert leans with the walk's last 20 steps (momentum), which says nothing about the
    future steps but changes slowly, so neighbouring outcomes and forecasts are alike: the way market
    outcomes five minutes ahead, taken every minute, are."""
    rng = random.Random(seed)
    for _ in range(runs):
        steps = [rng.gauss(0.0, 1.0) for _ in range(n + horizon + 20)]
        rows = []
        for t in range(20, n + 20):
            momentum = sum(steps[t - 20:t])
            p = 0.5 + (0.25 if momentum > 0 else -0.25)
            rows.append((p, int(sum(steps[t:t + horizon]) > 0)))
        yield rows


def test_on_overlapping_fair_coins_the_gate_opens_at_most_alpha_of_the_time_where_a_pooled_test_would_not():
    alpha, horizon, runs = 0.1, 5, 300
    opened = pooled_opened = 0
    for rows in overlapping_runs(runs, 400, horizon, seed=3):
        gate, pooled = SkillGate(alpha), SkillGate(alpha)
        for t, (p, y) in enumerate(rows):
            # Outcome t matures just before forecast t + horizon: slot t mod horizon serves it.
            gate.observe(t % horizon, {"constant": 0.5, "momentum": p}, y)
            pooled.observe(0, {"constant": 0.5, "momentum": p}, y)  # every outcome as one chain: not a test
        opened += gate.open
        pooled_opened += pooled.open
    assert opened <= alpha * runs
    # The same evidence counted once per outcome, overlapping as they do, crosses far more often.
    assert pooled_opened > 2 * alpha * runs


@pytest.mark.parametrize("seed, base_rate", [(1, 0.5), (2, 0.5)])
def test_with_noise_members_the_gated_ensemble_is_exactly_the_constant(seed, base_rate):
    ensemble = Ensemble(("a", "b"), gate_alpha=0.01)
    totals = run(ensemble, noise_rows(4000, seed, base_rate), delay=5)
    assert not ensemble.skill_shown and ensemble.gate.margin < 0
    assert totals["ensemble"] == totals["constant"]
    assert ensemble.regret_bound == 0.0


def test_with_a_planted_signal_the_gate_opens_early_and_the_slots_restart_at_the_learnable_weights():
    rng = random.Random(7)
    rows = []
    for _ in range(6000):
        truth = 1 / (1 + math.exp(-1.5 * rng.gauss(0, 1)))
        rows.append(({"oracle": truth, "noise": rng.uniform(0.3, 0.7)}, int(rng.random() < truth)))
    gated = Ensemble(("oracle", "noise"), gate_alpha=0.01)
    opened_at = None
    pending = []
    for t, (members, y) in enumerate(rows):
        if len(pending) >= 5:
            forecast, label = pending.pop(0)
            gated.learn(forecast, label)
            if opened_at is None and gated.skill_shown:
                opened_at = t
                assert all(slot.weights == gated.initial for slot in gated.slots)
        pending.append((gated.forecast(members), y))
    assert opened_at is not None and opened_at < 300
    constant, prior, fast = START["datasets"]
    assert (gated.initial[0], gated.initial[1], gated.initial[-1]) == (constant, prior, fast)
    assert gated.regret_bound == pytest.approx(len(gated.slots) * -math.log(constant))
    totals = run(Ensemble(("oracle", "noise"), gate_alpha=0.01), rows, delay=5)
    best_skill = 1 - totals["oracle"] / totals["prior"]
    assert 1 - totals["ensemble"] / totals["prior"] >= 0.9 * best_skill > 0.2


def test_markets_are_gated_by_default_labelled_datasets_are_not_and_zero_turns_it_off():
    from connectors.datasets import labelled_vectors
    from streams.learning import LearnerConfig, SymbolLearner
    from streams.pipeline import PartitionPipeline, PipelineConfig

    assert SymbolLearner("BTCUSDT", LearnerConfig()).ensemble.mixture().gate.alpha == 0.01
    assert SymbolLearner("BTCUSDT", LearnerConfig(skill_gate_alpha=0)).ensemble.mixture().gate is None
    pipeline = PartitionPipeline(PipelineConfig())
    vector, _, _ = next(iter(labelled_vectors("phishing")))
    pipeline.on_vector(vector)
    assert pipeline.learners[vector["symbol"]].ensemble.mixture().gate is None
    with pytest.raises(ValueError, match="skill_gate_alpha"):
        LearnerConfig(skill_gate_alpha=1.0)


def test_a_bad_level_fails_at_start_and_a_mixture_from_before_the_gate_publishes_as_it_did():
    from agents.settings import Settings

    with pytest.raises(ValueError, match="LIVELEARN_SKILL_GATE_ALPHA"):
        Settings.from_env({"LIVELEARN_SKILL_GATE_ALPHA": "1.5"})
    with pytest.raises(ValueError, match="alpha"):
        SkillGate(0.0)
    older = Ensemble(("a",), gate_alpha=0.01)
    del older.__dict__["gate"]  # what unpickling a checkpoint written before the gate gives
    restored = pickle.loads(pickle.dumps(older))
    assert restored.skill_shown and restored.forecast({"a": 0.9}).p_up != 0.5


def test_a_gate_restored_from_a_checkpoint_opens_where_the_uninterrupted_one_does():
    """The gate's evidence travels in the partition checkpoint (a pickle through streams.snapshots):
    cut a planted-signal run before the gate opens, restore, and it opens at the same outcome with the
    same forecasts."""
    from streams import snapshots

    rng = random.Random(5)
    rows = [({"oracle": (p := 1 / (1 + math.exp(-rng.gauss(0, 1.5)))), "noise": rng.uniform(0.3, 0.7)},
             int(rng.random() < p)) for _ in range(600)]

    def forecasts(ensemble, rows, pending):
        out = []
        for members, y in rows:
            if len(pending) >= 5:
                forecast, label = pending.pop(0)
                ensemble.learn(forecast, label)
            pending.append((ensemble.forecast(members), y))
            out.append((pending[-1][0].p_up, ensemble.skill_shown))
        return out

    whole = forecasts(Ensemble(("oracle", "noise"), gate_alpha=0.01), rows, [])
    first = Ensemble(("oracle", "noise"), gate_alpha=0.01)
    pending: list = []
    head = forecasts(first, rows[:40], pending)
    assert not first.skill_shown and first.gate.margin > -math.inf
    restored, pending = snapshots.loads(snapshots.dumps((first, pending)))
    assert head + forecasts(restored, rows[40:], pending) == whole
    assert [shown for _, shown in whole].index(True) > 40


def test_each_prediction_record_says_whether_the_gate_held_it_at_0_5():
    from streams.learning import LearnerConfig, SymbolLearner

    learner = SymbolLearner("BTCUSDT", LearnerConfig(members=("logreg",), horizon_ticks=1))
    vector = {"symbol": "BTCUSDT", "event_time_ms": 1, "tick_index": 1, "price": 100.0, "feature_set": "v1-x",
              "values": {"ret_1": 0.0}, "not_ready": []}
    prediction = learner.process(vector).prediction
    assert prediction["probability_up"] == 0.5 and prediction["skill_shown"] is False
    open_learner = SymbolLearner("BTCUSDT", LearnerConfig(members=("logreg",), horizon_ticks=1, skill_gate_alpha=0))
    assert open_learner.process(vector).prediction["skill_shown"] is True
    kept = pickle.loads(pickle.dumps(learner.pending[0].forecasts["default"]))
    del kept.__dict__["skill_shown"]  # a forecast pickled in a checkpoint before the field existed
    assert kept.skill_shown is True
