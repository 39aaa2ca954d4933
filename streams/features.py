"""Per-symbol incremental features: one tick in, one feature vector out.

The price and volume features are computed by small indicator objects (streams.indicators), one per
family, whose parameters name their outputs; :func:`indicators` lists them in the order their values
are written, and the feature names and the feature-set id are derived from that list
(:func:`feature_names`, :func:`feature_set_id`). Book and trade-flow features come from
streams.microstructure. ``streams/features_batch.py`` computes the same definitions with vectorised
numpy/scipy over a whole series; it is kept as the independent oracle the tests compare this engine
with (to 1e-9 of each feature's scale) and as the batch figure of bench/features.py.

Definitions (``t`` counts price ticks of one symbol from 1; ``p`` is the trade price or kline close):

* Bars. A kline is a bar with its own high/low/close. A trade (or aggregate trade) is a bar whose high,
  low and close all equal its price, so "highest high over N" for trades is the highest trade price of
  the last N trades and the true range of a trade is ``|p_t - p_{t-1}|``.
* ``ret_k = p_t / p_{t-k} - 1`` (k = 1, 5, 20); ``momentum_10 = p_t - p_{t-10}``;
  ``roc_10 = 100 (p_t / p_{t-10} - 1)``.
* ``sma_n`` simple means of p; ``ema_n`` exponential with ``alpha = 2 / (n + 1)`` seeded with the first
  price (pandas ``ewm(span=n, adjust=False)``), ready from ``t >= n``. ``macd = ema_12 - ema_26``
  (ready ``t >= 26``), ``macd_signal`` = EMA 9 of macd over the same series (ready ``t >= 34``),
  ``macd_hist = macd - macd_signal``.
* ``price_std_20`` population std of p over 20; ``volatility_20`` sample std (ddof 1) of the last 20
  one-step returns (ready ``t >= 21``); ``range_20 = (HH_20 - LL_20) / p``.
* ``rsi_14``: Wilder. Average gain/loss of the first 14 price changes, then
  ``avg = (13 avg + x) / 14``; ready ``t >= 15``. No losses and no gains gives 50, no losses 100.
* ``bollinger_pct_b = (p - (sma_20 - 2 sd)) / (4 sd)`` with population sd; 0.5 when sd = 0.
* ``stoch_k_14 = 100 (p - LL_14) / (HH_14 - LL_14)`` (50 when HH = LL);
  ``williams_r_14 = -100 (HH_14 - p) / (HH_14 - LL_14)`` (-50 when HH = LL).
* ``cci_20 = (tp - sma(tp)) / (0.015 mean|tp - sma(tp)|)`` with ``tp = (h + l + c) / 3``; 0 when the
  mean deviation is 0. (The mean absolute deviation is the one feature that reads its 20 stored values
  each tick: constant work per tick, no re-sorting and no growth with history.)
* ``atr_14``: true range ``max(h - l, |h - c_prev|, |l - c_prev|)`` (``h - l`` on the first bar), mean
  of the first 14 then Wilder smoothing; ready ``t >= 14``; ``atr_pct = atr_14 / p``.
* ``vwap_20`` = sum(quote volume) / sum(volume) over 20 (quote volume = kline quote volume or
  ``price * qty`` of a trade); ``session_vwap`` the same since 00:00 UTC of the tick's day; ``*_dev`` is
  ``p / vwap - 1``. Absent while the volume in the window is 0.
* ``volume_z_20`` (population std; 0 when std = 0) and ``volume_ratio_20 = v / mean(v)`` (absent when the
  mean is 0); ``taker_buy_share_20`` = taker-buy volume / volume of ticks whose side is known;
  ``trade_sign_imbalance_20`` = mean taker sign (+1 buy, -1 sell) of the last 20 trades (trades only).
* Book and trade flow (streams.microstructure): ``spread_bps``, ``book_imbalance`` (queue imbalance),
  ``microprice_dev_bps``, ``ofi_10`` (order-flow imbalance over 10 book updates, ready after 11),
  ``last_trade_sign`` (+1 buyer-initiated) and ``signed_flow_10s`` (signed over total volume of the
  trades of the last 10 s of event time).
* ``dt_seconds``: event-time seconds since the symbol's previous vector.

Vectors. By default (``emit="price"``) every trade, aggregate trade and closed kline gives a vector
and book tickers only update the book state. With ``emit="book"`` every book ticker gives a vector
(its price-derived features are those of the last price tick, its book and flow features current)
and price ticks only update state; ``emit="all"`` gives both. ``tick_index`` counts a symbol's vectors;
``mid_price`` is the mid of the latest book ticker (absent without one): outcomes are measured on it
when it exists (streams.learning), so short horizons do not score bid-ask bounce.

Warm-up is explicit: a feature whose window is not full is absent from ``values`` and listed in
``not_ready``; it is never reported as 0 or 50.

Event time: per symbol, ticks apply in arrival order. A tick older than the last applied one by more
than ``late_grace_ms`` raises :class:`LateTick` (the agent dead-letters it); one within the grace is
applied with its event time clamped to the last applied time (so time never runs backwards, and
``dt_seconds`` is 0 for it).

>>> from streams.ticks import make_tick
>>> engine = FeatureEngine()
>>> for i in range(40):
...     vector = engine.update(make_tick("BTCUSDT", "TRADE", 1_700_000_000_000 + i * 1000,
...                                      100.0 + i % 3, 1.0, is_buyer_maker=i % 2 == 0))
>>> vector["tick_index"], round(vector["values"]["sma_5"], 6), vector["not_ready"]
(40, 101.0, ['spread_bps', 'book_imbalance', 'microprice_dev_bps', 'ofi_10'])
"""

