"""Windowed two-sample drift tests and the alert decisions built on them.

A *channel* is a family of streams tested together: feature drift (KS per feature), variance change
(F-test per feature), concept drift (Welch t and Mann-Whitney U on the per-event log-loss) and
prediction drift (KS on the predicted probability). Every ``check_every`` events a channel compares
its *reference* window with its *current* window (the last ``window`` events):

* reference ``fixed``: the first ``window`` events after start (or after a re-base);
  ``rolling``: the ``window`` events just before the current window.
* While an incident is open, every rejecting check re-bases the reference on the current window
  (``rebase_on_alert``), so the reference follows the new regime and one change gives one incident.

Tests equal scipy on the same windows: ``ks_2samp(method="asymp")``, ``ttest_ind(equal_var=False)``,
``mannwhitneyu(method="asymptotic")``, ``levene(center="median")`` (the default variance test: market
features are heavy-tailed, where the F-test's normality assumption breaks) and the two-sided F-test
from ``scipy.stats.f``. Checks run on
hopping windows: the reference is sorted once, the current window once per check, so the amortised
cost per event and stream is ``O(window log window / check_every)``.

Serial correlation: feature, loss and probability streams are autocorrelated (a 20-tick indicator
moves little from one tick to the next), which breaks the tests' independence assumption and would
raise alarms on most no-drift windows. Each check therefore thins both windows to every ``tau``-th
value, ``tau`` the integrated autocorrelation time estimated by batch means
(:func:`effective_size`), and tests the thinned samples; the statistics equal scipy's on those
samples.

Multiple testing: the p-values of one check are corrected together (Bonferroni, or Benjamini-Hochberg
with ``correction="bh"``), so a check of 25 features raises a false alarm with probability at most
``alpha`` under no drift, and the expected false alarms are at most
``alpha * 10_000 / check_every`` per 10k events and channel (fewer in practice: overlapping windows
are correlated).

Incidents below ``min_severity`` are tracked (and de-duplicated) but not published.

Incidents: an alert opens (FIRING) when a check rejects; further rejections of the same channel are
de-duplicated unless their severity is higher (then the FIRING record is re-published, same alert
id, new severity); after ``resolve_after`` clean checks in a row a RESOLVED record with the same alert id
follows.

>>> import random
>>> rng = random.Random(0)
>>> monitor = DriftMonitor("X", DriftConfig(window=200, check_every=50, variance_tests=False))
>>> alerts = []
>>> for i in range(1200):
...     shift = 3.0 if i >= 600 else 0.0
...     alerts += monitor.update_features({"a": rng.gauss(shift, 1.0)}, 1_700_000_000_000 + i)
>>> [(a["kind"], a["status"], a["affected_features"]) for a in alerts][:1]
[('FEATURE', 'FIRING', ['a'])]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats
from scipy.stats._ksstats import _kolmogn  # kstwo's own sf, without its per-call overhead

SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
# Effect-size thresholds (small, medium, large) per test.
EFFECT_THRESHOLDS = {
    "ks_2samp": (0.1, 0.2, 0.3),
    "welch_t": (0.2, 0.5, 0.8),
    "mannwhitney_u": (0.05, 0.15, 0.25),
    "f_test": (0.2, 0.5, 1.0),
    "levene": (0.2, 0.5, 1.0),
}


def ks_test(reference_sorted: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sided two-sample KS; the same statistic and asymptotic p-value as scipy's ks_2samp."""
    d, en = ks_statistic(reference_sorted, current)
    return d, ks_p_value(d, en)


def ks_p_value(d: float, en: int) -> float:
    # kstwo.sf without the generic rv_continuous wrapper (~200 µs a call): the same function it calls.
    return float(np.clip(_kolmogn(en, d, cdf=False), 0, 1))


# Screening of clearly insignificant KS results (see KsScreen); its level must stay above any alpha.
KS_SCREEN_P = 0.25


