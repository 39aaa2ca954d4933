"""Binance payloads -> Tick. Shared by the live feed, REST backfill and replay of captures and dumps.

Event times: trades and aggregate trades use the trade time ``T``; klines use the close time (a kline
is known when it closes); futures book tickers use ``T``; spot book tickers carry no time, so the local
receive time is used.

Volumes of klines are in the base asset on every market: spot and USD-M klines count volume in the
base asset and quote volume in the quote asset, but coin-margined (COIN-M) contracts (``BTCUSD_PERP``,
``ETHUSD_240628``) count volume in contracts and put the base asset's volume where the others put the
quote volume. Taken as the others are, a VWAP there was base volume over contracts (about 100 / price),
and ``vwap_dev_20`` millions. Their klines take the base-asset volumes (volume and taker-buy volume)
and leave the quote volume to the features (price x volume). Their trades keep contracts: a trade's
features use ratios of its own sizes.

>>> msg = {"e": "trade", "E": 1723161255343, "s": "BTCUSDT", "t": 3735683259, "p": "61837.63000000",
...        "q": "0.02000000", "T": 1723161255342, "m": True, "M": True}
>>> tick = normalise_ws(msg, receive_time_ms=1723161254087)
>>> tick["kind"], tick["price"], tick["event_time_ms"], tick["taker_buy_volume"]
('TRADE', 61837.63, 1723161255342, 0.0)
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from streams.ticks import make_tick

# A coin-margined contract: a USD-quoted symbol with a perpetual or delivery-date suffix (USD-M
# contracts end in USDT_... or USDC_...).
_COIN_MARGINED = re.compile(r"[A-Z0-9]+USD_(PERP|\d{6})")

WS_SOURCE = "binance-ws"
DUMP_SOURCE = "binance-dump"
REST_SOURCE = "binance-rest"


class PayloadError(ValueError):
    """A payload that is not a well-formed Binance message; ``code`` is the dead-letter reason."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


# Binance's documented events that carry no trade, kline or book ticker: market statistics, funding,
# liquidations, index prices and user-data events. A capture or a live subscription that includes them
# is well formed, so they are skipped, not rejected; an event type not known at all is still rejected
# (``unknown_event``): it may be a change to a stream that is read.
NOT_TICK_EVENTS = frozenset({
    "markPriceUpdate", "forceOrder", "24hrTicker", "24hrMiniTicker", "1hTicker", "4hTicker", "1dTicker",
    "avgPrice", "continuous_kline", "indexPriceUpdate", "markPrice_kline", "indexPrice_kline",
    "compositeIndex", "contractInfo", "assetIndexUpdate", "listenKeyExpired", "outboundAccountPosition",
    "balanceUpdate", "executionReport", "ACCOUNT_UPDATE", "ORDER_TRADE_UPDATE", "MARGIN_CALL",
    "ACCOUNT_CONFIG_UPDATE", "TRADE_LITE",
    # Spot, 2026: block trades are negotiated off the book and carry ids of their own (not in the trade
    # stream's sequence); reference prices are the exchange's price-range rule, not a trade.
    "blockTrade", "referencePrice",
})


