"""History download (REST paging, rate limits, dump format) and the live handler on recorded payloads."""

from __future__ import annotations

import asyncio
import gzip
import json
import time

import pytest

from connectors.binance_live import LiveConfig, LiveHandler, run_live, socket_routes, stream_names
from connectors.binance_rest import RateLimiter, download_agg_trades, fetch_agg_trades, make_client, parse_day
from connectors.recorded import read_file
from tests.binance_server import (
    BinanceREST,
    BinanceWS,
    capture_messages,
    dump_rows,
    rest_agg_trade,
    rest_kline,
    usd_m_route,
)
from tests.conftest import DATA, livelearn

SPOT = DATA / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-01.zip"
FUTURES = DATA / "binance" / "klines" / "um" / "BTCUSDT-1m-2022-09-05.zip"
CAPTURE = DATA / "binance" / "ws" / "cryptofeed_BINANCE_FUTURES.ws.1.0"
SPOT_CAPTURE = DATA / "binance" / "ws" / "spot_btcusdt_20240808.gz"


def sushi_agg_trades() -> list[dict]:
    return [m["data"] for m in capture_messages(CAPTURE) if m["stream"] == "sushiusdt@aggTrade"]


@pytest.fixture
def rest():
    server = BinanceREST(klines={"BTCUSDT": [rest_kline(r) for r in dump_rows(SPOT)]},
                         agg_trades={"SUSHIUSDT": [rest_agg_trade(d) for d in sushi_agg_trades()]})
    yield server
    server.close()


def test_history_klines_page_through_rest_and_write_the_dump_byte_for_byte(rest, tmp_path):
    result = livelearn("history", "BTCUSDT", "--interval", "1m", "--start", "2020-01-01", "--end", "2020-01-02",
                       "--out", str(tmp_path), "--quiet", env={"LIVELEARN_BINANCE_REST_URL": rest.url}, timeout=60)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "spot" / "BTCUSDT-1m-2020-01-01.csv"
    assert "wrote 1440 rows" in result.stdout and "2 requests" in result.stdout
    original = "\n".join(",".join(row) for row in dump_rows(SPOT)) + "\n"
    assert path.read_text() == original
    assert [r for r in rest.requests if "/api/v3/klines" in r] == rest.requests  # spot endpoint, paged twice
    # replay reads the download like a dump: 1440 kline ticks, equal to those of the original zip
    assert [i.tick for i in read_file(path)] == [i.tick for i in read_file(SPOT)]


def test_history_keeps_the_spot_and_the_futures_day_of_one_name_apart(rest, tmp_path):
    """Binance names a USD-M perpetual like its spot pair: both days went to ``<out>/BTCUSDT-1m-<day>.csv``
    and the second download overwrote the first. Each market now has its folder (spot/, um/, as on
    data.binance.vision), and ``replay`` of the whole tree refuses to make one series of them (exit 2,
    before it needs a broker; none listens at the address given)."""
    env = {"LIVELEARN_BINANCE_REST_URL": rest.url}
    for market in ("spot", "futures"):
        result = livelearn("history", "BTCUSDT", "--market", market, "--start", "2020-01-01", "--end", "2020-01-02",
                           "--out", str(tmp_path), "--quiet", env=env, timeout=60)
        assert result.returncode == 0, result.stderr
    spot, futures = tmp_path / "spot" / "BTCUSDT-1m-2020-01-01.csv", tmp_path / "um" / "BTCUSDT-1m-2020-01-01.csv"
    assert [i.tick for i in read_file(spot)] == [i.tick for i in read_file(SPOT)]
    assert futures.read_text().startswith("open_time,") and not spot.read_text().startswith("open_time,")
    replay = livelearn("replay", "--quiet", str(tmp_path), env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, timeout=60)
    assert replay.returncode == 2 and "hold BTCUSDT of two markets (spot, um)" in replay.stderr


def test_history_window_end_is_exclusive_and_futures_files_have_a_header(tmp_path):
    rows = dump_rows(FUTURES)
    server = BinanceREST(klines={"BTCUSDT": [rest_kline(r) for r in rows]}, agg_trades={})
    try:
        result = livelearn("history", "BTCUSDT", "--market", "futures", "--start", "2022-09-05T01:00",
                           "--end", "2022-09-05T02:00", "--out", str(tmp_path), "--quiet",
                           env={"LIVELEARN_BINANCE_REST_URL": server.url}, timeout=60)
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "um" / "BTCUSDT-1m-2022-09-05.csv").read_text().splitlines()
    assert lines[0].startswith("open_time,open,high")
    assert len(lines) == 61 and lines[1].startswith("1662339600000,") and lines[-1].startswith("1662343140000,")
    assert all("/fapi/v1/klines" in r for r in server.requests)


