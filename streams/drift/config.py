"""Drift configuration and the severity of a rejection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.drift.seasonality import check_buckets
from streams.drift.statistics import adjust

SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
VARIANCE_TESTS = ("volatility", "cusum", "levene", "log_scale", "f_test")
# Effect-size thresholds (small, medium, large) per test.
EFFECT_THRESHOLDS = {
    "ks_2samp": (0.1, 0.2, 0.3),
    "welch_t": (0.2, 0.5, 0.8),
    "mannwhitney_u": (0.05, 0.15, 0.25),
    "f_test": (0.2, 0.5, 1.0),
    "levene": (0.2, 0.5, 1.0),
    # A basis shift in basis points: 0.25% a wander, 1.5% a de-peg, 5% a broken peg.
    "basis_t": (25.0, 150.0, 500.0),
    # A shift of the mean log absolute deviation: scale ratios of about 1.25, 1.6 and 2.5.
    "log_scale_t": (0.22, 0.47, 0.92),
    # The CUSUM's size of returns since the rise began, in units of the usual (streams.drift.cusum).
    "cusum_scale": (1.25, 1.6, 2.5),
}



@dataclass(frozen=True)
class DriftConfig:
    window: int = 500
    current_window: int = 100
    check_every: int = 20
    alpha: float = 0.0008
    correction: str = "bonferroni"
    reference: str = "fixed"
    rebase_on_alert: bool = True
    resolve_after: int = 3
    variance_tests: bool = True
    mean_test: bool = True
    # The variance channel's test: "cusum" a sequential test of ret_1 (streams.drift.cusum) once it has
    # two days of event time behind it, "volatility" before then; "volatility" alone tests a rise in the
    # size of the return-like features (streams.drift.checks.VarianceCheck). Where a stream has no
    # return-like features (datasets) either runs Levene on every feature.
    variance_test: str = "cusum"
    # The CUSUM's alarm level (a log-likelihood ratio) and the event-time hours before it may alarm.
    cusum_threshold: float = 50.0
    cusum_warmup_hours: float = 48.0
    warmup_events: int = 0
    min_severity: str = "LOW"
    # Return-like features in units of recent volatility (streams.drift.volatility); 0 = raw (the
    # default: scaling hides the sudden bursts the variance channel is for; see that module).
    volatility_half_life: float = 0.0
    # Return-like features in units of their usual size at that time of day, learnt from complete
    # days (streams.drift.seasonality): buckets per day, 0 = off.
    seasonal_buckets: int = 24
    # Smallest basis shift (basis points) a BASIS check may report (streams.drift.basis).
    basis_min_bps: float = 20.0
    # Event-time hours a fall of volatility is remembered (streams.drift.checks.VarianceCheck): a rise
    # back to the level before it (a weekend's end) is not reported; 0 = forget at once.
    quiet_spell_hours: float = 504.0
    # Event-time hours a fixed reference of the FEATURE, PREDICTION, CONCEPT and BASIS channels serves
    # while no incident is open; then it is taken again from the latest events (Channel.refresh).
    # Markets wander over days (order flow, trend, a basis on a thin book), and a reference only an
    # alert re-based compared each day with whatever the day it was taken on was: on three weeks of
    # real one-minute bars of three pairs (docs/STATUS.md) these four channels raised 42 alerts with a
    # reference kept until an alert and 28 with one a day old at most. The union bound holds either way
    # (when a reference is taken does not depend on the data). VARIANCE keeps its own (its memory of a
    # fall rests on its reference). 0 = never.
    reference_max_age_hours: float = 24.0
    # Event-time milliseconds a change (any channel but BASIS) must be seen over to open an incident: a
    # rejection whose current window spans less is checked again at the first event this long after it,
    # and fires only if the change is still there (streams.drift.monitor). 0 = at the first rejection.
    persist_ms: int = 60_000

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A configuration pickled before persist_ms existed fired at the first rejection.
        object.__setattr__(self, "__dict__", {"persist_ms": 0} | state)

    def __post_init__(self):
        if self.variance_test not in VARIANCE_TESTS:
            raise ValueError(f"variance_test must be one of {', '.join(VARIANCE_TESTS)}")
        if self.min_severity not in SEVERITIES:
            raise ValueError(f"min_severity must be one of {', '.join(SEVERITIES)}")
        if self.window < 10 or self.check_every < 1:
            raise ValueError("window must be >= 10 and check_every >= 1")
        if not (self.current_window == 0 or self.current_window >= 10):
            raise ValueError("current_window must be 0 (= window) or >= 10")
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must be in (0, 1)")
        if self.volatility_half_life < 0:
            raise ValueError("volatility_half_life must be >= 0 events (0 = features unscaled)")
        if self.seasonal_buckets:
            check_buckets(self.seasonal_buckets)
        if self.basis_min_bps < 0:
            raise ValueError("basis_min_bps must be >= 0")
        if self.reference_max_age_hours < 0:
            raise ValueError("reference_max_age_hours must be >= 0 (0 = a reference serves until an alert)")
        if self.quiet_spell_hours < 0:
            raise ValueError("quiet_spell_hours must be >= 0 (0 = a fall of volatility is not remembered)")
        if self.persist_ms < 0:
            raise ValueError("persist_ms must be >= 0 (0 = an incident opens at the first rejection)")
        if self.cusum_threshold <= 0 or self.cusum_warmup_hours < 0:
            raise ValueError("cusum_threshold must be > 0 and cusum_warmup_hours >= 0")
        if self.reference not in ("fixed", "rolling"):
            raise ValueError("reference must be 'fixed' or 'rolling'")
        adjust([0.5], self.correction)

    @property
    def current_size(self) -> int:
        """Events in the current window: ``current_window``, capped at ``window`` (0 = ``window``)."""
        return min(self.current_window or self.window, self.window)

    @property
    def expected_false_alarms_per_10k(self) -> float:
        """Upper bound on false alarms per 10k events and channel under no drift."""
        return self.alpha * 10_000 / self.check_every


def severity(adjusted_p: float, effect: float, test: str, alpha: float) -> str:
    """Severity of a rejection (already significant at ``alpha``): mostly its effect size, raised one
    step by strong significance. Detection happens as soon as a change is significant, usually with a
    partly changed window, so significance alone would call every change LOW."""
    small, medium, large = EFFECT_THRESHOLDS[test]
    strong = adjusted_p < alpha * 1e-1
    if effect >= large and adjusted_p < alpha * 1e-2:
        return "CRITICAL"
    if effect >= large or (effect >= medium and strong):
        return "HIGH"
    if effect >= medium or (effect >= small and strong):
        return "MEDIUM"
    return "LOW"


# The BASIS channel (streams.drift.basis): a short reference (200 events) and current window (10),
# checked every 5 events, so a de-peg is reported within tens of events.
# (No variance test: its variance_test is the one earlier releases wrote, so a restored checkpoint's
# basis configuration reads as unchanged; no persistence, as they had none: a de-peg is reported at once.)
BASIS_CONFIG = DriftConfig(window=200, current_window=10, check_every=5, variance_tests=False,
                           variance_test="volatility", persist_ms=0)
