"""Recorded market data read as ticks: Binance dumps (.zip, .csv or .csv.gz) and raw websocket captures.

Formats, recognised per file:

* klines (12 columns; spot dumps without header, USD-M futures with a header; ms or µs times) — the
  symbol comes from the file name (``BTCUSDT-1m-2020-01-01.zip``);
* aggTrades (``agg_trade_id, price, quantity, first_trade_id, last_trade_id, transact_time,
  is_buyer_maker``) and trades (``id, price, qty, quote_qty, time, is_buyer_maker, is_best_match``),
  recognised by ``aggTrades`` / ``trades`` in the file name; futures bookTicker dumps (``update_id,
  best_bid_price, best_bid_qty, best_ask_price, best_ask_qty, transaction_time, event_time``, with a
  header), recognised by ``bookTicker`` in the name;
* websocket captures: one JSON message a line, optionally prefixed by a receive time (``<time>
  <json>`` as hftbacktest writes it, ``<time>: <json>`` as cryptofeed does) in seconds, ms, µs or ns,
  told apart by the number of integer digits (:func:`connectors.ohlcv.epoch_ms`), or in ISO 8601 as a
  recorder that logs its lines writes it; gzip is read
  transparently, and a capture whose gzip stream ends early (its recorder was killed) is read up to
  its last complete line, with one rejected ``truncated_file`` row saying so (counted and
  dead-lettered as any rejected row);
* generic OHLCV CSV with a header (``connectors.ohlcv``: ISO or epoch times), recognised by its header.

Text is UTF-8; a leading byte order mark (spreadsheet exports write one) is dropped, not read as part
of the first cell.

``--format`` names the format instead of recognising it, and ``--symbol`` gives the symbol of files
whose name does not start with it (both apply to every file of the run).

Each file's items are in stable event-time order: a Binance dump already in that order and every
websocket capture are streamed (:class:`FileItems`: a day of trades or of a symbol's capture need not
fit in memory), any other file is read whole and sorted; files are then merged by
``(event time, file position on the command line, line number)``, so the same inputs always give the
same sequence and therefore byte-identical topic contents. A damaged zip or gzip file raises
:class:`DamagedFile` (a ``ValueError``) naming it. A folder stands for the data files under it
(:func:`input_files`), so the tree ``livelearn history`` writes replays as one argument.
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import io
import json
import re
import sys
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.binance import (
    ExchangeClock,
    PayloadError,
    Skipped,
    agg_trade_row_to_tick,
    book_ticker_row_to_tick,
    kline_row_to_tick,
    normalise_ws,
    to_ms,
    trade_row_to_tick,
)
from connectors.ohlcv import (
    column_name,
    is_ohlcv_header,
    ohlcv_columns,
    ohlcv_row_to_tick,
    preamble_lines,
    row_symbol,
    time_ms,
)
from connectors.text_lines import DamagedFile, GzipLines
from schemas.keys import QUOTES
from streams.ticks import InvalidTick, check_tick

FORMATS = ("auto", "klines", "aggTrades", "trades", "bookTicker", "ws", "ohlcv")
# How a websocket capture is read (every other file is read in event time). ``time``: its ticks sorted by
# event time. ``received``: in the order its lines were received, each at its receive time in Binance's
# clock, as `live` published them. They differ where a feed's event times are not the order it arrives
# in: a spot book ticker carries no time and is stamped when received, so sorted by event time a trade,
# stamped at its match, comes before the book ticker that shows its own impact, although the two
# mostly arrived the other way round. Figures meant to say what a worker reading `live` would have got
# from a capture need ``received`` (README, below the capture table).
ORDERS = ("time", "received")

# A capture line's receive time: an epoch number (its unit told by its digits) or an ISO 8601 time, as a
# recorder that logs its lines writes it (``2024-08-08T23:54:00.123456Z``, ``2024-08-08 23:54:00,123``;
# UTC without an offset), then an optional colon, then the message.
_WS_PREFIX = re.compile(r"^\s*(\d+(?:\.\d+)?|\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
                        r":?\s+(?=[\[{])")


@dataclass(order=True)
class ReplayItem:
    event_time_ms: int
    file_index: int
    line: int
    tick: dict[str, Any] | None = field(compare=False, default=None)
    origin: str = field(compare=False, default="")
    raw: bytes = field(compare=False, default=b"")
    reason_code: str = field(compare=False, default="")
    reason: str = field(compare=False, default="")


# Files a folder of data also holds that are not data: dump checksums, a download still being
# written (``livelearn history`` renames it when complete), documentation and provenance notes.
NOT_DATA_SUFFIXES = frozenset({".checksum", ".partial", ".md", ".rst", ".html", ".pdf", ".png", ".jpg", ".sha256"})


def input_files(paths: Iterable[Path | str]) -> list[Path]:
    """The files named, with each folder replaced by the data files anywhere under it, in path order
    (so the same folder always gives the same order, hence the same replay).

    Hidden names and :data:`NOT_DATA_SUFFIXES` are left out of folders (a file named on its own is
    always taken). Raises ``FileNotFoundError`` naming every missing path, and ``ValueError`` for a
    folder with no data file in it.

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> root = Path(folder.name)
    >>> for name in ("b/BTCUSDT-1m-2024-01-02.zip", "a/BTCUSDT-1m-2024-01-01.zip", "a/x.zip.CHECKSUM", ".hidden"):
    ...     (root / name).parent.mkdir(parents=True, exist_ok=True)
    ...     _ = (root / name).write_bytes(b"")
    >>> [str(p.relative_to(root)) for p in input_files([root])]
    ['a/BTCUSDT-1m-2024-01-01.zip', 'b/BTCUSDT-1m-2024-01-02.zip']
    >>> folder.cleanup()
    """
    named = [Path(p) for p in paths]
    missing = [str(p) for p in named if not p.exists()]
    if missing:
        raise FileNotFoundError(f"no such file: {', '.join(missing)}")
    files: list[Path] = []
    for path in named:
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(
            p for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() not in NOT_DATA_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not found:
            raise ValueError(f"{path}: a folder with no data file in it")
        files += found
    return files


_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError)


def _only_member(path: Path, archive: zipfile.ZipFile) -> str:
    """A Binance dump's zip holds one file; anything else is not one of ours."""
    members = [n for n in archive.namelist() if not n.endswith("/")]
    if len(members) != 1:
        raise ValueError(f"{path}: expected one file inside the zip, found {len(members)}")
    return members[0]


