"""Commands that feed the pipeline: replay files, live websockets, REST history, labelled datasets, JSON
lines on stdin, synthetic trades."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agents.settings import Settings


def _sink(settings: Settings, stage: str, schema: str = "tick", topic_stage: str = "ticks"):
    from connectors.sink import KafkaSink

    return KafkaSink(settings.client_config(), settings.topic(topic_stage), settings.topic("dead-letters"),
                     schema=schema, registry_url=settings.schema_registry_url, stage=stage,
                     key_of=settings.partition_key)


def _tick_sink(settings: Settings, stage: str, args: argparse.Namespace):
    """The ticks topic's sink, or with ``--batch N`` (N > 1) a batcher onto the tick-batches topic."""
    from cli.errors import CliError

    if args.batch < 1 or not 0 <= args.batch_wait_ms < float("inf"):
        raise CliError("--batch must be at least 1 and --batch-wait-ms at least 0", code=2)
    if args.batch == 1:
        return _sink(settings, stage)
    from connectors.batching import TickBatcher
    from connectors.sink import KafkaSink

    batches = KafkaSink(settings.client_config(), settings.topic("tick-batches"), settings.topic("dead-letters"),
                        schema="tick_batch", registry_url=settings.schema_registry_url, stage=stage)
    return TickBatcher(batches, size=args.batch, max_wait_ms=args.batch_wait_ms, key_of=settings.partition_key)


def _batch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", type=int, default=1, metavar="N",
                   help="put up to N ticks of one symbol group in one record of the tick-batches topic (the worker "
                        "applies them as single ticks, with one framework round trip for all; default 1: the ticks "
                        "topic, one tick a record)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, metavar="MS",
                   help="with --batch: send a partial batch once its oldest tick has waited this long (default 5)")


def ensure_topics(settings: Settings) -> None:
    from agents.topics import create_topics
    from cli.errors import require_broker

    require_broker(settings)
    create_topics(settings)


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from cli.errors import CliError
    from cli.inputs import data_files
    from connectors.binance import PayloadError
    from connectors.recorded import two_markets
    from connectors.replay import replay

    paths = data_files(args.files, "replay", args.format, args.symbol)
    problem = two_markets(paths, args.symbol)
    if problem is not None:
        raise CliError(problem, code=2)
    ensure_topics(settings)
    symbols = {s.strip().upper() for s in args.symbols.split(",")} if args.symbols else None
    sink = _tick_sink(settings, "replay", args)
    try:
        stats = replay(paths, sink, speed=args.speed, symbols=symbols, progress=not args.quiet, fmt=args.format,
                       symbol=args.symbol, order=args.order)
    except PayloadError as exc:  # a file whose header does not fit its format
        raise CliError(str(exc), code=2) from None
    print(stats.summary() + (f" ({sink.batches} batch records on {settings.topic('tick-batches')})"
                             if args.batch > 1 else ""))
    rejected = sum(stats.rejected.values())
    if rejected and stats.produced == 0:
        print(f"livelearn: every row was rejected ({rejected}); nothing was produced. Is --format right?",
              file=sys.stderr)
        return 1
    if stats.reject_ratio > args.max_reject_ratio:
        print(f"livelearn: {stats.reject_ratio:.1%} of the rows were rejected, more than --max-reject-ratio "
              f"{args.max_reject_ratio:.1%}", file=sys.stderr)
        return 1
    return 0


def speed_option(text: str) -> float | None:
    """--speed: a positive number (1 = real time) or 'max'."""
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'max'") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number or 'max'")
    return value


def symbols_option(text: str) -> str:
    """--symbols: comma-separated names, at least one (``,,,`` once kept no symbol and said only
    "filtered out" for every row)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names no symbol; give e.g. BTCUSDT,ETHUSDT")
    return ",".join(names)


def ratio_option(text: str) -> float:
    """A share between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


