"""The check of each channel kind: which tests run on a channel's windows, as named results.

One class per kind (:data:`CHECKS`), each returning :class:`CheckResult` rows in a :class:`Checked`: :class:`DistributionCheck`
(FEATURE and PREDICTION), :class:`VarianceCheck` (VARIANCE), :class:`LossCheck` (CONCEPT) and
:class:`BasisCheck` (BASIS). They read the windows a :class:`streams.drift.channel.Channel` prepared
(:class:`Samples`) and the channel's serial-correlation state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from streams.drift.correlation import block_means, single_value_effect
from streams.drift.ks_drops import ReferenceFacts
from streams.drift.statistics import (
    best_window,
    f_test,
    ks_p_values,
    ks_statistics,
    levene_tests,
    mann_whitney,
    welch_test,
)
from streams.drift.volatility import VOLATILITY_LEVELS

if TYPE_CHECKING:
    from streams.drift.channel import Channel


class CheckResult(NamedTuple):
    """One test of one stream in a check."""

    stream: str
    test: str
    statistic: float
    p: float
    effect: float
    tau: int


# What a channel's reference is made of (a Ceiling keeps it to restore it).
REFERENCE_STATE = ("reference", "reference_columns", "reference_moments", "scale_centre", "scale_floor",
                   "reference_times")


def scale_floor(data: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The floor added to each stream's absolute deviations from ``centre`` before their log (the
    variance channel's log scales, :class:`VarianceCheck`): a tenth of their mean, or the smallest
    deviation above zero if that is larger; NaN for a stream without any spread.

    Why the smallest deviation: on a price grid (a stablecoin quoted to four decimals, a coin whose
    tick is a large share of its moves) many returns equal the window's median, and a deviation of
    zero means "less than one step of the grid". With a tenth of the mean as the floor their log lay
    2-3 nats below a one-step move's, so the share of exact ties (which moves with the median from one
    grid value to the next) swayed the mean log scale as a change of volatility would. Measured on
    constructed stablecoins (a stationary mean-reverting price on a 0.0001 grid about 1, two thirds of
    one-minute closes unchanged, on the timestamps and volumes of the BTCUSDT days here; twenty seeds of
    six days, 172,800 events, features and drift monitor as a worker runs them): VARIANCE alerts 1.68
    per 10k events with a tenth of the mean (29; exact 95% interval 1.12-2.41), 0.35 with this floor
    (6; 0.13-0.76), the bound being 0.4; nine seeds through the whole pipeline, 1.93 and 0.39. Where
    prices are fine-grained the smallest deviation is far below a tenth of the mean and nothing changes
    (the shipped kline days and captures raise what they did, ``bench/drift_real.py``).

    >>> values = np.array([[0.0, 0.01], [0.0, -1.5], [2e-4, 2.5], [-1e-4, -3.0], [0.0, 4.0]])  # a grid; fine
    >>> [float(round(v, 6)) for v in scale_floor(values, np.zeros(2))]
    [0.0001, 0.2202]
    """
    deviations = np.abs(data - centre)
    floor = np.full(data.shape[1], np.nan)
    for j, column in enumerate(deviations.T):
        column = column[~np.isnan(column)]
        spread = np.mean(column) if column.shape[0] else 0.0
        if spread > 0:
            floor[j] = max(0.1 * spread, float(column[column > 0].min()))
    return floor


class Ceiling(NamedTuple):
    """The variance channel's reference as it was before a fall of volatility re-based it, and the event
    time of the fall: see :class:`VarianceCheck`."""

    state: dict
    time_ms: int

    @classmethod
    def of(cls, channel: Channel, time_ms: int) -> Ceiling:
        return cls({name: channel.__dict__[name] for name in REFERENCE_STATE}, time_ms)

    @property
    def moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.state["reference_moments"]

    @property
    def floor(self) -> np.ndarray:
        return self.state["scale_floor"]

    def restore(self, channel: Channel) -> None:
        """The channel's reference as it was before the fall (the channel keeps testing: no re-base)."""
        channel.__dict__.update(self.state)