class Skipped(Exception):
    """A well-formed message that is not a tick (depth update, snapshot, open kline, subscription reply,
    :data:`NOT_TICK_EVENTS`)."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


# USD-M's trade stream says where each trade came from (``X``). Binance leaves insurance-fund and ADL
# trades out of aggregate trades and REST ``/trades`` ("only market trades"), so a trade-stream reader
# that kept them would see fills the aggTrade view of the same market never shows, at bankruptcy
# prices. Recorders of the stream also log placeholders with price and quantity 0 (``X`` "NA" or
# "INSURANCE_FUND"), which the worker would refuse one by one as non-positive prices. Both hold a
# trade id of the sequence, so they are skipped with their id (:class:`OffBookTrade`), not lost as gaps.
BOOK_TRADE_TYPES = frozenset({"MARKET", "LIQUIDATION"})
OFF_BOOK_TRADE_TYPES = frozenset({"INSURANCE_FUND", "ADL", "NA"})


class OffBookTrade(Skipped):
    """A USD-M trade-stream message that is not an order-book fill; its id still counts in the sequence."""

    def __init__(self, what: str, symbol: str, trade_id: int):
        super().__init__(what)
        self.symbol = symbol
        self.trade_id = trade_id


def coin_margined(symbol: str) -> bool:
    """Whether ``symbol`` is a COIN-M contract, whose klines count volume in contracts.

    >>> coin_margined("BTCUSD_PERP"), coin_margined("ETHUSD_240628"), coin_margined("BTCUSDT_240628"), coin_margined("BTCUSD")
    (True, True, False, False)
    """
    return _COIN_MARGINED.fullmatch(symbol.upper()) is not None


def to_ms(value: int | float | str) -> int:
    """Epoch time in ms from ms or µs: Binance spot dumps switched to µs in 2025, and its streams send µs
    where the connection asked for them (``timeUnit=MICROSECOND``), as recorders of its feed may.

    >>> to_ms(1722902400123), to_ms(1722902400123456)
    (1722902400123, 1722902400123)
    """
    number = int(value)
    return number // 1000 if number > 10**14 else number


def _num(data: dict, key: str) -> float:
    try:
        return float(data[key])
    except KeyError:
        raise PayloadError("malformed_payload", f"field {key!r} missing") from None
    except (TypeError, ValueError):
        raise PayloadError("malformed_payload", f"field {key!r} is not a number: {data[key]!r}") from None


def normalise_ws(message: dict[str, Any], receive_time_ms: int | None = None, *,
                 include_open_klines: bool = False, source: str = WS_SOURCE) -> dict[str, Any]:
    """One websocket message (combined-stream wrapper or bare payload) -> Tick.

    Raises :class:`Skipped` for messages that are not ticks and :class:`PayloadError` for broken ones.
    """
    try:
        return _normalise_ws(message, receive_time_ms, include_open_klines, source)
    except KeyError as exc:
        raise PayloadError("malformed_payload", f"field {exc} missing") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, PayloadError):
            raise
        raise PayloadError("malformed_payload", str(exc)) from None


def _normalise_ws(message: Any, receive_time_ms: int | None, include_open_klines: bool,
                  source: str) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise PayloadError("malformed_payload", f"expected a JSON object, got {type(message).__name__}")
    data = message.get("data", message) if "stream" in message else message
    if not isinstance(data, dict):
        raise PayloadError("malformed_payload", "'data' is not an object")
    if "code" in data and "msg" in data:
        raise PayloadError("exchange_error", f"Binance error {data['code']}: {data['msg']}")
    if data.get("e") == "error" or "error" in data:
        raise PayloadError("exchange_error", f"socket error: {data.get('m') or data.get('error')}")
    if "result" in data and "id" in data:
        raise Skipped("subscription_reply")
    if "lastUpdateId" in data:
        raise Skipped("depth_snapshot")
    event = data.get("e")
    if event in NOT_TICK_EVENTS:
        raise Skipped(str(event))
    try:
        symbol = str(data["s"]).upper()
    except KeyError:
        raise PayloadError("malformed_payload", "no symbol ('s')") from None
    if event == "trade":
        _check_book_trade(data, symbol)
        return make_tick(symbol, "TRADE", to_ms(data["T"]), _num(data, "p"), _num(data, "q"), source,
                         is_buyer_maker=bool(data["m"]), sequence_id=int(data["t"]),
                         receive_time_ms=receive_time_ms)
    if event == "aggTrade":
        return make_tick(symbol, "AGG_TRADE", to_ms(data["T"]), _num(data, "p"), _num(data, "q"), source,
                         is_buyer_maker=bool(data["m"]), sequence_id=int(data["a"]),
                         first_trade_id=int(data["f"]), last_trade_id=int(data["l"]),
                         receive_time_ms=receive_time_ms)
    if event == "kline":
        k = data.get("k")
        if not isinstance(k, dict):
            raise PayloadError("malformed_payload", "kline without 'k'")
        if not k.get("x") and not include_open_klines:
            raise Skipped("open_kline")
        if coin_margined(symbol):  # v and V count contracts, q and Q the base asset
            volume, quote, taker_buy = _num(k, "q"), None, _num(k, "Q")
        else:
            volume, quote, taker_buy = _num(k, "v"), _num(k, "q"), _num(k, "V")
        return make_tick(symbol, "KLINE", to_ms(k["T"]), _num(k, "c"), volume, source,
                         open=_num(k, "o"), high=_num(k, "h"), low=_num(k, "l"), quote_volume=quote,
                         taker_buy_volume=taker_buy, trade_count=int(k["n"]),
                         first_trade_id=int(k["f"]), last_trade_id=int(k["L"]),
                         receive_time_ms=receive_time_ms)
    if event == "depthUpdate":
        raise Skipped("depth_update")
    if event in (None, "bookTicker") and {"b", "B", "a", "A"} <= data.keys():
        time_ms = data.get("T") or data.get("E") or receive_time_ms
        if time_ms is None:
            raise PayloadError("malformed_payload", "spot book ticker without a receive time")
        bid, ask = _num(data, "b"), _num(data, "a")
        return make_tick(symbol, "BOOK_TICKER", to_ms(time_ms), 0.5 * (bid + ask), 0.0, source,
                         bid_price=bid, bid_qty=_num(data, "B"), ask_price=ask, ask_qty=_num(data, "A"),
                         sequence_id=int(data["u"]) if "u" in data else None, receive_time_ms=receive_time_ms)
    raise PayloadError("unknown_event", f"unknown event type {event!r}")


def _check_book_trade(data: dict[str, Any], symbol: str) -> None:
    kind = data.get("X")
    if kind is not None and kind not in BOOK_TRADE_TYPES:
        if kind not in OFF_BOOK_TRADE_TYPES:
            raise PayloadError("unknown_trade_type", f"trade type X={kind!r} is not one of "
                                                     f"{', '.join(sorted(BOOK_TRADE_TYPES | OFF_BOOK_TRADE_TYPES))}")
        raise OffBookTrade(f"off_book_trade:{kind}", symbol, int(data["t"]))
    if _num(data, "p") == 0 and _num(data, "q") == 0:
        raise OffBookTrade("empty_trade", symbol, int(data["t"]))


class ExchangeClock:
    """How far this machine's clock is behind Binance's, from the messages that carry Binance's send
    time (``E``). A spot book ticker has no time of its own and is stamped when it is received; on a
    clock behind Binance's by more than the network delay each one was older than the trade before it,
    and the worker dead-lettered it as late (27,945 of the 28,040 of the BTCUSDT capture, fed in the
    order received: it was recorded on a clock 1.27 s behind). Receive times are moved forward by the
    least ``receive - send`` of the last ``window_ms`` where that is negative, so that a book ticker is
    never older than a message received before it; on a clock that is right or ahead, not at all.

    >>> clock = ExchangeClock()
    >>> clock.observe(send_ms=10_000, receive_ms=8_800)
    >>> clock.behind_ms, clock.stamp(8_850)
    (1200, 10050)
    >>> clock.observe(send_ms=20_000, receive_ms=20_030)  # right, 30 ms of delay
    >>> clock.behind_ms
    1200
    >>> clock.observe(send_ms=90_000, receive_ms=90_030)  # the slow reading is over a minute old
    >>> clock.behind_ms, clock.stamp(90_040)
    (0, 90040)
    """

    def __init__(self, window_ms: int = 60_000):
        self.window_ms = window_ms
        self.lows: deque[tuple[int, int]] = deque()  # (receive_ms, receive - send), the second rising

    def observe(self, send_ms: int, receive_ms: int) -> None:
        skew = receive_ms - send_ms
        while self.lows and self.lows[-1][1] >= skew:
            self.lows.pop()
        self.lows.append((receive_ms, skew))
        while self.lows[0][0] < receive_ms - self.window_ms:
            self.lows.popleft()

    @property
    def behind_ms(self) -> int:
        return max(0, -self.lows[0][1]) if self.lows else 0

    def stamp(self, receive_ms: int) -> int:
        return receive_ms + self.behind_ms

    def observe_message(self, message: Any, receive_ms: int | None) -> None:
        """Observe a websocket message's send time (``E``), where it has one and a receive time."""
        data = message.get("data", message) if isinstance(message, dict) else None
        if receive_ms is not None and isinstance(data, dict) and isinstance(data.get("E"), int):
            self.observe(to_ms(data["E"]), receive_ms)

    def correct(self, tick: dict[str, Any], message: Any) -> bool:
        """Move ``tick`` forward by :attr:`behind_ms` where its time is its receive time (a spot book
        ticker: no ``T`` or ``E``); its ``receive_time_ms`` stays the receiving clock's. Whether it moved."""
        data = message.get("data", message) if isinstance(message, dict) else None
        if (tick["kind"] != "BOOK_TICKER" or not isinstance(data, dict) or "T" in data or "E" in data
                or tick.get("receive_time_ms") is None or not self.behind_ms):
            return False
        tick["event_time_ms"] = self.stamp(tick["receive_time_ms"])
        return True


