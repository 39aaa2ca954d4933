"""Binance REST through python-binance: history downloads in the public dump format, aggTrade backfill.

* :func:`download_klines` / :func:`download_agg_trades` page through ``/klines`` and ``/aggTrades``
  (1,000 rows a request) and write the same CSV layout as data.binance.vision dumps, so ``livelearn
  replay`` reads the result like a downloaded dump (spot files without header, futures with one), each
  market's files in its own folder under ``out_dir`` (:data:`MARKET_FOLDERS`).
* :func:`fetch_agg_trades` returns the aggregate trades of an id range (gap backfill of the live feed).
* Rate limits: after every request the used weight (``x-mbx-used-weight-1m``) is compared with
  ``weight_budget``; above it the client sleeps until the next minute starts. HTTP 429/418 answers
  wait ``Retry-After`` seconds (or a backoff) and retry, up to ``max_retries`` times.

Markets (``market``): ``spot`` (``/api/v3``), ``futures`` (USD-M, ``/fapi/v1``) and ``coin`` (COIN-M,
``/dapi/v1``: ``BTCUSD_PERP``, ``ETHUSD_240628``). Futures files carry the header of Binance's futures
dumps; a COIN-M kline file's eighth and eleventh columns are ``base_volume`` and
``taker_buy_base_volume`` (its ``volume`` counts contracts), which ``livelearn replay`` reads as the
traded volume, as it does in a COIN-M dump. COIN-M aggregate trades keep their quantity in contracts, as
Binance's own dumps do.

``rest_url`` (setting ``LIVELEARN_BINANCE_REST_URL``) replaces ``https://api.binance.com``,
``https://fapi.binance.com`` and ``https://dapi.binance.com``: the spot API lives under ``<url>/api``,
USD-M futures under ``<url>/fapi``, COIN-M under ``<url>/dapi``. Tests point it at a local server that
answers with real rows.
"""

from __future__ import annotations

import csv
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.status_line import StatusLine

PAGE = 1000
KLINE_HEADER = ["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
                "taker_buy_volume", "taker_buy_quote_volume", "ignore"]
COIN_KLINE_HEADER = ["open_time", "open", "high", "low", "close", "volume", "close_time", "base_volume", "count",
                     "taker_buy_volume", "taker_buy_base_volume", "ignore"]
# python-binance's methods for klines and aggregate trades of each market
MARKETS = {"spot": ("get_klines", "get_aggregate_trades"),
           "futures": ("futures_klines", "futures_aggregate_trades"),
           "coin": ("futures_coin_klines", "futures_coin_aggregate_trades")}
# The folder of each market's files under ``--out``, as data.binance.vision names them (spot/, futures/um/,
# futures/cm/): Binance names a USD-M perpetual like its spot pair, so in one folder a futures day of
# BTCUSDT overwrote the spot day; a market folder also tells replay the two apart (connectors.recorded).
MARKET_FOLDERS = {"spot": "spot", "futures": "um", "coin": "cm"}
AGG_TRADE_HEADER = ["agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time",
                    "is_buyer_maker"]
INTERVAL_MS = {"1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
               "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
               "12h": 43_200_000, "1d": 86_400_000}


class HistoryError(RuntimeError):
    """A download that cannot go on (bad arguments, repeated refusals)."""


_SYMBOL = re.compile(r"[A-Z0-9_]{2,30}")
_INTERVAL = re.compile(r"[1-9][0-9]{0,2}[smhdwM]")


def check_name_parts(symbol: str, interval: str = "1m") -> None:
    """Symbol and interval go into REST queries and output file names: only what Binance uses
    (upper-case letters, digits, '_'; intervals like 1m, 4h, 1d) is accepted, so that an argument
    cannot point a file name outside the output folder.

    >>> check_name_parts("BTCUSDT", "1m")
    >>> check_name_parts("../../etc/passwd")
    Traceback (most recent call last):
    ...
    connectors.binance_rest.HistoryError: '../../etc/passwd' is not a Binance symbol (upper-case letters, digits and _)
    """
    if not _SYMBOL.fullmatch(symbol):
        raise HistoryError(f"{symbol!r} is not a Binance symbol (upper-case letters, digits and _)")
    if not _INTERVAL.fullmatch(interval):
        raise HistoryError(f"{interval!r} is not a kline interval (e.g. 1s, 1m, 15m, 4h, 1d, 1w, 1M)")


