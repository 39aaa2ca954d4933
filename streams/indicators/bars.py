"""Indicators of bars (high, low, close): ATR, stochastic and Williams %R, range, CCI."""

from __future__ import annotations

from streams.indicators.base import Bar, Indicator, _check_window
from streams.windows import RollingExtremes, RollingMoments


class ATR(Indicator):
    """``atr_n``: true range ``max(h - l, |h - c_prev|, |l - c_prev|)`` (``h - l`` on the first bar),
    mean of the first ``n`` then Wilder smoothing, from ``t >= n``; ``atr_pct = atr_n / p``."""

    family = "atr"

    def __init__(self, n: int = 14):
        super().__init__(_check_window(n))
        self.t_ready, self.n = n, float(n)
        self.atr = 0.0
        self.prev_close = 0.0
        self.names = (f"atr_{n}", "atr_pct")

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        high, low, t, n = bar.high, bar.low, bar.t, self.n
        if t == 1:
            true_range = high - low
        else:
            pc = self.prev_close
            true_range = max(high - low, abs(high - pc), abs(low - pc))
        self.prev_close = bar.price
        if t <= self.t_ready:
            self.atr += true_range / n
        else:
            self.atr = (self.atr * (n - 1.0) + true_range) / n
        if t >= self.t_ready:
            values[self.names[0]] = self.atr
            values[self.names[1]] = self.atr / bar.price

class Stochastic(Indicator):
    """``stoch_k_n = 100 (p - LL) / (HH - LL)`` (50 when flat) and ``williams_r_n = -100 (HH - p) /
    (HH - LL)`` (-50 when flat) over the last ``n`` bars' highs and lows, from ``t >= n``."""

    family = "stoch"

    def __init__(self, n: int = 14):
        super().__init__(_check_window(n))
        self.n = n
        self.extremes = RollingExtremes(n)
        self.names = (f"stoch_k_{n}", f"williams_r_{n}")

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        e = self.extremes
        e.add(bar.high, bar.low)
        if bar.t >= self.n:
            hh, ll = e.highest(), e.lowest()
            span = hh - ll
            if span > 0.0:
                values[self.names[0]] = 100.0 * (bar.price - ll) / span
                values[self.names[1]] = -100.0 * (hh - bar.price) / span
            else:
                values[self.names[0]] = 50.0
                values[self.names[1]] = -50.0

class Range(Indicator):
    """``range_n = (HH_n - LL_n) / p``, from ``t >= n``."""

    family = "range"

    def __init__(self, n: int = 20):
        super().__init__(_check_window(n))
        self.n = n
        self.extremes = RollingExtremes(n)
        self.names = (f"range_{n}",)

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        self.extremes.add(bar.high, bar.low)
        if bar.t >= self.n:
            values[self.names[0]] = (self.extremes.highest() - self.extremes.lowest()) / bar.price

class CCI(Indicator):
    """``cci_n = (tp - sma(tp)) / (0.015 mean|tp - sma(tp)|)``, ``tp = (h + l + c) / 3``; 0 when the mean
    deviation is 0; from ``t >= n``. Exact in fixed point: ``n (tp - mean) = n q - S1``, so neither the
    deviation nor the numerator loses digits to cancellation at price levels of 60,000."""

    family = "cci"

    def __init__(self, n: int = 20):
        super().__init__(_check_window(n))
        self.n = n
        self.typical = RollingMoments(n)
        self.names = (f"cci_{n}",)

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        typical = self.typical
        typical.add((bar.high + bar.low + bar.price) / 3.0)
        if bar.t >= self.n:
            n, s1 = self.n, typical.s1
            deviation = 0
            for q in typical.values:
                deviation += abs(n * q - s1)
            if deviation == 0:
                values[self.names[0]] = 0.0
            else:
                values[self.names[0]] = (n * typical.values[typical.pos - 1] - s1) * n / (0.015 * deviation)
