"""Weeks of distinct one-minute days built from the few real kline days that ship: each a real day
mirrored or not, its bars reversed within the hour or not, its moves scaled, in a random order without
repeats (:func:`distinct_weeks_of`). Drift alarms and skill over weeks need days that differ as real
days do; two consecutive days repeated are the same two days again, which a model can learn. What it
is not: real weeks. A day's volatility here does not persist into the next as real volatility does,
and a mirrored or reversed day recycles its source's patterns. ``bench/drift_real.py --only
distinct_weeks`` and ``bench/skill.py`` run it."""

from __future__ import annotations

import datetime as dt
import math
import random
import statistics
import zipfile
from pathlib import Path

DISTINCT_MOVES = (0.75, 1.0, 1.3)  # each constructed day's log moves times one of these


def complete_days(paths) -> list[list[dict]]:
    """The kline ticks of each file that holds a whole one-minute day (1,440 bars): the days
    :func:`distinct_weeks_of` recombines."""
    from connectors.recorded import read_file

    days = [[item.tick for item in read_file(path) if item.tick is not None and item.tick["kind"] == "KLINE"]
            for path in paths]
    return [day for day in days if len(day) == 1440]


def distinct_day(day: list[dict], mirror: bool, reverse: bool, moves: float, volume: float,
                 trades: float) -> list[tuple[int, tuple[float, ...], dict]]:
    """One real kline day made another, bar by bar in log terms: each bar's open against the last close,
    its close, high and low against its open. Mirrored (``1 / p``: every rise a fall, high and low
    swapped, taker buys the sells), its bars' order reversed within each hour (each hour keeps its bars
    and so its volatility, and the intraday profile holds; the path stays continuous, as it is rebuilt
    from the bars), its log moves and its volumes times ``moves``. Each entry: the minute's time of day
    (ms), the bar's (gap, body, high, low) in log terms and its tick with volumes set."""
    log_bars, last = [], day[0]["open"]
    for tick in day:
        open_ = tick["open"]
        bar = (math.log(open_ / last), math.log(tick["price"] / open_), math.log(tick["high"] / open_),
               math.log(tick["low"] / open_))
        log_bars.append((-bar[0], -bar[1], -bar[3], -bar[2]) if mirror else bar)
        last = tick["price"]
    order = list(range(len(day)))
    if reverse:
        order = [i for hour in range(0, len(day), 60) for i in reversed(order[hour:hour + 60])]
    out = []
    for slot, i in zip(day, order, strict=True):
        tick = day[i]
        quantity = tick["quantity"] * volume * moves
        # Bars from a plain OHLCV export carry no taker volume or trade count: they stay without.
        buys = None if tick["taker_buy_volume"] is None else tick["taker_buy_volume"] * volume * moves
        out.append((slot["event_time_ms"] % 86_400_000, tuple(x * moves for x in log_bars[i]),
                    dict(tick, quantity=quantity, taker_buy_volume=quantity - buys if mirror and buys is not None else buys,
                         trade_count=None if tick["trade_count"] is None else max(1, round(tick["trade_count"] * trades)))))
    return out


def distinct_weeks_of(days: list[list[dict]], count: int, seed: int) -> list[dict]:
    """``count`` consecutive days, each a distinct :func:`distinct_day` of the real ``days`` (a random
    source, mirror, reversal and size of moves without repeats), volumes scaled to the first source's
    median minute, prices continuous: weeks of one symbol whose days differ as real days do in level
    of volatility and order flow, built from the few days that ship. A stress test, not real weeks:
    its days' volatility does not persist from one day to the next as real volatility does.

    >>> day = [dict(event_time_ms=60_000 * (i + 1) - 1, open=100.0 + i, price=101.0 + i, high=101.5 + i,
    ...             low=99.5 + i, quantity=2.0, taker_buy_volume=1.5, trade_count=10, symbol="X")
    ...        for i in range(1440)]
    >>> week = distinct_weeks_of([day], 3, seed=0)
    >>> len(week), all(abs(b["open"] / a["price"] - 1) < 1e-12 for a, b in zip(week, week[1:]))
    (4320, True)
    >>> all(t["low"] <= min(t["open"], t["price"]) <= max(t["open"], t["price"]) <= t["high"] for t in week)
    True
    """
    rng = random.Random(seed)
    combos = [(s, m, r, x) for s in range(len(days)) for m in (False, True) for r in (False, True)
              for x in DISTINCT_MOVES]
    rng.shuffle(combos)
    if len(combos) < count:
        raise ValueError(f"{len(days)} day(s) make {len(combos)} distinct days, fewer than {count}")
    quantity = _typical(t["quantity"] for t in days[0])
    trades = _typical(t["trade_count"] for t in days[0])
    start = days[0][0]["event_time_ms"] - days[0][0]["event_time_ms"] % 86_400_000
    out: list[dict] = []
    last = days[0][0]["open"]
    for d, (source, mirror, reverse, moves) in enumerate(combos[:count]):
        day = days[source]
        volume = quantity / _typical(t["quantity"] for t in day)
        trade_share = trades / _typical(t["trade_count"] for t in day)
        for time_of_day, (gap, body, high, low), tick in distinct_day(day, mirror, reverse, moves, volume,
                                                                      trade_share):
            open_ = last * math.exp(gap)
            last = open_ * math.exp(body)
            out.append(dict(tick, symbol=days[0][0]["symbol"], event_time_ms=start + d * 86_400_000 + time_of_day,
                            open=open_, price=last, high=open_ * math.exp(high), low=open_ * math.exp(low),
                            quote_volume=tick["quantity"] * last))
    return out


def _typical(values) -> float:
    """A day's typical minute (its median; the mean where most minutes are 0, as on a thin pair; 1 where
    there is nothing to scale, as a trade count an OHLCV export does not have)."""
    present = [v for v in values if v is not None]
    typical = statistics.median(present) if present else 1.0
    if not typical > 0:
        typical = statistics.fmean(present) if present else 1.0
    return typical if typical > 0 else 1.0


def write_kline_days(ticks: list[dict], folder: Path) -> list[Path]:
    """``ticks`` (kline ticks, whole UTC days) written as daily dumps named as data.binance.vision names
    them, in ``folder``: what ``livelearn evaluate --joined`` and the benchmarks read."""
    paths = []
    for start in range(0, len(ticks), 1440):
        day = ticks[start:start + 1440]
        name = f"{day[0]['symbol']}-1m-{dt.datetime.fromtimestamp(day[0]['event_time_ms'] / 1000, dt.UTC):%Y-%m-%d}"
        if any(t["taker_buy_volume"] is None or t["trade_count"] is None for t in day):
            # Bars from a plain OHLCV export: written as such (close times), not as klines with made-up flow.
            rows = ["close_time,open,high,low,close,volume"] + [
                f"{t['event_time_ms']},{t['open']!r},{t['high']!r},{t['low']!r},{t['price']!r},{t['quantity']!r}"
                for t in day]
            path = folder / f"{name}.csv"
            path.write_text("\n".join(rows) + "\n")
            paths.append(path)
            continue
        lines = [f"{t['event_time_ms'] - 59_999},{t['open']!r},{t['high']!r},{t['low']!r},{t['price']!r},"
                 f"{t['quantity']!r},{t['event_time_ms']},{t['quote_volume']!r},{t['trade_count']},"
                 f"{t['taker_buy_volume']!r},{t['taker_buy_volume'] * t['price']!r},0" for t in day]
        path = folder / f"{name}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(f"{name}.csv", "\n".join(lines) + "\n")
        paths.append(path)
    return paths
