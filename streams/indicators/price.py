"""Indicators of closes: returns, momentum, volatility, moving averages, MACD, Bollinger bands, RSI."""

from __future__ import annotations

from streams.indicators.base import HISTORY, Bar, Indicator, _check_window
from streams.windows import RollingMoments, RollingSum


class Return(Indicator):
    """``ret_k = p_t / p_{t-k} - 1``, from ``t > k``."""

    family = "ret"

    def __init__(self, k: int):
        super().__init__(_check_window(k, HISTORY - 1))
        self.k = k
        self.names = (f"ret_{k}",)

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        if bar.t > self.k:
            values[self.names[0]] = bar.price / bar.past(self.k) - 1.0

class Momentum(Indicator):
    """``momentum_n = p_t - p_{t-n}`` and ``roc_n = 100 (p_t / p_{t-n} - 1)``, from ``t > n``."""

    family = "momentum"

    def __init__(self, n: int):
        super().__init__(_check_window(n, HISTORY - 1))
        self.n = n
        self.names = (f"momentum_{n}", f"roc_{n}")

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        if bar.t > self.n:
            past = bar.past(self.n)
            values[self.names[0]] = bar.price - past
            values[self.names[1]] = 100.0 * (bar.price / past - 1.0)

class Volatility(Indicator):
    """``volatility_n``: sample std (ddof 1) of the last ``n`` one-step returns, from ``t > n``."""

    family = "volatility"

    def __init__(self, n: int):
        super().__init__(_check_window(n))
        self.returns = RollingMoments(n)
        self.names = (f"volatility_{n}",)

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        if bar.t > 1:
            self.returns.add(bar.price / bar.past(1) - 1.0)
            if self.returns.full:
                values[self.names[0]] = self.returns.variance(1) ** 0.5

class SMA(Indicator):
    """``sma_n``: simple mean of the last ``n`` closes, from ``t >= n``."""

    family = "sma"

    def __init__(self, n: int):
        super().__init__(_check_window(n))
        self.n = n
        self.window = RollingSum(n)
        self.names = (f"sma_{n}",)

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        self.window.add(bar.price)
        if bar.t >= self.n:
            values[self.names[0]] = self.window.total / float(self.n)

class MACD(Indicator):
    """``ema_fast``, ``ema_slow`` (``alpha = 2 / (n + 1)``, seeded with the first close), ``macd``, their
    ratio ``ema_ratio_fast_slow``, ``macd_signal`` (EMA ``signal`` of macd) and ``macd_hist``."""

    family = "ema"

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9):
        super().__init__(_check_window(fast), _check_window(slow), _check_window(signal))
        if fast >= slow:
            raise ValueError("fast must be shorter than slow")
        self.fast, self.slow, self.signal = fast, slow, signal
        self.a_fast, self.a_slow, self.a_signal = 2.0 / (fast + 1.0), 2.0 / (slow + 1.0), 2.0 / (signal + 1.0)
        self.ema_fast = self.ema_slow = self.ema_signal = 0.0
        self.names = (f"ema_{fast}", f"ema_{slow}", "macd", f"ema_ratio_{fast}_{slow}", "macd_signal", "macd_hist")

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        price, t = bar.price, bar.t
        if t == 1:
            self.ema_fast = self.ema_slow = price
            self.ema_signal = 0.0
        else:
            self.ema_fast += self.a_fast * (price - self.ema_fast)
            self.ema_slow += self.a_slow * (price - self.ema_slow)
            self.ema_signal += self.a_signal * ((self.ema_fast - self.ema_slow) - self.ema_signal)
        names = self.names
        if t >= self.fast:
            values[names[0]] = self.ema_fast
        if t >= self.slow:
            macd = self.ema_fast - self.ema_slow
            values[names[1]] = self.ema_slow
            values[names[2]] = macd
            values[names[3]] = self.ema_fast / self.ema_slow - 1.0
            if t >= self.slow + self.signal - 1:
                values[names[4]] = self.ema_signal
                values[names[5]] = macd - self.ema_signal

class Bollinger(Indicator):
    """``sma_n``, the ratio ``sma_ratio_fast_n`` of the ``fast`` mean to it, ``price_std_n``
    (population) and ``bollinger_pct_b = (p - (sma - k sd)) / (2 k sd)`` (0.5 when sd = 0)."""

    family = "bb"

    def __init__(self, n: int = 20, k: float = 2, fast: int = 5):
        super().__init__(_check_window(n), k)
        if not 1 <= fast < n:
            raise ValueError("fast must be shorter than n")
        self.n, self.k, self.fast = n, float(k), fast
        self.window = RollingMoments(n)
        self.fast_window = RollingSum(fast)
        self.names = (f"sma_{n}", f"sma_ratio_{fast}_{n}", f"price_std_{n}", "bollinger_pct_b")

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        price = bar.price
        self.window.add(price)
        self.fast_window.add(price)
        if bar.t >= self.n:
            mid = self.window.mean
            sd = self.window.variance(0) ** 0.5
            names = self.names
            values[names[0]] = mid
            values[names[1]] = (self.fast_window.total / float(self.fast)) / mid - 1.0
            values[names[2]] = sd
            k = self.k
            values[names[3]] = 0.5 if sd <= 1e-12 * abs(mid) else (price - mid + k * sd) / (2.0 * k * sd)

class RSI(Indicator):
    """``rsi_n``, Wilder: mean gain and loss of the first ``n`` changes, then ``(avg (n - 1) + x) / n``;
    from ``t >= n + 1``; 50 with neither gains nor losses, 100 without losses."""

    family = "rsi"

    def __init__(self, n: int = 14):
        super().__init__(_check_window(n))
        self.n = float(n)
        self.ready = n + 1
        self.avg_gain = self.avg_loss = 0.0
        self.names = (f"rsi_{n}",)

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        t = bar.t
        if t <= 1:
            return
        change = bar.price - bar.past(1)
        gain = change if change > 0.0 else 0.0
        loss = -change if change < 0.0 else 0.0
        n = self.n
        if t <= self.ready:
            self.avg_gain += gain / n
            self.avg_loss += loss / n
        else:
            self.avg_gain = (self.avg_gain * (n - 1.0) + gain) / n
            self.avg_loss = (self.avg_loss * (n - 1.0) + loss) / n
        if t >= self.ready:
            ag, al = self.avg_gain, self.avg_loss
            if al == 0.0:
                values[self.names[0]] = 50.0 if ag == 0.0 else 100.0
            else:
                values[self.names[0]] = 100.0 - 100.0 / (1.0 + ag / al)