from __future__ import annotations

import hashlib
from typing import Any

from streams.indicators import (
    ATR,
    CCI,
    DAY_MS,
    MACD,
    RSI,
    SMA,
    VWAP,
    Bar,
    Bollinger,
    Indicator,
    Momentum,
    Range,
    Return,
    SessionVWAP,
    Stochastic,
    TakerBuyShare,
    TradeSigns,
    Volatility,
    Volume,
)
from streams.microstructure import FLOW_SPAN_MS, Microstructure
from streams.microstructure import NAMES as MICROSTRUCTURE_NAMES
from streams.microstructure import SPECS as MICROSTRUCTURE_SPECS

__all__ = ["DAY_MS", "EMIT", "FEATURE_NAMES", "FEATURE_SET", "FLOW_SPAN_MS", "FeatureEngine", "LateTick"]

FEATURE_SET_VERSION = "v2"


def indicators() -> list[Indicator]:
    """The price and volume indicators of one symbol, fresh, in the order their values are written
    (the order models see them in)."""
    return [Return(1), Return(5), Momentum(10), Return(20), Volatility(20), SMA(5), MACD(12, 26, 9),
            Bollinger(20, 2, fast=5), RSI(14), ATR(14), Stochastic(14), Range(20), CCI(20), SessionVWAP(), VWAP(20),
            Volume(20), TakerBuyShare(20), TradeSigns(20)]


def feature_names(definitions: list[Indicator]) -> tuple[str, ...]:
    """Every feature a vector can carry: the indicators' outputs, then book and trade flow
    (streams.microstructure), then the time since the symbol's last vector."""
    return (*(name for i in definitions for name in i.names), *MICROSTRUCTURE_NAMES, "dt_seconds")


def feature_set_id(definitions: list[Indicator]) -> str:
    """Version and a hash of the names and every indicator's (family, parameters): a change of a window
    or a coefficient gives vectors a new id, and checkpoints of the old one are not restored."""
    specs = (*(i.spec for i in definitions), *MICROSTRUCTURE_SPECS)
    digest = hashlib.sha256(",".join(feature_names(definitions)).encode()
                            + "".join(f"|{family}{','.join(map(str, values))}" for family, values in specs).encode())
    return f"{FEATURE_SET_VERSION}-{digest.hexdigest()[:8]}"


_DEFINITIONS = indicators()
FEATURE_NAMES: tuple[str, ...] = feature_names(_DEFINITIONS)
FEATURE_SET = feature_set_id(_DEFINITIONS)

# Scale-free features: what models learn from (raw price levels would not transfer across symbols
# or across time). The order is the layout of the MLP's input layer, so it is listed, not derived;
# a unit test checks that every name is one the indicators produce.
MODEL_FEATURES: tuple[str, ...] = (
    "ret_1", "ret_5", "ret_20", "sma_ratio_5_20", "ema_ratio_12_26", "volatility_20", "range_20",
    "rsi_14", "bollinger_pct_b", "stoch_k_14", "williams_r_14", "cci_20", "atr_pct", "roc_10",
    "vwap_dev_20", "session_vwap_dev", "volume_z_20", "volume_ratio_20", "taker_buy_share_20",
    "trade_sign_imbalance_20", "spread_bps", "book_imbalance", "last_trade_sign", "signed_flow_10s",
    "microprice_dev_bps", "ofi_10",
)

# Features under drift tests. Left out: the session VWAP deviation, a cumulative statistic whose
# distribution changes through every session by construction; the last trade's side, a coin of two
# values; and the spread and microprice deviation in basis points: on a liquid pair the spread is one
# tick almost all the time, so in basis points both are a function of the price level (one tick /
# price), which moves them by more than their own variation in an hour of steady quotes (on the
# 2024-08-08 ETHUSDT capture KS rejected at p < 1e-26 for a 0.3% price move). Widening spreads come
# with volatility, which the return features carry. And the volume ratio: the volume over its 20-event
# mean is bounded below by 0, where a thin pair's minutes without a trade all sit, so its distribution
# follows the share of such minutes, which follows the hour and the weekday. On three weeks of real
# one-minute bars of three pairs (docs/STATUS.md) it raised 8 of the feature channel's 15 alerts: 4 on
# the thin pair, that share moving between 0.23-0.53 and 0.29-0.66, the others where the mean volume
# was a half to a fifth of the reference's, days old. The volume z-score of the same window stays.
DRIFT_FEATURES: tuple[str, ...] = tuple(
    name for name in MODEL_FEATURES
    if name not in ("session_vwap_dev", "last_trade_sign", "spread_bps", "microprice_dev_bps", "volume_ratio_20"))

