"""The ``livelearn`` command: a thin layer over agents, connectors and the local broker."""

from __future__ import annotations

import argparse
import os
import sys

from agents.settings import Settings, settings_table
from cli.errors import CliError, require_broker, require_copartitioned, require_transaction_timeout
from connectors.producer import DeliveryFailed
from connectors.status_line import log_beside_status_lines


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from cli.kafka_local import KAFKA_TOOLS, BrokerError, LocalBroker

    broker = LocalBroker(settings)
    try:
        if args.action == "up":
            broker.up()
        elif args.action == "down":
            broker.down()
        elif args.action == "status":
            return 0 if broker.status() else 1
        elif args.action == "logs":
            print(broker.logs(args.lines))
        elif args.action == "tool":
            if not args.tool_args:
                raise CliError("usage: livelearn kafka tool NAME [ARGS...] with NAME one of "
                               + ", ".join(sorted(KAFKA_TOOLS)) + " (or a main class)", code=2)
            return broker.run_tool(args.tool_args[0], args.tool_args[1:])
    except BrokerError as exc:
        raise CliError(str(exc), code=2) from exc
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    require_broker(settings)
    require_transaction_timeout(settings)
    from agents import worker
    from agents.topics import create_topics

    create_topics(settings)
    require_copartitioned(settings)  # refused before Faust starts
    sys.argv = [sys.argv[0]]  # Faust's worker parses argv itself
    worker.run(settings, args.loglevel)
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    require_broker(settings)
    from cli import topics_admin

    return topics_admin.run(args, settings)


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    current = settings.masked_env()
    if args.markdown:
        print("| section | variable | default | meaning |\n|---|---|---|---|")
        for section, env, default, doc in settings_table():
            print(f"| {section} | `{env}` | `{default}` | {doc} |")
        return 0
    shown = None
    for section, env, default, doc in settings_table():
        if section != shown:
            print(f"# {section}")
            shown = section
        print(f"{env}={current[env]}    # {doc} (default {default!r})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livelearn",
        description="Online learning on market data over Apache Kafka. Settings come from environment "
        "variables: see 'livelearn config'.",
    )
    from cli import __version__

    parser.add_argument("--version", action="version", version=f"livelearn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("kafka", help="run the local single-node Kafka broker (Java 17 + Maven), or Kafka's own tools",
                       description="up/down/status/logs manage the local broker; 'tool NAME ARGS' runs one of "
                                   "Kafka's command-line tools with its jars, e.g. 'livelearn kafka tool topics "
                                   "--bootstrap-server 127.0.0.1:9092 --list' (topics, console-consumer, "
                                   "consumer-groups, get-offsets, or a main class).")
    p.add_argument("action", choices=["up", "down", "status", "logs", "tool"])
    p.add_argument("--lines", type=int, default=50, help="lines of the broker log to show (logs)")
    p.add_argument("tool_args", nargs=argparse.REMAINDER, help="tool: NAME and its arguments")
    p.set_defaults(func=cmd_kafka)

    p = sub.add_parser("worker", help="run a Faust worker with every stage agent")
    p.add_argument("--loglevel", default=None, help="log level (default LIVELEARN_LOG_LEVEL)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("topics", help="create, list or describe the pipeline's topics")
    p.add_argument("action", choices=["create", "list", "describe"])
    p.add_argument("--group", default=None, help="consumer group whose lag 'describe' shows (default: app id)")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("config", help="print every setting, its environment variable and meaning")
    p.add_argument("--markdown", action="store_true", help="print the README's configuration table")
    p.set_defaults(func=cmd_config)

    from cli import feed, read, run

    for family in (run, feed, read):  # run the pipeline, feed it, read what it publishes
        family.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func is not cmd_worker:  # a worker configures its own logging (Faust's)
        log_beside_status_lines()
    try:
        settings = Settings.from_env()
        return int(args.func(args, settings) or 0)
    except CliError as exc:
        print(f"livelearn: {exc}", file=sys.stderr)
        return exc.code
    except DeliveryFailed as exc:
        print(f"livelearn: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"livelearn: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if exc.filename is None:  # not about a file (a bug or the network): keep the traceback
            raise
        print(f"livelearn: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