def test_coin_margined_history_pages_through_dapi_and_reads_back_like_a_coin_m_dump(tmp_path):
    """``--market coin``: COIN-M klines from ``/dapi/v1/klines`` (rows built from the shipped USD-M day's
    real prices, volumes recast as contracts), written with the COIN-M dump header, so replay takes the
    base-asset columns as the traded volume, tick for tick what it reads from the same rows as a dump."""
    import zipfile

    from tests.binance_server import COIN_KLINE_HEADER, coin_margined_rows

    rows = coin_margined_rows([i.tick for i in read_file(FUTURES)])
    server = BinanceREST(klines={"BTCUSD_PERP": [rest_kline(r) for r in rows]}, agg_trades={})
    try:
        result = livelearn("history", "btcusd_perp", "--market", "coin", "--start", "2022-09-05",
                           "--end", "2022-09-06", "--out", str(tmp_path), "--quiet",
                           env={"LIVELEARN_BINANCE_REST_URL": server.url}, timeout=60)
        wrong = livelearn("history", "BTCUSD_PERP", "--market", "futures", "--start", "2022-09-05",
                          "--end", "2022-09-06", "--out", str(tmp_path / "no"),
                          env={"LIVELEARN_BINANCE_REST_URL": server.url}, timeout=60)
        spot_symbol = livelearn("history", "BTCUSDT", "--market", "coin", "--start", "2022-09-05",
                                "--end", "2022-09-06", "--out", str(tmp_path / "no"),
                                env={"LIVELEARN_BINANCE_REST_URL": server.url}, timeout=60)
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    assert "wrote 1440 rows" in result.stdout
    assert server.requests and all("/dapi/v1/klines" in r for r in server.requests)
    path = tmp_path / "cm" / "BTCUSD_PERP-1m-2022-09-05.csv"
    lines = path.read_text().splitlines()
    assert lines[0] == COIN_KLINE_HEADER and lines[1:] == [",".join(row) for row in rows]
    dump = tmp_path / "BTCUSD_PERP-1m-2022-09-05.zip"
    with zipfile.ZipFile(dump, "w") as archive:
        archive.writestr(dump.with_suffix(".csv").name, "\n".join(lines) + "\n")
    ticks = [i.tick for i in read_file(path)]
    assert len(ticks) == 1440 and ticks == [i.tick for i in read_file(dump)]
    assert ticks[0]["quantity"] == float(rows[0][7]) and ticks[0]["quote_volume"] is None
    for refused, text in ((wrong, "BTCUSD_PERP is a COIN-M contract: use --market coin"),
                          (spot_symbol, "BTCUSDT is not a COIN-M contract")):
        assert refused.returncode == 2 and text in refused.stderr and "Traceback" not in refused.stderr
    assert len(server.requests) == 2  # the refused ones asked nothing
    assert not (tmp_path / "no").exists()


def test_agg_trade_history_and_gap_fetch(rest, tmp_path):
    trades = sushi_agg_trades()
    limiter = RateLimiter(make_client(rest.url))
    path, rows = download_agg_trades(limiter, "SUSHIUSDT", trades[0]["T"], trades[-1]["T"] + 1, tmp_path,
                                     progress=False)
    assert rows == len(trades)
    ticks = [i.tick for i in read_file(path)]
    assert [t["sequence_id"] for t in ticks] == [d["a"] for d in trades]
    assert [t["price"] for t in ticks] == [float(d["p"]) for d in trades]
    gap = fetch_agg_trades(limiter, "SUSHIUSDT", trades[3]["a"], trades[5]["a"])
    assert [g["a"] for g in gap] == [d["a"] for d in trades[3:6]]


