"""Every feature against an independent batch reference (pandas/numpy from the definitions), on real data."""

from __future__ import annotations

import gzip
import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streams.features import FEATURE_NAMES, FeatureEngine, LateTick
from streams.ticks import InvalidTick, check_tick, make_tick

SHARED = Path(__file__).resolve().parents[2] / "data" / "binance"
KLINE_FILES = sorted((SHARED / "klines").rglob("*.zip"))
WS_FILES = sorted((SHARED / "ws").glob("spot_*.gz"))
RTOL = 1e-9


def wilder(values: np.ndarray, n: int, first: int) -> np.ndarray:
    """Wilder average of values[first:]: mean of the first n, then (prev*(n-1)+x)/n."""
    out = np.full(len(values), np.nan)
    if len(values) - first < n:
        return out
    avg = values[first:first + n].mean()
    out[first + n - 1] = avg
    for i in range(first + n, len(values)):
        avg = (avg * (n - 1) + values[i]) / n
        out[i] = avg
    return out


def rolling(series: pd.Series, n: int, reduce) -> pd.Series:
    """Exact two-pass reduction over every full window (numpy), NaN before the window is full."""
    # Extended precision (x87 80-bit long double) so that the reference is more exact than the core.
    values = series.to_numpy(dtype=np.longdouble)
    out = np.full(len(values), np.nan, dtype=np.longdouble)
    if len(values) >= n:
        out[n - 1:] = reduce(np.lib.stride_tricks.sliding_window_view(values, n), axis=1)
    return pd.Series(out.astype(float), index=series.index)


def bollinger_reference(p: pd.Series) -> np.ndarray:
    values = p.to_numpy(dtype=np.longdouble)
    out = np.full(len(values), np.nan)
    if len(values) >= 20:
        windows = np.lib.stride_tricks.sliding_window_view(values, 20)
        mid, sd = windows.mean(axis=1), windows.std(axis=1, ddof=0)
        last = values[19:]
        with np.errstate(divide="ignore", invalid="ignore"):
            pct = np.where(sd <= 1e-12 * mid, 0.5, (last - mid + 2 * sd) / (4 * sd))
        out[19:] = pct.astype(float)
    return out


def _std0(w, axis):
    return np.std(w, axis=axis, ddof=0)


def _std1(w, axis):
    return np.std(w, axis=axis, ddof=1)


def cci_reference(tp: pd.Series) -> np.ndarray:
    values = tp.to_numpy(dtype=np.longdouble)
    out = np.full(len(values), np.nan)
    if len(values) >= 20:
        windows = np.lib.stride_tricks.sliding_window_view(values, 20)
        mean = windows.mean(axis=1)
        mad = np.abs(windows - mean[:, None]).mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            cci = np.where(mad == 0, 0.0, (values[19:] - mean) / (0.015 * mad))
        out[19:] = cci.astype(float)
    return out


