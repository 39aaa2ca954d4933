"""A restore sees the newest committed checkpoint even when a killed worker left a transaction open.

Exactly-once, each input partition's outputs and checkpoint commit in one transaction, and a
read_committed reader sees a partition of the checkpoints topic only up to its first record of a
transaction still open. One chaos run restored a partition from the checkpoint before its newest: a
killed worker's open transaction (another input partition's, whose checkpoint keys hash to the same
checkpoints partition) hid the newest, and the restored state was 200 ticks behind the committed
offset. The first tests build that situation on a real broker with the worker's own checkpoint
code; the others show what a restore reads (only its own partitions' checkpoints, the newest few
held at a time) and what the checkpoints topic keeps.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from agents.app import Runtime
from agents.checkpoints import PartitionCheckpoints, part_key
from agents.settings import Settings
from agents.topics import INPUT_STAGES, create_topics
from connectors.topic_end import TopicToEnd
from schemas.codec import AvroCodec

pytestmark = pytest.mark.integration


def _settings(pipeline_env) -> Settings:
    settings = Settings.from_env({**pipeline_env, "LIVELEARN_PROCESSING_GUARANTEE": "exactly_once"})
    create_topics(settings)
    return settings


def _fill_input(settings: Settings, records: int) -> None:
    """The restore refuses a checkpoint whose offsets lie past the end of its input partition."""
    from confluent_kafka import Producer

    producer = Producer(settings.client_config())
    for i in range(records):
        producer.produce(f"{settings.topic_prefix}ticks", key=b"X", value=b"%d" % i, partition=0)
    assert producer.flush(30) == 0


async def _checkpoint(checkpoints: PartitionCheckpoints, ticks_offset: int) -> None:
    checkpoints.states[0] = {"ticks_seen": ticks_offset + 1}
    checkpoints.offsets[0] = {"ticks": ticks_offset, "external-features": -1, "feedback": -1}
    checkpoints.sequences.setdefault(0, 0)
    await checkpoints.checkpoint(0, force=True)


def _zombie(settings: Settings, runtime: Runtime, partition: int):
    """A worker of input ``partition`` killed in the middle of writing a checkpoint: its transaction,
    holding a record on every checkpoints partition, stays open."""
    from confluent_kafka import Producer

    producer = Producer({**settings.client_config(), "transactional.id": runtime.transactional_id(partition)})
    producer.init_transactions(30)
    producer.begin_transaction()
    topic = runtime.topic_names["checkpoints"]
    for kafka_partition in range(settings.kafka.partitions):
        producer.produce(topic, key=part_key("pipeline", partition, 1, 0), value=b"half-written",
                         partition=kafka_partition)
    assert producer.flush(30) == 0
    return producer


def _sequences_seen_by_a_plain_read(settings: Settings, runtime: Runtime) -> list[int]:
    codec = AvroCodec.for_topic_schema("checkpoint")
    with TopicToEnd(settings.client_config(), runtime.topic_names["checkpoints"], timeout=20) as reader:
        return sorted(codec.decode(m.value())["sequence"] for m in reader
                      if m.key().startswith(b"pipeline:0:") and m.value() is not None)


def _written_with_a_zombie_in_between(pipeline_env):
    """Checkpoint 1 of partition 0 (ticks offset 199), then partition 1's zombie transaction, then
    checkpoint 2 of partition 0 (ticks offset 399), committed after the zombie's records."""
    settings = _settings(pipeline_env)
    _fill_input(settings, 400)
    writer = Runtime(settings, faust=False)
    checkpoints = PartitionCheckpoints(writer, "pipeline", INPUT_STAGES, "v", factory=dict)

    asyncio.run(_checkpoint(checkpoints, 199))
    zombie = _zombie(settings, writer, 1)
    asyncio.run(_checkpoint(checkpoints, 399))
    # The hazard is real: a plain read_committed read of the topic does not see checkpoint 2.
    assert _sequences_seen_by_a_plain_read(settings, writer) == [1]
    return settings, zombie


def test_a_restore_fences_the_partitions_it_owns_before_it_reads(pipeline_env):
    from confluent_kafka import KafkaException

    settings, zombie = _written_with_a_zombie_in_between(pipeline_env)
    owner = PartitionCheckpoints(Runtime(settings, faust=False), "pipeline", INPUT_STAGES, "v", factory=dict)

    async def restore():
        await asyncio.wait_for(owner.load({0, 1}), 60)  # a worker that owns both partitions
        return await owner.state(0)

    state = asyncio.run(restore())
    assert owner.sequences[0] == 2 and owner.offsets[0]["ticks"] == 399 and state == {"ticks_seen": 400}
    with pytest.raises(KafkaException):  # fenced: the killed worker's transaction can never commit
        zombie.commit_transaction(10)