def test_rate_limits_wait_for_the_next_minute_and_retry_refusals(rest):
    waits: list[float] = []
    limiter = RateLimiter(make_client(rest.url), weight_budget=50, sleep=waits.append, log=lambda _: None)
    rest.refuse_next = 2
    first = sushi_agg_trades()[0]["a"]
    assert len(fetch_agg_trades(limiter, "SUSHIUSDT", first, first + 1)) == 2
    assert limiter.retries == 2 and waits[:2] == [0.0, 0.0]  # Retry-After: 0
    rest.used_weight = 60
    fetch_agg_trades(limiter, "SUSHIUSDT", first, first)
    assert limiter.waits == 1 and 0 < waits[-1] <= 61
    rest.refuse_next = 10
    from binance.exceptions import BinanceAPIException
    with pytest.raises(BinanceAPIException):
        fetch_agg_trades(RateLimiter(make_client(rest.url), max_retries=1, sleep=lambda _: None,
                                     log=lambda _: None), "SUSHIUSDT", first, first)


def test_history_bad_arguments_and_unreachable_rest_are_one_line(tmp_path):
    bad = livelearn("history", "BTCUSDT", "--start", "2020-13-01", "--end", "2020-01-02", "--out", str(tmp_path))
    assert bad.returncode == 2 and "not a date" in bad.stderr and "Traceback" not in bad.stderr
    down = livelearn("history", "BTCUSDT", "--start", "2020-01-01", "--end", "2020-01-02", "--out", str(tmp_path),
                     env={"LIVELEARN_BINANCE_REST_URL": "http://127.0.0.1:9"}, timeout=60)
    assert down.returncode == 2 and "cannot reach Binance REST at http://127.0.0.1:9" in down.stderr
    assert "Traceback" not in down.stderr
    assert list(tmp_path.iterdir()) == []  # no file, not even an empty partial one


def test_live_handler_on_the_recorded_futures_capture():
    handler = LiveHandler()
    messages = capture_messages(CAPTURE)
    ticks = []
    for number, message in enumerate(messages):
        out = handler.handle(message, receive_time_ms=number)
        assert out.error is None and out.gap is None and not out.duplicate
        ticks += out.ticks
    aggs = [t for t in ticks if t["kind"] == "AGG_TRADE"]
    recorded = [m["data"] for m in messages if m["stream"].endswith("@aggTrade")]
    assert [(t["symbol"], t["sequence_id"], t["price"], t["quantity"], t["event_time_ms"]) for t in aggs] == [
        (d["s"], d["a"], float(d["p"]), float(d["q"]), d["T"]) for d in recorded]
    assert {t["kind"] for t in ticks} >= {"AGG_TRADE", "BOOK_TICKER", "KLINE"}
    assert handler.counts["skipped"] > 0  # depth updates and open klines are not ticks


# Frames of wss://fstream.binance.com/market recorded byte for byte on 2026-08-08, after the route
# split: aggregate trades carry two fields more than the shipped capture's (``nq``, ``st``). Published
# as recorded frames in a public cryptofeed test of the USD-M base paths (not shipped in ../shared).
RECORDED_2026 = (
    '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1786171884624,"a":3404749954,"s":"BTCUSDT",'
    '"p":"64990.90","q":"0.002","nq":"0.002","f":7960913511,"l":7960913511,"T":1786171884471,"m":true,"st":1}}',
    '{"stream":"btcusdt@markPrice","data":{"e":"markPriceUpdate","E":1786171884000,"s":"BTCUSDT",'
    '"p":"64991.37858696","ap":"64991.37858696","P":"64980.01344384","i":"65016.05673913","r":"0.00003936",'
    '"T":1786176000000,"st":1}}',
    '{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1786173360960,"s":"BTCUSDT","k":{"t":1786173300000, '
    '"T":1786173359999, "s":"BTCUSDT", "i":"1m", "f":7960920076, "L":7960920277, "o":"64970.80", "c":"64969.40", '
    '"h":"64970.90", "l":"64969.40", "v":"9.090", "n":194, "x":true, "q":"590577.96880", "V":"3.460", '
    '"Q":"224795.09440", "B":"0"}}}',
    '{"stream":"stgusdt@forceOrder","data":{"e":"forceOrder","E":1786172557615,"o":{"s":"STGUSDT","S":"SELL",'
    '"o":"LIMIT","f":"IOC","q":"5","p":"0.1336000","ap":"0.1355000","X":"FILLED","l":"5","z":"5",'
    '"T":1786172556607,"ps":"STGUSDT","st":1}}}',
)


