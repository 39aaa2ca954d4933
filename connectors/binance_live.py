"""Live Binance market data: python-binance websockets -> Tick -> Kafka (idempotent producer).

Two parts:

* :class:`LiveHandler` (pure, no I/O): one websocket message in, ticks out. It normalises with
  :func:`connectors.binance.normalise_ws`, drops duplicates (an aggTrade or trade id already seen, a
  kline not closing after the last: reconnects overlap), detects sequence gaps in aggTrade ids, in
  spot trade ids and closed klines missing between two closes (all to be backfilled over REST) and in
  futures trade ids (counted and logged: not fetched; USD-M trades off the book are skipped with their
  ids, :class:`connectors.binance.OffBookTrade`), turns a broken
  socket (python-binance's error message) into a reconnect request instead of an exception, and
  dead-letters Binance's own error answers and malformed payloads while the stream goes on.
* :func:`run_live` (asyncio): one multiplexed socket for every symbol and stream (two on USD-M futures,
  see :func:`socket_routes`); reconnects with exponential backoff (1, 2, 4 ... capped at
  ``backoff_max_s``) when a socket errors or closes; a watchdog reconnects when event time has not
  advanced for ``stall_s`` seconds, and says once a connection which subscribed stream has sent
  nothing in that time (a stream on the wrong route is silent, not refused); gaps in aggTrade ids
  and in closed klines are filled from REST before the tick that revealed them, so the topic stays in
  order; a backfill that fails is counted and dead-lettered with what stays missing, and the stream
  goes on.

>>> handler = LiveHandler()
>>> msg = {"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "E": 2, "s": "BTCUSDT", "a": 10,
...        "p": "60000.0", "q": "0.5", "f": 100, "l": 101, "T": 1, "m": False}}
>>> out = handler.handle(msg, receive_time_ms=3)
>>> [t["sequence_id"] for t in out.ticks], out.gap
([10], None)
>>> out = handler.handle({**msg, "data": {**msg["data"], "a": 13, "T": 5}}, receive_time_ms=6)
>>> out.gap
Gap(symbol='BTCUSDT', first_id=11, last_id=12, kind='AGG_TRADE')
>>> handler.handle(msg, receive_time_ms=7).duplicate
True
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from connectors.binance import (
    ExchangeClock,
    OffBookTrade,
    PayloadError,
    Skipped,
    normalise_ws,
    rest_agg_trade_to_tick,
    rest_trade_to_tick,
)

log = logging.getLogger("livelearn.live")

STREAM_KINDS = ("trade", "aggTrade", "kline_1m", "bookTicker")


@dataclass(frozen=True)
class Gap:
    symbol: str
    first_id: int
    last_id: int
    kind: str = "AGG_TRADE"  # or TRADE (spot only: connectors.binance_rest.fetch_trades)


@dataclass(frozen=True)
class KlineGap:
    """Closed klines of ``interval`` that never came (a reconnect across a bar's close): their open
    times are ``first_open_ms`` up to ``end_open_ms``, excluded."""
    symbol: str
    interval: str
    first_open_ms: int
    end_open_ms: int


@dataclass
class Handled:
    ticks: list[dict[str, Any]] = field(default_factory=list)
    gap: Gap | None = None
    kline_gap: KlineGap | None = None
    duplicate: bool = False
    error: str | None = None  # a socket error: reconnect
    rejected: tuple[str, str] | None = None  # (reason code, reason): dead-letter the raw message


def stream_names(symbols: list[str], streams: list[str]) -> list[str]:
    """The combined stream's names; ``ValueError`` (before any socket opens) for no symbol or stream,
    a name that is not a symbol, or a stream Binance does not have."""
    from connectors.binance_rest import INTERVAL_MS
    from streams.ticks import is_symbol

    if not symbols or not streams:
        raise ValueError("give at least one symbol and one stream")
    bad = [s for s in symbols if not is_symbol(s)]
    if bad:
        raise ValueError(f"not a Binance symbol: {', '.join(map(repr, bad))}")
    unknown = [s for s in streams if s not in STREAM_KINDS
               and not (s.startswith("kline_") and s.removeprefix("kline_") in INTERVAL_MS)]
    if unknown:
        raise ValueError(f"unknown stream {', '.join(unknown)}; choose from {', '.join(STREAM_KINDS)} "
                         f"(kline_<interval> with an interval of {', '.join(INTERVAL_MS)})")
    return [f"{symbol.lower()}@{stream}" for symbol in symbols for stream in streams]


class LiveHandler:
    """Websocket message -> ticks, with duplicate, gap and error handling (see the module docstring)."""

    def __init__(self, market: str = "spot"):
        self.market = market
        self.last_agg_id: dict[str, int] = {}
        self.last_trade_id: dict[str, int] = {}
        self.last_event_ms = 0
        self.counts: Counter[str] = Counter()
        self.clock = ExchangeClock()
        self.clock_warned = False
        self.last_kline_close: dict[tuple[str, str], int] = {}  # (symbol, interval) -> close time

    def handle(self, message: Any, receive_time_ms: int) -> Handled:
        if isinstance(message, dict):
            if message.get("e") == "error":  # python-binance's own report of a broken socket
                self.counts["socket_errors"] += 1
                return Handled(error=f"{message.get('type', 'error')}: {message.get('m', '')}")
            if "error" in message and "data" not in message:  # Binance's answer to a bad request
                self.counts["exchange_errors"] += 1
                return Handled(rejected=("exchange_error", f"Binance error message: {message['error']}"))
            # Binance's notice that this server goes down shortly (spot: about ten minutes ahead): a new
            # connection now, instead of a dead letter for a message without a symbol, then a dropped socket.
            inner = message.get("data", message.get("event", message))
            if isinstance(inner, dict) and inner.get("e") == "serverShutdown":
                self.counts["server_shutdowns"] += 1
                return Handled(error=f"serverShutdown at {inner.get('E')}: Binance closes this connection soon")
        data = message.get("data", message) if isinstance(message, dict) else None
        self.clock.observe_message(message, receive_time_ms)  # depth updates too: any send time
        try:
            tick = normalise_ws(message, receive_time_ms)
        except OffBookTrade as skip:  # not a tick, but its id is the stream's: no gap where it was
            self.counts["skipped"] += 1
            self.counts["off_book_trades"] += 1
            out = Handled()
            if self._sequence(skip.symbol, "TRADE", skip.trade_id, out):
                return Handled(duplicate=True)
            return out
        except Skipped:
            self.counts["skipped"] += 1
            return Handled()
        except PayloadError as exc:
            self.counts[f"rejected_{exc.code}"] += 1
            return Handled(rejected=(exc.code, str(exc)))
        if self.clock.correct(tick, message):
            self.counts["clock_corrected"] += 1
            if not self.clock_warned and self.clock.behind_ms > 250:
                self.clock_warned = True
                log.warning("this machine's clock is %d ms behind Binance's: book tickers, stamped when received, "
                            "are stamped that much later (synchronise the clock, e.g. with NTP)", self.clock.behind_ms)
        out = Handled()
        if tick["kind"] == "KLINE":
            from connectors.binance_rest import INTERVAL_MS

            interval = str(data["k"].get("i", ""))
            step = INTERVAL_MS.get(interval)
            last = self.last_kline_close.get((tick["symbol"], interval))
            if step is not None and last is not None:
                if tick["event_time_ms"] <= last:  # a reconnect's overlap, or a backfilled bar sent again
                    self.counts["duplicates"] += 1
                    return Handled(duplicate=True)
                missing = (tick["event_time_ms"] - last) // step - 1
                if missing > 0:
                    self.counts["kline_gaps"] += 1
                    self.counts["klines_missing"] += missing
                    out.kline_gap = KlineGap(tick["symbol"], interval, last + 1, tick["event_time_ms"] + 1 - step)
            self.last_kline_close[(tick["symbol"], interval)] = tick["event_time_ms"]
        # Book-ticker update ids are order-book wide, not contiguous per symbol: no gap logic for them.
        sequence = tick.get("sequence_id") if tick["kind"] in ("TRADE", "AGG_TRADE") else None
        if sequence is not None and self._sequence(tick["symbol"], tick["kind"], sequence, out):
            return Handled(duplicate=True)
        self.last_event_ms = max(self.last_event_ms, tick["event_time_ms"])
        self.counts["ticks"] += 1
        out.ticks.append(tick)
        return out

    def _sequence(self, symbol: str, kind: str, sequence: int, out: Handled) -> bool:
        """Whether ``sequence`` was seen already; a gap before it goes on ``out`` (or is counted)."""
        seen = self.last_agg_id if kind == "AGG_TRADE" else self.last_trade_id
        last = seen.get(symbol)
        if last is not None and sequence <= last:
            self.counts["duplicates"] += 1
            return True
        if last is not None and sequence > last + 1:
            gap = Gap(symbol, last + 1, sequence - 1, kind)
            self.counts["gaps"] += 1
            if kind == "AGG_TRADE" or self.market == "spot":
                out.gap = gap
            else:
                self.counts["trade_ids_missing"] += gap.last_id - gap.first_id + 1
                log.warning("trade ids %s..%s of %s missing (not backfilled: futures' old trades are "
                            "not fetched)", gap.first_id, gap.last_id, gap.symbol)
        seen[symbol] = sequence
        return False

    def backfilled(self, items: list[dict[str, Any]], symbol: str, kind: str = "AGG_TRADE") -> list[dict[str, Any]]:
        """REST aggTrades (or spot trades) of a gap -> ticks (in id order)."""
        if kind == "TRADE":
            ticks = [rest_trade_to_tick(symbol, item) for item in sorted(items, key=lambda i: i["id"])]
        else:
            ticks = [rest_agg_trade_to_tick(symbol, item) for item in sorted(items, key=lambda i: i["a"])]
        self.counts["backfilled"] += len(ticks)
        return ticks


@dataclass
class LiveConfig:
    symbols: list[str]
    streams: list[str]
    market: str = "spot"  # spot, futures (USD-M) or coin (COIN-M), as in connectors.binance_rest.MARKETS
    # replaces wss://stream.binance.com:9443/ (spot), wss://fstream.binance.com/ (USD-M) and
    # wss://dstream.binance.com/ (COIN-M)
    ws_url: str = ""
    rest_url: str = ""
    stall_s: float = 30.0
    backoff_max_s: float = 30.0
    max_runtime_s: float | None = None
    max_ticks: int | None = None
    wake_s: float = 1.0  # the read loop's longest wait for a message; a batching sink's stale batches leave then
    # Appended to every tick's symbol: Binance names a USD-M perpetual like the spot pair (BTCUSDT), and
    # one ticks topic holds one series per name (the worker's gate refuses a second source of a name as
    # conflicting_tick). "_PERP" keeps the contract in its base asset's basis group (schemas.keys).
    symbol_suffix: str = ""

    def __post_init__(self):
        if self.symbol_suffix and not re.fullmatch(r"_[A-Z0-9]+", self.symbol_suffix):
            raise ValueError(f"symbol suffix {self.symbol_suffix!r} must be an underscore and capital letters or "
                             "digits, such as _PERP")


WS_QUEUE_SIZE = 100_000  # parsed messages of about a kilobyte each: of the order of 100 MB if ever full


# USD-M futures streams by route. Since Binance's base-URL split (announced 2026-03-06, the unrouted
# paths serving only the public class from 2026-04-23), wss://fstream.binance.com/public carries the
# high-frequency streams (book tickers, depth and, as probed by others on the live exchange, raw
# trades) and /market the rest (aggregate trades, klines, mark prices). A stream subscribed on the
# other route is accepted and then never delivered, with no error; so is a /market stream on the
# unrouted path that python-binance before 1.0.37 used. Spot and COIN-M keep one unrouted endpoint.
USD_M_PUBLIC_STREAMS = ("bookTicker", "trade", "depth")


def socket_routes(market: str, names: list[str]) -> list[tuple[str | None, list[str]]]:
    """The sockets a market's stream names need: ``(route, names)`` each, the route the USD-M path
    (``public`` or ``market``) or None for the unrouted endpoint of spot and COIN-M.

    >>> socket_routes("futures", ["btcusdt@aggTrade", "btcusdt@bookTicker", "btcusdt@kline_1m"])
    [('public', ['btcusdt@bookTicker']), ('market', ['btcusdt@aggTrade', 'btcusdt@kline_1m'])]
    >>> socket_routes("spot", ["btcusdt@trade", "btcusdt@bookTicker"])
    [(None, ['btcusdt@trade', 'btcusdt@bookTicker'])]
    """
    if market != "futures":
        return [(None, list(names))]
    public = [n for n in names if n.split("@", 1)[1].split("@")[0].startswith(USD_M_PUBLIC_STREAMS)]
    routes = [("public", public), ("market", [n for n in names if n not in public])]
    return [(route, group) for route, group in routes if group]


async def _open_sockets(config: LiveConfig, client, names: list[str]) -> list:
    from binance import BinanceSocketManager
    from binance.enums import FuturesType

    manager = BinanceSocketManager(client)
    if config.ws_url:
        manager.STREAM_URL = manager.FSTREAM_URL = manager.DSTREAM_URL = config.ws_url.rstrip("/") + "/"
    sockets = []
    for route, routed in socket_routes(config.market, names):
        if config.market == "spot":
            socket = manager.multiplex_socket(routed)
        else:
            kind = FuturesType.COIN_M if config.market == "coin" else FuturesType.USD_M
            socket = manager.futures_multiplex_socket(routed, futures_type=kind, category=route)
        sockets.append(_configured(socket))
    return sockets


def _configured(socket):
    # Reconnection is ours (backoff, watchdog, gap backfill). python-binance's own reconnect can race
    # with closing the socket (its read loop reconnects after being told to exit and never stops), so
    # it is switched off: a dropped connection ends the read loop and reports an error message.
    socket.MAX_RECONNECTS = 0
    # Its read loop waits this long for a frame before it notices it should exit.
    socket.TIMEOUT = 1.0
    # Its read loop queues messages for ours and, with the default 100, drops a message and ends the
    # connection once 100 wait: a burst (a reconnect's catch-up, a volatile minute of many symbols)
    # while this loop is busy a few milliseconds lost klines and book tickers for good (aggTrades come
    # back as gaps). The name changed across python-binance versions; both are set.
    socket.MAX_QUEUE_SIZE = socket.max_queue_size = WS_QUEUE_SIZE
    return socket


async def _read_into(stream, queue: asyncio.Queue) -> None:
    """One socket's messages into the queue the read loop takes from; an exception it raises goes there
    too, so that a failing socket of several ends the connection as a single one's did."""
    try:
        while True:
            await queue.put(await stream.recv())
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        await queue.put(exc)


async def _stop(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def run_live(config: LiveConfig, sink, stop: asyncio.Event | None = None, status=None) -> Counter:
    """Stream until ``stop`` is set (or ``max_runtime_s`` / ``max_ticks``); returns the handler's counts."""
    from binance import AsyncClient

    from connectors.binance import REST_SOURCE, kline_row_to_tick
    from connectors.binance_rest import RateLimiter, fetch_agg_trades, fetch_trades, iter_klines, make_client

    stop = stop or asyncio.Event()
    handler = LiveHandler(config.market)
    rest = RateLimiter(make_client(config.rest_url), log=log.warning)
    client = AsyncClient()
    names = stream_names(config.symbols, config.streams)
    started = time.monotonic()
    attempt = 0
    loop = asyncio.get_running_loop()

    def send(tick: dict[str, Any]) -> None:
        if config.symbol_suffix:
            tick = {**tick, "symbol": tick["symbol"] + config.symbol_suffix}
        sink.send(tick, tick["symbol"], tick["event_time_ms"])

    async def backfill(gap: Gap) -> None:
        """The gap's aggTrades (spot trades) over REST, sent before the tick that revealed it. A REST
        failure (Binance down, a refused request) loses neither that tick nor the connection: it is
        counted, logged and dead-lettered with the ids that stay missing."""
        try:
            items = await loop.run_in_executor(None, lambda: fetch_trades(
                rest, gap.symbol, gap.first_id, gap.last_id) if gap.kind == "TRADE" else fetch_agg_trades(
                rest, gap.symbol, gap.first_id, gap.last_id, config.market))
        except Exception as exc:
            handler.counts["backfill_failed"] += 1
            what = "trade" if gap.kind == "TRADE" else "aggTrade"
            reason = (f"{what} ids {gap.first_id}..{gap.last_id} of {gap.symbol} missing: REST backfill "
                      f"failed: {type(exc).__name__}: {exc}")
            log.warning("%s", reason)
            sink.reject("backfill_failed", reason, "binance-rest", 0, repr(gap).encode())
            return
        for tick in handler.backfilled(items, gap.symbol, gap.kind):
            send(tick)
        if len(items) < gap.last_id - gap.first_id + 1:
            handler.counts["backfill_short"] += 1
            log.warning("backfill of %s got %d of %d trades", gap, len(items), gap.last_id - gap.first_id + 1)

    async def backfill_klines(gap: KlineGap) -> None:
        """The closed bars a reconnect lost, over REST, sent before the kline that revealed them; a
        failure is counted, logged and dead-lettered with the bars that stay missing."""
        try:
            rows = await loop.run_in_executor(None, lambda: list(iter_klines(
                rest, gap.symbol, gap.interval, gap.first_open_ms, gap.end_open_ms, config.market)))
        except Exception as exc:
            handler.counts["backfill_failed"] += 1
            reason = (f"{gap.interval} klines of {gap.symbol} opening {gap.first_open_ms}..{gap.end_open_ms - 1} "
                      f"missing: REST backfill failed: {type(exc).__name__}: {exc}")
            log.warning("%s", reason)
            sink.reject("backfill_failed", reason, "binance-rest", 0, repr(gap).encode())
            return
        for row in rows:
            handler.counts["klines_backfilled"] += 1
            send(kline_row_to_tick(gap.symbol, row, source=REST_SOURCE))

    def finished() -> bool:
        if stop.is_set():
            return True
        if config.max_runtime_s is not None and time.monotonic() - started >= config.max_runtime_s:
            return True
        return config.max_ticks is not None and sink.produced >= config.max_ticks

    try:
        while not finished():
            if attempt:
                wait = min(config.backoff_max_s, 2 ** (attempt - 1))
                handler.counts["reconnects"] += 1
                log.warning("reconnecting in %.0f s (attempt %d)", wait, attempt)
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                except TimeoutError:
                    pass
                if finished():
                    break
            attempt += 1
            try:
                async with contextlib.AsyncExitStack() as stack:
                    queue: asyncio.Queue = asyncio.Queue(WS_QUEUE_SIZE)
                    for socket in await _open_sockets(config, client, names):
                        stream = await stack.enter_async_context(socket)
                        stack.push_async_callback(_stop, asyncio.create_task(_read_into(stream, queue)))
                    connected = last_progress = time.monotonic()
                    progressed_at_ms = handler.last_event_ms
                    heard: set[str] = set()
                    silence_checked = False
                    while not finished():
                        try:
                            message = await asyncio.wait_for(queue.get(), timeout=config.wake_s)
                        except TimeoutError:
                            message = None
                        if isinstance(message, Exception):
                            raise message
                        sink.waiting(0.0)  # a batching sink sends what has waited long enough
                        if isinstance(message, dict) and isinstance(message.get("stream"), str):
                            heard.add(message["stream"])
                        if not silence_checked and time.monotonic() - connected > config.stall_s:
                            silence_checked = True
                            silent = [n for n in names if n not in heard]
                            if silent:
                                handler.counts["silent_streams"] += len(silent)
                                log.warning("no message in %.0f s on %s (a pair that does not trade, or a stream "
                                            "that its endpoint does not serve)", config.stall_s, ", ".join(silent))
                        if message is not None:
                            out = handler.handle(message, int(time.time() * 1000))
                            if out.error:
                                log.warning("socket error: %s", out.error)
                                break
                            if out.rejected and out.rejected[0] == "exchange_error":
                                log.warning("%s", out.rejected[1])
                            if out.rejected:
                                code, reason = out.rejected
                                sink.reject(code, reason, "binance-ws", 0, repr(message).encode())
                            if out.gap:
                                await backfill(out.gap)
                            if out.kline_gap:
                                await backfill_klines(out.kline_gap)
                            for tick in out.ticks:
                                send(tick)
                            if out.ticks:
                                attempt = 1  # a working connection resets the backoff
                        if handler.last_event_ms > progressed_at_ms:
                            progressed_at_ms, last_progress = handler.last_event_ms, time.monotonic()
                        elif time.monotonic() - last_progress > config.stall_s:
                            handler.counts["stalls"] += 1
                            log.warning("no new event time for %.0f s: reconnecting", config.stall_s)
                            break
                        if status is not None:
                            status(handler.counts, sink)
            except Exception as exc:  # connection refused, handshake failure, closed read loop
                handler.counts["socket_errors"] += 1
                log.warning("websocket failed: %s: %s", type(exc).__name__, exc)
    finally:
        await client.close_connection()
        sink.flush()
    return handler.counts
