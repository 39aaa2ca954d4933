"""Serial correlation of drift streams: how far apart values must be to count as independent.

Feature, loss and probability streams are autocorrelated (a 20-tick indicator moves little from one
tick to the next), which breaks the tests' independence assumption and would raise alarms on most
no-drift windows. A channel therefore thins both windows to every ``tau``-th value, ``tau`` the first
lag at which the autocorrelation, pooled over the recent windows of the last checks, has died out
(:func:`first_lag_below`); mean tests keep every value and widen their standard error by the variance
inflation of a mean instead (streams.drift.channel).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.fft import next_fast_len

# (or below two standard errors of an autocorrelation estimate, 2 / sqrt(n), in short windows).
DECORRELATED = 0.05
# Fewest values a thinned window keeps, so a slowly moving stream still gets a (weak) test.
MIN_THINNED = 8
# Checks whose recent windows the pooled autocorrelations average over (a running mean, then
# exponential forgetting at this horizon).
POOLED_WINDOWS = 40


def delayed(held: list[np.ndarray], correlation: np.ndarray, checks: int) -> np.ndarray | None:
    """``correlation`` held back ``checks`` checks: the one ``held`` got that many pushes before, None
    while it holds fewer.

    Why a volatility channel pools its dependence late (streams.drift.channel): a rise of volatility is
    a step in the log sizes of returns, and a step reads as correlation at every lag. Pooled as they
    came, the windows that held a burst widened the test of that burst, and lengthened its current
    windows (the thinning lag of ``ret_1`` went from 17 to 33 events within 240 events of a burst on
    ETHUSDT 2022-08-14). Held back one reference window's worth of checks, the dependence a window is
    tested with comes from before it, as the reference's level does; with no change it is the same
    estimate, a window later.

    >>> held = []
    >>> [delayed(held, np.array([float(k)]), 2) for k in range(4)]
    [None, None, array([0.]), array([1.])]
    """
    held.append(correlation)
    return held.pop(0) if len(held) > checks else None


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


def autocorrelations(columns: np.ndarray, max_lag: int, compact: bool = False) -> np.ndarray:
    """Sample autocorrelations at lags ``0..max_lag`` of each column of a ``(n, k)`` window without
    NaN (one FFT for all columns); a constant column has 0 beyond lag 0. ``compact``: a transform of
    ``n + max_lag`` points or a little more (no wrap-around reaches the lags read), not ``2n``."""
    n = columns.shape[0]
    centred = columns - columns.mean(axis=0)
    size = next_fast_len(n + max_lag, real=True) if compact else 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, n=size, axis=0)
    autocovariance = np.fft.irfft(spectrum.real ** 2 + spectrum.imag ** 2, n=size, axis=0)[: max_lag + 1]
    variance = autocovariance[0]
    constant = variance <= 1e-300
    correlation = autocovariance / np.where(constant, 1.0, variance)
    correlation[1:, constant] = 0.0
    correlation[0] = 1.0
    return correlation


def bartlett_inflation(correlation: np.ndarray) -> np.ndarray:
    """Per column of ``autocorrelations`` (lags ``0..L``): the factor by which serial correlation widens
    the variance of a mean, ``1 + 2 sum_k (1 - k / (L + 1)) rho_k`` over every lag, never below 1.

    >>> [float(v) for v in bartlett_inflation(np.array([[1.0, 1.0], [0.75, -0.9], [0.75, 0.0]]))]
    [2.5, 1.0]
    """
    lags = np.arange(1, correlation.shape[0])[:, None]
    weights = 1.0 - lags / float(correlation.shape[0])
    return np.maximum(1.0, 1.0 + 2.0 * (weights * correlation[1:]).sum(axis=0))


def first_lag_below(correlation: np.ndarray, threshold: float) -> np.ndarray:
    """Per column of ``autocorrelations``: the first lag below ``threshold`` (the largest lag if none)."""
    below = correlation[1:] < threshold
    return np.where(below.any(axis=0), below.argmax(axis=0) + 1, correlation.shape[0] - 1)




def dependence_correlations(window: np.ndarray, medians: np.ndarray, max_lag: int,
                            sides: SideCorrelations | None = None) -> np.ndarray:
    """Per stream and lag, the larger of two autocorrelations: of the absolute deviations from the
    median (volatility clustering, which the values' own autocorrelation does not show) and, with
    ``sides``, of the side of the median each value lies on (dependence of the ranks, which the KS test
    reads, where a few large values hide it from the values' autocorrelation).

    Why the sides (measured 2026-12-03): a thinly traded pair, its one-minute klines stale 80% of the
    time (no trade: price unchanged, volume 0; the shipped kline days and two real days repeated as a
    week, three seeds each, 43,200 events). ``volume_z_20`` of a stale minute is the minute's distance
    below the last 20 minutes' mean, so it moves with that mean for many minutes, while the few traded
    minutes' large values leave its autocorrelation near 0 (-0.01 at lag 1; of the sides 0.51, below
    0.05 after 13 lags). Thinned at lag 1, the KS test treated 100 such values as independent: 33
    FEATURE alerts (7.6 per 10k, the bound being 0.4), none with the sides. On clustered streams
    (`bench/drift_real.py --only clustered_null`) FEATURE 0.49 and 0.69 per 10k became 0.28 and 0.35.
    The shipped series keep their alert counts and detection delays (the capture's FEATURE alert comes
    at the same event, by the Welch t on ``volume_z_20`` instead of KS on ``volume_ratio_20``).

    >>> rng = np.random.default_rng(1)
    >>> spikes = np.where(rng.random(4000) < 0.2, 50.0, 0.0)
    >>> level = np.convolve(spikes, np.ones(20) / 20)[:4000]       # a 20-event mean of rare spikes
    >>> z = np.column_stack([spikes - level])                     # a stale value's distance below it
    >>> only = dependence_correlations(z, np.median(z, axis=0), 40)
    >>> both = dependence_correlations(z, np.median(z, axis=0), 40, SideCorrelations())
    >>> round(float(only[1, 0]), 2), round(float(both[1, 0]), 2)  # at lag 1
    (0.02, 0.4)
    >>> int(first_lag_below(only, DECORRELATED)[0]), int(first_lag_below(both, DECORRELATED)[0])  # thinning lags
    (1, 15)
    """
    correlation = window_autocorrelations(np.abs(window - medians), max_lag)
    return correlation if sides is None else np.maximum(correlation, sides.of(window, medians, max_lag))


class SideCorrelations:
    """The autocorrelations of the side of the median each value lies on, measured at every
    ``EVERY``-th call and reused in between: a window moves 20 events between checks (96% of it
    shared) and the estimate is pooled over 40 checks, so a quarter of the measurements says as
    much, at a quarter of their cost (about 200 us a check for 22 features of 500 events)."""

    EVERY = 4
    __slots__ = ("calls", "last")

    def __init__(self) -> None:
        self.calls = 0
        self.last: np.ndarray | None = None

    def of(self, window: np.ndarray, medians: np.ndarray, max_lag: int) -> np.ndarray:
        if self.last is None or self.last.shape != (max_lag + 1, window.shape[1]) or self.calls % self.EVERY == 0:
            above = np.where(np.isnan(window), np.nan, (window > medians).astype(float))
            self.last = window_autocorrelations(above, max_lag, compact=True)
        self.calls += 1
        return self.last


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


def window_autocorrelations(window: np.ndarray, max_lag: int, compact: bool = False) -> np.ndarray:
    """Autocorrelations per stream of a window; streams with gaps (NaN) are measured on their values
    (0 beyond lag 0 when too few)."""
    complete = ~np.isnan(window).any(axis=0)
    correlation = np.zeros((max_lag + 1, window.shape[1]))
    correlation[0] = 1.0
    if complete.any():
        correlation[:, complete] = autocorrelations(window[:, complete], max_lag, compact)
    for j in np.flatnonzero(~complete):
        values = window[:, j][~np.isnan(window[:, j])]
        if values.shape[0] >= max(2 * MIN_THINNED, max_lag + 2):
            correlation[:, j] = autocorrelations(values[:, None], max_lag, compact)[:, 0]
    return correlation