def test_live_handler_on_usd_m_frames_recorded_after_the_route_split():
    handler = LiveHandler()
    outs = [handler.handle(json.loads(frame), 0) for frame in RECORDED_2026]
    assert [o.rejected for o in outs] == [None] * 4 and handler.counts["skipped"] == 2  # mark price, liquidation
    agg, kline = outs[0].ticks[0], outs[2].ticks[0]
    assert (agg["kind"], agg["sequence_id"], agg["price"], agg["quantity"], agg["event_time_ms"]) == (
        "AGG_TRADE", 3404749954, 64990.9, 0.002, 1786171884471)
    assert agg["is_buyer_maker"] is True
    assert (kline["kind"], kline["price"], kline["high"], kline["quantity"], kline["taker_buy_volume"],
            kline["trade_count"], kline["event_time_ms"]) == ("KLINE", 64969.4, 64970.9, 9.09, 3.46, 194, 1786173359999)


def usd_m_trade(trade_id: int, price: str, quantity: str, kind: str | None) -> dict:
    """A USD-M trade-stream frame as recorders of it log them (``X`` and ``st`` after the route split)."""
    data = {"e": "trade", "E": 1786171884624 + trade_id, "T": 1786171884471 + trade_id, "s": "BTCUSDT",
            "t": trade_id, "p": price, "q": quantity, "m": True, "st": 1}
    return {"stream": "btcusdt@trade", "data": data if kind is None else {**data, "X": kind}}


def test_usd_m_trades_off_the_book_are_skipped_with_their_ids_and_not_counted_as_gaps(tmp_path):
    """Binance leaves insurance-fund and ADL trades out of aggregate trades and REST ``/trades``; the
    trade stream sends them, and placeholders with price and quantity 0 (``X`` "NA" or "INSURANCE_FUND",
    the shapes public recorders of the stream accept as observed). They were published as ticks: the
    placeholders at price 0, each refused by the worker, the fund's fills as market trades."""
    frames = [usd_m_trade(1, "64990.90", "0.002", "MARKET"), usd_m_trade(2, "0", "0", "NA"),
              usd_m_trade(3, "64990.80", "0.150", "LIQUIDATION"), usd_m_trade(4, "0", "0", "INSURANCE_FUND"),
              usd_m_trade(5, "64850.00", "1.000", "INSURANCE_FUND"), usd_m_trade(6, "64850.00", "0.500", "ADL"),
              usd_m_trade(7, "64990.70", "0.010", "MARKET"), usd_m_trade(8, "0", "0", "MARKET"),
              usd_m_trade(10, "64990.60", "0.010", None)]
    handler = LiveHandler("futures")
    outs = [handler.handle(frame, 0) for frame in frames]
    assert [t["sequence_id"] for o in outs for t in o.ticks] == [1, 3, 7, 10]
    assert all(t["price"] > 0 for o in outs for t in o.ticks)
    assert [o.rejected for o in outs] == [None] * len(frames) and not any(o.duplicate for o in outs)
    assert handler.counts["off_book_trades"] == 5
    assert handler.counts["gaps"] == 1 and handler.counts["trade_ids_missing"] == 1  # id 9 only
    assert handler.handle(usd_m_trade(4, "0", "0", "NA"), 0).duplicate  # a reconnect's overlap
    unknown = handler.handle(usd_m_trade(11, "64990.50", "0.010", "BLOCK"), 0)
    assert unknown.rejected[0] == "unknown_trade_type" and "'BLOCK'" in unknown.rejected[1] and not unknown.ticks
    capture = tmp_path / "BTCUSDT-trades-capture.jsonl"
    capture.write_text("".join(json.dumps(frame) + "\n" for frame in frames))
    items = read_file(capture)
    assert [i.tick["sequence_id"] for i in items if i.tick] == [1, 3, 7, 10]
    assert sorted(i.reason for i in items if not i.tick) == [
        "empty_trade", "off_book_trade:ADL", "off_book_trade:INSURANCE_FUND", "off_book_trade:INSURANCE_FUND",
        "off_book_trade:NA"]


