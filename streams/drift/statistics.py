"""Two-sample tests of the drift checks, equal to scipy's on the same samples (the tests check it to
1e-12), and the family-wise correction of a check's p-values.

``ks_2samp(method="asymp")``, ``ttest_ind(equal_var=False)``, ``mannwhitneyu(method="asymptotic")``,
``levene(center="median")`` and the two-sided F-test from ``scipy.stats.f``. The KS checks of all
streams of a channel are one sort of one matrix (:func:`ks_statistics`), and exact KS p-values are
computed only where they could reject (:func:`ks_p_values`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats
from scipy.stats._ksstats import _kolmogn  # kstwo's own sf, without its per-call overhead


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


def best_window(t: np.ndarray, p: np.ndarray, effect: np.ndarray, usable: np.ndarray, side: str = "both"
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of Welch tests of one reference against several current windows (rows) per stream (columns):
    per stream the window with the smallest ``side`` p-value, Bonferroni-corrected over the windows,
    with its t and effect. ``side``: "both", "rise" or "fall" (one-sided from the two-sided p; ``t`` is
    reference minus current, as :func:`welch_from_moments` gives it); unusable windows count as p = 1.

    >>> t, p, _ = best_window(np.array([[-3.0], [-5.0]]), np.array([[0.01], [0.001]]), np.ones((2, 1)),
    ...                       np.ones((2, 1), dtype=bool), side="rise")
    >>> t.tolist(), p.tolist()
    ([-5.0], [0.001])
    """
    if side != "both":
        toward = t < 0 if side == "rise" else t > 0
        p = np.where(toward, p / 2, 1.0 - p / 2)
    p = np.where(usable, p, 1.0)
    best = p.argmin(axis=0)
    pick = (best, np.arange(t.shape[1]))
    return t[pick], np.minimum(1.0, t.shape[0] * p[pick]), effect[pick]


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


def column_medians(window: np.ndarray) -> np.ndarray:
    """Median of each column's values (NaN ignored; 0 for a column without any).

    >>> column_medians(np.array([[1.0, np.nan], [3.0, 2.0], [2.0, np.nan], [9.0, 4.0]])).tolist()
    [2.5, 3.0]
    """
    present = ~np.isnan(window)
    full = present.all(axis=0)
    if full.all():
        return _complete_medians(window)
    # Complete columns in one call (the common case: only a few streams have gaps), the rest one by one.
    out = np.zeros(window.shape[1])
    if full.any():
        out[full] = _complete_medians(window[:, full])
    for j in np.flatnonzero(~full):
        ok = present[:, j]
        if ok.any():
            out[j] = _complete_medians(window[ok, j])
    return out


def _complete_medians(values: np.ndarray) -> np.ndarray:
    """``np.median(values, axis=0)`` of values without NaN, from the partition np.median makes and the
    same arithmetic (the middle value, or the sum of the two middle ones over 2), without its
    wrappers: they cost twice the partition in the monitor's checks (2026-12-07, 500 x 21 windows)."""
    n = values.shape[0]
    half = n // 2
    if n == 0:
        return np.median(values, axis=0)
    if n % 2:
        return np.partition(values, half, axis=0)[half]
    part = np.partition(values, (half - 1, half), axis=0)
    return (part[half - 1] + part[half]) / 2