def kline_row_to_tick(symbol: str, row: list[str], source: str = DUMP_SOURCE) -> dict[str, Any]:
    """A 12-column kline row (dump CSV or REST ``/klines`` entry) -> Tick (event time = close time).

    A COIN-M row's volumes in the base asset (columns 7 and 10; columns 5 and 9 count contracts):

    >>> row = ["1678406400000", "20100.0", "20110.0", "20090.0", "20105.0", "1500", "1678406459999",
    ...        "7.4612", "210", "800", "3.9793", "0"]
    >>> tick = kline_row_to_tick("BTCUSD_PERP", row)
    >>> tick["quantity"], tick["taker_buy_volume"], tick["quote_volume"]
    (7.4612, 3.9793, None)
    >>> kline_row_to_tick("BTCUSDT", row)["quantity"]
    1500.0
    """
    if len(row) < 11:
        raise PayloadError("malformed_row", f"kline row has {len(row)} columns, expected 12")
    try:
        if coin_margined(symbol):
            volume, quote, taker_buy = float(row[7]), None, float(row[10])
        else:
            volume, quote, taker_buy = float(row[5]), float(row[7]), float(row[9])
        return make_tick(
            symbol, "KLINE", to_ms(row[6]), float(row[4]), volume, source,
            open=float(row[1]), high=float(row[2]), low=float(row[3]), quote_volume=quote,
            trade_count=int(float(row[8])), taker_buy_volume=taker_buy,
        )
    except ValueError as exc:
        raise PayloadError("malformed_row", f"kline row {row!r}: {exc}") from None


