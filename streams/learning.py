"""Predict, wait for the outcome, learn: the per-symbol online learner.

Test-then-train with delay. For the feature vector of tick ``t`` the learner first learns from every
vector whose horizon has now passed, then predicts on ``t``. So a prediction never sees its own label,
and a replay of the same ticks gives the same predictions every time.

Outcomes (:class:`LearnerConfig`). Each vector carries a reference price: the mid price when the
symbol has a book (bid/ask quotes), else the trade or kline price. With ``label="horizon"`` the outcome
of the vector at ``t`` is ``r = p_{t+H} / p_t - 1`` (``H`` = ``horizon_ticks`` vectors later, or the
first vector at least ``horizon_seconds`` later in event time): up if ``r > flat_band``, down if
``r < -flat_band``, otherwise flat (published, counted, not learned). With ``label="next_change"`` it
is the direction of the next change of the reference price (the first later vector whose price
differs; never flat). A vector that carries its own ``label`` (a labelled dataset) is learned with it,
``H`` vectors later: River's ``progressive_val_score(..., delay=H)`` order exactly. Outcomes that
mature at one vector are one event's evidence: the mixture and the running prior weigh each of ``k``
by ``1 / k``; a member weighs each by one over how many were forecast at its price (one realised
move: plain SGD stepped ``k`` times one way after each quiet spell at the next mid change).

Each outcome is also scored for the references (:mod:`streams.references`), with skill and its interval
in :mod:`streams.scoring`; the ensemble is the mixture of :mod:`streams.ensemble`.

>>> learner = SymbolLearner("BTCUSDT", LearnerConfig(members=("logreg",), horizon_ticks=1))
>>> v = {"symbol": "BTCUSDT", "event_time_ms": 1, "tick_index": 1, "price": 100.0,
...      "feature_set": "v1-x", "values": {"ret_1": 0.0}, "not_ready": []}
>>> step = learner.process(v)
>>> round(step.prediction["probability_up"], 3), step.outcomes
(0.5, [])
>>> step = learner.process({**v, "event_time_ms": 2, "tick_index": 2, "price": 101.0})
>>> step.outcomes[0]["label"], round(step.outcomes[0]["realised_return"], 4)
(1, 0.01)
"""

from __future__ import annotations

import math
import zlib
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from streams.ensemble import START, Forecast, Variant
from streams.external import check_feedback, vector_problem
from streams.features import MODEL_FEATURES
from streams.issued import IssuedPredictions, prediction_id
from streams.models import make_member, usable
from streams.references import Persistence, TradeSide
from streams.scoring import BlockedScores, MemberScore, brier, log_loss
from streams.variants import VariantPolicy

LABELS = ("horizon", "next_change")
REFERENCES = ("persistence", "trade_side", "prior", "constant")
# Feedback sources the predict stage produces itself and has already learned in line.
IN_LINE_SOURCES = frozenset({"market", "dataset"})


class InvalidVector(ValueError):
    """A vector never to predict on or learn from (streams.external.vector_problem)."""


class UnknownPrediction(KeyError):
    """Feedback that refers to a prediction this learner does not hold (never made, or expired)."""