def _damaged_zip(path: Path, exc: Exception) -> DamagedFile:
    return DamagedFile(f"{path}: not a readable zip archive ({exc}); a download cut short? Fetch it again")


def _not_a_row(number: int, row: list[str]) -> bool:
    """A blank line, or a first line that is a header (its first cell is not a number)."""
    return not row or (number == 1 and not row[0].strip().lstrip("-").isdigit())


def _open_text_lines(path: Path) -> tuple[list[str], bool]:
    """The file's lines, and whether it was cut short (a gzip stream that ends early: its readable
    lines are kept, the last, incomplete one dropped)."""
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                data = archive.read(_only_member(path, archive))
        except _ZIP_ERRORS as exc:
            raise _damaged_zip(path, exc) from None
        return data.decode("utf-8-sig", errors="replace").splitlines(), False
    if _gzipped(path):
        text = GzipLines(path)
        lines = list(text)
        return lines, text.truncated
    return path.read_bytes().decode("utf-8-sig", errors="replace").splitlines(), False


def detect_format(path: Path, first_line: str) -> str:
    name = path.name.lower()
    stripped = first_line.lstrip()
    if stripped.startswith(("{", "[")) or _WS_PREFIX.match(first_line) or stripped.startswith("wss://"):
        return "ws"
    if "aggtrades" in name:
        return "aggTrades"
    if "bookticker" in name:
        return "bookTicker"
    if "trades" in name:
        return "trades"
    header = next(csv.reader([first_line]), [])
    if is_ohlcv_header(header) and not _binance_kline_header(header):
        return "ohlcv"
    return "klines"


def _binance_kline_header(header: list[str]) -> bool:
    """Binance futures kline dumps carry a header: ``open_time, open, high, low, close, volume,
    close_time`` and then ``quote_volume`` (USD-M) or ``base_volume`` (COIN-M). They are klines, stamped
    with their close time; read as generic OHLCV they were stamped with ``open_time``, a minute before
    the bar was known (and a COIN-M dump's volumes were contracts).

    >>> _binance_kline_header("open_time,open,high,low,close,volume,close_time,base_volume,count,"
    ...                       "taker_buy_volume,taker_buy_base_volume,ignore".split(","))
    True
    >>> _binance_kline_header(["timestamp", "open", "high", "low", "close", "volume"])
    False

    python-binance's column names, as notebooks export its klines, are the same columns:

    >>> _binance_kline_header("Open time,Open,High,Low,Close,Volume,Close time,Quote asset volume,Number of "
    ...                       "trades,Taker buy base asset volume,Taker buy quote asset volume,Ignore".split(","))
    True
    """
    names = [column_name(cell) for cell in header]
    return len(names) >= 11 and names[0] == "open_time" and names[6] == "close_time"