def agg_trade_row_to_tick(symbol: str, row: list[str], source: str = DUMP_SOURCE) -> dict[str, Any]:
    """``agg_trade_id, price, quantity, first_trade_id, last_trade_id, transact_time, is_buyer_maker``."""
    if len(row) < 7:
        raise PayloadError("malformed_row", f"aggTrades row has {len(row)} columns, expected 7")
    try:
        return make_tick(symbol, "AGG_TRADE", to_ms(row[5]), float(row[1]), float(row[2]), source,
                         is_buyer_maker=_bool(row[6]), sequence_id=int(row[0]), first_trade_id=int(row[3]),
                         last_trade_id=int(row[4]))
    except ValueError as exc:
        raise PayloadError("malformed_row", f"aggTrades row {row!r}: {exc}") from None


def trade_row_to_tick(symbol: str, row: list[str], source: str = DUMP_SOURCE) -> dict[str, Any]:
    """``id, price, qty, quote_qty, time, is_buyer_maker[, is_best_match]``."""
    if len(row) < 6:
        raise PayloadError("malformed_row", f"trades row has {len(row)} columns, expected 6 or 7")
    try:
        return make_tick(symbol, "TRADE", to_ms(row[4]), float(row[1]), float(row[2]), source,
                         quote_volume=float(row[3]), is_buyer_maker=_bool(row[5]), sequence_id=int(row[0]))
    except ValueError as exc:
        raise PayloadError("malformed_row", f"trades row {row!r}: {exc}") from None


def book_ticker_row_to_tick(symbol: str, row: list[str], source: str = DUMP_SOURCE) -> dict[str, Any]:
    """``update_id, best_bid_price, best_bid_qty, best_ask_price, best_ask_qty, transaction_time,
    event_time`` (data.binance.vision's futures bookTicker dumps), stamped with the transaction time as
    the websocket's ``T`` is (:func:`normalise_ws`).

    >>> tick = book_ticker_row_to_tick("BTCUSDT", "1712345,22300.1,4.2,22300.2,0.8,1677628800123,1677628800130".split(","))
    >>> tick["kind"], tick["event_time_ms"], tick["price"], tick["sequence_id"]
    ('BOOK_TICKER', 1677628800123, 22300.15, 1712345)
    """
    if len(row) < 6:
        raise PayloadError("malformed_row", f"bookTicker row has {len(row)} columns, expected 7")
    try:
        bid, ask = float(row[1]), float(row[3])
        return make_tick(symbol, "BOOK_TICKER", to_ms(row[5]), 0.5 * (bid + ask), 0.0, source, bid_price=bid,
                         bid_qty=float(row[2]), ask_price=ask, ask_qty=float(row[4]), sequence_id=int(row[0]))
    except ValueError as exc:
        raise PayloadError("malformed_row", f"bookTicker row {row!r}: {exc}") from None


def rest_agg_trade_to_tick(symbol: str, item: dict[str, Any]) -> dict[str, Any]:
    """An entry of REST ``/aggTrades`` (same letters as the websocket payload, without ``e``)."""
    return normalise_ws({**item, "e": "aggTrade", "s": symbol}, source=REST_SOURCE)


def rest_trade_to_tick(symbol: str, item: dict[str, Any]) -> dict[str, Any]:
    """An entry of spot REST ``/historicalTrades`` (``id, price, qty, quoteQty, time, isBuyerMaker``).

    >>> item = {"id": 28457, "price": "4.00000100", "qty": "12.00000000", "quoteQty": "48.000012",
    ...         "time": 1499865549590, "isBuyerMaker": True, "isBestMatch": True}
    >>> tick = rest_trade_to_tick("BNBBTC", item)
    >>> tick["kind"], tick["sequence_id"], tick["event_time_ms"], tick["is_buyer_maker"], tick["source"]
    ('TRADE', 28457, 1499865549590, True, 'binance-rest')
    """
    row = [item["id"], item["price"], item["qty"], item["quoteQty"], item["time"], str(item["isBuyerMaker"])]
    return trade_row_to_tick(symbol, [str(value) for value in row], source=REST_SOURCE)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {text!r}")
