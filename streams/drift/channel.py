"""A drift channel: reference and current windows of a family of streams, and the check that compares
them.

Every ``check_every`` events a channel compares its *reference* window (``window`` events) with its
*current* window (the last ``current_window`` events; shorter than the reference, so a change fills it
sooner and is detected earlier):

* reference ``fixed``: the first ``window`` events after start (or after a re-base);
  ``rolling``: the ``window`` events before the last ``window`` events.
* A stream whose values stay correlated over ``tau`` events (streams.drift.correlation) gets a current
  window of at least ``CURRENT_SAMPLES * tau`` events and is tested on every ``tau``-th value.
* Every rejecting check re-bases the reference (``rebase_on_alert``): it is collected again from the
  next ``window`` events, so it follows the new regime and one change gives one incident. Until it
  has filled, the channel does not test.

One check per channel kind (:data:`CHECKS`), each returning named :class:`CheckResult` rows:
:class:`DistributionCheck` (FEATURE: KS per stream, plus a two-sided Welch t per stream corrected for
serial correlation over several current windows, ``MEAN_SCALES``; PREDICTION: KS), :class:`VarianceCheck`
(Brown-Forsythe / Levene, or the F-test) and :class:`LossCheck` (CONCEPT: one-sided Welch t on block
means and Mann-Whitney U of the log-loss: a model that got worse).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from streams.drift.config import DriftConfig
from streams.drift.correlation import (
    DECORRELATED,
    MIN_THINNED,
    POOLED_WINDOWS,
    block_means,
    first_lag_below,
    single_value_effect,
    window_autocorrelations,
)
from streams.drift.statistics import (
    f_test,
    ks_p_values,
    ks_statistics,
    levene_tests,
    mann_whitney,
    welch_from_moments,
    welch_test,
)

# Thinned values a current window holds at least: its length is max(current_window, this x tau),
# capped at the reference window.
CURRENT_SAMPLES = 16
# The mean test (Welch t) looks at several current windows, as multiples of the stream's current
# window: a short one finds a large shift sooner, a long one a small shift in a noisy stream at all.
MEAN_SCALES = (0.5, 1.0, 2.0)


class CheckResult(NamedTuple):
    """One test of one stream in a check."""

    stream: str
    test: str
    statistic: float
    p: float
    effect: float
    tau: int


@dataclass
class Samples:
    """What a check tests: per testable stream its thinning step, column, current-window length and
    thinned samples (and, for the loss, the whole windows for block means)."""

    recent: np.ndarray
    tested: list[tuple[str, int]] = field(default_factory=list)
    columns: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    references: list[np.ndarray] = field(default_factory=list)
    currents: list[np.ndarray] = field(default_factory=list)
    reference_wholes: list[np.ndarray] = field(default_factory=list)
    current_wholes: list[np.ndarray] = field(default_factory=list)
    spans: np.ndarray | None = None

    def add(self, stream: str, tau: int, column: int, length: int, reference: np.ndarray, current: np.ndarray,
            reference_whole: np.ndarray, current_whole: np.ndarray) -> None:
        self.tested.append((stream, tau))
        self.columns.append(column)
        self.lengths.append(length)
        self.references.append(reference)
        self.currents.append(current)
        self.reference_wholes.append(reference_whole)
        self.current_wholes.append(current_whole)


class DistributionCheck:
    """KS per stream; on the feature channel also the serial-correlation-corrected Welch t."""

    @staticmethod
    def run(channel: Channel, samples: Samples) -> list[CheckResult]:
        distances, sizes = ks_statistics(samples.references, samples.currents)
        tests = len(samples.tested) * (2 if channel.mean_test else 1)
        p_values = ks_p_values(distances, sizes, channel.rejectable_below(tests))
        results = [CheckResult(stream, "ks_2samp", d, p, d, tau)
                   for (stream, tau), d, p in zip(samples.tested, distances.tolist(), p_values.tolist(), strict=True)]
        if channel.mean_test:
            t, p, effect = channel.mean_tests(samples.recent, np.array(samples.columns), samples.spans)
            results += [CheckResult(stream, "welch_t", *values, tau) for (stream, tau), *values
                        in zip(samples.tested, t.tolist(), p.tolist(), effect.tolist(), strict=True)]
        return results


class VarianceCheck:
    """Brown-Forsythe (Levene, median-centred; the default: market features are heavy-tailed, where
    the F-test's normality assumption breaks) or the two-sided F-test, per stream."""

    @staticmethod
    def run(channel: Channel, samples: Samples) -> list[CheckResult]:
        if channel.config.variance_test == "levene":
            w, p, effect = levene_tests(samples.references, samples.currents)
            return [CheckResult(stream, "levene", *values, tau) for (stream, tau), *values
                    in zip(samples.tested, w.tolist(), p.tolist(), effect.tolist(), strict=True)]
        return [CheckResult(stream, "f_test", *f_test(reference, current), tau) for (stream, tau), reference, current
                in zip(samples.tested, samples.references, samples.currents, strict=True)]


class LossCheck:
    """Concept drift is the loss getting worse: one-sided (a model that improves is fine). The Welch t
    tests means of consecutive blocks of tau values (as nearly independent as the thinned values, but
    every value counts); Mann-Whitney U tests the thinned values."""

    @staticmethod
    def run(channel: Channel, samples: Samples) -> list[CheckResult]:
        results = []
        for (stream, tau), reference, current, reference_whole, current_whole in zip(
                samples.tested, samples.references, samples.currents, samples.reference_wholes,
                samples.current_wholes, strict=True):
            t, p, effect = welch_test(block_means(reference_whole, tau), block_means(current_whole, tau),
                                      alternative="less")
            results.append(CheckResult(stream, "welch_t", t, p, single_value_effect(effect, tau), tau))
            results.append(CheckResult(stream, "mannwhitney_u", *mann_whitney(reference, current, alternative="less"),
                                       tau))
        return results


CHECKS = {"FEATURE": DistributionCheck, "PREDICTION": DistributionCheck, "VARIANCE": VarianceCheck,
          "CONCEPT": LossCheck}


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
        self.last_results: list[CheckResult] = []
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
        correlation = window_autocorrelations(window, self.max_lag)
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

    def check(self, pool: bool = True) -> list[CheckResult]:
        """The channel's check on the current windows (see :data:`CHECKS`)."""
        w, cw = self.config.window, self.config.current_size
        if self.config.reference == "rolling":
            both, times = self._window(2 * w)
            self._set_reference(both[:w], times[:w])
        recent, times = self._window(w)
        # Pooled before the test, so a change of the mean inflates the lags it is tested with by
        # 1/POOLED_WINDOWS of its own effect at most.
        if pool:
            self._pool(recent)
        samples = self._samples(recent, w, cw)
        longest = max([cw, *samples.lengths])
        if self.mean_test and samples.tested:
            samples.spans = self.mean_spans(np.array(samples.lengths))
            longest = max(longest, int(samples.spans.max()))
        self.current_times = (int(times[w - longest]), int(times[-1]))
        results = CHECKS[self.kind].run(self, samples) if samples.tested else []
        self.last_results = results
        if results:
            self.fresh_results = True
        return results

    def _samples(self, recent: np.ndarray, w: int, cw: int) -> Samples:
        """Both windows of every testable stream, thinned to roughly independent values: every tau-th
        value, tau the decorrelation lag of the pooled autocorrelations. A slowly mixing stream needs a
        longer current window to hold CURRENT_SAMPLES such values."""
        samples = Samples(recent)
        for j, stream in enumerate(self.streams):
            tau = int(self.reference_tau[j])
            length = min(w, max(cw, CURRENT_SAMPLES * tau))
            whole = recent[w - length:, j]
            whole, reference_whole = whole[~np.isnan(whole)], self.reference_columns[j]
            if whole.shape[0] < 10 or reference_whole.shape[0] < 10:
                continue
            current, reference = whole[::tau], reference_whole[::tau]
            if current.shape[0] < MIN_THINNED or reference.shape[0] < MIN_THINNED:
                continue
            samples.add(stream, tau, j, length, reference, current, reference_whole, whole)
        return samples

    def mean_spans(self, lengths: np.ndarray) -> np.ndarray:
        """Current windows of the mean test, ``(len(MEAN_SCALES), streams)`` events: the scales times
        each stream's current window, within ``[10, window]``."""
        scaled = np.rint(np.multiply.outer(MEAN_SCALES, lengths)).astype(int)
        return np.clip(scaled, 10, self.config.window)

    def mean_tests(self, recent: np.ndarray, columns: np.ndarray, spans: np.ndarray
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

    def rejectable_below(self, tests: int) -> float:
        """Per-test p-value below which some correction of ``tests`` p-values can reject."""
        return self.config.alpha / tests if self.config.correction == "bonferroni" else self.config.alpha

    def rebase(self) -> None:
        """Restart the reference from the events that follow: a reference taken right at a detection
        would mix the old and the new regime (the current window is shorter than the reference) and
        keep the incident alive or resolve it too early. No checks run until it has filled."""
        self.count = 0
        self.reference = None
        self.since_check = 0