class KsScreen:
    """Skips the exact KS p-value (~150 µs) when it cannot matter.

    For a fixed effective size ``en`` the p-value falls as ``d`` grows. The screen remembers, per
    ``en``, the largest ``d`` whose exact p-value was above ``KS_SCREEN_P``; a later ``d`` not above it
    has an exact p-value above ``KS_SCREEN_P`` as well, so it can never be significant at any alpha
    below that (Bonferroni or Benjamini-Hochberg). Such results are reported with the asymptotic
    Kolmogorov p-value, floored at ``KS_SCREEN_P`` (an approximation for display only); every p-value
    that could raise an alarm is exact and equal to scipy's.
    """

    def __init__(self):
        self.safe_d: dict[int, float] = {}

    def p_value(self, d: float, en: int) -> float:
        if d <= self.safe_d.get(en, -1.0):
            return max(KS_SCREEN_P, float(special.kolmogorov(math.sqrt(en) * d)))
        p = ks_p_value(d, en)
        if p > KS_SCREEN_P and d > self.safe_d.get(en, -1.0):
            self.safe_d[en] = d
        return p


def ks_statistic(reference_sorted: np.ndarray, current: np.ndarray) -> tuple[float, int]:
    """KS distance and the effective sample size ``round(n m / (n + m))`` its p-value uses."""
    current_sorted = np.sort(current)
    n1, n2 = reference_sorted.shape[0], current_sorted.shape[0]
    both = np.concatenate([reference_sorted, current_sorted])
    cdf1 = np.searchsorted(reference_sorted, both, side="right") / n1
    cdf2 = np.searchsorted(current_sorted, both, side="right") / n2
    diffs = cdf1 - cdf2
    d = float(max(np.clip(-diffs.min(), 0, 1), diffs.max()))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    return d, int(np.round(m * n / (m + n)))


def _mean_var(x: np.ndarray) -> tuple[float, float]:
    return float(np.mean(x)), float(np.var(x, ddof=1))


def welch_test(reference: np.ndarray, current: np.ndarray, alternative: str = "two-sided") -> tuple[float, float, float]:
    """Welch's t of reference minus current: (t, p, Cohen's d with the pooled sd).

    ``alternative="less"``: the reference mean is below the current one (for a loss: it got worse).
    """
    m1, v1 = _mean_var(reference)
    m2, v2 = _mean_var(current)
    n1, n2 = reference.shape[0], current.shape[0]
    se2 = v1 / n1 + v2 / n2
    if se2 <= 0:
        return 0.0, 1.0, 0.0
    t = (m1 - m2) / math.sqrt(se2)
    df = se2 * se2 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
    if alternative == "less":
        p = float(special.stdtr(df, t))
    else:
        p = float(2 * special.stdtr(df, -abs(t)))
    pooled = math.sqrt((v1 + v2) / 2)
    return t, p, abs(m2 - m1) / pooled if pooled > 0 else 0.0


def mann_whitney(reference: np.ndarray, current: np.ndarray, alternative: str = "two-sided") -> tuple[float, float, float]:
    """Mann-Whitney U of the reference (asymptotic, continuity-corrected, tie-corrected), p, |AUC-0.5|.

    ``alternative="less"``: the reference tends to be smaller than the current window.
    """
    n1, n2 = reference.shape[0], current.shape[0]
    ranks = stats.rankdata(np.concatenate([reference, current]))
    r1 = float(ranks[:n1].sum())
    u1 = r1 - n1 * (n1 + 1) / 2
    u2 = n1 * n2 - u1
    u = max(u1, u2) if alternative == "two-sided" else u2
    n = n1 + n2
    _, counts = np.unique(ranks, return_counts=True)
    tie_term = float((counts**3 - counts).sum())
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    if sigma == 0:
        return u1, 1.0, 0.0
    z = (u - n1 * n2 / 2 - 0.5) / sigma
    p = float(min(2 * special.ndtr(-z), 1.0)) if alternative == "two-sided" else float(special.ndtr(-z))
    return u1, p, abs(u1 / (n1 * n2) - 0.5)


