"""`livelearn backtest --jobs N`: how the input partitions are shared out, and what a run whose process
fails says. The records a run in several processes publishes are compared with one process's on the real
broker in tests/integration/test_backtest_kafka.py."""

from __future__ import annotations

import socket
import time

import pytest

from agents.backtest import _run_in_processes, shard
from agents.settings import Settings


def test_partitions_are_shared_out_by_their_records_and_each_goes_to_one_process():
    sizes = {0: 5, 1: 900, 2: 300, 3: 310, 4: 0, 5: 280}
    shards = shard(sizes, 3)
    assert shards == [frozenset({1}), frozenset({3, 0}), frozenset({2, 5})]
    assert sorted(p for s in shards for p in s) == [0, 1, 2, 3, 5]  # each once; the empty one left out
    assert shard(sizes, 1) == [frozenset({0, 1, 2, 3, 5})]
    assert shard({}, 4) == [] and shard({0: 0}, 2) == []
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        shard(sizes, 0)


def test_a_process_that_fails_fails_the_run_saying_which_partitions_it_had_and_why():
    """A broker that is not there: each process's first metadata call fails, and the run says so (not a
    hang, not a run of nothing)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    started = time.monotonic()
    with pytest.raises(RuntimeError) as failed:
        _run_in_processes(settings, [frozenset({0}), frozenset({1, 2})], None, timeout=2.0)
    assert time.monotonic() - started < 60
    said = str(failed.value)
    assert said.startswith("backtest process ") and " failed: " in said and "KafkaException" in said, said
    assert "(input partitions 0)" in said or "(input partitions 1, 2)" in said, said
