"""A sequential test for a rise of one-minute volatility: a one-sided CUSUM of the likelihood ratio of a
threefold scale, on ``ret_1`` in units of its usual size at that hour and its recent level. The
VARIANCE channel's test by default (``LIVELEARN_DRIFT_VARIANCE_TEST=cusum``) once a symbol has two days
of event time behind it; the windowed test (streams.drift.checks.VarianceCheck) watches until then,
and alone with ``LIVELEARN_DRIFT_VARIANCE_TEST=volatility``.

Why: the windowed variance test needs its current window mostly inside a burst before the window's
scale moves enough, and on real months it sits on one trade-off curve whatever knob moves. A CUSUM
accumulates the log-likelihood ratio of the burst from its first event and reports when the sum
crosses ``threshold`` (Page 1954; Lorden 1971: among detectors with the same mean time between false
alarms on independent data, the smallest worst-case delay). Measured on 58 real months of one-minute
klines of seven pairs (not shipped, docs/STATUS.md #15) through the drift monitor
(``bench/drift_bursts.py``: x3 spliced in from every 1,500th event after two days, found within 200
events by a VARIANCE or FEATURE alert; FIRING alerts counted on the unmodified months), and this
class alone (``bench/variance_cusum.py``, alarms counted before de-duplication, first two days silent):

==============================  ===============================  =======================  ==========  ======
VARIANCE test                   alerts on the unmodified months  months over 0.8 per 10k  found/1538  median
==============================  ===============================  =======================  ==========  ======
windowed alone                  184 = 0.75 [0.64, 0.86] per 10k  18 of 58                 1,106       119
CUSUM 50 after two days         80 = 0.32 [0.26, 0.40]           1 of 58                  1,107       76
CUSUM 40, alone                 108 = 0.44 [0.36, 0.53]          5 of 58                  1,215       61
CUSUM 50, alone                 62 = 0.25 [0.19, 0.32]           0 of 58                  1,106       76
==============================  ===============================  =======================  ==========  ======

The threshold is 50 because it is the one that kept every month within twice the channel's budget
(0.4 per 10k, the bound exported for VARIANCE); its false-alarm rate is measured, not derived (below).

What it computes, once per event time with a finite return ``r``:

* ``z**2 = r**2 / (season * level)``: ``season`` the hour's (UTC) mean ``r**2`` on past days (an
  exponential mean of daily means with a week's weight) over the mean of the hours seen; the current
  hour enters once it is over, so that a burst is not measured against itself (folded in event by
  event, a profile built over two or three days took in a third of a burst within 20 events).
  ``level`` an exponential mean of the deseasonalised ``r**2`` (half-life ``half_life`` events),
  updated after the event is scored;
* ``S = max(0, S + min(z**2, 9) * 4/9 - log 3)``: the Gaussian log-likelihood ratio of a scale x3
  against x1, each event's square capped at 9 (one return of ten of its usual size is a jump, not a
  burst); an alarm when ``S > threshold``, then ``S = 0`` and ``hold`` events without alarms;
* no alarm in the first ``warmup_hours`` of event time, while the hour profile fills.

What an alarm carries (:class:`CusumAlarm`): ``S``; ``exp(-S)``, which under independent Gaussian returns
of the usual scale bounds the probability that a likelihood ratio started where ``S`` last left zero
ever reaches ``exp(S)`` (Ville's inequality; the cap only lowers the ratio); the start of the rise (the
first event after ``S`` last left zero, the CUSUM's change-point estimate); and the size of the returns
since then in units of the usual (the square root of their mean ``z**2``). Under the same model the
mean time between false alarms is at least ``exp(threshold)`` events (Lorden), which says nothing about
real markets, whose returns are heavy-tailed and whose usual scale is estimated: the rate above was
measured there instead.

Limits, measured or not: it needs ``warmup_hours`` (two days) of data before it may alarm, so a series
shorter than that (the shipped single days, the tick captures) gets no variance alerts from it; on
trade ticks (returns mostly zero on a price grid, many events a second) it has not been measured.

>>> import random
>>> rng, cusum, hour = random.Random(1), VolatilityCusum(threshold=20, warmup_hours=24), 3_600_000
>>> quiet = [cusum.update(rng.gauss(0, 1e-3), i * 60_000) for i in range(3 * 1440)]
>>> quiet.count(None) == len(quiet)
True
>>> start = 3 * 1440 * 60_000
>>> alarm = next(a for i in range(200) if (a := cusum.update(rng.gauss(0, 3e-3), start + i * 60_000)))
>>> alarm.start_ms >= start, alarm.scale > 2, alarm.p_value < 1e-8
(True, True, True)
"""

from __future__ import annotations

import math
from typing import NamedTuple