def test_a_restore_waits_for_an_open_transaction_of_a_partition_it_does_not_own(pipeline_env):
    settings, _ = _written_with_a_zombie_in_between(pipeline_env)
    owner = PartitionCheckpoints(Runtime(settings, faust=False), "pipeline", INPUT_STAGES, "v", factory=dict)
    other_owner = Runtime(settings, faust=False)

    async def scenario():
        restore = asyncio.create_task(owner.state(0))
        await asyncio.sleep(5)
        waited = not restore.done()  # not restored from checkpoint 1 meanwhile
        started = time.monotonic()
        await other_owner.fence({1})  # partition 1's new owner starts, aborting the zombie's transaction
        state = await asyncio.wait_for(restore, 60)
        return waited, time.monotonic() - started, state

    waited, after_fence, state = asyncio.run(scenario())
    assert waited
    assert owner.sequences[0] == 2 and owner.offsets[0]["ticks"] == 399 and state == {"ticks_seen": 400}
    assert after_fence < 15, f"restored {after_fence:.1f} s after the fence"


def test_a_restore_holds_only_the_newest_checkpoints_while_it_reads(pipeline_env):
    """Until the broker compacts them, every checkpoint written stays on the topic, and a restore used
    to hold all of them, state and all, until its read ended. Thirty checkpoints of 1 MB (random bytes:
    compression keeps them 1 MB) are held at most ``KEEP_READING`` at a time, and the newest is restored."""
    import os
    import tracemalloc

    from agents.checkpoints import KEEP_READING, read_checkpoints

    settings = Settings.from_env(pipeline_env)  # at-least-once: no transaction to wait for
    create_topics(settings)
    _fill_input(settings, 30)
    writer = Runtime(settings, faust=False)
    checkpoints = PartitionCheckpoints(writer, "pipeline", INPUT_STAGES, "v", factory=dict)

    async def write():
        for offset in range(30):
            checkpoints.states[0] = {"ticks_seen": offset + 1, "weights": os.urandom(1 << 20)}
            checkpoints.offsets[0] = {"ticks": offset, "external-features": -1, "feedback": -1}
            checkpoints.sequences.setdefault(0, 0)
            await checkpoints.checkpoint(0, force=True)

    asyncio.run(write())
    reader = Runtime(settings, faust=False)
    tracemalloc.start()
    try:
        restored, refused, _ = read_checkpoints(reader, "pipeline", INPUT_STAGES, checkpoints.signer)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not refused
    assert [record["sequence"] for record in restored[0]] == [30, 29, 28]
    # Each of the eight held is its 1 MB state, and the three kept are joined whole at the end: all
    # thirty held were over 30 MB.
    assert KEEP_READING == 8 and peak < 16 * (1 << 20), f"peak {peak / (1 << 20):.1f} MB while reading"


def test_the_checkpoints_topic_is_compacted_within_minutes_not_days(pipeline_env):
    """Made by the project, the checkpoints topic rolls its segments at 64 MiB or 10 minutes and is
    cleaned once a tenth is superseded; one made before (the broker's defaults: 1 GiB or 7 days) gets
    the same when the topics are next ensured, and a value an operator set on the topic is kept."""
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

    from agents.topics import COMPACTED_CONFIG

    def config_of(name: str) -> dict[str, str]:
        from confluent_kafka import KafkaException

        resource = ConfigResource(ResourceType.TOPIC, name)
        for _ in range(50):  # a topic just made may not be known to the broker's metadata yet
            try:
                entries = admin.describe_configs([resource])[resource].result(30)
                break
            except KafkaException:
                time.sleep(0.2)
        return {key: entries[key].value for key in (*COMPACTED_CONFIG, "cleanup.policy")}

    made = Settings.from_env(pipeline_env)
    admin = AdminClient(made.client_config())
    create_topics(made)
    assert config_of(made.topic("checkpoints")) == {**COMPACTED_CONFIG, "cleanup.policy": "compact"}

    def settles_to(name: str, expected: dict[str, str]) -> dict[str, str]:
        """A topic's configuration once a change has reached the broker (KRaft applies it from its
        metadata log, a moment after the request returns)."""
        deadline = time.monotonic() + 20
        while (found := config_of(name)) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        return found


    older = Settings.from_env({**pipeline_env, "LIVELEARN_TOPIC_PREFIX": made.topic_prefix + "older."})
    name = older.topic("checkpoints")
    admin.create_topics([NewTopic(name, 1, 1, config={"cleanup.policy": "compact", "segment.ms": "3600000"})]
                        )[name].result(30)
    assert config_of(name)["min.cleanable.dirty.ratio"] == "0.5"  # the broker's default
    create_topics(older)
    expected = {**COMPACTED_CONFIG, "segment.ms": "3600000", "cleanup.policy": "compact"}
    assert settles_to(name, expected) == expected


