"""The learning core without Kafka: delayed test-then-train, feedback joins, ensemble weights, scores."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from river import metrics

from connectors.datasets import RowError, labelled_vectors
from streams import scoring
from streams.ensemble import Regimes, Variant
from streams.guard import GuardedMember
from streams.issued import IssuedPredictions
from streams.learning import LearnerConfig, SymbolLearner, UnknownPrediction
from streams.mlp import TorchMLP
from streams.models import make_member
from streams.references import Persistence
from streams.scoring import MemberScore


def learner_of(symbol: str = "S", model_features=None, **config) -> SymbolLearner:
    kwargs = {} if model_features is None else {"model_features": model_features}
    return SymbolLearner(symbol, LearnerConfig(**config), **kwargs)


def vector(i: int, price: float, values: dict | None = None, label: int | None = None) -> dict:
    record = {"symbol": "S", "event_time_ms": 1000 * i, "tick_index": i, "price": price, "feature_set": "v1-test",
              "values": values if values is not None else {"ret_1": 0.0}, "not_ready": []}
    if label is not None:
        record["label"] = label
    return record


class Recorder:
    """A member that records what it is asked and taught (to check the order of operations)."""

    def __init__(self):
        self.log = []

    def predict_proba_one(self, x):
        self.log.append(("predict", x["i"]))
        return {0: 0.5, 1: 0.5}

    def learn_one(self, x, y):
        self.log.append(("learn", x["i"], y))


def test_prediction_comes_before_its_label_and_learning_uses_the_features_of_prediction_time():
    learner = learner_of(members=("logreg",), horizon_ticks=2, guard=False)
    recorder = learner.ensemble.members["logreg"] = Recorder()
    prices = [100.0, 101.0, 100.5, 102.0, 101.0]
    outcomes_at = {}
    for i, price in enumerate(prices, 1):
        step = learner.process(vector(i, price, {"i": i}))
        assert step.prediction["prediction_id"] == f"S-{1000 * i}-{i}"
        outcomes_at[i] = step.outcomes
    # Vector i is learned when vector i + 2 arrives, before vector i + 2 is predicted on.
    assert recorder.log == [("predict", 1), ("predict", 2), ("learn", 1, 1), ("predict", 3), ("learn", 2, 1),
                            ("predict", 4), ("learn", 3, 1), ("predict", 5)]
    assert [o["prediction_id"] for o in outcomes_at[3]] == ["S-1000-1"]
    assert outcomes_at[3][0]["realised_return"] == pytest.approx(100.5 / 100.0 - 1)
    assert outcomes_at[5][0]["label"] == 1 and outcomes_at[5][0]["feedback_time_ms"] == 5000


def test_a_horizon_in_seconds_matures_at_the_first_vector_that_far_in_event_time():
    learner = learner_of(members=("logreg",), horizon_ticks=1, horizon_seconds=2.5)
    learner.process(vector(1, 100.0))  # t = 1 s
    assert learner.process(vector(2, 101.0)).outcomes == []  # 2 s
    assert learner.process(vector(3, 102.0)).outcomes == []  # 3 s: only 2 s later
    outcomes = learner.process(vector(4, 99.0)).outcomes  # 4 s
    assert [o["prediction_id"] for o in outcomes] == ["S-1000-1"]
    assert outcomes[0]["realised_return"] == pytest.approx(-0.01) and outcomes[0]["label"] == 0


def test_flat_moves_are_published_not_learned_and_duplicates_change_nothing():
    learner = learner_of(members=("logreg",), horizon_ticks=1, flat_band=0.001, guard=False)
    recorder = learner.ensemble.members["logreg"] = Recorder()
    learner.process(vector(1, 100.0, {"i": 1}))
    outcomes = learner.process(vector(2, 100.05, {"i": 2})).outcomes
    assert outcomes[0]["label"] is None
    assert ("learn", 1, 0) not in recorder.log and ("learn", 1, 1) not in recorder.log
    assert (learner.outcomes, learner.flat, learner.flat_share) == (1, 1, 1.0)
    assert learner.scores["ensemble"].total == 0  # flat outcomes are not scored
    duplicate = learner.process(vector(2, 100.05, {"i": 2}))
    assert duplicate.prediction is None and duplicate.outcomes == []
    assert learner.process(vector(1, 100.0, {"i": 1})).prediction is None


def test_dataset_labels_are_learned_after_the_horizon_instead_of_price_outcomes():
    learner = learner_of("D", model_features=("a",), members=("logreg",), horizon_ticks=1, guard=False)
    recorder = learner.ensemble.members["logreg"] = Recorder()
    learner.process(vector(1, 1.0, {"a": 1.0, "i": 1}, label=0))
    outcomes = learner.process(vector(2, 1.0, {"a": 2.0, "i": 2}, label=1)).outcomes
    assert outcomes[0]["label"] == 0 and outcomes[0]["source"] == "dataset"
    assert outcomes[0]["realised_return"] is None
    assert ("learn", 1, 0) in recorder.log


def test_external_feedback_joins_the_issued_features_and_unknown_ids_are_refused():
    learner = learner_of(members=("logreg",), horizon_ticks=100, guard=False)
    recorder = learner.ensemble.members["logreg"] = Recorder()
    first = learner.process(vector(1, 100.0, {"i": 1})).prediction
    learner.process(vector(2, 90.0, {"i": 2}))
    assert learner.learn_feedback({"prediction_id": first["prediction_id"], "label": 0}) == []
    assert recorder.log[-1] == ("learn", 1, 0)
    with pytest.raises(UnknownPrediction, match="unknown or expired"):
        learner.learn_feedback({"prediction_id": "S-0-0", "label": 1})
    short = learner_of(members=("logreg",), horizon_ticks=100, keep_issued=1)
    old = short.process(vector(1, 100.0)).prediction
    short.process(vector(2, 100.0))
    with pytest.raises(UnknownPrediction):
        short.learn_feedback({"prediction_id": old["prediction_id"], "label": 1})


class KeptAsObjects(IssuedPredictions):
    """Every prediction kept as an object, as before predictions were frozen."""

    def freeze(self, prediction_id: str) -> None:
        pass


def test_matured_predictions_are_kept_frozen_and_feedback_on_them_learns_the_same_as_on_live_ones():
    from collections import OrderedDict

    from streams import snapshots

    rng = random.Random(2)
    vectors = [vector(i, 100.0 + rng.gauss(0, 1), {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)}) for i in range(1, 300)]
    frozen, live = (learner_of(members=("logreg",), horizon_ticks=3, model_features=("a", "b")) for _ in range(2))
    live.issued = KeptAsObjects(live.config.keep_issued)  # the old behaviour
    ids = [[learner.process(v).prediction["prediction_id"] for v in vectors] for learner in (frozen, live)][0]
    assert frozen.issued.frozen == len(vectors) - 3 and live.issued.frozen == 0  # the last 3 have not matured
    # Frozen, a prediction keeps what feedback reads of it, not its forecasts and references (scored by then):
    # the same class (workers of the version before read it), a third smaller than one still pending.
    kept, pending = frozen.issued.get(ids[0]), frozen.issued.get(ids[-1])
    assert type(kept) is type(pending) and kept.x == vectors[0]["values"]
    assert (kept.forecasts, kept.references) == ({}, {})
    assert pending.forecasts and len(frozen.issued._items[ids[0]]) < len(snapshots.dumps(pending)) / 1.5
    # A checkpoint and back, then external feedback on matured (frozen) and pending predictions.
    frozen = snapshots.loads(snapshots.dumps(frozen))
    for pid, label in [*zip(ids[::7], [1, 0] * 50, strict=False), (ids[-1], 1)]:
        for learner in (frozen, live):
            learner.learn_feedback({"prediction_id": pid, "label": label})
    probe = {"a": 0.3, "b": -1.2}
    assert frozen.probability_up(probe) == live.probability_up(probe)
    # A checkpoint of a version that kept a plain ordered dict still restores, and feedback finds its predictions.
    old = learner_of(members=("logreg",), horizon_ticks=3)
    for v in vectors[:10]:
        old.process(v)
    state = old.__dict__.copy()
    state["issued"] = OrderedDict((pid, old.issued.get(pid)) for pid in ids[:10])
    restored = SymbolLearner.__new__(SymbolLearner)
    restored.__setstate__(state)
    assert restored.learn_feedback({"prediction_id": ids[0], "label": 1}) == [] and len(restored.issued) == 10


class Constant:
    def __init__(self, p):
        self.p = p

    def predict_proba_one(self, x):
        return {0: 1 - self.p, 1: self.p}

    def learn_one(self, x, y):
        pass


def test_regime_weights_keep_one_mixture_per_regime():
    variant = Variant({"a": Constant(0.7), "b": Constant(0.3)}, guard=False, regime_weights=True)
    # "a" is right in trending markets, "b" in ranging ones.
    for _ in range(60):
        for regime, y in (("trending", 1), ("ranging", 0)):
            forecast = variant.forecast({}, regime)
            variant.learn({}, y, forecast, regime)
    trending, ranging = variant.mixture("trending").weights(), variant.mixture("ranging").weights()
    assert trending["a"] + trending["a~cal"] > 0.9 and ranging["b"] + ranging["b~cal"] > 0.9


def test_regimes_from_features():
    regimes = Regimes()
    assert regimes.classify({"ret_1": 0.0}) == "unknown"
    assert regimes.classify({"volatility_20": 0.001, "ret_20": 0.0001}) == "ranging"
    assert regimes.classify({"volatility_20": 0.001, "ret_20": 0.01}) == "trending"
    assert regimes.classify({"volatility_20": 0.01, "ret_20": 0.0}) == "volatile"


def test_cumulative_scores_equal_river_metrics():
    rng = random.Random(3)
    score = MemberScore(window=50)
    accuracy, log_loss = metrics.Accuracy(), metrics.LogLoss()
    for _ in range(300):
        p = rng.choice([0.5, rng.random(), 0.0, 1.0])
        y = rng.randint(0, 1)
        score.add(p, y, 0.01 if y else -0.01)
        accuracy.update(y, p > 0.5)
        log_loss.update(y, {False: 1 - p, True: p})
    summary = score.summary()
    assert summary["n"] == 300
    assert summary["accuracy"] == pytest.approx(accuracy.get(), abs=1e-12)
    assert summary["log_loss"] == pytest.approx(log_loss.get(), abs=1e-9)
    assert score.n == 50  # rolling window


def test_member_scores_give_the_bits_of_the_score_functions_they_write_out():
    """RollingScore.add writes log_loss out and MemberScore.add brier (for speed); they must give the
    functions' bits, at the clamp's edges and for a NaN too, with the rolling window's sums."""
    rng = random.Random(5)
    eps = scoring.EPS
    edges = [0.0, -0.0, 1.0, eps, eps / 2, 1.0 - eps, 1.0 - eps / 2, 0.5, math.nextafter(0.5, 1.0), float("nan")]
    score = MemberScore(window=7)
    hits, losses, total_loss, total_brier, total_hits = [], [], 0.0, 0.0, 0
    for i in range(400):
        p = edges[i % len(edges)] if i % 3 == 0 else rng.random()
        y = rng.randint(0, 1)
        loss = score.add(p, y, 0.01, 0.02)
        expected = scoring.log_loss(p, y)
        assert repr(loss) == repr(expected), (p, y)
        hit = int((p > 0.5) == (y == 1))
        hits.append(hit)
        losses.append(expected)
        total_hits += hit
        total_loss += expected
        total_brier += scoring.brier(p, y)
    assert (score.total, score.total_hits) == (400, total_hits)
    assert repr((score.total_loss, score.total_brier)) == repr((total_loss, total_brier))
    assert list(score.hits) == hits[-7:] and repr(list(score.losses)) == repr(losses[-7:])