_CONTRACT_SUFFIX = re.compile(r"PERP|\d{6}")  # BTCUSD_PERP, BTCUSDT_250328 (Binance's delivery dates)
# Quote assets a download script may write apart from the base (BTC_USDT, as ccxt names pairs): the
# dollar quotes the basis groups know, and the crypto and fiat ones Binance lists.
_QUOTES_APART = frozenset(QUOTES) | {"BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY", "GBP"}


def symbol_from_name(path: Path) -> str:
    """The pair a file's name starts with, up to its first ``-`` or ``.``: data.binance.vision's names
    (``BTCUSDT-1m-2020-01-01.zip``, ``BTCUSD_PERP-1m-...``), and those of download scripts that join the
    rest with ``_`` (``BTCUSDT_1m_20230301_20230321.csv``, ``BTC_USDT_1m.csv``): only a contract suffix
    or a quote asset is kept after an ``_``.

    >>> [symbol_from_name(Path(n)) for n in ("BTCUSDT-1m-2020-01-01.zip", "BTCUSD_PERP-1m-2023-03.zip",
    ...     "ETHUSDT_250328-aggTrades-2025-01-02.zip", "BTCUSDT_1m_20230301_20230321.csv", "btc_usdt_1m.csv")]
    ['BTCUSDT', 'BTCUSD_PERP', 'ETHUSDT_250328', 'BTCUSDT', 'BTCUSDT']
    """
    parts = path.name.split("-")[0].split(".")[0].upper().split("_")
    if len(parts) > 1 and _CONTRACT_SUFFIX.fullmatch(parts[1]):
        return f"{parts[0]}_{parts[1]}"
    if len(parts) > 1 and parts[1] in _QUOTES_APART:
        return parts[0] + parts[1]
    return parts[0]


# Folders that say which market the dumps under them trade on: data.binance.vision's spot/, futures/um/
# and futures/cm/ (data/binance/klines/spot and .../um here). One name in two of them is two pairs.
MARKET_FOLDERS = ("spot", "um", "cm", "futures")


def market_folder(path: Path | str) -> str | None:
    """The nearest folder on ``path`` named as a market (:data:`MARKET_FOLDERS`), or None.

    >>> market_folder("data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2023-03-01.zip")
    'um'
    >>> market_folder("downloads/BTCUSDT-1m-2023-03-01.zip") is None
    True
    """
    return next((part for part in reversed(Path(path).parent.parts) if part in MARKET_FOLDERS), None)


# data.binance.vision's futures kline dumps of prices no trade was made at. Their files are named as the
# pair's traded klines are (futures/um/daily/markPriceKlines/BTCUSDT/1m/BTCUSDT-1m-2024-02-29.zip) and
# hold the same twelve columns with volumes 0, so only the folder tells them apart; read with the
# trades, the index price's minutes came first and the traded klines of those minutes were refused.
DERIVED_PRICE_KINDS = {"markpriceklines": "mark price", "indexpriceklines": "index price",
                       "premiumindexklines": "premium index"}


def derived_prices(path: Path | str) -> str | None:
    """What a dump of data.binance.vision's mark-price, index-price or premium-index klines holds (told
    by its folder, or by its name where a script kept the kind in it), else None.

    >>> derived_prices("data/futures/um/daily/indexPriceKlines/BTCUSDT/1m/BTCUSDT-1m-2024-02-29.zip")
    "BTCUSDT's index price"
    >>> derived_prices("dl/BTCUSDT-premiumIndexKlines-1m-2024-02.zip")
    "BTCUSDT's premium index"
    >>> derived_prices("data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-02-29.zip") is None
    True
    """
    path = Path(path)
    for part in (*path.parent.parts, *path.name.split("-")):
        kind = DERIVED_PRICE_KINDS.get(part.lower())
        if kind:
            return f"{symbol_from_name(path)}'s {kind}"
    return None


