"""Predict, wait for the outcome, learn: the per-symbol online learner and its ensemble.

Test-then-train with delay. For the feature vector of tick ``t`` the learner first learns from every
vector whose horizon has now passed (tick ``t - H`` and older), then predicts on ``t``. So a prediction
never sees its own label, and a replay of the same ticks gives the same predictions every time.

Outcome of the vector at tick ``t`` (``H`` = ``horizon_ticks``): ``r = p_{t+H} / p_t - 1``; label 1 if
``r > flat_band``, 0 if ``r < -flat_band``, otherwise "flat" (label ``None``: published, not learned).

Ensemble weights (documented formula). Each member ``m`` keeps an exponentially weighted log-loss
``L_m <- L_m + (loss - L_m) / half_life_events`` (starting at ln 2). Weights are
``w_m ∝ exp(-eta * (L_m - min_k L_k)) * (penalty if L_m > L_persistence else 1)``; the ensemble's
probability is ``sum_m w_m p_m`` and its confidence ``1 - 2 * sum_m w_m |p_m - p|`` (1 when members
agree, towards 0 when they split). The persistence baseline runs beside the members and is scored the
same way but is not in the ensemble.

>>> learner = SymbolLearner("BTCUSDT", members=("logreg",), horizon_ticks=1)
>>> v = {"symbol": "BTCUSDT", "event_time_ms": 1, "tick_index": 1, "price": 100.0,
...      "feature_set": "v1-x", "values": {"ret_1": 0.0}, "not_ready": []}
>>> prediction, outcomes = learner.process(v)
>>> prediction["probability_up"], outcomes
(0.5, [])
>>> prediction, outcomes = learner.process({**v, "event_time_ms": 2, "tick_index": 2, "price": 101.0})
>>> outcomes[0]["label"], round(outcomes[0]["realised_return"], 4)
(1, 0.01)
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from typing import Any

from streams.models import clip_probability, make_member

LN2 = math.log(2.0)


def log_loss(p_up: float, y: int) -> float:
    p = clip_probability(p_up if y == 1 else 1.0 - p_up, 1e-6)
    return -math.log(p)


class UnknownPrediction(KeyError):
    """Feedback that refers to a prediction this learner does not hold (never made, or expired)."""


class RollingScore:
    """Accuracy and log-loss over the last ``window`` labelled predictions."""

    __slots__ = ("window", "hits", "losses", "hit_sum", "loss_sum")

    def __init__(self, window: int = 500):
        self.window = window
        self.hits: deque[int] = deque()
        self.losses: deque[float] = deque()
        self.hit_sum = 0
        self.loss_sum = 0.0

    def add(self, p_up: float, y: int) -> float:
        hit = int((p_up >= 0.5) == (y == 1))
        loss = log_loss(p_up, y)
        self.hits.append(hit)
        self.losses.append(loss)
        self.hit_sum += hit
        self.loss_sum += loss
        if len(self.hits) > self.window:
            self.hit_sum -= self.hits.popleft()
            self.loss_sum -= self.losses.popleft()
        return loss

    @property
    def n(self) -> int:
        return len(self.hits)

    @property
    def accuracy(self) -> float:
        return self.hit_sum / len(self.hits) if self.hits else float("nan")

    @property
    def log_loss(self) -> float:
        return self.loss_sum / len(self.losses) if self.losses else float("nan")


class Ensemble:
    """Members weighted by their recent log-loss (see the module docstring for the formula)."""

    def __init__(self, members: dict[str, Any], baseline: Any, eta: float = 20.0, half_life_events: int = 200,
                 baseline_penalty: float = 0.25):
        self.members = members
        self.baseline = baseline
        self.eta, self.half_life, self.penalty = eta, half_life_events, baseline_penalty
        self.loss = {name: LN2 for name in members}
        self.baseline_loss = LN2

    def weights(self) -> dict[str, float]:
        best = min(self.loss.values())
        raw = {}
        for name, loss in self.loss.items():
            w = math.exp(-self.eta * (loss - best))
            if loss > self.baseline_loss:
                w *= self.penalty
            raw[name] = w
        total = sum(raw.values())
        return {name: w / total for name, w in raw.items()}

    def predict(self, x: dict[str, float]) -> tuple[float, float, dict[str, float], dict[str, float], float]:
        """(p_up, confidence, member probabilities, weights, baseline p_up)."""
        probabilities = {name: m.predict_proba_one(x)[1] for name, m in self.members.items()}
        weights = self.weights()
        p = sum(weights[name] * probabilities[name] for name in probabilities)
        spread = sum(weights[name] * abs(probabilities[name] - p) for name in probabilities)
        confidence = max(0.0, min(1.0, 1.0 - 2.0 * spread))
        return p, confidence, probabilities, weights, self.baseline.predict_proba_one(x)[1]

    def learn(self, x: dict[str, float], y: int, probabilities: dict[str, float], baseline_p: float) -> None:
        rate = 1.0 / self.half_life
        for name, member in self.members.items():
            self.loss[name] += (log_loss(probabilities[name], y) - self.loss[name]) * rate
            member.learn_one(x, y)
        self.baseline_loss += (log_loss(baseline_p, y) - self.baseline_loss) * rate
        self.baseline.learn_one(x, y)


class SymbolLearner:
    """Ensemble, pending predictions and scores of one symbol."""

    def __init__(self, symbol: str, members: tuple[str, ...] = ("logreg", "mlp"), horizon_ticks: int = 5,
                 flat_band: float = 0.0, seed: int = 42, model_id: str = "ensemble", keep_issued: int = 2_000,
                 device: str = "cpu"):
        if horizon_ticks < 1:
            raise ValueError("horizon_ticks must be >= 1")
        if flat_band < 0:
            raise ValueError("flat_band must be >= 0")
        self.symbol = symbol
        self.member_names = tuple(members)
        self.horizon = horizon_ticks
        self.flat_band = flat_band
        self.seed = seed
        self.model_id = model_id
        self.device = device
        self.version = 1
        self.ensemble = Ensemble({name: make_member(name, seed, device) for name in members},
                                 make_member("persistence"))
        self.pending: deque[tuple[str, int, int, float, dict, dict, float, float]] = deque()
        self.issued: OrderedDict[str, tuple[dict, dict, float]] = OrderedDict()
        self.keep_issued = keep_issued
        self.matured_losses: list[float] = []
        self.last_tick_index = 0  # ensemble log-loss of each outcome learned in the last call
        self.scores = {name: RollingScore() for name in (*members, "ensemble", "persistence")}

    def process(self, features: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """Learn from matured outcomes, then predict. Returns (prediction record, feedback records).

        A vector whose tick index is not above the last one applied is a duplicate (at-least-once
        delivery republishes some after a restart): it changes nothing and returns ``(None, [])``.
        """
        if features["tick_index"] <= self.last_tick_index:
            self.matured_losses.clear()
            return None, []
        self.last_tick_index = features["tick_index"]
        outcomes = self._mature(features)
        return self._predict(features), outcomes

    def _mature(self, features: dict[str, Any]) -> list[dict[str, Any]]:
        outcomes = []
        self.matured_losses.clear()
        now_index, price, now_ms = features["tick_index"], features["price"], features["event_time_ms"]
        pending = self.pending
        while pending and pending[0][1] <= now_index - self.horizon:
            pid, _, event_ms, then_price, x, probabilities, p_up, baseline_p = pending.popleft()
            realised = price / then_price - 1.0
            label = 1 if realised > self.flat_band else 0 if realised < -self.flat_band else None
            if label is not None:
                self._learn(x, label, probabilities, p_up, baseline_p)
            outcomes.append({
                "prediction_id": pid, "symbol": self.symbol, "event_time_ms": event_ms, "label": label,
                "realised_return": realised, "score": None, "source": "market", "feedback_time_ms": now_ms,
            })
        return outcomes

    def _learn(self, x: dict, label: int, probabilities: dict[str, float], p_up: float, baseline_p: float) -> None:
        for name, p in probabilities.items():
            self.scores[name].add(p, label)
        self.matured_losses.append(self.scores["ensemble"].add(p_up, label))
        self.scores["persistence"].add(baseline_p, label)
        self.ensemble.learn(x, label, probabilities, baseline_p)

    def _predict(self, features: dict[str, Any]) -> dict[str, Any]:
        x = features["values"]
        p_up, confidence, probabilities, weights, baseline_p = self.ensemble.predict(x)
        pid = f"{self.symbol}-{features['event_time_ms']}-{features['tick_index']}"
        self.pending.append((pid, features["tick_index"], features["event_time_ms"], features["price"], x,
                             probabilities, p_up, baseline_p))
        self.issued[pid] = (x, probabilities, baseline_p)
        if len(self.issued) > self.keep_issued:
            self.issued.popitem(last=False)
        return {
            "prediction_id": pid, "symbol": self.symbol, "event_time_ms": features["event_time_ms"],
            "model_id": self.model_id, "model_version": self.version, "horizon_ticks": self.horizon,
            "probability_up": p_up, "predicted_up": p_up >= 0.5, "confidence": confidence,
            "member_probabilities": {**probabilities, "persistence": baseline_p}, "member_weights": weights,
            "feature_set": features["feature_set"], "latency_ms": 0.0,
        }

    def learn_feedback(self, feedback: dict[str, Any]) -> None:
        """External feedback: learn on the features used at prediction time (never later ones)."""
        pid = feedback.get("prediction_id")
        if pid is None or pid not in self.issued:
            raise UnknownPrediction(f"no prediction {pid!r} for {self.symbol} (unknown or expired)")
        label = feedback.get("label")
        if label is None:
            return
        x, probabilities, baseline_p = self.issued[pid]
        p_up = sum(self.ensemble.weights()[n] * p for n, p in probabilities.items())
        self._learn(x, int(label), probabilities, p_up, baseline_p)

    def reset_member(self, name: str) -> None:
        """Re-warm one member from scratch (drift response)."""
        self.ensemble.members[name] = make_member(name, self.seed + self.version, self.device)
        self.ensemble.loss[name] = LN2
        self.version += 1

    def worst_member(self) -> str:
        return max(self.ensemble.loss, key=self.ensemble.loss.get)
