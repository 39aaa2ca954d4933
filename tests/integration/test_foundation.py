"""A real worker on the real broker: Avro in, Avro out, bad records dead-lettered."""

from __future__ import annotations

import re
import time

import pytest

from schemas.codec import AvroCodec
from schemas.keys import BasisGroups
from streams.ticks import make_tick
from tests.conftest import livelearn
from tests.kafka_io import produce, read_topic

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000


def tick_bytes(i: int, symbol: str = "BTCUSDT") -> tuple[bytes, bytes, int]:
    tick = make_tick(symbol, "TRADE", T0 + i * 1000, 100.0 + i, 0.5, source="test", is_buyer_maker=i % 2 == 0)
    return BasisGroups.parse("auto").key(symbol).encode(), AvroCodec.for_topic_schema("tick").encode(tick), \
        tick["event_time_ms"]


def test_tick_flows_through_a_real_worker(worker_factory, pipeline_env):
    worker = worker_factory().start()
    prefix, bootstrap = pipeline_env["LIVELEARN_TOPIC_PREFIX"], pipeline_env["KAFKA_BOOTSTRAP_SERVERS"]
    produce(bootstrap, prefix + "ticks", [tick_bytes(i) for i in range(25)])
    messages = read_topic(bootstrap, prefix + "features", expect=25)
    codec = AvroCodec.for_topic_schema("features")
    vectors = [codec.decode(m.value()) for m in messages]
    assert [v["tick_index"] for v in vectors] == list(range(1, 26))
    assert all(m.key() == b"BTCUSDT" for m in messages)
    # Kafka timestamp carries the tick's event time.
    assert [m.timestamp()[1] for m in messages] == [T0 + i * 1000 for i in range(25)]
    last = vectors[-1]
    assert last["values"]["sma_5"] == pytest.approx(sum(100.0 + i for i in range(20, 25)) / 5)
    assert last["values"]["ret_1"] == pytest.approx(124.0 / 123.0 - 1)
    assert "rsi_14" in last["values"] and "macd" in last["not_ready"]
    status, body = worker.get("/metrics")
    assert status == 200 and 'livelearn_events_total{stage="featurize"} 25.0' in body
    assert "livelearn_misrouted_ticks_total{" not in body  # tick_bytes keys as a producer should


def test_ticks_keyed_otherwise_than_by_their_basis_group_are_applied_and_counted(worker_factory, pipeline_env):
    """The key decides the partition, and so which model of a symbol a tick reaches: a tick keyed by its
    symbol instead of its group (``BTC`` for BTCUSDT, schemas.keys) or with no key is applied (it is no bad
    tick), counted on ``livelearn_misrouted_ticks_total`` and said once per symbol in the log."""
    worker = worker_factory().start()
    prefix, bootstrap = pipeline_env["LIVELEARN_TOPIC_PREFIX"], pipeline_env["KAFKA_BOOTSTRAP_SERVERS"]
    records = [(b"BTC", value, t) for _, value, t in (tick_bytes(i) for i in range(6))]
    records[2] = (b"BTCUSDT", *tick_bytes(2)[1:])
    records[4] = (None, *tick_bytes(4)[1:])
    produce(bootstrap, prefix + "ticks", records)
    assert len(read_topic(bootstrap, prefix + "features", expect=6)) == 6
    _, body = worker.get("/metrics")
    assert 'livelearn_misrouted_ticks_total{stage="ticks"} 2.0' in body
    # Once per symbol: the first misrouted tick names its key. The two sit on different partitions, so
    # either may come first (the one with no key did in one CI run).
    said = re.findall(r"a tick of BTCUSDT keyed (.+?), not b'BTC'", worker.log_path.read_text())
    assert said in (["b'BTCUSDT'"], ["None"]), said


def test_garbled_record_is_dead_lettered_and_the_agent_goes_on(worker_factory, pipeline_env):
    worker_factory().start()
    prefix, bootstrap = pipeline_env["LIVELEARN_TOPIC_PREFIX"], pipeline_env["KAFKA_BOOTSTRAP_SERVERS"]
    nan_tick = make_tick("BTCUSDT", "TRADE", T0 + 2500, float("nan"), 1.0, source="test")
    records = [
        tick_bytes(0), tick_bytes(1),
        (b"BTC", b"\x00garbage that is not avro", T0 + 1500),
        (b"BTC", AvroCodec.for_topic_schema("tick").encode(nan_tick), T0 + 2500),
        tick_bytes(2), tick_bytes(3),
    ]
    produce(bootstrap, prefix + "ticks", records)
    dead = read_topic(bootstrap, prefix + "dead-letters", expect=2)
    letters = [AvroCodec.for_topic_schema("dead_letter").decode(m.value()) for m in dead]
    assert [d["reason_code"] for d in letters] == ["decode_error", "invalid_value"]
    garbled = letters[0]
    assert garbled["value"] == b"\x00garbage that is not avro"
    assert garbled["key"] == b"BTC"
    assert garbled["source_topic"] == prefix + "ticks"
    assert garbled["source_offset"] == 2
    assert f"offset {garbled['source_offset']}" in garbled["reason"]
    assert "price is not a finite number" in letters[1]["reason"]
    features = read_topic(bootstrap, prefix + "features", expect=4)
    assert [AvroCodec.for_topic_schema("features").decode(m.value())["tick_index"] for m in features] == [1, 2, 3, 4]