def test_live_handler_finds_gaps_drops_duplicates_and_survives_errors():
    handler = LiveHandler()
    messages = [m for m in capture_messages(CAPTURE) if m["stream"] == "sushiusdt@aggTrade"]
    handler.handle(messages[0], 0)
    handler.handle(messages[1], 0)
    out = handler.handle(messages[5], 0)  # 2, 3 and 4 lost
    assert (out.gap.first_id, out.gap.last_id) == (messages[2]["data"]["a"], messages[4]["data"]["a"])
    assert [t["sequence_id"] for t in out.ticks] == [messages[5]["data"]["a"]]
    assert handler.handle(messages[3], 0).duplicate  # older than the last applied id
    error = handler.handle({"e": "error", "type": "ConnectionClosedError", "m": "closed"}, 0)
    assert error.error.startswith("ConnectionClosedError") and not error.ticks
    refused = handler.handle({"error": {"code": 2, "msg": "Invalid request"}, "id": 1}, 0)
    assert refused.error is None and refused.rejected[0] == "exchange_error" and "Invalid request" in refused.rejected[1]
    broken = handler.handle({"stream": "x@trade", "data": {"e": "trade", "s": "BTCUSDT", "p": "abc", "q": "1",
                                                            "T": 1, "t": 5, "m": True}}, 0)
    assert broken.rejected[0] == "malformed_payload" and "'p'" in broken.rejected[1]
    assert handler.counts["gaps"] == 1 and handler.counts["duplicates"] == 1 and handler.counts["socket_errors"] == 1
    assert handler.counts["exchange_errors"] == 1
    # Binance's shutdown notice, in the shapes its documentation gives (streams; WebSocket API's "event"),
    # bare or in the combined stream's wrapper: a reconnect, not a dead letter.
    for notice in ({"e": "serverShutdown", "E": 1770123456789}, {"event": {"e": "serverShutdown", "E": 1770123456789}},
                   {"stream": "btcusdt@trade", "data": {"e": "serverShutdown", "E": 1770123456789}}):
        out = handler.handle(notice, 0)
        assert out.error.startswith("serverShutdown at 1770123456789") and out.rejected is None and not out.ticks
    assert handler.counts["server_shutdowns"] == 3 and handler.counts["socket_errors"] == 1


class SlowSink:
    """Keeps what ``run_live`` gives it, blocking the event loop a moment on each tick as a busy worker
    machine does (the Kafka path is tested in tests/integration/test_live_kafka.py)."""

    def __init__(self):
        self.sent, self.rejects = [], []

    @property
    def produced(self) -> int:
        return len(self.sent)

    def send(self, record, key, timestamp_ms):
        time.sleep(0.002)
        self.sent.append(record)

    def waiting(self, seconds):
        pass

    def reject(self, code, reason, origin, line, raw):
        self.rejects.append((code, reason))

    def flush(self):
        pass


def test_a_burst_and_a_failed_backfill_lose_no_tick_and_keep_the_connection():
    """The whole recorded futures capture (1,535 messages) sent at once to a consumer that takes 2 ms a
    tick, one CTKUSDT aggTrade lost on the way, and REST refusing CTKUSDT (Binance's "Invalid symbol"),
    from a server that routes USD-M streams as Binance does since 2026-04-23 (book tickers on /public,
    aggregate trades and klines on /market). python-binance's read loop used to drop a message and end
    the connection once 100 waited, losing the rest of the burst; a REST backfill that failed raised
    out of the read loop, dropping the tick that revealed the gap; and one socket on /market received
    no book ticker at all. Now every other tick arrives, each stream in its order, over one connection
    a route, and the gap is counted and dead-lettered with the ids that stay missing."""
    messages = capture_messages(CAPTURE)
    ctk = [i for i, m in enumerate(messages) if m["stream"] == "ctkusdt@aggTrade"]
    lost = messages[ctk[3]]["data"]["a"]
    sent = [m for i, m in enumerate(messages) if i != ctk[3]]
    expected_handler = LiveHandler()
    expected = [t for m in sent for t in expected_handler.handle(m, 0).ticks]
    ws = BinanceWS([sent], routed=True)
    rest = BinanceREST(klines={}, agg_trades={})
    sink = SlowSink()
    config = LiveConfig(symbols=["SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"],
                        streams=["aggTrade", "kline_1m", "bookTicker"], market="futures", ws_url=ws.url,
                        rest_url=rest.url, max_ticks=len(expected), max_runtime_s=20)
    try:
        counts = asyncio.run(run_live(config, sink))
    finally:
        ws.close()
        rest.close()
    assert ws.connections == 2 and counts["socket_errors"] == 0 and counts["reconnects"] == 0
    assert sorted(path.split("?")[0] for path in ws.paths) == ["/market/stream", "/public/stream"]
    assert len(sink.sent) == len(expected)

    def by_stream(ticks):  # two connections: each stream keeps its order, the streams interleave as they come
        streams: dict = {}
        for t in ticks:
            streams.setdefault((t["symbol"], t["kind"]), []).append((t.get("sequence_id"), t["event_time_ms"]))
        return streams
    assert by_stream(sink.sent) == by_stream(expected)
    assert {t["kind"] for t in sink.sent} == {"AGG_TRADE", "BOOK_TICKER", "KLINE"}
    assert counts["gaps"] == 1 and counts["backfill_failed"] == 1
    assert any("/fapi/v1/aggTrades" in r and "CTKUSDT" in r for r in rest.requests)
    [(code, reason)] = sink.rejects
    assert code == "backfill_failed" and f"aggTrade ids {lost}..{lost} of CTKUSDT missing" in reason
    assert "Invalid symbol" in reason