HOUR_MS = 3_600_000
CAP = 9.0
RISE = 3.0  # the scale the likelihood ratio is of
THRESHOLD = 50.0
HALF_LIFE = 720.0
WARMUP_HOURS = 48.0
HOLD = 200
_GAIN = (1 - 1 / RISE**2) / 2
_COST = math.log(RISE)


class CusumAlarm(NamedTuple):
    """A crossing of the threshold (see the module docstring)."""

    statistic: float
    p_value: float
    start_ms: int
    scale: float


class VolatilityCusum:
    """The detector of the module docstring, for one symbol's ``ret_1``. A plain class with no Kafka."""

    __slots__ = ("_threshold", "_rate", "_warmup_ms", "_hold_events", "_s", "_level", "_seen", "_hold",
                 "_hours", "_days", "_hour_mean", "_hour", "_sum", "_n", "_first_ms", "_last_ms", "_start_ms",
                 "_run_sum", "_run_n")

    def __init__(self, threshold: float = THRESHOLD, half_life: float = HALF_LIFE,
                 warmup_hours: float = WARMUP_HOURS, hold: int = HOLD):
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0 (a log-likelihood ratio), got {threshold!r}")
        if half_life <= 0:
            raise ValueError(f"half_life must be > 0 events, got {half_life!r}")
        if warmup_hours < 0 or hold < 0:
            raise ValueError("warmup_hours and hold must be >= 0")
        self._threshold, self._warmup_ms, self._hold_events = float(threshold), warmup_hours * HOUR_MS, hold
        self._rate = 1 - 0.5 ** (1 / half_life)
        self._s, self._level, self._seen, self._hold = 0.0, 0.0, 0, 0
        # Per UTC hour: the mean r**2 of the hour on past days and how many days it holds; the mean over
        # the hours seen; the current hour's sum and count, folded in once it is over.
        self._hours, self._days, self._hour_mean = [0.0] * 24, [0] * 24, 0.0
        self._hour: int | None = None
        self._sum, self._n = 0.0, 0
        self._first_ms: int | None = None
        self._last_ms: int | None = None
        self._start_ms = 0
        self._run_sum, self._run_n = 0.0, 0  # z**2 since S last left zero

    @property
    def statistic(self) -> float:
        """The current CUSUM ``S``."""
        return self._s

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def first_ms(self) -> int | None:
        """The event time of the first return seen (the profile and level are learnt from then on)."""
        return self._first_ms

    @property
    def warm(self) -> bool:
        """Whether ``warmup_hours`` of event time have passed since the first return, so that it may alarm."""
        first, last = self._first_ms, self._last_ms
        return first is not None and last is not None and last - first >= self._warmup_ms

    @property
    def holding(self) -> bool:
        """Whether alarms are held back (warm-up, or the events just after an alarm)."""
        return self._hold > 0 or not self.warm

    def update(self, r: float, time_ms: int) -> CusumAlarm | None:
        """Folds one return in (once per event time: the fills of one order are one observation) and
        returns the alarm it raises, if any."""
        if r != r or math.isinf(r) or time_ms == self._last_ms:
            return None
        if self._first_ms is None:
            self._first_ms = time_ms
        self._last_ms = time_ms
        squared = r * r
        self._seen += 1
        hour = time_ms // HOUR_MS % 24
        if hour != self._hour:
            self._end_hour()
            self._hour, self._sum, self._n = hour, 0.0, 0
        self._sum += squared
        self._n += 1
        days = self._days[hour]
        season = self._hours[hour] / max(self._hour_mean, 1e-30) if days else 1.0
        deseasoned = squared / max(season, 1e-3)
        alarm = None
        if time_ms - self._first_ms >= self._warmup_ms:
            z2 = deseasoned / max(self._level, 1e-30)
            s = self._s + min(z2, CAP) * _GAIN - _COST
            if s <= 0:
                s, self._run_sum, self._run_n = 0.0, 0.0, 0
            else:
                if self._run_n == 0:
                    self._start_ms = time_ms
                self._run_sum += z2
                self._run_n += 1
            if self._hold:
                self._hold -= 1
                s, self._run_sum, self._run_n = 0.0, 0.0, 0
            elif s > self._threshold:
                alarm = CusumAlarm(s, math.exp(-s), self._start_ms, math.sqrt(self._run_sum / self._run_n))
                s, self._run_sum, self._run_n, self._hold = 0.0, 0.0, 0, self._hold_events
            self._s = s
        # The mean of all events so far until the half-life's weight is reached (no first value dominating).
        self._level += max(1 / self._seen, self._rate) * (deseasoned - self._level)
        return alarm

    def _end_hour(self) -> None:
        past = self._hour
        if past is None or not self._n:
            return
        self._days[past] += 1
        self._hours[past] += max(1 / self._days[past], 1 / 7) * (self._sum / self._n - self._hours[past])
        known = [m for m, d in zip(self._hours, self._days, strict=True) if d]
        self._hour_mean = sum(known) / len(known)
