"""Ticks: the one record shape every connector emits, and its validation.

A tick is a plain dict with the fields of ``schemas/tick.avsc``. :func:`make_tick` fills the optional
fields with ``None`` so that every tick has every key; :func:`validate_tick` returns the reason a tick
must not reach feature state, or ``None`` when it is fine.

>>> t = make_tick("btcusdt", "TRADE", 1_700_000_000_000, 37000.5, 0.01, is_buyer_maker=False)
>>> t["symbol"], t["taker_buy_volume"]
('BTCUSDT', 0.01)
>>> validate_tick(t) is None
True
>>> validate_tick(make_tick("BTCUSDT", "TRADE", 1_700_000_000_000, float("nan"), 1.0))
'invalid_value: price is not a finite number (nan)'
"""

from __future__ import annotations

import math
import re
from typing import Any

TICK_KINDS = ("TRADE", "AGG_TRADE", "KLINE", "BOOK_TICKER")
PRICE_KINDS = frozenset(("TRADE", "AGG_TRADE", "KLINE"))

OPTIONAL_FIELDS = (
    "open", "high", "low", "quote_volume", "taker_buy_volume", "trade_count", "is_buyer_maker",
    "bid_price", "bid_qty", "ask_price", "ask_qty", "first_trade_id", "last_trade_id", "sequence_id",
    "receive_time_ms",
)
_NON_NEGATIVE = ("quantity", "quote_volume", "taker_buy_volume", "bid_qty", "ask_qty")
_POSITIVE = ("price", "open", "high", "low", "bid_price", "ask_price")

# Earliest and latest plausible event times (2009-01-01 .. 2100-01-01, ms): catches seconds or
# microseconds passed where milliseconds are expected.
MIN_EVENT_TIME_MS = 1_230_768_000_000
MAX_EVENT_TIME_MS = 4_102_444_800_000


class InvalidTick(ValueError):
    """A tick that must not be applied; ``code`` is the dead-letter reason code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


def make_tick(symbol: str, kind: str, event_time_ms: int, price: float, quantity: float,
              source: str = "produce", **optional: Any) -> dict[str, Any]:
    """Build a complete tick dict; taker-buy volume of a trade follows from its side."""
    tick: dict[str, Any] = dict.fromkeys(OPTIONAL_FIELDS)
    tick.update(optional)
    tick["symbol"] = symbol.upper()
    tick["kind"] = kind
    tick["event_time_ms"] = int(event_time_ms)
    tick["price"] = float(price)
    tick["quantity"] = float(quantity)
    tick["source"] = source
    if kind in ("TRADE", "AGG_TRADE") and tick["is_buyer_maker"] is not None and tick["taker_buy_volume"] is None:
        tick["taker_buy_volume"] = 0.0 if tick["is_buyer_maker"] else float(quantity)
    if kind in ("TRADE", "AGG_TRADE") and tick["quote_volume"] is None:
        tick["quote_volume"] = float(price) * float(quantity)
    return tick


# Spot and perpetual symbols are letters and digits; delivery and coin-margined contracts add a suffix
# after an underscore (BTCUSDT_250328, BTCUSD_PERP), which ``livelearn history`` already accepted.
_SYMBOL = re.compile(r"[A-Za-z0-9]{1,30}(?:_[A-Za-z0-9]{1,20})?", re.ASCII)


def is_symbol(symbol: object) -> bool:
    return isinstance(symbol, str) and _SYMBOL.fullmatch(symbol) is not None


def check_tick(tick: dict[str, Any]) -> None:
    """Raise :class:`InvalidTick` when the tick must not be applied."""
    kind = tick.get("kind")
    if kind not in TICK_KINDS:
        raise InvalidTick("unknown_kind", f"kind {kind!r} is not one of {', '.join(TICK_KINDS)}")
    symbol = tick.get("symbol")
    if not is_symbol(symbol):
        raise InvalidTick("invalid_symbol", f"symbol {symbol!r} is not a Binance symbol (ASCII letters and digits, "
                                            "parts joined by '_' as in BTCUSD_PERP or BTCUSDT_250328)")
    t = tick.get("event_time_ms")
    if not isinstance(t, int) or not MIN_EVENT_TIME_MS <= t <= MAX_EVENT_TIME_MS:
        raise InvalidTick("invalid_time", f"event_time_ms {t!r} is not a millisecond epoch time in 2009..2100")
    for name in _POSITIVE + _NON_NEGATIVE:
        value = tick.get(name)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidTick("invalid_value", f"{name} is not a finite number ({value!r})")
        if name in _POSITIVE and value <= 0 and not (kind == "BOOK_TICKER" and name == "price"):
            raise InvalidTick("invalid_value", f"{name} must be positive, got {value!r}")
        if value < 0:
            raise InvalidTick("invalid_value", f"{name} must not be negative, got {value!r}")
    if kind == "KLINE":
        high, low = tick.get("high"), tick.get("low")
        if high is None or low is None:
            raise InvalidTick("invalid_value", "a kline needs high and low")
        if not low <= tick["price"] <= high:
            raise InvalidTick("invalid_value", f"kline close {tick['price']} outside [low {low}, high {high}]")
    if kind == "BOOK_TICKER":
        bid, ask = tick.get("bid_price"), tick.get("ask_price")
        if bid is None or ask is None or tick.get("bid_qty") is None or tick.get("ask_qty") is None:
            raise InvalidTick("invalid_value", "a book ticker needs bid/ask prices and sizes")
        if bid > ask:
            raise InvalidTick("invalid_value", f"crossed book: bid {bid} > ask {ask}")


def validate_tick(tick: dict[str, Any]) -> str | None:
    """The reason the tick is invalid, or None."""
    try:
        check_tick(tick)
    except InvalidTick as exc:
        return str(exc)
    return None