def test_a_write_cut_short_does_not_spoil_the_next_write_of_its_sequence(pipeline_env):
    """A checkpoint write cut short (a crash, or a revocation that withholds the rest) leaves some parts
    of sequence 2 on the topic; the next owner, restored from sequence 1, writes its own sequence 2,
    here in fewer parts. Merged by sequence, the two read as one incomplete checkpoint and the restore
    fell back to sequence 1, behind the offsets the next owner had acked; told apart by their write
    time, the complete one is restored."""
    import os
    import zlib

    from agents.checkpoints import read_checkpoints
    from streams import snapshots

    settings = Settings.from_env(pipeline_env)  # at-least-once: the cut write's parts stay readable
    create_topics(settings)
    _fill_input(settings, 30)
    runtime = Runtime(settings, faust=False)
    checkpoints = PartitionCheckpoints(runtime, "pipeline", INPUT_STAGES, "v", factory=dict, part_bytes=1024)
    offsets = {"ticks": 0, "external-features": -1, "feedback": -1, "tick-batches": -1}

    async def scenario():
        await _checkpoint(checkpoints, 0)  # sequence 1
        state = zlib.compress(snapshots.dumps({"ticks_seen": 11, "weights": os.urandom(4000)}), 1)
        pieces = [state[i:i + 1024] for i in range(0, len(state), 1024)]
        assert len(pieces) == 4
        for part, piece in enumerate(pieces[:3]):  # the first owner's sequence 2, cut short
            record = {"stage": "pipeline", "partition": 0, "offset": 10, "offsets": {**offsets, "ticks": 10},
                      "version": "v", "sequence": 2, "created_time_ms": int(time.time() * 1000) - 5000,
                      "part": part, "parts": len(pieces), "state": piece}
            record["signature"] = checkpoints.signer.sign(record)
            await runtime.publish("checkpoints", part_key("pipeline", 0, 2, part), record, partition=0)
        runtime.flush_now()
        checkpoints.states[0] = {"ticks_seen": 21, "weights": os.urandom(1500)}  # the next owner's, 2 parts
        checkpoints.offsets[0] = {**offsets, "ticks": 20}
        await checkpoints.checkpoint(0, force=True)  # sequence 2 again

    asyncio.run(scenario())
    restored, refused, _ = read_checkpoints(Runtime(settings, faust=False), "pipeline", INPUT_STAGES,
                                            checkpoints.signer)
    assert not refused
    newest = restored[0][0]
    assert (newest["sequence"], newest["parts"], newest["offsets"]["ticks"]) == (2, 2, 20)
    assert snapshots.loads(zlib.decompress(newest["state"]))["ticks_seen"] == 21


def _placed_on(settings: Settings, runtime: Runtime, tombstones: list | None = None) -> dict[int, set[int]]:
    """Input partition -> the checkpoints partitions holding its checkpoints not deleted by a later
    tombstone (compaction has not run on them yet); ``tombstones`` gets each as (partition, key)."""
    codec = AvroCodec.for_topic_schema("checkpoint")
    latest: dict[tuple[int, bytes], int | None] = {}
    with TopicToEnd(settings.client_config(), runtime.topic_names["checkpoints"], timeout=20,
                    stable=True) as reader:
        for message in reader:
            site = (message.partition(), message.key())
            if message.value() is None:
                latest[site] = None
                if tombstones is not None:
                    tombstones.append(site)
            else:
                latest[site] = codec.decode(message.value())["partition"]
    found: dict[int, set[int]] = {}
    for (partition, _), owner in latest.items():
        if owner is not None:
            found.setdefault(owner, set()).add(partition)
    return found