def test_feedback_from_any_client_that_a_learner_cannot_take_is_dead_lettered_and_a_prediction_may_be_named_by_time(
        worker_factory, pipeline_env):
    """Feedback written by a plain Kafka client, not `livelearn produce`: a label of 2 and a NaN return
    fit the Avro schema but would corrupt every score (streams.external); they are dead-lettered as
    ``invalid_feedback`` and counted, and feedback naming its prediction by symbol and event time (the
    schema's ``prediction_id: null``) is learned."""
    worker = worker_factory().start()
    prefix, bootstrap = pipeline_env["LIVELEARN_TOPIC_PREFIX"], pipeline_env["KAFKA_BOOTSTRAP_SERVERS"]
    produce(bootstrap, prefix + "ticks", [tick_bytes(i) for i in range(12)])
    predictions = read_topic(bootstrap, prefix + "predictions", expect=12)
    predicted = [AvroCodec.for_topic_schema("prediction").decode(m.value()) for m in predictions]
    codec = AvroCodec.for_topic_schema("feedback")

    def record(**fields) -> tuple[bytes, bytes, int]:
        value = {"prediction_id": predicted[3]["prediction_id"], "symbol": "BTCUSDT", "event_time_ms": None,
                 "label": 1, "realised_return": None, "score": None, "source": "desk",
                 "feedback_time_ms": T0 + 60_000, "matured_tick_index": None, **fields}
        return b"BTC", codec.encode(value), T0 + 60_000  # keyed as the ticks (schemas.keys)

    produce(bootstrap, prefix + "feedback", [
        record(label=2), record(realised_return=float("nan")),
        record(prediction_id=None, event_time_ms=predicted[5]["event_time_ms"], label=0)])
    dead = read_topic(bootstrap, prefix + "dead-letters", expect=2)
    letters = [AvroCodec.for_topic_schema("dead_letter").decode(m.value()) for m in dead]
    assert [d["reason_code"] for d in letters] == ["invalid_feedback", "invalid_feedback"]
    assert "label 2 is not 0, 1 or null" in letters[0]["reason"] and "realised_return" in letters[1]["reason"]
    assert [d["source_topic"] for d in letters] == [prefix + "feedback"] * 2
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, body = worker.get("/metrics")
        if 'livelearn_events_total{stage="learn"} 1.0' in body:
            break
        time.sleep(0.5)
    assert 'livelearn_events_total{stage="learn"} 1.0' in body
    assert 'livelearn_dead_letters_total{reason="invalid_feedback",stage="learn"} 2.0' in body


def test_a_transaction_timeout_the_broker_would_refuse_stops_the_worker_at_start(pipeline_env):
    # The local broker keeps Kafka's default transaction.max.timeout.ms, 15 minutes. Without the check
    # at start the worker crashed at its first output, on librdkafka's INVALID_TRANSACTION_TIMEOUT.
    env = {**pipeline_env, "LIVELEARN_PROCESSING_GUARANTEE": "exactly_once", "LIVELEARN_TRANSACTION_TIMEOUT_S": "1000"}
    result = livelearn("worker", env=env, timeout=90)
    assert result.returncode == 2, result.stderr[-2000:]
    assert ("LIVELEARN_TRANSACTION_TIMEOUT_S (1000 s) is longer than broker 1's transaction.max.timeout.ms (900 s)"
            in result.stderr)


def _make_topic(bootstrap: str, name: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)


