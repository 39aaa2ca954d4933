"""`livelearn backtest --jobs N` beside one backtest process and a worker, in one run, on real data
(issue #18: a backtest several times faster than a worker).

The shipped real data, replayed into fresh topics of two partitions (BTCUSDT and ETHUSDT are two basis
groups: one partition each): ``--data klines`` (two days of BTCUSDT and one of ETHUSDT, one-minute
klines: every tick a prediction) or ``--data capture`` (the BTCUSDT and ETHUSDT websocket captures of
2024-08-08: trades and book tickers). On the same inputs, each on topics of its own:

* ``backtest --jobs 1`` and ``backtest --jobs N``: ticks/s over the run each reports (the processes'
  start, torch's import among it, counts for ``--jobs N``; the one-process run loads torch before its
  clock starts), and whether every prediction, per symbol and in order, is the same;
* a worker draining the same backlog: ticks/s from its first prediction to its last (its start and
  group join do not count), as bench/pipeline.py measures it.

A partition is the unit a backtest process takes, so ``--jobs`` gains only where records are spread
over partitions, and at most the share of the largest one (here BTCUSDT's two days against ETHUSDT's
one: at most 1.5x with two processes). This machine has two cores, which the broker shares.

Usage: python bench/backtest_jobs.py [--jobs 2] [--data klines|capture] [--files F ...]   (needs the local broker)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
import uuid

from common import ROOT, SHARED, isolated_settings, matched, result, running_worker
from pipeline import count_until, stamped_by_broker

from agents.settings import Settings
from agents.topics import create_topics
from schemas.codec import AvroCodec

FILES = {
    "klines": [SHARED / "binance" / "klines" / "spot" / name for name in
               ("BTCUSDT-1m-2020-01-01.zip", "BTCUSDT-1m-2020-01-02.zip", "ETHUSDT-1m-2022-08-14.zip")],
    "capture": [SHARED / "binance" / "ws" / name for name in ("spot_btcusdt_20240808.gz", "spot_ethusdt_20240808.gz")],
}


def cli(settings, *args: str, timeout: float = 900) -> str:
    done = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **settings.as_env()}, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"livelearn {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout + done.stderr


def fresh(base, name: str, files) -> tuple[Settings, int]:
    """Topics of their own with ``files`` replayed into them; the settings and the ticks produced."""
    settings = dataclasses.replace(isolated_settings(base, name), partitions="2")
    create_topics(settings)
    stamped_by_broker(base.bootstrap_servers, settings.topic("predictions"))
    said = cli(settings, "replay", *map(str, files), "--quiet")
    return settings, int(matched(r"produced ([0-9,]+)", said).replace(",", ""))


def predictions_by_symbol(bootstrap: str, topic: str, n: int) -> dict[str, list[dict]]:
    """The first ``n`` predictions of ``topic``, per symbol in offset order, without ``latency_ms``."""
    from confluent_kafka import Consumer

    codec = AvroCodec.for_topic_schema("prediction")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: dict[str, list[dict]] = {}
    seen, deadline = 0, time.monotonic() + 300
    try:
        while seen < n and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if not message.error():
                    record = codec.decode(message.value())
                    record.pop("latency_ms")
                    out.setdefault(record["symbol"], []).append(record)
                    seen += 1
    finally:
        consumer.close()
    return out


def backtest(base, name: str, files, jobs: int) -> tuple[float, int, dict[str, list[dict]], Settings]:
    """ticks/s of `livelearn backtest --jobs jobs` over ``files``, its predictions count and records."""
    settings, ticks = fresh(base, name, files)
    said = cli(settings, "backtest", "--quiet", "--jobs", str(jobs))
    seconds = float(matched(r" in ([0-9.]+) s ", said))
    count = int(matched(r"([0-9,]+) predictions", said).replace(",", ""))
    return ticks / seconds, count, predictions_by_symbol(base.bootstrap_servers, settings.topic("predictions"),
                                                         count), settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data", choices=sorted(FILES), default="klines")
    parser.add_argument("--files", nargs="+", help="these files instead (e.g. longer history of two basis groups "
                                                   "that fall on the two partitions)")
    args = parser.parse_args()
    base = Settings.from_env()
    files = args.files or FILES[args.data]
    if args.files:
        args.data = "files"

    one_rate, count, one, _ = backtest(base, "bt1", files, 1)
    many_rate, many_count, many, _ = backtest(base, f"bt{args.jobs}", files, args.jobs)
    identical = many_count == count and many == one

    settings, ticks = fresh(base, "worker", files)
    with running_worker(settings):
        first, last = count_until(base.bootstrap_servers, settings.topic("predictions"), count, 900)
    worker_rate = (count - 1) / (last - first) * ticks / count  # ticks/s, from predictions/s

    print(f"{args.data}: {ticks:,} ticks, {count:,} predictions over {len(one)} symbols on 2 partitions")
    print(f"  backtest, one process     {one_rate:10,.0f} ticks/s = {one_rate / worker_rate:.2f}x the worker")
    print(f"  backtest, --jobs {args.jobs}        {many_rate:10,.0f} ticks/s = {many_rate / worker_rate:.2f}x the "
          f"worker, {many_rate / one_rate:.2f}x one process; predictions identical: {identical}")
    print(f"  worker (first to last)    {worker_rate:10,.0f} ticks/s")
    result("backtest_jobs", data=args.data, ticks=ticks, predictions=count, jobs=args.jobs,
           backtest_ticks_per_s=round(one_rate), backtest_jobs_ticks_per_s=round(many_rate),
           worker_ticks_per_s=round(worker_rate), jobs_vs_one=round(many_rate / one_rate, 2),
           backtest_vs_worker=round(one_rate / worker_rate, 2), jobs_vs_worker=round(many_rate / worker_rate, 2),
           predictions_identical=identical, cores=os.cpu_count())


if __name__ == "__main__":
    main()
