"""What every indicator shares: the bar it reads (with the symbol's recent closes) and the base class
that names outputs and identifies the indicator from its parameters (see streams.indicators)."""

from __future__ import annotations

DAY_MS = 86_400_000
HISTORY = 21  # prices kept for the longest return (ret_20 needs p_{t-20})


class Bar:
    """The bar of the current tick (a trade is a bar whose high, low and close are its price) and the
    symbol's recent closes; one per symbol, refilled in place for every tick."""

    __slots__ = ("t", "kind", "time_ms", "price", "high", "low", "volume", "quote_volume", "taker_buy",
                 "is_buyer_maker", "prices")

    def __init__(self) -> None:
        self.t = 0
        self.prices = [0.0] * HISTORY
        self.kind, self.time_ms, self.price, self.high, self.low = "", 0, 0.0, 0.0, 0.0
        self.volume, self.quote_volume = 0.0, 0.0
        self.taker_buy: float | None = None
        self.is_buyer_maker: bool | None = None

    def set(self, t: int, kind: str, time_ms: int, price: float, high: float, low: float, volume: float,
            quote_volume: float, taker_buy: float | None, is_buyer_maker: bool | None) -> None:
        self.t, self.kind, self.time_ms, self.price, self.high, self.low = t, kind, time_ms, price, high, low
        self.volume, self.quote_volume, self.taker_buy, self.is_buyer_maker = volume, quote_volume, taker_buy, is_buyer_maker
        self.prices[t % HISTORY] = price

    def past(self, k: int) -> float:
        """The close ``k`` bars ago (valid for ``k < t`` and ``k < HISTORY``)."""
        return self.prices[(self.t - k) % HISTORY]


class Indicator:
    """Base: ``spec`` (family, parameters) and ``names`` from the parameters, ``update`` per bar."""

    family = ""
    names: tuple[str, ...] = ()

    def __init__(self, *params: int | float | str):
        self.params = params

    @property
    def spec(self) -> tuple[str, tuple]:
        return self.family, self.params

    def update(self, bar: Bar, values: dict[str, float]) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.params))})"


def _check_window(n: int, longest: int = 1 << 20) -> int:
    if not isinstance(n, int) or not 1 <= n <= longest:
        raise ValueError(f"window must be an integer in [1, {longest}], got {n!r}")
    return n