class Checked(NamedTuple):
    """What one check of a channel found: a result per test and stream, and whether the volatility test
    saw a significant *fall* (no alert: the monitor re-bases the reference on it; see
    :class:`VarianceCheck`)."""

    results: list[CheckResult]
    volatility_fell: bool = False
    # Volatility significantly below the level before the fall the reference was re-based on.
    under_ceiling: bool = False


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
    # The mean test's current windows (Channel.mean_spans), set before a check that runs it.
    spans: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=int))
    # The variance channel's values on the scale of its Ceiling, where it has one.
    ceiling_recent: np.ndarray | None = None

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
    """KS per stream; on the feature channel also the serial-correlation-corrected Welch t.

    The volatility levels (``VOLATILITY_LEVELS``) count only when they rise: a fall of a level is a fall
    of volatility, which the variance channel does not report either (:class:`VarianceCheck`), and the
    reference is not re-based on it, so the level's return to its usual size raises nothing. The
    tests stay two-sided; a rejection with the level's current mean below the reference's is dropped
    (p = 1), so the false-alarm bound still holds. Why (a constructed week, the two BTCUSDT days of
    January 2020 alternated over nine days with days 5-6 at 0.6 times their moves, as a quiet weekend):
    FEATURE alerts on ``atr_pct`` as the weekend began and again on the Monday (the channel had
    re-based on the first), 1.5 per 10k events against a bound of 0.4; with falls dropped, none.

    For the same reason a KS rejection of a return-like stream (``RETURN_LIKE``) whose spread fell (mean
    absolute deviation from its window's median, thinned values) is dropped: KS reads a narrower
    distribution of returns as a change, and the reference, re-based only on an alert, may have been
    taken in a busy spell. The Welch t still reports a shift of their mean. Measured
    (``bench/drift_real.py``, same run): on the clustered null (GARCH days, nothing changes) FEATURE
    alarms 4 -> 3 and 5 -> 3 in 144,000 events each; every RESULT line on the shipped series and on
    three weeks of distinct days built from them (``--only distinct_weeks``) identical.

    KS is not run on a return-like stream on a price grid: one exactly zero in more than
    ``ON_GRID_ZEROS`` (streams.drift.ks_drops) of its reference (a pair quoted to few significant
    digits, or a stream of trades at one price). KS is a test of continuous distributions; a grid's
    returns are a lattice, tick / price apart, which moves with the price level and with the intraday
    profile's factor of the hour they are divided by, so two windows a few hours apart sit on
    different lattices and KS reads that as a change. Its mean test stays, and its scale is the variance channel's (which floors the log at
    the grid's step, :func:`scale_floor`). Measured 2026-12-04 on the sixteen real months (an
    in-process harness, feature engine and drift monitor only): FEATURE alerts 32 -> 20 (ALGOUSDT
    2024-09, 36% of its one-minute closes unchanged: 7 -> 2; four of the seven were KS on ``ret_1``
    and ``ret_5`` with distances of 0.28-0.67); volatility x3 bursts from every 1,500th event after
    day two found 297 -> 295 of 422."""

    @staticmethod
    def run(channel: Channel, samples: Samples) -> Checked:
        distances, sizes = ks_statistics(samples.references, samples.currents)
        tests = len(samples.tested) * (2 if channel.mean_test else 1)
        p_values = ks_p_values(distances, sizes, channel.rejectable_below(tests))
        alpha = channel.config.alpha  # no correction rejects a larger p: the spreads are computed only below it
        facts = channel.__dict__.setdefault("reference_facts", ReferenceFacts()).of(channel.reference_columns)
        dropped = [facts.dropped(stream, j, tau, reference, current, p < alpha) for (stream, tau), j, reference,
                   current, p in zip(samples.tested, samples.columns, samples.references, samples.currents,
                                     p_values.tolist(), strict=True)]
        results = [CheckResult(stream, "ks_2samp", d, 1.0 if drop else p, d, tau) for (stream, tau), d, p, drop
                   in zip(samples.tested, distances.tolist(), p_values.tolist(), dropped, strict=True)]
        if channel.mean_test:
            t, p, effect = channel.mean_tests(samples.recent, np.array(samples.columns), samples.spans)
            # t is reference minus current: positive where the window's mean fell.
            results += [CheckResult(stream, "welch_t", t_k, 1.0 if stream in VOLATILITY_LEVELS and t_k > 0 else p_k,
                                    e_k, tau) for (stream, tau), t_k, p_k, e_k
                        in zip(samples.tested, t.tolist(), p.tolist(), effect.tolist(), strict=True)]
        return Checked(results)


