"""Data commands: feed the pipeline (replay, produce) and read from it (predictions, alerts)."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from agents.settings import Settings


def _sink(settings: Settings, stage: str, schema: str = "tick", topic_stage: str = "ticks"):
    from connectors.sink import KafkaSink

    return KafkaSink(settings.client_config(), settings.topic(topic_stage), settings.topic("dead-letters"),
                     schema=schema, registry_url=settings.schema_registry_url, stage=stage,
                     key_of=settings.partition_key)


def _ensure_topics(settings: Settings) -> None:
    from agents.topics import create_topics
    from cli.errors import require_broker

    require_broker(settings)
    create_topics(settings)


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from cli.errors import CliError
    from connectors.binance import PayloadError
    from connectors.replay import replay

    paths = [Path(p) for p in args.files]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CliError(f"no such file: {', '.join(missing)}", code=2)
    _ensure_topics(settings)
    symbols = {s.strip().upper() for s in args.symbols.split(",")} if args.symbols else None
    sink = _sink(settings, "replay")
    try:
        stats = replay(paths, sink, speed=args.speed, symbols=symbols, progress=not args.quiet, fmt=args.format,
                       symbol=args.symbol)
    except PayloadError as exc:  # a file whose header does not fit its format
        raise CliError(str(exc), code=2) from None
    print(stats.summary())
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


def ratio_option(text: str) -> float:
    """A share between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    """The pipeline over the ticks topic as it is now, in batches, without a worker (agents.backtest)."""
    import time

    from cli.errors import CliError, require_broker

    require_broker(settings)
    _ensure_topics(settings)
    from agents.app import pipeline_config
    from agents.backtest import run_backtest
    from streams.learning import SymbolLearner

    SymbolLearner("WARMUP", pipeline_config(settings).learner)  # torch and River load here, not in the timed run
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        if not args.quiet and total:
            rate = done / max(time.monotonic() - started, 1e-9)
            print(f"\rbacktest: {done:,}/{total:,} ticks ({done / total:.0%}), {rate:,.0f} ticks/s",
                  end="", file=sys.stderr, flush=True)

    try:
        counts = run_backtest(settings, progress)
    except RuntimeError as exc:
        raise CliError(str(exc), code=2) from None
    if not args.quiet:
        print(file=sys.stderr)
    elapsed = time.monotonic() - started
    print(f"backtest of {settings.topic('ticks')}: {counts['ticks']:,} ticks, {counts['vectors']:,} feature vectors, "
          f"{counts['predictions']:,} predictions, {counts['alerts']:,} alerts, {counts['dead_letters']:,} dead letters "
          f"in {elapsed:.1f} s ({counts['ticks'] / max(elapsed, 1e-9):,.0f} ticks/s)")
    return 0


