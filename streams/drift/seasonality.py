"""The intraday volatility profile: return-like drift features in units of their usual size at that
time of day.

Why: the size of one-minute returns follows the clock (quiet Asian night, busy European and US
sessions: about 2-3x), and a drift reference is taken at one time of day. A monitor that runs for
days compares the busy hours of the next day with the quiet hours it started in and reports the
daily cycle as a change of volatility (measured with the two consecutive BTCUSDT days here: a
VARIANCE alert on `ret_5` at 18:20 UTC of the second day, 3.5 per 10k events against a bound of
0.4, where each day alone raises none). The cycle repeats, so it can be learnt: each day, the mean
absolute one-step return of each time-of-day bucket (UTC), relative to that day's mean over the
buckets, is folded into a profile (the first complete day starts it; later days are blended in
with weight ``blend``), and from then on each return-like feature is divided by the profile's factor
for its bucket. What stays is what is unusual for that time of day: a burst three times the usual
size at that hour is still three times the usual size. Measured (one run each): the two BTCUSDT
days raise no alert with hourly buckets; eight synthetic three-day streams with a 3x session cycle
raise 2 alarms on days 2-3 instead of 13, and a burst of 3x the usual size for its hour is reported
within 19-39 events (tests/unit/test_drift.py). Half-hour buckets were noisier (5 alarms; ~30
returns a bucket from one day), hence hours.

A day counts only if every bucket saw a return (a file that starts at noon, a gap of an hour,
a stream of labelled rows without returns: no profile). Until the first complete day the values
pass unchanged; :attr:`IntradayProfile.ready` says when the scaling starts, and the drift monitor
re-bases its feature and variance channels then (their reference was in other units).

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
from typing import Any

from streams.drift.volatility import VOLATILITY_SCALED

DAY_MS = 86_400_000
BUCKETS = 24  # hours: about 60 one-minute returns per bucket and day
BLEND = 0.3  # weight of the newest complete day in the profile (about the last three days count)


def check_buckets(buckets: int) -> int:
    """``buckets`` if it splits a day into equal whole milliseconds (1 to 1440 buckets); else ValueError."""
    if not 1 <= buckets <= 1440 or DAY_MS % buckets:
        raise ValueError(f"must be 0 (off) or a number of buckets that divides a day evenly (24: hours, 48: half "
                         f"hours, 96: quarters ...), got {buckets!r}")
    return buckets


class IntradayProfile:
    """Divides the ``scaled`` features by the size of ``source`` usual at their time of day (see the
    module docstring). A plain class with no Kafka; part of a symbol's drift state."""

    def __init__(self, buckets: int = BUCKETS, blend: float = BLEND, source: str = "ret_1",
                 scaled: tuple[str, ...] = VOLATILITY_SCALED):
        check_buckets(buckets)
        if not 0.0 < blend <= 1.0:
            raise ValueError("blend must be in (0, 1]")
        self._buckets, self._blend, self._source, self._scaled = buckets, blend, source, frozenset(scaled)
        self._factors: list[float] | None = None
        self._day: int | None = None
        self._sums = [0.0] * buckets
        self._counts = [0] * buckets
        self._last_time: int | None = None
        self._days = 0  # complete days folded in

    @property
    def ready(self) -> bool:
        """Whether a complete day has been seen, so that values are scaled."""
        return self._factors is not None

    @property
    def factors(self) -> tuple[float, ...] | None:
        """Usual size of the source per bucket relative to the day's mean (None before a complete day)."""
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
        return {name: value / factor if name in self._scaled else value for name, value in values.items()}

    def _end_day(self) -> None:
        sums, counts = self._sums, self._counts
        self._sums, self._counts = [0.0] * self._buckets, [0] * self._buckets
        if not all(counts):
            return  # an incomplete day says nothing about some hours
        means = [s / c for s, c in zip(sums, counts, strict=True)]
        average = sum(means) / len(means)
        if not average > 0 or not all(m > 0 for m in means):
            return  # a bucket without any move (a halted market): no factor to divide by
        relative = [m / average for m in means]
        self._days += 1
        if self._factors is None:
            self._factors = relative
        else:
            # The plain mean of the days seen while they are fewer than 1 / blend (one day's profile is
            # noisy: ~60 one-minute returns a bucket), then an exponentially weighted one.
            b = max(self._blend, 1.0 / self._days)
            self._factors = [(1.0 - b) * f + b * r for f, r in zip(self._factors, relative, strict=True)]