def reference(frame: pd.DataFrame, is_trade: bool) -> pd.DataFrame:
    """Features from the definitions in streams.features' docstring, over the whole series."""
    p, h, lo, v, q, t = frame.price, frame.high, frame.low, frame.volume, frame.quote, frame.time
    ref = pd.DataFrame(index=frame.index)
    r1 = p / p.shift(1) - 1
    ref["ret_1"], ref["ret_5"], ref["ret_20"] = r1, p / p.shift(5) - 1, p / p.shift(20) - 1
    ref["momentum_10"], ref["roc_10"] = p - p.shift(10), 100 * (p / p.shift(10) - 1)
    ref["sma_5"], ref["sma_20"] = rolling(p, 5, np.mean), rolling(p, 20, np.mean)
    ref["sma_ratio_5_20"] = ref.sma_5 / ref.sma_20 - 1
    e12, e26 = p.ewm(span=12, adjust=False).mean(), p.ewm(span=26, adjust=False).mean()
    macd = e12 - e26
    signal = macd.ewm(span=9, adjust=False).mean()
    n = np.arange(1, len(p) + 1)
    ref["ema_12"] = e12.where(n >= 12)
    ref["ema_26"] = e26.where(n >= 26)
    ref["macd"] = macd.where(n >= 26)
    ref["ema_ratio_12_26"] = (e12 / e26 - 1).where(n >= 26)
    ref["macd_signal"] = signal.where(n >= 34)
    ref["macd_hist"] = (macd - signal).where(n >= 34)
    sd = rolling(p, 20, _std0)
    ref["price_std_20"] = sd
    ref["volatility_20"] = rolling(r1, 20, _std1)
    ref["bollinger_pct_b"] = bollinger_reference(p)
    hh14, ll14 = h.rolling(14).max(), lo.rolling(14).min()
    span14 = hh14 - ll14
    ref["stoch_k_14"] = np.where(span14 > 0, 100 * (p - ll14) / span14, 50.0)
    ref["williams_r_14"] = np.where(span14 > 0, -100 * (hh14 - p) / span14, -50.0)
    ref.loc[hh14.isna(), ["stoch_k_14", "williams_r_14"]] = np.nan
    ref["range_20"] = (h.rolling(20).max() - lo.rolling(20).min()) / p
    ref["cci_20"] = cci_reference((h + lo + p) / 3)
    diff = p.diff().to_numpy()
    gains, losses = np.where(diff > 0, diff, 0.0), np.where(diff < 0, -diff, 0.0)
    ag, al = wilder(gains, 14, 1), wilder(losses, 14, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = np.where(al == 0, np.where(ag == 0, 50.0, 100.0), 100 - 100 / (1 + ag / al))
    ref["rsi_14"] = np.where(np.isnan(ag), np.nan, rsi)
    prev_close = p.shift(1)
    tr = np.maximum.reduce([h - lo, (h - prev_close).abs(), (lo - prev_close).abs()])
    tr = np.where(prev_close.isna(), h - lo, tr)
    ref["atr_14"] = wilder(np.asarray(tr, dtype=float), 14, 0)
    ref["atr_pct"] = ref.atr_14 / p
    vol20 = rolling(v, 20, np.sum)
    vwap = rolling(q, 20, np.sum) / vol20
    ref["vwap_20"] = vwap.where(vol20 > 0)
    ref["vwap_dev_20"] = (p / vwap - 1).where(vol20 > 0)
    day = t // 86_400_000
    cum_q, cum_v = q.groupby(day).cumsum(), v.groupby(day).cumsum()
    ref["session_vwap"] = (cum_q / cum_v).where(cum_v > 0)
    ref["session_vwap_dev"] = (p / ref.session_vwap - 1).where(cum_v > 0)
    mean_v, sd_v = rolling(v, 20, np.mean), rolling(v, 20, _std0)
    ref["volume_z_20"] = np.where(sd_v <= 1e-12 * mean_v.abs(), 0.0, (v - mean_v) / sd_v)
    ref.loc[mean_v.isna(), "volume_z_20"] = np.nan
    ref["volume_ratio_20"] = (v / mean_v).where(mean_v > 0)
    known = frame.taker_buy.notna()
    ref["taker_buy_share_20"] = (rolling(frame.taker_buy.fillna(0), 20, np.sum)
                                 / rolling(v.where(known, 0.0), 20, np.sum))
    if is_trade:
        sign = np.where(frame.buyer_maker, -1.0, 1.0)
        ref["trade_sign_imbalance_20"] = rolling(pd.Series(sign, index=frame.index), 20, np.mean)
        ref["last_trade_sign"] = sign
        ref["signed_flow_10s"] = flow_reference(t.to_numpy(), sign, v.to_numpy())
    else:
        ref["trade_sign_imbalance_20"] = ref["last_trade_sign"] = ref["signed_flow_10s"] = np.nan
    ref["dt_seconds"] = t.diff() / 1000.0
    if "bid" in frame:
        mid = (frame.bid + frame.ask) / 2
        depth = frame.bid_qty + frame.ask_qty
        ref["spread_bps"] = (frame.ask - frame.bid) / mid * 1e4
        ref["book_imbalance"] = (frame.bid_qty - frame.ask_qty) / depth
        micro = (frame.ask * frame.bid_qty + frame.bid * frame.ask_qty) / depth
        ref["microprice_dev_bps"] = (micro / mid - 1) * 1e4
        ref["ofi_10"] = frame.ofi_10
    else:
        ref["spread_bps"] = ref["book_imbalance"] = ref["microprice_dev_bps"] = ref["ofi_10"] = np.nan
    return ref


def flow_reference(times: np.ndarray, sign: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Signed over total volume of the trades with time in (t - 10 s, t], row by row."""
    signed = np.concatenate([[0], np.cumsum(sign * volume, dtype=np.longdouble)])
    total = np.concatenate([[0], np.cumsum(volume, dtype=np.longdouble)])
    first = np.searchsorted(times, times - 10_000, side="right")
    rows = np.arange(1, len(times) + 1)
    return ((signed[rows] - signed[first]) / (total[rows] - total[first])).astype(float)


def ofi_reference(books: pd.DataFrame) -> pd.Series:
    """Cont-Kukanov-Stoikov order-flow imbalance over the last 10 book updates / their mean depth."""
    b, bq, a, aq = books.bid, books.bid_qty, books.ask, books.ask_qty
    b0, bq0, a0, aq0 = b.shift(), bq.shift(), a.shift(), aq.shift()
    e = (bq.where(b >= b0, 0.0) - bq0.where(b <= b0, 0.0) - aq.where(a <= a0, 0.0) + aq0.where(a >= a0, 0.0))
    e[b0.isna()] = np.nan
    total = e.rolling(10).sum()
    mean_depth = ((bq + aq) / 2).rolling(10).mean()
    return total / mean_depth


def compare(vectors: list[dict], ref: pd.DataFrame) -> None:
    """Same readiness, and values within 1e-9 relative to the feature's scale (its largest magnitude)."""
    assert set(ref.columns) == set(FEATURE_NAMES)
    for name in FEATURE_NAMES:
        expected = ref[name].to_numpy(dtype=float)
        got = np.array([vec["values"].get(name, np.nan) for vec in vectors])
        present = ~np.isnan(got)
        assert np.array_equal(present, ~np.isnan(expected)), (
            f"{name}: ready at {np.flatnonzero(present)[:3]} but reference defined at "
            f"{np.flatnonzero(~np.isnan(expected))[:3]}")
        for vec, is_present in zip(vectors, present, strict=True):
            assert (name in vec["not_ready"]) != is_present
        if present.any():
            scale = np.nanmax(np.abs(expected))
            np.testing.assert_allclose(got[present], expected[present], rtol=RTOL, atol=RTOL * scale,
                                       err_msg=name)


def load_klines(path: Path) -> pd.DataFrame:
    with zipfile.ZipFile(path) as archive:
        text = archive.read(archive.namelist()[0]).decode()
    header = 0 if text.startswith("open_time") else None
    raw = pd.read_csv(io.StringIO(text), header=header).to_numpy()
    close_time = raw[:, 6].astype(np.int64)
    close_time = np.where(close_time > 10**14, close_time // 1000, close_time)
    return pd.DataFrame({"time": close_time, "price": raw[:, 4].astype(float), "high": raw[:, 2].astype(float),
                         "low": raw[:, 3].astype(float), "volume": raw[:, 5].astype(float),
                         "quote": raw[:, 7].astype(float), "taker_buy": raw[:, 9].astype(float)})


@pytest.mark.parametrize("path", KLINE_FILES, ids=lambda p: p.name)
def test_kline_features_equal_reference(path):
    frame = load_klines(path)
    engine = FeatureEngine()
    symbol = path.name.split("-")[0]
    vectors = []
    for row in frame.itertuples():
        tick = make_tick(symbol, "KLINE", int(row.time), row.price, row.volume, "test", open=row.price,
                         high=row.high, low=row.low, quote_volume=row.quote, taker_buy_volume=row.taker_buy)
        vectors.append(engine.update(tick))
    assert len(vectors) == 1440
    compare(vectors, reference(frame, is_trade=False))


def load_trades_with_book(path: Path) -> tuple[pd.DataFrame, list[dict]]:
    """Trades of a capture with the last book ticker before each, in event-time order (stable)."""
    events = []
    with gzip.open(path, "rt") as lines:
        for number, line in enumerate(lines):
            stamp, _, body = line.partition(" ")
            message = json.loads(body)
            data = message.get("data", {})
            if data.get("e") == "trade":
                events.append((int(data["T"]), number, "trade", data))
            elif "stream" in message and message["stream"].endswith("@bookTicker"):
                events.append((int(stamp) // 1_000_000, number, "book", data))
    events.sort(key=lambda e: e[0])
    books = pd.DataFrame([{k: float(d[c]) for k, c in (("bid", "b"), ("bid_qty", "B"), ("ask", "a"), ("ask_qty", "A"))}
                          for _, _, kind, d in events if kind == "book"])
    ofi = ofi_reference(books).to_numpy()
    rows, ticks, book, seen = [], [], None, -1
    for time_ms, _, kind, data in events:
        if kind == "book":
            seen += 1
            book = tuple(float(data[k]) for k in ("b", "B", "a", "A"))
            ticks.append(make_tick(data["s"], "BOOK_TICKER", time_ms, (book[0] + book[2]) / 2, 0.0, "test",
                                   bid_price=book[0], bid_qty=book[1], ask_price=book[2], ask_qty=book[3]))
            continue
        price, qty, maker = float(data["p"]), float(data["q"]), bool(data["m"])
        row = {"time": time_ms, "price": price, "high": price, "low": price, "volume": qty, "quote": price * qty,
               "taker_buy": 0.0 if maker else qty, "buyer_maker": maker}
        if book is not None:
            row.update(bid=book[0], bid_qty=book[1], ask=book[2], ask_qty=book[3], ofi_10=ofi[seen])
        rows.append(row)
        ticks.append(make_tick(data["s"], "TRADE", time_ms, price, qty, "test", is_buyer_maker=maker))
    return pd.DataFrame(rows), ticks


@pytest.mark.parametrize("path", WS_FILES, ids=lambda p: p.name)
def test_trade_and_book_features_equal_reference(path):
    frame, ticks = load_trades_with_book(path)
    engine = FeatureEngine()
    vectors = [v for v in (engine.update(t) for t in ticks) if v is not None]
    assert len(vectors) == len(frame) > 5000
    compare(vectors, reference(frame, is_trade=True))


@pytest.mark.parametrize("path", WS_FILES[:1], ids=lambda p: p.name)
def test_book_ticker_vectors_equal_reference(path):
    """With emit="book": a vector per book ticker, its book features and mid from that quote, its flow
    over the trades of the 10 s before it, its price features those of the last trade."""
    frame, ticks = load_trades_with_book(path)
    engine = FeatureEngine(emit="book")
    vectors = [v for v in (engine.update(t) for t in ticks) if v is not None]
    books = [t for t in ticks if t["kind"] == "BOOK_TICKER"]
    assert len(vectors) == len(books) > 20000
    assert [v["tick_index"] for v in vectors] == list(range(1, len(books) + 1))
    quotes = pd.DataFrame({"bid": [b["bid_price"] for b in books], "bid_qty": [b["bid_qty"] for b in books],
                           "ask": [b["ask_price"] for b in books], "ask_qty": [b["ask_qty"] for b in books]})
    mid = (quotes.bid + quotes.ask) / 2
    assert np.allclose([v["mid_price"] for v in vectors], mid, rtol=1e-15)
    np.testing.assert_allclose([v["values"].get("ofi_10", np.nan) for v in vectors], ofi_reference(quotes),
                               rtol=RTOL, atol=RTOL, equal_nan=True)
    micro = (quotes.ask * quotes.bid_qty + quotes.bid * quotes.ask_qty) / (quotes.bid_qty + quotes.ask_qty)
    np.testing.assert_allclose([v["values"]["microprice_dev_bps"] for v in vectors], (micro / mid - 1) * 1e4,
                               rtol=RTOL, atol=RTOL)
    # Trade flow as of each book time: the trades with time in (t - 10 s, t].
    trade_times, signs = frame.time.to_numpy(), np.where(frame.buyer_maker, -1.0, 1.0)
    volume = frame.volume.to_numpy()
    book_times = np.array([b["event_time_ms"] for b in books])
    before = np.searchsorted(trade_times, book_times, side="right")
    first = np.searchsorted(trade_times, book_times - 10_000, side="right")
    signed = np.concatenate([[0], np.cumsum(signs * volume, dtype=np.longdouble)])
    total = np.concatenate([[0], np.cumsum(volume, dtype=np.longdouble)])
    with np.errstate(divide="ignore", invalid="ignore"):
        flow = np.where(total[before] > total[first],
                        ((signed[before] - signed[first]) / (total[before] - total[first])).astype(float), np.nan)
    flow = np.where(before > 0, flow, np.nan)
    np.testing.assert_allclose([v["values"].get("signed_flow_10s", np.nan) for v in vectors], flow, rtol=RTOL,
                               atol=RTOL, equal_nan=True)
    got_sign = [v["values"].get("last_trade_sign", np.nan) for v in vectors]
    np.testing.assert_array_equal(got_sign, np.where(before > 0, signs[np.maximum(before - 1, 0)], np.nan))
    dt = np.diff(book_times) / 1000.0
    np.testing.assert_allclose([v["values"]["dt_seconds"] for v in vectors[1:]], dt, rtol=0, atol=1e-12)


def run_prices(prices, volumes=None, start=1_700_000_000_000, step_ms=60_000):
    engine = FeatureEngine()
    out = None
    for i, price in enumerate(prices):
        volume = 1.0 if volumes is None else volumes[i]
        out = engine.update(make_tick("X", "KLINE", start + i * step_ms, price, volume, "test", open=price,
                                      high=price, low=price, quote_volume=price * volume,
                                      taker_buy_volume=volume / 2))
    return out


def test_constant_prices_are_defined_without_division_by_zero():
    values = run_prices([100.0] * 60)["values"]
    assert values["rsi_14"] == 50.0
    assert values["stoch_k_14"] == 50.0 and values["williams_r_14"] == -50.0
    assert values["bollinger_pct_b"] == 0.5 and values["cci_20"] == 0.0
    assert values["volatility_20"] == 0.0 and values["atr_14"] == 0.0
    assert all(math.isfinite(v) for v in values.values())


def test_zero_volume_leaves_volume_features_absent_not_zero():
    vector = run_prices([100.0 + i for i in range(40)], volumes=[0.0] * 40)
    for name in ("vwap_20", "vwap_dev_20", "session_vwap", "volume_ratio_20", "taker_buy_share_20"):
        assert name not in vector["values"] and name in vector["not_ready"]
    assert vector["values"]["volume_z_20"] == 0.0


def test_gap_in_time_shows_in_dt_and_resets_the_session():
    engine = FeatureEngine()
    t0 = 1_700_000_000_000
    engine.update(make_tick("X", "TRADE", t0, 100.0, 1.0, "test", is_buyer_maker=True))
    later = engine.update(make_tick("X", "TRADE", t0 + 3 * 86_400_000, 110.0, 2.0, "test", is_buyer_maker=False))
    assert later["values"]["dt_seconds"] == 3 * 86_400.0
    assert later["values"]["session_vwap"] == 110.0


def test_single_tick_marks_everything_but_session_vwap_not_ready():
    vector = FeatureEngine().update(make_tick("X", "TRADE", 1_700_000_000_000, 100.0, 1.0, "test",
                                              is_buyer_maker=True))
    assert set(vector["values"]) == {"session_vwap", "session_vwap_dev", "last_trade_sign", "signed_flow_10s"}
    assert set(vector["not_ready"]) == set(FEATURE_NAMES) - set(vector["values"])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0.0])
def test_nan_inf_and_non_positive_prices_are_rejected_before_the_state(bad):
    with pytest.raises(InvalidTick):
        check_tick(make_tick("X", "TRADE", 1_700_000_000_000, bad, 1.0, "test"))
    with pytest.raises(InvalidTick):
        check_tick(make_tick("X", "TRADE", 1_700_000_000_000, 100.0, bad if bad != 0.0 else -5.0, "test"))


def test_late_ticks_follow_the_documented_policy():
    engine = FeatureEngine(late_grace_ms=500)
    t0 = 1_700_000_000_000
    engine.update(make_tick("X", "TRADE", t0, 100.0, 1.0, "test"))
    clamped = engine.update(make_tick("X", "TRADE", t0 - 400, 101.0, 1.0, "test"))
    assert clamped["event_time_ms"] == t0 and clamped["values"]["dt_seconds"] == 0.0
    with pytest.raises(LateTick):
        engine.update(make_tick("X", "TRADE", t0 - 501, 99.0, 1.0, "test"))
    assert engine.state("X").t == 2  # the late tick changed nothing
    other = engine.update(make_tick("Y", "TRADE", t0 - 10_000, 5.0, 1.0, "test"))
    assert other["tick_index"] == 1  # event time is per symbol


def per_tick_columns(ticks: list[dict]) -> dict[str, np.ndarray]:
    engine = FeatureEngine()
    vectors = [v for v in (engine.update(t) for t in ticks) if v is not None]
    return {name: np.array([v["values"].get(name, np.nan) for v in vectors]) for name in FEATURE_NAMES}


def kline_ticks(path: Path) -> list[dict]:
    frame = load_klines(path)
    return [make_tick("X", "KLINE", int(r.time), r.price, r.volume, "test", open=r.price, high=r.high, low=r.low,
                      quote_volume=r.quote, taker_buy_volume=r.taker_buy) for r in frame.itertuples()]


@pytest.mark.parametrize("source", [*KLINE_FILES, *WS_FILES], ids=lambda p: p.name)
def test_batch_path_equals_the_per_tick_path(source):
    from streams.features_batch import TickSeries, update_many

    if source in WS_FILES:
        ticks = [t for t in load_trades_with_book(source)[1] if t["kind"] != "BOOK_TICKER"]
    else:
        ticks = kline_ticks(source)
    expected = per_tick_columns(ticks)
    got = update_many(TickSeries.from_ticks(ticks))
    for name in FEATURE_NAMES:
        assert np.array_equal(np.isnan(got[name]), np.isnan(expected[name])), name
        present = ~np.isnan(expected[name])
        if present.any():
            scale = np.nanmax(np.abs(expected[name]))
            np.testing.assert_allclose(got[name][present], expected[name][present], rtol=RTOL, atol=RTOL * scale,
                                       err_msg=name)


def test_names_and_the_feature_set_id_come_from_the_indicators_parameters():
    from streams.features import (
        DRIFT_FEATURES,
        FEATURE_SET,
        MODEL_FEATURES,
        feature_names,
        feature_set_id,
        indicators,
    )
    from streams.indicators import RSI, Return

    assert Return(7).names == ("ret_7",) and RSI(21).names == ("rsi_21",) and RSI(21).spec == ("rsi", (21,))
    assert feature_names(indicators()) == FEATURE_NAMES and feature_set_id(indicators()) == FEATURE_SET
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert set(DRIFT_FEATURES) <= set(MODEL_FEATURES) <= set(FEATURE_NAMES)
    other = [RSI(21) if isinstance(i, RSI) else i for i in indicators()]
    assert "rsi_21" in feature_names(other) and "rsi_14" not in feature_names(other)
    assert feature_set_id(other) != FEATURE_SET
    # A coefficient that does not show in a name still changes the id.
    from streams.indicators import Bollinger

    wider = [Bollinger(20, 3, fast=5) if isinstance(i, Bollinger) else i for i in indicators()]
    assert feature_names(wider) == FEATURE_NAMES and feature_set_id(wider) != FEATURE_SET


def test_indicators_refuse_impossible_parameters():
    from streams.indicators import MACD, Bollinger, Return

    for make in (lambda: Return(0), lambda: Return(21), lambda: MACD(26, 12), lambda: Bollinger(20, 2, fast=20),
                 lambda: Return(2.5)):
        with pytest.raises(ValueError):
            make()


@pytest.mark.parametrize("symbol, ok", [
    ("BTCUSDT", True), ("ELEC2", True), ("BTCUSD_PERP", True), ("BTCUSDT_250328", True),
    ("", False), ("BTC/USDT", False), ("BTC USDT", False), ("_PERP", False), ("BTCUSD_", False),
    ("BTC_USD_PERP", False), ("BTCUSDT\n", False), ("\uff22\uff34\uff23", False), (None, False)])
def test_symbols_are_binance_symbols_including_contract_suffixes(symbol, ok):
    """Delivery and coin-margined contracts carry a suffix after '_'; full-width letters or a path are
    not symbols, and a trailing newline is not ignored."""
    tick = make_tick("X", "TRADE", 1_700_000_000_000, 100.0, 1.0, "test")
    tick["symbol"] = symbol
    if ok:
        check_tick(tick)
    else:
        with pytest.raises(InvalidTick, match="not a Binance symbol"):
            check_tick(tick)
