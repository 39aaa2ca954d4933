"""Recorded real Binance payloads normalise to Ticks whose fields equal the JSON; broken input is named."""

from __future__ import annotations

import gzip
import json
import time
import types
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from connectors.binance import PayloadError, Skipped, kline_row_to_tick, normalise_ws, to_ms
from connectors.recorded import holds_ticks, open_file, read_file
from connectors.replay import ReplayStats, replay
from streams.ticks import check_tick

WS = Path(__file__).resolve().parents[2] / "data" / "binance" / "ws"
KLINES = Path(__file__).resolve().parents[2] / "data" / "binance" / "klines"


def capture_lines(name: str):
    with gzip.open(WS / name, "rt") as lines:
        for line in lines:
            stamp, _, body = line.partition(" ")
            yield int(stamp) // 1_000_000, json.loads(body)


def test_spot_trades_and_book_tickers_equal_their_json_fields():
    trades = books = 0
    for receive_ms, message in capture_lines("spot_btcusdt_20240808.gz"):
        stream = message.get("stream", "")
        data = message.get("data", {})
        if stream.endswith("@trade"):
            tick = normalise_ws(message, receive_ms)
            check_tick(tick)
            assert tick["kind"] == "TRADE" and tick["symbol"] == data["s"]
            assert tick["price"] == float(data["p"]) and tick["quantity"] == float(data["q"])
            assert tick["event_time_ms"] == data["T"] and tick["sequence_id"] == data["t"]
            assert tick["is_buyer_maker"] is data["m"]
            assert tick["taker_buy_volume"] == (0.0 if data["m"] else float(data["q"]))
            trades += 1
        elif stream.endswith("@bookTicker"):
            tick = normalise_ws(message, receive_ms)
            check_tick(tick)
            assert tick["kind"] == "BOOK_TICKER" and tick["event_time_ms"] == receive_ms
            assert (tick["bid_price"], tick["bid_qty"], tick["ask_price"], tick["ask_qty"]) == tuple(
                float(data[k]) for k in ("b", "B", "a", "A"))
            books += 1
        else:
            with pytest.raises(Skipped):
                normalise_ws(message, receive_ms)
    assert (trades, books) == (9757, 28040)


def futures_messages():
    with open(WS / "cryptofeed_BINANCE_FUTURES.ws.1.0") as lines:
        for line in lines:
            if line.startswith("wss://"):
                continue
            stamp, _, body = line.partition(": ")
            yield int(float(stamp) * 1000), json.loads(body)


def test_futures_agg_trades_and_klines_normalise():
    agg = klines = 0
    for receive_ms, message in futures_messages():
        data = message["data"]
        if data["e"] == "aggTrade":
            tick = normalise_ws(message, receive_ms)
            check_tick(tick)
            assert tick["kind"] == "AGG_TRADE" and tick["price"] == float(data["p"])
            assert tick["quantity"] == float(data["q"]) and tick["event_time_ms"] == data["T"]
            assert (tick["sequence_id"], tick["first_trade_id"], tick["last_trade_id"]) == (data["a"], data["f"], data["l"])
            agg += 1
        elif data["e"] == "kline":
            k = data["k"]
            if not k["x"]:
                with pytest.raises(Skipped, match="open_kline"):
                    normalise_ws(message, receive_ms)
            tick = normalise_ws(message, receive_ms, include_open_klines=True)
            check_tick(tick)
            assert tick["kind"] == "KLINE" and tick["event_time_ms"] == k["T"]
            assert (tick["open"], tick["high"], tick["low"], tick["price"]) == tuple(float(k[c]) for c in "ohlc")
            assert tick["quantity"] == float(k["v"]) and tick["taker_buy_volume"] == float(k["V"])
            assert tick["quote_volume"] == float(k["q"]) and tick["trade_count"] == k["n"]
            klines += 1
        elif data["e"] == "bookTicker":
            tick = normalise_ws(message, receive_ms)
            assert tick["event_time_ms"] == data["T"]
    assert agg > 0 and klines > 0


def test_a_futures_book_ticker_dump_reads_as_the_websocket_ticks_it_records(tmp_path):
    """data.binance.vision's futures bookTicker dumps, written here from the recorded futures stream's
    real book tickers in the dump's columns (with its header): the ticks equal the websocket's, but for
    the source and the receive time a dump has not."""
    messages = [m["data"] for _, m in futures_messages() if m["data"]["e"] == "bookTicker" and m["data"]["s"] == "SUSHIUSDT"]
    rows = ["update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time"]
    rows += [f"{d['u']},{d['b']},{d['B']},{d['a']},{d['A']},{d['T']},{d['E']}" for d in messages]
    path = tmp_path / "SUSHIUSDT-bookTicker-2021-07-22.csv"
    path.write_text("\n".join(rows) + "\n")
    ticks = [item.tick for item in open_file(path)]
    expected = sorted((normalise_ws(d) for d in messages), key=lambda t: t["event_time_ms"])
    assert len(ticks) == len(messages) > 20
    for tick, want in zip(ticks, expected, strict=True):
        assert {k: v for k, v in tick.items() if k != "source"} == {k: v for k, v in want.items() if k != "source"}
        check_tick(tick)


