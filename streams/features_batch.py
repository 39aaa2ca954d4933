"""The batch path: the same features as :class:`streams.features.FeatureEngine`, vectorised over a
whole series of one symbol's price ticks. It is written independently of the indicator objects on
purpose: the tests hold the incremental engine to it (and both to pandas references), and
bench/features.py reports its speed. The pipeline itself runs the incremental engine.

Recursive averages (EMA 12/26/9, Wilder's RSI and ATR) run through ``scipy.signal.lfilter``; window
statistics reduce a ``sliding_window_view`` in C. The series starts from an empty state, like a fresh
engine; book tickers are not part of a batch (the book features stay absent).

>>> import numpy as np
>>> prices = 100 + np.sin(np.arange(60) / 5)
>>> series = TickSeries.from_arrays(time_ms=1_700_000_000_000 + np.arange(60) * 1000, price=prices,
...                                 volume=np.ones(60), is_buyer_maker=np.arange(60) % 2 == 0)
>>> columns = update_many(series)
>>> round(float(columns["sma_5"][-1]), 9) == round(float(prices[-5:].mean()), 9)
True
>>> bool(np.isnan(columns["sma_20"][18])), bool(np.isnan(columns["sma_20"][19]))
(True, False)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from streams.features import DAY_MS, FEATURE_NAMES, FLOW_SPAN_MS

_view = np.lib.stride_tricks.sliding_window_view


@dataclass
class TickSeries:
    """Columns of one symbol's price ticks, in event-time order."""

    time_ms: np.ndarray
    price: np.ndarray
    high: np.ndarray
    low: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray
    taker_buy: np.ndarray  # NaN where the side is unknown
    trade_sign: np.ndarray  # +1 taker buy, -1 taker sell, 0 for klines / unknown

    @classmethod
    def from_arrays(cls, time_ms, price, volume, high=None, low=None, quote_volume=None, taker_buy=None,
                    is_buyer_maker=None) -> TickSeries:
        price = np.asarray(price, dtype=float)
        volume = np.asarray(volume, dtype=float)
        if is_buyer_maker is not None:
            maker = np.asarray(is_buyer_maker, dtype=bool)
            sign = np.where(maker, -1.0, 1.0)
            if taker_buy is None:
                taker_buy = np.where(maker, 0.0, volume)
        else:
            sign = np.zeros(len(price))
        return cls(
            time_ms=np.asarray(time_ms, dtype=np.int64), price=price,
            high=price if high is None else np.asarray(high, dtype=float),
            low=price if low is None else np.asarray(low, dtype=float), volume=volume,
            quote_volume=price * volume if quote_volume is None else np.asarray(quote_volume, dtype=float),
            taker_buy=np.full(len(price), np.nan) if taker_buy is None else np.asarray(taker_buy, dtype=float),
            trade_sign=sign,
        )

    @classmethod
    def from_ticks(cls, ticks: list[dict]) -> TickSeries:
        price_ticks = [t for t in ticks if t["kind"] != "BOOK_TICKER"]
        price = np.array([t["price"] for t in price_ticks], dtype=float)
        is_kline = np.array([t["kind"] == "KLINE" for t in price_ticks])
        high = np.array([t["high"] if k else t["price"] for t, k in zip(price_ticks, is_kline, strict=True)])
        low = np.array([t["low"] if k else t["price"] for t, k in zip(price_ticks, is_kline, strict=True)])
        volume = np.array([t["quantity"] for t in price_ticks], dtype=float)
        quote = np.array([t["quote_volume"] if t.get("quote_volume") is not None else t["price"] * t["quantity"]
                          for t in price_ticks], dtype=float)
        taker = np.array([np.nan if t.get("taker_buy_volume") is None else t["taker_buy_volume"]
                          for t in price_ticks], dtype=float)
        sign = np.array([0.0 if k or t.get("is_buyer_maker") is None else (-1.0 if t["is_buyer_maker"] else 1.0)
                         for t, k in zip(price_ticks, is_kline, strict=True)])
        return cls(np.array([t["event_time_ms"] for t in price_ticks], dtype=np.int64), price, high, low, volume,
                   quote, taker, sign)


def _rolling(values: np.ndarray, n: int, reduce) -> np.ndarray:
    out = np.full(len(values), np.nan)
    if len(values) >= n:
        out[n - 1:] = reduce(_view(values, n), axis=1)
    return out