def f_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float, float]:
    """Two-sided F-test of equal variances: (F = var_current / var_reference, p, |ln F|)."""
    v1 = float(np.var(reference, ddof=1))
    v2 = float(np.var(current, ddof=1))
    if v1 <= 0 or v2 <= 0:
        return 1.0, 1.0, 0.0
    f = v2 / v1
    dfn, dfd = current.shape[0] - 1, reference.shape[0] - 1
    p = float(min(1.0, 2 * min(special.fdtr(dfn, dfd, f), special.fdtrc(dfn, dfd, f))))
    return f, p, abs(math.log(f))


def levene_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float, float]:
    """Brown-Forsythe (Levene, median-centred) test of equal variances: (W, p, |ln of the MAD ratio|).

    Robust to the heavy tails of volume and return features, where the F-test's normality assumption
    fails; equals ``scipy.stats.levene(reference, current, center="median")``.
    """
    z1 = np.abs(reference - np.median(reference))
    z2 = np.abs(current - np.median(current))
    n1, n2 = z1.shape[0], z2.shape[0]
    m1, m2 = float(np.mean(z1)), float(np.mean(z2))
    n = n1 + n2
    grand = (n1 * m1 + n2 * m2) / n
    between = n1 * (m1 - grand) ** 2 + n2 * (m2 - grand) ** 2
    within = float(np.sum((z1 - m1) ** 2) + np.sum((z2 - m2) ** 2))
    if within <= 0:
        return 0.0, 1.0, 0.0
    w = (n - 2) * between / within
    p = float(special.fdtrc(1, n - 2, w))
    effect = abs(math.log(m2 / m1)) if m1 > 0 and m2 > 0 else 0.0
    return w, p, effect


def effective_size(window: np.ndarray, batches: int = 20) -> float:
    """Effective sample size of a time-ordered window by batch means: ``k s^2 / s_B^2`` where ``s_B^2``
    is the variance of the means of ``k`` consecutive batches (it captures autocorrelation at every
    lag up to the batch length, not only lag 1). Between 2 and n."""
    n = window.shape[0]
    size = n // batches
    if size < 2:
        return float(n)
    trimmed = window[: size * batches]
    variance = float(trimmed.var())
    if variance == 0:
        return float(n)
    batch_variance = float(trimmed.reshape(batches, size).mean(axis=1).var())
    if batch_variance == 0:
        return float(n)
    return float(min(n, max(2.0, batches * variance / batch_variance)))


def adjust(p_values: list[float], correction: str) -> list[float]:
    """Family-wise adjusted p-values: Bonferroni, or Benjamini-Hochberg step-up."""
    m = len(p_values)
    if correction == "bonferroni":
        return [min(1.0, p * m) for p in p_values]
    if correction == "bh":
        order = sorted(range(m), key=p_values.__getitem__)
        adjusted = [0.0] * m
        running = 1.0
        for rank in range(m, 0, -1):
            i = order[rank - 1]
            running = min(running, p_values[i] * m / rank)
            adjusted[i] = running
        return adjusted
    if correction == "none":
        return list(p_values)
    raise ValueError(f"unknown correction {correction!r}: bonferroni, bh or none")


@dataclass(frozen=True)
class DriftConfig:
    window: int = 500
    check_every: int = 50
    alpha: float = 0.001
    correction: str = "bonferroni"
    reference: str = "fixed"
    rebase_on_alert: bool = True
    resolve_after: int = 3
    variance_tests: bool = True
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
        if not 0 < self.alpha < KS_SCREEN_P:
            raise ValueError(f"alpha must be in (0, {KS_SCREEN_P})")
        if self.reference not in ("fixed", "rolling"):
            raise ValueError("reference must be 'fixed' or 'rolling'")
        adjust([0.5], self.correction)

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


# The screen only caches a property of the KS distribution, so one per process serves every channel.
KS_SCREEN = KsScreen()