def test_the_guard_keeps_welfords_running_moments_of_the_inputs_it_accepted():
    guarded = GuardedMember(make_member("logreg", features=("a", "b")), snapshot_every=10)
    rng = random.Random(11)
    moments = {"a": [0, 0.0, 0.0], "b": [0, 0.0, 0.0]}
    for _ in range(200):
        x = {"a": rng.gauss(3.0, 2.0), "b": rng.expovariate(1.0), "unread": 1.0}
        assert guarded.learn_one(x, rng.randint(0, 1))
        for name in moments:
            n, mean, m2 = moments[name]
            n += 1
            delta = x[name] - mean
            mean = mean + delta / n
            moments[name] = [n, mean, m2 + delta * (x[name] - mean)]
    assert repr(guarded.stats) == repr(moments)


def test_persistence_baseline_repeats_the_last_label_with_its_hit_rate():
    baseline = Persistence()
    assert baseline.predict_proba_one({}) == {0: 0.5, 1: 0.5}
    for y in (1, 1, 1, 1):
        baseline.learn_one({}, y)
    assert baseline.predict_proba_one({})[1] > 0.7
    baseline.learn_one({}, 0)
    assert baseline.predict_proba_one({})[1] < 0.5


def test_mlp_learns_a_separable_rule_with_clipping_replay_and_an_adaptive_rate():
    mlp = TorchMLP(seed=1, features=("a", "b"), train_every=8, patience=5, replay_size=512)
    rng = random.Random(0)
    hits = 0
    for i in range(3000):
        x = {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)}
        y = int(x["a"] + 0.5 * x["b"] > 0)
        if i >= 2500:
            hits += (mlp.predict_proba_one(x)[1] > 0.5) == y
        mlp.learn_one(x, y)
    assert hits / 500 > 0.9
    assert mlp.filled == 512 and mlp.steps == 3000 // 8
    assert mlp.learning_rate < mlp.initial_lr  # the loss plateaued: the rate came down
    mlp.raise_learning_rate()
    assert mlp.learning_rate == mlp.initial_lr