def test_input_topics_of_unequal_partition_counts_stop_the_worker_at_start(pipeline_env):
    """Made beforehand with one partition, the feedback topic would take a group's feedback to another
    partition number than its ticks (two partitions here): refused with the counts and the fix."""
    prefix, bootstrap = pipeline_env["LIVELEARN_TOPIC_PREFIX"], pipeline_env["KAFKA_BOOTSTRAP_SERVERS"]
    _make_topic(bootstrap, prefix + "feedback", 1)
    result = livelearn("worker", env=pipeline_env, timeout=90)
    assert result.returncode == 2, result.stderr[-2000:]
    assert (f"the input topics do not share one partition count ({prefix}ticks 2, {prefix}tick-batches 2, "
            f"{prefix}external-features 2, {prefix}feedback 1)") in result.stderr
    assert "--partitions 2" in result.stderr
    backtest = livelearn("backtest", env=pipeline_env, timeout=120)
    assert backtest.returncode == 2 and "the input topics do not share one partition count" in backtest.stderr
    listed = livelearn("topics", "list", env=pipeline_env, timeout=60)
    assert listed.returncode == 0 and f"{prefix}feedback" in listed.stdout
    assert f"warning: the input topics do not share one partition count ({prefix}ticks 2" in listed.stderr


def test_the_check_after_creating_the_input_topics_waits_until_the_broker_lists_them(pipeline_env):
    """A broker's metadata answer can lag behind create_topics: the worker's check at start then saw no
    input topic and refused (1 CI run). It waits for every input topic instead, and says which it missed."""
    import threading

    from agents.settings import Settings
    from agents.topics import INPUT_STAGES, InputTopicsNotListed, input_partition_counts

    settings = Settings.from_env(pipeline_env)
    names = [settings.topic(stage) for stage in INPUT_STAGES]
    started = time.monotonic()
    with pytest.raises(InputTopicsNotListed, match=f"input topics {names[0]}, .*{names[-1]} not listed"):
        input_partition_counts(settings, timeout=2.0, every=True)
    assert 2.0 <= time.monotonic() - started < 10
    bootstrap = pipeline_env["KAFKA_BOOTSTRAP_SERVERS"]
    late = threading.Timer(1.5, lambda: [_make_topic(bootstrap, name, 2) for name in names])
    late.start()
    try:
        assert input_partition_counts(settings, timeout=30.0, every=True) == dict.fromkeys(names, 2)
    finally:
        late.join()
    assert input_partition_counts(settings) == dict.fromkeys(names, 2)


def test_an_input_topic_grown_alone_while_the_worker_runs_stops_it(worker_factory, pipeline_env):
    """Grown alone while workers run, the feedback topic reaches the worker as a rebalance (metadata asked
    every second here; every 30 s by default, Kafka's default is five minutes): the worker stops instead
    of running split."""
    from confluent_kafka.admin import AdminClient, NewPartitions

    worker = worker_factory({"LIVELEARN_METADATA_REFRESH_S": "1"}).start()
    prefix, bootstrap = pipeline_env["LIVELEARN_TOPIC_PREFIX"], pipeline_env["KAFKA_BOOTSTRAP_SERVERS"]
    produce(bootstrap, prefix + "ticks", [tick_bytes(i) for i in range(5)])
    assert len(read_topic(bootstrap, prefix + "features", expect=5)) == 5
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_partitions([NewPartitions(prefix + "feedback", 3)])[prefix + "feedback"].result(30)
    assert worker.process is not None
    returncode = worker.process.wait(90)
    assert returncode != 0
    log = worker.log_path.read_text()
    assert f"stopping: the input topics do not share one partition count ({prefix}ticks 2" in log
    assert f"{prefix}feedback 3)" in log