class Channel:
    """Reference and current windows for a family of streams, plus its incident state."""

    def __init__(self, kind: str, streams: tuple[str, ...], config: DriftConfig):
        self.kind = kind
        self.streams = streams
        self.config = config
        w = config.window
        size = 2 * w if config.reference == "rolling" else w
        self.buffer = np.full((size, len(streams)), np.nan)
        self.times = np.zeros(size, dtype=np.int64)
        self.count = 0
        self.seen = 0
        self.reference: np.ndarray | None = None
        self.reference_sorted: list[np.ndarray] = []
        self.reference_columns: list[np.ndarray] = []
        self.reference_tau: list[int] = []
        self.reference_times = (0, 0)
        self.since_check = 0
        self.open_alert: dict[str, Any] | None = None
        self.clean_checks = 0
        self.last_results: list[tuple[str, str, float, float, float]] = []

    def _window(self, newest: int) -> tuple[np.ndarray, np.ndarray]:
        size = self.buffer.shape[0]
        idx = (np.arange(newest) + (self.count - newest)) % size
        return self.buffer[idx], self.times[idx]

    def _set_reference(self, data: np.ndarray, times: np.ndarray) -> None:
        self.reference = data
        self.reference_columns = [col[~np.isnan(col)] for col in data.T]
        self.reference_sorted = [np.sort(col) for col in self.reference_columns]
        self.reference_tau = [max(1, round(col.shape[0] / effective_size(col))) if col.shape[0] else 1
                              for col in self.reference_columns]
        self.reference_times = (int(times[0]), int(times[-1]))

    def add(self, row: list[float], time_ms: int) -> bool:
        """Store one event; True when a check is due."""
        self.seen += 1
        if self.seen <= self.config.warmup_events:
            return False  # models and indicators still settling: not a reference yet
        size = self.buffer.shape[0]
        self.buffer[self.count % size] = row
        self.times[self.count % size] = time_ms
        self.count += 1
        w = self.config.window
        if self.config.reference == "fixed" and self.reference is None and self.count == w:
            self._set_reference(*self._window(w))
            self.since_check = 0
            return False
        if self.reference is None and self.config.reference == "fixed":
            return False
        if self.config.reference == "rolling" and self.count < 2 * w:
            return False
        self.since_check += 1
        if self.since_check >= self.config.check_every:
            self.since_check = 0
            return True
        return False

    def check(self) -> list[tuple[str, str, float, float, float, int]]:
        """[(stream, test, statistic, p, effect, thinning step)] on the current windows."""
        w = self.config.window
        if self.config.reference == "rolling":
            both, times = self._window(2 * w)
            self._set_reference(both[:w], times[:w])
        current, times = self._window(w)
        self.current_times = (int(times[0]), int(times[-1]))
        results = []
        for j, stream in enumerate(self.streams):
            cur = current[:, j]
            cur = cur[~np.isnan(cur)]
            ref = self.reference_columns[j]
            if cur.shape[0] < 10 or ref.shape[0] < 10:
                continue
            # Thin both windows to roughly independent samples (every tau-th value, tau the larger
            # integrated autocorrelation time of the two), so the tests' independence holds.
            tau = max(1, round(cur.shape[0] / effective_size(cur)), self.reference_tau[j])
            if tau > 1:
                cur = cur[::tau]
                ref = ref[::tau]
            ref_sorted = np.sort(ref) if tau > 1 else self.reference_sorted[j]
            if cur.shape[0] < 8 or ref_sorted.shape[0] < 8:
                continue
            if self.kind in ("FEATURE", "PREDICTION"):
                d, en = ks_statistic(ref_sorted, cur)
                p = KS_SCREEN.p_value(d, en)
                results.append((stream, "ks_2samp", d, p, d, tau))
            elif self.kind == "VARIANCE":
                if self.config.variance_test == "f_test":
                    f, p, effect = f_test(ref_sorted, cur)
                else:
                    f, p, effect = levene_test(ref_sorted, cur)
                results.append((stream, self.config.variance_test, f, p, effect, tau))
            elif self.kind == "CONCEPT":
                # Concept drift is the loss getting worse: one-sided (a model that improves is fine).
                t, p, effect = welch_test(ref, cur, alternative="less")
                results.append((stream, "welch_t", t, p, effect, tau))
                u, p, effect = mann_whitney(ref_sorted, cur, alternative="less")
                results.append((stream, "mannwhitney_u", u, p, effect, tau))
        self.last_results = results
        return results

    def rebase(self) -> None:
        self._set_reference(*self._window(self.config.window))


