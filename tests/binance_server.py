"""A local stand-in for Binance's public REST and websocket endpoints, answering with real data.

No machine here reaches Binance, and no recorded REST responses ship with the data, so the answers are
built from real payloads: kline rows of the shipped dumps (REST ``/klines`` returns the same 12 values
as the dump, prices as strings) and aggregate trades of the recorded futures websocket capture (REST
``/aggTrades`` has the websocket payload's letters without ``e``/``E``/``s``). Paging, limits, time
windows and the rate-limit headers follow Binance's documented behaviour; the connectors run their real
python-binance code against it over HTTP and websockets.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


def dump_rows(path: Path) -> list[list[str]]:
    with zipfile.ZipFile(path) as archive:
        text = archive.read(archive.namelist()[0]).decode()
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    return rows[1:] if not rows[0][0].isdigit() else rows


def rest_kline(row: list[str]) -> list:
    """A dump row as Binance REST returns it: times and counts as numbers, decimals as strings."""
    return [int(row[0]), *row[1:6], int(row[6]), row[7], int(row[8]), *row[9:12]]


COIN_KLINE_HEADER = ("open_time,open,high,low,close,volume,close_time,base_volume,count,taker_buy_volume,"
                     "taker_buy_base_volume,ignore")


def coin_margined_rows(ticks: list[dict]) -> list[list[str]]:
    """COIN-M kline rows (BTCUSD_PERP's layout: volumes in contracts of 100 USD, the base asset's volumes
    in columns 7 and 10) built from real one-minute kline ticks of a USD-M dump: no COIN-M data ships
    here, so the prices are real and the volumes recast."""
    rows = []
    for t in ticks:
        contracts = round(t["quote_volume"] / 100)
        taker_contracts = round(contracts * t["taker_buy_volume"] / t["quantity"])
        base, taker_base = contracts * 100 / t["price"], taker_contracts * 100 / t["price"]
        rows.append([str(t["event_time_ms"] - 59_999), str(t["open"]), str(t["high"]), str(t["low"]), str(t["price"]),
                     str(contracts), str(t["event_time_ms"]), f"{base:.8f}", str(t["trade_count"]),
                     str(taker_contracts), f"{taker_base:.8f}", "0"])
    return rows


def capture_messages(path: Path) -> list[dict]:
    """Combined-stream messages of a cryptofeed capture (``<receive time>: <json>`` lines)."""
    out = []
    for line in path.read_text().splitlines():
        if ": {" in line:
            out.append(json.loads(line.split(": ", 1)[1]))
    return out


def rest_trade(data: dict) -> dict:
    """A spot trade event's payload as REST ``/historicalTrades`` returns it."""
    return {"id": data["t"], "price": data["p"], "qty": data["q"],
            "quoteQty": f"{float(data['p']) * float(data['q']):.8f}", "time": data["T"], "isBuyerMaker": data["m"],
            "isBestMatch": True}


def rest_agg_trade(data: dict) -> dict:
    return {key: data[key] for key in ("a", "p", "q", "f", "l", "T", "m")}


