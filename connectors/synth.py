"""Seeded synthetic trade ticks with documented changes injected at known ticks, and real kline dumps
made to trend (:func:`kline_dump_with_trend`).

The generator (per tick ``t``, one trade a second by default):

* a latent order-flow signal ``z_t = 0.9 z_{t-1} + N(0, 1)``; the trade's taker side is a buy with
  probability ``sigmoid(z_t)`` (so the trade-sign features carry the signal);
* the log return ``r_t = mu + beta * z_{t-1} * sigma / 3 + sigma * N(0, 1)``: the next move depends on the
  previous flow through ``beta``;
* trade size log-normal, ``exp(N(0, 0.5))``.

Changes (``Change(at, kind, size)``), from tick ``at`` on:

* ``mean_shift``: ``mu += size * sigma`` (a trend);
* ``volatility``: ``sigma *= size`` (a volatility regime);
* ``relation_flip``: ``beta = -beta`` (the same flow now predicts the opposite move: concept drift).

>>> ticks = list(generate(5, seed=1))
>>> [t["kind"] for t in ticks], ticks[1]["event_time_ms"] - ticks[0]["event_time_ms"]
(['TRADE', 'TRADE', 'TRADE', 'TRADE', 'TRADE'], 1000)
>>> list(generate(3, seed=1)) == list(generate(3, seed=1))
True
"""

from __future__ import annotations

import csv
import io
import math
import random
import statistics
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from streams.ticks import make_tick

CHANGE_KINDS = ("mean_shift", "volatility", "relation_flip")


@dataclass(frozen=True)
class Change:
    at: int
    kind: str
    size: float = 1.0

    def __post_init__(self):
        if self.kind not in CHANGE_KINDS:
            raise ValueError(f"unknown change {self.kind!r}; choose from {', '.join(CHANGE_KINDS)}")
        if self.at < 0:
            raise ValueError("a change needs a tick index >= 0")

    @classmethod
    def parse(cls, text: str) -> Change:
        """``kind@tick[:size]``, e.g. ``volatility@3000:3``."""
        kind, _, rest = text.partition("@")
        at, _, size = rest.partition(":")
        try:
            return cls(int(at), kind, float(size) if size else 1.0)
        except ValueError as exc:
            raise ValueError(f"cannot parse change {text!r} (expected kind@tick[:size]): {exc}") from None


def generate(n: int, seed: int = 0, changes: tuple[Change, ...] = (), symbol: str = "SYNTHUSDT",
             start_ms: int = 1_700_000_000_000, step_ms: int = 1000, price: float = 100.0,
             sigma: float = 0.001, beta: float = 1.0) -> Iterator[dict]:
    rng = random.Random(seed)
    mu = 0.0
    z = 0.0
    log_price = math.log(price)
    pending = sorted(changes, key=lambda c: c.at)
    for t in range(n):
        while pending and pending[0].at <= t:
            change = pending.pop(0)
            if change.kind == "mean_shift":
                mu += change.size * sigma
            elif change.kind == "volatility":
                sigma *= change.size
            else:
                beta = -beta
        previous_z = z
        z = 0.9 * z + rng.gauss(0.0, 1.0)
        log_price += mu + beta * previous_z * sigma / 3.0 + sigma * rng.gauss(0.0, 1.0)
        taker_buy = rng.random() < 1.0 / (1.0 + math.exp(-z))
        size = math.exp(rng.gauss(0.0, 0.5))
        yield make_tick(symbol, "TRADE", start_ms + t * step_ms, round(math.exp(log_price), 8), round(size, 8),
                        "synth", is_buyer_maker=not taker_buy, sequence_id=t + 1)


def kline_dump_with_trend(path: Path, z: float, folder: Path) -> Path:
    """A copy of a one-minute kline dump (same name, CSV, in ``folder``) whose open, high, low and close
    drift up by ``z`` standard deviations of the day's five-minute log returns every five minutes: a
    real day made to trend steadily, which the shipped data lack (``bench/skill.py --trend``)."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            text = archive.read(archive.namelist()[0]).decode()
    else:
        text = path.read_text()
    rows = list(csv.reader(io.StringIO(text)))
    rows = [row for row in rows if row and row[0].strip().isdigit()]  # a futures dump's header out
    closes = [float(row[4]) for row in rows]
    step = z * statistics.pstdev(math.log(b / a) for a, b in zip(closes, closes[5:], strict=False)) / 5
    out = folder / (path.stem + ".csv")
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        for i, row in enumerate(rows):
            factor = math.exp(step * i)
            writer.writerow([row[0], *(f"{float(v) * factor:.8f}" for v in row[1:5]), *row[5:]])
    return out