class DriftMonitor:
    """All drift channels of one symbol. Returns DriftAlert records (``schemas/drift_alert.avsc``)."""

    def __init__(self, symbol: str, config: DriftConfig | None = None):
        self.symbol = symbol
        self.config = config or DriftConfig()
        self.channels: dict[str, Channel] = {}
        self.sequence = 0

    def _channel(self, kind: str, streams: tuple[str, ...]) -> Channel:
        channel = self.channels.get(kind)
        if channel is None:
            channel = self.channels[kind] = Channel(kind, streams, self.config)
        return channel

    def update_features(self, values: dict[str, float], time_ms: int,
                        names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        if "FEATURE" not in self.channels:
            names = names or tuple(sorted(values))
        channel = self._channel("FEATURE", names or ())
        row = [values.get(name, math.nan) for name in channel.streams]
        alerts = self._run(channel, row, time_ms)
        if self.config.variance_tests:
            alerts += self._run(self._channel("VARIANCE", channel.streams), row, time_ms)
        return alerts

    def update_error(self, loss: float, time_ms: int) -> list[dict[str, Any]]:
        return self._run(self._channel("CONCEPT", ("log_loss",)), [loss], time_ms)

    def update_prediction(self, p_up: float, time_ms: int) -> list[dict[str, Any]]:
        return self._run(self._channel("PREDICTION", ("probability_up",)), [p_up], time_ms)

    def _publishable(self, alert: dict[str, Any]) -> bool:
        return SEVERITIES.index(alert["severity"]) >= SEVERITIES.index(self.config.min_severity)

    def _run(self, channel: Channel, row: list[float], time_ms: int) -> list[dict[str, Any]]:
        if not channel.add(row, time_ms):
            return []
        results = channel.check()
        if not results:
            return []
        adjusted = adjust([r[3] for r in results], self.config.correction)
        rejected = [(r, a) for r, a in zip(results, adjusted, strict=True) if a < self.config.alpha]
        if rejected:
            channel.clean_checks = 0
            (stream, test, statistic, p, effect, _), adj = min(rejected, key=lambda item: item[1])
            level = severity(adj, effect, test, self.config.alpha)
            opened = channel.open_alert
            if opened is not None and SEVERITIES.index(level) <= SEVERITIES.index(opened["severity"]):
                # Same incident, no worse: follow the new regime so it can resolve once stable.
                if self.config.rebase_on_alert:
                    channel.rebase()
                return []
            if opened is None:
                self.sequence += 1
            alert = {
                "alert_id": opened["alert_id"] if opened else f"{self.symbol}-{channel.kind.lower()}-{time_ms}-{self.sequence}",
                "symbol": self.symbol, "kind": channel.kind, "test_name": test, "statistic": float(statistic),
                "p_value": float(p), "adjusted_p_value": float(adj), "effect_size": float(effect),
                "reference_start_ms": channel.reference_times[0], "reference_end_ms": channel.reference_times[1],
                "current_start_ms": channel.current_times[0], "current_end_ms": channel.current_times[1],
                "severity": level, "status": "FIRING",
                "affected_features": sorted({r[0] for r, _ in rejected}),
                "recommended_action": _action(channel.kind, level), "created_time_ms": time_ms,
            }
            channel.open_alert = alert
            if self.config.rebase_on_alert:
                channel.rebase()
            return [alert] if self._publishable(alert) else []
        if channel.open_alert is not None:
            channel.clean_checks += 1
            if channel.clean_checks >= self.config.resolve_after:
                resolved = {**channel.open_alert, "status": "RESOLVED", "created_time_ms": time_ms,
                            "current_start_ms": channel.current_times[0], "current_end_ms": channel.current_times[1]}
                channel.open_alert = None
                channel.clean_checks = 0
                return [resolved] if self._publishable(resolved) else []
        return []


def _action(kind: str, level: str) -> str:
    if kind == "CONCEPT" and level in ("HIGH", "CRITICAL"):
        return "reset_member"
    if kind == "CONCEPT":
        return "raise_learning_rate"
    return "rebase_reference"