def test_a_restore_reads_its_own_checkpoints_partition_and_waits_for_no_other_partitions_transaction(pipeline_env):
    """Each input partition's checkpoints go to the checkpoints partition of its number. A killed
    worker of partition 1 leaves its transaction open on checkpoints partition 1 only, and the restore
    of partition 0 does not wait for it: read from the whole topic, it waited until partition 1's next
    owner fenced that transaction, or for ever where none did (the 20 s read timed out, and was tried
    again)."""
    settings = _settings(pipeline_env)
    _fill_input(settings, 400)
    writer = Runtime(settings, faust=False)
    checkpoints = PartitionCheckpoints(writer, "pipeline", INPUT_STAGES, "v", factory=dict)
    asyncio.run(_checkpoint(checkpoints, 199))
    asyncio.run(_checkpoint(checkpoints, 399))
    assert _placed_on(settings, writer) == {0: {0}}

    from confluent_kafka import Producer

    zombie = Producer({**settings.client_config(), "transactional.id": writer.transactional_id(1)})
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce(writer.topic_names["checkpoints"], key=part_key("pipeline", 1, 1, 0), value=b"half-written",
                   partition=1)
    assert zombie.flush(30) == 0
    owner = PartitionCheckpoints(Runtime(settings, faust=False), "pipeline", INPUT_STAGES, "v", factory=dict)

    async def restore():
        started = time.monotonic()
        state = await asyncio.wait_for(owner.state(0), 10)
        return state, time.monotonic() - started

    try:
        state, took = asyncio.run(restore())
    finally:
        zombie.abort_transaction(30)
    assert owner.sequences[0] == 2 and owner.offsets[0]["ticks"] == 399 and state == {"ticks_seen": 400}
    assert took < 5, f"restored after {took:.1f} s"


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_checkpoints_placed_by_key_hash_are_restored_and_the_next_one_is_placed(pipeline_env, guarantee):
    """Checkpoints written before the placement by partition number sit where their keys hashed to. A
    restore that finds none of its partition's on its own checkpoints partition looks for them in the
    whole topic; the next checkpoint goes to its own partition, numbered above the old ones, and the
    restore after that reads it there. The old ones are then deleted with tombstones: compaction is
    per partition, and nothing else would ever supersede them (they stayed on the code before)."""
    settings = Settings.from_env({**pipeline_env, "LIVELEARN_PROCESSING_GUARANTEE": guarantee})
    create_topics(settings)
    _fill_input(settings, 400)
    writer = Runtime(settings, faust=False)
    old = PartitionCheckpoints(writer, "pipeline", INPUT_STAGES, "v", factory=dict)

    async def elsewhere(partition: int) -> int:  # not the partition's own: wherever a key hashed to
        return partition + 1

    old.placement = elsewhere  # type: ignore[method-assign]
    asyncio.run(_checkpoint(old, 199))
    assert _placed_on(settings, writer) == {0: {1}}

    upgraded = PartitionCheckpoints(Runtime(settings, faust=False), "pipeline", INPUT_STAGES, "v", factory=dict)

    async def restore_then_checkpoint():
        state = await asyncio.wait_for(upgraded.state(0), 60)
        restored_from = dict(upgraded.offsets[0])
        state["ticks_seen"] = 400
        upgraded.offsets[0]["ticks"] = 399
        await upgraded.checkpoint(0, force=True)
        return restored_from

    restored_from = asyncio.run(restore_then_checkpoint())
    assert restored_from["ticks"] == 199
    tombstones: list = []
    assert _placed_on(settings, writer, tombstones) == {0: {0}}
    assert tombstones == [(1, part_key("pipeline", 0, 1, 0))]
    later = PartitionCheckpoints(Runtime(settings, faust=False), "pipeline", INPUT_STAGES, "v", factory=dict)
    state = asyncio.run(asyncio.wait_for(later.state(0), 60))
    assert state == {"ticks_seen": 400} and later.offsets[0]["ticks"] == 399
    assert (old.sequences[0], upgraded.sequences[0], later.sequences[0]) == (1, 2, 2)


