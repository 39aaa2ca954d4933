"""Champion/challenger statistics (valid under continuous peeking) and guarded updates."""

from __future__ import annotations

import math
import random

import pytest

from streams.guard import GuardedMember
from streams.learning import InvalidVector, LearnerConfig, SymbolLearner
from streams.models import make_member
from streams.variants import BettingTest, VariantPolicy, brier

ALPHA = 0.05


def null_pairs(rng: random.Random, n: int):
    """Paired Brier losses of two equally good forecasters: no real difference."""
    for _ in range(n):
        y = rng.random() < 0.5
        signal = 0.6 if y else 0.4
        yield brier(min(1, max(0, signal + rng.gauss(0, 0.15))), y), brier(min(1, max(0, signal + rng.gauss(0, 0.15))), y)


def test_false_promotion_rate_stays_below_alpha_when_checked_after_every_event():
    rng = random.Random(20261122)
    runs, events = 300, 1000
    promoted = naive = 0
    for _ in range(runs):
        policy = VariantPolicy("champion", ["challenger"], alpha=ALPHA, min_samples=20)
        total = total_sq = 0.0
        naive_fired = False
        for i, (champion, challenger) in enumerate(null_pairs(rng, events), 1):
            if policy.observe({"champion": champion, "challenger": challenger}) is not None:
                promoted += 1
                break
            # The tempting alternative: a one-sided z/t-test on the mean difference, looked at every event.
            d = champion - challenger
            total += d
            total_sq += d * d
            if i >= 20 and not naive_fired:
                sd = math.sqrt(max((total_sq - total * total / i) / (i - 1), 1e-18))
                if total / i / (sd / math.sqrt(i)) > 1.645:
                    naive_fired = True
        naive += naive_fired
    assert promoted / runs <= ALPHA
    # Peeking at a fixed-sample test after every event would promote far more often than alpha.
    assert naive / runs > 2 * ALPHA


def test_a_truly_better_challenger_is_promoted_with_its_evidence():
    rng = random.Random(5)
    policy = VariantPolicy("champion", ["weak", "strong"], alpha=0.01, min_samples=100)
    decision, n = None, 0
    while decision is None and n < 5000:
        n += 1
        y = rng.random() < 0.5
        decision = policy.observe({"champion": brier(0.5, y), "weak": brier(0.5 + rng.gauss(0, 0.05), y),
                                   "strong": brier(0.8 if y else 0.2, y)})
    kind, name, evidence = decision
    assert (kind, name, policy.champion, policy.previous) == ("PROMOTION", "strong", "strong", "champion")
    assert int(evidence["pairs"]) >= 100 and float(evidence["e_value"]) >= 100
    assert float(evidence["confidence"]) >= 0.99 and float(evidence["effect_size"]) > 0.5


def test_a_promotion_that_degrades_is_rolled_back():
    policy = VariantPolicy("a", ["b"], alpha=0.01, min_samples=50, rollback_margin=0.02)
    while policy.observe({"a": 0.25, "b": 0.10}) is None:
        pass
    assert policy.champion == "b"
    decisions = [policy.observe({"a": 0.25, "b": 0.40}) for _ in range(200)]
    rollback = next(d for d in decisions if d is not None)
    assert rollback[0] == "ROLLBACK" and rollback[1] == "a" and policy.champion == "a"
    assert rollback[2]["from"] == "b" and float(rollback[2]["mean_difference"]) == pytest.approx(0.13)


def test_betting_wealth_is_a_product_of_bets():
    test = BettingTest()
    for d in (0.5, -0.25, 1.0, -1.0):
        test.update(d)
    expected = sum(math.prod(1 + lam * d for d in (0.5, -0.25, 1.0, -1.0)) for lam in (0.05, 0.1, 0.2, 0.35, 0.5)) / 5
    assert test.wealth == pytest.approx(expected)
    assert test.n == 4 and test.mean == pytest.approx(0.0625)


def stream(seed: int, n: int):
    rng = random.Random(seed)
    for _ in range(n):
        a, b = rng.gauss(0, 1), rng.gauss(0, 1)
        yield {"a": a, "b": b}, int(a + 0.3 * b > 0)


def test_guard_refuses_nan_and_bad_labels_and_undoes_a_step_that_wrecks_the_scaler():
    guarded = GuardedMember(make_member("logreg", features=("a", "b")), snapshot_every=10)
    reference = make_member("logreg", features=("a", "b"))
    for x, y in stream(1, 400):
        assert guarded.learn_one(x, y)
        reference.learn_one(x, y)
    assert not guarded.learn_one({"a": math.nan, "b": 0.0}, 1)
    assert not guarded.learn_one({"a": 0.1, "b": 0.0}, 7)
    # One absurd value leaves no NaN, but the running scaler is ruined: every later input scales to ~0.
    wrecked = make_member("logreg", features=("a", "b"))
    for x, y in stream(1, 400):
        wrecked.learn_one(x, y)
    wrecked.learn_one({"a": 1e300, "b": 0.0}, 0)
    probe = {"a": 1.5, "b": 0.2}
    assert abs(wrecked.predict_proba_one(probe)[1] - 0.5) < 0.05
    assert not guarded.learn_one({"a": 1e300, "b": 0.0}, 0)
    assert [code for code, _ in guarded.drain()] == ["non_finite_input", "invalid_label", "loss_spike"]
    # Restored to the last snapshot (every 10 steps; 400 is a multiple): equal to the untouched model.
    assert guarded.predict_proba_one(probe)[1] == reference.predict_proba_one(probe)[1] > 0.7
    assert guarded.rejected == 3