@pytest.mark.parametrize("message, code", [
    ({"stream": "btcusdt@trade", "data": {"e": "trade", "s": "BTCUSDT", "p": "1", "q": "1", "T": 1, "m": True}},
     "malformed_payload"),
    ({"e": "trade", "s": "BTCUSDT", "t": 1, "p": "abc", "q": "1", "T": 1, "m": True}, "malformed_payload"),
    ({"code": -1121, "msg": "Invalid symbol."}, "exchange_error"),
    ({"e": "error", "m": "Max stream count exceeded"}, "exchange_error"),
    ({"e": "somethingNew", "s": "BTCUSDT"}, "unknown_event"),
    (["not", "an", "object"], "malformed_payload"),
])
def test_broken_or_error_messages_raise_named_errors(message, code):
    with pytest.raises(PayloadError) as info:
        normalise_ws(message, 1)
    assert info.value.code == code


def test_subscription_replies_are_skipped():
    with pytest.raises(Skipped):
        normalise_ws({"result": None, "id": 1})


def test_documented_events_that_are_no_ticks_are_skipped_not_rejected():
    """A futures capture with the mark price, liquidations or a ticker stream in it is well formed: those
    messages were rejected as ``unknown_event`` (dead letters every second)."""
    mark = {"stream": "btcusdt@markPrice", "data": {"e": "markPriceUpdate", "E": 1562305380000, "s": "BTCUSDT",
                                                    "p": "11794.15", "i": "11784.62", "r": "0.00038167", "T": 1562306400000}}
    continuous = {"e": "continuous_kline", "E": 1607443058651, "ps": "BTCUSDT", "ct": "PERPETUAL", "k": {}}
    # Spot's block trades and reference prices (2026), as its stream documentation gives them.
    block = {"stream": "bnbbtc@blockTrade", "data": {"e": "blockTrade", "E": 1772506983582, "s": "BNBBTC", "t": 582,
                                                     "p": "0.052", "q": "5838", "T": 1772506983321, "m": True}}
    reference = {"e": "referencePrice", "s": "BAZUSD", "r": "1.00", "t": 1770313263917}
    for message in (mark, continuous, {"e": "forceOrder", "E": 1568014460893, "o": {"s": "BTCUSDT"}}, block, reference):
        with pytest.raises(Skipped):
            normalise_ws(message, 1)


def test_microsecond_dump_times_become_milliseconds():
    assert to_ms("1735689600000000") == 1735689600000
    assert to_ms(1577836859999) == 1577836859999
    row = "1735689600000000,93576.0,93610.93,93537.5,93610.93,8.21827,1735689659999999,768978.3,1383,3.58,335103.4,0"
    tick = kline_row_to_tick("BTCUSDT", row.split(","))
    assert tick["event_time_ms"] == 1735689659999


def test_a_capture_of_streams_in_microseconds_gives_the_ticks_of_one_in_milliseconds():
    """A connection that asked for ``timeUnit=MICROSECOND`` gets every time of its payloads in µs; the
    ticks were stamped in the year 56,000 and the worker refused each (invalid_time). Every recorded
    message of both captures, its times multiplied by 1,000, gives the tick it gave in ms."""
    def in_microseconds(value):
        if isinstance(value, dict):
            return {k: v * 1000 if k in ("E", "T", "t") and isinstance(v, int) and v > 10**11 else in_microseconds(v)
                    for k, v in value.items()}
        return value

    ticks = 0
    for receive_ms, message in [*capture_lines("spot_btcusdt_20240808.gz"), *futures_messages()]:
        try:
            expected = normalise_ws(message, receive_ms)
        except (Skipped, PayloadError):
            continue
        assert normalise_ws(in_microseconds(message), receive_ms) == expected
        ticks += 1
    assert ticks > 37_000


def test_klines_spot_and_futures_dumps_read_1440_rows_each():
    for path in sorted(KLINES.rglob("*.zip")):
        items = read_file(path)
        assert len(items) == 1440 and all(i.tick is not None for i in items), path
        times = [i.event_time_ms for i in items]
        assert times == sorted(times) and times[1] - times[0] == 60_000