def test_input_topics_grown_together_while_the_worker_runs_are_said_and_it_goes_on(worker_factory, pipeline_env):
    """Grown together the topics stay co-partitioned: the worker goes on, and says once, as an error,
    that groups whose keys hash anew start new models."""
    from confluent_kafka.admin import AdminClient, NewPartitions

    worker = worker_factory({"LIVELEARN_METADATA_REFRESH_S": "1"}).start()
    prefix, bootstrap = pipeline_env["LIVELEARN_TOPIC_PREFIX"], pipeline_env["KAFKA_BOOTSTRAP_SERVERS"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [prefix + stage for stage in ("ticks", "tick-batches", "external-features", "feedback")]
    for future in admin.create_partitions([NewPartitions(name, 3) for name in names]).values():
        future.result(30)
    deadline = time.monotonic() + 60
    while "the input topics now have 3 partitions, 2 before" not in worker.log_path.read_text():
        assert time.monotonic() < deadline, worker.log_path.read_text()[-3000:]
        time.sleep(0.5)
    produce(bootstrap, prefix + "ticks", [tick_bytes(i) for i in range(5)])
    assert len(read_topic(bootstrap, prefix + "features", expect=5)) == 5
    assert worker.process is not None and worker.process.poll() is None
    assert worker.log_path.read_text().count("the input topics now have") == 1


def test_a_restore_after_the_input_topics_grew_says_which_models_their_ticks_left(worker_factory, pipeline_env):
    """Grown while no worker runs (the way to add partitions), the input topics move some groups to
    another partition, and no rebalance says so: the restored partition names the symbols whose models it
    brought back but whose ticks now go elsewhere, once, and counts them. Where Kafka put each record
    (librdkafka's murmur2) is checked against ``schemas.keys.kafka_partition`` (aiokafka's)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewPartitions

    from schemas.keys import kafka_partition

    prefix, bootstrap = pipeline_env["LIVELEARN_TOPIC_PREFIX"], pipeline_env["KAFKA_BOOTSTRAP_SERVERS"]
    # From two partitions to three: BTC 0 -> 1 and SOL 1 -> 0 move, BNB stays on 0, ETH on 1.
    symbols = {"BTCUSDT": (0, 1), "SOLUSDT": (1, 0), "BNBUSDT": (0, 0), "ETHUSDT": (1, 1)}
    for symbol, (before, after) in symbols.items():
        key = BasisGroups.parse("auto").key(symbol).encode()
        assert (kafka_partition(key, 2), kafka_partition(key, 3)) == (before, after), symbol
    landed: list[tuple[bytes, int]] = []

    def produce_murmur2(records: list[tuple[bytes, bytes, int]]) -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
        for key, value, timestamp_ms in records:
            producer.produce(prefix + "ticks", key=key, value=value, timestamp=timestamp_ms,
                             on_delivery=lambda err, msg: landed.append((msg.key(), msg.partition())))
        assert producer.flush(30) == 0

    first = worker_factory().start()
    produce_murmur2([tick_bytes(i, symbol) for symbol in symbols for i in range(5)])
    assert len(read_topic(bootstrap, prefix + "features", expect=20)) == 20
    assert landed and all(partition == kafka_partition(key, 2) for key, partition in landed)
    first.stop()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [prefix + stage for stage in ("ticks", "tick-batches", "external-features", "feedback")]
    for future in admin.create_partitions([NewPartitions(name, 3) for name in names]).values():
        future.result(30)

    landed.clear()
    second = worker_factory().start()
    # A tick of a symbol that stayed, on each old partition: the partition is restored to apply it.
    produce_murmur2([tick_bytes(5, "BNBUSDT"), tick_bytes(5, "ETHUSDT")])
    assert len(read_topic(bootstrap, prefix + "features", expect=22)) == 22
    assert sorted(partition for _, partition in landed) == [0, 1]
    log = second.log_path.read_text()
    assert ("partition 0 was restored with the models of 1 symbol(s) whose ticks now go to another of the input "
            "topics' 3 partitions: BTCUSDT (now 1).") in log
    assert "partition 1 was restored with the models of 1 symbol(s) whose ticks now go to another of the input " \
           "topics' 3 partitions: SOLUSDT (now 0)." in log
    assert "BNBUSDT (now" not in log and "ETHUSDT (now" not in log
    _, body = second.get("/metrics")
    assert "livelearn_models_stranded_total 2.0" in body
    assert "whose ticks now go to another" not in first.log_path.read_text()


def test_a_producer_places_keys_by_the_grown_partition_count_within_the_metadata_refresh(pipeline_env):
    """A producer places a key by the partition count it last asked the broker for: with librdkafka's
    default refresh (five minutes) a connector went on sending a group's ticks to its old partition that
    long after the topics grew. Every producer asks again every ``LIVELEARN_METADATA_REFRESH_S``."""
    from confluent_kafka.admin import AdminClient, NewPartitions

    from agents.settings import Settings
    from connectors.producer import make_producer
    from schemas.keys import kafka_partition

    settings = Settings.from_env({**pipeline_env, "LIVELEARN_METADATA_REFRESH_S": "1"})
    topic = settings.topic("ticks")
    _make_topic(settings.bootstrap_servers, topic, 2)
    assert (kafka_partition(b"BTC", 2), kafka_partition(b"BTC", 3)) == (0, 1)
    producer = make_producer(settings.client_config())
    landed: list[int] = []

    def send() -> int:
        producer.produce(topic, key=b"BTC", value=b"x", on_delivery=lambda err, msg: landed.append(msg.partition()))
        assert producer.flush(30) == 0
        return landed[-1]

    assert send() == 0
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    admin.create_partitions([NewPartitions(topic, 3)])[topic].result(30)
    deadline = time.monotonic() + 20
    while send() != 1:
        assert time.monotonic() < deadline, f"still on the old partition after 20 s: {landed}"
        producer.poll(0.5)
