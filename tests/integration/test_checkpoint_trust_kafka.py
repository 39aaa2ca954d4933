"""No code from topics: forged checkpoint records are refused by a real worker, which resumes from its
last good checkpoint and skips nothing."""

from __future__ import annotations

import os
import pickle
import re
import secrets
import time
import zlib

import pytest

from agents.checkpoints import part_key
from agents.settings import Settings
from agents.trust import CheckpointSigner, checkpoint_key
from connectors.recorded import read_file
from schemas.codec import AvroCodec
from tests.conftest import ROOT
from tests.kafka_io import produce, read_topic, wait_for_distinct

# heavy: seven restores of about half a minute each (170 s), which run in the unit tests' lane of
# `make test` instead of lengthening the integration lane (scripts/test.sh).
pytestmark = [pytest.mark.integration, pytest.mark.heavy]

FILE = ROOT / "data" / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-01.zip"


class SideEffect:
    """A pickle that runs a shell command when loaded with plain pickle."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def metric(body: str, name: str, **labels: str) -> float:
    for line in body.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def features_ends(bootstrap: str, prefix: str, partitions: int) -> dict[int, int]:
    """The end offset of each partition of the features topic: what was published before now."""
    from confluent_kafka import Consumer, TopicPartition

    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        return {p: probe.get_watermark_offsets(TopicPartition(prefix + "features", p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        probe.close()


def features_by_tick(bootstrap: str, prefix: str, count: int, ends: dict[int, int]) -> tuple[dict, list]:
    """The feature vectors by tick index, read until ``count`` distinct ones arrived, and the tick
    indices of those published at or after ``ends`` (features_ends)."""
    codec = AvroCodec.for_topic_schema("features")
    features, after = {}, []
    for message in read_topic(bootstrap, prefix + "features", expect=None, idle=5.0, timeout=180,
                              distinct=(lambda m: codec.decode(m.value())["tick_index"], count)):
        record = codec.decode(message.value())
        features.setdefault(record["tick_index"], record)
        if message.offset() >= ends[message.partition()]:
            after.append(record["tick_index"])
    return features, after


def test_forged_checkpoints_are_refused_without_side_effects_or_skipped_input(worker_factory, pipeline_env,
                                                                              tmp_path):
    env = {**pipeline_env, "LIVELEARN_MODEL_CHECKPOINT_SECONDS": "1", "LIVELEARN_LOG_LEVEL": "info"}
    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"]
    tick_codec, features_codec = AvroCodec.for_topic_schema("tick"), AvroCodec.for_topic_schema("features")
    checkpoint_codec = AvroCodec.for_topic_schema("checkpoint")
    ticks = [item.tick for item in read_file(FILE)]
    records = [(b"BTC", tick_codec.encode(t), t["event_time_ms"]) for t in ticks]  # its group (schemas.keys)

    first = worker_factory(env).start()
    produce(bootstrap, prefix + "ticks", records[:600])
    assert len(wait_for_distinct(bootstrap, prefix + "features", features_codec.decode, lambda r: r["tick_index"],
                                 600, 120)) == 600
    good = None
    for _ in range(30):  # the quiet-partition checkpoint follows within a second or two
        checkpoints = [checkpoint_codec.decode(m.value())
                       for m in read_topic(bootstrap, prefix + "checkpoints", idle=1.0)
                       if m.key().startswith(b"pipeline:")]
        good = max(checkpoints, key=lambda r: r["sequence"], default=None)
        if good is not None and good["offsets"]["ticks"] >= 599:
            break
    assert good is not None and good["offsets"]["ticks"] >= 599 and good["parts"] == 1
    first.stop(kill=True)

    marker = tmp_path / "side-effect-ran"
    evil = zlib.compress(pickle.dumps(SideEffect(str(marker))))
    later = good["sequence"] + 1000
    forged = {**good, "state": evil, "offsets": {**good["offsets"], "ticks": 10**9}, "sequence": later}
    # The key holder's signer, to show the checks behind the signature as well.
    signer = CheckpointSigner(checkpoint_key(Settings.from_env(env)), prefix + "checkpoints")
    past_the_end = {**forged, "state": good["state"], "sequence": later + 1, "signature": None}
    past_the_end["signature"] = signer.sign(past_the_end)
    signed_evil = {**good, "state": evil, "sequence": later + 2, "signature": None}
    signed_evil["signature"] = signer.sign(signed_evil)

    def key(record):
        return part_key("pipeline", record["partition"], record["sequence"], record["part"])

    produce(bootstrap, prefix + "checkpoints", [
        (key(forged), checkpoint_codec.encode({**forged, "signature": None}), None),                  # unsigned
        (key(forged), checkpoint_codec.encode({**forged, "signature": secrets.token_bytes(32)}), None),  # forged
        (key(past_the_end), checkpoint_codec.encode(past_the_end), None),              # offset out of range
        (key(signed_evil), checkpoint_codec.encode(signed_evil), None),                 # unreadable state
    ])

    second = worker_factory(env).start(timeout=120)
    produce(bootstrap, prefix + "ticks", records[600:])
    features = {}
    for message in read_topic(bootstrap, prefix + "features", expect=None, idle=5.0, timeout=180):
        record = features_codec.decode(message.value())
        features.setdefault(record["tick_index"], record)
    # Nothing skipped and the state continued: tick i carries the price of the i-th tick.
    assert sorted(features) == list(range(1, len(ticks) + 1))
    assert all(features[i + 1]["price"] == t["price"] for i, t in enumerate(ticks))
    assert not marker.exists(), "a forged checkpoint ran code in the worker"

    _, body = second.get("/metrics")
    for reason in ("unsigned_checkpoint", "forged_checkpoint", "offset_out_of_range", "unreadable_checkpoint"):
        assert metric(body, "livelearn_checkpoints_refused_total", stage="pipeline", reason=reason) >= 1, reason
    dead = {AvroCodec.for_topic_schema("dead_letter").decode(m.value())["reason_code"]
            for m in read_topic(bootstrap, prefix + "dead-letters", idle=2.0)}
    assert {"unsigned_checkpoint", "forged_checkpoint", "offset_out_of_range", "unreadable_checkpoint"} <= dead
    log = second.log_path.read_text()
    assert re.search(r"refused checkpoint .*unsigned_checkpoint", log)
    assert re.search(rf"partition {good['partition']} restored at offsets .*'ticks': {good['offsets']['ticks']}", log)


def test_a_checkpoint_read_that_waiting_cannot_mend_is_an_error_not_a_wait(pipeline_env):
    """The restore waits out a broker that is away (tests/integration/test_broker_outage_kafka.py) but
    not an error that stays: here the broker refuses the topic name for good (an authorization failure
    is the same kind), and the worker must say so instead of logging "trying again" for ever."""
    import asyncio
    import time

    from confluent_kafka import KafkaError, KafkaException

    from agents.app import Runtime
    from agents.checkpoints import PartitionCheckpoints
    from agents.topics import INPUT_STAGES

    runtime = Runtime(Settings.from_env(pipeline_env), faust=False)
    runtime.topic_names["checkpoints"] = "not a topic name!"
    checkpoints = PartitionCheckpoints(runtime, "pipeline", INPUT_STAGES, "v", factory=lambda: None)
    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        asyncio.run(asyncio.wait_for(checkpoints.load(), 60))
    assert raised.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
    assert time.monotonic() - started < 30


def test_which_checkpoint_read_errors_are_waited_out():
    from confluent_kafka import KafkaError, KafkaException

    from agents.checkpoints import CheckpointsUnreadable, broker_away

    for code in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError.LEADER_NOT_AVAILABLE,
                 KafkaError._DESTROY_BROKER):
        assert broker_away(KafkaException(KafkaError(code)))
    assert broker_away(CheckpointsUnreadable("not read to its end"))
    for code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._AUTHENTICATION, KafkaError.TOPIC_EXCEPTION):
        assert not broker_away(KafkaException(KafkaError(code)))
    assert not broker_away(ValueError("a bug"))


@pytest.mark.parametrize(("guarantee", "retention_took"), [("at_least_once", 0), ("exactly_once", 0),
                                                           ("at_least_once", 50)])
def test_a_restore_that_falls_back_to_an_older_checkpoint_applies_the_events_since_it_again(worker_factory,
                                                                                              pipeline_env,
                                                                                              guarantee,
                                                                                              retention_took):
    """The newest checkpoint unreadable, the restore takes the one before it, whose offsets are behind the
    group's committed position: the events in between are applied again, silently, before any new one.
    Those the topic no longer holds (at most ``retention_took`` of them) are named in the log."""
    from confluent_kafka import Producer, TopicPartition
    from confluent_kafka.admin import AdminClient

    from connectors.topic_end import committed_offsets

    env = {**pipeline_env, "LIVELEARN_MODEL_CHECKPOINT_SECONDS": "1", "LIVELEARN_LOG_LEVEL": "info",
           "LIVELEARN_PROCESSING_GUARANTEE": guarantee}
    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"]
    tick_codec, features_codec = AvroCodec.for_topic_schema("tick"), AvroCodec.for_topic_schema("features")
    checkpoint_codec = AvroCodec.for_topic_schema("checkpoint")
    ticks = [item.tick for item in read_file(FILE)]
    records = [(b"BTC", tick_codec.encode(t), t["event_time_ms"]) for t in ticks]

    def checkpoints_at(last_offset: int) -> list[dict]:
        for _ in range(30):
            # Each with the checkpoints partition it is on (its key's).
            found = [{**checkpoint_codec.decode(m.value()), "on": m.partition()}
                     for m in read_topic(bootstrap, prefix + "checkpoints", idle=1.0) if m.key().startswith(b"pipeline:")]
            if any(r["offsets"]["ticks"] >= last_offset for r in found):
                return found
        raise AssertionError(f"no checkpoint reached ticks offset {last_offset}")

    first = worker_factory(env).start()
    produce(bootstrap, prefix + "ticks", records[:300])
    assert len(wait_for_distinct(bootstrap, prefix + "features", features_codec.decode, lambda r: r["tick_index"],
                                 300, 120)) == 300
    checkpoints_at(299)
    produce(bootstrap, prefix + "ticks", records[300:600])
    assert len(wait_for_distinct(bootstrap, prefix + "features", features_codec.decode, lambda r: r["tick_index"],
                                 600, 120)) == 600
    written = checkpoints_at(599)
    first.stop()  # graceful: its position, 600, is committed
    newest = max(written, key=lambda r: r["sequence"])
    partition = newest["partition"]
    assert newest["offsets"]["ticks"] == 599 and newest["parts"] == 1
    older = [r for r in written if r["sequence"] < newest["sequence"]]
    assert older and max(r["offsets"]["ticks"] for r in older) < 599
    group_at = committed_offsets({"bootstrap.servers": bootstrap}, env["LIVELEARN_APP_ID"],
                                 [(prefix + "ticks", partition)])
    assert group_at == {(prefix + "ticks", partition): 600}

    # The newest checkpoint rewritten, signed, with a state that does not load (a snapshot format
    # an upgrade no longer reads, say): the restore falls back to the one before.
    signer = CheckpointSigner(checkpoint_key(Settings.from_env(env)), prefix + "checkpoints")
    on = newest.pop("on")
    spoiled = {**newest, "state": zlib.compress(b"not a pickle"), "signature": None}
    spoiled["signature"] = signer.sign(spoiled)
    # After the original on its checkpoints partition, so that the restore reads it as that write's part.
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(prefix + "checkpoints", checkpoint_codec.encode(spoiled), partition=on,
                     key=part_key("pipeline", partition, newest["sequence"], 0))
    assert producer.flush(30) == 0
    features_end = features_ends(bootstrap, prefix, int(env["LIVELEARN_PARTITIONS"]))

    older_at = max(r["offsets"]["ticks"] for r in older)  # where the restore is to go back to
    # At most half of the events since that checkpoint, so that some are left to apply again: the
    # quiet timer may have written it anywhere between ticks 300 and 599 (a fixed 50 once ran past
    # the end of the partition, OFFSET_OUT_OF_RANGE, on a loaded machine).
    took = max(1, min(retention_took, (599 - older_at) // 2)) if retention_took else 0
    if took:
        gone_to = older_at + 1 + took
        admin = AdminClient({"bootstrap.servers": bootstrap})  # kept while its request is answered
        [done] = admin.delete_records([TopicPartition(prefix + "ticks", partition, gone_to)]).values()
        assert done.result(30).low_watermark == gone_to

    second = worker_factory(env).start(timeout=120)
    if took:
        produce(bootstrap, prefix + "ticks", records[600:601])  # a partition is restored at its first event
        for _ in range(120):
            log = second.log_path.read_text()
            if "applied again" in log:
                break
            time.sleep(0.5)
        assert re.search(rf"ticks \(offset {older_at}, position 600\): {599 - older_at - took} events "
                         rf"applied again without publishing; offsets {older_at + 1}-{gone_to - 1} are no longer in "
                         "the topic and stay unapplied", log)
        return
    produce(bootstrap, prefix + "ticks", records[600:])
    features, after = features_by_tick(bootstrap, prefix, len(ticks), features_end)
    # The state went on from tick 600, as the spoiled checkpoint's had: tick i is the i-th tick. On the
    # code before, it went on from the older checkpoint's tick 300: the next ticks were numbered from 301
    # (the first two refused, five hours ahead of that state's stream), and 1,139-1,440 never came.
    assert sorted(features) == list(range(1, len(ticks) + 1))
    assert all(features[i + 1]["price"] == t["price"] for i, t in enumerate(ticks))
    # Applied again without publishing: the second worker's features are the new ticks' only.
    assert sorted(after) == list(range(601, len(ticks) + 1))
    # Its checkpoints are numbered above the spoiled one, so the next restore reads them first.
    latest = max(checkpoints_at(len(ticks) - 1), key=lambda r: (r["sequence"], r["created_time_ms"]))
    assert latest["offsets"]["ticks"] == len(ticks) - 1 and latest["sequence"] > newest["sequence"]
    log = second.log_path.read_text()
    assert re.search(r"refused checkpoint .*unreadable_checkpoint", log)
    restored = int(re.search(rf"partition {partition} restored at offsets .*'ticks': (\d+)", log).group(1))
    assert restored < 599
    assert re.search(rf"ticks \(offset {restored}, position 600\): {599 - restored} events applied again", log)


def test_after_a_version_change_the_new_versions_checkpoints_are_restored_not_the_old_ones_met_again(
        worker_factory, pipeline_env):
    """Changing a setting that is part of the checkpoint version (the members) starts a partition
    fresh. Its new checkpoints were numbered from 1, below the old version's, and a restore met the old
    version's newest first and started fresh again, at every restart until the broker compacted the old
    records away. Now they are numbered above, and the second restart restores the new version's."""
    env = {**pipeline_env, "LIVELEARN_MODEL_CHECKPOINT_SECONDS": "1", "LIVELEARN_LOG_LEVEL": "info"}
    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"]
    tick_codec, features_codec = AvroCodec.for_topic_schema("tick"), AvroCodec.for_topic_schema("features")
    ticks = [item.tick for item in read_file(FILE)]
    records = [(b"BTC", tick_codec.encode(t), t["event_time_ms"]) for t in ticks]

    def run(members: str, upto: int, **more: str) -> str:
        worker = worker_factory({**env, "LIVELEARN_MEMBERS": members, **more}).start()
        produce(bootstrap, prefix + "ticks", records[upto - 300:upto])
        # Every tick applied (a feature record each, counted over the runs); a graceful stop checkpoints.
        assert len(read_topic(bootstrap, prefix + "features", expect=upto, timeout=120)) >= upto
        worker.stop()
        return worker.log_path.read_text()

    # The old version's sequence numbers run higher than the new version's first checkpoints reach.
    run("logreg,micro", 300, LIVELEARN_MODEL_CHECKPOINT_EVENTS="20")
    log = run("logreg", 600)  # another version: fresh, with checkpoints of its own
    # The warning names the setting that dropped the state (the version alone is a checksum).
    assert re.search(r"partition \d+ starts fresh, its models and monitors new: .* Changed: "
                     r"learner\.members: \('logreg', 'micro'\) -> \('logreg',\)\.", log), log[-3000:]
    log = run("logreg", 900)
    assert re.search(r"partition \d+ restored at offsets .*'ticks': 599", log), log[-3000:]
    assert "starts fresh" not in log
    features = {}
    for message in read_topic(bootstrap, prefix + "features", expect=None, idle=3.0, timeout=60):
        record = features_codec.decode(message.value())
        features.setdefault(record["tick_index"], record)
    # The third run went on from the second's state: 300 ticks there, then 300 more.
    assert max(features) == 600