def test_usd_m_streams_go_to_the_route_that_serves_them_and_other_markets_keep_one_socket():
    names = stream_names(["BTCUSDT", "ETHUSDT"], ["trade", "aggTrade", "kline_1m", "bookTicker"])
    assert socket_routes("futures", names) == [
        ("public", ["btcusdt@trade", "btcusdt@bookTicker", "ethusdt@trade", "ethusdt@bookTicker"]),
        ("market", ["btcusdt@aggTrade", "btcusdt@kline_1m", "ethusdt@aggTrade", "ethusdt@kline_1m"])]
    assert socket_routes("futures", ["btcusdt@aggTrade"]) == [("market", ["btcusdt@aggTrade"])]
    assert socket_routes("coin", ["btcusd_perp@aggTrade", "btcusd_perp@bookTicker"]) == [
        (None, ["btcusd_perp@aggTrade", "btcusd_perp@bookTicker"])]
    # The test server's routes are written out apart from the connector's table: they agree.
    for route, group in socket_routes("futures", names):
        assert {usd_m_route({"stream": name}) for name in group} == {route}


def test_a_stream_that_sends_nothing_is_named_once_a_connection():
    """A stream on a route that does not serve it is accepted and silent, as is a pair that does not
    trade: neither raises, so the connector says which subscribed streams sent nothing in the first
    ``stall_s`` seconds of a connection (here ETHUSDT's, which the script does not have)."""
    sushi = [m for m in capture_messages(CAPTURE) if m["stream"] in ("sushiusdt@aggTrade", "sushiusdt@bookTicker")]
    ws = BinanceWS([sushi], routed=True)
    config = LiveConfig(symbols=["SUSHIUSDT", "ETHUSDT"], streams=["aggTrade", "bookTicker"], market="futures",
                        ws_url=ws.url, rest_url="http://127.0.0.1:9", stall_s=1.0, max_runtime_s=2.5)
    sink = SlowSink()
    try:
        with pytest.MonkeyPatch.context() as patch:
            warnings: list[str] = []
            patch.setattr("connectors.binance_live.log.warning", lambda text, *a: warnings.append(text % a))
            counts = asyncio.run(run_live(config, sink))
    finally:
        ws.close()
    silent = [w for w in warnings if w.startswith("no message in 1 s on")]
    assert silent and "ethusdt@aggTrade, ethusdt@bookTicker (" in silent[0] and "sushiusdt" not in silent[0]
    assert counts["silent_streams"] >= 2 and {t["symbol"] for t in sink.sent} == {"SUSHIUSDT"}
    assert {t["kind"] for t in sink.sent} == {"AGG_TRADE", "BOOK_TICKER"}


def test_live_handler_on_the_recorded_spot_trades_counts_trade_id_gaps():
    handler = LiveHandler()
    trades = []
    with gzip.open(SPOT_CAPTURE, "rt") as handle:
        for line in handle:
            receive_ns, text = line.split(" ", 1)
            message = json.loads(text)
            if message.get("stream", "").endswith("@trade"):
                trades.append(message)
    for message in trades[:50] + trades[53:100]:
        handler.handle(message, 0)
    # Spot: the gap is handed back to be fetched; futures: counted (their old trades are not fetched).
    futures = LiveHandler("futures")
    gaps = [g for m in trades[:50] + trades[53:100] if (g := futures.handle(m, 0).gap)]
    assert handler.counts["gaps"] == 1 and handler.counts["trade_ids_missing"] == 0
    assert gaps == [] and futures.counts["gaps"] == 1 and futures.counts["trade_ids_missing"] == 3


