"""Volatility-scaled drift features: returns and return-like features in units of recent volatility.

Why one would: market volatility moves all day (the intraday cycle of one-minute returns is about
2-3x from the quiet hours to the open of a large market) and clusters, and a test that compares
one-minute returns with a reference taken hours earlier sees that cycle. Dividing each return-like
feature by an event-time estimate of the volatility *before* it (an exponentially weighted mean
absolute one-step return) leaves what is new about it.

Why it is off by default (``LIVELEARN_DRIFT_VOLATILITY_HALF_LIFE=0``): the drift tests already allow
for clustering (streams.drift.channel thins at the lag where absolute deviations decorrelate), which
holds their level on the shipped real series without scaling, and scaling divides out the bursts
the variance channel is there to report. Measured with the shipped kline days (log prices x3 from
event 1200, as bench/drift_real.py injects), with Levene as the variance test (the default then; the
volatility test that replaced it finds all four unscaled): unscaled, 2 of 4 days detected (140 and 180 events);
half-life 240 events, none; half-life 720, 2 of 4 (180 and 180); false alarms on the unmodified
days 0 in every case. It stays as an option for streams whose slow volatility cycle matters more
than sudden bursts.

The estimate is a plain class with no Kafka, updated once per event time (a fill of the same order
does not update it again):

>>> scale = VolatilityScale(("ret_1", "ret_5"), half_life=2, warmup=2)
>>> [scale.scaled({"ret_1": r, "ret_5": 2 * r, "rsi_14": 50.0}, t)["ret_1"] for t, r in enumerate([0.01, -0.01])]
[nan, nan]
>>> scaled = scale.scaled({"ret_1": 0.03, "ret_5": 0.06, "rsi_14": 50.0}, 2)
>>> round(scaled["ret_1"], 6), round(scaled["ret_5"], 6), scaled["rsi_14"]
(3.0, 6.0, 50.0)
"""

from __future__ import annotations

import math
from typing import Any

# Features whose size is proportional to the volatility of returns: returns over windows, ratios of
# moving averages to each other or to the price, and the volatility measures themselves (in units of
# the longer-run volatility they become a ratio of short to long volatility).
VOLATILITY_SCALED: tuple[str, ...] = (
    "ret_1", "ret_5", "ret_20", "sma_ratio_5_20", "ema_ratio_12_26", "volatility_20", "range_20", "atr_pct",
    "roc_10", "vwap_dev_20",
)
# The volatility measures among them are levels, each smoothed over its own window. The variance
# channel's volatility test reads the rest (the dispersion of returns, streams.drift.checks); a rise
# of a level is a change of its mean, which the feature channel tests.
VOLATILITY_LEVELS: tuple[str, ...] = ("volatility_20", "range_20", "atr_pct")
RETURN_LIKE: tuple[str, ...] = tuple(name for name in VOLATILITY_SCALED if name not in VOLATILITY_LEVELS)
HALF_LIFE = 720
WARMUP = 30


class VolatilityScale:
    """Divides the ``scaled`` features by the mean absolute ``source`` return before the event (an
    exponentially weighted mean with ``half_life`` events, started as a plain mean of ``warmup``
    events; NaN until then, so drift windows skip them)."""

    def __init__(self, scaled: tuple[str, ...] = VOLATILITY_SCALED, source: str = "ret_1",
                 half_life: float = HALF_LIFE, warmup: int = WARMUP):
        if half_life <= 0:
            raise ValueError("half_life must be positive (events)")
        if warmup < 1:
            raise ValueError("warmup must be at least 1 event")
        self._scaled = tuple(scaled)
        self._source = source
        self._weight = 1.0 - 0.5 ** (1.0 / half_life)
        self._warmup = warmup
        self._level = 0.0
        self._count = 0
        self._last_time: int | None = None
        self._pending = math.nan  # the source value of the current event time, folded in at the next

    @property
    def level(self) -> float:
        """The current volatility estimate (mean absolute source return); NaN while warming up."""
        return self._level if self._count >= self._warmup and self._level > 0 else math.nan

    def scaled(self, values: dict[str, float], time_ms: int) -> dict[str, Any]:
        """``values`` with the scaled features divided by the estimate from earlier event times."""
        if time_ms != self._last_time:
            self._fold(self._pending)
            self._last_time = time_ms
        self._pending = values.get(self._source, math.nan)
        level = self.level
        out = dict(values)
        for name in self._scaled:
            if name in out:
                out[name] = out[name] / level if level == level else math.nan
        return out

    def _fold(self, value: float) -> None:
        if value != value or math.isinf(value):
            return
        self._count += 1
        if self._count <= self._warmup:
            self._level += (abs(value) - self._level) / self._count
        else:
            self._level += self._weight * (abs(value) - self._level)