# data.binance.vision's other dumps beside a pair's klines and trades, none of which holds a trade or a
# quote: USD-M futures' open interest and long/short ratios every five minutes (metrics), cumulative
# depth in bands of distance from the price (bookDepth: no price level, no bid or ask), funding rates,
# and options' volatility index and hourly summaries. A downloaded tree holds them under their kind's
# folder, each named SYMBOL-kind-date; a renamed one is told by its header.
NOT_TICK_KINDS = {"metrics": "open interest and long/short ratios", "bookdepth": "order-book depth in bands",
                  "fundingrate": "funding rates", "bvolindex": "volatility index", "eohsummary": "options summaries"}
_NOT_TICK_HEADERS = {"create_time,symbol,sum_open_interest": "metrics", "timestamp,percentage,depth,notional": "bookdepth",
                     "calc_time,funding_interval_hours,last_funding_rate": "fundingrate"}


def not_ticks(path: Path | str) -> str | None:
    """What a dump of data.binance.vision's that holds no trade or quote holds (told by its folder, its
    name or its header), else None: the line that leaves such a file out says what it is.

    >>> not_ticks("data/futures/um/daily/metrics/BTCUSDT/BTCUSDT-metrics-2024-01-01.zip")
    "BTCUSDT's open interest and long/short ratios (data.binance.vision's metrics)"
    >>> not_ticks("data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-02-29.zip") is None
    True
    """
    path = Path(path)
    kind = next((part.lower() for part in (*path.parent.parts, *path.name.split("-"))
                 if part.lower() in NOT_TICK_KINDS), None)
    if kind is None and path.is_file():
        try:
            head = _first_lines(path, _gzipped(path), 1)
        except (OSError, ValueError, DamagedFile):
            head = []
        first = head[0].strip().lower() if head else ""
        kind = next((k for header, k in _NOT_TICK_HEADERS.items() if first.startswith(header)), None)
    if kind is None:
        return None
    name = {k.lower(): k for k in ("metrics", "bookDepth", "fundingRate", "BVOLIndex", "EOHSummary")}[kind]
    owner = f"{symbol_from_name(path)}'s" if "-" in path.name else "a pair's"  # a renamed file's name is no pair
    return f"{owner} {NOT_TICK_KINDS[kind]} (data.binance.vision's {name})"


NO_PAIR = "its name gives no pair, so its rows name none"


def no_ticks_reason(path: Path | str, refusals: Counter[str], rows: int) -> str:
    """Why a file that :func:`holds_ticks` found no tick in is left out, from the ``refusals`` it
    counted: what it holds where that is known, :data:`NO_PAIR` where its rows were refused for want of
    a pair, else that its first ``rows`` rows held no tick."""
    if kind := not_ticks(path):
        return f"{kind}, no trade or quote"
    if skipped := {code[5:]: n for code, n in refusals.items() if code.startswith("skip:")}:
        return f"Binance messages but no tick in the whole file ({', '.join(f'{what} {n:,}' for what, n in skipped.items())})"
    if refusals["invalid_symbol"]:
        return NO_PAIR
    return f"no tick in its first {rows:,} rows (not market data?)"


def two_markets(paths: Iterable[Path | str], symbol: str | None = None) -> str | None:
    """Why ``paths`` cannot be replayed into one topic when two of them hold one pair name of two
    markets (data.binance.vision's spot and USD-M futures dumps both name BTCUSDT; the market is the
    folder, :func:`market_folder`), else None. A worker would meet them as one series; its tick gate
    refuses the second market's ticks (``conflicting_tick``), and this says so before anything is sent.

    >>> print(two_markets(["d/spot/BTCUSDT-1m-2023-03-01.zip", "d/um/BTCUSDT-1m-2023-03-02.zip"]).split(":")[0])
    d/spot/BTCUSDT-1m-2023-03-01.zip and d/um/BTCUSDT-1m-2023-03-02.zip hold BTCUSDT of two markets (spot, um)
    >>> two_markets(["d/spot/BTCUSDT-1m-2023-03-01.zip", "d/um/ETHUSDT-1m-2023-03-01.zip"]) is None
    True
    """
    seen: dict[str, tuple[str, Path]] = {}
    for path in map(Path, paths):
        market = market_folder(path)
        if market is None:
            continue
        name = (symbol or symbol_from_name(path)).upper()
        first = seen.setdefault(name, (market, path))
        if first[0] != market:
            return (f"{first[1]} and {path} hold {name} of two markets ({first[0]}, {market}): in one ticks topic "
                    "they would be one series. Replay each market on its own, naming one apart with --symbol "
                    f"(for example {name}_PERP for a perpetual; the _PERP suffix keeps it in its base asset's "
                    "basis group)")
    return None


