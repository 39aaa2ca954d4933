"""Book and trade-flow state of one symbol: where short-horizon signal lives.

From the latest book ticker: the spread in basis points; the queue imbalance
``(bid_qty - ask_qty) / (bid_qty + ask_qty)``; the micro-price's distance to the mid,
``(micro / mid - 1) * 1e4`` with ``micro = (ask * bid_qty + bid * ask_qty) / (bid_qty + ask_qty)``
(the size-weighted mid, Stoikov 2018's first approximation); and order-flow imbalance (Cont, Kukanov
and Stoikov 2014): per book update ``e = 1[B >= B'] b - 1[B <= B'] b' - 1[A <= A'] a + 1[A >= A'] a'``
(primes: the previous quote), summed over the last ``OFI_UPDATES`` updates and divided by their mean
depth ``(b + a) / 2``. From trades with a known side: the last one's sign, and the signed volume over
the trades of the last ``FLOW_SPAN_MS`` of event time divided by their volume.

>>> micro = Microstructure()
>>> micro.quote(100.0, 3.0, 100.1, 1.0)
>>> micro.trade(1_000, 1.0, 2.0)
>>> values = micro.values(1_000)
>>> round(values["book_imbalance"], 3), values["last_trade_sign"], values["signed_flow_10s"], micro.mid
(0.5, 1.0, 1.0, 100.05)
"""

from __future__ import annotations

from streams.windows import RollingSum, TimeWindowSums

FLOW_SPAN_MS = 10_000
OFI_UPDATES = 10
OFI = f"ofi_{OFI_UPDATES}"
FLOW = f"signed_flow_{FLOW_SPAN_MS // 1000}s"
# What values() can hold, and the parameters they depend on (part of the feature-set id).
NAMES = ("spread_bps", "book_imbalance", "microprice_dev_bps", OFI, "last_trade_sign", FLOW)
SPECS: tuple[tuple[str, tuple], ...] = (("flow", (f"{FLOW_SPAN_MS // 1000}s",)), ("ofi", (OFI_UPDATES,)))


class Microstructure:
    __slots__ = ("book", "ofi", "depth", "last_sign", "flow")

    def __init__(self):
        self.book: tuple[float, float, float, float] | None = None
        self.ofi = RollingSum(OFI_UPDATES)
        self.depth = RollingSum(OFI_UPDATES)
        self.last_sign = 0.0
        self.flow = TimeWindowSums(FLOW_SPAN_MS)

    def quote(self, bid: float, bid_qty: float, ask: float, ask_qty: float) -> None:
        """A book ticker: best bid and ask with their sizes."""
        previous = self.book
        if previous is not None:
            b0, bq0, a0, aq0 = previous
            e = ((bid_qty if bid >= b0 else 0.0) - (bq0 if bid <= b0 else 0.0)
                 - (ask_qty if ask <= a0 else 0.0) + (aq0 if ask >= a0 else 0.0))
            self.ofi.add(e)
            self.depth.add(0.5 * (bid_qty + ask_qty))
        self.book = (bid, bid_qty, ask, ask_qty)

    def trade(self, time_ms: int, sign: float, volume: float) -> None:
        """A trade whose side is known: sign +1 buyer-initiated, -1 seller-initiated."""
        self.last_sign = sign
        self.flow.add(time_ms, sign * volume, volume)

    @property
    def mid(self) -> float | None:
        return None if self.book is None else 0.5 * (self.book[0] + self.book[2])

    def values(self, time_ms: int) -> dict[str, float]:
        """The book features (empty without a quote) and the flow features as of ``time_ms`` (empty
        before the first trade with a known side)."""
        values: dict[str, float] = {}
        book = self.book
        if book is not None:
            bid, bid_qty, ask, ask_qty = book
            mid = 0.5 * (bid + ask)
            depth = bid_qty + ask_qty
            if mid > 0.0:
                values["spread_bps"] = (ask - bid) / mid * 1e4
                if depth > 0.0:
                    micro = (ask * bid_qty + bid * ask_qty) / depth
                    values["microprice_dev_bps"] = (micro / mid - 1.0) * 1e4
            if depth > 0.0:
                values["book_imbalance"] = (bid_qty - ask_qty) / depth
            if self.ofi.full and self.depth.total > 0.0:
                values[OFI] = self.ofi.total / (self.depth.total / OFI_UPDATES)
        if self.last_sign:
            values["last_trade_sign"] = self.last_sign
            signed, volume = self.flow.totals(time_ms)
            if volume > 0.0:
                values[FLOW] = signed / volume
        return values
