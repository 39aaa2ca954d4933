"""How the throughput benchmarks time a drain (bench/pipeline.py's ``count_until``, used by
bench/backtest_jobs.py, scaling.py, worker_profile.py and learning.py too), on a real broker: from the
broker's append times where the output topic has them, so that a reader joining after the records were
written times the writer, not its own reading (the plain confluent-kafka loop's 6,000 records read
2.3 million a second on 2026-12-07: all written before the reader's first fetch)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.bench_modules import bench_module
from tests.kafka_io import produce

pytestmark = pytest.mark.integration


def _written_in_two_bursts(bootstrap: str, topic: str) -> None:
    """25 records, a pause of 3 s, 25 more; all written before anyone reads them."""
    produce(bootstrap, topic, [(b"k", b"first", 1_577_836_800_000)] * 25)
    time.sleep(3.0)
    produce(bootstrap, topic, [(b"k", b"second", 1_577_836_800_000)] * 25)


def test_a_drain_is_timed_by_the_brokers_append_times_not_by_when_its_reader_saw_it(kafka, run_id):
    pipeline = bench_module("pipeline")
    stamped, plain = f"bench-timing-{run_id}.stamped", f"bench-timing-{run_id}.plain"
    admin = AdminClient({"bootstrap.servers": kafka})
    for future in admin.create_topics([NewTopic(stamped, 1, 1), NewTopic(plain, 1, 1)]).values():
        future.result(30)
    try:
        pipeline.stamped_by_broker(kafka, stamped)
        for topic in (stamped, plain):
            _written_in_two_bursts(kafka, topic)

        first, last = pipeline.count_until(kafka, stamped, 50, 60)
        assert 3.0 <= last - first < 15.0  # the writer's span, its pause included
        assert abs(first - time.time()) < 60  # the broker's clock, not the producer's 2020 timestamps

        # Without the broker's stamps the span is this reader's: both bursts in a fetch or two (well
        # under the writer's pause, with room for a loaded machine).
        seen_first, seen_last = pipeline.count_until(kafka, plain, 50, 60)
        assert seen_last - seen_first < 2.0
        with pytest.raises(RuntimeError, match="50/51 records"):
            pipeline.count_until(kafka, stamped, 51, 3)
    finally:
        for future in admin.delete_topics([stamped, plain]).values():
            future.result(30)