def test_spot_trades_a_connection_lost_are_fetched_over_rest_before_the_next():
    """Spot trade ids missing between two trades (a message lost in a reconnect) come from
    /api/v3/historicalTrades, which needs no API key since 2023-07-11, before the trade that revealed
    them; they were only counted before."""
    from tests.binance_server import rest_trade

    with gzip.open(SPOT_CAPTURE, "rt") as handle:
        trades = [m for m in (json.loads(line.split(" ", 1)[1]) for line in handle)
                  if m.get("stream", "").endswith("@trade")][:40]
    ws = BinanceWS([trades[:20] + ["close"], trades[23:] + ["stall"]])
    rest = BinanceREST(klines={}, agg_trades={}, trades={"BTCUSDT": [rest_trade(m["data"]) for m in trades]})
    sink = SlowSink()
    config = LiveConfig(symbols=["BTCUSDT"], streams=["trade"], ws_url=ws.url, rest_url=rest.url, max_ticks=40,
                        max_runtime_s=20)
    try:
        counts = asyncio.run(run_live(config, sink))
    finally:
        ws.close()
        rest.close()
    assert [t["sequence_id"] for t in sink.sent] == [m["data"]["t"] for m in trades]
    assert [t["source"] for t in sink.sent[20:23]] == ["binance-rest"] * 3 and counts["backfilled"] == 3
    backfilled, streamed = sink.sent[21], LiveHandler().handle(trades[21], 0).ticks[0]
    assert {k: v for k, v in backfilled.items() if k not in ("source", "receive_time_ms", "quote_volume")} == {
        k: v for k, v in streamed.items() if k not in ("source", "receive_time_ms", "quote_volume")}
    assert any(r.startswith("/api/v3/historicalTrades") for r in rest.requests) and sink.rejects == []


def test_stream_names_and_days():
    assert stream_names(["BTCUSDT"], ["trade", "kline_1m"]) == ["btcusdt@trade", "btcusdt@kline_1m"]
    with pytest.raises(ValueError, match="unknown stream depth"):
        stream_names(["BTCUSDT"], ["depth"])
    assert stream_names(["BTCUSD_PERP"], ["kline_5m"]) == ["btcusd_perp@kline_5m"]
    for symbols, streams, message in ((["BTCUSDT"], ["kline_7m"], "unknown stream kline_7m"),
                                      ([], ["trade"], "at least one symbol"),
                                      (["BTCUSDT"], [], "at least one symbol and one stream"),
                                      (["BTC/USDT"], ["trade"], "not a Binance symbol: 'BTC/USDT'")):
        with pytest.raises(ValueError, match=message):
            stream_names(symbols, streams)
    assert parse_day("2024-01-01") == 1_704_067_200_000