@pytest.mark.parametrize("policy", ["delete", "compact,delete"])
def test_a_checkpoints_topic_whose_records_expire_is_said_at_start(pipeline_env, caplog, policy):
    """A checkpoints topic made by hand with a retention that deletes (Kafka's default policy, or
    compaction and deletion together) loses a quiet partition's last checkpoint after ``retention.ms``,
    and that partition then starts fresh: said (an error in the log) when the topics are ensured, the
    operator's setting left as it is. A topic that compacts only is not complained about."""
    import logging

    from confluent_kafka.admin import AdminClient, NewTopic

    settings = Settings.from_env(pipeline_env)
    admin = AdminClient(settings.client_config())
    name = settings.topic("checkpoints")
    admin.create_topics([NewTopic(name, 2, 1, config={"cleanup.policy": policy, "retention.ms": "86400000"})]
                        )[name].result(30)
    with caplog.at_level(logging.WARNING, logger="livelearn.topics"):
        create_topics(settings)
    said = [r for r in caplog.records if r.levelno >= logging.ERROR and name in r.getMessage()]
    assert len(said) == 1 and f"cleanup.policy={policy}" in said[0].getMessage(), caplog.text
    assert "86400000" in said[0].getMessage()

    compacting = Settings.from_env({**pipeline_env, "LIVELEARN_TOPIC_PREFIX": settings.topic_prefix + "made."})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="livelearn.topics"):
        create_topics(compacting)  # made here: compact only
        create_topics(compacting)  # ensured again: still nothing to say
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_a_checkpoints_topic_with_fewer_partitions_than_the_inputs_holds_several_partitions_on_one(pipeline_env):
    """A checkpoints topic made by hand with one partition, the inputs with two: both input partitions'
    checkpoints go to its partition 0 (the number modulo the count), and each restore takes its own."""
    from confluent_kafka.admin import AdminClient, NewTopic

    settings = Settings.from_env(pipeline_env)
    admin = AdminClient(settings.client_config())
    name = settings.topic("checkpoints")
    admin.create_topics([NewTopic(name, 1, 1, config={"cleanup.policy": "compact"})])[name].result(30)
    create_topics(settings)
    _fill_input(settings, 400)
    from confluent_kafka import Producer

    producer = Producer(settings.client_config())
    for i in range(300):
        producer.produce(f"{settings.topic_prefix}ticks", key=b"Y", value=b"%d" % i, partition=1)
    assert producer.flush(30) == 0
    writer = Runtime(settings, faust=False)
    checkpoints = PartitionCheckpoints(writer, "pipeline", INPUT_STAGES, "v", factory=dict)

    async def write():
        for partition, offset in ((0, 399), (1, 299)):
            checkpoints.states[partition] = {"partition": partition, "ticks_seen": offset + 1}
            checkpoints.offsets[partition] = {"ticks": offset, "external-features": -1, "feedback": -1}
            checkpoints.sequences.setdefault(partition, 0)
            await checkpoints.checkpoint(partition, force=True)

    asyncio.run(write())
    assert _placed_on(settings, writer) == {0: {0}, 1: {0}}
    for partition, seen in ((1, 300), (0, 400)):
        owner = PartitionCheckpoints(Runtime(settings, faust=False), "pipeline", INPUT_STAGES, "v", factory=dict)
        state = asyncio.run(asyncio.wait_for(owner.state(partition), 60))
        assert state == {"partition": partition, "ticks_seen": seen} and owner.offsets[partition]["ticks"] == seen - 1


def test_a_partition_whose_inputs_never_held_a_record_does_not_send_a_restore_to_the_whole_topic(pipeline_env,
                                                                                                   monkeypatch):
    """A worker owns partitions no event has reached (more partitions than basis groups is common): no
    checkpoint of theirs can exist, and a restore no longer looks for one in the whole checkpoints topic,
    as it did at every rebalance while one such partition was assigned. A partition whose inputs have
    held a record and which has no checkpoint on its own checkpoints partition is still looked for
    there (it may have checkpointed under the placement by key hash)."""
    from agents import checkpoints as module

    settings = Settings.from_env(pipeline_env)
    create_topics(settings)
    _fill_input(settings, 400)
    runtime = Runtime(settings, faust=False)
    checkpoints = PartitionCheckpoints(runtime, "pipeline", INPUT_STAGES, "v", factory=dict)
    asyncio.run(_checkpoint(checkpoints, 399))
    reads: list[set[int] | None] = []
    real_read = module._read

    def counted(*args, **kwargs):
        reads.append(args[5])
        return real_read(*args, **kwargs)

    monkeypatch.setattr(module, "_read", counted)
    restored, refused, strays = module.read_checkpoints(runtime, "pipeline", INPUT_STAGES, checkpoints.signer, 20,
                                                        of={0, 1})
    assert set(restored) == {0} and restored[0][0]["offsets"]["ticks"] == 399 and refused == [] and strays == {}
    assert reads == [{0, 1}]

    from confluent_kafka import Producer

    producer = Producer(settings.client_config())
    producer.produce(f"{settings.topic_prefix}feedback", key=b"X", value=b"not read here", partition=1)
    assert producer.flush(30) == 0
    restored, _, _ = module.read_checkpoints(runtime, "pipeline", INPUT_STAGES, checkpoints.signer, 20, of={0, 1})
    assert set(restored) == {0} and reads == [{0, 1}, {0, 1}, None]