class RecordingSink:
    """A sink that keeps what it is given; the Kafka path is tested in tests/integration."""

    def __init__(self):
        self.sent, self.rejects = [], []

    def send(self, record, key, timestamp_ms):
        self.sent.append((key, timestamp_ms, record))

    def reject(self, code, reason, origin, line, raw):
        self.rejects.append((code, reason, origin, line, raw))

    def flush(self):
        pass


def test_malformed_rows_are_counted_with_reasons_and_the_replay_goes_on(tmp_path):
    good = KLINES / "spot" / "BTCUSDT-1m-2020-01-01.zip"
    import zipfile

    rows = zipfile.ZipFile(good).read("BTCUSDT-1m-2020-01-01.csv").decode().splitlines()[:10]
    rows[3] = "garbage,row"
    rows[5] = rows[5].replace(rows[5].split(",")[4], "nan", 1)
    path = tmp_path / "BTCUSDT-1m-test.csv"
    path.write_text("\n".join(rows) + "\n")
    sink = RecordingSink()
    stats: ReplayStats = replay([path], sink, progress=False)
    assert stats.produced == 8 and sum(stats.rejected.values()) == 2
    assert [r[0] for r in sink.rejects] == ["malformed_row", "invalid_value"]
    assert sink.rejects[0][3] == 4 and sink.rejects[0][4] == b"garbage,row"
    assert "rejected malformed_row: 1" in stats.summary()


def test_files_merge_in_event_time_order_deterministically():
    paths = [KLINES / "spot" / "BTCUSDT-1m-2020-01-02.zip", KLINES / "spot" / "BTCUSDT-1m-2020-01-01.zip",
             WS / "spot_ethusdt_20240808.gz"]
    first, second = RecordingSink(), RecordingSink()
    replay(paths, first, progress=False)
    replay(paths, second, progress=False)
    assert first.sent == second.sent
    times = [t for _, t, _ in first.sent]
    assert times == sorted(times)
    assert {k for k, _, _ in first.sent} == {"BTCUSDT", "ETHUSDT"}


@pytest.mark.parametrize("prefix, separator", [
    ("1723161255343", " "),              # ms
    ("1723161255343123", " "),           # µs
    ("1723161255343123456", " "),        # ns (hftbacktest)
    ("1723161255.343", ": "),            # s with a fraction (cryptofeed)
    ("2024-08-08T23:54:15.343Z", " "),   # ISO 8601, as a recorder that logs its lines writes it
    ("2024-08-08 23:54:15,343123", ": "),  # Python logging's comma, no offset: UTC
    ("2024-08-09T01:54:15.3430000+02:00", " "),
])
def test_receive_time_prefix_unit_follows_from_its_digits(tmp_path, prefix, separator):
    """hftbacktest's, cryptofeed's and logging recorders' receive times before each message. An ISO
    prefix was not recognised before, and the file was read as a kline dump, every line refused."""
    book = '{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1.0","B":"2","a":"1.1","A":"3"}}'
    path = tmp_path / "capture.txt"
    path.write_text(f"{prefix}{separator}{book}\n")
    [item] = read_file(path)
    assert item.tick is not None, item.reason
    assert item.tick["event_time_ms"] == 1723161255343
    assert item.tick["receive_time_ms"] == 1723161255343


def test_generic_ohlcv_csv_with_header_and_iso_times(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n"
                    "2024-01-01 00:01:00,100,101,99,100.5,3\n"
                    "2024-01-01T00:02:00Z,100.5,102,100,101,4\n"
                    "2024-01-01T01:03:00+01:00,101,101,100,100.2,1\n"
                    "not a time,1,1,1,1,1\n")
    sink = RecordingSink()
    stats = replay([path], sink, progress=False, symbol="ethusdt")
    assert stats.produced == 3 and dict(stats.rejected) == {"malformed_row": 1}
    assert [(k, t) for k, t, _ in sink.sent] == [("ETHUSDT", 1704067260000), ("ETHUSDT", 1704067320000),
                                                 ("ETHUSDT", 1704067380000)]
    first = sink.sent[0][2]
    assert (first["kind"], first["open"], first["high"], first["low"], first["price"], first["quantity"]) == (
        "KLINE", 100.0, 101.0, 99.0, 100.5, 3.0)