def _ema(values: np.ndarray, span: int) -> np.ndarray:
    a = 2.0 / (span + 1.0)
    if len(values) == 0:
        return values.copy()
    out, _ = lfilter([a], [1.0, a - 1.0], values, zi=[(1.0 - a) * values[0]])
    return out


def _wilder(values: np.ndarray, n: int, first: int) -> np.ndarray:
    """Mean of values[first:first+n] at index first+n-1, then (prev (n-1) + x) / n."""
    out = np.full(len(values), np.nan)
    start = first + n - 1
    if len(values) <= start:
        return out
    seed = values[first:first + n].mean()
    out[start] = seed
    rest = values[start + 1:]
    if len(rest):
        out[start + 1:], _ = lfilter([1.0 / n], [1.0, -(n - 1.0) / n], rest, zi=[(n - 1.0) / n * seed])
    return out


def _shift_ratio(p: np.ndarray, k: int) -> np.ndarray:
    out = np.full(len(p), np.nan)
    if len(p) > k:
        out[k:] = p[k:] / p[:-k] - 1.0
    return out


def update_many(series: TickSeries) -> dict[str, np.ndarray]:
    """Every feature as a column (NaN = not ready), one row per price tick."""
    p, h, lo, v, q = series.price, series.high, series.low, series.volume, series.quote_volume
    n = len(p)
    t = np.arange(1, n + 1)
    cols: dict[str, np.ndarray] = {}
    r1 = _shift_ratio(p, 1)
    cols["ret_1"], cols["ret_5"], cols["ret_20"] = r1, _shift_ratio(p, 5), _shift_ratio(p, 20)
    momentum = np.full(n, np.nan)
    if n > 10:
        momentum[10:] = p[10:] - p[:-10]
    cols["momentum_10"] = momentum
    cols["roc_10"] = 100.0 * _shift_ratio(p, 10)
    cols["sma_5"], cols["sma_20"] = _rolling(p, 5, np.mean), _rolling(p, 20, np.mean)
    cols["sma_ratio_5_20"] = cols["sma_5"] / cols["sma_20"] - 1.0
    e12, e26 = _ema(p, 12), _ema(p, 26)
    macd = e12 - e26
    signal = _ema(macd, 9)
    cols["ema_12"] = np.where(t >= 12, e12, np.nan)
    cols["ema_26"] = np.where(t >= 26, e26, np.nan)
    cols["macd"] = np.where(t >= 26, macd, np.nan)
    cols["ema_ratio_12_26"] = np.where(t >= 26, e12 / e26 - 1.0, np.nan)
    cols["macd_signal"] = np.where(t >= 34, signal, np.nan)
    cols["macd_hist"] = np.where(t >= 34, macd - signal, np.nan)
    # Window statistics of prices run on prices minus the first one: at levels of 60,000 with a spread
    # of 0.005 the unshifted values would lose the digits that %B and CCI live on.
    base = p[0] if n else 0.0
    shifted = p - base
    sd = _rolling(shifted, 20, np.std)
    mid = cols["sma_20"]
    mid_shifted = _rolling(shifted, 20, np.mean)
    cols["price_std_20"] = sd
    with np.errstate(divide="ignore", invalid="ignore"):
        pct_b = np.where(sd <= 1e-12 * np.abs(mid), 0.5, (shifted - mid_shifted + 2.0 * sd) / (4.0 * sd))
    cols["bollinger_pct_b"] = np.where(np.isnan(mid), np.nan, pct_b)
    vol = np.full(n, np.nan)
    if n > 20:
        vol[1:] = _rolling(r1[1:], 20, lambda w, axis: np.std(w, axis=axis, ddof=1))
    cols["volatility_20"] = vol
    hh14, ll14 = _rolling(h, 14, np.max), _rolling(lo, 14, np.min)
    span = hh14 - ll14
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["stoch_k_14"] = np.where(np.isnan(span), np.nan, np.where(span > 0, 100.0 * (p - ll14) / span, 50.0))
        cols["williams_r_14"] = np.where(np.isnan(span), np.nan, np.where(span > 0, -100.0 * (hh14 - p) / span, -50.0))
    cols["range_20"] = (_rolling(h, 20, np.max) - _rolling(lo, 20, np.min)) / p
    tp = (h + lo + p) / 3.0
    cci = np.full(n, np.nan)
    if n >= 20:
        tp = tp - base
        windows = _view(tp, 20)
        mean_tp = windows.mean(axis=1)
        mad = np.abs(windows - mean_tp[:, None]).mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            cci[19:] = np.where(mad <= 1e-12 * np.abs(mean_tp + base), 0.0, (tp[19:] - mean_tp) / (0.015 * mad))
    cols["cci_20"] = cci
    change = np.concatenate([[0.0], np.diff(p)])
    ag = _wilder(np.where(change > 0, change, 0.0), 14, 1)
    al = _wilder(np.where(change < 0, -change, 0.0), 14, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = np.where(al == 0.0, np.where(ag == 0.0, 50.0, 100.0), 100.0 - 100.0 / (1.0 + ag / al))
    cols["rsi_14"] = np.where(np.isnan(ag), np.nan, rsi)
    prev_close = np.concatenate([[np.nan], p[:-1]])
    tr = np.maximum.reduce([h - lo, np.abs(h - prev_close), np.abs(lo - prev_close)])
    if n:
        tr[0] = h[0] - lo[0]
    cols["atr_14"] = _wilder(tr, 14, 0)
    cols["atr_pct"] = cols["atr_14"] / p
    vol20, quote20 = _rolling(v, 20, np.sum), _rolling(q, 20, np.sum)
    with np.errstate(divide="ignore", invalid="ignore"):
        vwap = quote20 / vol20
        cols["vwap_20"] = np.where(vol20 > 0, vwap, np.nan)
        cols["vwap_dev_20"] = np.where(vol20 > 0, p / vwap - 1.0, np.nan)
        day = series.time_ms // DAY_MS
        bounds = np.flatnonzero(np.concatenate([[True], day[1:] != day[:-1], [True]])) if n else np.array([0])
        cum_q, cum_v = np.empty(n), np.empty(n)
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            cum_q[start:end] = np.cumsum(q[start:end])
            cum_v[start:end] = np.cumsum(v[start:end])
        session = cum_q / cum_v
        cols["session_vwap"] = np.where(cum_v > 0, session, np.nan)
        cols["session_vwap_dev"] = np.where(cum_v > 0, p / session - 1.0, np.nan)
        mean_v, sd_v = _rolling(v, 20, np.mean), _rolling(v, 20, np.std)
        z = np.where(sd_v <= 1e-12 * np.abs(mean_v), 0.0, (v - mean_v) / sd_v)
        cols["volume_z_20"] = np.where(np.isnan(mean_v), np.nan, z)
        cols["volume_ratio_20"] = np.where(mean_v > 0, v / mean_v, np.nan)
        known = ~np.isnan(series.taker_buy)
        known20 = _rolling(np.where(known, v, 0.0), 20, np.sum)
        cols["taker_buy_share_20"] = np.where(known20 > 0, _rolling(np.nan_to_num(series.taker_buy), 20, np.sum)
                                              / known20, np.nan)
    signs = series.trade_sign
    trade_idx = np.flatnonzero(signs != 0)
    imbalance = np.full(n, np.nan)
    if len(trade_idx) >= 20:
        imbalance[trade_idx[19:]] = _rolling(signs[trade_idx], 20, np.mean)[19:]
    cols["trade_sign_imbalance_20"] = imbalance
    # The last trade's side, carried forward over ticks without one; signed flow over (t - 10 s, t].
    last_sign = np.full(n, np.nan)
    if len(trade_idx):
        carried = np.maximum.accumulate(np.where(signs != 0, np.arange(n), -1))
        last_sign = np.where(carried >= 0, signs[np.maximum(carried, 0)], np.nan)
    cols["last_trade_sign"] = last_sign
    flow = np.full(n, np.nan)
    if len(trade_idx):
        times = series.time_ms
        signed = np.concatenate([[0.0], np.cumsum(np.where(signs != 0, signs * v, 0.0))])
        total = np.concatenate([[0.0], np.cumsum(np.where(signs != 0, v, 0.0))])
        first = np.searchsorted(times, times - FLOW_SPAN_MS, side="right")
        last = np.arange(1, n + 1)
        window_volume = total[last] - total[first]
        with np.errstate(divide="ignore", invalid="ignore"):
            flow = np.where(window_volume > 0, (signed[last] - signed[first]) / window_volume, np.nan)
        flow = np.where(np.isnan(last_sign), np.nan, flow)
    cols["signed_flow_10s"] = flow
    dt = np.full(n, np.nan)
    if n > 1:
        dt[1:] = np.diff(series.time_ms) / 1000.0
    cols["dt_seconds"] = dt
    for name in ("spread_bps", "book_imbalance", "microprice_dev_bps", "ofi_10"):
        cols[name] = np.full(n, np.nan)
    return {name: cols[name] for name in FEATURE_NAMES}