class TextbookMLP(TorchMLP):
    """The same member trained the textbook way: the Sequential network called as a module, torch's
    default (per-tensor) Adam, ``BCEWithLogitsLoss`` and ``clip_grad_norm_``. The member's own step
    leaves out their per-call overhead and must not change a single weight."""

    def __init__(self, **kwargs):
        import torch

        super().__init__(**kwargs)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.initial_lr)

    def _train(self) -> None:
        import torch

        inputs, targets, _ = self._batch()
        self.net.train()
        loss = torch.nn.BCEWithLogitsLoss()(self.net(inputs), targets)
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
        self.optimizer.step()
        self.net.eval()
        self._stepped(float(loss.detach()))


def test_the_mlp_step_equals_the_textbook_torch_step_bit_for_bit_also_after_a_checkpoint():
    from streams import snapshots

    features = ("a", "b", "c")
    fast, textbook = TorchMLP(seed=3, features=features, clip=0.05), TextbookMLP(seed=3, features=features, clip=0.05)
    rng = random.Random(1)
    for i in range(1200):
        x = {"a": rng.gauss(0, 1), "b": rng.gauss(0, 3), "c": rng.gauss(1, 1)}
        y = int(x["a"] - x["b"] * x["c"] > 0)
        fast.learn_one(x, y)
        textbook.learn_one(x, y)
        if i == 600:
            fast = snapshots.loads(snapshots.dumps(fast))
    assert fast.steps == textbook.steps == 150
    for mine, reference in zip(fast.weights, textbook.weights, strict=True):
        assert np.array_equal(mine, reference)
    assert fast.learning_rate == textbook.learning_rate