def test_a_byte_order_mark_does_not_hide_a_header_or_a_first_row(tmp_path):
    # Spreadsheets and many exporters write UTF-8 with a byte order mark; read as text it stuck to the
    # header's first cell, the OHLCV header was not recognised, and every row was rejected as a kline.
    bom = "\ufeff"
    export = tmp_path / "export.csv"
    export.write_text(bom + "Date,Open,High,Low,Close,Volume\n2024-01-01T00:01:00Z,100,101,99,100.5,3\n",
                      encoding="utf-8")
    packed = tmp_path / "export_gz.csv.gz"
    packed.write_bytes(gzip.compress(export.read_bytes()))
    for path in (export, packed):
        [item] = read_file(path, symbol="ETHUSDT")
        assert item.tick is not None, item.reason
        assert (item.tick["event_time_ms"], item.tick["price"]) == (1704067260000, 100.5)
    row = "1577836800000,7195.24,7196.25,7183.14,7186.68,51.642812,1577836859999,371233.85,493,19.24,138291.35,0"
    kline = tmp_path / "BTCUSDT-1m-2020-01-01.csv"
    kline.write_text(bom + row + "\n", encoding="utf-8")
    [item] = read_file(kline)
    assert item.tick is not None and item.tick["event_time_ms"] == 1577836859999
    stats = replay([kline], RecordingSink(), progress=False)  # streamed: the dump is in time order
    assert stats.produced == 1 and not stats.rejected


def test_exports_of_other_tools_read_as_what_they_are(tmp_path):
    """Two common sources of minute bars beside Binance's dumps, made here from a real day:
    CryptoDataDownload's CSV (its address on the first line, then ``unix,date,symbol,...,Volume BTC,
    Volume USDT,tradecount``, newest first) was rejected row by row as klines; python-binance's klines
    as notebooks export them (header ``Open time, ..., Close time, ...``) are Binance klines."""
    rows = [line.split(",") for line in zipfile.ZipFile(KLINES / "spot" / "BTCUSDT-1m-2020-01-01.zip").read(
        "BTCUSDT-1m-2020-01-01.csv").decode().splitlines()]
    lines = ["https://www.CryptoDataDownload.com", "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount"]
    lines += [f"{r[0]},2020-01-01 00:00:00,BTC/USDT,{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{r[7]},{r[8]}" for r in rows[::-1]]
    lines.insert(5, "1577836980000,2020-01-01 00:03:00,BTC/USDT,not a price,1,1,1,1,1,1")
    cdd = tmp_path / "Binance_BTCUSDT_2020_minute.csv"
    cdd.write_text("\n".join(lines) + "\n")
    items = read_file(cdd)
    ticks = [i.tick for i in items if i.tick is not None]
    assert len(ticks) == 1440 and {t["symbol"] for t in ticks} == {"BTCUSDT"}
    assert [t["event_time_ms"] for t in ticks[:2]] == [1577836800000, 1577836860000]  # its unix column, in order
    assert ticks[0]["price"] == float(rows[0][4]) and ticks[0]["quantity"] == float(rows[0][5])  # volume in BTC
    [rejected] = [i for i in items if i.tick is None]
    assert rejected.line == 6 and rejected.reason_code == "malformed_row"  # the file's own line number
    assert holds_ticks(cdd)
    assert [i.tick["symbol"] for i in read_file(cdd, symbol="XBTUSDT") if i.tick][:1] == ["XBTUSDT"]

    header = ("Open time,Open,High,Low,Close,Volume,Close time,Quote asset volume,Number of trades,"
              "Taker buy base asset volume,Taker buy quote asset volume,Ignore")
    export = tmp_path / "klines (1).csv"
    export.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n")
    refusals: Counter = Counter()
    assert not holds_ticks(export, refusals=refusals) and refusals["invalid_symbol"] == 1440
    items = list(open_file(export, symbol="BTCUSDT"))
    assert len(items) == 1440 and items[0].tick["event_time_ms"] == 1577836859999  # its close time: klines
    assert items[0].tick["quote_volume"] == float(rows[0][7])


def test_ohlcv_with_epoch_times_and_an_explicit_format(tmp_path):
    path = tmp_path / "bars.txt"
    path.write_text("timestamp,open,high,low,close,volume\n1704067260,1,2,0.5,1.5,10\n1704067320000,1.5,2,1,1.8,5\n")
    items = read_file(path, fmt="ohlcv", symbol="XYZ")
    assert [i.tick["event_time_ms"] for i in items] == [1704067260000, 1704067320000]


def test_futures_klines_with_header_are_still_klines():
    items = read_file(KLINES / "um" / "BTCUSDT-1m-2022-09-05.zip")
    assert len(items) == 1440 and items[0].tick["quote_volume"] is not None


def test_an_ohlcv_header_without_prices_is_one_clear_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("time,price\n1704067260,1\n")
    with pytest.raises(PayloadError, match="lacks open, high, low, close"):
        read_file(path, fmt="ohlcv", symbol="X")


