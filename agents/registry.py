"""Per-symbol learners and drift monitors held by this worker process.

Models stay in process memory (a Faust table would write a changelog record on every event), grouped
per input partition (:class:`PartitionModels`) so that a partition's models move and restore together
with their checkpoint. The data topics are co-partitioned by symbol, so the worker that owns a
symbol's features also owns its feedback, and the predict and learn agents share these.
"""

from __future__ import annotations

from agents.settings import Settings
from streams.drift import DriftConfig, DriftMonitor
from streams.features import DRIFT_FEATURES, FEATURE_SET, MODEL_FEATURES
from streams.learning import LearnerConfig, SymbolLearner


class PartitionModels:
    """Learners and drift monitors (features, error, predictions) of the symbols of one input partition
    (checkpointed whole)."""

    def __init__(self):
        self.learners: dict[str, SymbolLearner] = {}
        self.monitors: dict[str, DriftMonitor] = {}

    def learner(self, vector: dict, registry: Registry) -> SymbolLearner:
        symbol = vector["symbol"]
        learner = self.learners.get(symbol)
        if learner is None:
            learner = self.learners[symbol] = registry.new_learner(symbol, vector)
        return learner

    def monitor(self, symbol: str, registry: Registry) -> DriftMonitor:
        monitor = self.monitors.get(symbol)
        if monitor is None:
            monitor = self.monitors[symbol] = DriftMonitor(symbol, registry.drift_config)
        return monitor


class Registry:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.members = tuple(m.strip() for m in settings.members.split(",") if m.strip())
        self.drift_config = DriftConfig(window=int(settings.drift_window),
                                        current_window=int(settings.drift_current_window),
                                        check_every=int(settings.drift_check_every), alpha=float(settings.drift_alpha),
                                        correction=settings.drift_correction,
                                        min_severity=settings.alert_min_severity.upper(),
                                        warmup_events=int(settings.drift_warmup))
        self.drift_features = (tuple(f.strip() for f in settings.drift_features.split(",") if f.strip())
                               or DRIFT_FEATURES)
        s = settings
        self.learner_config = LearnerConfig(
            members=self.members, horizon_ticks=s.horizon, horizon_seconds=float(s.horizon_seconds),
            label=s.label, flat_band=float(s.flat_band), seed=int(s.seed), device=s.torch_device,
            regime_weights=s.regime_weights_on, challengers=tuple(s.challenger_members.items()),
            traffic_share=float(s.traffic_share), promotion_alpha=float(s.promotion_alpha),
            promotion_min_samples=int(s.promotion_min_samples), rollback_margin=float(s.rollback_margin),
            rollback_threshold=float(s.rollback_threshold), guard=s.guard_on)

    def new_learner(self, symbol: str, first_vector: dict | None = None) -> SymbolLearner:
        """A learner for ``symbol``. Market vectors feed the model features; a labelled dataset (any
        other feature set) feeds all of its features, in the order of its first vector."""
        features = MODEL_FEATURES
        if first_vector is not None and first_vector["feature_set"] != FEATURE_SET:
            features = tuple(first_vector["values"])
        return SymbolLearner(symbol, self.learner_config, model_features=features)
