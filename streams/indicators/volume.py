"""Indicators of volume and trade sides: VWAPs, volume z-score and ratio, taker-buy share, trade signs."""

from __future__ import annotations

from streams.indicators.base import DAY_MS, Bar, Indicator, _check_window
from streams.windows import RollingMoments, RollingSum


class SessionVWAP(Indicator):
    """``session_vwap`` (quote volume over volume since 00:00 UTC of the tick's day) and
    ``session_vwap_dev = p / session_vwap - 1``; absent while the session's volume is 0."""

    family = "session"

    def __init__(self) -> None:
        super().__init__()
        self.day = -1
        self.quote = self.volume = 0.0
        self.names = ("session_vwap", "session_vwap_dev")

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        day = bar.time_ms // DAY_MS
        if day != self.day:
            self.day = day
            self.quote = self.volume = 0.0
        self.quote += bar.quote_volume
        self.volume += bar.volume
        if self.volume > 0.0:
            vwap = self.quote / self.volume
            values[self.names[0]] = vwap
            values[self.names[1]] = bar.price / vwap - 1.0

class VWAP(Indicator):
    """``vwap_n`` (quote volume over volume of the last ``n`` bars) and ``vwap_dev_n = p / vwap - 1``;
    from ``t >= n``, absent while the window's volume is 0."""

    family = "vwap"

    def __init__(self, n: int = 20):
        super().__init__(_check_window(n))
        self.n = n
        self.volume, self.quote = RollingSum(n), RollingSum(n)
        self.names = (f"vwap_{n}", f"vwap_dev_{n}")

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        self.volume.add(bar.volume)
        self.quote.add(bar.quote_volume)
        if bar.t >= self.n:
            total = self.volume.total
            if total > 0.0:
                vwap = self.quote.total / total
                values[self.names[0]] = vwap
                values[self.names[1]] = bar.price / vwap - 1.0

class Volume(Indicator):
    """``volume_z_n`` (population std; 0 when the std is 0) and ``volume_ratio_n = v / mean(v)`` (absent
    when the mean is 0), from ``t >= n``."""

    family = "volume"

    def __init__(self, n: int = 20):
        super().__init__(_check_window(n))
        self.n = n
        self.window = RollingMoments(n)
        self.names = (f"volume_z_{n}", f"volume_ratio_{n}")

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        volume = bar.volume
        self.window.add(volume)
        if bar.t >= self.n:
            mean = self.window.mean
            sd = self.window.variance(0) ** 0.5
            values[self.names[0]] = 0.0 if sd <= 1e-12 * abs(mean) else (volume - mean) / sd
            if mean > 0.0:
                values[self.names[1]] = volume / mean

class TakerBuyShare(Indicator):
    """``taker_buy_share_n``: taker-buy volume over the volume of the last ``n`` bars whose side is
    known, from ``t >= n``."""

    family = "taker"

    def __init__(self, n: int = 20):
        super().__init__(_check_window(n))
        self.n = n
        self.buy, self.known = RollingSum(n), RollingSum(n)
        self.names = (f"taker_buy_share_{n}",)

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        if bar.taker_buy is None:
            self.buy.add(0.0)
            self.known.add(0.0)
        else:
            self.buy.add(bar.taker_buy)
            self.known.add(bar.volume)
        if bar.t >= self.n:
            known = self.known.total
            if known > 0.0:
                values[self.names[0]] = self.buy.total / known

class TradeSigns(Indicator):
    """``trade_sign_imbalance_n``: mean taker sign (+1 buy, -1 sell) of the last ``n`` trades (klines
    and trades without a side do not count)."""

    family = "signs"

    def __init__(self, n: int = 20):
        super().__init__(_check_window(n))
        self.n = n
        self.signs = RollingSum(n)
        self.seen = 0
        self.names = (f"trade_sign_imbalance_{n}",)

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        if bar.kind != "KLINE" and bar.is_buyer_maker is not None:
            self.signs.add(-1.0 if bar.is_buyer_maker else 1.0)
            self.seen += 1
            if self.seen >= self.n:
                values[self.names[0]] = self.signs.total / float(self.n)
