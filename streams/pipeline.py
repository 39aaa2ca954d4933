"""One input partition's pipeline: ticks -> features -> predictions -> outcomes -> learning -> drift.

:class:`PartitionPipeline` holds everything the worker keeps per partition (the feature engine, every
symbol's learner and drift monitor, and what performance records report besides scores), and is the
unit that is checkpointed and moved between workers. Each input is one call that returns one
:class:`Step`: the records to publish, in order, and the statistics a metrics exporter needs. The
worker (agents.pipeline), the backtest (agents.backtest), ``livelearn evaluate`` on files and the
benchmarks all drive this object, so they give the same records from the same inputs.

* :meth:`PartitionPipeline.on_tick`: a decoded tick. Validation, the tick gate (streams.tick_gate:
  ticks from the future, implausible prices, duplicates), features (published on ``features``),
  then, for a vector, learning from the outcomes it matures (published on ``outcomes``), the
  prediction (``predictions``, challengers on ``shadow-predictions``), drift checks (``alerts``) with
  the drift response (``model-events``), and now and then a ``performance`` record.
* :meth:`PartitionPipeline.on_vector`: a feature vector from outside (a labelled dataset row).
* :meth:`PartitionPipeline.on_feedback`: external feedback naming a prediction id.

A rejected input is not an exception: the step carries ``rejection`` (stage, reason code, reason,
and the exception for ``internal_error``), and whatever was computed before it (a tick's features
when its prediction failed) is still in ``records``. The worker dead-letters it (agents.errors).

>>> from streams.ticks import make_tick
>>> pipeline = PartitionPipeline(PipelineConfig(learner=LearnerConfig(members=("logreg",))))
>>> steps = [pipeline.on_tick(make_tick("BTCUSDT", "TRADE", 1_700_000_000_000 + i * 1000, 100.0 + i % 3,
...                                     1.0, is_buyer_maker=i % 2 == 0)) for i in range(8)]
>>> [o.stage for o in steps[-1].records]
['features', 'outcomes', 'predictions']
>>> pipeline.on_tick(make_tick("BTCUSDT", "TRADE", 1_700_000_000_000, float("nan"), 1.0)).rejection[:2]
('featurize', 'invalid_value')
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from schemas.keys import BasisGroups
from streams.drift import BASIS_CONFIG, BasisTracker, DriftConfig, DriftMonitor
from streams.early_feedback import EarlyFeedback, given_up, named_later, named_time
from streams.external import InvalidFeedback, check_feedback
from streams.features import DRIFT_FEATURES, FEATURE_SET, MODEL_FEATURES, FeatureEngine, LateTick
from streams.issued import made_at
from streams.learning import InvalidVector, LearnerConfig, SymbolLearner, UnknownPrediction
from streams.model_events import drift_response, model_event_record
from streams.performance import performance_record, scores
from streams.reorder import ReorderBuffer
from streams.tick_gate import GateConfig, TickGate
from streams.ticks import InvalidTick, check_tick


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a partition pipeline is built from (the worker builds it from its settings)."""

    learner: LearnerConfig = field(default_factory=LearnerConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    drift_features: tuple[str, ...] = DRIFT_FEATURES
    drift_response: bool = True
    late_grace_ms: int = 0
    reorder_ms: int = 0  # ticks held this long in event time, applied in event-time order (0: none)
    gate: GateConfig = field(default_factory=GateConfig)  # event-time and value hygiene (streams.tick_gate)
    emit: str = "price"
    performance_every: int = 500
    export_every: int = 50
    # The BASIS channel (streams.drift.basis) over the pairs of each group (None: off).
    basis: DriftConfig | None = BASIS_CONFIG
    basis_groups: BasisGroups = field(default_factory=lambda: BasisGroups("auto"))


@dataclass
class Output:
    """A record to publish: stage (topic), Kafka key, record, Kafka timestamp."""

    stage: str
    key: bytes
    record: dict[str, Any]
    timestamp_ms: int | None


@dataclass
class StepStats:
    """What a metrics exporter reads from a step (nothing else is picked off the pipeline)."""

    symbol: str | None = None
    ticked: bool = False  # a tick went through the featurize stage (rejected or not)
    featurized: bool = False  # ... and was applied to the feature state
    predicted: bool = False
    duplicate: bool = False
    label_lags_ms: list[float] = field(default_factory=list)
    alerts: list[tuple[str, str]] = field(default_factory=list)
    model_events: list[str] = field(default_factory=list)
    drift_results: list[tuple[str, str, str, float, float]] = field(default_factory=list)
    scores: dict[str, Any] | None = None
    feedback_learned: bool = False  # external feedback taken by its learner (livelearn_events_total{stage="learn"})
    featurize_seconds: float = 0.0
    predict_seconds: float = 0.0


@dataclass
class Step:
    records: list[Output] = field(default_factory=list)
    stats: StepStats = field(default_factory=StepStats)
    # (stage, reason code, reason, exception or None) of a rejected input.
    rejection: tuple[str, str, str, BaseException | None] | None = None
    # With a reorder window: the held ticks this input released, each as its own step with the origin
    # it was given (what a dead letter of it needs); this step itself is then only the admission. Also
    # held feedback a prediction let out (streams.early_feedback), each with the feedback's origin.
    released: list[tuple[Step, Any]] = field(default_factory=list)


class SymbolActivity:
    """What a performance record reports beside the scores: latency, label lag, events and errors."""

    __slots__ = ("latencies_ms", "label_lags_ms", "events", "errors", "reported_at")

    def __init__(self):
        self.latencies_ms: deque[float] = deque(maxlen=1000)
        self.label_lags_ms: deque[float] = deque(maxlen=1000)
        self.events = self.errors = 0
        self.reported_at = 0


class PartitionPipeline:
    """Feature engine, learners and drift monitors of one input partition (see the module docstring)."""

    early: EarlyFeedback | None = None  # made when feedback is first held (checkpoints from before have none)

    def __init__(self, config: PipelineConfig | None = None):
        self.config = config or PipelineConfig()
        self.engine = FeatureEngine(late_grace_ms=self.config.late_grace_ms, emit=self.config.emit)
        self.gate = TickGate(self.config.gate)
        self.held = ReorderBuffer(self.config.reorder_ms, self.config.gate.min_ahead_ms)
        self.last_arrival_ms: int | None = None
        self.learners: dict[str, SymbolLearner] = {}
        self.monitors: dict[str, DriftMonitor] = {}
        self.activity: dict[str, SymbolActivity] = {}
        self.basis = BasisTracker()

    def learner(self, vector: dict[str, Any]) -> SymbolLearner:
        """The symbol's learner: market vectors feed the model features; a labelled dataset (any other
        feature set) feeds all of its features, in the order of its first vector."""
        learner = self.learners.get(symbol := vector["symbol"])
        if learner is None:
            market = vector["feature_set"] == FEATURE_SET
            features = MODEL_FEATURES if market else tuple(vector["values"])
            learner = self.learners[symbol] = SymbolLearner(symbol, self.config.learner, features, dataset=not market)
        return learner

    def monitor(self, symbol: str) -> DriftMonitor:
        monitor = self.monitors.get(symbol)
        if monitor is None:
            monitor = self.monitors[symbol] = DriftMonitor(symbol, self.config.drift, self.config.basis)
        return monitor

    def forget(self, symbol: str) -> None:
        """Start ``symbol`` again: its feature state, gate state, learner and drift monitor are dropped
        (its activity counters stay). Used when the gate finds that the tick the symbol's clock rests
        on was an outlier (streams.tick_gate.TickGate.late); the predictions it made have no outcome."""
        self.engine.symbols.pop(symbol, None)
        self.gate.forget(symbol)
        self.learners.pop(symbol, None)
        self.monitors.pop(symbol, None)

    def on_tick(self, tick: dict[str, Any], now_ms: int | None = None, origin: Any = None) -> Step:
        """A decoded tick; ``now_ms`` (wall time, from the worker or the backtest) lets the gate refuse
        ticks stamped ahead of this machine's clock. With ``reorder_ms`` the tick is held by the reorder
        window (streams.reorder) and the step lists the ticks it let out, applied in event-time order,
        each with its ``origin`` (``released``); :meth:`flush` applies everything held."""
        if self.config.reorder_ms <= 0:
            return self._apply(tick, now_ms)
        step = Step()
        try:
            check_tick(tick)
        except InvalidTick as exc:
            step.stats.ticked = True
            step.rejection = ("featurize", exc.code, str(exc), None)
            return step
        self.last_arrival_ms = now_ms
        step.released = self._applied(self.held.push(tick, origin), now_ms)
        return step

    def flush(self, now_ms: int | None = None) -> list[tuple[Step, Any]]:
        """Apply every tick held by the reorder window (streams.reorder)."""
        return self._applied(self.held.flush(), now_ms)

    def _applied(self, ticks: list[tuple[dict[str, Any], Any]], now_ms: int | None) -> list[tuple[Step, Any]]:
        """Ticks let out by the reorder window, applied, each followed by the held feedback it let out."""
        out: list[tuple[Step, Any]] = []
        for tick, origin in ticks:
            step = self._apply(tick, now_ms)
            out.append((step, origin))
            out += step.released
            step.released = []
        return out

    def refuse_held_feedback(self) -> list[tuple[Step, Any]]:
        """Feedback still held for predictions not made (the end of a backtest): refused as unknown."""
        return [(Step(rejection=("learn", "unknown_prediction", given_up(feedback, "the input ended"), None)), origin)
                for feedback, origin in (self.early.take_all() if self.early is not None else [])]

    def _apply(self, tick: dict[str, Any], now_ms: int | None = None) -> Step:
        step = Step()
        step.stats.ticked = True
        started = time.perf_counter()
        try:
            check_tick(tick)
            refusal = self.gate.check(tick, now_ms)
            if refusal is not None:
                step.stats.featurize_seconds = time.perf_counter() - started
                step.rejection = ("featurize", refusal[0], refusal[1], None)
                return step
            vector = self.engine.update(tick)
            self.gate.accept(tick)
        except InvalidTick as exc:
            step.rejection = ("featurize", exc.code, str(exc), None)
        except LateTick as exc:
            if self.gate.late(tick):  # the symbol's clock rested on an outlier: start it again
                self.forget(tick["symbol"])
                step = self._apply(tick, now_ms)
                step.stats.model_events.append("SYMBOL_RESTART")  # livelearn_model_events_total{kind=...}
                return step
            step.rejection = ("featurize", "late_event", str(exc), None)
        except Exception as exc:  # one bad record must not stop the pipeline
            step.rejection = ("featurize", "internal_error", f"{type(exc).__name__}: {exc}", exc)
        else:
            step.stats.featurized = True
            if self.config.basis is not None and tick["kind"] != "BOOK_TICKER":
                try:
                    self._basis(tick, step)
                except Exception as exc:  # the basis must not cost the symbol its prediction
                    step.rejection = ("drift", "internal_error", f"{type(exc).__name__}: {exc}", exc)
            if vector is not None:
                key = vector["symbol"].encode()
                step.records.append(Output("features", key, vector, vector["event_time_ms"]))
                step.stats.featurize_seconds = time.perf_counter() - started
                self._predict(vector, step)
                return step
        step.stats.featurize_seconds = time.perf_counter() - started
        return step

    def _basis(self, tick: dict[str, Any], step: Step) -> None:
        """A price tick moves its group's basis (streams.drift.basis): the pairs it lets be measured
        may be others of the group, whose prices at an earlier event time are now all known."""
        group, price = self.config.basis_groups.key(tick["symbol"]), tick["price"]
        measured = self.basis.update(group, tick["symbol"], price, tick["event_time_ms"])
        # A pair's deviations from each other pair at one time come together (two times in one update
        # when a late tick completes an earlier time's prices).
        for (symbol, time_ms), deviations in groupby(measured, key=lambda d: (d.symbol, d.time_ms)):
            if not self.basis.named_mover(group, symbol):
                continue
            for alert in self.monitor(symbol).update_basis({d.against: d.bps for d in deviations}, time_ms):
                step.stats.alerts.append((alert["kind"], alert["severity"]))
                step.records.append(Output("alerts", symbol.encode(), alert, alert["created_time_ms"]))

    def on_vector(self, vector: dict[str, Any]) -> Step:
        step = Step()
        self._predict(vector, step)
        return step

    def on_feedback(self, feedback: dict[str, Any], origin: Any = None, routed: bool = False) -> Step:
        """External feedback on a prediction (by id, or by symbol and event time): the symbol's learner
        learns the label on the features it predicted with. Feedback naming a prediction later than the
        symbol's newest is held until it is made (streams.early_feedback; ``origin`` is kept for its
        dead letter), as is feedback ``routed`` here by its symbol's key before the symbol's first tick.
        An unknown symbol or id is rejected (``unknown_prediction``), a label other than 0, 1 or null or
        a non-finite return or score (``invalid_feedback``, streams.external)."""
        step = Step()
        step.stats.symbol = symbol = feedback["symbol"]
        learner = self.learners.get(symbol)
        try:
            if learner is None and not (routed and named_time(feedback) is not None):
                raise UnknownPrediction(f"no model for symbol {symbol!r} in this partition (feedback must be keyed as "
                                        "the symbol's ticks are: by its basis group, schemas.keys)")
            check_feedback(feedback)
            if (made := named_time(feedback) if learner is None else named_later(learner.issued, feedback)) is not None:
                if self.early is None:
                    self.early = EarlyFeedback()
                step.stats.model_events.append("FEEDBACK_HELD")  # livelearn_model_events_total{kind=...}
                for pushed, pushed_origin in self.early.hold(symbol, made, feedback, origin, self._clock):
                    reason = given_up(pushed, f"{self.early.limit} feedback records held for later predictions")
                    step.released.append((Step(rejection=("learn", "unknown_prediction", reason, None)), pushed_origin))
                return step
            assert learner is not None  # held above where there is none
            events = learner.learn_feedback(feedback)
        except UnknownPrediction as exc:
            step.rejection = ("learn", "unknown_prediction", str(exc.args[0]), None)
            return step
        except InvalidFeedback as exc:
            step.rejection = ("learn", exc.code, str(exc), None)
            return step
        except Exception as exc:
            step.rejection = ("learn", "internal_error", f"{type(exc).__name__}: {exc}", exc)
            return step
        step.stats.feedback_learned = True
        self._events(learner, events, step)
        return step

    def _clock(self, symbol: str) -> int | None:
        """The event time of ``symbol``'s newest prediction."""
        learner = self.learners.get(symbol)
        newest = learner.issued.newest if learner is not None else None
        return made_at(newest) if newest is not None else None

    def _let_out_feedback(self, learner: SymbolLearner, event_time_ms: int, step: Step) -> None:
        """After a prediction: held feedback whose prediction is now made, or whose time has passed."""
        issued = learner.issued
        for feedback, origin in self.early.due(learner.symbol, event_time_ms,  # type: ignore[union-attr]
                                               lambda f: f.get("prediction_id") in issued):
            step.released.append((self.on_feedback(feedback, origin), origin))

    def _events(self, learner: SymbolLearner, events: list[dict[str, Any]], step: Step) -> None:
        key = learner.symbol.encode()
        for event in events:
            step.records.append(Output("model-events", key, model_event_record(learner.symbol, event),
                                       event["event_time_ms"]))
            step.stats.model_events.append(event["kind"])

    def _predict(self, vector: dict[str, Any], step: Step) -> None:
        started = time.perf_counter()
        symbol = vector["symbol"]
        step.stats.symbol = symbol
        seen = self.activity.get(symbol)
        if seen is None:
            seen = self.activity[symbol] = SymbolActivity()
        try:
            self._learn_and_predict(vector, step, seen, started)
        except InvalidVector as exc:
            step.rejection = ("predict", "invalid_features", str(exc), None)
        except Exception as exc:
            seen.errors += 1
            step.rejection = ("predict", "internal_error", f"{type(exc).__name__}: {exc}", exc)
        step.stats.predict_seconds = elapsed = time.perf_counter() - started
        if step.stats.predicted:
            seen.latencies_ms.append(elapsed * 1000.0)

    def _learn_and_predict(self, vector: dict[str, Any], step: Step, seen: SymbolActivity, started: float) -> None:
        learner = self.learner(vector)
        learned = learner.process(vector)
        prediction = learned.prediction
        if prediction is None:
            step.stats.duplicate = True
            return
        step.stats.predicted = True
        seen.events += 1
        key = learner.symbol.encode()
        monitor = self.monitor(learner.symbol)
        records, alerts = step.records, []
        for outcome in learned.outcomes:
            records.append(Output("outcomes", key, outcome, outcome["feedback_time_ms"]))
            lag_ms = outcome["feedback_time_ms"] - outcome["event_time_ms"]
            seen.label_lags_ms.append(lag_ms)
            step.stats.label_lags_ms.append(lag_ms)
        for loss, inputs, label in learned.matured_losses:  # re-scored by the model as it is now to confirm
            alerts += monitor.update_error(loss, vector["event_time_ms"], (inputs, label), learner.loss_now)
        alerts += monitor.update_prediction(prediction["probability_up"], prediction["event_time_ms"],
                                            vector["values"], learner.probability_up)
        prediction["latency_ms"] = (time.perf_counter() - started) * 1000.0
        records.append(Output("predictions", key, prediction, prediction["event_time_ms"]))
        for variant, forecast in learned.shadow.items():
            references = {k: prediction["member_probabilities"][k] for k in ("persistence", "trade_side", "prior")}
            records.append(Output("shadow-predictions", key, {
                **prediction, "model_id": f"{learner.model_id}/{variant}", "probability_up": forecast.p_up,
                "predicted_up": forecast.p_up > 0.5, "confidence": forecast.confidence,
                "member_probabilities": {**forecast.member_probabilities, **references},
                "member_weights": forecast.weights, "skill_shown": forecast.skill_shown},
                prediction["event_time_ms"]))
        self._events(learner, learned.events, step)
        # Feature drift runs after the prediction; a labelled dataset is tested on its own features.
        names = self.config.drift_features if vector["feature_set"] == FEATURE_SET else None
        alerts += monitor.update_features(vector["values"], vector["event_time_ms"], names)
        for alert in alerts:
            step.stats.alerts.append((alert["kind"], alert["severity"]))
            records.append(Output("alerts", key, alert, alert["created_time_ms"]))
            for event in drift_response(learner, alert, self.config.drift_response):
                records.append(Output("model-events", key, event, event["event_time_ms"]))
                step.stats.model_events.append(event["kind"])
        if learner.scores["ensemble"].n and vector["tick_index"] % self.config.export_every == 0:
            step.stats.scores = scores(learner)
        step.stats.drift_results += monitor.take_checks()
        labelled = learner.scores["ensemble"].total
        if labelled - seen.reported_at >= self.config.performance_every:
            seen.reported_at = labelled
            records.append(Output("performance", key, performance_record(learner, seen, vector["event_time_ms"]),
                                  vector["event_time_ms"]))
        if self.early is not None and learner.symbol in self.early:
            self._let_out_feedback(learner, vector["event_time_ms"], step)
        if self.early:
            grace = self.config.gate.min_ahead_ms
            for feedback, origin in self.early.orphaned(vector["event_time_ms"], self.learners, grace):
                reason = given_up(feedback, f"no tick of its symbol came in this partition within "
                                            f"{grace} ms of event time after it")
                step.released.append((Step(rejection=("learn", "unknown_prediction", reason, None)), origin))