class VarianceCheck:
    """A change of scale, per stream. Default (``variance_test="volatility"``): a rise in volatility.
    On the return-like features (``streams.drift.volatility.RETURN_LIKE``: returns and ratios; the
    others, volatility levels included, are the feature channel's), the one-sided Welch t of log
    absolute deviations (each window about its own median), every value kept and the error widened by
    their serial correlation (Bartlett-weighted autocorrelations over all measured lags), over several
    current windows (``MEAN_SCALES``, Bonferroni over them). A significant *fall* is not reported but
    re-bases the reference (the monitor does it, below): a reference taken in a busy spell would otherwise
    hide every later rise below its level. A channel without return-like features (a dataset) runs
    Levene on every stream.

    Why (bench/drift_real.py and in-process replays, one run each, 2026-11-30): volatility x3 spliced
    into the four real kline days was detected on 4 of 4 after 80, 140, 100 and 140 events; Levene
    on every feature (Brown-Forsythe, on values thinned where the autocorrelation of their absolute
    deviations has died out: 13-32 lags on real returns, so its current window spans hundreds of
    events) found it on 2 of 4 (140, 180). No alert on the unmodified kline days or the two joined
    BTCUSDT days with either; one more VARIANCE alert on the BTCUSDT capture (23 s into the burst where
    the feature channel alerts too). Two-sided on the same features it also alarmed on a fall of
    volatility in the ETHUSDT capture; on every feature (``log_scale``) it alarmed on volumes and
    order-flow features of four of the six real series.

    Why not the volatility levels (``volatility_20``, ``range_20``, ``atr_pct``; measured 2026-12-01):
    the dispersion of a smoothed level about its median is not the size of returns, and it is what
    alarmed where nothing was injected. A constructed week (two real BTCUSDT days repeated) raised two
    VARIANCE alerts per pair on ``atr_pct``, and eight drift-free synthetic market streams of 6,000
    ticks (bench/drift_quiet.py --severity LOW) 4 VARIANCE alarms; without the levels none and 1. The
    shipped series raise what they did (the BTCUSDT capture's alert names ``ret_20`` instead of
    ``range_20``), volatility x3 is found on the four kline days after 80, 140, 240 and 100 events
    (median 120, as with the levels; ETHUSDT 2022-08-14 slower, found by ``range_20`` at 100 before,
    BTCUSDT 2022-09-05 faster with fewer tests to correct for).

    The level before a fall is remembered (a :class:`Ceiling`, for ``quiet_spell_hours`` of event time,
    504, three weeks, by default; 72 until 2026-12-04, see below): while it is, a rise counts only if
    it is one against that level as well (the larger of the two p-values: an intersection-union test,
    so the bound holds). When it expires, the reference from before the fall is taken back if
    volatility is no longer significantly below it (the quiet spell is over), else the quiet level
    stays the reference. Why: on a fall the reference
    is re-based, so the end of every quiet spell (a weekend, a holiday, a night without the intraday
    profile) was a rise against it. Measured 2026-12-02 on three constructed weeks (the two real
    BTCUSDT days alternated over 21 days, weekends at 0.5, 0.6 or 0.75 times their moves): 1-2
    VARIANCE alerts per three weeks (the Mondays, up to 0.66 per 10k) without the memory, none with it;
    a x3 burst spliced into the Monday after a quiet weekend was found after 59-119 events (39-79
    without the memory) and on the Tuesday after 79 as before. Re-basing when the memory expired,
    instead of taking the old reference back, left a reference blind for 500 events and took in a
    burst that began then (not found by this channel at all).

    The serial correlation the test is widened by is pooled one reference window late
    (``streams.drift.correlation.delayed``), so a burst does not widen its own test; and the memory of
    a fall is three weeks, not three days. Measured 2026-12-04 on sixteen real months of seven pairs
    (bench/drift_bursts.py: x3 from every 1,500th event after day two, 422 bursts, found within 200
    events; the data not shipped, docs/STATUS.md): before, 65 VARIANCE alerts on the
    unmodified months, 310 bursts found, median delay 139 with misses counted as 200; the late
    pooling alone, 78, 354 and 99; with memories of 168 / 336 / 504 / 1,000 hours, 72 / 62 / 53 / 44
    alerts and 338 / 322 / 308 / 299 found (without the late pooling 336 hours gave 58 and 274). At
    three weeks the late pooling is spent on alerts: 53 against 65 (0.78 per 10k), over twice the
    bound on 6 months of 16 against 10, the same bursts found. On the March 2023 weeks: 15 -> 17
    alerts, 110 -> 145 of 339 bursts. A level seen within three weeks is no news; a rise above it is.

    A fall takes the reference again from the next ``window`` events (``Channel.refill``), and until
    they are in the channel goes on testing against the reference it had, without pooling those
    windows' serial correlation (the fall is a step in them, which reads as correlation at every lag
    and would widen the tests after it). A rise above the busier level is one above the quieter level
    too, so the bound holds. Before, the channel did not test until the new reference had filled, and
    a burst that began then went into it (on four real months the channel had no reference, after a
    fall or an alert, at 8-22% of the events).
    Measured 2026-12-04 (bench/drift_real.py --only bursts_throughout, x3 from every fourth hour after
    the first day): found within 200 events 1,860 -> 1,996 of 2,724 on the sixteen months, 121 -> 122
    of 360 on the March 2023 weeks; VARIANCE alerts before the late bursts 63 -> 64 on the months, the
    clustered null 12 + 11 -> 12 + 12, the shipped series unchanged. Constructed (a third of the size
    from 1,500, three times the first size from 1,800; four seeds, a fifth alarmed before the fall in
    all three): found 259 events after the burst before, 39-59 now, 759-819 with those windows pooled.

    ``levene``: Brown-Forsythe on every stream (the default before); ``log_scale``: the Welch t of log
    absolute deviations, two-sided, on every stream; ``f_test``: the two-sided F-test."""

    @staticmethod
    def run(channel: Channel, samples: Samples) -> Checked:
        if channel.rises_only:
            columns = np.array(samples.columns)
            tests = channel.window_tests(samples.recent, columns, samples.spans)
            t, p, effect = best_window(*tests, side="rise")
            _, fall, _ = best_window(*tests, side="fall")
            rejectable = channel.rejectable_below(len(samples.tested))
            ceiling, under = channel.ceiling, False
            if ceiling is not None and samples.ceiling_recent is not None:
                # A rise counts only if it is one against the level before the fall as well (an
                # intersection-union test: the larger p-value, so the bound holds).
                lifted = channel.window_tests(samples.ceiling_recent, columns, samples.spans, ceiling.moments)
                p = np.maximum(p, best_window(*lifted, side="rise")[1])
                under = bool(best_window(*lifted, side="fall")[1].min() < rejectable)
            return Checked([CheckResult(stream, "log_scale_t", t_k, p_k, e_k, tau) for (stream, tau), t_k, p_k, e_k
                            in zip(samples.tested, t.tolist(), p.tolist(), effect.tolist(), strict=True)],
                           bool(fall.min() < rejectable), under)
        if channel.log_scale:
            t, p, effect = channel.mean_tests(samples.recent, np.array(samples.columns), samples.spans)
            return Checked([CheckResult(stream, "log_scale_t", t_k, p_k, e_k, tau) for (stream, tau), t_k, p_k, e_k
                            in zip(samples.tested, t.tolist(), p.tolist(), effect.tolist(), strict=True)])
        if channel.config.variance_test in ("volatility", "cusum", "levene"):
            w, p, effect = levene_tests(samples.references, samples.currents)
            return Checked([CheckResult(stream, "levene", w_k, p_k, e_k, tau) for (stream, tau), w_k, p_k, e_k
                            in zip(samples.tested, w.tolist(), p.tolist(), effect.tolist(), strict=True)])
        return Checked([CheckResult(stream, "f_test", *f_test(reference, current), tau) for (stream, tau), reference,
                        current in zip(samples.tested, samples.references, samples.currents, strict=True)])


