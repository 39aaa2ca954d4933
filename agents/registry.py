"""Per-symbol learners and drift monitors held by this worker process.

Models stay in process memory (a Faust table would write a changelog record on every event), grouped
per input partition (:class:`PartitionModels`) so that a partition's models move and restore together
with their checkpoint. The data topics are co-partitioned by symbol, so the worker that owns a
symbol's features also owns its feedback, and the predict, learn and monitor agents share these.
"""

from __future__ import annotations

from agents.settings import Settings
from streams.drift import DriftConfig, DriftMonitor
from streams.features import DRIFT_FEATURES
from streams.learning import SymbolLearner


class PartitionModels:
    """Learners and model-drift monitors of the symbols of one input partition (checkpointed whole)."""

    def __init__(self):
        self.learners: dict[str, SymbolLearner] = {}
        self.monitors: dict[str, DriftMonitor] = {}

    def learner(self, symbol: str, registry: Registry) -> SymbolLearner:
        learner = self.learners.get(symbol)
        if learner is None:
            learner = self.learners[symbol] = registry.new_learner(symbol)
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
        self.drift_config = DriftConfig(window=int(settings.drift_window), alpha=float(settings.drift_alpha),
                                        correction=settings.drift_correction,
                                        min_severity=settings.alert_min_severity.upper(),
                                        warmup_events=int(settings.drift_warmup))
        self.drift_features = (tuple(f.strip() for f in settings.drift_features.split(",") if f.strip())
                               or DRIFT_FEATURES)
        self.feature_monitors: dict[str, DriftMonitor] = {}

    def new_learner(self, symbol: str) -> SymbolLearner:
        return SymbolLearner(symbol, members=self.members, horizon_ticks=self.settings.horizon,
                             flat_band=float(self.settings.flat_band), seed=int(self.settings.seed))

    def feature_monitor(self, symbol: str) -> DriftMonitor:
        monitor = self.feature_monitors.get(symbol)
        if monitor is None:
            monitor = self.feature_monitors[symbol] = DriftMonitor(symbol, self.drift_config)
        return monitor