class BinanceREST:
    """Serves /api/v3/klines, /api/v3/aggTrades and the /fapi/v1 equivalents from real rows."""

    def __init__(self, klines: dict[str, list[list]], agg_trades: dict[str, list[dict]],
                 trades: dict[str, list[dict]] | None = None):
        self.klines, self.agg_trades, self.trades = klines, agg_trades, trades or {}
        self.requests: list[str] = []
        self.refuse_next = 0  # answer this many requests with HTTP 429
        self.used_weight = 1
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if outer.refuse_next:
                    outer.refuse_next -= 1
                    return self._send(429, {"code": -1003, "msg": "Too many requests"}, {"Retry-After": "0"})
                if url.path.endswith("/klines"):
                    return self._send(200, outer._klines(query))
                if url.path == "/api/v3/historicalTrades":  # spot's old trades, by id
                    items = outer.trades.get(query.get("symbol"))
                    if items is None:
                        return self._send(400, {"code": -1121, "msg": "Invalid symbol."})
                    limit = min(int(query.get("limit", 500)), 1000)
                    return self._send(200, [i for i in items if i["id"] >= int(query.get("fromId", 0))][:limit])
                if url.path.endswith("/aggTrades"):
                    if query.get("symbol") not in outer.agg_trades:  # what Binance answers
                        return self._send(400, {"code": -1121, "msg": "Invalid symbol."})
                    return self._send(200, outer._agg_trades(query))
                return self._send(404, {"code": -1, "msg": f"no route {url.path}"})

            def _send(self, status, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("x-mbx-used-weight-1m", str(outer.used_weight))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _klines(self, q: dict) -> list:
        rows = self.klines[q["symbol"]]
        start, end = int(q.get("startTime", 0)), int(q.get("endTime", 2**62))
        limit = min(int(q.get("limit", 500)), 1000)
        return [r for r in rows if start <= r[0] <= end][:limit]

    def _agg_trades(self, q: dict) -> list:
        items = self.agg_trades[q["symbol"]]
        limit = min(int(q.get("limit", 500)), 1000)
        if "fromId" in q:
            return [i for i in items if i["a"] >= int(q["fromId"])][:limit]
        start, end = int(q.get("startTime", 0)), int(q.get("endTime", 2**62))
        return [i for i in items if start <= i["T"] <= end][:limit]

    def close(self):
        self.server.shutdown()


# USD-M futures routes as Binance serves them since its base-URL split (2026-04-23): /public carries
# book tickers, depth and raw trades, /market aggregate trades, klines and the rest, and a path without
# a route only what /public does. A stream on the wrong route is accepted and never sent. Written out
# here from Binance's notice and published probes of the live exchange, apart from the connector's own
# table, which it checks.
ROUTED_PUBLIC = ("bookTicker", "trade", "depth")


def usd_m_route(message) -> str | None:
    """The route that sends a scripted message: None for control words (every route), "market" for a
    message with no stream (an error answer)."""
    if isinstance(message, str):
        return None
    kind = message.get("stream", "@").split("@")[1]
    return "public" if kind.startswith(ROUTED_PUBLIC) else "market"


class BinanceWS:
    """A combined-stream websocket server that plays one script of messages per connection.

    Each script is a list of messages (dicts, sent as JSON) and control words: ``"close"`` drops the
    TCP connection without a close frame (half a second after the last message), ``"stall"`` keeps it
    open and silent. With ``routed``, it routes as USD-M futures does: a connection to ``/public/...``
    plays the next script's public messages, one to ``/market/...`` the next script's market messages,
    one without a route the public messages only.
    """

    def __init__(self, scripts: list[list], routed: bool = False):
        import websockets

        self.scripts = list(scripts)
        self.routed = {route: [[m for m in script if usd_m_route(m) in (None, "public" if route == "root" else route)]
                               for script in scripts] for route in ("public", "market", "root")} if routed else {}
        self.connections = 0
        self.paths: list[str] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def serve(connection):
            self.connections += 1
            path = getattr(getattr(connection, "request", None), "path", "")
            self.paths.append(path)
            scripts = self.scripts
            if self.routed:
                scripts = self.routed[next((r for r in ("public", "market") if path.startswith(f"/{r}/")), "root")]
            script = scripts.pop(0) if scripts else ["stall"]
            for item in script:
                if item == "close":
                    await asyncio.sleep(0.5)  # let the client read what was sent, then drop the TCP connection
                    connection.transport.abort()
                    return
                if item == "stall":
                    await asyncio.sleep(3600)
                    return
                await connection.send(json.dumps(item))
            await asyncio.sleep(3600)

        async def start():
            self.server = await websockets.serve(serve, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)
        self.url = f"ws://127.0.0.1:{self.port}/"

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
