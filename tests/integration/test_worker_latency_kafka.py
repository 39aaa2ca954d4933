"""A worker that fell behind catches up: after a burst of ticks it answers paced ticks within
milliseconds again, instead of staying 1-1.6 s behind for as long as the stream runs
(agents.kafka_input says why that happened: aiokafka's one fetch at a time to a broker, held up to
Faust's 1,500 ms when it covers only idle partitions).

One real worker on the real broker: a backlog of synthetic ticks produced at once, then ticks at a
steady rate well below what the worker applies; latency = from producing a tick to its prediction
being read. The same run with Faust's hold (``LIVELEARN_INPUT_FETCH_WAIT_MS=1500``) shows the lag the
default removes, so the test cannot pass on a worker that does not catch up. The rate is low (50 a
second) so that a worker sharing two cores with the other test lanes still keeps up (at 200 a second
it did not, whatever the hold), and the burst large (1,000): after 300 the old hold did not always
lock in."""

from __future__ import annotations

import statistics
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from connectors.synth import generate
from schemas.codec import AvroCodec

pytestmark = pytest.mark.integration

BURST, PACED, RATE = 1000, 600, 50.0  # ticks; ticks/s: a rate a worker keeps up with on a loaded machine


def paced_latencies(env: dict[str, str]) -> list[float]:
    """Seconds from producing each paced tick (after the burst) to reading its prediction."""
    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"]
    tick_codec, prediction_codec = AvroCodec.for_topic_schema("tick"), AvroCodec.for_topic_schema("prediction")
    ticks = list(generate(BURST + PACED, seed=11))
    sent: dict[int, float] = {}
    latencies: list[float] = []
    joined, done = threading.Event(), threading.Event()

    def read() -> None:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                             "auto.offset.reset": "earliest", "fetch.wait.max.ms": 5})
        consumer.subscribe([prefix + "predictions"], on_assign=lambda *_: joined.set())
        deadline = time.monotonic() + 300
        try:
            while len(latencies) < PACED and time.monotonic() < deadline:
                message = consumer.poll(0.05)
                if message is None or message.error():
                    continue
                at = time.monotonic()
                produced = sent.get(prediction_codec.decode(message.value())["event_time_ms"])
                if produced is not None:
                    latencies.append(at - produced)
        finally:
            consumer.close()
            done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert joined.wait(60), "the reader's group gave it no partition"
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    topic = prefix + "ticks"
    for tick in ticks[:BURST]:
        producer.produce(topic, key=tick["symbol"].encode(), value=tick_codec.encode(tick))
        producer.poll(0)
    producer.flush(30)
    started = time.monotonic()
    for i, tick in enumerate(ticks[BURST:]):
        due = started + i / RATE
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        sent[tick["event_time_ms"]] = time.monotonic()
        producer.produce(topic, key=tick["symbol"].encode(), value=tick_codec.encode(tick))
        producer.poll(0)
    producer.flush(30)
    done.wait(300)
    assert len(latencies) == PACED, f"{len(latencies)} of {PACED} paced predictions read"
    return latencies


def test_a_worker_behind_after_a_burst_catches_up_and_stays_caught_up(worker_factory, pipeline_env, run_id):
    worker = worker_factory().start()
    caught_up = paced_latencies(pipeline_env)
    worker.stop()
    env = {**pipeline_env, "LIVELEARN_TOPIC_PREFIX": f"t{run_id}b.", "LIVELEARN_APP_ID": f"livelearn-test-{run_id}b",
           "LIVELEARN_INPUT_FETCH_WAIT_MS": "1500"}
    worker = worker_factory(env).start()
    held = paced_latencies(env)
    worker.stop()
    # The last half of the paced ticks: the burst has long been applied (about a second's work unloaded).
    tail, held_tail = caught_up[PACED // 2:], held[PACED // 2:]
    print(f"paced ticks' latency, last {len(tail)}: median {1000 * statistics.median(tail):.1f} ms, "
          f"max {1000 * max(tail):.1f}; with Faust's 1,500 ms hold: median {1000 * statistics.median(held_tail):.1f} "
          f"ms, max {1000 * max(held_tail):.1f}")
    assert statistics.median(tail) < 0.25
    assert statistics.median(held_tail) > 0.5
