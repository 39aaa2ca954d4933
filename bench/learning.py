"""Predict + learn throughput per member and for the ensemble, in process and through Kafka, in one run.

Feature vectors come from the shipped real klines (BTCUSDT 2020-01-01/02, ETHUSDT 2022-08-14, futures
BTCUSDT 2022-09-05) through the feature engine. In process: ``SymbolLearner.process`` (learn the
matured outcomes, then predict) for each member alone (beside the persistence baseline, which always
runs) and for the default ensemble. Through Kafka: the same vectors produced to a fresh external-features topic,
a real worker (predict, learn and monitor agents) with the default members, timed from the first
prediction visible to a consumer to the last (its start and group join do not count, as in
bench/pipeline.py). Prints a table, the Kafka/in-process ratio and ``RESULT`` lines.

Usage: python bench/learning.py [--with-arf] [--skip-kafka]
Needs the local broker for the Kafka part (livelearn kafka up).
"""

from __future__ import annotations

import argparse
import os
import time

from common import SHARED, isolated_settings, pin_one_core, result, running_worker

from agents.settings import Settings
from connectors.recorded import read_file
from streams.features import FeatureEngine
from streams.learning import LearnerConfig, SymbolLearner

FILES = [SHARED / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-01.zip",
         SHARED / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-02.zip",
         SHARED / "binance" / "klines" / "spot" / "ETHUSDT-1m-2022-08-14.zip",
         SHARED / "binance" / "klines" / "um" / "BTCUSDT-1m-2022-09-05.zip"]


def feature_vectors() -> list[dict]:
    vectors = []
    for index, path in enumerate(FILES):
        engine = FeatureEngine()
        for item in read_file(path):
            if item.tick is None:
                continue
            # Files of the same symbol on different days are separate streams here (no 2-day gap in one).
            tick = {**item.tick, "symbol": f"{item.tick['symbol']}-{index}"}
            vector = engine.update(tick)
            if vector is not None:
                vectors.append(vector)
    return vectors


def pooled_log_loss(learners: dict[str, SymbolLearner], name: str) -> float:
    total = sum(learner.scores[name].total for learner in learners.values())
    return sum(learner.scores[name].total_loss for learner in learners.values()) / total


def in_process(vectors: list[dict], members: tuple[str, ...], horizon: int) -> tuple[float, float, float]:
    """(events/s, log-loss as served, log-loss of the best member on its own) of predict + learn over
    every vector. The served forecast stays 0.5 (log-loss ln 2) until the members show skill (the skill
    gate, streams.skill_gate), which they do not on these klines: an accuracy of what is served said
    nothing about the members, so their own log-loss is printed beside it."""
    learners: dict[str, SymbolLearner] = {}
    started = time.perf_counter()
    for vector in vectors:
        learner = learners.get(vector["symbol"])
        if learner is None:
            learner = learners[vector["symbol"]] = SymbolLearner(
                vector["symbol"], LearnerConfig(members=members, horizon_ticks=horizon))
        learner.process(vector)
    elapsed = time.perf_counter() - started
    return (len(vectors) / elapsed, pooled_log_loss(learners, "ensemble"),
            min(pooled_log_loss(learners, member) for member in members))


def through_kafka(vectors: list[dict], base: Settings) -> float:
    from confluent_kafka import Producer
    from pipeline import count_until, stamped_by_broker

    from agents.topics import create_topics
    from schemas.codec import AvroCodec

    settings = isolated_settings(base, "learning")
    create_topics(settings)
    stamped_by_broker(settings.bootstrap_servers, settings.topic("predictions"))
    codec = AvroCodec.for_topic_schema("features")
    producer = Producer({**settings.client_config(), "linger.ms": 5, "partitioner": "murmur2_random"})
    for vector in vectors:
        producer.produce(settings.topic("external-features"), key=vector["symbol"].encode(), value=codec.encode(vector),
                         timestamp=vector["event_time_ms"])
        producer.poll(0)
    producer.flush()
    with running_worker(settings):
        # From the first prediction to the last, as bench/pipeline.py: the worker's start does not count.
        first, last = count_until(settings.bootstrap_servers, settings.topic("predictions"), len(vectors), 600)
        return (len(vectors) - 1) / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--with-arf", action="store_true", help="also time ARF(10) (slow: about 2-3 ms an event)")
    parser.add_argument("--skip-kafka", action="store_true", help="in-process figures only")
    args = parser.parse_args()
    base = Settings.from_env()
    default = base.learning.members
    vectors = feature_vectors()
    configs = [("logreg",), ("mlp",), ("hat",)] + ([("arf",)] if args.with_arf else []) + [default]
    pin_one_core()
    print(f"{len(vectors):,} real feature vectors, horizon {base.learning.horizon_ticks} ticks, one core")
    print(f"{'members':<20} {'events/s':>10} {'us/event':>9} {'log-loss served':>16} {'best member alone':>18}")
    rates = {}
    for members in configs:  # imports (torch, river) and first allocations out of the timings
        in_process(vectors[:300], members, base.learning.horizon_ticks)
    for members in configs:
        rate, served, best = in_process(vectors, members, base.learning.horizon_ticks)
        name = "+".join(members)
        rates[name] = rate
        print(f"{name:<20} {rate:>10,.0f} {1e6 / rate:>9.1f} {served:>16.4f} {best:>18.4f}")
        result("learning", mode="in_process", members=name, events_per_s=round(rate), served_log_loss=round(served, 4),
               best_member_log_loss=round(best, 4), vectors=len(vectors))
    if args.skip_kafka:
        return
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    kafka_rate = through_kafka(vectors, base)
    name = "+".join(default)
    print(f"{name + ' via Kafka':<20} {kafka_rate:>10,.0f} {1e6 / kafka_rate:>9.1f}"
          f"   = {kafka_rate / rates[name]:.1%} of in process")
    result("learning", mode="kafka", members=name, events_per_s=round(kafka_rate),
           kafka_vs_in_process=round(kafka_rate / rates[name], 3), vectors=len(vectors))


if __name__ == "__main__":
    main()