def read_file(path: Path | str, file_index: int = 0, fmt: str = "auto", symbol: str | None = None) -> list[ReplayItem]:
    """Every line of one file as ReplayItems (ticks, rejects and skips), stably sorted by event time.
    ``fmt`` (one of :data:`FORMATS`) and ``symbol`` override what the file's content and name say."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    lines, truncated = _open_text_lines(path)
    items = _read_lines(path, lines, file_index, fmt, symbol) if lines else []
    if truncated:
        items.append(_truncated(path, file_index, items[-1].event_time_ms if items else 0, len(lines)))
    return items


def _truncated(path: Path, file_index: int, latest_ms: int, lines: int) -> ReplayItem:
    """The mark of a gzip file cut short (a capture or a download): counted and dead-lettered like any
    rejected row, after the file's last readable one (at the latest time read)."""
    return ReplayItem(latest_ms, file_index, lines + 1, None, str(path), b"", "truncated_file",
                      f"the gzip data ends early, after line {lines} (a capture or download cut short?); "
                      "the lines before it were read")


def _read_lines(path: Path, lines: list[str], file_index: int, fmt: str, symbol: str | None) -> list[ReplayItem]:
    skip = preamble_lines(lines[:3]) if fmt in ("auto", "ohlcv") else 0  # a note before an export's header
    if fmt == "auto":
        fmt = detect_format(path, lines[skip])
    origin = str(path)
    items: list[ReplayItem] = []
    if fmt == "ws":
        items += _ws_lines(lines, file_index, origin)
    else:
        rows = csv.reader(io.StringIO("\n".join(lines[skip:])))
        items += _csv_items(rows, origin, file_index, (symbol or symbol_from_name(path)).upper(), fmt, skip,
                            named=symbol is not None)
    items.sort(key=lambda item: item.event_time_ms)
    return items


def _csv_items(rows: Iterator[list[str]], origin: str, file_index: int, symbol: str, fmt: str,
               skipped: int = 0, named: bool = True) -> Iterator[ReplayItem]:
    """The rows of a CSV format as ReplayItems, in file order, numbered as the file's lines (``skipped``
    lines before ``rows``); a rejected row takes the time of the row before it. ``symbol`` comes from
    ``--symbol`` (``named``) or the file's name; an OHLCV export's ``symbol`` column, where it has one,
    names its rows unless ``--symbol`` does (the data say it; a file's name may not)."""
    convert: Callable[[str, list[str]], dict]
    if fmt == "ohlcv":
        columns = ohlcv_columns(next(rows, []))
        by_row = "symbol" in columns and not named

        def convert(name: str, row: list[str]) -> dict:
            return ohlcv_row_to_tick((row_symbol(row, columns) or name) if by_row else name, row, columns)
    else:
        convert = {"klines": kline_row_to_tick, "aggTrades": agg_trade_row_to_tick, "trades": trade_row_to_tick,
                   "bookTicker": book_ticker_row_to_tick}[fmt]
    last_time = 0
    for number, row in enumerate(rows, (2 if fmt == "ohlcv" else 1) + skipped):
        if _not_a_row(number - skipped, row):
            continue
        raw = ",".join(row).encode()
        try:
            tick = convert(symbol, row)
            check_tick(tick)
        except (PayloadError, InvalidTick) as exc:
            yield ReplayItem(last_time, file_index, number, None, origin, raw, exc.code, str(exc))
            continue
        last_time = tick["event_time_ms"]
        yield ReplayItem(last_time, file_index, number, tick, origin, raw)


def _ws_lines(lines: Iterable[str], file_index: int, origin: str, received: bool = False) -> Iterator[ReplayItem]:
    """A capture's items in file order; a line that is no tick takes the time of the item before it.
    ``received``: each item's time (what files are merged and paced by) is its receive time in Binance's
    clock, and book tickers stamped when received are moved to that clock, as `live` does it
    (:class:`connectors.binance.ExchangeClock`, fed the lines in the order received)."""
    last_time = 0
    clock = ExchangeClock() if received else None
    for number, text in enumerate(lines, 1):
        item = _ws_line(text, number, file_index, origin, last_time, clock)
        if item is not None:
            last_time = item.event_time_ms
            yield item