def cmd_replay_dataset(args: argparse.Namespace, settings: Settings) -> int:
    """A labelled dataset onto the external-features topic: the pipeline predicts each row and learns it
    LIVELEARN_HORIZON_TICKS rows later (River's progressive validation with that delay)."""
    from cli.errors import CliError
    from connectors.datasets import RowError, labelled_vectors

    _ensure_topics(settings)
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

    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    streams = [s.strip() for s in args.streams.split(",") if s.strip()]
    try:
        stream_names(symbols, streams)
        stall = float(settings.live_stall_seconds)
    except ValueError as exc:
        raise CliError(str(exc), code=2) from None
    _ensure_topics(settings)
    sink = _sink(settings, "live")
    config = LiveConfig(symbols, streams, futures=args.market == "futures", ws_url=settings.binance_ws_url,
                        rest_url=settings.binance_rest_url, stall_s=stall, max_runtime_s=args.seconds,
                        max_ticks=args.max_ticks)
    shown = [0.0]

    def status(counts, sink_) -> None:
        import time

        if args.quiet or time.monotonic() - shown[0] < 1.0:
            return
        shown[0] = time.monotonic()
        print(f"\rproduced {sink_.produced:,}  gaps {counts['gaps']}  backfilled {counts['backfilled']}  "
              f"reconnects {counts['reconnects']}  rejected {sum(sink_.rejected.values())}", end="",
              file=sys.stderr, flush=True)

    async def main() -> dict:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_live(config, sink, stop, status)

    counts = asyncio.run(main())
    print(f"\nproduced {sink.produced} ticks; " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    """Binance REST -> CSV files in the public dump format (replay reads them)."""
    from binance.exceptions import BinanceAPIException, BinanceRequestException
    from requests.exceptions import RequestException

    from cli.errors import CliError
    from connectors.binance_rest import (
        HistoryError,
        RateLimiter,
        check_name_parts,
        download_agg_trades,
        download_klines,
        make_client,
        parse_day,
    )

    try:
        check_name_parts(args.symbol.upper(), args.interval)
        start_ms, end_ms = parse_day(args.start), parse_day(args.end)
    except HistoryError as exc:
        raise CliError(str(exc), code=2) from None
    if end_ms <= start_ms:
        raise CliError("--end must be after --start", code=2)
    limiter = RateLimiter(make_client(settings.binance_rest_url), weight_budget=args.weight_budget)
    out_dir = Path(args.out)
    futures = args.market == "futures"
    symbol = args.symbol.upper()
    try:
        if args.agg_trades:
            path, rows = download_agg_trades(limiter, symbol, start_ms, end_ms, out_dir, futures, not args.quiet)
        else:
            path, rows = download_klines(limiter, symbol, args.interval, start_ms, end_ms, out_dir, futures,
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

    _ensure_topics(settings)
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


def _follow(settings: Settings, stage: str, schema: str, group: str | None, from_beginning: bool,
            symbols: set[str] | None, render, max_messages: int | None, idle_exit_s: float | None) -> int:
    import time

    from confluent_kafka import Consumer

    from cli.errors import require_broker
    from cli.topic_reader import Dedup
    from schemas.codec import DecodeError, make_codec

    require_broker(settings)
    topic = settings.topic(stage)
    codec = make_codec(schema, settings.schema_registry_url, topic)
    consumer = Consumer({
        **settings.client_config(),
        "group.id": group or f"livelearn-{stage}-{uuid.uuid4().hex[:12]}",
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": group is not None,
    })
    consumer.subscribe([topic])
    dedup = Dedup(stage)
    seen = 0
    last = time.monotonic()
    try:
        while max_messages is None or seen < max_messages:
            message = consumer.poll(0.5)
            if message is None:
                if idle_exit_s is not None and time.monotonic() - last > idle_exit_s:
                    break
                continue
            if message.error():
                print(f"livelearn: consumer error: {message.error()}", file=sys.stderr)
                continue
            last = time.monotonic()
            try:
                record = codec.decode(message.value(), message.topic(), message.partition(), message.offset())
            except DecodeError as exc:
                print(f"livelearn: skipping undecodable record: {exc}", file=sys.stderr)
                continue
            if symbols and record.get("symbol") not in symbols:
                continue
            if not dedup.fresh(record):
                continue  # repeated by an at-least-once worker after a crash
            print(render(record), flush=True)
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


def _json_line(record: dict) -> str:
    return json.dumps(record, sort_keys=True, default=lambda b: b.hex() if isinstance(b, bytes) else str(b))


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def render_prediction(record: dict) -> str:
    return (f"{_when(record['event_time_ms'])} {record['symbol']:10s} p_up={record['probability_up']:.3f} "
            f"{'UP  ' if record['predicted_up'] else 'DOWN'} conf={record['confidence']:.2f} "
            f"model={record['model_id']}@v{record['model_version']} id={record['prediction_id']}")


def render_alert(record: dict) -> str:
    return (f"{_when(record['created_time_ms'])} {record['severity']:8s} {record['status']:8s} {record['symbol']:10s} "
            f"{record['kind']:10s} {record['test_name']} p={record['p_value']:.2e} adj={record['adjusted_p_value']:.2e} "
            f"effect={record['effect_size']:.3f} features={','.join(record['affected_features'])} "
            f"action={record['recommended_action']} id={record['alert_id']}")


def _symbols(text: str | None) -> set[str] | None:
    return {s.strip().upper() for s in text.split(",")} if text else None


def cmd_predictions(args: argparse.Namespace, settings: Settings) -> int:
    render = _json_line if args.json else render_prediction
    return _follow(settings, "predictions", "prediction", args.group, args.from_beginning, _symbols(args.symbols),
                   render, args.max, args.idle_exit)


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from cli import evaluate

    return evaluate.run(args, settings)


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    render = _json_line if args.json else render_alert
    return _follow(settings, "alerts", "drift_alert", args.group, args.from_beginning, _symbols(args.symbols),
                   render, args.max, args.idle_exit)


def models_summary(performance: list[dict], events: list[dict], recent: int = 5) -> dict[str, dict]:
    """Per symbol: the latest performance record, the most recent lifecycle events (promotions,
    rollbacks, resets) and how many learning steps the guard refused."""
    out: dict[str, dict] = {}
    for record in performance:
        current = out.setdefault(record["symbol"], {"performance": None, "events": [], "refused_updates": 0})
        if current["performance"] is None or record["labelled"] >= current["performance"]["labelled"]:
            current["performance"] = record
    for event in sorted(events, key=lambda e: e["event_time_ms"]):
        current = out.setdefault(event["symbol"], {"performance": None, "events": [], "refused_updates": 0})
        if event["kind"] == "REJECTED_UPDATE":
            current["refused_updates"] += 1
        elif event["kind"] != "CHECKPOINT":
            current["events"].append(event)
    for current in out.values():
        current["events"] = current["events"][-recent:]
    return out


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _interval(skill: dict | None, reference: str = "prior") -> str:
    if not skill or skill.get(f"vs_{reference}") is None:
        return "-"
    low, high = skill.get(f"vs_{reference}_low"), skill.get(f"vs_{reference}_high")
    around = "" if low is None or high is None else f" [{low:+.3f}, {high:+.3f}]"
    return f"{skill[f'vs_{reference}']:+.3f}{around}"


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    """Champion, challengers, versions, scores against the no-skill references, recent model events."""
    from cli.errors import require_broker
    from cli.topic_reader import read_records

    require_broker(settings)
    summary = models_summary(read_records(settings, "performance", "performance"),
                             read_records(settings, "model-events", "model_event"), args.recent)
    if args.symbols:
        wanted = _symbols(args.symbols)
        summary = {k: v for k, v in summary.items() if k in wanted}
    if args.json:
        print(json.dumps(summary, default=str, sort_keys=True))
        return 0
    if not summary:
        print(f"no performance records or model events in {settings.topic('performance')} yet")
        return 0
    for symbol, current in sorted(summary.items()):
        perf = current["performance"]
        if perf is None:
            print(f"{symbol}: no performance record yet")
        else:
            variants = sorted(name[8:] for name in perf["members"] if name.startswith("variant:"))
            challengers = [v for v in variants if v != perf["champion"]]
            outcomes, flat = perf.get("outcomes") or 0, perf.get("flat") or 0
            print(f"{symbol}: champion {perf['champion']} (model {perf['model_id']} v{perf['model_version']}), "
                  f"challengers {', '.join(challengers) or 'none'}; {perf['labelled']} scored outcomes, "
                  f"{flat} flat ({flat / outcomes if outcomes else 0:.1%})")
            print(f"  {'scored':<20} {'n':>7} {'accuracy':>9} {'log-loss':>9} {'brier':>7}  skill vs prior [95%]")
            skills = perf.get("skill") or {}
            order = sorted(perf["members"], key=lambda n: (n != "ensemble", n in ("constant", "prior", "persistence",
                                                                                    "trade_side"), n))
            for name in order:
                score = perf["members"][name]
                print(f"  {name:<20} {score['n']:>7} {_fmt(score['accuracy']):>9} {_fmt(score['log_loss']):>9} "
                      f"{_fmt(score['brier']):>7}  {_interval(skills.get(name))}")
            bound = perf.get("regret_bound")
            print(f"  regret bound against the constant 0.5: {_fmt(bound, 1)} nats over {perf.get('slots') or 0} "
                  f"slots; latency p50/p99 {_fmt(perf['latency_p50_ms'])}/{_fmt(perf['latency_p99_ms'])} ms; "
                  f"errors {perf['errors']} of {perf['events']}")
        if current["refused_updates"]:
            print(f"  {current['refused_updates']} learning steps refused by the guard")
        for event in current["events"]:
            print(f"  event {event['kind']:<16} {event['model_id']} v{event['version']}: {event['reason']}")
    return 0


def _reader_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest record, not the newest")
    p.add_argument("--symbols", help="comma-separated symbols to show")
    p.add_argument("--json", action="store_true", help="JSON lines (for scripts) instead of one readable line")
    p.add_argument("--group", help="share a consumer group (default: a group of its own, so it sees everything)")
    p.add_argument("--max", type=int, default=None, help="stop after this many records")
    p.add_argument("--idle-exit", type=float, default=None, help="stop after this many seconds without records")


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from cli import demo

    files = [Path(f) for f in args.files] if args.files else None
    return demo.run(settings, files=files, report_dir=Path(args.report_dir) if args.report_dir else None)


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from cli.errors import require_broker
    from cli.report import write_report

    require_broker(settings)
    out = write_report(settings, Path(args.out))
    print(out)
    return 0


def cmd_synth(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.synth import Change, generate

    changes = tuple(Change.parse(c) for c in args.change)
    ticks = generate(args.n, seed=args.seed, changes=changes, symbol=args.symbol.upper(),
                     step_ms=args.step_ms)
    if args.jsonl:
        for tick in ticks:
            print(json.dumps(tick, sort_keys=True))
        return 0
    _ensure_topics(settings)
    sink = _sink(settings, "synth")
    for tick in ticks:
        sink.send(tick, tick["symbol"], tick["event_time_ms"])
    sink.flush()
    print(f"produced {sink.produced} synthetic ticks for {args.symbol.upper()}"
          + "".join(f"; {c.kind} at tick {c.at} (size {c.size})" for c in changes))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="seeded synthetic trades with injected changes (for drift tests and benchmarks)")
    p.add_argument("--n", type=int, default=6000, help="number of ticks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--symbol", default="SYNTHUSDT")
    p.add_argument("--step-ms", type=int, default=1000, help="event-time step between ticks")
    p.add_argument("--change", action="append", default=[],
                   help="kind@tick[:size] with kind mean_shift, volatility or relation_flip (repeatable)")
    p.add_argument("--jsonl", action="store_true", help="print JSON lines instead of producing to Kafka")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("demo", help="the main job: broker, worker, replay of the shipped sample, summary, report")
    p.add_argument("files", nargs="*", help="files to replay instead of the shipped BTCUSDT/ETHUSDT sample")
    p.add_argument("--report-dir", help="where the report and worker log go (default ./reports)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", help="write an HTML report (with PNG plots) of the run in LIVELEARN_TOPIC_PREFIX")
    p.add_argument("--out", default="reports/report.html", help="output HTML file")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("replay", help="replay Binance dumps (.zip/.csv) and websocket captures into the ticks topic")
    p.add_argument("files", nargs="+", help="klines/aggTrades/trades dumps (.zip or .csv), websocket captures or "
                                            "OHLCV CSV files with a header")
    p.add_argument("--speed", type=speed_option, default=None, metavar="N|max",
                   help="1 = real time, 60 = sixty times faster, max = as fast as possible (default)")
    p.add_argument("--symbols", help="comma-separated symbols to keep (default all)")
    from connectors.replay import FORMATS

    p.add_argument("--format", choices=FORMATS, default="auto",
                   help="file format of every file (default: recognised from content and name)")
    p.add_argument("--symbol", help="symbol of the files' rows (default: the file name's first part, e.g. BTCUSDT-1m-...)")
    p.add_argument("--max-reject-ratio", type=ratio_option, default=1.0, metavar="R",
                   help="exit 1 when more than this share of the rows is rejected (default 1: only when all are)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("backtest", help="run the pipeline over the ticks topic in batches, without a worker "
                                        "(same records as a fresh worker; use a topic prefix of its own)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_backtest)

    p = sub.add_parser("live", help="Binance websockets (multiplexed) -> ticks topic, with reconnects and backfill")
    p.add_argument("--symbols", default="BTCUSDT,ETHUSDT", help="comma-separated symbols")
    p.add_argument("--streams", default="trade,aggTrade,kline_1m,bookTicker",
                   help="comma-separated: trade, aggTrade, kline_<interval>, bookTicker")
    p.add_argument("--market", choices=["spot", "futures"], default="spot", help="spot or USD-M futures streams")
    p.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--max-ticks", type=int, help="stop after producing this many ticks")
    p.add_argument("--quiet", action="store_true", help="no status line")
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("history", help="download klines or aggTrades over Binance REST as dump-format CSV")
    p.add_argument("symbol", help="e.g. BTCUSDT")
    p.add_argument("--interval", default="1m", help="kline interval (1s, 1m, 5m, 1h, 1d, ...)")
    p.add_argument("--start", required=True, help="UTC start, YYYY-MM-DD or YYYY-MM-DDTHH:MM (inclusive)")
    p.add_argument("--end", required=True, help="UTC end (exclusive)")
    p.add_argument("--agg-trades", action="store_true", help="aggregate trades instead of klines")
    p.add_argument("--market", choices=["spot", "futures"], default="spot")
    p.add_argument("--out", default="data/history", help="output folder")
    p.add_argument("--weight-budget", type=int, default=1000,
                   help="pause until the next minute when the used request weight reaches this (Binance allows 6000)")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("replay-dataset",
                       help="a labelled dataset (phishing, bananas or a CSV) onto the external-features topic, label delayed")
    p.add_argument("source", help="phishing, bananas (River's bundled datasets) or a CSV file with a header")
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

    p = sub.add_parser("predictions", help="print predictions as they are published")
    _reader_options(p)
    p.set_defaults(func=cmd_predictions)

    p = sub.add_parser("models", help="champion, challengers, versions, live scores and recent events per symbol")
    p.add_argument("--symbols", help="comma-separated symbols to show")
    p.add_argument("--recent", type=int, default=5, help="model events shown per symbol")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("evaluate", help="skill table of a run (its topics) or of files (run through the pipeline "
                                        "in process): accuracy, log-loss, Brier, calibration and skill against the "
                                        "no-skill references with intervals, per symbol and pooled")
    p.add_argument("files", nargs="*", help="files to run through the pipeline in process, each on its own (default: "
                                            "read the run in LIVELEARN_TOPIC_PREFIX)")
    p.add_argument("--format", choices=FORMATS, default="auto", help="file format (see replay)")
    p.add_argument("--symbol", help="symbol of the files' rows (see replay)")
    p.add_argument("--symbols", help="comma-separated symbols to show")
    p.add_argument("--json", action="store_true", help="one JSON object (for scripts)")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("alerts", help="subscribe to drift alerts")
    _reader_options(p)
    p.set_defaults(func=cmd_alerts)