def test_a_partition_with_no_checkpoint_to_use_behind_the_groups_position_is_rebuilt_from_its_events(
        worker_factory, pipeline_env):
    """No checkpoint to read (here the checkpoints topic was deleted while no worker ran; in a chaos run,
    a worker that started just after the broker came back read none of a partition's six), yet the group
    had read 600 ticks of the partition: they are applied again, silently, so the state goes on from tick
    600 as a restore's would. On the code before, it went on new from the group's position: tick 601
    was the partition's tick 1, with its predictions' ids."""
    from confluent_kafka.admin import AdminClient

    env = {**pipeline_env, "LIVELEARN_MODEL_CHECKPOINT_SECONDS": "1", "LIVELEARN_LOG_LEVEL": "info",
           "LIVELEARN_PROCESSING_GUARANTEE": "exactly_once"}
    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"]
    tick_codec, features_codec = AvroCodec.for_topic_schema("tick"), AvroCodec.for_topic_schema("features")
    ticks = [item.tick for item in read_file(FILE)]
    records = [(b"BTC", tick_codec.encode(t), t["event_time_ms"]) for t in ticks]

    first = worker_factory(env).start()
    produce(bootstrap, prefix + "ticks", records[:600])
    assert len(wait_for_distinct(bootstrap, prefix + "features", features_codec.decode, lambda r: r["tick_index"],
                                 600, 120)) == 600
    first.stop()  # graceful: its position, 600, is committed with its last checkpoint
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([prefix + "checkpoints"])[prefix + "checkpoints"].result(30)
    for _ in range(150):  # gone from the broker's answers, so that the next worker makes it anew
        if prefix + "checkpoints" not in admin.list_topics(timeout=10).topics:
            break
        time.sleep(0.2)
    features_end = features_ends(bootstrap, prefix, int(env["LIVELEARN_PARTITIONS"]))

    second = worker_factory(env).start(timeout=120)
    produce(bootstrap, prefix + "ticks", records[600:])
    features, after = features_by_tick(bootstrap, prefix, len(ticks), features_end)
    assert sorted(features) == list(range(1, len(ticks) + 1))
    assert all(features[i + 1]["price"] == t["price"] for i, t in enumerate(ticks))
    assert sorted(after) == list(range(601, len(ticks) + 1))  # the 600 applied again were not published
    assert re.search(r"partition \d+ with no checkpoint it could use, behind the group's position on "
                     rf"{re.escape(prefix)}ticks \(offset -1, position 600\): 600 events applied again without "
                     "publishing", second.log_path.read_text())