def _ws_line(text: str, number: int, file_index: int, origin: str, last_time: int,
             clock: ExchangeClock | None = None) -> ReplayItem | None:
    if not text.strip() or text.startswith("wss://"):
        return None
    receive_ms: int | None = None
    body = text
    match = _WS_PREFIX.match(text)
    if match:
        receive_ms = time_ms(match.group(1))
        body = text[match.end():]
    raw = text.encode()
    try:
        message = json.loads(body)
        if clock is not None:
            clock.observe_message(message, receive_ms)
        tick = normalise_ws(message, receive_ms)
        if clock is not None:
            clock.correct(tick, message)
        check_tick(tick)
    except json.JSONDecodeError as exc:
        return ReplayItem(last_time, file_index, number, None, origin, raw, "malformed_json", f"malformed_json: {exc}")
    except Skipped as skip:
        return ReplayItem(last_time, file_index, number, None, origin, raw, "skip", skip.what)
    except (PayloadError, InvalidTick) as exc:
        return ReplayItem(last_time, file_index, number, None, origin, raw, exc.code, str(exc))
    if clock is None:
        return ReplayItem(tick["event_time_ms"], file_index, number, tick, origin, raw)
    received = clock.stamp(receive_ms) if receive_ms is not None else tick["event_time_ms"]
    return ReplayItem(max(last_time, received), file_index, number, tick, origin, raw)


GZIP_MAGIC = b"\x1f\x8b"
# The dumps a day of trades comes in (millions of rows): read as a stream when already in time order.
# Their time column (what the row's tick takes as its event time).
_STREAMED = {"klines": 6, "aggTrades": 5, "trades": 4, "bookTicker": 5}


@dataclass
class FileItems:
    """One file's items in event-time order, as :func:`read_file` gives them, and how many there are
    (known before they are read, for progress). A Binance dump (klines, aggTrades, trades; zip, gzip or
    plain CSV) whose rows are already in time order, as data.binance.vision and ``livelearn history``
    write them, is streamed: read once to check the order and count, then row by row, so a day of
    trades does not have to fit in memory (a million rows held at once took 1.4 GB). A websocket
    capture (gzip or plain) is streamed too, its events held back only as long as the largest lag of
    an event's time behind the latest before it (:func:`in_time_order`; two hours of the BTCUSDT
    capture repeated, 825,000 items: 1.25 GB -> 20 MB resident). Any other file, or a dump out of
    order, is read whole and stably sorted. Either way the items are the same."""

    path: Path
    count: int
    _items: list[ReplayItem] | None = None
    _stream: Callable[[], Iterator[ReplayItem]] | None = None

    def __iter__(self) -> Iterator[ReplayItem]:
        return iter(self._items) if self._items is not None else self._stream()  # type: ignore[misc]


def open_file(path: Path | str, file_index: int = 0, fmt: str = "auto", symbol: str | None = None,
              order: str = "time") -> FileItems:
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; choose from {', '.join(ORDERS)}")
    gzipped = _gzipped(path)
    head = _first_lines(path, gzipped)
    skip = preamble_lines(head) if fmt in ("auto", "ohlcv") else 0
    first = head[skip] if head else ""
    chosen = detect_format(path, first) if fmt == "auto" and first else fmt
    if first and chosen == "ws":
        return _received_capture(path, file_index) if order == "received" else _streamed_capture(path, file_index)
    if first and chosen in _STREAMED and not skip:
        count = _count_if_sorted(path, _STREAMED[chosen])
        if count is not None:
            name = (symbol or symbol_from_name(path)).upper()

            def stream() -> Iterator[ReplayItem]:
                text = GzipLines(path) if gzipped else None
                last = 0
                with _text_stream(path, text) as lines:
                    for item in _csv_items(csv.reader(lines), str(path), file_index, name, chosen):
                        last = item.event_time_ms
                        yield item
                if text is not None and text.truncated:
                    yield _truncated(path, file_index, last, text.count)
            return FileItems(path, count, _stream=stream)
    items = read_file(path, file_index, fmt, symbol)
    return FileItems(path, len(items), _items=items)