@dataclass(frozen=True)
class LearnerConfig:
    """Everything a learner is built from (one object, validated once)."""

    members: tuple[str, ...] = ("logreg", "mlp", "micro", "side", "imbalance")
    horizon_ticks: int = 5
    horizon_seconds: float = 0.0
    label: str = "horizon"
    flat_band: float = 0.0
    seed: int = 42
    model_id: str = "ensemble"
    keep_issued: int = 2_000
    device: str = "cpu"
    regime_weights: bool = False
    challengers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    traffic_share: float = 0.0
    promotion_alpha: float = 0.01
    promotion_min_samples: int = 200
    rollback_margin: float = 0.02
    rollback_threshold: float = 10_000.0
    guard: bool = True
    share: float = 1e-4
    ensemble_start: str = "auto"  # streams.ensemble.START: "auto" = "datasets" for a labelled dataset
    skill_gate_alpha: float = 0.01  # streams.skill_gate, on market starts only; 0 = off

    def __post_init__(self):
        for name, low in (("horizon_ticks", 1), ("horizon_seconds", 0), ("flat_band", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}")
        if self.label not in LABELS:
            raise ValueError(f"label must be one of {', '.join(LABELS)}")
        if not 0.0 <= self.traffic_share <= 1.0:
            raise ValueError("traffic_share must be in [0, 1]")
        if self.ensemble_start not in ("auto", *START):
            raise ValueError(f"ensemble_start must be auto or one of {', '.join(START)}")
        if not 0.0 <= self.skill_gate_alpha < 1.0:
            raise ValueError("skill_gate_alpha must be 0 (off) or in (0, 1)")
        if any(name == "default" for name, _ in self.challengers):
            raise ValueError("'default' is the name of the configured ensemble; name challengers otherwise")


@dataclass
class LearnerStep:
    """What one vector did: the prediction to publish (None for a duplicate), the outcomes that matured
    (feedback records), the ensemble's log-loss on each learned one (with its inputs and label), the
    forecasts of the variants that did not serve, and the model events decided while learning."""

    prediction: dict[str, Any] | None
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    matured_losses: list[tuple[float, dict[str, float], int]] = field(default_factory=list)
    shadow: dict[str, Forecast] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)


class Pending:
    """A prediction waiting for its outcome: everything learning needs, as it was at prediction time."""

    __slots__ = ("prediction_id", "tick_index", "event_time_ms", "price", "x", "label", "regime", "served",
                 "forecasts", "references")

    def __init__(self, prediction_id, tick_index, event_time_ms, price, x, label, regime, served, forecasts,
                 references):
        self.prediction_id, self.tick_index = prediction_id, tick_index
        self.event_time_ms, self.price = event_time_ms, price
        self.x, self.label, self.regime, self.served = x, label, regime, served
        self.forecasts: dict[str, Forecast] = forecasts  # every variant's, by name
        self.references: dict[str, float] = references  # P(up) of each reference at prediction time


