"""End-to-end latency at a paced rate on a fresh worker: produce time to features / prediction visible.

bench/pipeline.py measures latency on the worker that has just drained a backlog, at rates near its
capacity; this one starts a fresh worker, waits until it is ready, then offers ``--ticks`` synthetic
ticks at ``--rate`` per second and reads both output topics with their own consumers.

Usage: python bench/latency.py [--rate 400] [--ticks 3000]   (needs the local broker)
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

from common import isolated_settings, result, running_worker

from agents.settings import Settings
from agents.topics import create_topics
from connectors.synth import generate
from schemas.codec import AvroCodec


def main() -> None:
    from confluent_kafka import Consumer, Producer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=400.0, help="offered ticks per second")
    parser.add_argument("--ticks", type=int, default=3000)
    args = parser.parse_args()
    settings = isolated_settings(Settings.from_env(), "latency")
    create_topics(settings)
    codec = AvroCodec.for_topic_schema("tick")
    ticks = list(generate(args.ticks, seed=3))
    sent: dict[int, float] = {}
    latencies: dict[str, list[float]] = {"features": [], "predictions": []}

    def read(stage: str) -> None:
        consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": uuid.uuid4().hex,
                             "auto.offset.reset": "earliest", "fetch.wait.max.ms": 5})
        consumer.subscribe([settings.topic(stage)])
        deadline = time.monotonic() + 120 + args.ticks / args.rate
        try:
            while len(latencies[stage]) < len(ticks) and time.monotonic() < deadline:
                for message in consumer.consume(200, 0.02):
                    if not message.error() and message.timestamp()[1] in sent:
                        latencies[stage].append(time.monotonic() - sent[message.timestamp()[1]])
        finally:
            consumer.close()

    with running_worker(settings):
        readers = [threading.Thread(target=read, args=(stage,)) for stage in latencies]
        for reader in readers:
            reader.start()
        time.sleep(2.0)
        producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 0,
                             "partitioner": "murmur2_random"})
        started = time.monotonic()
        for i, tick in enumerate(ticks):
            due = started + i / args.rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            sent[tick["event_time_ms"]] = time.monotonic()
            producer.produce(settings.topic("ticks"), key=tick["symbol"].encode(), value=codec.encode(tick),
                             timestamp=tick["event_time_ms"])
            producer.poll(0)
        producer.flush()
        offered = len(ticks) / (time.monotonic() - started)
        for reader in readers:
            reader.join()
    fields = {"offered_rate": round(offered), "ticks": len(ticks)}
    for stage, values in latencies.items():
        ms = sorted(v * 1000 for v in values)
        p50, p99 = ms[len(ms) // 2], ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        print(f"{stage:<12} at {offered:,.0f} ticks/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(ms)}")
        fields[f"{stage}_p50_ms"], fields[f"{stage}_p99_ms"] = round(p50, 1), round(p99, 1)
    result("latency", **fields)


if __name__ == "__main__":
    main()
