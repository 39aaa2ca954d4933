"""End-to-end latency at a paced rate on fresh workers, side by side: the Faust no-op agent (the
framework's own floor) and the pipeline (produce time to features / prediction visible).

bench/pipeline.py measures latency on the worker that has just drained a backlog, at rates near its
capacity; this one starts fresh workers, waits until they are ready, then offers ``--ticks`` synthetic
ticks at ``--rate`` per second and reads the output topics with their own consumers.

Usage: python bench/latency.py [--rate 400] [--ticks 3000]   (needs the local broker)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid

from common import (
    ROOT,
    delete_topics_on_exit,
    free_port,
    isolated_settings,
    result,
    running_worker,
    wait_ready,
)

from agents.settings import Settings
from agents.topics import create_topics
from connectors.synth import generate
from schemas.codec import AvroCodec


def paced(bootstrap: str, source: str, outputs: dict[str, str], records: list[tuple[bytes, bytes, int]],
          rate: float, match_by_value: bool) -> tuple[float, dict[str, list[float]]]:
    """Offer ``records`` to ``source`` at ``rate``; seconds from produce to visible on each output.
    Outputs are matched to inputs by their event-time timestamp, or (no-op: Faust stamps what it
    forwards with the current time) by the forwarded value."""
    from confluent_kafka import Consumer, Producer

    sent: dict = {}
    latencies: dict[str, list[float]] = {name: [] for name in outputs}

    def read(name: str) -> None:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                             "auto.offset.reset": "earliest", "fetch.wait.max.ms": 5})
        consumer.subscribe([outputs[name]])
        deadline = time.monotonic() + 120 + len(records) / rate
        try:
            while len(latencies[name]) < len(records) and time.monotonic() < deadline:
                for message in consumer.consume(200, 0.02):
                    if message.error():
                        continue
                    at = sent.get(message.value() if match_by_value else message.timestamp()[1])
                    if at is not None:
                        latencies[name].append(time.monotonic() - at)
        finally:
            consumer.close()

    readers = [threading.Thread(target=read, args=(name,)) for name in outputs]
    for reader in readers:
        reader.start()
    time.sleep(2.0)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "partitioner": "murmur2_random"})
    started = time.monotonic()
    for i, (key, value, timestamp) in enumerate(records):
        due = started + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        sent[value if match_by_value else timestamp] = time.monotonic()
        producer.produce(source, key=key, value=value, timestamp=timestamp)
        producer.poll(0)
    producer.flush()
    offered = len(records) / (time.monotonic() - started)
    for reader in readers:
        reader.join()
    return offered, latencies


def forwarding(bootstrap: str, topic: str, timeout: float = 90.0) -> None:
    """Until a probe record comes out of the no-op agent: on a freshly started broker its web port
    answers well before its consumer group has been joined and assigned."""
    from confluent_kafka import Consumer, Producer

    probe = f"probe-{uuid.uuid4().hex}".encode()
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value=probe)
    producer.flush()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic + ".out"])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error() and message.value() == probe:
                return
    finally:
        consumer.close()
    raise RuntimeError(f"the no-op agent forwarded nothing from {topic} within {timeout:.0f} s")


def percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        raise RuntimeError("no output was matched to an input")
    ms = sorted(v * 1000 for v in values)
    return ms[len(ms) // 2], ms[min(len(ms) - 1, int(0.99 * len(ms)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=400.0, help="offered ticks per second")
    parser.add_argument("--ticks", type=int, default=3000)
    args = parser.parse_args()
    settings = isolated_settings(Settings.from_env(), "latency")
    create_topics(settings)
    codec = AvroCodec.for_topic_schema("tick")
    records = [(t["symbol"].encode(), codec.encode(t), t["event_time_ms"]) for t in generate(args.ticks, seed=3)]
    bootstrap = settings.bootstrap_servers

    run = uuid.uuid4().hex[:8]
    delete_topics_on_exit(bootstrap, run)
    noop_topic, port = f"bench-latency-{run}.noop", free_port()
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, 1, 1) for name in (noop_topic, noop_topic + ".out")]).values():
        future.result(30)
    noop = subprocess.Popen([sys.executable, str(ROOT / "bench" / "noop_app.py")], cwd=ROOT / "bench",
                            env={**os.environ, "PYTHONPATH": str(ROOT), "NOOP_TOPIC": noop_topic,
                                 "NOOP_APP_ID": f"bench-latency-noop-{run}", "NOOP_WEB_PORT": str(port)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, noop, "/")
        forwarding(bootstrap, noop_topic)
        noop_offered, noop_latencies = paced(bootstrap, noop_topic, {"noop": noop_topic + ".out"}, records,
                                             args.rate, match_by_value=True)
    finally:
        noop.terminate()
        noop.wait(30)

    with running_worker(settings):
        offered, latencies = paced(bootstrap, settings.topic("ticks"),
                                   {stage: settings.topic(stage) for stage in ("features", "predictions")},
                                   records, args.rate, match_by_value=False)
    fields = {"offered_rate": round(offered), "ticks": len(records)}
    for name, values, rate in (("noop", noop_latencies["noop"], noop_offered),
                               ("features", latencies["features"], offered),
                               ("predictions", latencies["predictions"], offered)):
        p50, p99 = percentiles(values)
        print(f"{name:<12} at {rate:,.0f} ticks/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(values)}")
        fields[f"{name}_p50_ms"], fields[f"{name}_p99_ms"] = round(p50, 1), round(p99, 1)
    result("latency", **fields)


if __name__ == "__main__":
    main()