def _first_lines(path: Path, gzipped: bool, count: int = 3) -> list[str]:
    """The file's first lines (what tells its format, after any note before a header); the reader and
    its chunk go with the call."""
    from itertools import islice

    with _text_stream(path, GzipLines(path) if gzipped else None) as lines:
        return [line.rstrip("\r\n") for line in islice(lines, count)]


def _ws_items(path: Path, file_index: int, received: bool = False) -> Iterator[ReplayItem]:
    """A capture's items in file order (:func:`read_file`'s before its sort), read line by line."""
    text = GzipLines(path) if _gzipped(path) else None
    latest = 0
    with contextlib.ExitStack() as stack:
        lines = iter(text) if text is not None else (line[:-1] for line in stack.enter_context(_text_stream(path)))
        for item in _ws_lines(lines, file_index, str(path), received):
            latest = max(latest, item.event_time_ms)
            yield item
    if text is not None and text.truncated:
        yield _truncated(path, file_index, latest, text.count)


def _streamed_capture(path: Path, file_index: int) -> FileItems:
    """A websocket capture streamed in event-time order. Lines come in receive order, and an event's
    own time can be behind the latest one before it (a trade's exchange time against a book ticker's
    receive time): a first read counts the items and finds the largest such lag, the second holds back
    only the items within that lag of the latest, so the order is exactly a stable sort's."""
    count, lateness, latest = 0, 0, None
    for item in _ws_items(path, file_index):
        count += 1
        t = item.event_time_ms
        if latest is None or t > latest:
            latest = t
        elif latest - t > lateness:
            lateness = latest - t
    return FileItems(path, count, _stream=lambda: in_time_order(_ws_items(path, file_index), lateness))


def _received_capture(path: Path, file_index: int) -> FileItems:
    """A websocket capture in the order its lines were received, as `live` published them (see
    :data:`ORDERS`): counted in a first read, streamed in the second."""
    count = sum(1 for _ in _ws_items(path, file_index, received=True))
    return FileItems(path, count, _stream=lambda: _ws_items(path, file_index, received=True))


def in_time_order(items: Iterable[ReplayItem], lateness: int) -> Iterator[ReplayItem]:
    """One file's items sorted by time, stably, when none is more than ``lateness`` ms behind the latest
    before it: an item is given once no later item can come before it.

    >>> items = [ReplayItem(t, 0, n) for n, t in enumerate((5, 3, 9, 8, 8, 12), 1)]
    >>> [(i.event_time_ms, i.line) for i in in_time_order(items, 2)]
    [(3, 2), (5, 1), (8, 4), (8, 5), (9, 3), (12, 6)]
    """
    held: list[tuple[int, int, ReplayItem]] = []
    latest: int | None = None
    for item in items:
        t = item.event_time_ms
        heapq.heappush(held, (t, item.line, item))
        if latest is None or t > latest:
            latest = t
        while held and held[0][0] <= latest - lateness:
            yield heapq.heappop(held)[2]
    while held:
        yield heapq.heappop(held)[2]


def _gzipped(path: Path) -> bool:
    """Gzip data (told by its magic bytes, whatever the name; a zip is never read as gzip)."""
    if path.suffix == ".zip":
        return False
    with path.open("rb") as handle:
        return handle.read(2) == GZIP_MAGIC


@contextlib.contextmanager
def _text_stream(path: Path, text: GzipLines | None = None) -> Iterator[Iterator[str]]:
    """The file's lines (:func:`_lines`) from a zip's single member, the gzip file ``text`` reads (then
    ``text.truncated`` says, once they are read, whether it was cut short) or a plain file; a damaged
    zip is a :class:`DamagedFile` wherever it shows."""
    if text is not None:
        yield (line + "\n" for line in text)
        return
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                with archive.open(_only_member(path, archive)) as raw:
                    yield _lines(io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline=""))
        else:
            with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
                yield _lines(handle)
    except _ZIP_ERRORS as exc:
        raise _damaged_zip(path, exc) from None


def _lines(text: Iterable[str]) -> Iterator[str]:
    """The lines ``str.splitlines`` would give the whole text (it also breaks at form feeds and other
    separators that files do not), each with ``\\n``, as the in-memory path hands them to ``csv``."""
    for physical in text:
        for line in physical.splitlines():
            yield line + "\n"


