"""The basis of pairs of one base asset: how far each pair's price is from the others'.

BTCUSDT, BTCUSDC and BTCFDUSD should trade at one price; when a quote asset loses its peg, its pair's
price moves against the others while all three keep moving with bitcoin. Per-symbol returns cannot see
that (every pair's returns look alike), so the basis channel watches each pair's log price against the
*median* log price of its group (schemas.keys names the groups; the group's ticks share a partition).
With three pairs or more the median is a pair that did not move, so only the pair that moved shows a
shift, and the alert names it and the median pair it moved against; with two pairs which one moved
cannot be told, and the alert names the pair that is not the group's preferred reference (USDT first).

The deviation series goes to the symbol's BASIS drift channel (streams.drift.channel.BasisCheck):
the serial-correlation-corrected Welch t of a short current window against the reference window,
counted only when the shift is at least ``basis_min_bps``: a basis wanders by a few basis points
between pegged quotes (fees, funding, flows), which is no de-peg however significant.

>>> tracker = BasisTracker()
>>> tracker.update("BTC", "BTCUSDT", 100.0) is None   # alone in its group so far
True
>>> tracker.update("BTC", "BTCUSDC", 100.0)
(0.0, 'BTCUSDT')
>>> bps, against = tracker.update("BTC", "BTCFDUSD", 102.0)     # 2% above the median pair
>>> round(bps, 2), against
(198.03, 'BTCUSDT')
"""

from __future__ import annotations

import math

from schemas.keys import BasisGroups


class BasisTracker:
    """Last log price of every pair per group; an update gives the pair's deviation from its group's
    median in basis points, and the pair it is measured against."""

    def __init__(self):
        self._groups: dict[str, dict[str, float]] = {}

    def update(self, group: str, symbol: str, price: float) -> tuple[float, str] | None:
        if not (price > 0 and math.isfinite(price)):
            return None
        prices = self._groups.setdefault(group, {})
        prices[symbol] = math.log(price)
        if len(prices) < 2:
            return None
        if len(prices) == 2:
            # Two pairs: each against the other; the preferred reference is never the one named as moved.
            other = next(s for s in prices if s != symbol)
            return (prices[symbol] - prices[other]) * 1e4, other
        ranked = sorted((value, s) for s, value in prices.items())
        # The median pair (the lower middle one for an even count) is one that did not move when one
        # did; a pair that is itself the median is measured against its nearest neighbour.
        value, median_symbol = ranked[(len(ranked) - 1) // 2]
        if median_symbol == symbol:
            value, median_symbol = min(((v, s) for v, s in ranked if s != symbol),
                                       key=lambda item: abs(item[0] - prices[symbol]))
        return (prices[symbol] - value) * 1e4, median_symbol

    def named_mover(self, group: str, symbol: str) -> bool:
        """Whether an alert on ``symbol`` names it as the pair that moved: always with three pairs or
        more; with two, only for the pair that is not the preferred reference."""
        prices = self._groups.get(group, {})
        if len(prices) != 2:
            return True
        return symbol != min(prices, key=lambda s: (BasisGroups.preference(s), s))

    def state(self) -> dict[str, dict[str, float]]:
        return {group: dict(prices) for group, prices in self._groups.items()}