def cmd_replay_dataset(args: argparse.Namespace, settings: Settings) -> int:
    """A labelled dataset onto the external-features topic: the pipeline predicts each row and learns it
    LIVELEARN_HORIZON_TICKS rows later (River's progressive validation with that delay)."""
    from cli.errors import CliError
    from connectors.datasets import RowError, check_source, labelled_vectors

    try:
        check_source(args.source)  # before the broker: a mistyped path is the first thing to say
    except FileNotFoundError as exc:
        raise CliError(str(exc), code=2) from None
    ensure_topics(settings)
    sink = _sink(settings, "replay-dataset", "features", "external-features")
    try:
        drop = tuple(c.strip() for c in args.drop.split(",") if c.strip())
        for record, reason, raw in labelled_vectors(args.source, target=args.target, symbol=args.symbol,
                                                    positive=args.positive, limit=args.limit, drop=drop):
            if record is None:
                print(f"livelearn: {reason}", file=sys.stderr)
                sink.reject("invalid_row", reason, args.source, 0, raw)
                continue
            sink.send(record, record["symbol"], record["event_time_ms"])
    except (FileNotFoundError, RowError) as exc:
        raise CliError(str(exc), code=2) from None
    sink.flush()
    rejected = sum(sink.rejected.values())
    print(f"produced {sink.produced} labelled vectors to {settings.topic('external-features')}, rejected {rejected}")
    return 0