def check_market(symbol: str, market: str) -> None:
    """A COIN-M contract only on the COIN-M market, and only COIN-M contracts there: Binance would answer
    "invalid symbol", after the request.

    >>> check_market("BTCUSD_PERP", "coin")
    >>> check_market("BTCUSD_PERP", "futures")
    Traceback (most recent call last):
    ...
    connectors.binance_rest.HistoryError: BTCUSD_PERP is a COIN-M contract: use --market coin
    """
    from connectors.binance import coin_margined

    _known(market)
    if coin_margined(symbol) and market != "coin":
        raise HistoryError(f"{symbol} is a COIN-M contract: use --market coin")
    if market == "coin" and not coin_margined(symbol):
        raise HistoryError(f"{symbol} is not a COIN-M contract (e.g. BTCUSD_PERP, ETHUSD_240628)")


def parse_day(text: str) -> int:
    """``YYYY-MM-DD`` (UTC midnight) or ``YYYY-MM-DDTHH:MM`` -> epoch ms."""
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return int(datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp() * 1000)
        except ValueError:
            continue
    raise HistoryError(f"not a date: {text!r} (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)")


def make_client(rest_url: str = ""):
    """A python-binance client without the start-up ping (no key needed for market data)."""
    from binance.client import Client

    client = Client(ping=False)
    if rest_url:
        base = rest_url.rstrip("/")
        client.API_URL = base + "/api"
        client.FUTURES_URL = base + "/fapi"
        client.FUTURES_COIN_URL = base + "/dapi"
    return client


class RateLimiter:
    """Keeps a client under Binance's per-minute request weight, and retries refused requests."""

    def __init__(self, client, weight_budget: int = 1000, max_retries: int = 5, sleep: Callable = time.sleep,
                 log: Callable[[str], None] | None = None):
        self.client, self.budget, self.max_retries, self.sleep = client, weight_budget, max_retries, sleep
        self.log = log or (lambda text: print(text, file=sys.stderr))
        self.requests = self.waits = self.retries = 0

    def call(self, method: Callable, **params) -> Any:
        from binance.exceptions import BinanceAPIException

        for attempt in range(self.max_retries + 1):
            try:
                answer = method(**params)
            except BinanceAPIException as exc:
                if exc.status_code not in (418, 429) or attempt == self.max_retries:
                    raise
                headers = getattr(exc.response, "headers", {}) or {}
                wait = float(headers.get("Retry-After") or 2 ** attempt)
                self.retries += 1
                self.log(f"binance: HTTP {exc.status_code} (rate limit); waiting {wait:.0f} s")
                self.sleep(wait)
                continue
            self.requests += 1
            self._respect_weight()
            return answer
        raise HistoryError("unreachable")

    def _respect_weight(self) -> None:
        response = getattr(self.client, "response", None)
        used = response.headers.get("x-mbx-used-weight-1m") if response is not None else None
        if used is not None and int(used) >= self.budget:
            wait = 60.0 - (time.time() % 60.0) + 0.5
            self.waits += 1
            self.log(f"binance: used weight {used} >= budget {self.budget}; waiting {wait:.0f} s for the next minute")
            self.sleep(wait)


def _known(market: str) -> tuple[str, str]:
    """The market's python-binance method names (klines, aggregate trades)."""
    if market not in MARKETS:
        raise HistoryError(f"unknown market {market!r}; one of {', '.join(MARKETS)}")
    return MARKETS[market]


def _method(limiter: RateLimiter, market: str, which: int) -> Callable:
    return getattr(limiter.client, _known(market)[which])


def iter_klines(limiter: RateLimiter, symbol: str, interval: str, start_ms: int, end_ms: int,
                market: str = "spot") -> Iterator[list]:
    """Klines whose open time is in ``[start_ms, end_ms)``, oldest first, page by page."""
    if interval not in INTERVAL_MS:
        raise HistoryError(f"unknown interval {interval!r}; one of {', '.join(INTERVAL_MS)}")
    method = _method(limiter, market, 0)
    cursor = start_ms
    while cursor < end_ms:
        page = limiter.call(method, symbol=symbol, interval=interval, startTime=cursor, endTime=end_ms - 1,
                            limit=PAGE)
        if not page:
            return
        for row in page:
            if row[0] >= end_ms:
                return
            yield row
        cursor = int(page[-1][0]) + INTERVAL_MS[interval]
        if len(page) < PAGE:
            return