def test_book_tickers_received_on_a_clock_behind_binances_are_not_older_than_the_trades_before_them():
    """The spot capture was recorded on a clock 1.27 s behind Binance's. Fed to a worker's pipeline in
    the order received, as `live` publishes, its book tickers (stamped when received: they carry no
    time) were older than the trades before them, and 27,945 of 28,040 were dead-lettered as late. The
    handler moves receive times forward by how far behind the clock is (the least receive - send of
    the messages that carry Binance's send time), and not at all on a right clock."""
    from agents.app import pipeline_config
    from agents.settings import Settings
    from streams.pipeline import PartitionPipeline

    with gzip.open(SPOT_CAPTURE, "rt") as lines:
        received = [(int(stamp) // 1_000_000, json.loads(body)) for stamp, _, body in
                    (line.partition(" ") for line in lines)][:12_000]
    for ahead_ms in (0, 1_300):  # as recorded (behind), and the same clock set 30 ms ahead of Binance's
        handler, pipeline = LiveHandler(), PartitionPipeline(pipeline_config(Settings()))
        kinds, late, last_trade = {"TRADE": 0, "BOOK_TICKER": 0}, 0, 0
        for receive_ms, message in received:
            for tick in handler.handle(message, receive_ms + ahead_ms).ticks:
                kinds[tick["kind"]] += 1
                step = pipeline.on_tick(tick)
                late += step.rejection is not None and step.rejection[1] == "late_event"
                if tick["kind"] == "TRADE":
                    last_trade = tick["event_time_ms"]
                else:
                    assert tick["receive_time_ms"] == receive_ms + ahead_ms
                    assert tick["event_time_ms"] >= last_trade or not handler.clock.lows
        assert late == 0 and kinds["TRADE"] > 2_000 and kinds["BOOK_TICKER"] > 8_000
        if ahead_ms == 0:
            assert 1_250 < handler.clock.behind_ms < 1_300 and handler.counts["clock_corrected"] > 8_000
        else:
            assert handler.clock.behind_ms == 0 and handler.counts["clock_corrected"] == 0


def received_as_live(path) -> list[dict]:
    """The ticks `live`'s handler gives a capture's lines, fed in the order received."""
    with gzip.open(path, "rt") as lines:
        received = [(int(stamp) // 1_000_000, json.loads(body)) for stamp, _, body in
                    (line.partition(" ") for line in lines)]
    handler = LiveHandler()
    return [tick for receive_ms, message in received for tick in handler.handle(message, receive_ms).ticks]


def test_a_capture_read_in_the_order_received_gives_the_ticks_live_gave():
    """Sorted by event time (the default) a capture's spot book tickers keep the recorder's clock, and
    with them moved to Binance's a trade sorts before the book ticker showing its own impact; neither
    is what a worker reading `live` met. Read in the order received, the capture gives `live`'s
    ticks, in `live`'s order, each item at its receive time in Binance's clock."""
    from connectors.recorded import open_file

    live = received_as_live(SPOT_CAPTURE)
    items = list(open_file(SPOT_CAPTURE, order="received"))
    assert [item.tick for item in items if item.tick is not None] == live
    times = [item.event_time_ms for item in items]
    assert times == sorted(times)
    sorted_ticks = [item.tick for item in open_file(SPOT_CAPTURE) if item.tick is not None]
    assert sorted_ticks == [item.tick for item in read_file(SPOT_CAPTURE) if item.tick is not None] != live
    books = [t for t in live if t["kind"] == "BOOK_TICKER"]
    assert sum(t["event_time_ms"] - t["receive_time_ms"] > 1_250 for t in books) > 0.99 * len(books)
    with pytest.raises(ValueError, match="unknown order"):
        open_file(SPOT_CAPTURE, order="arrival")


def kline_message(row: list[str], symbol: str = "BTCUSDT") -> dict:
    """A closed one-minute kline event as Binance's combined stream sends it, from a dump row."""
    k = {"t": int(row[0]), "T": int(row[6]), "s": symbol, "i": "1m", "f": 1, "L": 2, "o": row[1], "h": row[2],
         "l": row[3], "c": row[4], "v": row[5], "n": int(row[8]), "x": True, "q": row[7], "V": row[9],
         "Q": row[10], "B": "0"}
    return {"stream": f"{symbol.lower()}@kline_1m", "data": {"e": "kline", "E": int(row[6]) + 1, "s": symbol, "k": k}}


@pytest.mark.parametrize("rest_answers", [True, False])
def test_klines_a_reconnect_lost_are_fetched_over_rest_before_the_next(rest_answers):
    """A reconnect across two bars' closes: their kline events never come, and the next bar's close
    reveals them. They were lost without a word; now they come over REST before that bar, in order,
    or, when REST fails, the loss is counted and dead-lettered with the bars that stay missing. A bar
    sent again after a reconnect is dropped as a duplicate."""
    rows = dump_rows(SPOT)[:12]
    messages = [kline_message(row) for row in rows]
    ws = BinanceWS([messages[:6] + ["close"], [messages[5], *messages[8:]] + ["stall"]])
    rest = BinanceREST(klines={"BTCUSDT": [rest_kline(row) for row in rows]} if rest_answers else {}, agg_trades={})
    sink = SlowSink()
    config = LiveConfig(symbols=["BTCUSDT"], streams=["kline_1m"], ws_url=ws.url, rest_url=rest.url,
                        max_ticks=12 if rest_answers else 10, max_runtime_s=20)
    try:
        counts = asyncio.run(run_live(config, sink))
    finally:
        ws.close()
        rest.close()
    expected = [t for t in (i.tick for i in read_file(SPOT)) if t is not None][:12]
    got = [(t["event_time_ms"], t["price"], t["source"]) for t in sink.sent]
    assert counts["reconnects"] == 1 and counts["duplicates"] == 1
    assert counts["kline_gaps"] == 1 and counts["klines_missing"] == 2
    if rest_answers:
        assert [g[:2] for g in got] == [(t["event_time_ms"], t["price"]) for t in expected]
        assert [g[2] for g in got[6:8]] == ["binance-rest", "binance-rest"] and counts["klines_backfilled"] == 2
        assert sink.rejects == []
    else:
        assert [g[0] for g in got] == [t["event_time_ms"] for i, t in enumerate(expected) if i not in (6, 7)]
        [(code, reason)] = sink.rejects
        assert code == "backfill_failed" and f"1m klines of BTCUSDT opening {int(rows[6][0])}.." in reason