EMIT = ("price", "book", "all")


class LateTick(ValueError):
    """A tick older than the last applied one by more than the grace."""


class SymbolFeatures:
    """Incremental feature state of one symbol: its bar, its indicators and its book and trade flow;
    ``update`` returns the price and volume values after the tick."""

    def __init__(self, symbol: str):
        self.symbol = symbol
        self.t = 0
        self.last_time_ms: int | None = None
        self.bar = Bar()
        self.indicators = indicators()
        self.micro = Microstructure()
        self.price_values: dict[str, float] = {}  # of the last price tick, before book and flow features
        self.vectors = 0
        self.last_vector_ms: int | None = None

    def update(self, kind: str, time_ms: int, price: float, high: float, low: float, volume: float,
               quote_volume: float, taker_buy: float | None, is_buyer_maker: bool | None) -> dict[str, float]:
        t = self.t + 1
        self.t = t
        self.last_time_ms = time_ms
        bar = self.bar
        bar.set(t, kind, time_ms, price, high, low, volume, quote_volume, taker_buy, is_buyer_maker)
        values: dict[str, float] = {}
        for indicator in self.indicators:
            indicator.update(bar, values)
        if kind != "KLINE" and is_buyer_maker is not None:
            self.micro.trade(time_ms, -1.0 if is_buyer_maker else 1.0, volume)
        self.price_values = values
        return values


class FeatureEngine:
    """Feature state of every symbol, with the event-time policy.

    ``update(tick)`` returns a Features record (see ``schemas/features.avsc``) for the ticks that emit
    one (``emit``: price ticks, book tickers or all) and ``None`` for the others; raises
    :class:`LateTick` for a tick beyond the grace.
    """

    def __init__(self, late_grace_ms: int = 0, emit: str = "price"):
        if late_grace_ms < 0:
            raise ValueError("late_grace_ms must be >= 0")
        if emit not in EMIT:
            raise ValueError(f"emit must be one of {', '.join(EMIT)}")
        self.late_grace_ms = late_grace_ms
        self.emit = emit
        self.symbols: dict[str, SymbolFeatures] = {}

    def state(self, symbol: str) -> SymbolFeatures:
        state = self.symbols.get(symbol)
        if state is None:
            state = self.symbols[symbol] = SymbolFeatures(symbol)
        return state

    def update(self, tick: dict[str, Any]) -> dict[str, Any] | None:
        symbol = tick["symbol"]
        state = self.state(symbol)
        time_ms = tick["event_time_ms"]
        last = state.last_time_ms
        if last is not None and time_ms < last:
            if last - time_ms > self.late_grace_ms:
                raise LateTick(
                    f"{symbol} tick at {time_ms} is {last - time_ms} ms older than the last applied "
                    f"({last}); grace is {self.late_grace_ms} ms"
                )
            time_ms = last
        kind = tick["kind"]
        if kind == "BOOK_TICKER":
            state.micro.quote(tick["bid_price"], tick["bid_qty"], tick["ask_price"], tick["ask_qty"])
            mid = state.micro.mid
            if self.emit == "price" or mid is None:
                return None
            return self._vector(state, kind, time_ms, mid, state.price_values)
        price = tick["price"]
        if kind == "KLINE":
            high, low = tick["high"], tick["low"]
        else:
            high = low = price
        volume = tick["quantity"]
        quote = tick.get("quote_volume")
        if quote is None:
            quote = price * volume
        values = state.update(kind, time_ms, price, high, low, volume, quote, tick.get("taker_buy_volume"),
                              tick.get("is_buyer_maker"))
        if self.emit == "book":
            return None
        return self._vector(state, kind, time_ms, price, values)

    @staticmethod
    def _vector(state: SymbolFeatures, kind: str, time_ms: int, price: float, price_values: dict[str, float]
                ) -> dict[str, Any]:
        values = {**price_values, **state.micro.values(time_ms)}
        if state.last_vector_ms is not None:
            values["dt_seconds"] = (time_ms - state.last_vector_ms) / 1000.0
        state.last_vector_ms = time_ms
        state.vectors += 1
        not_ready = [] if len(values) == len(FEATURE_NAMES) else [n for n in FEATURE_NAMES if n not in values]
        return {
            "symbol": state.symbol,
            "event_time_ms": time_ms,
            "tick_kind": kind,
            "price": price,
            "mid_price": state.micro.mid,
            "tick_index": state.vectors,
            "feature_set": FEATURE_SET,
            "values": values,
            "not_ready": not_ready,
        }
