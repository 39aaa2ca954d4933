"""Commands that run the pipeline itself outside a worker: the demo (the main job) and the backtest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agents.settings import Settings
from cli.feed import ensure_topics
from connectors.status_line import StatusLine


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from cli import demo
    from cli.inputs import data_files

    # Before the broker and the worker start: a mistyped path is the first thing to say.
    files = data_files(args.files, "demo") if args.files else None
    return demo.run(settings, files=files, report_dir=Path(args.report_dir) if args.report_dir else None)


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    """The pipeline over the input topics (ticks, tick batches, dataset vectors, feedback) as they are
    now, in batches, without a worker (agents.backtest)."""
    import time

    from cli.errors import CliError, require_broker, require_copartitioned
    from cli.processes import jobs_option

    jobs = jobs_option(args.jobs)
    require_broker(settings)
    from confluent_kafka.admin import AdminClient

    ticks = settings.topic("ticks")
    # Before any topic is created: a mistyped LIVELEARN_TOPIC_PREFIX would otherwise create a set of
    # empty topics and report a backtest of nothing.
    if ticks not in AdminClient(settings.client_config()).list_topics(timeout=15).topics:
        raise CliError(f"topic {ticks} does not exist: nothing to backtest (replay ticks into it first, "
                       "with the same LIVELEARN_TOPIC_PREFIX: livelearn replay FILE)", code=2)
    ensure_topics(settings)
    from agents.app import pipeline_config
    from agents.backtest import INPUTS, groups_reading, partition_sizes, run_backtest
    from cli.processes import auto_jobs, usable_cpus
    require_copartitioned(settings)  # the backtest applies feedback to its partition's pipeline, as a worker does
    from streams.learning import SymbolLearner

    # torch and River load here, not in the timed run (the other processes of --jobs load their own in it)
    SymbolLearner("WARMUP", pipeline_config(settings).learner)
    if held := sum(partition_sizes(settings, ("predictions",), 15.0).values()):
        reading = groups_reading(settings, ticks, 15.0)
        groups = ", ".join(f"group {group} with {n} member{'s' * (n != 1)}" for group, n in sorted(reading.items()))
        whose = (f"{groups} reading {ticks} now, a running worker's if it is {settings.app_id}: this run's records "
                 "interleave with its outputs" if reading else
                 f"an earlier backtest, or a worker that has stopped (no group reads {ticks} now): this run's "
                 "records follow them")
        print(f"livelearn: note: {settings.topic('predictions')} already holds records ({held:,} offsets; {whose}, "
              "the same ones again where the inputs are the same (livelearn's readers drop repeated prediction "
              "ids). A topic prefix of its own gives a backtest topics of its own.", file=sys.stderr)
    if jobs is None:
        jobs = auto_jobs(partition_sizes(settings, INPUTS, 15.0), usable_cpus())
    started = time.monotonic()
    line = StatusLine(enabled=not args.quiet, every_s=0.0)  # the backtest calls back every 5,000 records
    finished = []  # the end is reported once (the backtest may report it twice)

    def progress(done: int, total: int) -> None:
        if total and not finished and line.due(force=done == total):
            rate = done / max(time.monotonic() - started, 1e-9)
            line.write(f"backtest: {done:,}/{total:,} records ({done / total:.0%}), {rate:,.0f} records/s")
            if done == total:
                finished.append(True)

    try:
        counts = run_backtest(settings, progress, jobs=jobs)
    except RuntimeError as exc:
        raise CliError(str(exc), code=2) from None
    finally:
        line.close()
    elapsed = time.monotonic() - started
    inputs = [f"{counts['ticks']:,} ticks of {settings.topic('ticks')} and {settings.topic('tick-batches')}"]
    if counts["vectors_in"]:
        inputs.append(f"{counts['vectors_in']:,} vectors of {settings.topic('external-features')}")
    if counts["feedback"]:
        inputs.append(f"{counts['feedback']:,} feedback records of {settings.topic('feedback')} "
                      f"({counts['learned']:,} learned)")
    print(f"backtest of {', '.join(inputs)}: {counts['vectors']:,} feature vectors, {counts['predictions']:,} "
          f"predictions, {counts['alerts']:,} alerts, {counts['dead_letters']:,} dead letters in {elapsed:.1f} s "
          f"{'in ' + str(counts['jobs']) + ' processes ' if counts['jobs'] > 1 else ''}"
          f"({counts['ticks'] / max(elapsed, 1e-9):,.0f} ticks/s)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job: broker, worker, replay of the shipped sample, summary, report")
    p.add_argument("files", nargs="*", help="files or folders to replay instead of the shipped BTCUSDT/ETHUSDT sample")
    p.add_argument("--report-dir", help="where the report and worker log go (default ./reports)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("backtest", help="run the pipeline over the ticks topics (and dataset vectors) in batches, "
                                        "without a worker, with the feedback topic's records in the order they "
                                        "became known (same records as a fresh worker; use a topic prefix of its "
                                        "own)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--jobs", default="auto", metavar="N|auto",
                   help="processes to share the input partitions among, as workers of a group do (no more than "
                        "the partitions that hold records); the records are the same. Default auto: one under "
                        "50,000 input records, else one a CPU, at most four")
    p.set_defaults(func=cmd_backtest)
