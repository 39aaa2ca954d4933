"""kill -9 mid-replay, restart: features and predictions equal those of an uninterrupted run."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer

from agents.settings import Settings
from schemas.codec import AvroCodec
from tests.conftest import ROOT, livelearn
from tests.kafka_io import paced_replay, read_topic

# slow: in the chaos lane of `make test` (scripts/test.sh), not the integration lane it kept waiting.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

FILES = [ROOT / "data" / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-01.zip",
         ROOT / "data" / "binance" / "klines" / "spot" / "ETHUSDT-1m-2022-08-14.zip"]
TICKS = 2880


def outputs(env: dict) -> tuple[dict, dict]:
    """Features by (symbol, tick index) and predictions by id; duplicates (at-least-once) must agree."""
    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"]
    features, predictions = {}, {}
    codec = AvroCodec.for_topic_schema("features")
    for message in read_topic(bootstrap, prefix + "features", idle=3.0, timeout=120):
        record = codec.decode(message.value())
        key = (record["symbol"], record["tick_index"])
        assert features.setdefault(key, record) == record
    codec = AvroCodec.for_topic_schema("prediction")
    for message in read_topic(bootstrap, prefix + "predictions", idle=3.0, timeout=120):
        record = codec.decode(message.value())
        record.pop("latency_ms")
        assert predictions.setdefault(record["prediction_id"], record) == record
    return features, predictions


def wait_for_predictions(env: dict, at_least: int, timeout: float, symbols: int = 0) -> int:
    """Distinct predictions seen once there are ``at_least`` of them, for ``symbols`` symbols or more
    (or the timeout)."""
    consumer = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"], "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([env["LIVELEARN_TOPIC_PREFIX"] + "predictions"])
    codec = AvroCodec.for_topic_schema("prediction")
    seen: set[str] = set()  # distinct ids: a restart republishes some predictions
    keys: set[bytes] = set()
    deadline = time.monotonic() + timeout
    try:
        while (len(seen) < at_least or len(keys) < symbols) and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.2):
                if not message.error():
                    seen.add(codec.decode(message.value())["prediction_id"])
                    keys.add(message.key())
    finally:
        consumer.close()
    return len(seen)


def test_kill_9_mid_replay_then_restart_gives_the_uninterrupted_results(worker_factory, pipeline_env, run_id):
    settings = {"LIVELEARN_PARTITIONS": "2", "LIVELEARN_LOG_LEVEL": "info"}
    uninterrupted = {**pipeline_env, **settings, "LIVELEARN_TOPIC_PREFIX": f"t{run_id}a.",
                     "LIVELEARN_APP_ID": f"restart-a-{run_id}"}
    worker = worker_factory(uninterrupted).start()
    assert livelearn("replay", *map(str, FILES), "--quiet", env=uninterrupted, timeout=120).returncode == 0
    assert wait_for_predictions(uninterrupted, TICKS, 240) >= TICKS
    worker.stop()
    expected_features, expected_predictions = outputs(uninterrupted)
    assert len(expected_features) == TICKS and len(expected_predictions) == TICKS

    interrupted = {**uninterrupted, "LIVELEARN_TOPIC_PREFIX": f"t{run_id}b.", "LIVELEARN_APP_ID": f"restart-b-{run_id}"}
    first = worker_factory(interrupted).start()
    # Paced (a day in 30 s, 48 ticks a second), so that the SIGKILL meets ticks in flight: replayed at
    # full speed, a fast machine could apply them all before the kill.
    produced: list[int] = []
    replaying = threading.Thread(target=paced_replay, args=(Settings.from_env(interrupted), FILES, 2880, produced))
    replaying.start()
    assert wait_for_predictions(interrupted, 600, 120) >= 600
    first.stop(kill=True)  # SIGKILL: no shutdown hooks, no final checkpoint
    assert len(produced) == 0, "the first file was replayed whole before the kill"
    second = worker_factory(interrupted).start(timeout=120)
    replaying.join(180)
    assert produced == [TICKS // len(FILES)] * len(FILES)
    assert wait_for_predictions(interrupted, TICKS, 300) >= TICKS
    second.stop()
    features, predictions = outputs(interrupted)
    assert features == expected_features
    assert predictions == expected_predictions
