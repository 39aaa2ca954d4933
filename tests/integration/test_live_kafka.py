"""`livelearn live` end to end: python-binance websockets -> ticks topic on the real broker.

The websocket server plays the recorded futures capture over three connections a route (USD-M book tickers
on /public, aggregate trades and klines on /market, as Binance serves them since 2026-04-23): the first
loses three SUSHIUSDT aggTrades and then drops the connection, the second answers with a Binance error
message and then goes silent (the watchdog must reconnect), the third goes silent after its messages (the
watchdog must reconnect). The lost trades come back over REST.
With ``--batch 50`` the same ticks arrive in records of the tick-batches topic instead.
"""

from __future__ import annotations

import pytest

from connectors.binance import normalise_ws
from connectors.binance_live import LiveHandler
from schemas.codec import AvroCodec
from tests.binance_server import BinanceREST, BinanceWS, capture_messages, rest_agg_trade
from tests.conftest import DATA, livelearn
from tests.kafka_io import read_topic

pytestmark = pytest.mark.integration

CAPTURE = DATA / "binance" / "ws" / "cryptofeed_BINANCE_FUTURES.ws.1.0"


@pytest.mark.parametrize("batch", [1, 50])
def test_live_feed_reconnects_backfills_and_produces_every_recorded_tick(pipeline_env, batch):
    messages = capture_messages(CAPTURE)[:400]
    sushi = [i for i, m in enumerate(messages) if m["stream"] == "sushiusdt@aggTrade"]
    lost = set(sushi[2:5])
    kept = [(i, m) for i, m in enumerate(messages) if i not in lost]
    first, second = [m for i, m in kept if i < 200], [m for i, m in kept if i >= 200]
    ws = BinanceWS([first + ["close"], [{"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}],
                    second + ["stall"]], routed=True)
    rest = BinanceREST(klines={}, agg_trades={"SUSHIUSDT": [rest_agg_trade(m["data"]) for m in messages
                                                            if m["stream"] == "sushiusdt@aggTrade"]})
    env = {**pipeline_env, "LIVELEARN_BINANCE_WS_URL": ws.url, "LIVELEARN_BINANCE_REST_URL": rest.url,
           "LIVELEARN_LIVE_STALL_SECONDS": "2"}
    try:
        result = livelearn("live", "--market", "futures", "--symbols", "SUSHIUSDT,AKROUSDT,KEEPUSDT,CTKUSDT",
                           "--streams", "aggTrade,kline_1m,bookTicker", "--seconds", "14", "--quiet",
                           "--batch", str(batch), env=env, timeout=120)
    finally:
        ws.close()
        rest.close()
    assert result.returncode == 0, result.stderr[-3000:]
    summary = result.stdout
    assert "gaps 1" in summary and "backfilled 3" in summary
    assert "socket_errors" in summary  # the dropped connection
    assert "exchange_errors 1" in summary  # Binance's error message: dead-lettered, the stream goes on
    assert "stalls " in summary  # silent connections: the watchdog reconnected
    # first, error then silent, second then silent, and the watchdog's reconnect: two connections each
    assert ws.connections >= 8
    assert {p.split("&")[0] for p in ws.paths[:2]} == {
        "/market/stream?streams=sushiusdt@aggTrade/sushiusdt@kline_1m/akrousdt@aggTrade/akrousdt@kline_1m/"
        "keepusdt@aggTrade/keepusdt@kline_1m/ctkusdt@aggTrade/ctkusdt@kline_1m",
        "/public/stream?streams=sushiusdt@bookTicker/akrousdt@bookTicker/keepusdt@bookTicker/ctkusdt@bookTicker"}
    assert any("/fapi/v1/aggTrades" in r for r in rest.requests)

    expected_handler = LiveHandler()
    expected = [t for m in messages for t in expected_handler.handle(m, 0).ticks]
    if batch == 1:
        codec = AvroCodec.for_topic_schema("tick")
        produced = [codec.decode(m.value()) for m in read_topic(env["KAFKA_BOOTSTRAP_SERVERS"],
                                                               env["LIVELEARN_TOPIC_PREFIX"] + "ticks",
                                                               expect=len(expected), timeout=60)]
    else:
        codec = AvroCodec.for_topic_schema("tick_batch")
        batches = [codec.decode(m.value())["ticks"] for m in read_topic(env["KAFKA_BOOTSTRAP_SERVERS"],
                                                                       env["LIVELEARN_TOPIC_PREFIX"] + "tick-batches")]
        produced = [tick for ticks in batches for tick in ticks]
        assert 1 < len(batches) < len(produced) and max(map(len, batches)) <= batch
    assert f"produced {len(expected)} ticks" in summary
    assert len(produced) == len(expected)

    def identity(tick):
        return (tick["symbol"], tick["kind"], tick["event_time_ms"], tick["price"], tick["quantity"],
                tick.get("sequence_id"))

    assert sorted(map(identity, produced)) == sorted(map(identity, expected))
    backfilled = [t for t in produced if t["source"] == "binance-rest"]
    assert [t["sequence_id"] for t in backfilled] == [messages[i]["data"]["a"] for i in sorted(lost)]
    sushi_ids = [t["sequence_id"] for t in produced if t["symbol"] == "SUSHIUSDT" and t["kind"] == "AGG_TRADE"]
    assert sushi_ids == sorted(sushi_ids) and len(sushi_ids) == len(set(sushi_ids))  # in id order, once each
    assert normalise_ws(messages[sushi[0]])["price"] == float(messages[sushi[0]]["data"]["p"])


def test_coin_margined_live_feed_reads_dstream_backfills_from_dapi_and_counts_base_volumes(pipeline_env):
    """``--market coin``: the COIN-M combined stream (python-binance's dstream socket, no ``market/``
    path), gap backfill from ``/dapi/v1/aggTrades``, klines whose volume is the base asset's. No COIN-M
    capture ships here: the kline events carry the shipped USD-M day's real prices with volumes recast
    as contracts of 100 USD (tests.binance_server.coin_margined_rows), the aggTrade events are the
    recorded SUSHIUSDT ones under a COIN-M name."""
    from connectors.recorded import read_file
    from tests.binance_server import coin_margined_rows

    day = [i.tick for i in read_file(DATA / "binance" / "klines" / "um" / "BTCUSDT-1m-2022-09-05.zip")][:30]
    klines = []
    for row in coin_margined_rows(day):
        k = {"t": int(row[0]), "T": int(row[6]), "s": "BTCUSD_PERP", "i": "1m", "f": 1, "L": 2, "o": row[1],
             "h": row[2], "l": row[3], "c": row[4], "v": row[5], "n": int(row[8]), "x": True, "q": row[7],
             "V": row[9], "Q": row[10], "B": "0"}
        klines.append({"stream": "btcusd_perp@kline_1m",
                       "data": {"e": "kline", "E": int(row[6]) + 1, "s": "BTCUSD_PERP", "k": k}})
    trades = [{"stream": "sushiusd_perp@aggTrade", "data": {**m["data"], "s": "SUSHIUSD_PERP"}}
              for m in capture_messages(CAPTURE) if m["stream"] == "sushiusdt@aggTrade"][:20]
    messages = klines + trades
    lost = trades[3]
    ws = BinanceWS([[m for m in messages if m is not lost] + ["stall"]])
    rest = BinanceREST(klines={}, agg_trades={"SUSHIUSD_PERP": [rest_agg_trade(m["data"]) for m in trades]})
    expected_handler = LiveHandler()
    expected = [t for m in messages for t in expected_handler.handle(m, 0).ticks]
    env = {**pipeline_env, "LIVELEARN_BINANCE_WS_URL": ws.url, "LIVELEARN_BINANCE_REST_URL": rest.url}
    try:
        result = livelearn("live", "--market", "coin", "--symbols", "BTCUSD_PERP,SUSHIUSD_PERP",
                           "--streams", "aggTrade,kline_1m", "--max-ticks", str(len(expected)), "--seconds", "30",
                           "--quiet", env=env, timeout=120)
        refused = livelearn("live", "--market", "coin", "--symbols", "BTCUSDT", "--seconds", "1", env=env,
                            timeout=60)
    finally:
        ws.close()
        rest.close()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "gaps 1" in result.stdout and "backfilled 1" in result.stdout
    assert ws.paths[0].startswith("/stream?streams=btcusd_perp@aggTrade/btcusd_perp@kline_1m"), ws.paths
    assert rest.requests and all("/dapi/v1/aggTrades" in r for r in rest.requests)
    assert refused.returncode == 2 and "BTCUSDT is not a COIN-M contract" in refused.stderr
    assert ws.connections == 1  # the refused run opened no socket
    codec = AvroCodec.for_topic_schema("tick")
    produced = [codec.decode(m.value()) for m in read_topic(env["KAFKA_BOOTSTRAP_SERVERS"],
                                                           env["LIVELEARN_TOPIC_PREFIX"] + "ticks",
                                                           expect=len(expected), timeout=60)]
    key = ("symbol", "kind", "event_time_ms", "price", "quantity", "taker_buy_volume", "sequence_id")
    assert sorted(tuple(t[k] for k in key) for t in produced) == sorted(tuple(t[k] for k in key) for t in expected)
    coin_klines = [t for t in produced if t["kind"] == "KLINE"]
    assert len(coin_klines) == 30 and [t["quantity"] for t in coin_klines] == [float(m["data"]["k"]["q"])
                                                                             for m in klines]
    assert [t["sequence_id"] for t in produced if t["source"] == "binance-rest"] == [lost["data"]["a"]]


def test_a_symbol_suffix_names_usd_m_perpetuals_apart_from_the_spot_pairs(pipeline_env):
    """Binance names a USD-M perpetual like its spot pair (SUSHIUSDT on fstream and on the spot stream):
    in one ticks topic they would be one series. ``--symbol-suffix _PERP`` renames every tick sent,
    backfilled ones included, while the streams and REST are asked for Binance's own name; the key is
    the base asset's basis group, so the perpetual meets the spot pairs in one partition. A suffix that
    is not ``_`` and capitals or digits is refused before a socket opens."""
    trades = [m for m in capture_messages(CAPTURE) if m["stream"] == "sushiusdt@aggTrade"][:20]
    lost = trades[3]
    ws = BinanceWS([[m for m in trades if m is not lost] + ["stall"]])
    rest = BinanceREST(klines={}, agg_trades={"SUSHIUSDT": [rest_agg_trade(m["data"]) for m in trades]})
    env = {**pipeline_env, "LIVELEARN_BINANCE_WS_URL": ws.url, "LIVELEARN_BINANCE_REST_URL": rest.url}
    try:
        result = livelearn("live", "--market", "futures", "--symbols", "SUSHIUSDT", "--streams", "aggTrade",
                           "--symbol-suffix", "_perp", "--max-ticks", str(len(trades)), "--seconds", "30",
                           "--quiet", env=env, timeout=120)
        refused = livelearn("live", "--market", "futures", "--symbols", "SUSHIUSDT", "--symbol-suffix", "PERP",
                            "--seconds", "1", env=env, timeout=60)
    finally:
        ws.close()
        rest.close()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "backfilled 1" in result.stdout
    assert ws.paths[0] == "/market/stream?streams=sushiusdt@aggTrade", ws.paths
    assert rest.requests and all("symbol=SUSHIUSDT&" in r or r.endswith("symbol=SUSHIUSDT") for r in rest.requests)
    assert refused.returncode == 2 and "must be an underscore and capital letters" in refused.stderr
    assert ws.connections == 1  # the refused run opened no socket
    codec = AvroCodec.for_topic_schema("tick")
    messages = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"] + "ticks",
                          expect=len(trades), timeout=60)
    produced = [codec.decode(m.value()) for m in messages]
    assert {t["symbol"] for t in produced} == {"SUSHIUSDT_PERP"} and {m.key() for m in messages} == {b"SUSHI"}
    assert sorted(t["sequence_id"] for t in produced) == [m["data"]["a"] for m in trades]
    assert [t["sequence_id"] for t in produced if t["source"] == "binance-rest"] == [lost["data"]["a"]]