def cmd_live(args: argparse.Namespace, settings: Settings) -> int:
    """Binance websockets -> ticks topic until Ctrl-C (or --seconds / --max-ticks)."""
    import asyncio
    import signal

    from cli.errors import CliError
    from connectors.binance_live import LiveConfig, run_live, stream_names
    from connectors.binance_rest import HistoryError, check_market
    from connectors.status_line import StatusLine

    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    streams = [s.strip() for s in args.streams.split(",") if s.strip()]
    try:
        stream_names(symbols, streams)
        for symbol in symbols:
            check_market(symbol, args.market)
        config = LiveConfig(symbols, streams, market=args.market, ws_url=settings.binance_ws_url,
                            rest_url=settings.binance_rest_url, stall_s=settings.binance.live_stall_seconds,
                            max_runtime_s=args.seconds, max_ticks=args.max_ticks,
                            symbol_suffix=args.symbol_suffix.upper(),
                            wake_s=min(1.0, max(args.batch_wait_ms, 1.0) / 1000) if args.batch > 1 else 1.0)
    except (ValueError, HistoryError) as exc:
        raise CliError(str(exc), code=2) from None
    price = [s for s in streams if s in ("trade", "aggTrade") or s.startswith("kline_")]
    if len(price) > 1:
        # The worker reads every price tick of a symbol as one series (streams.features).
        print(f"livelearn: warning: {', '.join(price)} are views of the same fills, and a symbol's price ticks "
              "are one series for the worker: each fill counts more than once in its features (give one of "
              "them, or feed the others under another --symbol-suffix)", file=sys.stderr)
    ensure_topics(settings)
    sink = _tick_sink(settings, "live", args)
    # Redrawn every second on a terminal; in a service's log (Docker, systemd) a line a minute.
    line = StatusLine(every_s=1.0, log_every_s=60.0, enabled=not args.quiet)

    def status(counts, sink_) -> None:
        if line.due():
            line.write(f"produced {sink_.produced:,}  gaps {counts['gaps'] + counts['kline_gaps']}  "
                       f"backfilled {counts['backfilled'] + counts['klines_backfilled']}  "
                       f"reconnects {counts['reconnects']}  rejected {sum(sink_.rejected.values())}")

    async def main() -> dict:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_live(config, sink, stop, status)

    counts = asyncio.run(main())
    line.close()
    print(f"produced {sink.produced} ticks; " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    """Binance REST -> CSV files in the public dump format (replay reads them)."""
    from binance.exceptions import BinanceAPIException, BinanceRequestException
    from requests.exceptions import RequestException

    from cli.errors import CliError
    from connectors.binance_rest import (
        HistoryError,
        RateLimiter,
        check_market,
        check_name_parts,
        download_agg_trades,
        download_klines,
        make_client,
        parse_day,
    )

    try:
        check_name_parts(args.symbol.upper(), args.interval)
        check_market(args.symbol.upper(), args.market)
        start_ms, end_ms = parse_day(args.start), parse_day(args.end)
    except HistoryError as exc:
        raise CliError(str(exc), code=2) from None
    if end_ms <= start_ms:
        raise CliError("--end must be after --start", code=2)
    limiter = RateLimiter(make_client(settings.binance_rest_url), weight_budget=args.weight_budget)
    out_dir = Path(args.out)
    symbol = args.symbol.upper()
    try:
        if args.agg_trades:
            path, rows = download_agg_trades(limiter, symbol, start_ms, end_ms, out_dir, args.market,
                                             not args.quiet)
        else:
            path, rows = download_klines(limiter, symbol, args.interval, start_ms, end_ms, out_dir, args.market,
                                         not args.quiet)
    except HistoryError as exc:
        raise CliError(str(exc), code=2) from None
    except (BinanceAPIException, BinanceRequestException) as exc:
        raise CliError(f"Binance refused the request: {exc}", code=1) from None
    except RequestException as exc:
        where = settings.binance_rest_url or "api.binance.com"
        raise CliError(f"cannot reach Binance REST at {where}: {type(exc).__name__}", code=2) from None
    print(f"wrote {rows} rows to {path} ({limiter.requests} requests, {limiter.waits} rate-limit waits, "
          f"{limiter.retries} retries)")
    return 0


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    """JSON lines on stdin -> validated Avro ticks or feedback events. Each line is judged on its own
    (connectors.json_lines): a bad one is dead-lettered with its reason and the next is read; what was
    accepted is flushed whatever happens later."""
    import time

    from connectors.json_lines import MAX_LINE_BYTES, InputError, parse_feedback, parse_tick, read_lines
    from schemas.codec import EncodeError

    ensure_topics(settings)
    is_feedback = args.kind == "feedback"
    sink = _sink(settings, "produce", "feedback" if is_feedback else "tick",
                 "feedback" if is_feedback else "ticks")
    try:
        for line in read_lines(sys.stdin.buffer):
            try:
                if line.oversized:
                    raise InputError("oversized_line", f"line of {line.length:,} bytes; at most "
                                                       f"{MAX_LINE_BYTES:,} (the dead letter keeps the first "
                                                       f"{len(line.raw):,})")
                if is_feedback:
                    record = parse_feedback(line.raw, int(time.time() * 1000))
                    sink.send(record, record["symbol"], record["feedback_time_ms"])
                else:
                    tick = parse_tick(line.raw)
                    sink.send(tick, tick["symbol"], tick["event_time_ms"])
            except InputError as exc:
                _reject(sink, exc.code, str(exc), line.number, line.raw)
            except EncodeError as exc:
                _reject(sink, "invalid_input", f"invalid_input: {exc}", line.number, line.raw)
    finally:
        sink.flush()
    rejected = sum(sink.rejected.values())
    print(f"produced {sink.produced}, rejected {rejected}" +
          "".join(f"\n  rejected {k}: {v}" for k, v in sorted(sink.rejected.items())), file=sys.stderr)
    return 0 if rejected == 0 else 1


def _reject(sink, code: str, reason: str, number: int, raw: bytes) -> None:
    print(f"livelearn: line {number}: {reason}", file=sys.stderr)
    sink.reject(code, reason, "stdin", number, raw)


def cmd_synth(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.synth import Change, generate

    changes = tuple(Change.parse(c) for c in args.change)
    ticks = generate(args.n, seed=args.seed, changes=changes, symbol=args.symbol.upper(),
                     step_ms=args.step_ms)
    if args.jsonl:
        for tick in ticks:
            print(json.dumps(tick, sort_keys=True))
        return 0
    ensure_topics(settings)
    sink = _sink(settings, "synth")
    for tick in ticks:
        sink.send(tick, tick["symbol"], tick["event_time_ms"])
    sink.flush()
    print(f"produced {sink.produced} synthetic ticks for {args.symbol.upper()}"
          + "".join(f"; {c.kind} at tick {c.at} (size {c.size})" for c in changes))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="replay Binance dumps (.zip/.csv) and websocket captures into the ticks topic")
    p.add_argument("files", nargs="+", help="klines/aggTrades/trades dumps (.zip or .csv), websocket captures, "
                                            "OHLCV CSV files with a header, or folders of them")
    p.add_argument("--speed", type=speed_option, default=None, metavar="N|max",
                   help="1 = real time, 60 = sixty times faster, max = as fast as possible (default)")
    p.add_argument("--symbols", type=symbols_option, help="comma-separated symbols to keep (default all)")
    from connectors.recorded import FORMATS, ORDERS

    p.add_argument("--format", choices=FORMATS, default="auto",
                   help="file format of every file (default: recognised from content and name)")
    p.add_argument("--symbol", help="symbol of the files' rows (default: the file name's first part, e.g. BTCUSDT-1m-...)")
    p.add_argument("--order", choices=ORDERS, default="time",
                   help="websocket captures read in event-time order (time, the default) or in the order received, "
                        "as live published them (received: each at its receive time, book tickers moved to "
                        "Binance's clock); see README")
    p.add_argument("--max-reject-ratio", type=ratio_option, default=1.0, metavar="R",
                   help="exit 1 when more than this share of the rows is rejected (default 1: only when all are)")
    _batch_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("live", help="Binance websockets (multiplexed) -> ticks topic, with reconnects and backfill")
    p.add_argument("--symbols", type=symbols_option, default="BTCUSDT,ETHUSDT", help="comma-separated symbols")
    p.add_argument("--streams", default="aggTrade,bookTicker",
                   help="comma-separated: trade, aggTrade, kline_<interval>, bookTicker (one of the first three: "
                        "they are views of the same fills; default aggTrade,bookTicker)")
    p.add_argument("--market", choices=["spot", "futures", "coin"], default="spot",
                   help="spot, USD-M futures or COIN-M futures streams (BTCUSD_PERP, ETHUSD_240628)")
    p.add_argument("--symbol-suffix", default="", metavar="SUFFIX",
                   help="append SUFFIX to every tick's symbol, e.g. _PERP with --market futures: Binance names a "
                        "USD-M perpetual like the spot pair (BTCUSDT), and one topic holds one series a name "
                        "(default: none)")
    p.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--max-ticks", type=int, help="stop after producing this many ticks")
    _batch_options(p)
    p.add_argument("--quiet", action="store_true", help="no status line")
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("history", help="download klines or aggTrades over Binance REST as dump-format CSV")
    p.add_argument("symbol", help="e.g. BTCUSDT")
    p.add_argument("--interval", default="1m", help="kline interval (1s, 1m, 5m, 1h, 1d, ...)")
    p.add_argument("--start", required=True, help="UTC start, YYYY-MM-DD or YYYY-MM-DDTHH:MM (inclusive)")
    p.add_argument("--end", required=True, help="UTC end (exclusive)")
    p.add_argument("--agg-trades", action="store_true", help="aggregate trades instead of klines")
    p.add_argument("--market", choices=["spot", "futures", "coin"], default="spot",
                   help="spot, USD-M futures or COIN-M futures (BTCUSD_PERP, ETHUSD_240628)")
    p.add_argument("--out", default="data/history",
                   help="output folder; each market's files go to its spot/, um/ or cm/ folder in it")
    p.add_argument("--weight-budget", type=int, default=1000,
                   help="pause until the next minute when the used request weight reaches this (Binance allows 6000)")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("replay-dataset",
                       help="a labelled dataset (phishing, bananas, a CSV or an ARFF file) onto the external-features topic, label delayed")
    p.add_argument("source", help="phishing, bananas (River's bundled datasets), a CSV file with a header, or an ARFF file (MOA's datasets)")
    p.add_argument("--target", help="label column of a CSV (default: the last column)")
    p.add_argument("--positive", help="value of the label column that means class 1 (default 1/true/up)")
    p.add_argument("--symbol", help="key of the stream (default: the dataset name in capitals)")
    p.add_argument("--limit", type=int, help="first N rows only")
    p.add_argument("--drop", default="", metavar="COLS",
                   help="comma-separated columns left out of the features and the drift tests (an index or a date, "
                        "say; monotone columns are left out of the drift tests anyway)")
    p.set_defaults(func=cmd_replay_dataset)

    p = sub.add_parser("produce", help="JSON lines on stdin -> validated Avro ticks or feedback")
    p.add_argument("kind", choices=["ticks", "feedback"], help="what the lines are")
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser("synth", help="seeded synthetic trades with injected changes (for drift tests and benchmarks)")
    p.add_argument("--n", type=int, default=6000, help="number of ticks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--symbol", default="SYNTHUSDT")
    p.add_argument("--step-ms", type=int, default=1000, help="event-time step between ticks")
    p.add_argument("--change", action="append", default=[],
                   help="kind@tick[:size] with kind mean_shift, volatility or relation_flip (repeatable)")
    p.add_argument("--jsonl", action="store_true", help="print JSON lines instead of producing to Kafka")
    p.set_defaults(func=cmd_synth)
