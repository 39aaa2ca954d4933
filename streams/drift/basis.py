"""The basis of pairs of one base asset: how far each pair's price is from the others' at the same time.

BTCUSDT, BTCUSDC and BTCFDUSD should trade at one price; when a quote asset loses its peg, its pair's
price moves against the others while all three keep moving with bitcoin. Per-symbol returns cannot see
that (every pair's returns look alike), so the basis channel watches each pair's log price against
*each other* pair's of its group (schemas.keys names the groups; the group's ticks share a partition).
The pair that moved is the one that moved against every other pair, the same way; a pair that stayed
moved against the one that moved only (streams.drift.checks.BasisCheck). With two pairs which one moved
cannot be told, and the alert names the pair that is not the group's preferred reference (USDT first).

Each pair against each other, not against the group's median: the median is a different pair as
prices cross, and a pair measured against it switches comparison. In USDC's de-peg (Binance.US,
March 2023) USDT also moved 30-90 bp against USD and USDC for days, so BTCUSD sat between the two
others, measured against the nearer; as BTCUSDC swung, the nearer changed, and BTCUSD's series jumped
by the gap between them: alerts named BTCUSD as the pair that moved within four minutes of BTCUSDC's
first alert, and 76 minutes after BTCUSDC's return (bench/drift_real.py --data, docs/STATUS.md).

Prices are compared at one event time. A pair's tick is measured once the group's prices at its
event time are known: when every pair of the group has a tick at that time (one-minute klines: at the
group's last kline of the minute), or else when a tick with a later event time arrives (then each
other pair's price is its last one at or before that time). Measured on arrival instead, the first
pair's kline of each minute met the others' closes of the minute before, so its basis was its own
one-minute return: on the shipped kline days its deviations had a standard deviation of 3.8-7.7 bp
against 0.5-0.6 bp for the others (0.5 bp is the noise the benchmark gives each pair), and a steady
fall of 20 bp a minute raised a BASIS alert naming it as de-pegged while the three pairs traded at one
price (tests/unit/test_drift_real.py, bench/drift_real.py).

A pair's deviations go to its BASIS drift channel, one stream per other pair
(streams.drift.checks.BasisCheck): the serial-correlation-corrected Welch t of a short current window
against the reference window, counted only when the shift is at least ``basis_min_bps``: a basis
wanders by a few basis points between pegged quotes (fees, funding, flows), which is no de-peg however
significant.

>>> tracker = BasisTracker()
>>> tracker.update("BTC", "BTCUSDT", 100.0, 60_000)      # alone in its group: nothing to measure
[]
>>> tracker.update("BTC", "BTCUSDC", 100.0, 60_000), tracker.update("BTC", "BTCFDUSD", 102.0, 60_000)
([], [])
>>> [(d.symbol, round(d.bps, 1), d.against) for d in tracker.update("BTC", "BTCUSDT", 101.0, 120_000)]
[('BTCUSDC', -198.0, 'BTCFDUSD'), ('BTCUSDC', 0.0, 'BTCUSDT'), ('BTCFDUSD', 198.0, 'BTCUSDC'), ('BTCFDUSD', 198.0, 'BTCUSDT')]
>>> tracker.update("BTC", "BTCUSDC", 101.0, 120_000)
[]
>>> [(d.symbol, d.against, round(d.bps, 1)) for d in tracker.update("BTC", "BTCFDUSD", 103.0, 120_000)]  # the minute is complete
... # doctest: +NORMALIZE_WHITESPACE
[('BTCUSDT', 'BTCFDUSD', -196.1), ('BTCUSDT', 'BTCUSDC', 0.0), ('BTCUSDC', 'BTCFDUSD', -196.1),
 ('BTCUSDC', 'BTCUSDT', 0.0), ('BTCFDUSD', 'BTCUSDC', 196.1), ('BTCFDUSD', 'BTCUSDT', 196.1)]

BTCFDUSD moved against both others the same way; each of them moved against BTCFDUSD only.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from schemas.keys import BasisGroups


class Deviation(NamedTuple):
    """One pair's log price minus the ``against`` pair's at ``time_ms``, in basis points."""

    symbol: str
    bps: float
    against: str
    time_ms: int


class BasisTracker:
    """Last log price of every pair per group, and the pairs with a tick at the group's latest event
    time that are not measured yet; an update gives the deviations that have become measurable."""

    def __init__(self):
        self._groups: dict[str, dict[str, float]] = {}
        self._waiting: dict[str, tuple[int, list[str]]] = {}  # group -> (event time, pairs with a tick at it)

    def update(self, group: str, symbol: str, price: float, time_ms: int) -> list[Deviation]:
        if not (price > 0 and math.isfinite(price)):
            return []
        waiting_all = self.__dict__.setdefault("_waiting", {})  # absent in a checkpoint from before
        prices = self._groups.setdefault(group, {})
        measured: list[Deviation] = []
        waiting = waiting_all.pop(group, None)
        if waiting is not None and time_ms > waiting[0]:
            measured = self._measure(prices, *waiting)  # every price at that time is in
            waiting = None
        prices[symbol] = math.log(price)
        if waiting is None:
            waiting = (time_ms, [symbol])
        elif symbol not in waiting[1]:
            waiting[1].append(symbol)  # the same time, or a late tick: measured with this time's prices
        if len(waiting[1]) == len(prices):
            measured += self._measure(prices, *waiting)
        else:
            waiting_all[group] = waiting
        return measured

    @staticmethod
    def _measure(prices: dict[str, float], time_ms: int, symbols: list[str]) -> list[Deviation]:
        # Each pair against every other, a pair's deviations together (the pipeline reads them so).
        return [Deviation(s, (prices[s] - prices[other]) * 1e4, other, time_ms)
                for s in symbols for other in sorted(prices) if other != s]

    def named_mover(self, group: str, symbol: str) -> bool:
        """Whether an alert on ``symbol`` names it as the pair that moved: always with three pairs or
        more; with two, only for the pair that is not the preferred reference."""
        prices = self._groups.get(group, {})
        if len(prices) != 2:
            return True
        return symbol != min(prices, key=lambda s: (BasisGroups.preference(s), s))
