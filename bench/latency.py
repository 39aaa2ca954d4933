"""End-to-end latency at a paced rate on fresh processes, side by side in one run: the reader alone
(produce -> read, nothing between), a plain confluent-kafka consume -> produce loop, a Quix Streams
no-op, the Faust no-op agent (the framework's own floor), the same agent publishing through librdkafka
as the worker does (Faust's input path alone) and the pipeline (produce time to features /
prediction visible). The forwarders are described in bench/forwarders.py.

bench/pipeline.py measures latency on the worker that has just drained a backlog, at half the rate it
drained it; this one starts fresh processes, waits until they forward, then offers ``--ticks`` synthetic
ticks at ``--rate`` per second and reads the output topics with their own consumers. The worker first
gets the stream's first 100 ticks at the same rate (the forwarders' readiness probe is their warm-up):
its symbol's models, its codecs and its output topics' metadata are made there, and that cold start
is printed apart (the first tick's latency and the slowest). The same worker then gets ``--ticks`` more
as micro-batches (the tick-batches topic, connectors.batching, as `livelearn replay --batch` sends
them: at most ``--batch`` ticks, a partial batch sent once its oldest tick has waited
``--batch-wait-ms`` or before the pacing sleeps past that): latency from the moment a tick is handed
to the batcher, so it includes the batch's wait.

Usage: python bench/latency.py [--rate 400] [--ticks 3000] [--skip quix] [--batch 100] [--batch-wait-ms 5]
(needs the local broker)
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

from common import (
    delete_topics_on_exit,
    free_port,
    isolated_settings,
    result,
    running_worker,
)
from forwarders import KINDS, running, take

from agents.settings import Settings
from agents.topics import create_topics
from connectors.batching import TickBatcher
from connectors.synth import generate
from schemas.codec import AvroCodec
from schemas.keys import BasisGroups

# Ticks the worker gets before the measured ones (and the forwarders not at all: they are warm).
WARM_UP = 100


def paced(bootstrap: str, source: str, outputs: dict[str, str], records: list[tuple[bytes, bytes, int]],
          rate: float, match_by_value: bool, batches: tuple[list[dict], int, float] | None = None
          ) -> tuple[float, dict[str, list[float]]]:
    """Offer ``records`` to ``source`` at ``rate``; seconds from produce to visible on each output.
    Outputs are matched to inputs by their event-time timestamp, or (no-op: Faust stamps what it
    forwards with the current time) by the forwarded value. With ``batches`` (the ticks of
    ``records``, the batch size, the batch wait in ms) the ticks go to a :class:`TickBatcher` that
    produces tick-batches records to ``source``; a tick's clock starts when it is handed over."""
    from confluent_kafka import Consumer, Producer

    sent: dict = {}
    latencies: dict[str, list[float]] = {name: [] for name in outputs}

    def read(name: str) -> None:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                             "auto.offset.reset": "earliest", "fetch.wait.max.ms": 5})
        consumer.subscribe([outputs[name]], on_assign=lambda *_: assigned.release())
        deadline = time.monotonic() + 120 + len(records) / rate
        try:
            while len(latencies[name]) < len(records) and time.monotonic() < deadline:
                for message in take(consumer):
                    if message.error():
                        continue
                    at = sent.get(message.value() if match_by_value else message.timestamp()[1])
                    if at is not None:
                        latencies[name].append(time.monotonic() - at)
        finally:
            consumer.close()

    assigned = threading.Semaphore(0)
    readers = [threading.Thread(target=read, args=(name,)) for name in outputs]
    for reader in readers:
        reader.start()
    for _ in readers:
        assigned.acquire(timeout=60)
    time.sleep(1.0)  # the first fetch of a newly assigned partition
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "partitioner": "murmur2_random"})
    batcher = None
    if batches is not None:
        ticks, size, wait_ms = batches
        batch_codec = AvroCodec.for_topic_schema("tick_batch")

        class Produce:
            def send(self, record, key, timestamp_ms):
                producer.produce(source, key=key.encode(), value=batch_codec.encode(record), timestamp=timestamp_ms)
                producer.poll(0)

            def flush(self):
                pass

        batcher = TickBatcher(Produce(), size=size, max_wait_ms=wait_ms, key_of=BasisGroups.parse("auto").key)
    started = time.monotonic()
    for i, (key, value, timestamp) in enumerate(records):
        due = started + i / rate
        now = time.monotonic()
        if due > now:
            if batcher is not None:
                batcher.waiting(due - now)
            time.sleep(due - now)
        sent[value if match_by_value else timestamp] = time.monotonic()
        if batcher is not None:
            batcher.send(ticks[i], ticks[i]["symbol"], timestamp)
            continue
        producer.produce(source, key=key, value=value, timestamp=timestamp)
        producer.poll(0)
    if batcher is not None:
        batcher.flush()
    producer.flush()
    offered = len(records) / (time.monotonic() - started)
    for reader in readers:
        reader.join()
    return offered, latencies


def percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        raise RuntimeError("no output was matched to an input")
    ms = sorted(v * 1000 for v in values)
    return ms[len(ms) // 2], ms[min(len(ms) - 1, int(0.99 * len(ms)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=400.0, help="offered ticks per second")
    parser.add_argument("--ticks", type=int, default=3000)
    parser.add_argument("--skip", nargs="*", default=[], choices=("reader", *KINDS),
                        help="references to leave out")
    parser.add_argument("--batch", type=int, default=100, help="largest micro-batch of the batched run (1: none)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    settings = isolated_settings(Settings.from_env(), "latency")
    create_topics(settings)
    codec = AvroCodec.for_topic_schema("tick")
    ticks = list(generate(2 * (WARM_UP + args.ticks), seed=3))
    stream = [(t["symbol"].encode(), codec.encode(t), t["event_time_ms"]) for t in ticks]
    warm_up, records = stream[:WARM_UP], stream[WARM_UP:WARM_UP + args.ticks]
    # The batched run's own warm-up (the worker's first records of the tick-batches topic), then its ticks.
    later, later_ticks = stream[WARM_UP + args.ticks:], ticks[WARM_UP + args.ticks:]
    bootstrap = settings.bootstrap_servers

    run = uuid.uuid4().hex[:8]
    delete_topics_on_exit(bootstrap, run)
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    measured: dict[str, tuple[float, list[float]]] = {}
    for kind in ("reader", *KINDS):
        if kind in args.skip:
            continue
        topic = f"bench-latency-{run}.{kind}"
        for future in admin.create_topics([NewTopic(name, 1, 1) for name in (topic, topic + ".out")]).values():
            future.result(30)
        if kind == "reader":  # produce -> read: what the broker, the client and this reader cost
            offered, found = paced(bootstrap, topic, {kind: topic}, records, args.rate, match_by_value=True)
            measured[kind] = offered, found[kind]
            continue
        with running(kind, bootstrap, topic, f"bench-latency-{kind}-{run}", free_port()) as process:
            if process is None:
                continue
            offered, found = paced(bootstrap, topic, {kind: topic + ".out"}, records, args.rate, match_by_value=True)
            measured[kind] = offered, found[kind]

    with running_worker(settings):
        outputs = {stage: settings.topic(stage) for stage in ("features", "predictions")}
        # The forwarders are warm when measured (running() waits for a probe to come through); the worker
        # meets its symbol, its codecs and its output topics' metadata at its first ticks: those are
        # measured apart, not in the steady state.
        _, cold = paced(bootstrap, settings.topic("ticks"), outputs, warm_up, args.rate, match_by_value=False)
        offered, latencies = paced(bootstrap, settings.topic("ticks"), outputs, records, args.rate, match_by_value=False)
        if args.batch > 1:
            for part, part_ticks in ((later[:WARM_UP], later_ticks[:WARM_UP]), (later[WARM_UP:], later_ticks[WARM_UP:])):
                batched_rate, batched = paced(bootstrap, settings.topic("tick-batches"), outputs, part, args.rate,
                                              match_by_value=False, batches=(part_ticks, args.batch, args.batch_wait_ms))
    cold_ms = [v * 1000 for v in cold["predictions"]]
    print(f"worker's first {WARM_UP} ticks (not in the figures below): first {cold_ms[0]:.1f} ms, slowest "
          f"{max(cold_ms):.1f} ms")
    fields = {"offered_rate": round(offered), "ticks": len(records), "worker_cold_first_ms": round(cold_ms[0], 2),
              "worker_cold_max_ms": round(max(cold_ms), 2)}
    for name, values, rate in (*((kind, found, rate) for kind, (rate, found) in measured.items()),
                               ("features", latencies["features"], offered),
                               ("predictions", latencies["predictions"], offered),
                               *((("predictions_batched", batched["predictions"], batched_rate),)
                                 if args.batch > 1 else ())):
        p50, p99 = percentiles(values)
        print(f"{name:<12} at {rate:,.0f} ticks/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(values)}")
        fields[f"{name}_p50_ms"], fields[f"{name}_p99_ms"] = round(p50, 2), round(p99, 2)
    if "faust" in measured:
        fields["predictions_p99_vs_faust"] = round(fields["predictions_p99_ms"] / fields["faust_p99_ms"], 2)
        fields["predictions_p50_vs_faust"] = round(fields["predictions_p50_ms"] / fields["faust_p50_ms"], 2)
    if "faust_rdkafka" in measured:
        fields["predictions_p99_vs_faust_rdkafka"] = round(fields["predictions_p99_ms"] / fields["faust_rdkafka_p99_ms"], 2)
        fields["predictions_p50_vs_faust_rdkafka"] = round(fields["predictions_p50_ms"] / fields["faust_rdkafka_p50_ms"], 2)
    result("latency", **fields)


if __name__ == "__main__":
    main()
