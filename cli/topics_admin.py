"""`livelearn topics`: create, list, describe (partitions, end offsets, consumer lag)."""

from __future__ import annotations

import argparse
import sys

from agents.settings import Settings
from agents.topics import FLOW, NotCoPartitioned, copartitioned, create_topics, input_partition_counts


def run(args: argparse.Namespace, settings: Settings) -> int:
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    if args.action == "create":
        created = create_topics(settings)
        for name in created:
            print(f"created {name} ({settings.kafka.partitions} partitions)")
        if not created:
            print("all topics exist")
        return 0
    admin = AdminClient(settings.client_config())
    metadata = admin.list_topics(timeout=10)
    names = [settings.topic(spec.stage) for spec in FLOW]
    if args.action == "list":
        for name in names:
            topic = metadata.topics.get(name)
            state = f"{len(topic.partitions)} partitions" if topic else "missing"
            print(f"{name:40s} {state}")
        counts = input_partition_counts(settings, topics=metadata.topics)
        try:
            if counts:
                copartitioned(counts)
        except NotCoPartitioned as exc:
            print(f"warning: {exc}", file=sys.stderr)
        return 0
    group = args.group or settings.app_id
    consumer = Consumer({**settings.client_config(), "group.id": group, "enable.auto.commit": False})
    try:
        print(f"{'topic':36s} {'part':>4s} {'low':>10s} {'high':>10s} {'committed':>10s} {'lag':>8s}  (group {group})")
        for name in names:
            topic = metadata.topics.get(name)
            if topic is None:
                print(f"{name:36s} missing")
                continue
            partitions = [TopicPartition(name, p) for p in sorted(topic.partitions)]
            committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
            for tp in partitions:
                low, high = consumer.get_watermark_offsets(tp, timeout=10)
                done = committed.get(tp.partition, -1)
                lag = high - done if done >= 0 else high - low
                shown = str(done) if done >= 0 else "-"
                print(f"{name:36s} {tp.partition:4d} {low:10d} {high:10d} {shown:>10s} {lag:8d}")
    finally:
        consumer.close()
    return 0