class LossCheck:
    """Concept drift is the loss getting worse: one-sided (a model that improves is fine). The Welch t
    tests means of consecutive blocks of tau values (as nearly independent as the thinned values, but
    every value counts); Mann-Whitney U tests the thinned values."""

    @staticmethod
    def run(channel: Channel, samples: Samples) -> Checked:
        results = []
        for (stream, tau), reference, current, reference_whole, current_whole in zip(
                samples.tested, samples.references, samples.currents, samples.reference_wholes,
                samples.current_wholes, strict=True):
            t, p, effect = welch_test(block_means(reference_whole, tau), block_means(current_whole, tau),
                                      alternative="less")
            results.append(CheckResult(stream, "welch_t", t, p, single_value_effect(effect, tau), tau))
            results.append(CheckResult(stream, "mannwhitney_u", *mann_whitney(reference, current, alternative="less"),
                                       tau))
        return Checked(results)


class BasisCheck:
    """A level shift of a pair's basis (streams.drift.basis) against each other pair of its group: the
    serial-correlation-corrected Welch t over several short current windows, counted only when the
    latest values have moved at least ``basis_min_bps`` from the reference mean (that shift is the
    effect reported, in basis points).

    The pair is reported as the one that moved only when it moved against *every* other pair the same
    way and by much the same amount (the smallest shift at least half the largest, and at least that
    floor), and significantly against one of them: the smallest p-value of its comparisons,
    Bonferroni-corrected over them (the union bound). A pair that moved alone moved alike against each
    of the others (they differ by the others' own wander); a pair that stayed moved against the one that
    moved only. Significance against every pair (an intersection-union test) was measured and not kept:
    in USDC's de-peg USDT wandered too, a comparison against it was so serially correlated that a
    10-event window could not reject a 1,200 bp shift, and the de-peg's start went unreported. The
    result names the comparison that rejects.
    """

    @staticmethod
    def run(channel: Channel, samples: Samples) -> Checked:
        columns = np.array(samples.columns)
        t, p, _ = channel.mean_tests(samples.recent, columns, samples.spans)
        centre = channel.reference_moments[0][columns]
        # The size of each shift now: the median of the last three values (a detection comes with a
        # partly shifted window, whose mean understates a de-peg that has already happened).
        shifts = np.nanmedian(samples.recent[-3:, columns], axis=0) - centre
        sizes = np.abs(shifts)
        moved = (len(samples.tested) == len(channel.streams) and bool(np.all(np.sign(shifts) == np.sign(shifts[0])))
                 and float(sizes.min()) >= max(channel.config.basis_min_bps, float(sizes.max()) / 2))
        k = int(np.nanargmin(p)) if not np.all(np.isnan(p)) else 0
        stream, tau = samples.tested[k]
        p_k = min(1.0, float(p[k]) * len(samples.tested)) if moved else 1.0
        return Checked([CheckResult(stream, "basis_t", float(t[k]), p_k, abs(float(shifts[k])), tau)])


class Check(Protocol):
    """What every check kind provides."""

    @staticmethod
    def run(channel: Channel, samples: Samples) -> Checked: ...


CHECKS: dict[str, type[Check]] = {"FEATURE": DistributionCheck, "PREDICTION": DistributionCheck, "VARIANCE": VarianceCheck,
          "CONCEPT": LossCheck, "BASIS": BasisCheck}
