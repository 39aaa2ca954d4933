"""Drift configuration and the severity of a rejection."""

from __future__ import annotations

from dataclasses import dataclass

from streams.drift.statistics import adjust

SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
# Effect-size thresholds (small, medium, large) per test.
EFFECT_THRESHOLDS = {
    "ks_2samp": (0.1, 0.2, 0.3),
    "welch_t": (0.2, 0.5, 0.8),
    "mannwhitney_u": (0.05, 0.15, 0.25),
    "f_test": (0.2, 0.5, 1.0),
    "levene": (0.2, 0.5, 1.0),
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
    variance_test: str = "levene"
    warmup_events: int = 0
    min_severity: str = "LOW"

    def __post_init__(self):
        if self.variance_test not in ("levene", "f_test"):
            raise ValueError("variance_test must be 'levene' or 'f_test'")
        if self.min_severity not in SEVERITIES:
            raise ValueError(f"min_severity must be one of {', '.join(SEVERITIES)}")
        if self.window < 10 or self.check_every < 1:
            raise ValueError("window must be >= 10 and check_every >= 1")
        if not (self.current_window == 0 or self.current_window >= 10):
            raise ValueError("current_window must be 0 (= window) or >= 10")
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must be in (0, 1)")
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