def test_no_prediction_is_served_from_a_corrupted_model():
    learner = SymbolLearner("D", LearnerConfig(members=("logreg", "mlp"), horizon_ticks=1), model_features=("a", "b"))
    clean = SymbolLearner("D", LearnerConfig(members=("logreg", "mlp"), horizon_ticks=1, guard=False),
                          model_features=("a", "b"))
    rng = random.Random(3)
    served, events = [], []
    for i, (x, y) in enumerate(stream(2, 1500), 1):
        poison = i % 100 == 50
        if poison:
            x = {"a": rng.choice([math.nan, math.inf, 1e300, -1e250]), "b": 0.0}
        vector = {"symbol": "D", "event_time_ms": i, "tick_index": i, "price": 1.0, "feature_set": "dataset-x",
                  "values": x, "not_ready": [], "label": y}
        if not all(math.isfinite(v) for v in x.values()):
            with pytest.raises(InvalidVector, match="feature a of D"):
                learner.process(vector)
            continue
        step = learner.process(vector)
        prediction = step.prediction
        events += step.events
        assert math.isfinite(prediction["probability_up"])
        assert all(math.isfinite(p) for p in prediction["member_probabilities"].values())
        if not poison:
            served.append((prediction["probability_up"] > 0.5) == y)
            clean.process(vector)
    assert len(events) >= 5 and {e["kind"] for e in events} == {"REJECTED_UPDATE"}
    assert {e["details"]["check"] for e in events} <= {"loss_spike", "non_finite_output", "non_finite_parameters"}
    assert sum(served[-500:]) / 500 > 0.85  # still a good model after 15 poisoned inputs
    assert learner.ensemble.members["logreg"].parameters_finite()


def test_learner_promotes_a_better_challenger_and_serves_it():
    learner = SymbolLearner("D", LearnerConfig(members=("logreg@0.00001",), horizon_ticks=1,
                                               challengers=(("fast", ("logreg@0.05",)),), promotion_alpha=0.01,
                                               promotion_min_samples=100), model_features=("a", "b"))
    events = []
    for i, (x, y) in enumerate(stream(4, 1500), 1):
        step = learner.process({"symbol": "D", "event_time_ms": i, "tick_index": i, "price": 1.0,
                                "feature_set": "dataset-x", "values": x, "not_ready": [], "label": y})
        prediction = step.prediction
        events += step.events
    assert [(e["kind"], e["model_id"]) for e in events] == [("PROMOTION", "ensemble/fast")]
    assert learner.champion == "fast" and learner.version == 2
    assert prediction["model_id"] == "ensemble/fast" and prediction["model_version"] == 2
    assert learner.scores["variant:fast"].summary()["accuracy"] > learner.scores["variant:default"].summary()["accuracy"]


def test_traffic_share_is_a_deterministic_hash_of_the_prediction_id():
    learner = SymbolLearner("D", LearnerConfig(members=("logreg",), challengers=(("c", ("logreg@0.05",)),),
                                               traffic_share=0.2), model_features=("a",))
    shares = [learner.serving(f"D-{i}-{i}") for i in range(5000)]
    assert shares == [learner.serving(f"D-{i}-{i}") for i in range(5000)]
    assert 0.17 < shares.count("c") / 5000 < 0.23


def test_a_member_stuck_at_one_probability_while_learning_is_restored_from_a_good_snapshot():
    import random

    rng = random.Random(3)
    guarded = GuardedMember(make_member("logreg", features=("a",)), snapshot_every=50, degenerate_after=100)

    def step():
        a = rng.gauss(0, 1)
        p = guarded.predict_proba_one({"a": a})[1]
        guarded.learn_one({"a": a}, int(a + rng.gauss(0, 1) > 0))
        return p

    healthy = [step() for _ in range(300)]
    assert len(set(healthy[-100:])) > 90 and not guarded.drain()
    # Saturate the model (what one absurd input once did): every probability becomes exactly 1.0.
    guarded.member.model["LogisticRegression"].intercept = 1e6
    stuck = [step() for _ in range(100)]
    assert set(stuck) == {1.0}
    after = [step() for _ in range(50)]
    assert [code for code, _ in guarded.drain()] == ["degenerate_output"]
    assert len(set(after[-40:])) > 30 and max(after[1:]) < 1.0  # after[0] was served before the restore


def test_a_rule_member_without_its_input_says_0_5_throughout_and_is_not_taken_for_stuck():
    """On klines (no trade side, no book) the ``side`` and ``imbalance`` members say exactly 0.5 at every
    prediction while the guard passes them every outcome: not a dead member, so nothing is restored or
    reported (it raised a REJECTED_UPDATE every 200 vectors per rule and symbol before)."""
    for name in ("side", "imbalance"):
        guarded = GuardedMember(make_member(name), degenerate_after=100)
        for i in range(1_000):
            assert guarded.predict_proba_one({"ret_1": 0.001 * (i % 7 - 3)})[1] == 0.5
            assert guarded.learn_one({"ret_1": 0.001 * (i % 7 - 3)}, i % 2)
        assert not guarded.drain() and guarded.rejected == 0
        # Given its input it learns and moves.
        for _ in range(300):
            guarded.learn_one({"last_trade_sign": 1.0, "book_imbalance": 0.6}, 1)
        assert guarded.predict_proba_one({"last_trade_sign": 1.0, "book_imbalance": 0.6})[1] > 0.6
