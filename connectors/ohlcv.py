"""Generic OHLCV CSV files (any exchange, any export) -> KLINE ticks.

The file has a header naming its columns (case-insensitive, any order, a space read as ``_``): a time
column (``timestamp``, ``time``, ``unix``, ``datetime``, ``date``, ``open_time``, ``close_time`` or
``ts``), ``open``, ``high``, ``low``, ``close`` and optionally ``volume`` (else the first ``volume_*``
column: CryptoDataDownload's ``Volume BTC`` before its ``Volume USDT``). A line or two before the header
holding one cell (CryptoDataDownload puts its address there) is skipped (:func:`preamble_lines`). A
``symbol`` column (``BTC/USDT``) names the pair unless ``--symbol`` does (:func:`row_symbol`; otherwise
the file's name does). Times are ISO 8601 (``2024-01-01T00:01:00Z``, ``2024-01-01 00:01:00``; without an
offset they are UTC) or epoch numbers whose unit follows from their digits (see :func:`epoch_ms`). The
row's time is the bar's event time as given: export bars stamped with their close time (as Binance
klines are) so that a bar is not known before it closed.

>>> header = ohlcv_columns(["Date", "Open", "High", "Low", "Close", "Volume"])
>>> tick = ohlcv_row_to_tick("BTCUSDT", ["2024-01-01 00:01:00", "1", "2", "0.5", "1.5", "10"], header)
>>> tick["kind"], tick["event_time_ms"], tick["price"], tick["high"], tick["quantity"]
('KLINE', 1704067260000, 1.5, 2.0, 10.0)
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from typing import Any

from connectors.binance import PayloadError
from streams.ticks import make_tick

TIME_COLUMNS = ("timestamp", "time", "unix", "datetime", "date", "open_time", "close_time", "ts")
PRICE_COLUMNS = ("open", "high", "low", "close")
OHLCV_SOURCE = "csv"


def column_name(cell: str) -> str:
    """A header cell as the readers compare it: ``"Open time"`` -> ``"open_time"``."""
    return "_".join(cell.strip().lower().split())


def is_ohlcv_header(row: list[str]) -> bool:
    names = {column_name(cell) for cell in row}
    return set(PRICE_COLUMNS) <= names and bool(names & set(TIME_COLUMNS))


def preamble_lines(lines: list[str]) -> int:
    """How many of the first lines (at most two) are a note before an OHLCV header: one cell each, no
    comma, not a number. 0 when the header (or data) comes first.

    >>> preamble_lines(["https://www.CryptoDataDownload.com", "unix,date,symbol,open,high,low,close", "1,2"])
    1
    >>> preamble_lines(["Date,Open,High,Low,Close", "2024-01-01,1,2,0.5,1.5"]), preamble_lines(["1577836859999"])
    (0, 0)
    """
    for skip in range(min(2, len(lines) - 1)):
        line = lines[skip].strip()
        if not line or "," in line or line.lstrip("-").replace(".", "", 1).isdigit() or line[0] in "{[":
            return 0
        if is_ohlcv_header(next(csv.reader([lines[skip + 1]]), [])):
            return skip + 1
    return 0


def ohlcv_columns(header: list[str]) -> dict[str, int]:
    """Column positions of a header row; raises PayloadError naming what is missing."""
    names = [column_name(cell) for cell in header]
    columns = {}
    time_column = next((name for name in TIME_COLUMNS if name in names), None)
    missing = [name for name in PRICE_COLUMNS if name not in names]
    if time_column is None or missing:
        wanted = missing + ([f"one of {', '.join(TIME_COLUMNS)}"] if time_column is None else [])
        raise PayloadError("malformed_header", f"OHLCV header {header!r} lacks {', '.join(wanted)}")
    columns["time"] = names.index(time_column)
    for name in PRICE_COLUMNS:
        columns[name] = names.index(name)
    volume = "volume" if "volume" in names else next((name for name in names if name.startswith("volume_")), None)
    if volume is not None:
        columns["volume"] = names.index(volume)
    if "symbol" in names:
        columns["symbol"] = names.index("symbol")
    return columns


def row_symbol(row: list[str], columns: dict[str, int]) -> str | None:
    """The pair a row's ``symbol`` column names, as Binance writes it (``BTC/USDT`` -> ``BTCUSDT``), or
    None when there is no such column or cell.

    >>> row_symbol(["1577836800000", "BTC/USDT"], {"symbol": 1}), row_symbol(["1"], {})
    ('BTCUSDT', None)
    """
    column = columns.get("symbol")
    if column is None or column >= len(row):
        return None
    return "".join(row[column].replace("/", " ").replace("-", " ").split()).upper() or None


def epoch_ms(text: str) -> int:
    """Epoch time in ms from seconds (up to 11 integer digits; a fraction allowed), milliseconds (12-14),
    microseconds (15-17) or nanoseconds (18 or more).

    >>> [epoch_ms(t) for t in ("1704067260", "1704067260.5", "1704067260000", "1704067260000000",
    ...                        "1704067260000000000")]
    [1704067260000, 1704067260500, 1704067260000, 1704067260000, 1704067260000]
    """
    whole = text.strip().lstrip("+-").split(".")[0]
    digits = len(whole)
    if digits <= 11:
        return int(round(float(text) * 1000))
    scale = 1 if digits <= 14 else 1_000 if digits <= 17 else 1_000_000
    return int(whole) // scale * (-1 if text.strip().startswith("-") else 1)


def time_ms(text: str) -> int:
    """ISO 8601 (UTC when no offset is given) or an epoch number (:func:`epoch_ms`)."""
    stripped = text.strip()
    if stripped.replace(".", "", 1).lstrip("+-").isdigit():
        return epoch_ms(stripped)
    moment = datetime.fromisoformat(stripped)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(round(moment.timestamp() * 1000))


def ohlcv_row_to_tick(symbol: str, row: list[str], columns: dict[str, int],
                      source: str = OHLCV_SOURCE) -> dict[str, Any]:
    if len(row) <= max(columns.values()):
        raise PayloadError("malformed_row", f"OHLCV row has {len(row)} columns, the header names {len(columns)}")
    try:
        volume = float(row[columns["volume"]]) if "volume" in columns else 0.0
        return make_tick(symbol, "KLINE", time_ms(row[columns["time"]]), float(row[columns["close"]]), volume,
                         source, open=float(row[columns["open"]]), high=float(row[columns["high"]]),
                         low=float(row[columns["low"]]))
    except ValueError as exc:
        raise PayloadError("malformed_row", f"OHLCV row {row!r}: {exc}") from None