def iter_agg_trades(limiter: RateLimiter, symbol: str, start_ms: int, end_ms: int,
                    market: str = "spot") -> Iterator[dict]:
    """Aggregate trades with ``start_ms <= T < end_ms``: the first page by time, then by id."""
    method = _method(limiter, market, 1)
    # Binance limits a time-window query to one hour; find the first id by time, then walk ids.
    page = limiter.call(method, symbol=symbol, startTime=start_ms, endTime=min(end_ms - 1, start_ms + 3_599_999),
                        limit=PAGE)
    while page:
        for item in page:
            if item["T"] >= end_ms:
                return
            yield item
        page = limiter.call(method, symbol=symbol, fromId=int(page[-1]["a"]) + 1, limit=PAGE)


def _by_id(limiter: RateLimiter, method, symbol: str, first_id: int, last_id: int, key: str) -> list[dict]:
    """Entries ``first_id..last_id`` inclusive of an endpoint paged by ``fromId`` (ids under ``key``)."""
    out: list[dict] = []
    cursor = first_id
    while cursor <= last_id:
        page = limiter.call(method, symbol=symbol, fromId=cursor, limit=min(PAGE, last_id - cursor + 1))
        if not page:
            break
        out += [item for item in page if item[key] <= last_id]
        cursor = int(page[-1][key]) + 1
    return out


def fetch_agg_trades(limiter: RateLimiter, symbol: str, first_id: int, last_id: int,
                     market: str = "spot") -> list[dict]:
    """Aggregate trades ``first_id..last_id`` inclusive (gap backfill)."""
    return _by_id(limiter, _method(limiter, market, 1), symbol, first_id, last_id, "a")


def fetch_trades(limiter: RateLimiter, symbol: str, first_id: int, last_id: int) -> list[dict]:
    """Spot trades ``first_id..last_id`` inclusive (gap backfill): ``/api/v3/historicalTrades``, which
    needs no API key since 2023-07-11 (Binance's spot changelog). Whether the futures' old-trades
    endpoints still want one was not found here, so futures trade-id gaps stay counted, not fetched."""
    return _by_id(limiter, limiter.client.get_historical_trades, symbol, first_id, last_id, "id")


def _write(path: Path, header: list[str] | None, rows: Iterator[list], progress: bool) -> int:
    made = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    count, line = 0, StatusLine(enabled=progress)
    try:
        with partial.open("w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            if header:
                writer.writerow(header)
            for row in rows:
                writer.writerow(row)
                count += 1
                if count % 10_000 == 0 and line.due():
                    line.write(f"{path.name}: {count:,} rows")
    except BaseException:
        partial.unlink(missing_ok=True)  # a failed download leaves nothing behind (a rerun starts afresh)
        for folder in made:  # innermost first
            if not any(folder.iterdir()):
                folder.rmdir()
        raise
    partial.replace(path)  # a file that exists is complete
    line.close(f"{path.name}: {count:,} rows")
    return count


def _kline_row(row: list) -> list:
    return [str(value).lower() if isinstance(value, bool) else value for value in row[:12]]


def _agg_row(item: dict) -> list:
    return [item["a"], item["p"], item["q"], item["f"], item["l"], item["T"], "true" if item["m"] else "false"]


def download_klines(limiter: RateLimiter, symbol: str, interval: str, start_ms: int, end_ms: int, out_dir: Path,
                    market: str = "spot", progress: bool = True) -> tuple[Path, int]:
    check_name_parts(symbol, interval)
    check_market(symbol, market)
    day = datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y-%m-%d")
    path = out_dir / MARKET_FOLDERS[market] / f"{symbol}-{interval}-{day}.csv"
    rows = (_kline_row(row) for row in iter_klines(limiter, symbol, interval, start_ms, end_ms, market))
    header = {"spot": None, "futures": KLINE_HEADER, "coin": COIN_KLINE_HEADER}[market]
    return path, _write(path, header, rows, progress)


def download_agg_trades(limiter: RateLimiter, symbol: str, start_ms: int, end_ms: int, out_dir: Path,
                        market: str = "spot", progress: bool = True) -> tuple[Path, int]:
    check_name_parts(symbol)
    check_market(symbol, market)
    day = datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y-%m-%d")
    path = out_dir / MARKET_FOLDERS[market] / f"{symbol}-aggTrades-{day}.csv"
    rows = (_agg_row(item) for item in iter_agg_trades(limiter, symbol, start_ms, end_ms, market))
    return path, _write(path, AGG_TRADE_HEADER if market != "spot" else None, rows, progress)