def _count_if_sorted(path: Path, time_column: int) -> int | None:
    """The number of rows :func:`read_file` would give, or None when a row's time is earlier than one
    before it (then the file must be sorted in memory). Rows whose time cannot be read are counted and
    do not break the order: such a row is rejected and takes the time of the row before it."""
    count, last = 0, -1
    text = GzipLines(path) if _gzipped(path) else None
    with _text_stream(path, text) as lines:
        for number, row in enumerate(csv.reader(lines), 1):
            if _not_a_row(number, row):
                continue
            count += 1
            try:
                t = to_ms(row[time_column])
            except (IndexError, ValueError):
                continue
            if t < last:
                return None
            last = t
    return count + (text is not None and text.truncated)  # a gzip dump cut short: its mark is an item


def merged(paths: Iterable[Path], fmt: str = "auto", symbol: str | None = None,
           order: str = "time") -> Iterator[ReplayItem]:
    """All files merged in event-time order (ties: command-line order, then line number); captures in
    the order their lines were received with ``order="received"`` (:data:`ORDERS`)."""
    return heapq.merge(*opened(paths, fmt, symbol, order))


def holds_ticks(path: Path | str, rows: int = 10_000, fmt: str = "auto", symbol: str | None = None,
                refusals: Counter[str] | None = None) -> bool:
    """Whether ``path`` has a tick among its first ``rows`` rows (streamed where the format allows): a
    folder of data also holds logs, scripts and notes, and a file of none of them is no series.
    ``refusals``, where given, counts the reasons the rows read were refused (``invalid_symbol``: market
    data whose file name gives no pair, which ``--symbol`` mends), and, for a capture of messages none of
    which is a tick, what they were (``skip:depth_update``).

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> note = Path(folder.name) / "notes.txt"
    >>> _ = note.write_text("downloaded 2025-03-01\\n")
    >>> holds_ticks(note)
    False
    >>> folder.cleanup()

    Only those rows are read (a month of trades is tens of millions), unless they are well-formed
    messages that are no ticks: a thin pair's capture may open with thousands of depth updates before
    its first trade, and was left out of a folder as no market data; it is read on to its first tick. A
    damaged file counts as one that holds ticks, so that the reader that opens it next says what is
    wrong with it.
    """
    try:
        skipped: Counter[str] = Counter()
        if _any_tick(first_items(path, rows, fmt, symbol), refusals, skipped):
            return True
        if not skipped:
            return False
        whole: Counter[str] = Counter()
        if _any_tick(first_items(path, sys.maxsize, fmt, symbol), None, whole):
            return True
        if refusals is not None:  # what it holds instead, for the line that leaves it out
            refusals.update({f"skip:{what}": n for what, n in whole.items()})
        return False
    except DamagedFile:
        return True


def first_items(path: Path | str, rows: int, fmt: str = "auto", symbol: str | None = None) -> Iterator[ReplayItem]:
    """The items of the file's first ``rows`` rows or lines, in file order, read as they are asked for:
    what a file holds, told without reading a capture of gigabytes whole."""
    from itertools import islice

    path = Path(path)
    gzipped = _gzipped(path)
    head = _first_lines(path, gzipped)
    skip = preamble_lines(head) if fmt in ("auto", "ohlcv") else 0
    if not head or not head[skip]:
        return
    chosen = detect_format(path, head[skip]) if fmt == "auto" else fmt
    if chosen == "ws":
        yield from islice(_ws_items(path, 0), rows)
        return
    name = (symbol or symbol_from_name(path)).upper()
    with _text_stream(path, GzipLines(path) if gzipped else None) as lines:
        yield from _csv_items(csv.reader(islice(lines, skip, rows)), str(path), 0, name, chosen, skip,
                              named=symbol is not None)


def _any_tick(items: Iterable[ReplayItem], refusals: Counter[str] | None, skipped: Counter[str]) -> bool:
    for item in items:
        if item.tick is not None:
            return True
        if item.reason_code == "skip":
            skipped[item.reason] += 1
        elif refusals is not None:
            refusals[item.reason_code] += 1
    return False


def opened(paths: Iterable[Path], fmt: str = "auto", symbol: str | None = None, order: str = "time") -> list[FileItems]:
    return [open_file(Path(p), i, fmt, symbol, order) for i, p in enumerate(paths)]
