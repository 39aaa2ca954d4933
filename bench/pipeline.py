"""The pipeline through the real broker, side by side in one run:

(a) a Faust no-op agent (consume, forward) draining a backlog: the framework's ceiling on this machine;
(b) the full pipeline (ticks -> features -> ensemble -> predictions, learning from delayed outcomes,
    drift checks) draining the same backlog: events/s, and its ratio to (a);
(c) end-to-end latency (produce time to prediction visible to a consumer) at a fixed offered rate;
(d) the batched replay path (`livelearn backtest`: confluent-kafka batches through the same stage
    functions, no Faust) on the same backlog: events/s, ratio to (a), and whether its predictions are
    identical to (b)'s (every field but the wall-clock latency_ms).

Needs the local broker (livelearn kafka up).
Usage: python bench/pipeline.py [--ticks 6000] [--rate 2000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
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


def producer(bootstrap: str):
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "partitioner": "murmur2_random",
                     "enable.idempotence": True})


def produce_backlog(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, int]]) -> None:
    p = producer(bootstrap)
    for key, value, timestamp in records:
        p.produce(topic, key=key, value=value, timestamp=timestamp)
        p.poll(0)
    p.flush()


def count_until(bootstrap: str, topic: str, n: int, timeout: float, on_message=None) -> float:
    """Consume ``topic`` from the start until ``n`` records; returns the monotonic time of the n-th."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, "fetch.wait.max.ms": 5})
    consumer.subscribe([topic])
    seen, deadline, last = 0, time.monotonic() + timeout, 0.0
    try:
        while seen < n and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.05):
                if message.error():
                    continue
                seen += 1
                last = time.monotonic()
                if on_message:
                    on_message(message, last)
    finally:
        consumer.close()
    if seen < n:
        raise RuntimeError(f"{topic}: {seen}/{n} records within {timeout:.0f} s")
    return last


def predictions(bootstrap: str, topic: str, n: int) -> list[dict]:
    """The first ``n`` predictions of a one-partition topic, without the wall-clock latency."""
    from confluent_kafka import Consumer

    codec = AvroCodec.for_topic_schema("prediction")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[dict] = []
    deadline = time.monotonic() + 120
    try:
        while len(out) < n and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if not message.error() and len(out) < n:
                    record = codec.decode(message.value())
                    record.pop("latency_ms")
                    out.append(record)
    finally:
        consumer.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=6000, help="backlog drained in (a) and (b)")
    parser.add_argument("--rate", type=float, default=2000.0, help="offered ticks/s in (c)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of (c)")
    args = parser.parse_args()
    base = Settings.from_env()
    bootstrap = base.bootstrap_servers
    run = uuid.uuid4().hex[:8]
    delete_topics_on_exit(bootstrap, run)
    codec = AvroCodec.for_topic_schema("tick")
    ticks = list(generate(args.ticks + int(args.rate * args.seconds), seed=7))
    encoded = [(t["symbol"].encode(), codec.encode(t), t["event_time_ms"]) for t in ticks]
    env_base = {**os.environ, "PYTHONPATH": str(ROOT)}

    # (a) no-op agent draining a backlog.
    noop_topic = f"bench-{run}.noop"
    produce_backlog(bootstrap, noop_topic, encoded[: args.ticks])
    port = free_port()
    noop = subprocess.Popen([sys.executable, str(ROOT / "bench" / "noop_app.py")], cwd=ROOT / "bench",
                            env={**env_base, "NOOP_TOPIC": noop_topic, "NOOP_APP_ID": f"bench-noop-{run}",
                                 "NOOP_WEB_PORT": str(port)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, noop, "/")
        started = time.monotonic()
        done = count_until(bootstrap, noop_topic + ".out", args.ticks, 300)
        noop_rate = args.ticks / (done - started)
    finally:
        noop.terminate()
        noop.wait(30)

    # (b) full pipeline draining the same backlog.
    settings = isolated_settings(base, "pipeline")
    create_topics(settings)
    produce_backlog(bootstrap, settings.topic("ticks"), encoded[: args.ticks])
    with running_worker(settings):
        started = time.monotonic()
        done = count_until(bootstrap, settings.topic("predictions"), args.ticks, 600)
        pipeline_rate = args.ticks / (done - started)

        # (c) latency at a fixed offered rate, same worker, the stream continuing.
        sent: dict[str, float] = {}
        latencies: list[float] = []
        prediction_codec = AvroCodec.for_topic_schema("prediction")
        live = ticks[args.ticks:]
        first_index = args.ticks + 1

        def on_prediction(message, at):
            pid = prediction_codec.decode(message.value())["prediction_id"]
            if pid in sent:
                latencies.append(at - sent[pid])

        reader = threading.Thread(target=count_until, args=(bootstrap, settings.topic("predictions"),
                                                            args.ticks + len(live), 120 + args.seconds * 4,
                                                            on_prediction))
        reader.start()
        time.sleep(1.0)
        p = producer(bootstrap)
        interval = 1.0 / args.rate
        t0 = time.monotonic()
        for i, tick in enumerate(live):
            due = t0 + i * interval
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            key, value, ts = encoded[args.ticks + i]
            sent[f"{tick['symbol']}-{tick['event_time_ms']}-{first_index + i}"] = time.monotonic()
            p.produce(settings.topic("ticks"), key=key, value=value, timestamp=ts)
            p.poll(0)
        p.flush()
        offered = len(live) / (time.monotonic() - t0)
        reader.join()

    # (d) batched replay of the same backlog into its own topics.
    batch_settings = isolated_settings(base, "backtest")
    create_topics(batch_settings)
    produce_backlog(bootstrap, batch_settings.topic("ticks"), encoded[: args.ticks])
    done = subprocess.run([sys.executable, "-m", "cli.main", "backtest", "--quiet"], cwd=ROOT, capture_output=True,
                          text=True, env={**env_base, **batch_settings.as_env()}, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"backtest failed: {done.stderr[-2000:]}")
    elapsed = float(re.search(r" in ([0-9.]+) s ", done.stdout).group(1))
    batch_rate = args.ticks / elapsed
    identical = predictions(bootstrap, batch_settings.topic("predictions"), args.ticks) == \
        predictions(bootstrap, settings.topic("predictions"), args.ticks)

    lat = np.array(latencies) * 1000.0
    p50, p99 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 99))) if len(lat) else (float("nan"),) * 2
    print(f"(a) Faust no-op agent        {noop_rate:10,.0f} events/s")
    print(f"(b) full pipeline per event  {pipeline_rate:10,.0f} events/s   = {pipeline_rate / noop_rate:.1%} of (a)"
          f"   (target >= 50%)")
    print(f"(c) at {offered:,.0f} ticks/s offered: end-to-end latency p50 {p50:.1f} ms, p99 {p99:.1f} ms "
          f"over {len(lat)} predictions (target p99 <= 15 ms at 2,000/s)")
    print(f"(d) batched replay path      {batch_rate:10,.0f} events/s   = {batch_rate / noop_rate:.1%} of (a); "
          f"predictions identical to (b): {identical}")
    result("pipeline", noop_events_per_s=round(noop_rate), pipeline_events_per_s=round(pipeline_rate),
           pipeline_vs_noop=round(pipeline_rate / noop_rate, 3), batched_replay_events_per_s=round(batch_rate),
           batched_vs_noop=round(batch_rate / noop_rate, 3), batched_predictions_identical=identical,
           offered_rate=round(offered),
           latency_p50_ms=round(p50, 2), latency_p99_ms=round(p99, 2), latency_samples=len(lat),
           members=base.members)


if __name__ == "__main__":
    main()
