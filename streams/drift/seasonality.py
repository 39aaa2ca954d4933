"""The intraday volatility profile: return-like drift features in units of their usual size at that
time of day.

Why: the size of one-minute returns follows the clock (quiet Asian night, busy European and US
sessions: about 2-3x), and a drift reference is taken at one time of day. A monitor that runs for
days compares the busy hours of the next day with the quiet hours it started in and reports the
daily cycle as a change of volatility (measured with the two consecutive BTCUSDT days here: a
VARIANCE alert on `ret_5` at 18:20 UTC of the second day, 3.5 per 10k events against a bound of
0.4, where each day alone raises none). The cycle repeats, so it can be learnt: each day, the mean
absolute one-step return of each time-of-day bucket (UTC), relative to that day's mean over the
buckets, is kept, the profile is each bucket's mean over the last ``days`` (7) days without
the largest and the smallest (from five days on), and from the first day that counts (below) on each
return-like feature is divided by the profile's factor for its bucket. What stays is what is
unusual for that time of day: a burst three times the usual size at that hour is still three times
the usual size. Measured (one run each): the two BTCUSDT
days raise no alert with hourly buckets; eight synthetic three-day streams with a 3x session cycle
raise 2 alarms on days 2-3 instead of 13, and a burst of 3x the usual size for its hour is reported
within 19-39 events (tests/unit/test_drift.py). Half-hour buckets were noisier (5 alarms; ~30
returns a bucket from one day), hence hours.

Why a trimmed mean of days: a day with an event in some of its hours (a news release, the start or the
end of a de-peg) has a shape that does not recur. Blended in with weight 0.3 (the profile before,
measured 2026-12-02), such a day moved the profile for days: a pair de-pegged for three days (three
pairs from the two BTCUSDT days repeated over two weeks, weekends at 0.6 of their moves, the pair's
offset a random walk of 0.2% a minute, `bench/drift_real.py --only depeg_weeks`) still had hours 0-5
at 1.14-1.40 instead of 0.71-1.15 three days after the de-peg ended, and raised 4 FEATURE and VARIANCE
alerts in the days after it, where its peers raised none; with the trimmed mean 1 (12 hours after).
A plain median of the seven days left the de-pegged pair 1 alert too, but raised one on each of the
other two: over days that repeat (this construct, or a quiet week) it is one day's noisy profile.

A day counts if three quarters of its buckets saw a move; the buckets it lacks (hours missing from the
data: an exchange's maintenance, a halted market) keep what the other days say, and its level is
taken against the usual share of the hours it has, so missing busy hours do not make the rest look
busier. Why: a monitor that lost a day's profile to two missing hours compared the next day's busy
afternoon with the morning it started in (the two BTCUSDT days joined, 10:00-12:00 cut from the first:
a VARIANCE alert on `sma_ratio_5_20` at 17:40 UTC of the second day, none with the rule;
tests/unit/test_drift_real.py, `bench/drift_real.py --only missing_hours`). A file that starts at
noon or a stream of labelled rows without returns gives no profile. Until the first day that counts
the values pass unchanged; :attr:`IntradayProfile.ready` says when the scaling starts, and the drift
monitor re-bases its feature and variance channels then (their reference was in other units).

Unlike :class:`streams.drift.volatility.VolatilityScale` (an EWMA of recent volatility: it divides
out bursts too, and is off by default), this removes only what recurs every day.

>>> profile = IntradayProfile(buckets=2, source="ret_1", scaled=("ret_1",))
>>> day, half = 86_400_000, 43_200_000
>>> for t, r in [(0, 0.01), (1, -0.01), (half, 0.03), (half + 1, -0.03)]:   # quiet night, busy day
...     _ = profile.scaled({"ret_1": r}, t)
>>> profile.ready
False
>>> profile.scaled({"ret_1": 0.01}, day)["ret_1"], profile.ready        # the first day is complete
(0.02, True)
>>> profile.scaled({"ret_1": 0.03}, day + half)["ret_1"]                   # usual size for that hour
0.02
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from streams.drift.volatility import VOLATILITY_SCALED

DAY_MS = 86_400_000
BUCKETS = 24  # hours: about 60 one-minute returns per bucket and day
DAYS = 7  # days whose trimmed mean per bucket is the profile


def _trimmed_mean(values: list[float]) -> float:
    """The mean without the largest and the smallest value once there are five or more."""
    ordered = sorted(values)
    if len(ordered) >= 5:
        ordered = ordered[1:-1]
    return sum(ordered) / len(ordered)


def check_buckets(buckets: int) -> int:
    """``buckets`` if it splits a day into equal whole milliseconds (1 to 1440 buckets); else ValueError."""
    if not 1 <= buckets <= 1440 or DAY_MS % buckets:
        raise ValueError(f"must be 0 (off) or a number of buckets that divides a day evenly (24: hours, 48: half "
                         f"hours, 96: quarters ...), got {buckets!r}")
    return buckets


class IntradayProfile:
    """Divides the ``scaled`` features by the size of ``source`` usual at their time of day (see the
    module docstring). A plain class with no Kafka; part of a symbol's drift state."""

    def __init__(self, buckets: int = BUCKETS, days: int = DAYS, source: str = "ret_1",
                 scaled: tuple[str, ...] = VOLATILITY_SCALED):
        check_buckets(buckets)
        if days < 1:
            raise ValueError("days must be >= 1 (days whose trimmed mean is the profile)")
        self._buckets, self._source, self._scaled = buckets, source, frozenset(scaled)
        self._factors: list[float] | None = None
        # Relative profiles of the last days that counted (None: a bucket the day did not see).
        self._recent: deque[list[float | None]] = deque(maxlen=days)
        self._day: int | None = None
        self._sums = [0.0] * buckets
        self._counts = [0] * buckets
        self._last_time: int | None = None
        self._days = 0  # days folded in

    @property
    def ready(self) -> bool:
        """Whether a day that counts has been seen, so that values are scaled."""
        return self._factors is not None

    @property
    def factors(self) -> tuple[float, ...] | None:
        """Usual size of the source per bucket relative to the day's mean (None before a day that counts)."""
        return None if self._factors is None else tuple(self._factors)

    def scaled(self, values: dict[str, float], time_ms: int) -> dict[str, Any]:
        """``values`` with the scaled features divided by their bucket's factor (unchanged before the
        profile is ready). Folds the source value in (once per event time: the fills of one order are
        one observation)."""
        day, bucket = divmod(time_ms, DAY_MS)
        bucket = bucket * self._buckets // DAY_MS
        if day != self._day:
            if self._day is not None:
                self._end_day()
            self._day = day
        source = values.get(self._source)
        if source is not None and math.isfinite(source) and time_ms != self._last_time:
            self._sums[bucket] += abs(source)
            self._counts[bucket] += 1
            self._last_time = time_ms
        factors = self._factors
        if factors is None:
            return values
        factor = factors[bucket]
        # A copy with the few scaled entries replaced: the same divisions as a comprehension over every
        # entry, at a third of its cost per event (the monitor's hot path).
        out = dict(values)
        for name in self._scaled:
            if name in out:
                out[name] = out[name] / factor
        return out

    def _end_day(self) -> None:
        sums, counts, buckets = self._sums, self._counts, self._buckets
        self._sums, self._counts = [0.0] * buckets, [0] * buckets
        # A bucket without any move (hours missing from the data, a halted market) has no size to learn.
        means = [s / c if c and s > 0 else None for s, c in zip(sums, counts, strict=True)]
        present = {b: m for b, m in enumerate(means) if m is not None}
        if len(present) * 4 < buckets * 3:
            return  # a day with a quarter of its hours missing says too little about its shape
        if len(present) == buckets or self._factors is None:
            average = sum(present.values()) / len(present)
        else:
            # The day's level had every hour been seen: its hours against their usual share, so that
            # missing busy hours do not make the seen ones look busier than they were.
            average = sum(present.values()) / sum(self._factors[b] for b in present)
        self._days += 1
        recent = self._recent
        recent.append([None if m is None else m / average for m in means])
        factors = []
        for b in range(buckets):
            seen = [v for day in recent if (v := day[b]) is not None]
            factors.append(_trimmed_mean(seen) if seen else 1.0)
        self._factors = factors

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A checkpoint from before the trimmed mean kept one blended profile: it stands for the days seen.
        if "_recent" not in state:
            factors = state.get("_factors")
            state["_recent"] = deque([list(factors)] if factors else [], maxlen=DAYS)
            state.pop("_blend", None)
        self.__dict__.update(state)