def test_a_topic_made_moments_before_is_described_once_the_broker_knows_it(pipeline_env):
    """The checkpoints topic's configuration is read to check its retention and set its compaction. A
    topic made moments before (here by a thread a second later) may not be known yet to the broker
    that answers: asked once, as before, that answer (``Unknown topic or partition``) was final, and
    a test run on a loaded machine lost the retention check that way. Now it is asked again for a
    while; a topic that never appears still raises."""
    import threading

    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

    from agents.topics import _described

    settings = Settings.from_env(pipeline_env)
    admin = AdminClient(settings.client_config())
    name = settings.topic("checkpoints")

    def make_later():
        time.sleep(1.0)
        admin.create_topics([NewTopic(name, 1, 1, config={"cleanup.policy": "compact"})])[name].result(30)

    maker = threading.Thread(target=make_later)
    maker.start()
    try:
        entries = _described(admin, ConfigResource(ResourceType.TOPIC, name), 30.0)
    finally:
        maker.join()
    assert entries["cleanup.policy"].value == "compact"
    with pytest.raises(KafkaException, match="(?i)unknown topic"):
        _described(admin, ConfigResource(ResourceType.TOPIC, settings.topic("never-made")), 30.0, known_within=1.0)


def test_a_restore_with_no_checkpoint_catches_up_saying_how_far_it_has_got(pipeline_env, monkeypatch, caplog):
    """A partition the group has read but with no checkpoint to use replays what its topic holds up to
    the group's position (minutes on a long history, with no event of it handled meanwhile): it says
    how far it has got every ``CATCH_UP_REPORT_S`` seconds, and the read before it says what it saw of
    the checkpoints topic, so that a restore that found no checkpoint can be told from one that found
    an empty topic. Here the worker's own restore, in process, on a real broker: 300 ticks, the group
    at 300, no checkpoint written; each tick applied takes a millisecond."""
    import logging
    import re

    from confluent_kafka import Consumer, TopicPartition

    from agents import checkpoints as module

    settings = _settings(pipeline_env)
    _fill_input(settings, 300)
    runtime = Runtime(settings)  # the worker's Faust app, not started: its group id is the one caught up to
    ticks = f"{settings.topic_prefix}ticks"
    committer = Consumer({**settings.client_config(), "group.id": runtime.app.conf.id})
    committer.commit(offsets=[TopicPartition(ticks, 0, 300)], asynchronous=False)
    committer.close()
    checkpoints = PartitionCheckpoints(runtime, "pipeline", INPUT_STAGES, "v", factory=list)
    applied: list[tuple[int, bytes]] = []

    def apply(state, value, where):
        time.sleep(0.001)
        state.append(value)
        applied.append((where[2], value))

    checkpoints.reapply = {"ticks": apply}
    monkeypatch.setattr(module, "CATCH_UP_REPORT_S", 0.05)
    with caplog.at_level(logging.INFO, logger="livelearn.checkpoints"):
        state = asyncio.run(checkpoints.state(0))
    assert state == [b"%d" % i for i in range(300)] and [offset for offset, _ in applied] == list(range(300))
    assert checkpoints.offsets[0]["ticks"] == 299
    lines = [record.getMessage() for record in caplog.records]
    read = [line for line in lines if "records of this stage" in line]
    assert read and all(re.search(r"read \S+checkpoints \(\d+ partitions, (\[0\]|all) read\): none holds a record; "
                                  r"0 records", line) for line in read), read
    progress = [int(m.group(1)) for line in lines
                if (m := re.search(rf"partition 0 catching up on {re.escape(ticks)}: at offset (\d+) of 300", line))]
    assert len(progress) >= 2 and progress == sorted(progress) and progress[-1] < 300, lines
    assert any("with no checkpoint it could use, behind the group's position" in line and
               "300 events applied again" in line for line in lines), lines
