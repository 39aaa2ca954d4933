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

# (or below two standard errors of an autocorrelation estimate, 2 / sqrt(n), in short windows).
DECORRELATED = 0.05
# Fewest values a thinned window keeps, so a slowly moving stream still gets a (weak) test.
MIN_THINNED = 8
# Checks whose recent windows the pooled autocorrelations average over (a running mean, then
# exponential forgetting at this horizon).
POOLED_WINDOWS = 40


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


def window_autocorrelations(window: np.ndarray, max_lag: int) -> np.ndarray:
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
