"""Prometheus metrics, declared once in a factory that takes a registry (tests pass a fresh one)."""

from __future__ import annotations

import math
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

# Per-event work is tens of microseconds to a few milliseconds; alerts need the tail up to ~1 s.
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# Label lag is a horizon of ticks: milliseconds (trades) to minutes (klines).
LABEL_LAG_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # CPU, memory, open files, start time (process_*) and the Python version (python_info): what
        # every Prometheus client exports by default, and what a dashboard of a stalled worker needs.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.events = Counter("livelearn_events_total", "Events processed, by stage", ["stage"], registry=r)
        self.outputs = Counter("livelearn_outputs_total", "Records produced, by topic stage", ["stage"], registry=r)
        self.dead_letters = Counter(
            "livelearn_dead_letters_total", "Records dead-lettered, by stage and reason", ["stage", "reason"], registry=r
        )
        self.latency = Histogram(
            "livelearn_processing_seconds", "Processing time per event, by stage", ["stage"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.consumer_lag = Gauge(
            "livelearn_consumer_lag", "Records behind the end of each assigned partition", ["topic", "partition"], registry=r
        )
        self.member_accuracy = Gauge(
            "livelearn_member_accuracy", "Rolling accuracy per member (and ensemble)", ["symbol", "member"], registry=r
        )
        self.member_log_loss = Gauge(
            "livelearn_member_log_loss", "Rolling log-loss per member (and ensemble)", ["symbol", "member"], registry=r
        )
        self.member_weight = Gauge("livelearn_ensemble_weight", "Ensemble weight per member", ["symbol", "member"], registry=r)
        self.skill = Gauge(
            "livelearn_skill", "Log-loss skill 1 - L_model / L_reference against a no-skill reference (prior, constant)",
            ["symbol", "model", "reference"], registry=r,
        )
        self.flat_share = Gauge("livelearn_flat_share", "Share of outcomes that were flat (not learned)", ["symbol"],
                                registry=r)
        self.skill_shown = Gauge(
            "livelearn_skill_shown", "1 once the skill gate has opened (forecasts are the mixture's), 0 while they "
            "are the constant 0.5 (streams/skill_gate.py)", ["symbol"], registry=r)
        self.label_lag = Histogram(
            "livelearn_label_lag_seconds", "Event time between a prediction and its outcome", buckets=LABEL_LAG_BUCKETS,
            registry=r,
        )
        self.drift_p_value = Gauge(
            "livelearn_drift_p_value", "Latest drift test p-value", ["symbol", "kind", "stream", "test"], registry=r
        )
        self.drift_statistic = Gauge(
            "livelearn_drift_statistic", "Latest drift test statistic", ["symbol", "kind", "stream", "test"], registry=r
        )
        self.alerts = Counter("livelearn_alerts_total", "Drift alerts raised", ["kind", "severity"], registry=r)
        self.model_events = Counter("livelearn_model_events_total", "Model lifecycle events", ["kind"], registry=r)
        self.misrouted = Counter(
            "livelearn_misrouted_ticks_total",
            "Ticks whose Kafka key is not their symbol's basis group (schemas.keys): applied, but a symbol keyed "
            "otherwise may be split between partitions, and its group's pairs not seen together", ["stage"],
            registry=r,
        )
        self.stranded = Counter(
            "livelearn_models_stranded_total",
            "Symbols whose models a restored checkpoint brought back to a partition their ticks no longer go to "
            "(the input topics grown, or LIVELEARN_BASIS_GROUPS changed, since): they start new models where "
            "their ticks go now; counted once per symbol", registry=r,
        )
        self.withheld = Counter(
            "livelearn_outputs_withheld_total",
            "Records not published because their input partition was revoked while the event was in flight "
            "(the next owner re-applies the event), by topic stage", ["stage"], registry=r,
        )
        self.duplicates = Counter(
            "livelearn_duplicates_skipped_total", "Inputs already applied (redelivered after a restart)", ["stage"],
            registry=r,
        )
        self.legacy_avro = Counter(
            "livelearn_legacy_avro_records_total",
            "Records read with the deprecated big-endian schema fingerprint (livelearn 0.1 writers), by topic stage",
            ["stage"], registry=r,
        )
        self.checkpoints_refused = Counter(
            "livelearn_checkpoints_refused_total",
            "Checkpoint records not restored (unsigned, forged, offset out of range, unreadable), by stage and reason",
            ["stage", "reason"], registry=r,
        )
        self.checkpoint_bytes = Gauge(
            "livelearn_checkpoint_bytes", "Compressed size of the last checkpoint written", registry=r,
        )
        self.ready = Gauge("livelearn_ready", "1 once state is recovered and models are loaded", registry=r)
        self.drift_false_alarm_bound = Gauge(
            "livelearn_drift_false_alarms_per_10k_bound",
            "Upper bound on false drift alarms per 10k events of a symbol's channel under no drift (alpha * 10k / "
            "check interval)", ["kind"], registry=r,
        )
        # Labelled children of the per-event metrics, looked up once: ``labels()`` takes a lock and
        # validates its arguments every call (about 4% of a backtest of real ticks under pyinstrument;
        # ``export`` of a predicted tick 6.7 -> 3.7 us).
        self._children: dict[tuple[int, str], Any] = {}

    def child(self, metric: Counter | Histogram, label: str):
        """``metric.labels(label)``, cached (for metrics with one label, used on every event)."""
        key = (id(metric), label)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(label)
        return found

    def export(self, stats) -> None:
        """A pipeline step's statistics (streams.pipeline.StepStats) into the metrics."""
        child = self.child
        if stats.ticked:
            if stats.featurized:
                child(self.events, "featurize").inc()
            child(self.latency, "featurize").observe(stats.featurize_seconds)
        if stats.duplicate:
            child(self.duplicates, "predict").inc()
        if stats.predicted:
            child(self.events, "predict").inc()
            child(self.latency, "predict").observe(stats.predict_seconds)
        if stats.feedback_learned:
            child(self.events, "learn").inc()
        for lag_ms in stats.label_lags_ms:
            self.label_lag.observe(lag_ms / 1000.0)
        for kind, severity in stats.alerts:
            self.alerts.labels(kind, severity).inc()
        for kind in stats.model_events:
            self.model_events.labels(kind).inc()
        symbol = stats.symbol
        for kind, stream, test, statistic, p in stats.drift_results:
            self.drift_p_value.labels(symbol, kind, stream, test).set(p)
            self.drift_statistic.labels(symbol, kind, stream, test).set(statistic)
        scores = stats.scores
        if scores is not None:
            for name, value in scores["accuracy"].items():
                self.member_accuracy.labels(symbol, name).set(value)
            for name, value in scores["log_loss"].items():
                self.member_log_loss.labels(symbol, name).set(value)
            for name, weight in scores["weights"].items():
                self.member_weight.labels(symbol, name).set(weight)
            for name, skill in scores["skill"].items():
                for reference in ("prior", "constant"):
                    value = skill[f"vs_{reference}"]
                    if math.isfinite(value):
                        self.skill.labels(symbol, name, reference).set(value)
            if scores["flat_share"] is not None:
                self.flat_share.labels(symbol).set(scores["flat_share"])
            self.skill_shown.labels(symbol).set(1.0 if scores.get("skill_shown", True) else 0.0)
