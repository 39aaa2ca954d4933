"""Predict, wait for the outcome, learn: the per-symbol online learner and its ensemble.

Test-then-train with delay. For the feature vector of tick ``t`` the learner first learns from every
vector whose horizon has now passed (tick ``t - H`` and older), then predicts on ``t``. So a prediction
never sees its own label, and a replay of the same ticks gives the same predictions every time.

Outcome of the vector at tick ``t`` (``H`` = ``horizon_ticks``): ``r = p_{t+H} / p_t - 1``; label 1 if
``r > flat_band``, 0 if ``r < -flat_band``, otherwise "flat" (label ``None``: published, not learned).
With ``horizon_seconds`` instead, the outcome is measured at the first vector whose event time is at
least that many seconds after ``t`` (its price is ``p_{t+H}``). A vector that carries its own ``label`` (a labelled dataset replayed through the pipeline) is learned
with that label, revealed at the same moment (``H`` vectors later): this is River's
``progressive_val_score(..., delay=H)`` order exactly. A probability of exactly 0.5 predicts "down",
as River's ``predict_one`` does for ``{False: 0.5, True: 0.5}``.

Ensemble weights (documented formula). Each member ``m`` keeps an exponentially weighted log-loss
``L_m <- L_m + (loss - L_m) / half_life_events`` (starting at ln 2). Weights are
``w_m ∝ exp(-eta * (L_m - min_k L_k)) * (penalty if L_m > L_persistence else 1)``; the ensemble's
probability is ``sum_m w_m p_m`` and its confidence ``1 - 2 * sum_m w_m |p_m - p|`` (1 when members
agree, towards 0 when they split). The persistence baseline runs beside the members and is scored the
same way but is not in the ensemble. With ``regime_weights`` the losses are also kept per market
regime (see :class:`Regimes`) and a regime with at least ``min_regime_events`` labels uses its own.

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
import zlib
from collections import OrderedDict, deque
from typing import Any

from streams.features import MODEL_FEATURES
from streams.guard import GuardedMember
from streams.models import clip_probability, make_member
from streams.variants import VariantPolicy, brier

LN2 = math.log(2.0)
# Feedback sources the predict stage produces itself and has already learned in line.
IN_LINE_SOURCES = frozenset({"market", "dataset"})


def log_loss(p_up: float, y: int) -> float:
    """Log-loss for ensemble weights: clipped at 1e-6 so one confident miss cannot erase a member."""
    p = clip_probability(p_up if y == 1 else 1.0 - p_up, 1e-6)
    return -math.log(p)


def reported_log_loss(p_up: float, y: int) -> float:
    """Log-loss as reported (River's ``metrics.LogLoss``: probabilities clamped to [1e-15, 1 - 1e-15])."""
    p_up = min(max(p_up, 1e-15), 1.0 - 1e-15)
    return -math.log(p_up if y == 1 else 1.0 - p_up)


class InvalidVector(ValueError):
    """A feature vector with a non-finite value: never predicted on, never learned."""


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
        hit = int((p_up > 0.5) == (y == 1))
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


class MemberScore(RollingScore):
    """Rolling scores plus cumulative ones since the model started (what a performance record reports).

    Cumulative accuracy and log-loss follow River's ``metrics.Accuracy`` and ``metrics.LogLoss``; the
    Brier score measures calibration; ``captured_return`` is the mean realised return of taking the
    predicted direction (long when up, short when down), over outcomes that have a return.
    ``return_mae`` is the mean absolute error of the return a probability implies,
    ``(2 p - 1) * typical_move`` (``typical_move``: the symbol's recent mean absolute realised return,
    passed in by the learner), against the realised return.
    """

    __slots__ = ("total", "total_hits", "total_loss", "total_brier", "captured", "captured_n", "abs_error")

    def __init__(self, window: int = 500):
        super().__init__(window)
        self.total = self.total_hits = self.captured_n = 0
        self.total_loss = self.total_brier = self.captured = self.abs_error = 0.0

    def add(self, p_up: float, y: int, realised_return: float | None = None, typical_move: float = 0.0) -> float:
        self.total += 1
        up = p_up > 0.5
        self.total_hits += up == (y == 1)
        self.total_loss += reported_log_loss(p_up, y)
        self.total_brier += (p_up - y) ** 2
        if realised_return is not None:
            self.captured += realised_return if up else -realised_return
            self.abs_error += abs((2.0 * p_up - 1.0) * typical_move - realised_return)
            self.captured_n += 1
        return super().add(p_up, y)

    def summary(self) -> dict[str, Any]:
        n = self.total
        return {
            "n": n,
            "accuracy": self.total_hits / n if n else None,
            "log_loss": self.total_loss / n if n else None,
            "brier": self.total_brier / n if n else None,
            "rolling_accuracy": self.accuracy if self.hits else None,
            "rolling_log_loss": self.log_loss if self.hits else None,
            "captured_return": self.captured / self.captured_n if self.captured_n else None,
            "return_mae": self.abs_error / self.captured_n if self.captured_n else None,
        }


class Regimes:
    """Market regime of a feature vector: ``volatile``, ``trending``, ``ranging`` or ``unknown``.

    Volatile: ``volatility_20`` above 1.5x its exponentially weighted average (half-life ~500 vectors).
    Trending: otherwise, a 20-tick move ``|ret_20|`` beyond one standard deviation of a random walk's
    20-step move (``volatility_20 * sqrt(20)``). Ranging: the rest. Unknown: those features not ready.
    """

    __slots__ = ("average", "rate")

    def __init__(self, rate: float = 1.0 / 500.0):
        self.average: float | None = None
        self.rate = rate

    def classify(self, x: dict[str, float]) -> str:
        volatility = x.get("volatility_20")
        move = x.get("ret_20")
        if volatility is None or move is None:
            return "unknown"
        if self.average is None:
            self.average = volatility
        else:
            self.average += (volatility - self.average) * self.rate
        if volatility > 1.5 * self.average:
            return "volatile"
        if abs(move) > volatility * 4.47213595499958:
            return "trending"
        return "ranging"


class Ensemble:
    """Members weighted by their recent log-loss (see the module docstring for the formula)."""

    def __init__(self, members: dict[str, Any], baseline: Any, eta: float = 20.0, half_life_events: int = 200,
                 baseline_penalty: float = 0.25, regime_weights: bool = False, min_regime_events: int = 100,
                 guard: bool = False):
        self.guard = guard
        self.members = {name: GuardedMember(m) for name, m in members.items()} if guard else members
        self.baseline = baseline
        self.eta, self.half_life, self.penalty = eta, half_life_events, baseline_penalty
        self.loss = {name: LN2 for name in members}
        self.baseline_loss = LN2
        self.regimes = Regimes() if regime_weights else None
        self.min_regime_events = min_regime_events
        self.regime_loss: dict[str, dict[str, float]] = {}
        self.regime_baseline: dict[str, float] = {}
        self.regime_n: dict[str, int] = {}

    def regime(self, x: dict[str, float]) -> str:
        return self.regimes.classify(x) if self.regimes is not None else "all"

    def weights(self, regime: str = "all") -> dict[str, float]:
        loss, baseline_loss = self.loss, self.baseline_loss
        if self.regime_n.get(regime, 0) >= self.min_regime_events:
            loss, baseline_loss = self.regime_loss[regime], self.regime_baseline[regime]
        best = min(loss.values())
        raw = {}
        for name, value in loss.items():
            w = math.exp(-self.eta * (value - best))
            if value > baseline_loss:
                w *= self.penalty
            raw[name] = w
        total = sum(raw.values())
        return {name: w / total for name, w in raw.items()}

    def predict(self, x: dict[str, float], regime: str = "all"
                ) -> tuple[float, float, dict[str, float], dict[str, float], float]:
        """(p_up, confidence, member probabilities, weights, baseline p_up)."""
        probabilities = {name: m.predict_proba_one(x)[1] for name, m in self.members.items()}
        weights = self.weights(regime)
        p = sum(weights[name] * probabilities[name] for name in probabilities)
        spread = sum(weights[name] * abs(probabilities[name] - p) for name in probabilities)
        confidence = max(0.0, min(1.0, 1.0 - 2.0 * spread))
        return p, confidence, probabilities, weights, self.baseline.predict_proba_one(x)[1]

    def learn(self, x: dict[str, float], y: int, probabilities: dict[str, float], baseline_p: float,
              regime: str = "all") -> None:
        rate = 1.0 / self.half_life
        losses = {name: log_loss(p, y) for name, p in probabilities.items()}
        baseline = log_loss(baseline_p, y)
        for name, member in self.members.items():
            self.loss[name] += (losses[name] - self.loss[name]) * rate
            member.learn_one(x, y)
        self.baseline_loss += (baseline - self.baseline_loss) * rate
        self.baseline.learn_one(x, y)
        if self.regimes is not None:
            if regime not in self.regime_loss:
                self.regime_loss[regime] = {name: LN2 for name in self.members}
                self.regime_baseline[regime] = LN2
                self.regime_n[regime] = 0
            own = self.regime_loss[regime]
            for name in own:
                own[name] += (losses[name] - own[name]) * rate
            self.regime_baseline[regime] += (baseline - self.regime_baseline[regime]) * rate
            self.regime_n[regime] += 1

    def rejections(self) -> list[tuple[str, str]]:
        """Learning steps refused or undone by the guard since the last call."""
        if not self.guard:
            return []
        return [item for member in self.members.values() for item in member.drain()]

    def replace_member(self, name: str, member: Any) -> None:
        self.members[name] = GuardedMember(member) if self.guard else member
        self.reset_loss(name)

    def reset_loss(self, name: str) -> None:
        self.loss[name] = LN2
        for own in self.regime_loss.values():
            own[name] = LN2


class Pending:
    """A prediction waiting for its outcome: everything learning needs, as it was at prediction time."""

    __slots__ = ("prediction_id", "tick_index", "event_time_ms", "price", "x", "probabilities", "p_up",
                 "baseline_p", "label", "regime", "served", "variants")

    def __init__(self, prediction_id, tick_index, event_time_ms, price, x, probabilities, p_up, baseline_p, label,
                 regime, served="default", variants=None):
        self.prediction_id, self.tick_index, self.event_time_ms, self.price = (
            prediction_id, tick_index, event_time_ms, price)
        self.x, self.probabilities, self.p_up, self.baseline_p = x, probabilities, p_up, baseline_p
        self.label, self.regime = label, regime
        # Variant that served this prediction, and (p_up, member probabilities, baseline p) of every
        # variant when challengers run (None without challengers).
        self.served, self.variants = served, variants


class SymbolLearner:
    """Ensemble, pending predictions and scores of one symbol."""

    def __init__(self, symbol: str, members: tuple[str, ...] = ("logreg", "mlp"), horizon_ticks: int = 5,
                 flat_band: float = 0.0, seed: int = 42, model_id: str = "ensemble", keep_issued: int = 2_000,
                 device: str = "cpu", model_features: tuple[str, ...] = MODEL_FEATURES,
                 regime_weights: bool = False, horizon_seconds: float = 0.0,
                 challengers: dict[str, tuple[str, ...]] | None = None, traffic_share: float = 0.0,
                 promotion_alpha: float = 0.01, promotion_min_samples: int = 200, rollback_margin: float = 0.02,
                 rollback_threshold: float = 10_000.0, guard: bool = True):
        if horizon_ticks < 1:
            raise ValueError("horizon_ticks must be >= 1")
        if horizon_seconds < 0:
            raise ValueError("horizon_seconds must be >= 0")
        if flat_band < 0:
            raise ValueError("flat_band must be >= 0")
        self.symbol = symbol
        self.member_names = tuple(members)
        self.horizon = horizon_ticks
        self.horizon_ms = int(round(horizon_seconds * 1000))
        self.flat_band = flat_band
        self.seed = seed
        self.model_id = model_id
        self.device = device
        self.model_features = tuple(model_features)
        self.version = 1
        self.regime_weights, self.guard = regime_weights, guard
        self.variants = {"default": self._ensemble(tuple(members))}
        for name, variant_members in (challengers or {}).items():
            if name == "default":
                raise ValueError("'default' is the name of the configured ensemble; name challengers otherwise")
            self.variants[name] = self._ensemble(tuple(variant_members))
        self.policy = (VariantPolicy("default", list(challengers), promotion_alpha, promotion_min_samples,
                                     rollback_margin, rollback_threshold) if challengers else None)
        if not 0.0 <= traffic_share <= 1.0:
            raise ValueError("traffic_share must be in [0, 1]")
        self.traffic_share = traffic_share
        self.events: list[dict[str, Any]] = []  # model events (promotions, rollbacks, refused updates) to publish
        self.shadow: dict[str, tuple] = {}  # last prediction of every variant that did not serve it
        self.pending: deque[Pending] = deque()
        self.issued: OrderedDict[str, Pending] = OrderedDict()
        self.keep_issued = keep_issued
        self.matured_losses: list[float] = []  # ensemble log-loss of each outcome learned in the last call
        self.last_tick_index = 0
        self.typical_move, self.moves_seen = 0.0, 0  # mean |realised return| (last ~500 outcomes)
        self.scores = {name: MemberScore() for name in (*members, "ensemble", "persistence")}
        if self.policy is not None:
            for name in self.variants:
                self.scores[f"variant:{name}"] = MemberScore()

    def _ensemble(self, members: tuple[str, ...]) -> Ensemble:
        return Ensemble({name: make_member(name, self.seed, self.device, self.model_features) for name in members},
                        make_member("persistence"), regime_weights=self.regime_weights, guard=self.guard)

    @property
    def champion(self) -> str:
        return self.policy.champion if self.policy is not None else "default"

    @property
    def ensemble(self) -> Ensemble:
        """The champion's ensemble (the one whose predictions are published)."""
        return self.variants[self.champion]

    def probability_up(self, x: dict[str, float]) -> float:
        """The champion ensemble's probability for the features ``x``, as the models are now (no
        side effects: nothing is issued, nothing learned)."""
        ensemble = self.ensemble
        return ensemble.predict(x, ensemble.regime(x))[0]

    def serving(self, prediction_id: str) -> str:
        """Variant that serves a prediction: the champion, or a challenger for a deterministic share."""
        if self.traffic_share <= 0.0 or self.policy is None:
            return self.champion
        if zlib.crc32(prediction_id.encode()) % 10_000 < self.traffic_share * 10_000:
            others = [name for name in self.variants if name != self.champion]
            return others[zlib.crc32(prediction_id.encode()[::-1]) % len(others)]
        return self.champion

    def process(self, features: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """Learn from matured outcomes, then predict. Returns (prediction record, feedback records).

        A vector whose tick index is not above the last one applied is a duplicate (at-least-once
        delivery republishes some after a restart): it changes nothing and returns ``(None, [])``.
        A vector with a NaN or infinite value raises :class:`InvalidVector` and changes nothing.
        """
        if features["tick_index"] <= self.last_tick_index:
            self.matured_losses.clear()
            return None, []
        for name, value in features["values"].items():
            if not math.isfinite(value):
                raise InvalidVector(f"feature {name} of {self.symbol} tick {features['tick_index']} is {value!r}")
        self.last_tick_index = features["tick_index"]
        outcomes = self._mature(features)
        return self._predict(features), outcomes

    def _mature(self, features: dict[str, Any]) -> list[dict[str, Any]]:
        outcomes = []
        self.matured_losses.clear()
        now_index, price, now_ms = features["tick_index"], features["price"], features["event_time_ms"]
        pending = self.pending
        by_time = self.horizon_ms > 0
        limit = now_ms - self.horizon_ms if by_time else now_index - self.horizon
        while pending and (pending[0].event_time_ms if by_time else pending[0].tick_index) <= limit:
            item = pending.popleft()
            if item.label is not None:
                label, realised = item.label, None
            else:
                realised = price / item.price - 1.0
                label = 1 if realised > self.flat_band else 0 if realised < -self.flat_band else None
            if label is not None:
                self._learn(item, label, realised)
            outcomes.append({
                "prediction_id": item.prediction_id, "symbol": self.symbol, "event_time_ms": item.event_time_ms,
                "label": label, "realised_return": realised, "score": None,
                "source": "dataset" if item.label is not None else "market", "feedback_time_ms": now_ms,
            })
        return outcomes

    def _learn(self, item: Pending, label: int, realised: float | None = None) -> None:
        scores = self.scores
        move = self.typical_move  # as known before this outcome
        for name, p in item.probabilities.items():
            if name in scores:
                scores[name].add(p, label, realised, move)
        self.matured_losses.append(scores["ensemble"].add(item.p_up, label, realised, move))
        scores["persistence"].add(item.baseline_p, label, realised, move)
        if realised is not None:
            self.typical_move += (abs(realised) - self.typical_move) / min(self.moves_seen + 1, 500)
            self.moves_seen += 1
        if item.variants is None:
            self.ensemble.learn(item.x, label, item.probabilities, item.baseline_p, item.regime)
        else:
            for name, (p_up, probabilities, baseline_p) in item.variants.items():
                scores[f"variant:{name}"].add(p_up, label, realised, move)
                self.variants[name].learn(item.x, label, probabilities, baseline_p, item.regime)
            decision = self.policy.observe({name: brier(out[0], label) for name, out in item.variants.items()})
            if decision is not None:
                kind, variant, evidence = decision
                self.version += 1
                reason = (f"challenger {variant} beat {evidence['replaced']} on {evidence['pairs']} paired outcomes"
                          if kind == "PROMOTION" else
                          f"{evidence['from']} was worse than {variant} by more than {evidence['margin']} (Brier)")
                self._event(kind, variant, reason, evidence, item.event_time_ms)
        if self.guard:
            for name, ensemble in self.variants.items():
                for code, reason in ensemble.rejections():
                    self._event("REJECTED_UPDATE", name, reason, {"check": code}, item.event_time_ms)

    def _event(self, kind: str, variant: str, reason: str, details: dict[str, str], time_ms: int) -> None:
        self.events.append({"kind": kind, "model_id": f"{self.model_id}/{variant}", "version": self.version,
                            "reason": reason, "details": details, "event_time_ms": time_ms})

    def _predict(self, features: dict[str, Any]) -> dict[str, Any]:
        x = features["values"]
        regime = self.ensemble.regime(x)
        pid = f"{self.symbol}-{features['event_time_ms']}-{features['tick_index']}"
        served = self.champion
        variants = None
        if self.policy is None:
            p_up, confidence, probabilities, weights, baseline_p = self.ensemble.predict(x, regime)
        else:
            served = self.serving(pid)
            outputs = {name: ensemble.predict(x, regime) for name, ensemble in self.variants.items()}
            variants = {name: (out[0], out[2], out[4]) for name, out in outputs.items()}
            p_up, confidence, probabilities, weights, baseline_p = outputs[served]
            self.shadow = {name: out for name, out in outputs.items() if name != served}
        item = Pending(pid, features["tick_index"], features["event_time_ms"], features["price"], x, probabilities,
                       p_up, baseline_p, features.get("label"), regime, served, variants)
        self.pending.append(item)
        self.issued[pid] = item
        if len(self.issued) > self.keep_issued:
            self.issued.popitem(last=False)
        return {
            "prediction_id": pid, "symbol": self.symbol, "event_time_ms": features["event_time_ms"],
            "model_id": self.model_id if served == "default" else f"{self.model_id}/{served}",
            "model_version": self.version, "horizon_ticks": self.horizon,
            "probability_up": p_up, "predicted_up": p_up > 0.5, "confidence": confidence,
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
        self._learn(self.issued[pid], int(label), feedback.get("realised_return"))

    def performance(self) -> dict[str, dict[str, Any]]:
        """Cumulative and rolling scores of every member, the ensemble and the persistence baseline."""
        return {name: score.summary() for name, score in self.scores.items()}

    def reset_member(self, name: str) -> None:
        """Re-warm one member of the champion from scratch (drift response)."""
        self.ensemble.replace_member(name, make_member(name, self.seed + self.version, self.device,
                                                       self.model_features))
        self.version += 1

    def drain_events(self) -> list[dict[str, Any]]:
        out, self.events = self.events, []
        return out

    def worst_member(self) -> str:
        return max(self.ensemble.loss, key=self.ensemble.loss.get)