def test_a_capture_cut_short_is_read_to_its_last_complete_line_and_says_so(tmp_path):
    # The shipped capture compressed again in two gzip members (as a recorder that reopens its file
    # writes it), then cut inside the second member, as a killed recorder leaves it.
    whole = gzip.decompress((WS / "spot_ethusdt_20240808.gz").read_bytes())
    lines = whole.splitlines(keepends=True)
    first, second = b"".join(lines[:300]), b"".join(lines[300:2000])
    two_members = gzip.compress(first) + gzip.compress(second)
    complete = tmp_path / "ethusdt_complete.gz"
    complete.write_bytes(two_members)
    reference = tmp_path / "ethusdt_reference.gz"
    reference.write_bytes(gzip.compress(first + second))
    assert [(i.event_time_ms, i.tick) for i in read_file(complete)] == [(i.event_time_ms, i.tick) for i in read_file(reference)]

    cut = tmp_path / "ethusdt_cut.gz"
    cut.write_bytes(two_members[: len(gzip.compress(first)) + len(gzip.compress(second)) // 2])
    items = read_file(cut)
    assert items[-1].reason_code == "truncated_file" and items[-1].tick is None
    assert "ends early" in items[-1].reason
    read = [i for i in items if i.reason_code != "truncated_file"]
    assert 300 < len(read) < 2000
    # Every line read is a complete line of the capture, the first ones: nothing half-read.
    by_line = {i.line: (i.event_time_ms, i.tick, i.reason_code) for i in read_file(reference)}
    assert sorted(i.line for i in read) == list(range(1, len(read) + 1))
    assert all((i.event_time_ms, i.tick, i.reason_code) == by_line[i.line] for i in read)
    sink = RecordingSink()
    stats = replay([cut], sink, progress=False)
    assert stats.rejected["truncated_file"] == 1 and sink.rejects[-1][0] == "truncated_file"


@pytest.mark.parametrize("name, data, message", [
    ("BTCUSDT-1m-2020-01-01.zip", lambda: (KLINES / "spot" / "BTCUSDT-1m-2020-01-01.zip").read_bytes()[:300],
     "not a readable zip archive"),
    ("capture.gz", lambda: b"\x1f\x8b\x08\x00" + b"\xff" * 64, "damaged gzip data"),
])
def test_a_damaged_archive_is_one_clear_error_naming_the_file(tmp_path, name, data, message):
    from connectors.text_lines import DamagedFile

    path = tmp_path / name
    path.write_bytes(data())
    with pytest.raises(DamagedFile, match=message) as raised:
        read_file(path)
    assert str(path) in str(raised.value)


def _as_tuples(items) -> list[tuple]:
    return [(i.event_time_ms, i.file_index, i.line, i.tick, i.origin, i.raw, i.reason_code, i.reason) for i in items]


def _trades_csv(rows: int, start_ms: int = 1_704_067_200_000) -> str:
    lines, t, price = [], start_ms, 42_000.0
    for i in range(rows):
        t += (i * 37) % 170
        price *= 1 + ((i * 7919) % 200 - 100) * 1e-7
        lines.append(f"{3_000_000_000 + i},{price:.2f},0.012,{price * 0.012:.8f},{t},{'true' if i % 3 else 'false'},true")
    return "\n".join(lines) + "\n"


def test_a_sorted_dump_is_streamed_with_the_same_items(tmp_path):
    """A dump in time order (every data.binance.vision file) is read as a stream, zipped, gzipped (cut
    short too) or plain; its items are the ones the in-memory read gives, rejected rows, header and
    CRLF endings included."""
    import gzip
    import zipfile

    from connectors.recorded import open_file

    rows = _trades_csv(300).splitlines()
    text = "id,price,qty,quote_qty,time,is_buyer_maker,is_best_match\r\n" + "\r\n".join(
        rows[:100] + ["bad,row", f"1,abc,1,1,{rows[99].split(',')[4]},true,true", ""] + rows[100:]) + "\r\n"
    plain = tmp_path / "BTCUSDT-trades-2024-01-01.csv"
    plain.write_text(text)
    packed = tmp_path / "BTCUSDT-trades-2024-01-02.zip"
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-trades-2024-01-02.csv", text)
    gzipped = tmp_path / "BTCUSDT-trades-2024-01-04.csv.gz"
    gzipped.write_bytes(gzip.compress(text.encode()))
    cut = tmp_path / "BTCUSDT-trades-2024-01-05.csv.gz"  # a download cut short: read to its last line
    cut.write_bytes(gzip.compress(text.encode())[:-2000])
    for path in (plain, packed, gzipped, cut, *sorted(KLINES.rglob("*.zip"))):
        opened = open_file(path)
        assert opened._items is None, f"{path.name} was not streamed"
        assert opened.count == len(read_file(path))
        assert _as_tuples(opened) == _as_tuples(read_file(path))
    assert [i.line for i in open_file(plain) if i.tick is None] == [102, 103]  # after the header, 100 rows
    assert _as_tuples(open_file(cut))[-1][6] == "truncated_file"

    # Out of order (two rows swapped): read whole and sorted, as before.
    rows[50], rows[60] = rows[60], rows[50]
    unsorted = tmp_path / "ETHUSDT-trades-2024-01-03.csv"
    unsorted.write_text("\n".join(rows) + "\n")
    opened = open_file(unsorted)
    assert opened._items is not None
    assert _as_tuples(opened) == _as_tuples(read_file(unsorted))
    times = [i.event_time_ms for i in opened]
    assert times == sorted(times)


def test_a_large_dump_is_replayed_in_little_memory(tmp_path):
    """A day of trades is millions of rows: streamed, the memory a replay holds does not grow with the
    file (held whole, 50,000 rows took tens of MB)."""
    import gzip
    import tracemalloc

    from connectors.recorded import open_file

    path = tmp_path / "BTCUSDT-trades-2024-01-01.csv"
    path.write_text(_trades_csv(50_000))
    packed = tmp_path / "BTCUSDT-trades-2024-01-02.csv.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    for source in (path, packed):
        peaks = []
        for read in (lambda s=source: sum(1 for _ in open_file(s)), lambda s=source: len(read_file(s))):
            tracemalloc.start()
            assert read() == 50_000
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        streamed, whole = peaks
        # A gzip chunk (64 KB) of this repetitive text inflates to about a MB, held with its lines.
        assert streamed < 4_000_000 and whole > 20 * streamed, (source.name, peaks)


def _whole_gzip_lines(data: bytes) -> tuple[list[str], bool]:
    """The lines of gzip data read whole, member by member (the reader before GzipLines): a member
    cut short is read up to its last newline."""
    import zlib

    out, rest, truncated = [], data, False
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out.append(inflater.decompress(rest))
        if not inflater.eof:
            truncated = True
            break
        rest = inflater.unused_data.lstrip(b"\x00")
    raw = b"".join(out)
    if truncated:
        raw = raw[: raw.rfind(b"\n") + 1]
    return raw.decode("utf-8", errors="replace").splitlines(), truncated


def test_gzip_lines_in_chunks_equal_the_whole_file_read_wherever_the_file_is_cut(tmp_path):
    from connectors.text_lines import GzipLines

    text = "a\r\nb\rc\x0cd\n\n\u00e9\u20acx\n".encode() + b"\xff\xfe bad bytes\n" + "tail \u20ac".encode()
    one = gzip.compress(text)
    two = gzip.compress(text[:9]) + b"\x00" * 5 + gzip.compress(text[9:]) + b"\x00" * 3
    path = tmp_path / "c.gz"
    for data in (one, two):
        for cut in range(1, len(data) + 1):
            path.write_bytes(data[:cut])
            expected = _whole_gzip_lines(data[:cut])
            for chunk in (1, 4, 1 << 20):
                lines = GzipLines(path, chunk)
                assert (list(lines), lines.truncated) == expected, (cut, chunk)
                assert lines.count == len(expected[0])
    assert _whole_gzip_lines(two) == (text.decode("utf-8", errors="replace").splitlines(), False)


def test_a_capture_is_streamed_in_time_order_with_the_same_items(tmp_path):
    """A websocket capture (gzip or plain) is read line by line, twice: once to count and find how far
    an event's time lags behind the latest before it, once to give the items in the order of a stable
    sort by time; they equal the in-memory read's, a capture cut short and one out of order included."""
    from connectors.recorded import open_file

    whole = gzip.decompress((WS / "spot_btcusdt_20240808.gz").read_bytes())
    lines = whole.splitlines(keepends=True)
    cut = tmp_path / "btcusdt_cut.gz"
    packed = gzip.compress(b"".join(lines[:3000]))
    cut.write_bytes(packed[: len(packed) * 2 // 3])
    swapped = lines[:2000]
    swapped[100], swapped[1500] = swapped[1500], swapped[100]  # one event 1,400 lines early, one late
    disordered = tmp_path / "btcusdt_disordered.gz"
    disordered.write_bytes(gzip.compress(b"".join(swapped)))
    for path in (*sorted(WS.iterdir()), cut, disordered):
        opened = open_file(path, 1)
        assert opened._items is None, f"{path.name} was not streamed"
        expected = _as_tuples(read_file(path, 1))
        assert opened.count == len(expected)
        assert _as_tuples(opened) == expected, path.name
    assert _as_tuples(open_file(cut))[-1][6] == "truncated_file"


def test_a_large_capture_is_replayed_in_memory_that_does_not_grow_with_it(tmp_path):
    """A day of a symbol's capture is millions of lines: streamed, a replay holds a chunk and the
    events within the largest lag, whatever the file's length."""
    import tracemalloc

    from connectors.recorded import open_file

    def capture(n: int) -> Path:
        rows = []
        for i in range(n):
            bid = 61_000 + (i * 7919) % 300 / 100
            rows.append(f'{1_723_161_254_087_891_268 + i * 3_000_000} {{"stream":"btcusdt@bookTicker","data":'
                        f'{{"u":{i},"s":"BTCUSDT","b":"{bid:.2f}","B":"1.5","a":"{bid + 0.01:.2f}","A":"2.5"}}}}\n')
        path = tmp_path / f"capture_{n}.gz"
        path.write_bytes(gzip.compress("".join(rows).encode()))
        return path

    def peak(read) -> int:
        tracemalloc.start()
        read()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    from connectors.text_lines import GzipLines

    short, long = capture(16_000), capture(48_000)  # both several chunks long
    assert peak(lambda: sum(1 for _ in GzipLines(long))) < 1.2 * peak(lambda: sum(1 for _ in GzipLines(short)))
    streamed, whole = peak(lambda: sum(1 for _ in open_file(short))), peak(lambda: read_file(short))
    assert streamed < 8_000_000 and whole > 4 * streamed, (streamed, whole)


def test_coin_margined_kline_dump_volumes_in_the_base_asset_and_stamped_at_close(tmp_path):
    """A COIN-M dump (``BTCUSD_PERP``: volume in contracts of 100 USD, the base asset's volume where
    other markets put the quote volume, a header naming it ``base_volume``), built from the shipped
    USD-M day's real prices. Read before as generic OHLCV it was stamped with its open time and its
    volumes were contracts; as Binance klines with quote volume it gave a VWAP of ~100 / price."""
    import zipfile

    from streams.features import FeatureEngine
    from tests.binance_server import COIN_KLINE_HEADER, coin_margined_rows

    source = [i.tick for i in read_file(KLINES / "um" / "BTCUSDT-1m-2022-09-05.zip")][:60]
    rows = [",".join(row) for row in coin_margined_rows(source)]
    path = tmp_path / "BTCUSD_PERP-1m-2022-09-05.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("BTCUSD_PERP-1m-2022-09-05.csv", "\n".join([COIN_KLINE_HEADER, *rows]) + "\n")

    ticks = [i.tick for i in read_file(path)]
    assert len(ticks) == 60 and {t["symbol"] for t in ticks} == {"BTCUSD_PERP"}
    assert [t["event_time_ms"] for t in ticks] == [t["event_time_ms"] for t in source]  # close times
    first = ticks[0]
    assert first["quote_volume"] is None
    assert first["quantity"] == pytest.approx(float(rows[0].split(",")[7]))
    assert first["taker_buy_volume"] == pytest.approx(float(rows[0].split(",")[10]))
    engine = FeatureEngine()
    values = [engine.update(t) for t in ticks][-1]["values"]
    assert abs(values["vwap_dev_20"]) < 0.01
    assert 0.0 <= values["taker_buy_share_20"] <= 1.0


def test_coin_margined_kline_event_volumes_in_the_base_asset():
    """A COIN-M kline event (dstream: ``v``/``V`` in contracts, ``q``/``Q`` in the base asset)."""
    k = {"t": 1678406400000, "T": 1678406459999, "s": "BTCUSD_PERP", "i": "1m", "f": 1, "L": 210, "o": "20100.0",
         "c": "20105.0", "h": "20110.0", "l": "20090.0", "v": "1500", "n": 210, "x": True, "q": "7.4612",
         "V": "800", "Q": "3.9793", "B": "0"}
    tick = normalise_ws({"e": "kline", "E": 1678406460001, "s": "BTCUSD_PERP", "k": k})
    assert (tick["quantity"], tick["taker_buy_volume"], tick["quote_volume"]) == (7.4612, 3.9793, None)
    spot = normalise_ws({"e": "kline", "E": 1678406460001, "s": "BTCUSDT", "k": {**k, "s": "BTCUSDT"}})
    assert (spot["quantity"], spot["taker_buy_volume"], spot["quote_volume"]) == (1500.0, 800.0, 7.4612)


def test_a_paced_batched_replay_sends_each_partial_batch_before_it_waits():
    """One-minute klines replayed at 60x (a second between ticks) in batches of 50 with a 5 ms wait:
    each tick leaves before the replay sleeps for the next, not a batch of 50 every 50 seconds."""
    from connectors.batching import TickBatcher

    clock = [0.0]

    class TimedSink(RecordingSink):
        def send(self, record, key, timestamp_ms):
            super().send({**record, "sent_at": clock[0]}, key, timestamp_ms)

    sink = TimedSink()
    batcher = TickBatcher(sink, size=50, max_wait_ms=5.0, clock=lambda: clock[0])

    def sleep(seconds):
        clock[0] += seconds

    path = KLINES / "spot" / "BTCUSDT-1m-2020-01-01.zip"
    stats = replay([path], batcher, speed=60.0, progress=False, sleep=sleep, clock=lambda: clock[0])
    assert stats.produced == 1440
    assert [len(record["ticks"]) for _, _, record in sink.sent] == [1] * 1440
    # Tick i is due i seconds in; it leaves before the sleep towards tick i + 1 ends.
    assert max(record["sent_at"] - i for i, (_, _, record) in enumerate(sink.sent)) < 0.5
    unpaced = RecordingSink()
    replay([path], TickBatcher(unpaced, size=50, max_wait_ms=5.0, clock=lambda: 0.0), progress=False)
    assert [len(record["ticks"]) for _, _, record in unpaced.sent] == [50] * 28 + [40]


def test_the_topic_reader_asks_again_while_a_partition_has_no_leader_yet():
    """Right after topics are created (or while a leader is elected) a broker answers a watermark query
    with NOT_LEADER_FOR_PARTITION; the reader used by checkpoint restore and the CLI raised it once under
    load (2026-12-02). It now asks again for up to its metadata timeout; other errors still raise at once.
    The stand-in below is the broker's answer, not the reader: the reader's own retry is what runs."""
    from confluent_kafka import KafkaError, KafkaException

    from connectors.topic_end import TopicToEnd

    class Answers:
        def __init__(self, errors):
            self.errors = list(errors)

        def get_watermark_offsets(self, partition, timeout):
            if self.errors:
                raise KafkaException(KafkaError(self.errors.pop(0)))
            return (0, 5)

    reader = TopicToEnd({}, "t", metadata_timeout=1.0)
    soon = time.monotonic() + 1.0
    assert reader._partition_watermarks(Answers([KafkaError.NOT_LEADER_FOR_PARTITION] * 2), None, soon) == (0, 5)
    with pytest.raises(KafkaException):
        reader._partition_watermarks(Answers([KafkaError.NOT_LEADER_FOR_PARTITION] * 100), None, soon)
    with pytest.raises(KafkaException):
        reader._partition_watermarks(Answers([KafkaError._AUTHENTICATION]), None, time.monotonic() + 1.0)

    # A topic of eight partitions, none with a leader: the read gives up after one metadata timeout,
    # not one per partition (eight seconds here).
    class Leaderless(Answers):
        def list_topics(self, topic, timeout):
            partitions = dict.fromkeys(range(8))
            return types.SimpleNamespace(topics={topic: types.SimpleNamespace(error=None, partitions=partitions)})

    started = time.monotonic()
    with pytest.raises(KafkaException):
        reader._watermarks(Leaderless([KafkaError.NOT_LEADER_FOR_PARTITION] * 1000))
    assert time.monotonic() - started < 2.0


def test_a_capture_that_opens_with_thousands_of_depth_updates_is_market_data(tmp_path, capsys):
    """A thin pair's capture may send 10,000 depth updates (17 minutes at 100 ms) before its first
    trade: it was left out of a folder as no market data. It is read on to its first tick; a capture
    with no tick at all is left out with a line saying what it holds."""
    from cli.inputs import data_files

    lines = gzip.open(WS / "spot_btcusdt_20240808.gz", "rt").read().splitlines()
    depth = [line.split(" ", 1)[1] for line in lines if "@depth" in line]
    start = int(lines[0].split(" ", 1)[0])
    opening = [f"{start - (12_000 - i) * 100_000_000} {depth[i % len(depth)]}" for i in range(12_000)]
    late, only = tmp_path / "spot_btcusdt_late.gz", tmp_path / "spot_btcusdt_depth.gz"
    for path, text in ((late, opening + lines[:2000]), (only, opening)):
        with gzip.open(path, "wt") as out:
            out.write("\n".join(text) + "\n")
    assert holds_ticks(late) and not holds_ticks(only)
    assert data_files([str(tmp_path)], "evaluate") == [late]
    assert (f"livelearn: {only}: Binance messages but no tick in the whole file (depth_update 12,000): left out"
            in capsys.readouterr().err)
