"""Windowed two-sample drift tests and the alert decisions built on them.

A *channel* is a family of streams tested together: feature drift (KS per feature, plus a two-sided
Welch t per feature with ``mean_test``: a shift of the mean is found with fewer events), variance change
(Brown-Forsythe or F-test per feature), concept drift (Welch t and Mann-Whitney U on the per-event log-loss) and
prediction drift (KS on the predicted probability; a rejection is confirmed against the reference
inputs re-scored by the current model, see :meth:`DriftMonitor.update_prediction`). Every ``check_every`` events a channel compares
its *reference* window (``window`` events) with its *current* window (the last ``current_window``
events; shorter than the reference, so a change fills it sooner and is detected earlier):

* reference ``fixed``: the first ``window`` events after start (or after a re-base);
  ``rolling``: the ``window`` events before the last ``window`` events.
* A stream whose values stay correlated over ``tau`` events gets a current window of at least
  ``CURRENT_SAMPLES * tau`` events (see serial correlation below).
* Every rejecting check re-bases the reference (``rebase_on_alert``): it is collected again from the
  next ``window`` events, so it follows the new regime and one change gives one incident. Until it
  has filled, the channel does not test (a second change within ``window`` events of a detection is
  seen only after that).

Tests equal scipy on the same windows: ``ks_2samp(method="asymp")``, ``ttest_ind(equal_var=False)``,
``mannwhitneyu(method="asymptotic")``, ``levene(center="median")`` (the default variance test: market
features are heavy-tailed, where the F-test's normality assumption breaks) and the two-sided F-test
from ``scipy.stats.f``. Checks run on hopping windows, so the amortised cost per event and stream is
``O(window log window / check_every)``; the KS checks of all streams of a channel are one sort of one
matrix (:func:`ks_statistics`), and exact KS p-values are computed only where they could reject
(:func:`ks_p_values`).

Serial correlation: feature, loss and probability streams are autocorrelated (a 20-tick indicator
moves little from one tick to the next), which breaks the tests' independence assumption and would
raise alarms on most no-drift windows. Each check therefore thins both windows to every ``tau``-th
value, ``tau`` the first lag at which the autocorrelation, pooled over the recent windows of the last
checks, has died out (:func:`first_lag_below`), and tests the thinned samples; the statistics equal
scipy's on those samples. Mean tests keep every value instead: the feature channel's Welch t
multiplies the squared standard error by the variance inflation of a mean, ``1 + 2 * sum of the
autocorrelations`` at the lags before ``tau``, and divides the degrees of freedom by it (scipy's
statistic and p-value when it is 1), over current windows of several lengths (``MEAN_SCALES``,
Bonferroni over them: a short one reacts sooner to a large shift, a long one sees a small shift in a
noisy stream); the loss stream's Welch t tests the means of blocks of ``tau`` values.

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
from collections.abc import Callable
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


def ks_p_values(distances: np.ndarray, sizes: np.ndarray, exact_below: float) -> np.ndarray:
    """KS p-values, exact (scipy's ``kstwo.sf``, ~3 ms each at these sizes) wherever they could be
    below ``exact_below``.

    For a size ``en`` the exact p-value falls as the distance grows, and the one-sided exact tail
    ``special.smirnov(en, d) = P(D+ >= d)`` is a lower bound of it. :func:`screening_distance` is the
    largest distance whose bound is still ``>= exact_below``; any distance not above it has an exact
    p-value ``>= exact_below``. Those results are reported with the asymptotic Kolmogorov value
    floored at ``exact_below`` (an approximation, for display). With ``exact_below`` at the
    per-stream level where a rejection becomes possible, no rejection depends on an approximation.
    """
    p = np.maximum(exact_below, np.minimum(1.0, special.kolmogorov(np.sqrt(sizes) * distances))).tolist()
    for i, (d, en) in enumerate(zip(distances.tolist(), sizes.tolist(), strict=True)):
        if d > screening_distance(en, exact_below):
            p[i] = ks_p_value(d, en)
    return np.array(p)


_SCREENING_DISTANCES: dict[tuple[int, float], float] = {}


def screening_distance(en: int, level: float) -> float:
    """A KS distance ``d`` with ``special.smirnov(en, d) >= level`` (the largest, to 1e-7, for ``level``
    rounded up to a power of two; bisection, cached: a few ms once per size and level)."""
    # Levels are rounded up to a power of two (a distance screened at a higher level is screened at
    # this one too), so a worker meets a few levels per size, not one per number of tested streams.
    level = 2.0 ** math.ceil(math.log2(level))
    key = (en, level)
    found = _SCREENING_DISTANCES.get(key)
    if found is None:
        low, high = 0.0, 1.0
        for _ in range(24):
            middle = (low + high) / 2
            if special.smirnov(en, middle) >= level:
                low = middle
            else:
                high = middle
        found = _SCREENING_DISTANCES[key] = low
    return found


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


def _padded(samples: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Samples of different sizes as the rows of one matrix, padded with NaN, and their sizes."""
    sizes = np.array([x.shape[0] for x in samples])
    out = np.full((len(samples), int(sizes.max())), np.nan)
    for i, x in enumerate(samples):
        out[i, : sizes[i]] = x
    return out, sizes


def welch_tests(references: list[np.ndarray], currents: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-sided :func:`welch_test` of many (reference, current) pairs at once (rows padded with NaN):
    arrays of t, p and effect (Cohen's d with the pooled sd), each equal to the pair's own test."""
    def moments(samples: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out, sizes = _padded(samples)
        return np.nanmean(out, axis=1), np.nanvar(out, axis=1, ddof=1), sizes.astype(float)

    return welch_from_moments(*moments(references), *moments(currents))


def welch_from_moments(m1: np.ndarray, v1: np.ndarray, n1: np.ndarray, m2: np.ndarray, v2: np.ndarray,
                       n2: np.ndarray, inflation: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-sided Welch t from the samples' means, variances (ddof 1) and sizes: arrays of t, p and
    Cohen's d (pooled sd).

    ``inflation`` is the factor by which serial correlation inflates the variance of a mean,
    ``1 + 2 * sum of the autocorrelations``: the squared standard error is multiplied by it and the
    Welch-Satterthwaite degrees of freedom divided by it (each sample holds ``n / inflation``
    independent values' worth of information). At 1 this is scipy's ``ttest_ind(equal_var=False)``.
    """
    se2 = v1 / n1 + v2 / n2
    degenerate = se2 <= 0
    safe_se2 = np.where(degenerate, 1.0, se2)
    t = np.where(degenerate, 0.0, (m1 - m2) / np.sqrt(safe_se2 * inflation))
    df = safe_se2 * safe_se2 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1) + degenerate) / inflation
    p = np.where(degenerate, 1.0, 2 * special.stdtr(df, -np.abs(t)))
    pooled = np.sqrt((v1 + v2) / 2)
    effect = np.where(pooled > 0, np.abs(m2 - m1) / np.where(pooled > 0, pooled, 1.0), 0.0)
    return t, p, np.where(degenerate, 0.0, effect)


def levene_tests(references: list[np.ndarray], currents: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`levene_test` of many (reference, current) pairs at once (rows padded with NaN):
    arrays of W, p and effect, each equal to the pair's own test."""
    def deviations(samples: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        out, sizes = _padded(samples)
        # Medians from one sort (NaN padding sorts last); np.nanmedian loops in Python per row.
        ordered = np.sort(out, axis=1)
        rows = np.arange(len(samples))
        medians = (ordered[rows, (sizes - 1) // 2] + ordered[rows, sizes // 2]) / 2
        return np.abs(out - medians[:, None]), sizes

    z1, n1 = deviations(references)
    z2, n2 = deviations(currents)
    m1, m2 = np.nanmean(z1, axis=1), np.nanmean(z2, axis=1)
    n = n1 + n2
    grand = (n1 * m1 + n2 * m2) / n
    between = n1 * (m1 - grand) ** 2 + n2 * (m2 - grand) ** 2
    within = np.nansum((z1 - m1[:, None]) ** 2, axis=1) + np.nansum((z2 - m2[:, None]) ** 2, axis=1)
    degenerate = within <= 0
    w = np.where(degenerate, 0.0, (n - 2) * between / np.where(degenerate, 1.0, within))
    p = np.where(degenerate, 1.0, special.fdtrc(1, n - 2, w))
    both_positive = (m1 > 0) & (m2 > 0)
    effect = np.where(both_positive, np.abs(np.log(np.where(both_positive, m2 / np.where(m1 > 0, m1, 1.0), 1.0))), 0.0)
    return w, p, effect


# Thinning keeps every tau-th value, tau the first lag whose (pooled) autocorrelation falls below this
# (or below two standard errors of an autocorrelation estimate, 2 / sqrt(n), in short windows).
DECORRELATED = 0.05
# Fewest values a thinned window keeps, so a slowly moving stream still gets a (weak) test.
MIN_THINNED = 8
# Checks whose recent windows the pooled autocorrelations average over (a running mean, then
# exponential forgetting at this horizon).
POOLED_WINDOWS = 40
# Thinned values a current window holds at least: its length is max(current_window, this x tau),
# capped at the reference window.
CURRENT_SAMPLES = 16
# The mean test (Welch t) looks at several current windows, as multiples of the stream's current
# window: a short one finds a large shift sooner, a long one a small shift in a noisy stream at all.
MEAN_SCALES = (0.5, 1.0, 2.0)


def decorrelation_lags(columns: np.ndarray) -> np.ndarray:
    """Per column of a time-ordered ``(n, k)`` window without NaN: the smallest lag at which the
    sample autocorrelation is below ``max(DECORRELATED, 2 / sqrt(n))`` (1 for a constant column), at
    most ``n // MIN_THINNED``.

    Why not the integrated autocorrelation time: thinning at it leaves neighbours of a slowly
    mixing stream correlated (for a return with an AR(0.9) component, 0.16 at lag 8), and the tests
    then treat a correlated sample as independent. Thinning where the correlation has died out keeps
    the thinned sample close to independent; the autocorrelations of all columns come from one FFT.
    (Summing the autocorrelations left at tau, 2 tau and 3 tau was tried: far noisier at the long
    lags a 500-event window offers, and it raised more false alarms.)

    >>> rng = np.random.default_rng(0)
    >>> ar = np.zeros(2000)
    >>> for i in range(1, 2000): ar[i] = 0.9 * ar[i - 1] + rng.normal()
    >>> [int(v) for v in decorrelation_lags(np.column_stack([rng.normal(size=2000), ar]))]
    [1, 37]
    """
    n = columns.shape[0]
    return first_lag_below(autocorrelations(columns, max(1, n // MIN_THINNED)), max(DECORRELATED, 2 / math.sqrt(n)))


def autocorrelations(columns: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelations at lags ``0..max_lag`` of each column of a ``(n, k)`` window without
    NaN (one FFT for all columns); a constant column has 0 beyond lag 0."""
    n = columns.shape[0]
    centred = columns - columns.mean(axis=0)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, n=size, axis=0)
    autocovariance = np.fft.irfft(spectrum.real ** 2 + spectrum.imag ** 2, n=size, axis=0)[: max_lag + 1]
    variance = autocovariance[0]
    constant = variance <= 1e-300
    correlation = autocovariance / np.where(constant, 1.0, variance)
    correlation[1:, constant] = 0.0
    correlation[0] = 1.0
    return correlation


def first_lag_below(correlation: np.ndarray, threshold: float) -> np.ndarray:
    """Per column of ``autocorrelations``: the first lag below ``threshold`` (the largest lag if none)."""
    below = correlation[1:] < threshold
    return np.where(below.any(axis=0), below.argmax(axis=0) + 1, correlation.shape[0] - 1)


def ks_statistics(references: list[np.ndarray], currents: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Two-sample KS distances of many (reference, current) pairs at once, and the effective sizes
    ``round(n m / (n + m))``; each distance equals :func:`ks_statistic` (and scipy's) on its pair.

    One padded matrix, one sort along the rows: the empirical CDFs are the running counts of each
    sample's values, read at the last value of every run of equal values (scipy evaluates both
    CDFs just after each data value, ties included).
    """
    rows = len(references)
    n1 = np.array([r.shape[0] for r in references])
    n2 = np.array([c.shape[0] for c in currents])
    width1, width2 = int(n1.max()), int(n2.max())
    values = np.full((rows, width1 + width2), np.inf)
    origin = np.zeros((rows, width1 + width2), dtype=np.int8)
    for i, (reference, current) in enumerate(zip(references, currents, strict=True)):
        values[i, : n1[i]] = reference
        origin[i, : n1[i]] = 1
        values[i, width1: width1 + n2[i]] = current
        origin[i, width1: width1 + n2[i]] = 2
    # Order within a run of ties does not matter (only its last position is read): no stable sort.
    order = np.argsort(values, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    origin = np.take_along_axis(origin, order, axis=1)
    cdf1 = np.cumsum(origin == 1, axis=1) / n1[:, None]
    cdf2 = np.cumsum(origin == 2, axis=1) / n2[:, None]
    gaps = np.abs(cdf1 - cdf2)
    gaps[:, :-1][values[:, :-1] == values[:, 1:]] = 0.0  # inside a run of ties: not a CDF point
    m = np.maximum(n1, n2).astype(float)
    n = np.minimum(n1, n2).astype(float)
    return np.minimum(gaps.max(axis=1), 1.0), np.round(m * n / (m + n)).astype(int)


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
        self.reference_columns: list[np.ndarray] = []
        self.reference_tau = np.ones(len(streams), dtype=int)
        # Only the feature channel runs the serial-correlation-corrected mean test.
        self.mean_test = kind == "FEATURE" and config.mean_test
        self.inflation = np.ones(len(streams))
        self.reference_moments = (np.zeros(len(streams)), np.zeros(len(streams)), np.zeros(len(streams)))
        # Autocorrelations pooled over the recent windows of the last checks: one 500-event window
        # estimates a slowly mixing stream's correlations poorly.
        self.max_lag = max(1, w // MIN_THINNED)
        self.pooled_correlation = np.zeros((self.max_lag + 1, len(streams)))
        self.pooled_windows = 0
        self.reference_times = (0, 0)
        self.since_check = 0
        self.open_alert: dict[str, Any] | None = None
        self.clean_checks = 0
        self.last_results: list[tuple[str, str, float, float, float]] = []
        self.fresh_results = False  # last_results not yet read by a metrics exporter
        # Optional per-event inputs (the prediction channel keeps each prediction's features, to re-score
        # the reference with the current model), a ring aligned with the buffer.
        self.payloads: list[Any] | None = None
        self.reference_payloads: list[Any] = []

    def _indices(self, newest: int) -> np.ndarray:
        return (np.arange(newest) + (self.count - newest)) % self.buffer.shape[0]

    def _window(self, newest: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self._indices(newest)
        return self.buffer[idx], self.times[idx]

    def _pool(self, window: np.ndarray) -> None:
        """Fold a window's autocorrelations into the pooled estimate (a running mean over the last
        ``POOLED_WINDOWS`` checks or so) and update the thinning lags."""
        self.pooled_windows += 1
        weight = 1.0 / min(self.pooled_windows, POOLED_WINDOWS)
        correlation = _autocorrelations(window, self.max_lag)
        self.pooled_correlation += weight * (correlation - self.pooled_correlation)
        self.reference_tau = first_lag_below(self.pooled_correlation, DECORRELATED)
        # Variance inflation of a mean by the correlated lags (those before tau); never below 1, so a
        # mean-reverting stream is tested as if independent.
        if not self.mean_test:
            return
        correlated = np.arange(1, self.max_lag + 1)[:, None] < self.reference_tau
        self.inflation = np.maximum(1.0, 1.0 + 2.0 * np.where(correlated, self.pooled_correlation[1:], 0.0).sum(axis=0))

    def _set_reference(self, data: np.ndarray, times: np.ndarray) -> None:
        self.reference = data
        self.reference_columns = [col[~np.isnan(col)] for col in data.T]
        if self.mean_test:
            self._set_reference_moments()
        if self.payloads is not None:
            offset = 0 if self.config.reference == "fixed" else self.config.window
            self.reference_payloads = [self.payloads[i] for i in self._indices(data.shape[0] + offset)[:data.shape[0]]]
        if not self.pooled_windows:
            self._pool(data)
        self.reference_times = (int(times[0]), int(times[-1]))

    def add(self, row: list[float], time_ms: int, payload: Any = None) -> bool:
        """Store one event (and its payload, if any); True when a check is due."""
        self.seen += 1
        if self.seen <= self.config.warmup_events:
            return False  # models and indicators still settling: not a reference yet
        size = self.buffer.shape[0]
        if payload is not None:
            if self.payloads is None:
                self.payloads = [None] * size
            self.payloads[self.count % size] = payload
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

    def rescore_reference(self, rescore: Callable[[Any], float]) -> None:
        """Replace the (single-stream) reference values by ``rescore`` of their payloads: what the
        model as it is now says about the reference inputs."""
        values = np.array([rescore(x) for x in self.reference_payloads], dtype=float)
        self.reference = values[:, None]
        self.reference_columns = [values[~np.isnan(values)]]

    def _set_reference_moments(self) -> None:
        columns = self.reference_columns
        self.reference_moments = (
            np.array([c.mean() if c.shape[0] else math.nan for c in columns]),
            np.array([c.var(ddof=1) if c.shape[0] > 1 else math.nan for c in columns]),
            np.array([float(c.shape[0]) for c in columns]))

    def check(self, pool: bool = True) -> list[tuple[str, str, float, float, float, int]]:
        """[(stream, test, statistic, p, effect, thinning step)] on the current windows."""
        w, cw = self.config.window, self.config.current_size
        if self.config.reference == "rolling":
            both, times = self._window(2 * w)
            self._set_reference(both[:w], times[:w])
        recent, times = self._window(w)
        # Pooled before the test, so a change of the mean inflates the lags it is tested with by
        # 1/POOLED_WINDOWS of its own effect at most.
        if pool:
            self._pool(recent)
        # Thin both windows to roughly independent samples: every tau-th value, tau the decorrelation
        # lag of the pooled autocorrelations. A slowly mixing stream needs a longer current window
        # to hold CURRENT_SAMPLES such values.
        taus = self.reference_tau
        # The loss stream's Welch t takes the means of consecutive blocks of tau values instead: as
        # nearly independent as the thinned values, but every value counts (more power for a shift).
        tested, columns, lengths, references, currents, reference_blocks, current_blocks = [], [], [], [], [], [], []
        longest = cw
        for j, stream in enumerate(self.streams):
            tau = int(taus[j])
            length = min(w, max(cw, CURRENT_SAMPLES * tau))
            whole = recent[w - length:, j]
            whole, reference_whole = whole[~np.isnan(whole)], self.reference_columns[j]
            if whole.shape[0] < 10 or reference_whole.shape[0] < 10:
                continue
            cur, ref = whole[::tau], reference_whole[::tau]
            if cur.shape[0] < MIN_THINNED or ref.shape[0] < MIN_THINNED:
                continue
            if self.kind == "CONCEPT":
                reference_blocks.append(block_means(reference_whole, tau))
                current_blocks.append(block_means(whole, tau))
            longest = max(longest, length)
            tested.append((stream, tau))
            columns.append(j)
            lengths.append(length)
            references.append(ref)
            currents.append(cur)
        if self.mean_test and tested:
            spans = self.mean_spans(np.array(lengths))
            longest = max(longest, int(spans.max()))
        self.current_times = (int(times[w - longest]), int(times[-1]))
        results = []
        if not tested:
            self.last_results = results
            return results
        if self.kind in ("FEATURE", "PREDICTION"):
            distances, sizes = ks_statistics(references, currents)
            tests = len(tested) * (2 if self.mean_test else 1)
            p_values = ks_p_values(distances, sizes, self._rejectable_below(tests))
            for (stream, tau), d, p in zip(tested, distances.tolist(), p_values.tolist(), strict=True):
                results.append((stream, "ks_2samp", d, p, d, tau))
            if self.mean_test:
                statistics, p_values, effects = self._mean_tests(recent, np.array(columns), spans)
                for (stream, tau), t, p, effect in zip(tested, statistics.tolist(), p_values.tolist(),
                                                       effects.tolist(), strict=True):
                    results.append((stream, "welch_t", t, p, effect, tau))
        elif self.kind == "VARIANCE" and self.config.variance_test == "levene":
            statistics, p_values, effects = levene_tests(references, currents)
            for (stream, tau), w, p, effect in zip(tested, statistics.tolist(), p_values.tolist(), effects.tolist(),
                                                   strict=True):
                results.append((stream, "levene", w, p, effect, tau))
        for i, ((stream, tau), ref, cur) in enumerate(zip(tested, references, currents, strict=True)):
            if self.kind == "VARIANCE" and self.config.variance_test == "f_test":
                f, p, effect = f_test(ref, cur)
                results.append((stream, "f_test", f, p, effect, tau))
            elif self.kind == "CONCEPT":
                # Concept drift is the loss getting worse: one-sided (a model that improves is fine).
                t, p, effect = welch_test(reference_blocks[i], current_blocks[i], alternative="less")
                results.append((stream, "welch_t", t, p, single_value_effect(effect, tau), tau))
                u, p, effect = mann_whitney(ref, cur, alternative="less")
                results.append((stream, "mannwhitney_u", u, p, effect, tau))
        self.last_results = results
        self.fresh_results = True
        return results

    def mean_spans(self, lengths: np.ndarray) -> np.ndarray:
        """Current windows of the mean test, ``(len(MEAN_SCALES), streams)`` events: the scales times
        each stream's current window, within ``[10, window]``."""
        scaled = np.rint(np.multiply.outer(MEAN_SCALES, lengths)).astype(int)
        return np.clip(scaled, 10, self.config.window)

    def _mean_tests(self, recent: np.ndarray, columns: np.ndarray, spans: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Serial-correlation-corrected Welch t (:func:`welch_from_moments` with the stream's
        ``inflation``) of the reference against each current window of ``spans``; per stream the
        smallest p-value, Bonferroni-corrected over the windows, with that window's t and effect.

        Running sums from the newest event back give every window's moments in one pass; values
        are taken relative to the reference mean, so the sums of squares do not cancel (the
        shifted-data variance formula).
        """
        centre, reference_var, reference_n = (m[columns] for m in self.reference_moments)
        newest_first = recent[::-1][: int(spans.max()), columns]
        present = ~np.isnan(newest_first)
        deviations = np.where(present, newest_first - centre, 0.0)
        counts = np.cumsum(present, axis=0)
        sums = np.cumsum(deviations, axis=0)
        squares = np.cumsum(deviations * deviations, axis=0)
        at = (spans - 1, np.arange(columns.shape[0]))
        n = counts[at].astype(float)
        usable = n >= 2
        n = np.where(usable, n, 2.0)
        s1, s2 = sums[at], squares[at]
        variance = np.maximum(0.0, (s2 - s1 * s1 / n) / (n - 1))
        t, p, effect = welch_from_moments(centre, reference_var, reference_n, centre + s1 / n, variance, n,
                                          self.inflation[columns])
        p = np.where(usable, p, 1.0)
        best = p.argmin(axis=0)
        pick = (best, np.arange(columns.shape[0]))
        return t[pick], np.minimum(1.0, len(MEAN_SCALES) * p[pick]), effect[pick]

    def _rejectable_below(self, tests: int) -> float:
        """Per-test p-value below which some correction of ``tests`` p-values can reject."""
        return self.config.alpha / tests if self.config.correction == "bonferroni" else self.config.alpha

    def rebase(self) -> None:
        """Restart the reference from the events that follow: a reference taken right at a detection
        would mix the old and the new regime (the current window is shorter than the reference) and
        keep the incident alive or resolve it too early. No checks run until it has filled."""
        self.count = 0
        self.reference = None
        self.since_check = 0


def block_means(values: np.ndarray, tau: int) -> np.ndarray:
    """Means of consecutive blocks of ``tau`` values, the oldest incomplete block dropped.

    >>> block_means(np.arange(7.0), 3).tolist()
    [2.0, 5.0]
    """
    blocks = values.shape[0] // tau
    # np.add.reduce: the ndarray.mean wrapper costs more than the sum at these sizes (hot path).
    return np.add.reduce(values[values.shape[0] - blocks * tau:].reshape(blocks, tau), axis=1) / tau


def single_value_effect(block_effect: float, tau: int) -> float:
    """Cohen's d of a mean shift on the scale of single values from the d of block means: a mean of
    ``tau`` values has about 1/sqrt(tau) of their sd (less shrinkage when they are correlated, so
    this errs towards a smaller effect and a lower severity)."""
    return block_effect / math.sqrt(tau)


def _autocorrelations(window: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelations per stream of a window; streams with gaps (NaN) are measured on their values
    (0 beyond lag 0 when too few)."""
    complete = ~np.isnan(window).any(axis=0)
    correlation = np.zeros((max_lag + 1, window.shape[1]))
    correlation[0] = 1.0
    if complete.any():
        correlation[:, complete] = autocorrelations(window[:, complete], max_lag)
    for j in np.flatnonzero(~complete):
        values = window[:, j][~np.isnan(window[:, j])]
        if values.shape[0] >= max(2 * MIN_THINNED, max_lag + 2):
            correlation[:, j] = autocorrelations(values[:, None], max_lag)[:, 0]
    return correlation


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

    def update_prediction(self, p_up: float, time_ms: int, inputs: Any = None,
                          rescore: Callable[[Any], float] | None = None) -> list[dict[str, Any]]:
        """A published probability. With the prediction's ``inputs`` and ``rescore`` (the current
        model's probability for some inputs), a rejection is confirmed against the reference inputs
        re-scored by the model as it is now: a model that keeps learning moves its own output
        distribution, which is not drift of the data. Only a shift the inputs explain is reported;
        otherwise the re-scored values become the reference."""
        return self._run(self._channel("PREDICTION", ("probability_up",)), [p_up], time_ms, inputs, rescore)

    def _publishable(self, alert: dict[str, Any]) -> bool:
        return SEVERITIES.index(alert["severity"]) >= SEVERITIES.index(self.config.min_severity)

    def _run(self, channel: Channel, row: list[float], time_ms: int, payload: Any = None,
             rescore: Callable[[Any], float] | None = None) -> list[dict[str, Any]]:
        if not channel.add(row, time_ms, payload):
            return []
        results = channel.check()
        if not results:
            return []
        adjusted = adjust([r[3] for r in results], self.config.correction)
        rejected = [(r, a) for r, a in zip(results, adjusted, strict=True) if a < self.config.alpha]
        if rejected and rescore is not None and channel.reference_payloads:
            channel.rescore_reference(rescore)
            results = channel.check(pool=False)
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
