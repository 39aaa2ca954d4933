"""Commands that read what the pipeline publishes: predictions and alerts as they come, the models' state,
skill tables, the HTML report."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from agents.settings import Settings
from cli.feed import symbols_option


def _follow(settings: Settings, stage: str, schema: str, group: str | None, from_beginning: bool,
            symbols: set[str] | None, render, max_messages: int | None, idle_exit_s: float | None) -> int:
    import time

    from confluent_kafka import Consumer, KafkaError

    from cli.errors import require_broker
    from cli.topic_reader import Dedup, missing_topic
    from schemas.codec import DecodeError, make_codec

    require_broker(settings)
    topic = settings.topic(stage)
    codec = make_codec(schema, settings.schema_registry_url, topic)
    # A follower may start before the worker creates its topic (the subscription picks it up when it
    # appears), or with a mistyped prefix: say which, once, instead of librdkafka's unknown-topic error.
    problem = missing_topic(settings, stage)
    if problem is not None:
        print(f"livelearn: {problem}; waiting for it", file=sys.stderr, flush=True)
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
                if not (problem and message.error().code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
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
    from streams.model_events import models_summary

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
            if perf.get("skill_shown") is False:
                print("  forecasts are the constant 0.5 until the members show skill (the skill gate is closed)")
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
    p.add_argument("--symbols", type=symbols_option, help="comma-separated symbols to show")
    p.add_argument("--json", action="store_true", help="JSON lines (for scripts) instead of one readable line")
    p.add_argument("--group", help="share a consumer group (default: a group of its own, so it sees everything)")
    p.add_argument("--max", type=int, default=None, help="stop after this many records")
    p.add_argument("--idle-exit", type=float, default=None, help="stop after this many seconds without records")


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from cli.errors import require_broker
    from cli.report import write_report

    require_broker(settings)
    out = write_report(settings, Path(args.out))
    print(out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from connectors.recorded import FORMATS, ORDERS

    p = sub.add_parser("predictions", help="print predictions as they are published")
    _reader_options(p)
    p.set_defaults(func=cmd_predictions)

    p = sub.add_parser("alerts", help="subscribe to drift alerts")
    _reader_options(p)
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("models", help="champion, challengers, versions, live scores and recent events per symbol")
    p.add_argument("--symbols", type=symbols_option, help="comma-separated symbols to show")
    p.add_argument("--recent", type=int, default=5, help="model events shown per symbol")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("evaluate", help="skill table of a run (its topics) or of files (run through the pipeline "
                                        "in process): accuracy, log-loss, Brier, calibration and skill against the "
                                        "no-skill references with intervals, per symbol and pooled, and the run's "
                                        "drift alerts per 10k vectors against their bounds")
    p.add_argument("files", nargs="*", help="files (or folders of them) to run through the pipeline in process, each on its own (default: "
                                            "read the run in LIVELEARN_TOPIC_PREFIX)")
    p.add_argument("--joined", action="store_true", help="the files as one run: their ticks merged in event time through one "
                                                         "pipeline, as a worker that read them live learns them (a pair's "
                                                         "consecutive days; several pairs of the same days)")
    p.add_argument("--format", choices=FORMATS, default="auto", help="file format (see replay)")
    p.add_argument("--symbol", help="symbol of the files' rows (see replay)")
    p.add_argument("--order", choices=ORDERS, default="time", help="how websocket captures are read (see replay)")
    p.add_argument("--symbols", type=symbols_option, help="comma-separated symbols to show")
    p.add_argument("--json", action="store_true", help="one JSON object (for scripts)")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.add_argument("--jobs", default="auto", help="files evaluated at once, each in a process of its own (not "
                   "with --joined); the tables are the same. auto (default): one a CPU, at most 4 and no more than "
                   "the files, where they hold a megabyte or more in all; else 1")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="write an HTML report (with PNG plots) of the run in LIVELEARN_TOPIC_PREFIX")
    p.add_argument("--out", default="reports/report.html", help="output HTML file")
    p.set_defaults(func=cmd_report)
