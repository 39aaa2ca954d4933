"""Per-symbol incremental features: one tick in, one feature vector out.

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

from streams.microstructure import FLOW_SPAN_MS, OFI_UPDATES, Microstructure
from streams.windows import RollingExtremes, RollingMoments, RollingSum

FEATURE_SET_VERSION = "v1"

FEATURE_NAMES: tuple[str, ...] = (
    "ret_1", "ret_5", "ret_20", "sma_5", "sma_20", "ema_12", "ema_26", "sma_ratio_5_20",
    "macd", "macd_signal", "macd_hist", "ema_ratio_12_26", "price_std_20", "volatility_20", "range_20",
    "rsi_14", "bollinger_pct_b", "stoch_k_14", "williams_r_14", "cci_20", "atr_14", "atr_pct",
    "momentum_10", "roc_10", "vwap_20", "vwap_dev_20", "session_vwap", "session_vwap_dev",
    "volume_z_20", "volume_ratio_20", "taker_buy_share_20", "trade_sign_imbalance_20",
    "spread_bps", "book_imbalance", "dt_seconds", "last_trade_sign", "signed_flow_10s", "microprice_dev_bps",
    "ofi_10",
)

# Scale-free features: what models learn from (raw price levels would not transfer across symbols
# or across time).
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
# with volatility, which the return features carry.
DRIFT_FEATURES: tuple[str, ...] = tuple(
    name for name in MODEL_FEATURES
    if name not in ("session_vwap_dev", "last_trade_sign", "spread_bps", "microprice_dev_bps"))

# The parameters a feature's value depends on beyond its name (names already carry their windows:
# sma_5, ret_20). The feature-set id hashes the names and these, so a change of either gives vectors
# a new id, and checkpoints of the old one are not restored.
PARAMETERS: tuple[tuple[str, tuple], ...] = (
    ("rsi", (14,)), ("atr", (14,)), ("ema", (12, 26, 9)), ("bb", (20, 2)), ("stoch", (14,)), ("cci", (20,)),
    ("vwap", (20,)), ("flow", (f"{FLOW_SPAN_MS // 1000}s",)), ("ofi", (OFI_UPDATES,)),
)
FEATURE_SET = FEATURE_SET_VERSION + "-" + hashlib.sha256(
    ",".join(FEATURE_NAMES).encode()
    + "".join(f"|{name}{','.join(map(str, values))}" for name, values in PARAMETERS).encode()
).hexdigest()[:8]
EMIT = ("price", "book", "all")

DAY_MS = 86_400_000
_EMA12 = 2.0 / 13.0
_EMA26 = 2.0 / 27.0
_EMA9 = 2.0 / 10.0
_LAG = 21  # prices kept for ret_20 (needs p_{t-20})


class LateTick(ValueError):
    """A tick older than the last applied one by more than the grace."""


class SymbolFeatures:
    """Incremental feature state of one symbol; ``update`` returns the values after the tick."""

    def __init__(self, symbol: str):
        self.symbol = symbol
        self.t = 0
        self.last_time_ms: int | None = None
        self.prices = [0.0] * _LAG
        self.prev_close = 0.0
        self.sma5 = RollingSum(5)
        self.price20 = RollingMoments(20)
        self.returns20 = RollingMoments(20)
        self.extremes14 = RollingExtremes(14)
        self.extremes20 = RollingExtremes(20)
        self.typical20 = RollingMoments(20)
        self.volume20 = RollingMoments(20)
        self.quote20 = RollingSum(20)
        self.taker_buy20 = RollingSum(20)
        self.known_volume20 = RollingSum(20)
        self.signs20 = RollingSum(20)
        self.trades_seen = 0
        self.ema12 = self.ema26 = self.signal9 = 0.0
        self.avg_gain = self.avg_loss = 0.0
        self.atr = 0.0
        self.session_day = -1
        self.session_quote = self.session_volume = 0.0
        self.micro = Microstructure()
        self.price_values: dict[str, float] = {}  # of the last price tick, before book and flow features
        self.vectors = 0
        self.last_vector_ms: int | None = None

    def update(self, kind: str, time_ms: int, price: float, high: float, low: float, volume: float,
               quote_volume: float, taker_buy: float | None, is_buyer_maker: bool | None) -> dict[str, float]:
        t = self.t + 1
        self.t = t
        values: dict[str, float] = {}
        prices = self.prices
        slot = t % _LAG
        prices[slot] = price
        self.last_time_ms = time_ms

        # Returns and momentum from the price ring.
        if t > 1:
            prev = prices[(t - 1) % _LAG]
            r1 = price / prev - 1.0
            values["ret_1"] = r1
            self.returns20.add(r1)
            if t > 5:
                values["ret_5"] = price / prices[(t - 5) % _LAG] - 1.0
            if t > 10:
                p10 = prices[(t - 10) % _LAG]
                values["momentum_10"] = price - p10
                values["roc_10"] = 100.0 * (price / p10 - 1.0)
            if t > 20:
                values["ret_20"] = price / prices[(t - 20) % _LAG] - 1.0
                r = self.returns20
                if r.full:
                    values["volatility_20"] = r.variance(1) ** 0.5

        # Moving averages, MACD.
        self.sma5.add(price)
        if t >= 5:
            values["sma_5"] = self.sma5.total / 5.0
        p20 = self.price20
        p20.add(price)
        if t == 1:
            self.ema12 = self.ema26 = price
            self.signal9 = 0.0
        else:
            self.ema12 += _EMA12 * (price - self.ema12)
            self.ema26 += _EMA26 * (price - self.ema26)
            self.signal9 += _EMA9 * ((self.ema12 - self.ema26) - self.signal9)
        if t >= 12:
            values["ema_12"] = self.ema12
        if t >= 26:
            macd = self.ema12 - self.ema26
            values["ema_26"] = self.ema26
            values["macd"] = macd
            values["ema_ratio_12_26"] = self.ema12 / self.ema26 - 1.0
            if t >= 34:
                values["macd_signal"] = self.signal9
                values["macd_hist"] = macd - self.signal9
        if t >= 20:
            mid = p20.mean
            sd = p20.variance(0) ** 0.5
            values["sma_20"] = mid
            values["sma_ratio_5_20"] = values["sma_5"] / mid - 1.0
            values["price_std_20"] = sd
            values["bollinger_pct_b"] = 0.5 if sd <= 1e-12 * abs(mid) else (price - mid + 2.0 * sd) / (4.0 * sd)

        # RSI (Wilder).
        if t > 1:
            change = price - prices[(t - 1) % _LAG]
            gain = change if change > 0.0 else 0.0
            loss = -change if change < 0.0 else 0.0
            if t <= 15:
                self.avg_gain += gain / 14.0
                self.avg_loss += loss / 14.0
            else:
                self.avg_gain = (self.avg_gain * 13.0 + gain) / 14.0
                self.avg_loss = (self.avg_loss * 13.0 + loss) / 14.0
            if t >= 15:
                ag, al = self.avg_gain, self.avg_loss
                if al == 0.0:
                    values["rsi_14"] = 50.0 if ag == 0.0 else 100.0
                else:
                    values["rsi_14"] = 100.0 - 100.0 / (1.0 + ag / al)

        # Bars: ATR, stochastic, Williams %R, range, CCI.
        if t == 1:
            true_range = high - low
        else:
            pc = self.prev_close
            true_range = max(high - low, abs(high - pc), abs(low - pc))
        self.prev_close = price
        if t <= 14:
            self.atr += true_range / 14.0
        else:
            self.atr = (self.atr * 13.0 + true_range) / 14.0
        if t >= 14:
            values["atr_14"] = self.atr
            values["atr_pct"] = self.atr / price
        e14 = self.extremes14
        e14.add(high, low)
        if t >= 14:
            hh, ll = e14.highest(), e14.lowest()
            span = hh - ll
            if span > 0.0:
                values["stoch_k_14"] = 100.0 * (price - ll) / span
                values["williams_r_14"] = -100.0 * (hh - price) / span
            else:
                values["stoch_k_14"] = 50.0
                values["williams_r_14"] = -50.0
        e20 = self.extremes20
        e20.add(high, low)
        tp = (high + low + price) / 3.0
        tp20 = self.typical20
        tp20.add(tp)
        if t >= 20:
            values["range_20"] = (e20.highest() - e20.lowest()) / price
            # Exact in fixed point: 20 (tp - mean) = 20 q - S1, so neither the deviation nor the
            # numerator loses digits to cancellation at price levels of 60,000.
            s1 = tp20.s1
            deviation = 0
            for q in tp20.values:
                deviation += abs(20 * q - s1)
            if deviation == 0:
                values["cci_20"] = 0.0
            else:
                values["cci_20"] = (20 * tp20.values[tp20.pos - 1] - s1) * 20 / (0.015 * deviation)

        # Volume, VWAP, flow.
        v20 = self.volume20
        v20.add(volume)
        q20 = self.quote20
        q20.add(quote_volume)
        if taker_buy is None:
            self.taker_buy20.add(0.0)
            self.known_volume20.add(0.0)
        else:
            self.taker_buy20.add(taker_buy)
            self.known_volume20.add(volume)
        day = time_ms // DAY_MS
        if day != self.session_day:
            self.session_day = day
            self.session_quote = self.session_volume = 0.0
        self.session_quote += quote_volume
        self.session_volume += volume
        if self.session_volume > 0.0:
            sv = self.session_quote / self.session_volume
            values["session_vwap"] = sv
            values["session_vwap_dev"] = price / sv - 1.0
        if t >= 20:
            total_volume = v20.total
            if total_volume > 0.0:
                vwap = q20.total / total_volume
                values["vwap_20"] = vwap
                values["vwap_dev_20"] = price / vwap - 1.0
            mean_v = v20.mean
            sd_v = v20.variance(0) ** 0.5
            values["volume_z_20"] = 0.0 if sd_v <= 1e-12 * abs(mean_v) else (volume - mean_v) / sd_v
            if mean_v > 0.0:
                values["volume_ratio_20"] = volume / mean_v
            known = self.known_volume20.total
            if known > 0.0:
                values["taker_buy_share_20"] = self.taker_buy20.total / known
        if kind != "KLINE" and is_buyer_maker is not None:
            sign = -1.0 if is_buyer_maker else 1.0
            self.signs20.add(sign)
            self.trades_seen += 1
            if self.trades_seen >= 20:
                values["trade_sign_imbalance_20"] = self.signs20.total / 20.0
            self.micro.trade(time_ms, sign, volume)
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