class SymbolLearner:
    """Variants (the configured ensemble and challengers), pending predictions and scores of one symbol."""

    def __init__(self, symbol: str, config: LearnerConfig | None = None,
                 model_features: tuple[str, ...] = MODEL_FEATURES, dataset: bool = False):
        config = config or LearnerConfig()
        self.symbol, self.config = symbol, config
        self.model_features = tuple(model_features)
        start = config.ensemble_start if config.ensemble_start != "auto" else "datasets" if dataset else "markets"
        self.start = START[start]
        self.model_id = config.model_id
        self.horizon_ms = int(round(config.horizon_seconds * 1000))
        self.version = 1
        challengers = dict(config.challengers)
        self.variants = {"default": self._variant(config.members)}
        for name, members in challengers.items():
            self.variants[name] = self._variant(members)
        self.policy = (VariantPolicy("default", list(challengers), config.promotion_alpha, config.promotion_min_samples,
                                     config.rollback_margin, config.rollback_threshold) if challengers else None)
        self.persistence, self.trade_side = Persistence(), TradeSide()
        self.pending: deque[Pending] = deque()
        self.issued = IssuedPredictions(config.keep_issued)
        self.last_tick_index, self.typical_move, self.moves_seen = 0, 0.0, 0  # typical: mean |return|, ~500 last
        self.outcomes = self.flat = 0
        members = usable(config.members, self.model_features)  # those its vectors can serve
        names = (*members, "ensemble", *REFERENCES)
        self.scores = {name: MemberScore() for name in names}
        if self.policy is not None:
            for name in self.variants:
                self.scores[f"variant:{name}"] = MemberScore()
        skilled = ("ensemble", *members)
        self.blocks = BlockedScores((*skilled, "prior", "constant"), block=max(20, 4 * config.horizon_ticks))
        # Vectors between a forecast and its outcome, summed, and their count: blocks of four mean lags.
        self.lag_sum, self.lags = 0, 0
        self._step: LearnerStep | None = None

    def _variant(self, members: tuple[str, ...]) -> Variant:
        config = self.config
        return Variant({name: make_member(name, config.seed, config.device, self.model_features)
                        for name in usable(members, self.model_features)},
                       guard=config.guard, regime_weights=config.regime_weights, share=config.share,
                       start=self.__dict__.get("start", START["markets"]), gate_alpha=config.skill_gate_alpha or None)

    @property
    def champion(self) -> str:
        return self.policy.champion if self.policy is not None else "default"

    @property
    def ensemble(self) -> Variant:
        """The champion (the variant whose predictions are published)."""
        return self.variants[self.champion]

    def probability_up(self, x: dict[str, float]) -> float:
        """The champion's probability for the features ``x``, as the models are now (no side effects:
        nothing is issued, nothing learned)."""
        ensemble = self.ensemble
        return ensemble.forecast(x, ensemble.regime(x, update=False), reserve=False).p_up

    def loss_now(self, outcome: tuple[dict[str, float], int]) -> float:
        """The champion's log-loss, as the models are now, on an outcome's ``(inputs, label)`` (what the
        concept channel re-scores its windows with; no side effects)."""
        return log_loss(self.probability_up(outcome[0]), outcome[1])

    def serving(self, prediction_id: str) -> str:
        """Variant that serves a prediction: the champion, or a challenger for a deterministic share."""
        if self.config.traffic_share <= 0.0 or self.policy is None:
            return self.champion
        if zlib.crc32(prediction_id.encode()) % 10_000 < self.config.traffic_share * 10_000:
            others = [name for name in self.variants if name != self.champion]
            return others[zlib.crc32(prediction_id.encode()[::-1]) % len(others)]
        return self.champion

    def process(self, features: dict[str, Any]) -> LearnerStep:
        """Learn from matured outcomes, then predict.

        A vector whose tick index is not above the last one applied is a duplicate (at-least-once
        delivery republishes some after a restart): it changes nothing (``prediction`` is None).
        A vector with a NaN or infinite value, a reference price that is not positive or a label other
        than 0, 1 or null raises :class:`InvalidVector` and changes nothing (streams.external).
        """
        if features["tick_index"] <= self.last_tick_index:
            return LearnerStep(None)
        if (problem := vector_problem(features)) is not None:
            raise InvalidVector(problem)
        self.last_tick_index = features["tick_index"]
        step = self._step = LearnerStep(None)
        step.outcomes = self._mature(features)
        step.prediction = self._predict(features)
        self._step = None
        return step

    @staticmethod
    def reference_price(features: dict[str, Any]) -> float:
        mid = features.get("mid_price")
        return mid if mid is not None else features["price"]

    def _due(self, item: Pending, index: int, time_ms: int, price: float) -> bool:
        if item.label is None and self.config.label == "next_change":
            return price != item.price
        if self.horizon_ms > 0:
            return item.event_time_ms <= time_ms - self.horizon_ms
        return item.tick_index <= index - self.config.horizon_ticks

    def _mature(self, features: dict[str, Any]) -> list[dict[str, Any]]:
        outcomes = []
        index, now_ms = features["tick_index"], features["event_time_ms"]
        price = self.reference_price(features)
        pending, band = self.pending, self.config.flat_band
        due = []
        while pending and self._due(pending[0], index, now_ms, price):
            item = pending.popleft()
            if item.label is not None:
                due.append((item, item.label, None))
            else:
                realised = price / item.price - 1.0
                due.append((item, 1 if realised > band else 0 if realised < -band else None, realised))
        labelled = sum(label is not None for _, label, _ in due)
        alike = Counter(item.price for item, _, realised in due if realised is not None)  # one move each
        for item, label, realised in due:
            self.outcomes += 1
            if label is None:
                self.flat += 1
                for name, forecast in item.forecasts.items():
                    self.variants[name].release(forecast, item.regime)
            else:
                waited = index - item.tick_index
                share, lag = (1.0 / alike[item.price], waited) if realised is not None else (1.0, 1)
                self._learn(item, label, realised, weight=1.0 / labelled, member_weight=share, lag=lag)
                self.lag_sum, self.lags = self.lag_sum + waited, self.lags + 1
            item.forecasts, item.references = {}, {}  # scored and learned; feedback reads x (streams.issued)
            self.issued.freeze(item.prediction_id)
            outcomes.append({
                "prediction_id": item.prediction_id, "symbol": self.symbol, "event_time_ms": item.event_time_ms,
                "label": label, "realised_return": realised, "score": None,
                "source": "dataset" if item.label is not None else "market", "feedback_time_ms": now_ms,
                "matured_tick_index": index,
            })
        self.blocks.settle()
        if labelled and 4 * self.lag_sum > self.blocks.block * self.lags:
            self.blocks.coarsen(-(-4 * self.lag_sum // self.lags))
        return outcomes

    def _learn(self, item: Pending, label: int, realised: float | None = None, weight: float = 1.0,
               member_weight: float = 1.0, lag: int = 1) -> None:
        scores, move = self.scores, self.typical_move  # as known before this outcome
        served = item.forecasts[item.served]
        for name, p in served.member_probabilities.items():
            if name in scores:
                scores[name].add(p, label, realised, move)
        loss = scores["ensemble"].add(served.p_up, label, realised, move)
        for name in REFERENCES:
            scores[name].add(item.references[name], label, realised, move)
        # Scored as the default variant's members, whoever served; one block per vector (see _mature).
        self.blocks.add({"ensemble": served.p_up, **item.forecasts["default"].member_probabilities,
                         "prior": item.references["prior"], "constant": 0.5}, label, hold=True)
        if self._step is not None:
            self._step.matured_losses.append((loss, item.x, label))
        if realised is not None:
            self.typical_move += (abs(realised) - self.typical_move) / min(self.moves_seen + 1, 500)
            self.moves_seen += 1
        self.persistence.learn_one(item.x, label)
        self.trade_side.learn_one(item.x, label)
        for name, forecast in item.forecasts.items():
            if self.policy is not None:
                scores[f"variant:{name}"].add(forecast.p_up, label, realised, move)
            self.variants[name].learn(item.x, label, forecast, item.regime, weight, member_weight, lag)
        if self.policy is not None:
            decision = self.policy.observe({name: brier(f.p_up, label) for name, f in item.forecasts.items()})
            if decision is not None:
                kind, variant_name, evidence = decision
                self.version += 1
                reason = (f"challenger {variant_name} beat {evidence['replaced']} on {evidence['pairs']} paired "
                          "outcomes" if kind == "PROMOTION" else f"{evidence['from']} was worse than "
                          f"{variant_name} by more than {evidence['margin']} (Brier)")
                self._event(kind, variant_name, reason, evidence, item.event_time_ms)
        self._rejections(item.event_time_ms)

    def _rejections(self, time_ms: int) -> None:
        if self.config.guard:
            for name, variant in self.variants.items():
                for code, reason in variant.rejections():
                    self._event("REJECTED_UPDATE", name, reason, {"check": code}, time_ms)

    def _event(self, kind: str, variant: str, reason: str, details: dict[str, str], time_ms: int) -> None:
        assert self._step is not None, "model events are decided inside process() or learn_feedback()"
        self._step.events.append({"kind": kind, "model_id": f"{self.model_id}/{variant}", "version": self.version,
                                  "reason": reason, "details": details, "event_time_ms": time_ms})

    def _predict(self, features: dict[str, Any]) -> dict[str, Any]:
        x = features["values"]
        champion = self.ensemble
        regime = champion.regime(x)
        pid = prediction_id(self.symbol, features["event_time_ms"], features["tick_index"])
        served = self.serving(pid)
        forecasts = {name: variant.forecast(x, regime) for name, variant in self.variants.items()}
        references = {"persistence": self.persistence.predict_proba_one(x)[1],
                      "trade_side": self.trade_side.predict_proba_one(x)[1],
                      "prior": forecasts[served].experts["prior"], "constant": 0.5}
        item = Pending(pid, features["tick_index"], features["event_time_ms"], self.reference_price(features), x,
                       features.get("label"), regime, served, forecasts, references)
        self.pending.append(item)
        self.issued.add(pid, item)
        if self._step is not None:
            self._step.shadow = {name: f for name, f in forecasts.items() if name != served}
        return self.prediction_record(features, pid, served, forecasts[served], references)

    def prediction_record(self, features: dict[str, Any], pid: str, served: str, forecast: Forecast,
                          references: dict[str, float]) -> dict[str, Any]:
        return {
            "prediction_id": pid, "symbol": self.symbol, "event_time_ms": features["event_time_ms"],
            "model_id": self.model_id if served == "default" else f"{self.model_id}/{served}",
            "model_version": self.version, "horizon_ticks": self.config.horizon_ticks,
            "probability_up": forecast.p_up, "predicted_up": forecast.p_up > 0.5, "confidence": forecast.confidence,
            "member_probabilities": {**forecast.member_probabilities, "persistence": references["persistence"],
                                     "trade_side": references["trade_side"], "prior": references["prior"]},
            "member_weights": forecast.weights, "feature_set": features["feature_set"], "latency_ms": 0.0,
            "skill_shown": forecast.skill_shown,
        }

    def learn_feedback(self, feedback: dict[str, Any]) -> list[dict[str, Any]]:
        """External feedback: the members learn the label on the features used at prediction time
        (never later ones); scores, mixture and references stay the market outcomes' (an external label
        may answer another question). Returns the model events it caused; :class:`InvalidFeedback`
        for a record that must not be learned (streams.external)."""
        check_feedback(feedback)
        pid, at = feedback.get("prediction_id"), feedback.get("event_time_ms")
        if pid is None and at is not None:  # named by its symbol and event time
            pid = self.issued.latest_at(self.symbol, at)
        if pid is None or pid not in self.issued:
            named = repr(pid) if feedback.get("prediction_id") is not None else f"at event time {at}"
            raise UnknownPrediction(f"no prediction {named} for {self.symbol} (unknown or expired)")
        if (label := feedback.get("label")) is None:
            return []
        self._step = LearnerStep(None)
        try:
            item = self.issued.get(pid)
            for member in [m for variant in self.variants.values() for m in variant.members.values()]:
                member.learn_one(item.x, int(label))
            self._rejections(item.event_time_ms)
            return self._step.events
        finally:
            self._step = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.update({k: state.get(k, 0) for k in ("lag_sum", "lags")})  # blocks that did not follow lags
        issued = state.get("issued")
        if isinstance(issued, OrderedDict):  # a checkpoint of an earlier version: nothing frozen yet
            state["issued"] = IssuedPredictions.of(issued, state["config"].keep_issued)
        self.__dict__.update(state)

    def performance(self) -> dict[str, dict[str, Any]]:
        """Cumulative and rolling scores of every member, the ensemble and the references."""
        return {name: score.summary() for name, score in self.scores.items()}

    @property
    def flat_share(self) -> float | None:
        return self.flat / self.outcomes if self.outcomes else None

    def reset_member(self, name: str) -> None:
        """Re-warm one member of the champion from scratch (drift response)."""
        self.ensemble.replace_member(name, make_member(name, self.config.seed + self.version, self.config.device,
                                                       self.model_features))
        self.version += 1

    def worst_member(self) -> str:
        """The champion's member with the highest rolling log-loss."""
        return max(self.ensemble.members, key=lambda name: self.scores[name].log_loss
                   if self.scores[name].n else -math.inf)
