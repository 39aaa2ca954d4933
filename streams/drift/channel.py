"""A drift channel: reference and current windows of a family of streams, and the check that compares
them.

Every ``check_every`` events a channel compares its *reference* window (``window`` events) with its
*current* window (the last ``current_window`` events; shorter than the reference, so a change fills it
sooner and is detected earlier):

* reference ``fixed``: the first ``window`` events after start (or after a re-base);
  ``rolling``: the ``window`` events before the last ``window`` events.
* A stream whose values stay correlated over ``tau`` events (streams.drift.correlation) gets a current
  window of at least ``CURRENT_SAMPLES * tau`` events and is tested on every ``tau``-th value. For
  distribution and variance tests ``tau`` also covers the absolute deviations from the median:
  volatility clusters, so the size of returns stays correlated for tens of one-minute events while
  their sign does not (on the shipped kline days, 8-27 events against 1), and a test that only
  looked at the values treated a calm hour and a busy one as two samples of one distribution. A
  stream still correlated at the longest lag a window measures (``window // MIN_THINNED``) is not
  tested: no thinning makes it independent.
* Market state is observed once per event time: the fills of one taker order (all at one event time;
  two thirds of the shipped spot captures' trades) update the last observation, adding none.
* Every rejecting check re-bases the reference (``rebase_on_alert``): it is collected again from the
  next ``window`` events, so it follows the new regime and one change gives one incident. Until it
  has filled, the channel does not test (a fall of volatility, no alert, tests on: ``refill``).

One check per channel kind (streams.drift.checks), each returning named ``CheckResult`` rows:
``DistributionCheck`` (FEATURE: KS per stream, plus a two-sided Welch t per stream corrected for
serial correlation over several current windows, ``MEAN_SCALES``; PREDICTION: KS), ``VarianceCheck``
(a rise of volatility: the same corrected t, one-sided, on log absolute deviations of the return-like
streams, their serial correlation pooled a reference window late, ``correlation.delayed``; Levene on
every stream where there are none; Levene, two-sided log scale or the F-test as options), ``LossCheck``
(CONCEPT: one-sided Welch t on block means and Mann-Whitney U of the log-loss: a model that got worse)
and ``BasisCheck`` (BASIS: a corrected t on short windows with a size floor).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from streams.drift.checks import CHECKS, Ceiling, Checked, CheckResult, Samples, scale_floor
from streams.drift.config import DriftConfig
from streams.drift.correlation import (
    DECORRELATED,
    MIN_THINNED,
    POOLED_WINDOWS,
    SideCorrelations,
    bartlett_inflation,
    delayed,
    dependence_correlations,
    first_lag_below,
    window_autocorrelations,
)
from streams.drift.statistics import best_window, column_medians, welch_from_moments
from streams.drift.volatility import RETURN_LIKE

log = logging.getLogger("livelearn.drift")

# Thinned values a current window holds at least: its length is max(current_window, this x tau), at most window.
CURRENT_SAMPLES = 16
# The mean test (Welch t) looks at several current windows, as multiples of the stream's current
# window: a short one finds a large shift sooner, a long one a small shift in a noisy stream at all.
MEAN_SCALES = (0.5, 1.0, 2.0)


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
        # "volatility" reads the return-like streams only, Levene on every stream without any (VarianceCheck).
        returns = [j for j, name in enumerate(streams) if name in RETURN_LIKE]
        self.rises_only = kind == "VARIANCE" and config.variance_test in ("volatility", "cusum") and bool(returns)
        self.log_scale = self.rises_only or (kind == "VARIANCE" and config.variance_test == "log_scale")
        self.scale_centre = np.zeros(len(streams))
        self.scale_floor = np.ones(len(streams))
        # The feature channel and the log-scale variance test run the serial-correlation-corrected mean test.
        self.mean_test = (kind == "FEATURE" and config.mean_test) or self.log_scale or kind == "BASIS"
        self.inflation = np.ones(len(streams))
        self.reference_moments = (np.zeros(len(streams)), np.zeros(len(streams)), np.zeros(len(streams)))
        self.ceiling: Ceiling | None = None  # the volatility reference before a fall (VarianceCheck)
        self.refill_at: int | None = None  # the count at which a reference is taken again (refill)
        # Autocorrelations pooled over the recent checks' windows: one window estimates slow mixing poorly.
        self.max_lag = max(1, w // MIN_THINNED)
        self.pooled_correlation = np.zeros((self.max_lag + 1, len(streams)))
        # Distribution and variance tests are also thinned where the autocorrelation of the absolute
        # deviations from the median (and of the side of it, for KS) has died out: dependence_correlations.
        self.scale_lags = kind in ("FEATURE", "PREDICTION") or (kind == "VARIANCE" and not self.log_scale)
        # Market state is observed once per event time (the loss channel keeps every outcome).
        self.one_per_time = kind != "CONCEPT"
        self.last_time: int | None = None
        # Streams left out of the tests: monotone ones (_exclude_monotone), and non-returns in a rises-only test.
        self.excluded: set[int] = {j for j in range(len(streams)) if j not in returns} if self.rises_only else set()
        self.pooled_scale_correlation = np.zeros((self.max_lag + 1, len(streams)))
        self.pooled_windows = self.since_check = self.clean_checks = 0
        self.reference_times: tuple[int, int] = (0, 0)
        self.open_alert: dict[str, Any] | None = None  # the open incident's FIRING record (DriftMonitor)
        self.pending: tuple[int, tuple] | None = None  # a rejection still to last (DriftConfig.persist_ms): time, finding
        self.last_results: list[CheckResult] = []
        # Per-event inputs (the prediction channel's, to re-score both windows), a ring like the buffer.
        self.payloads: list[Any] | None = None
        self.reference_payloads: list[Any] = []

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Defaults for what older checkpoints lack; those from before the volatility levels left kept testing them.
        self.__dict__.update({"refill_at": None, "ceiling": None, "rises_only": False, "pending": None} | state)
        if self.rises_only:
            self.excluded.update(j for j, name in enumerate(self.streams) if name not in RETURN_LIKE)

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
        # The variance test without the mean test reads only the lags of the absolute deviations.
        if not (self.kind == "VARIANCE" and self.scale_lags and not self.mean_test):
            correlation = window_autocorrelations(window, self.max_lag)
            late = self.log_scale and self.pooled_windows > POOLED_WINDOWS  # once the estimate has settled
            # Held: only the columns the volatility test reads (a checkpoint carries them), a window's worth.
            read = [j for j, name in enumerate(self.streams) if name in RETURN_LIKE] if late and self.rises_only else slice(None)
            checks = max(1, self.config.window // self.config.check_every)
            pooled = delayed(self.__dict__.setdefault("held", []), correlation[:, read], checks) if late else correlation
            if pooled is not None:
                self.pooled_correlation[:, read] += weight * (pooled - self.pooled_correlation[:, read])
        value_tau = first_lag_below(self.pooled_correlation, DECORRELATED)
        self.reference_tau = value_tau
        if self.scale_lags:
            # The feature and prediction channels' KS reads ranks: their dependence counts too.
            sides = None if self.kind == "VARIANCE" else self.__dict__.setdefault("sides", SideCorrelations())
            scale_correlation = dependence_correlations(window, column_medians(window), self.max_lag, sides)
            self.pooled_scale_correlation += weight * (scale_correlation - self.pooled_scale_correlation)
            scale_tau = first_lag_below(self.pooled_scale_correlation, DECORRELATED)
            self.reference_tau = scale_tau if self.kind == "VARIANCE" else np.maximum(value_tau, scale_tau)
        # Variance inflation of a mean by the lags before tau; never below 1 (mean reversion: independent).
        if not self.mean_test:
            return
        if self.log_scale:
            # Absolute deviations of clustered values keep a long tail of small positive correlations
            # that the first-lag-below rule cuts off; all measured lags count, with Bartlett weights.
            self.inflation = bartlett_inflation(self.pooled_correlation)
            return
        correlated = np.arange(1, self.max_lag + 1)[:, None] < value_tau
        self.inflation = np.maximum(1.0, 1.0 + 2.0 * np.where(correlated, self.pooled_correlation[1:], 0.0).sum(axis=0))

    def _log_scales(self, data: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Log absolute deviations from ``centre``, plus the reference's floor (:func:`scale_floor`) so
        exact ties with the median stay finite; NaN for a stream that was constant in the reference."""
        return np.log(np.abs(data - centre) + self.scale_floor)

    def _exclude_monotone(self, data: np.ndarray) -> None:
        """Leave out streams whose reference values only rise (or only fall): a time index or a date
        column of a dataset differs between any two windows by construction (Elec2's ``date`` raised
        half the alerts on its sample), which no test should report as drift."""
        for j, column in enumerate(data.T):
            if j in self.excluded:
                continue
            values = column[~np.isnan(column)]
            steps = np.diff(values)
            if values.shape[0] >= 10 and steps.any() and ((steps >= 0).all() or (steps <= 0).all()):
                self.excluded.add(j)
                if self.kind == "FEATURE":
                    log.warning("drift: %s is monotone over the reference window (an index or a date?); "
                                "left out of the drift tests", self.streams[j])

    def _set_reference(self, data: np.ndarray, times: np.ndarray) -> None:
        if self.kind in ("FEATURE", "VARIANCE"):
            self._exclude_monotone(data)
        if self.log_scale:
            self.scale_centre = column_medians(data)
            self.scale_floor = scale_floor(data, self.scale_centre)
            data = self._log_scales(data, self.scale_centre)
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
        size = self.buffer.shape[0]
        if self.one_per_time and time_ms == self.last_time:
            # Another fill of the same order (one taker order prints a trade per maker it meets, all
            # at one event time): the latest state stands for the event, it is not a new observation.
            if self.count and self.seen > self.config.warmup_events:
                self.buffer[(self.count - 1) % size] = row
                if payload is not None and self.payloads is not None:
                    self.payloads[(self.count - 1) % size] = payload
            return False
        self.last_time = time_ms
        self.seen += 1
        if self.seen <= self.config.warmup_events:
            return False  # models and indicators still settling: not a reference yet
        if payload is not None:
            if self.payloads is None:
                self.payloads = [None] * size
            self.payloads[self.count % size] = payload
        self.buffer[self.count % size] = row
        self.times[self.count % size] = time_ms
        self.count += 1
        w = self.config.window
        if self.refill_at == self.count:
            self._set_reference(*self._window(w))
            self.refill_at = None
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
        """The (single-stream) reference values replaced by ``rescore`` of their payloads."""
        values = np.array([rescore(x) for x in self.reference_payloads], dtype=float)
        self.reference = values[:, None]
        self.reference_columns = [values[~np.isnan(values)]]

    def rescore_recent(self, rescore: Callable[[Any], float]) -> None:
        """Replace the recent window's (single-stream) values by ``rescore`` of their payloads, so
        both windows are what the model as it is now says: a model that learned during the current
        window moved its outputs there, which is not drift of its inputs."""
        if self.payloads is None:
            return
        idx = self._indices(min(self.count, self.config.window))
        for i in idx:
            payload = self.payloads[i]
            if payload is not None:
                self.buffer[i, 0] = rescore(payload)

    def _set_reference_moments(self) -> None:
        columns = self.reference_columns
        self.reference_moments = (
            np.array([c.mean() if c.shape[0] else math.nan for c in columns]),
            np.array([c.var(ddof=1) if c.shape[0] > 1 else math.nan for c in columns]),
            np.array([float(c.shape[0]) for c in columns]))

    def check(self, pool: bool = True) -> Checked:
        """The channel's check on the current windows (see :data:`CHECKS`)."""
        w, cw = self.config.window, self.config.current_size
        if self.config.reference == "rolling":
            both, times = self._window(2 * w)
            self._set_reference(both[:w], times[:w])
        recent, times = self._window(w)
        if self.log_scale:
            # Each window about its own median (Brown-Forsythe): a stream whose level wandered
            # (an oscillator in a trend) has not changed its scale.
            lengths = np.minimum(w, np.maximum(cw, CURRENT_SAMPLES * self.reference_tau))
            centre = np.zeros(len(self.streams))
            tested = np.ones(len(self.streams), dtype=bool)
            tested[list(self.excluded)] = False
            # One median call per distinct window length (a few), for the streams that are tested.
            for length in np.unique(lengths[tested]):
                columns = np.flatnonzero(tested & (lengths == length))
                centre[columns] = column_medians(recent[w - length:, columns])
            ceiling = self.ceiling
            lifted = None if ceiling is None else np.log(np.abs(recent - centre) + ceiling.floor)
            recent = self._log_scales(recent, centre)
        # Pooled before the test: a change inflates the lags it is tested with by 1/POOLED_WINDOWS at most.
        if pool:
            self._pool(recent)
        samples = self._samples(recent, w, cw)
        samples.ceiling_recent = lifted if self.log_scale else None
        longest = max([cw, *samples.lengths])
        if self.mean_test and samples.tested:
            samples.spans = self.mean_spans(np.array(samples.lengths))
            longest = max(longest, int(samples.spans.max()))
        self.current_times = (int(times[w - longest]), int(times[-1]))
        checked = CHECKS[self.kind].run(self, samples) if samples.tested else Checked([])
        self.last_results = checked.results
        return checked

    def _samples(self, recent: np.ndarray, w: int, cw: int) -> Samples:
        """Both windows of every testable stream, thinned to roughly independent values: every tau-th
        value, tau the decorrelation lag of the pooled autocorrelations. A slowly mixing stream needs a
        longer current window to hold CURRENT_SAMPLES such values."""
        samples = Samples(recent)
        for j, stream in enumerate(self.streams):
            if j in self.excluded:
                continue
            tau = int(self.reference_tau[j])
            # A basis is tested on short windows whatever its correlation (the mean test widens its
            # error for it, and the shift floor guards the level): a de-peg must be seen at once.
            length = cw if self.kind == "BASIS" else min(w, max(cw, CURRENT_SAMPLES * tau))
            whole = recent[w - length:, j]
            whole, reference_whole = whole[~np.isnan(whole)], self.reference_columns[j]
            if whole.shape[0] < 10 or reference_whole.shape[0] < 10:
                continue
            if tau >= self.max_lag and self.kind not in ("CONCEPT", "BASIS"):
                # Still correlated at the longest lag a window measures: no thinning makes its values
                # independent, so no test of it would hold its level (see the module docstring).
                continue
            current, reference = whole[::tau], reference_whole[::tau]
            if self.kind != "BASIS" and (current.shape[0] < MIN_THINNED or reference.shape[0] < MIN_THINNED):
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
        smallest p-value, Bonferroni-corrected over the windows, with that window's t and effect."""
        return best_window(*self.window_tests(recent, columns, spans))

    def window_tests(self, recent: np.ndarray, columns: np.ndarray, spans: np.ndarray, moments: tuple | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Two-sided t, p and effect of every current window of ``spans`` (rows) and stream, and
        where the window holds enough values.

        Running sums from the newest event back give every window's moments in one pass; values
        are taken relative to the reference mean, so the sums of squares do not cancel (the
        shifted-data variance formula).
        """
        centre, reference_var, reference_n = (m[columns] for m in (moments or self.reference_moments))
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
        return t, p, effect, usable

    def rejectable_below(self, tests: int) -> float:
        """Per-test p-value below which some correction of ``tests`` p-values can reject."""
        return self.config.alpha / tests if self.config.correction == "bonferroni" else self.config.alpha

    def reference_aged(self, max_age_ms: float) -> bool:
        """Whether the events a :meth:`refresh` would take end ``max_age_ms`` after the reference does (so
        with a day it ends at the old one's time of day: volatility levels follow the hours)."""
        w, cw = self.config.window, self.config.current_size
        if self.reference is None or self.count < w:
            return False
        return int(self.times[(self.count - cw - 1) % self.buffer.shape[0]]) - self.reference_times[1] >= max_age_ms

    def refresh(self) -> None:
        """Take the reference again from the latest events but the current window's, with no pause in the
        checks (``DriftConfig.reference_max_age_hours``)."""
        w, cw = self.config.window, self.config.current_size
        idx = self._indices(w)[: w - cw]
        self._set_reference(self.buffer[idx], self.times[idx])
        if self.payloads is not None:
            self.reference_payloads = [self.payloads[i] for i in idx]

    def refill(self) -> None:
        """Take the reference again from the next ``window`` events, testing against this one until then
        (a fall of volatility: streams.drift.checks.VarianceCheck)."""
        self.refill_at = self.count + self.config.window

    def rebase(self) -> None:
        """Restart the reference from the next events (no checks until it has filled): one taken at a
        detection would mix the two regimes and keep the incident alive or end it too early."""
        self.count, self.refill_at = 0, None
        self.reference = None
        self.since_check = 0
        self.pending = None  # not confirmed against a new reference