def test_make_member_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown member 'nope'"):
        make_member("nope")


def test_the_settings_know_every_member_and_no_other():
    """agents.sections checks LIVELEARN_MEMBERS at start without importing the models: its list must
    stay the models' own."""
    from agents.sections import MEMBERS
    from streams.models import MEMBER_NAMES

    assert set(MEMBERS) == {"persistence", *MEMBER_NAMES}
    for name in MEMBERS:
        make_member(name)


@pytest.mark.parametrize("name", ["logreg@0.05", "logreg@1e-3", "logreg@", "logreg@x", "logreg@0", "logreg@-0.1",
                                  "logreg@nan", "logreg@inf", "mlp@0.1", "hat@0.1", "nope"])
def test_the_settings_accept_a_member_exactly_when_the_models_can_make_it(name):
    from agents.sections import _members

    try:
        make_member(name)
        made = True
    except ValueError:
        made = False
    try:
        _members(name)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == made, name
    assert made == (name in ("logreg@0.05", "logreg@1e-3"))


def test_dataset_rows_without_a_label_or_with_bad_values_are_rejected(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,y\n1,2,1\n1,x,0\n3,4,\n5,6,maybe\n7,8,0\n")
    out = list(labelled_vectors(str(path)))
    assert [r["values"] if r else None for r, _, _ in out] == [{"a": 1.0, "b": 2.0}, None, None, None,
                                                              {"a": 7.0, "b": 8.0}]
    reasons = [reason for r, reason, _ in out if r is None]
    assert "row 2" in reasons[0] and "row 3: no label" in reasons[1] and "not binary" in reasons[2]
    assert [r["tick_index"] for r, _, _ in out if r] == [1, 2]

    # A multi-class dataset: its first label ends the run with one error, instead of a dead letter and
    # a line for each of its rows.
    path.write_text("a,b,y\n1,,0\n1,2,3\n1,2,1\n")
    rows = labelled_vectors(str(path))
    assert next(rows)[1].startswith("row 1: could not convert")
    with pytest.raises(RowError, match="row 2: label '3' is not binary; name the positive class .*; no vector was sent"):
        next(rows)
    # A text column (a carrier's code): one error naming it, before any vector; --drop leaves it out.
    path.write_text("a,carrier,y\n1,CO,0\n2,US,1\n")
    with pytest.raises(RowError, match=r"row 1: column carrier is not a number \('CO'\): leave it out with --drop carrier"):
        list(labelled_vectors(str(path)))
    assert [r["values"] for r, _, _ in labelled_vectors(str(path), drop=("carrier",))] == [{"a": 1.0}, {"a": 2.0}]


def test_return_mae_uses_the_implied_return_and_the_recent_typical_move():
    score = MemberScore()
    score.add(0.75, 1, 0.02, typical_move=0.01)  # implied +0.005, realised +0.02
    score.add(0.5, 0, -0.01, typical_move=0.01)  # implied 0, realised -0.01
    assert score.summary()["return_mae"] == pytest.approx((0.015 + 0.01) / 2)
    assert score.summary()["captured_return"] == pytest.approx((0.02 + 0.01) / 2)
    learner = learner_of(members=("logreg",), horizon_ticks=1)
    learner.process(vector(1, 100.0))
    learner.process(vector(2, 101.0))
    learner.process(vector(3, 99.99))
    assert learner.typical_move == pytest.approx((0.01 + abs(99.99 / 101.0 - 1)) / 2)
    assert learner.performance()["ensemble"]["return_mae"] is not None


def test_the_settings_offer_exactly_the_ensembles_starting_weights():
    """agents.sections lists LIVELEARN_ENSEMBLE_START's choices without importing the ensemble (the
    reason given for MEMBERS above): its list must stay auto plus streams.ensemble.START's keys."""
    from dataclasses import fields

    from agents.sections import LearningSection
    from streams.ensemble import START

    field = next(f for f in fields(LearningSection) if f.name == "ensemble_start")
    assert field.metadata["choices"] == ("auto", *START)


def test_outcomes_that_mature_together_count_once_in_the_running_prior():
    """39 forecasts waiting for the next change of the price all mature, up, when it comes: one
    event's evidence, not forty (the futures capture's CTKUSDT: after 37 such "up"s the prior leaned to
    0.74 and the next 73 forecasts, resolved down at once, were scored against it)."""
    learner = learner_of(label="next_change")
    for i in range(40):
        learner.process(vector(i, 100.0))
    step = learner.process(vector(40, 101.0))
    labels = [o["label"] for o in step.outcomes]
    assert len(labels) == 39 and set(labels) == {1}  # the first vector is not predicted on
    assert step.prediction["member_probabilities"]["prior"] == pytest.approx((1 + 20) / (1 + 40))
    step = learner.process(vector(41, 100.0))
    assert [o["label"] for o in step.outcomes] == [0]
    assert step.prediction["member_probabilities"]["prior"] == pytest.approx(0.5)


def test_the_skill_blocks_grow_with_how_far_outcomes_lag_their_forecasts():
    """A horizon in seconds at fast ticks leaves ~100 forecasts outstanding: blocks of 20 outcomes
    would be far from independent and the published interval too narrow (the BTCUSDT capture one
    second ahead: [+0.211, +0.312] in the performance record against `livelearn evaluate`'s [+0.167,
    +0.356]). The blocks grow to at least four times the mean lag; a horizon in ticks keeps 4 H."""
    rng = random.Random(3)
    seconds = SymbolLearner("S", LearnerConfig(horizon_seconds=1.0))
    ticks = SymbolLearner("S", LearnerConfig(horizon_ticks=5))
    price = 100.0
    for i in range(1, 1500):
        price *= 1.0 + rng.gauss(0.0, 1e-4)
        record = {**vector(i, price), "event_time_ms": 10 * i}
        seconds.process(record)
        ticks.process(vector(i, price))
    assert seconds.lag_sum / seconds.lags == pytest.approx(100, abs=1)
    assert seconds.blocks.block >= 400
    assert ticks.blocks.block == 20


def test_members_take_forecasts_of_one_price_move_as_one_sample():
    """At the next change of the mid, every forecast made since the last change resolves at once with
    the same label: plain SGD took one step per forecast, so a long quiet spell pushed the members far
    one way (the BTCUSDT capture's logistic member: log-loss 0.87, worse than a coin). Forecasts made
    at one price and resolved at one vector are one realised move; each weighs ``1 / k`` (River's
    sample weight). Forecasts resolved together from different prices (a horizon in seconds) are
    different moves, each weighed within its own group."""
    from river import compose, linear_model, optim, preprocessing

    def reference():
        return compose.Pipeline(preprocessing.StandardScaler(),
                                linear_model.LogisticRegression(optimizer=optim.SGD(0.005)))

    def logreg(learner):
        return learner.variants["default"].members["logreg"].member.model

    learner, river = learner_of(members=("logreg",), label="next_change"), reference()
    rng = random.Random(5)
    xs = [{"ret_1": rng.gauss(0.0, 1.0)} for _ in range(41)]
    for i in range(40):
        learner.process(vector(i, 100.0, xs[i]))
    learner.process(vector(40, 101.0, xs[40]))
    for i in range(1, 40):  # the first vector is not predicted on
        river.learn_one(xs[i], 1, w=1.0 / 39)
    assert logreg(learner).predict_proba_one(xs[0]) == river.predict_proba_one(xs[0])

    learner, river = learner_of(members=("logreg",), horizon_seconds=2.0), reference()
    prices = [100.0, 100.0, 101.0, 101.0, 102.0]  # a vector a second, then one eight seconds later
    for i, price in enumerate(prices):
        learner.process({**vector(i, price, xs[i]), "event_time_ms": 1000 * i + (6000 if i == 4 else 0)})
    # Forecasts 1-3 (not the first vector's) resolve, up, at the last: one move from 100.0, two from 101.0.
    for i, weight in ((1, 1.0), (2, 0.5), (3, 0.5)):
        river.learn_one(xs[i], 1, w=weight)
    assert logreg(learner).predict_proba_one(xs[0]) == river.predict_proba_one(xs[0])


def test_the_mlp_weighs_a_burst_of_one_price_move_as_one_sample():
    """Eight samples of one price move at weight 1/8 move the network less toward their label than
    the same eight at weight 1; a checkpoint written before sample weights (no ``buffer_w``) learns on."""
    from streams import snapshots

    rng = random.Random(2)
    plain, weighted = TorchMLP(seed=4, features=("a",)), TorchMLP(seed=4, features=("a",))
    for _ in range(64):
        x, y = {"a": rng.gauss(0, 1)}, rng.random() < 0.5
        plain.learn_one(x, int(y))
        weighted.learn_one(x, int(y))
    assert plain.predict_proba_one({"a": 0.3}) == weighted.predict_proba_one({"a": 0.3})
    for i in range(8):
        plain.learn_one({"a": 0.3 + 0.01 * i}, 1)
        weighted.learn_one({"a": 0.3 + 0.01 * i}, 1, 1 / 8)
    assert plain.predict_proba_one({"a": 0.3})[1] > weighted.predict_proba_one({"a": 0.3})[1]
    state = weighted.__getstate__()
    del state["buffer_w"]
    restored = TorchMLP.__new__(TorchMLP)
    restored.__setstate__(state)
    assert (restored.buffer_w == 1.0).all()
    for _ in range(8):
        restored.learn_one({"a": 0.3}, 1, 0.5)
    assert restored.buffer_w[restored.position - 1] == 0.5 and restored.steps == weighted.steps + 1
    assert snapshots.loads(snapshots.dumps(restored)).buffer_w[restored.position - 1] == 0.5


def test_the_rule_members_are_the_references_as_experts_and_left_out_where_they_cannot_read():
    """``side`` and ``imbalance`` serve the mixture the trade-side and queue-imbalance rules, so its
    guarantee against its best expert covers them. On the shipped BTCUSDT capture (forecasts at trades,
    five ahead: every outcome one price move, so the members learn each with weight 1) the ``side``
    member says what the ``trade_side`` reference says at every prediction, and both rules carry weight
    in the mixture. A labelled dataset has neither input: there they are left out, not kept at 0.5."""
    from agents.app import pipeline_config
    from agents.settings import Settings
    from connectors.recorded import read_file
    from streams.pipeline import PartitionPipeline
    from tests.conftest import DATA

    config = pipeline_config(Settings())
    assert {"side", "imbalance"} <= set(config.learner.members)
    pipeline = PartitionPipeline(config)
    predictions = []
    for item in read_file(DATA / "binance" / "ws" / "spot_btcusdt_20240808.gz")[:12000]:
        if item.tick is not None:
            predictions += [o.record for o in pipeline.on_tick(item.tick).records if o.stage == "predictions"]
    assert len(predictions) > 1500
    sides = [(p["member_probabilities"]["side"], p["member_probabilities"]["trade_side"]) for p in predictions]
    assert all(member == reference for member, reference in sides)
    assert len({member for member, _ in sides}) > 10  # it learned a hit rate, not a constant
    assert len({p["member_probabilities"]["imbalance"] for p in predictions}) > 100
    weights = predictions[-1]["member_weights"]
    assert {"side", "side~cal", "imbalance", "imbalance~cal"} <= set(weights)

    dataset = learner_of(model_features=("x1", "x2"), members=("logreg", "side", "imbalance"))
    assert list(dataset.variants["default"].members) == ["logreg"]
    assert {"side", "imbalance"}.isdisjoint(dataset.scores)
    step = dataset.process({**vector(1, 1.0, {"x1": 0.1, "x2": 0.2}), "feature_set": "v1-dataset", "label": 1})
    assert set(step.prediction["member_probabilities"]) == {"logreg", "persistence", "trade_side", "prior"}


def test_the_mlp_scales_its_inputs_as_the_masked_textbook_formulas_do_bit_for_bit():
    """The fast paths of ``TorchMLP`` (in-place maximum/minimum for np.clip, an unmasked update of the
    running moments when no input is missing) give the textbook formulas' bits, with missing, infinite
    and negative-zero inputs among ordinary ones."""
    features = ("a", "b", "c", "d")
    mlp = TorchMLP(seed=0, features=features)
    count, mean, m2 = np.zeros(4), np.zeros(4), np.zeros(4)
    rng = random.Random(5)
    specials = (float("nan"), float("inf"), -float("inf"), -0.0, 1e300)
    for i in range(400):
        x = {name: rng.gauss(0.0, 1.0 + i / 100) for name in features}
        if i % 7 == 3:
            x[rng.choice(features)] = rng.choice(specials)
        if i % 11 == 5:
            del x[rng.choice(features)]
        row = np.array([x.get(name, np.nan) for name in features])
        seen = ~np.isnan(row)
        count += seen
        with np.errstate(over="ignore", invalid="ignore"):
            delta = np.where(seen, row - mean, 0.0)
            mean += np.where(seen, delta / np.maximum(count, 1), 0.0)
            m2 += np.where(seen, delta * (row - mean), 0.0)
            mlp.learn_one(x, int(i % 3 == 0))
            assert mlp.mean.tobytes() == mean.tobytes() and mlp.m2.tobytes() == m2.tobytes()
            sd = np.sqrt(np.where(count > 1, m2 / np.maximum(count - 1, 1), 1.0))
            sd = np.where(sd > 0, sd, 1.0)
            rows = np.array([[rng.choice((*specials, rng.gauss(0.0, 5.0))) for _ in features] for _ in range(3)])
            expected = np.clip((rows - mean) / sd, -5.0, 5.0)
            expected[np.isnan(expected)] = 0.0
            assert mlp._standardise(rows).tobytes() == expected.tobytes()
