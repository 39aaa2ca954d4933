"""Scaling out: the same backlog drained by one worker process and by two (one Faust consumer group,
two partitions), through the real broker.

Two symbols of synthetic trades, ``--ticks`` each, are produced to a two-partition ticks topic, one
symbol per partition (partition chosen explicitly, so that the split is even whatever the key hash).
Run 1: one worker owns both partitions. Run 2 (fresh topics): two workers of the same app, started
and ready before the backlog is produced, share them. Prints events/s of each (from the first prediction
to the last, by the broker's append times: bench/pipeline.py's count_until) and the ratio. On a 2-core
machine that also runs the broker and this script, the ratio is bounded well below 2.

Measured on this 2-core machine (one run each, 6,000 ticks a symbol): one worker 869 events/s, two
891 (1.03x; 6130559, drains timed by the broker's append times); before, one worker 527, two 508
(0.96x; b5811b9, timed by when the reader saw the predictions). The second process brings no gain
here: the broker and two workers share two cores. Partitions and worker processes scale with cores (and machines), not on one small box.

Usage: python bench/scaling.py [--ticks 6000]   (needs the local broker)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time

from common import free_port, isolated_settings, result, running_worker
from pipeline import count_until, producer, stamped_by_broker

from agents.settings import Settings
from agents.topics import create_topics
from connectors.synth import generate
from schemas.codec import AvroCodec

SYMBOLS = ("AAAUSDT", "BBBUSDT")


def drain(settings, workers: int, ticks: int) -> float:
    create_topics(settings)
    stamped_by_broker(settings.bootstrap_servers, settings.topic("predictions"))
    codec = AvroCodec.for_topic_schema("tick")
    with contextlib.ExitStack() as stack:
        for i in range(workers):
            worker_settings = settings if i == 0 else dataclasses.replace(
                settings, web_port=str(free_port()), state_dir=settings.state_dir + f"-{i}")
            stack.enter_context(running_worker(worker_settings))
        time.sleep(8.0)  # the group's rebalance settles before the backlog arrives
        p = producer(settings.bootstrap_servers)
        for partition, symbol in enumerate(SYMBOLS):
            for tick in generate(ticks, seed=partition, symbol=symbol):
                p.produce(settings.topic("ticks"), key=symbol.encode(), value=codec.encode(tick),
                          timestamp=tick["event_time_ms"], partition=partition)
                p.poll(0)
        p.flush()
        # From the first prediction to the last, as bench/pipeline.py measures a worker.
        first, last = count_until(settings.bootstrap_servers, settings.topic("predictions"), ticks * len(SYMBOLS), 600)
    return (ticks * len(SYMBOLS) - 1) / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=6000, help="ticks per symbol")
    args = parser.parse_args()
    base = Settings.from_env()
    one = drain(dataclasses.replace(isolated_settings(base, "scale1"), partitions="2"), 1, args.ticks)
    two = drain(dataclasses.replace(isolated_settings(base, "scale2"), partitions="2"), 2, args.ticks)
    print(f"one worker   {one:8,.0f} events/s")
    print(f"two workers  {two:8,.0f} events/s   = {two / one:.2f}x")
    result("scaling", ticks_per_symbol=args.ticks, one_worker_events_per_s=round(one),
           two_workers_events_per_s=round(two), ratio=round(two / one, 2))


if __name__ == "__main__":
    main()
